//! Outbound traffic: one shared feed of broadcasts, and per connection a small private queue
//! and a writer task that drains both.
//!
//! A broadcast is appended once to the [`Feed`]; every subscribed connection keeps a cursor into
//! it, so a broadcast costs the room the same for ten members or ten thousand. Each writer copies
//! nothing: it gathers the shared frames from its cursor onward (skipping the ones its own member
//! sent) and hands them to one vectored write. The feed is trimmed behind the slowest cursor; a
//! connection that falls more than its byte bound behind is reported as stalled, so memory stays
//! bounded by the bound, not by the number of members.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Poll, Waker};
use std::time::Duration;

use chat_core::ConnId;
use chat_proto::{CloseReason, ServerMsg};
use futures_lite::FutureExt;
use futures_lite::future::poll_fn;
use smol::{Async, Timer};

use crate::stats::Stats;

/// Whole frames go into one write until it holds this many bytes...
const WRITE_BATCH: usize = 256 * 1024;

/// ...or this many frames (the kernel's IOV_MAX).
const MAX_SLICES: usize = 1024;

/// One encoded frame, shared by every connection it goes to.
pub type Frame = Arc<[u8]>;

/// The queue was full: the connection cannot keep up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

#[derive(Debug)]
struct Entry {
    frame: Frame,
    /// The member that sent it, who does not get it back.
    except: Option<ConnId>,
    /// Bytes appended to the feed up to and including this entry.
    end: u64,
}

#[derive(Debug, Default)]
struct FeedState {
    /// Position of `entries[0]`.
    base: u64,
    /// Bytes appended before `entries[0]`.
    base_bytes: u64,
    entries: VecDeque<Entry>,
    /// Bytes appended in all.
    head_bytes: u64,
    /// Writers that caught up, to wake at the next append.
    parked: Vec<Waker>,
    /// Bumped each time `parked` is drained, so that a writer registers once per round.
    round: u64,
    /// Every subscribed connection, for trimming and for finding the stalled.
    subscribers: HashMap<ConnId, Rc<RefCell<ConnState>>>,
}

impl FeedState {
    fn head(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    /// Bytes appended before position `pos`.
    fn bytes_before(&self, pos: u64) -> u64 {
        match pos.checked_sub(self.base + 1) {
            Some(i) => self
                .entries
                .get(i as usize)
                .map_or(self.head_bytes, |e| e.end),
            None => self.base_bytes,
        }
    }

    /// Feed bytes a connection at `cursor` still has to write.
    fn behind(&self, cursor: u64) -> u64 {
        self.head_bytes - self.bytes_before(cursor)
    }
}

/// The room's broadcasts, shared by every subscribed connection.
#[derive(Debug, Clone)]
pub struct Feed {
    state: Rc<RefCell<FeedState>>,
    max_bytes: usize,
}

impl Feed {
    /// A feed whose readers may fall at most `max_bytes` behind.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            state: Rc::default(),
            max_bytes,
        }
    }

    /// Appends a broadcast for every subscriber but `except`, and wakes the writers that wait.
    /// Returns the connections found too far behind, if this append prompted a check.
    pub fn append(&self, frame: Frame, except: Option<ConnId>, stats: &Stats) -> Vec<ConnId> {
        let mut feed = self.state.borrow_mut();
        feed.head_bytes += frame.len() as u64;
        let end = feed.head_bytes;
        feed.entries.push_back(Entry { frame, except, end });
        if !feed.parked.is_empty() {
            feed.round += 1;
            for waker in std::mem::take(&mut feed.parked) {
                waker.wake();
            }
        }
        // Check the subscribers only once the feed holds half a bound more than anyone may lag:
        // amortised, that is a fraction of a visit per subscriber per broadcast.
        if feed.head_bytes - feed.base_bytes > (self.max_bytes + self.max_bytes / 2) as u64 {
            drop(feed);
            return self.trim(stats);
        }
        Vec::new()
    }

    /// Drops what every subscriber has written; returns the subscribers more than the bound behind.
    fn trim(&self, stats: &Stats) -> Vec<ConnId> {
        let mut feed = self.state.borrow_mut();
        let head = feed.head();
        let mut stalled = Vec::new();
        let mut min = head;
        let mut dropped = Vec::new();
        for (id, conn) in &feed.subscribers {
            let conn = conn.borrow();
            let Some(cursor) = conn.cursor else { continue };
            let behind = feed.behind(cursor);
            if behind > self.max_bytes as u64 {
                // Too far behind: it stops following the feed. A connection that is open gets
                // closed as too slow; one already closing just goes without the rest.
                dropped.push(*id);
                if !conn.closing {
                    stalled.push(*id);
                }
            } else {
                stats.note_queue(behind as usize);
                min = min.min(cursor);
            }
        }
        for id in &dropped {
            if let Some(conn) = feed.subscribers.remove(id) {
                let mut conn = conn.borrow_mut();
                conn.cursor = None;
                conn.stalled = true;
                if conn.closing {
                    // What it still gets is a prefix of its stream, then its closing frame.
                    let last = conn.private.pop_back();
                    conn.private.clear();
                    conn.private_bytes = 0;
                    if let Some((pos, frame)) = last {
                        conn.private_bytes = frame.len();
                        conn.private.push_back((pos, frame));
                    }
                }
            }
        }
        while feed.base < min {
            let entry = feed.entries.pop_front().expect("base < head");
            feed.base += 1;
            feed.base_bytes = entry.end;
        }
        if feed.entries.capacity() > 4 * feed.entries.len().max(1024) {
            feed.entries.shrink_to_fit();
        }
        stalled
    }
}

#[derive(Debug)]
struct ConnState {
    id: ConnId,
    /// Next feed position to write, once subscribed.
    cursor: Option<u64>,
    /// Where the feed ends for this connection (set when it closes).
    until: Option<u64>,
    /// Frames for this connection alone, each after the feed entries before its position.
    private: VecDeque<(u64, Frame)>,
    private_bytes: usize,
    /// A frame a short write cut in two, and how much of it went out: it goes first.
    partial: Option<(Frame, usize)>,
    closing: bool,
    /// The feed left it behind: it fell more than the bound behind.
    stalled: bool,
    /// The writer is gone.
    drained: bool,
    /// The writer, parked until there is something to write.
    writer: Option<Waker>,
    /// The feed round the writer last registered in.
    round: Option<u64>,
    /// The writer's flush deadline, parked until the connection is closing.
    closer: Option<Waker>,
}

/// The room task's handle on one connection's outbound traffic.
#[derive(Debug)]
pub struct Outbox {
    state: Rc<RefCell<ConnState>>,
    feed: Feed,
}

/// The writer task's handle on the same.
#[derive(Debug)]
pub struct Drain {
    state: Rc<RefCell<ConnState>>,
    feed: Feed,
}

/// The two halves of connection `id`'s outbound traffic. Both live on one thread, so they share
/// state without locks or channels.
pub fn outbox(id: ConnId, feed: &Feed) -> (Outbox, Drain) {
    let state = Rc::new(RefCell::new(ConnState {
        id,
        cursor: None,
        until: None,
        private: VecDeque::new(),
        private_bytes: 0,
        partial: None,
        closing: false,
        stalled: false,
        drained: false,
        writer: None,
        round: None,
        closer: None,
    }));
    let feed = feed.clone();
    (
        Outbox {
            state: state.clone(),
            feed: feed.clone(),
        },
        Drain { state, feed },
    )
}

impl Outbox {
    /// Queues a frame for this connection alone, or reports that it is too far behind.
    ///
    /// Frames for one connection (replies, notices) have their own bound, apart from the
    /// connection's lag behind the feed: a reply larger than the bound (the member list of a
    /// big room) still goes out when nothing else of its own is waiting.
    pub fn send(&self, frame: Frame, stats: &Stats) -> Result<(), Overflow> {
        let feed = self.feed.state.borrow();
        let mut conn = self.state.borrow_mut();
        if conn.closing {
            return Ok(());
        }
        let queued = conn.private_bytes;
        if queued > 0 && queued + frame.len() > self.feed.max_bytes {
            return Err(Overflow);
        }
        conn.private_bytes += frame.len();
        stats.note_queue(queued + frame.len());
        conn.private.push_back((feed.head(), frame));
        if let Some(writer) = conn.writer.take() {
            writer.wake();
        }
        Ok(())
    }

    /// From now on this connection gets every broadcast.
    pub fn subscribe(&self) {
        let mut feed = self.feed.state.borrow_mut();
        let mut conn = self.state.borrow_mut();
        if conn.closing || conn.drained || conn.cursor.is_some() {
            return;
        }
        conn.cursor = Some(feed.head());
        feed.subscribers.insert(conn.id, self.state.clone());
        // A writer parked before it followed the feed is not among the feed's parked writers.
        if let Some(writer) = conn.writer.take() {
            writer.wake();
        }
    }

    /// Ends the connection: unless the peer is gone or too slow, what is queued is written and
    /// then the closing frame; a too-slow connection skips its backlog, which it would never
    /// drain. The writer then shuts the socket down.
    /// Returns the reason the connection is told, which is [`CloseReason::TooSlow`] for one the
    /// feed already left behind.
    pub fn close(&self, reason: CloseReason) -> CloseReason {
        let mut feed = self.feed.state.borrow_mut();
        let mut conn = self.state.borrow_mut();
        if conn.closing {
            return reason;
        }
        conn.closing = true;
        // A connection the feed already left behind is too slow, whatever else it is closed for:
        // it is told so, rather than silently missing what it did not read.
        let reason = if conn.stalled && reason != CloseReason::Disconnected {
            CloseReason::TooSlow
        } else {
            reason
        };
        if matches!(reason, CloseReason::TooSlow | CloseReason::Disconnected) {
            conn.private.clear();
            conn.private_bytes = 0;
            conn.cursor = None;
            feed.subscribers.remove(&conn.id);
        }
        if reason == CloseReason::Disconnected {
            conn.partial = None; // nobody is reading; a too-slow peer still gets whole frames
        }
        conn.until = Some(feed.head());
        if reason != CloseReason::Disconnected {
            if let Ok(frame) = chat_proto::encode_to_vec(&ServerMsg::Closing(reason)) {
                conn.private_bytes += frame.len();
                conn.private.push_back((feed.head(), frame.into()));
            }
        }
        for waker in [conn.writer.take(), conn.closer.take()]
            .into_iter()
            .flatten()
        {
            waker.wake();
        }
        reason
    }
}

impl Drop for Outbox {
    /// An outbox dropped without a close (the server is going away) closes without a frame.
    fn drop(&mut self) {
        let _ = self.close(CloseReason::Disconnected);
    }
}

impl Drain {
    /// Parks until there is something to write; false once closing and drained.
    async fn ready(&self) -> bool {
        poll_fn(|cx| {
            let mut feed = self.feed.state.borrow_mut();
            let mut conn = self.state.borrow_mut();
            if conn.has_due(&feed) {
                return Poll::Ready(true);
            }
            if conn.closing {
                return Poll::Ready(false);
            }
            conn.writer = Some(cx.waker().clone());
            if conn.cursor.is_some() && conn.round != Some(feed.round) {
                conn.round = Some(feed.round);
                feed.parked.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Parks until the room closes the connection.
    async fn closing(&self) {
        poll_fn(|cx| {
            let mut conn = self.state.borrow_mut();
            if conn.closing {
                Poll::Ready(())
            } else {
                conn.closer = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Writes what is due with vectored writes straight from the shared frames, until the
    /// socket would block or nothing is due. Allocates nothing: the slices borrow the feed and
    /// the private queue, and only a frame cut by a short write is kept aside.
    fn write_due(&self, socket: &TcpStream, stats: &Stats) -> io::Result<Flushed> {
        loop {
            let written = {
                let feed = self.feed.state.borrow();
                let mut conn = self.state.borrow_mut();
                conn.skip_own(&feed);
                let conn = &*conn;
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let mut count = 0;
                let mut bytes = 0;
                if let Some((frame, offset)) = &conn.partial {
                    slices[0] = IoSlice::new(&frame[*offset..]);
                    count = 1;
                    bytes = frame.len() - offset;
                }
                let mut walk = conn.walk(&feed);
                while count < MAX_SLICES && bytes < WRITE_BATCH {
                    let Some(frame) = walk.next(conn, &feed) else {
                        break;
                    };
                    slices[count] = IoSlice::new(frame);
                    count += 1;
                    bytes += frame.len();
                }
                if count == 0 {
                    return Ok(Flushed::All);
                }
                match (&mut &*socket).write_vectored(&slices[..count]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            stats.writes.fetch_add(1, Relaxed);
            stats.bytes_written.fetch_add(written as u64, Relaxed);
            let frames = self.consume(written);
            stats.frames_written.fetch_add(frames, Relaxed);
        }
    }

    /// Steps over `written` bytes of what was due; returns how many frames were completed.
    fn consume(&self, mut written: usize) -> u64 {
        let feed = self.feed.state.borrow();
        let mut conn = self.state.borrow_mut();
        let mut frames = 0;
        if let Some((frame, offset)) = conn.partial.take() {
            let rest = frame.len() - offset;
            if written < rest {
                conn.partial = Some((frame, offset + written));
                return 0;
            }
            written -= rest;
            frames += 1;
        }
        while written > 0 {
            let Some(frame) = conn.take_next(&feed) else {
                break;
            };
            if written < frame.len() {
                conn.partial = Some((frame, written));
                break;
            }
            written -= frame.len();
            frames += 1;
        }
        frames
    }
}

/// Where a writer stands after writing what it could.
enum Flushed {
    /// Nothing is due.
    All,
    /// The socket's buffer is full: wait until it is writable.
    Blocked,
}

/// A non-consuming walk over a connection's due frames, in the order they must go out.
struct Walk {
    cursor: Option<u64>,
    private: usize,
    end: u64,
}

impl Walk {
    fn next<'a>(&mut self, conn: &'a ConnState, feed: &'a FeedState) -> Option<&'a Frame> {
        loop {
            let next_private = conn.private.get(self.private).map(|(pos, _)| *pos);
            match self.cursor {
                Some(c) if c < self.end && next_private.is_none_or(|p| c < p) => {
                    self.cursor = Some(c + 1);
                    let entry = &feed.entries[(c.max(feed.base) - feed.base) as usize];
                    if entry.except != Some(conn.id) {
                        return Some(&entry.frame);
                    }
                }
                _ => {
                    let (_, frame) = conn.private.get(self.private)?;
                    self.private += 1;
                    return Some(frame);
                }
            }
        }
    }
}

impl ConnState {
    /// Where the feed ends for this connection now.
    fn end(&self, feed: &FeedState) -> u64 {
        self.until.unwrap_or(u64::MAX).min(feed.head())
    }

    fn has_due(&self, feed: &FeedState) -> bool {
        self.partial.is_some()
            || !self.private.is_empty()
            || self.cursor.is_some_and(|c| c < self.end(feed))
    }

    fn walk(&self, feed: &FeedState) -> Walk {
        Walk {
            cursor: self.cursor.map(|c| c.max(feed.base)),
            private: 0,
            end: self.end(feed),
        }
    }

    /// Steps over the broadcasts this connection's own member sent, at the front of what is due.
    fn skip_own(&mut self, feed: &FeedState) {
        if self.partial.is_some() {
            return;
        }
        let end = self.end(feed);
        let next_private = self.private.front().map(|(pos, _)| *pos);
        while let Some(c) = self.cursor {
            let c = c.max(feed.base);
            if c >= end || next_private.is_some_and(|p| c >= p) {
                break;
            }
            if feed.entries[(c - feed.base) as usize].except != Some(self.id) {
                break;
            }
            self.cursor = Some(c + 1);
        }
    }

    /// Takes the next due frame (the same order as [`Walk`]).
    fn take_next(&mut self, feed: &FeedState) -> Option<Frame> {
        let mut walk = self.walk(feed);
        let frame = walk.next(self, feed)?.clone();
        self.cursor = walk.cursor;
        if walk.private > 0 {
            if let Some((_, frame)) = self.private.pop_front() {
                self.private_bytes -= frame.len();
            }
        }
        Some(frame)
    }
}

impl Drop for Drain {
    /// The writer is done: the feed no longer waits for this connection.
    fn drop(&mut self) {
        let id = self.state.borrow().id;
        self.feed.state.borrow_mut().subscribers.remove(&id);
        let mut conn = self.state.borrow_mut();
        conn.cursor = None;
        conn.drained = true;
    }
}

/// Writes everything due, coalescing frames into few large writes, until the room closes the
/// connection or a write fails. A closing connection gets `linger` to flush before the socket is
/// shut down.
pub async fn write_loop(
    stream: Arc<Async<TcpStream>>,
    drain: Drain,
    stats: Arc<Stats>,
    linger: Duration,
) -> std::io::Result<()> {
    let write = async {
        while drain.ready().await {
            if let Flushed::Blocked = drain.write_due(stream.get_ref(), &stats)? {
                stream.writable().await?;
            }
        }
        Ok(())
    };
    // Once closing, the flush is bounded: a peer that does not read cannot hold the socket open.
    let flush_deadline = async {
        drain.closing().await;
        Timer::after(linger).await;
        Err(std::io::ErrorKind::TimedOut.into())
    };
    let result = write.or(flush_deadline).await;
    let _ = stream.get_ref().shutdown(Shutdown::Both);
    result
}

#[cfg(test)]
mod tests;
