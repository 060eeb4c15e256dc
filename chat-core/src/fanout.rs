//! Fan-out: the bytes each connection still has to write, without I/O.
//!
//! A broadcast is appended once to a shared feed ([`Fanout::publish`]); every connection that
//! follows the feed keeps a cursor into it, so a broadcast costs the same for ten members or ten
//! thousand. Frames for one connection alone ([`Fanout::send`]) wait in a small private queue,
//! each placed after the feed entries published before it. A writer asks for what is due
//! ([`Fanout::due`]), hands those slices to one vectored write, and reports how many bytes went
//! out ([`Fanout::consumed`]).
//!
//! The one decision about slowness is made here: a connection that owes more than `max_bytes`
//! of the feed, or has more than `max_bytes` of its own frames waiting, is reported by
//! [`Fanout::poll_stalled`] and stops receiving; whoever owns the room closes it as too slow.
//! A member's own broadcasts, which it never gets back, are not owed: a cursor held back by
//! them hands what it does owe to the connection's private queue instead. The feed is trimmed
//! behind the slowest cursor, so memory is bounded by the bound, not by the number of members
//! times the bound.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::ConnId;
use crate::conns::ConnMap;

/// One encoded frame, shared by every connection it goes to.
pub type Frame = Arc<[u8]>;

/// What a writer should do next, from [`Fanout::due`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Slices were handed over: write them, then report with [`Fanout::consumed`].
    Write,
    /// Nothing is due: wait until [`Fanout::poll_wake`] names this connection.
    Wait,
    /// The connection is closed and everything it was owed has been handed over (or it is not
    /// known: open it before its writer starts): shut it down.
    Done,
}

#[derive(Debug)]
struct FeedEntry {
    frame: Frame,
    /// The member that sent it, who does not get it back.
    except: Option<ConnId>,
    /// Bytes published up to and including this entry.
    end: u64,
}

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Open, not following the feed (in its handshake): its own frames only.
    Open,
    /// Open and following the feed from `cursor`.
    Following { cursor: u64 },
    /// The feed left it behind (too slow); it waits for the room to close it.
    Behind,
    /// Closed: it gets the feed up to `until` (while `cursor` is kept) with its own frames in
    /// their places, the closing frame (if there is one) last.
    Closing { cursor: Option<u64>, until: u64 },
}

#[derive(Debug)]
struct Out {
    state: State,
    /// Frames for this connection alone, each after the feed entries before its position.
    private: VecDeque<(u64, Frame)>,
    private_bytes: usize,
    /// A frame a short write cut in two, and how much of it went out: it goes first.
    partial: Option<(Frame, usize)>,
    /// Its writer waits to be named by `poll_wake`.
    waiting: bool,
    /// It is in `Fanout::parked` (waiting for the next publish).
    parked: bool,
}

impl Out {
    #[inline]
    fn cursor(&self) -> Option<u64> {
        match self.state {
            State::Following { cursor } => Some(cursor),
            State::Closing { cursor, .. } => cursor,
            State::Open | State::Behind => None,
        }
    }

    fn set_cursor(&mut self, to: u64) {
        match &mut self.state {
            State::Following { cursor } => *cursor = to,
            State::Closing {
                cursor: Some(cursor),
                ..
            } => *cursor = to,
            _ => {}
        }
    }

    /// Where the feed ends for this connection now.
    fn end(&self, head: u64) -> u64 {
        match self.state {
            State::Closing { until, .. } => until.min(head),
            _ => head,
        }
    }
}

/// The shared feed and every connection's place in it.
#[derive(Debug)]
pub struct Fanout {
    max_bytes: usize,
    /// Position of `entries[0]`.
    base: u64,
    /// Bytes published before `entries[0]`.
    base_bytes: u64,
    entries: VecDeque<FeedEntry>,
    /// Bytes published in all.
    head_bytes: u64,
    conns: ConnMap<Out>,
    /// Writers waiting for the next publish.
    parked: Vec<ConnId>,
    /// Writers to wake.
    wake: Vec<ConnId>,
    /// Connections found too far behind, for the room to close.
    stalled: Vec<ConnId>,
    /// The most bytes one connection that kept up had waiting.
    peak_queued: usize,
}

impl Fanout {
    /// A fan-out whose connections may fall at most `max_bytes` behind.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            base: 0,
            base_bytes: 0,
            entries: VecDeque::new(),
            head_bytes: 0,
            conns: ConnMap::default(),
            parked: Vec::new(),
            wake: Vec::new(),
            stalled: Vec::new(),
            peak_queued: 0,
        }
    }

    /// The bound on what one connection may have waiting.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The most bytes one connection that kept up has had waiting so far.
    pub fn peak_queued(&self) -> usize {
        self.peak_queued
    }

    /// Entries held in the feed now (published, not yet written by everyone).
    pub fn feed_len(&self) -> usize {
        self.entries.len()
    }

    /// Connections known (open, or closing with bytes still to write).
    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    fn head(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    /// Feed bytes a connection at `cursor` still has to write.
    fn behind(&self, cursor: u64) -> u64 {
        behind(
            self.base,
            self.base_bytes,
            self.head_bytes,
            &self.entries,
            cursor,
        )
    }

    /// A new connection: it gets only its own frames until [`Fanout::follow`]. Opening one that
    /// is open changes nothing.
    pub fn open(&mut self, conn: ConnId) {
        self.conns.entry(conn).or_insert(Out {
            state: State::Open,
            private: VecDeque::new(),
            private_bytes: 0,
            partial: None,
            waiting: false,
            parked: false,
        });
    }

    /// From now on `conn` gets every broadcast published (but its own).
    pub fn follow(&mut self, conn: ConnId) {
        let head = self.head();
        let Some(out) = self.conns.get_mut(&conn) else {
            return;
        };
        if out.state == State::Open {
            out.state = State::Following { cursor: head };
            // A writer that waited before it followed is not among those a publish wakes.
            if out.waiting {
                out.waiting = false;
                self.wake.push(conn);
            }
        }
    }

    /// `conn` stops following the feed and gets its own frames only, as before
    /// [`Fanout::follow`]: what it is owed of the feed so far moves to its own queue first.
    /// Owed more than the bound, it is reported stalled.
    pub fn unfollow(&mut self, conn: ConnId) {
        let head = self.head();
        let Some(out) = self.conns.get_mut(&conn) else {
            return;
        };
        if !matches!(out.state, State::Following { .. }) {
            return;
        }
        if adopt_owed(conn, out, self.base, &self.entries, head, self.max_bytes) {
            out.state = State::Open;
            if out.waiting && !out.private.is_empty() {
                out.waiting = false;
                self.wake.push(conn);
            }
        } else {
            out.state = State::Behind;
            self.stalled.push(conn);
        }
    }

    /// Appends a broadcast for every follower but `except`, and wakes the writers that wait.
    pub fn publish(&mut self, frame: Frame, except: Option<ConnId>) {
        self.head_bytes += frame.len() as u64;
        let end = self.head_bytes;
        self.entries.push_back(FeedEntry { frame, except, end });
        for conn in self.parked.drain(..) {
            if let Some(out) = self.conns.get_mut(&conn) {
                out.parked = false;
                if out.waiting {
                    out.waiting = false;
                    self.wake.push(conn);
                }
            }
        }
        // Check the followers only once the feed holds half a bound more than anyone may lag:
        // amortised, that is a fraction of a visit per follower per broadcast.
        if self.head_bytes - self.base_bytes > (self.max_bytes + self.max_bytes / 2) as u64 {
            self.trim();
        }
    }

    /// Drops what every follower has written; a follower that owes more than the bound stops
    /// following and, unless it is already closing, is reported stalled.
    fn trim(&mut self) {
        let head = self.head();
        let mut min = head;
        let mut peak = self.peak_queued;
        for (id, out) in self.conns.iter_mut() {
            // A member's own broadcasts, which it skips, are no lag.
            if out.partial.is_none() {
                skip_own(*id, out, self.base, &self.entries, head);
            }
            let Some(cursor) = out.cursor() else { continue };
            let behind = behind(
                self.base,
                self.base_bytes,
                self.head_bytes,
                &self.entries,
                cursor,
            );
            if behind <= self.max_bytes as u64 {
                peak = peak.max(behind as usize);
                min = min.min(cursor);
                continue;
            }
            // Held back, perhaps by its own broadcasts (which it never gets) behind one frame its
            // writer has not had its turn to write: a member that sends fast is not slow. What it
            // still owes goes to its own queue, and it lets go of the feed.
            if adopt_owed(*id, out, self.base, &self.entries, head, self.max_bytes) {
                peak = peak.max(out.private_bytes);
                if let Some(cursor) = out.cursor() {
                    min = min.min(cursor);
                }
                continue;
            }
            match &mut out.state {
                State::Closing { cursor, .. } => {
                    // What it still gets is a prefix of its stream, then its closing frame.
                    *cursor = None;
                    let last = out.private.pop_back();
                    out.private.clear();
                    out.private_bytes = 0;
                    if let Some((pos, frame)) = last {
                        out.private_bytes = frame.len();
                        out.private.push_back((pos, frame));
                    }
                }
                state => {
                    *state = State::Behind;
                    self.stalled.push(*id);
                }
            }
        }
        self.peak_queued = peak;
        while self.base < min {
            let entry = self.entries.pop_front().expect("base < head");
            self.base += 1;
            self.base_bytes = entry.end;
        }
        if self.entries.capacity() > 4 * self.entries.len().max(1024) {
            self.entries.shrink_to_fit();
        }
    }

    /// Queues a frame for `conn` alone, after what was published before it.
    ///
    /// A connection's own frames have their own bound, apart from its lag behind the feed: a
    /// frame larger than the bound (the member list of a big room) still goes out when nothing
    /// else of its own is waiting. Past the bound the connection is reported stalled.
    pub fn send(&mut self, conn: ConnId, frame: Frame) {
        let head = self.head();
        let Some(out) = self.conns.get_mut(&conn) else {
            return;
        };
        if matches!(out.state, State::Closing { .. } | State::Behind) {
            return;
        }
        let queued = out.private_bytes;
        if queued > 0 && queued + frame.len() > self.max_bytes {
            out.state = State::Behind;
            self.stalled.push(conn);
            return;
        }
        out.private_bytes += frame.len();
        self.peak_queued = self.peak_queued.max(out.private_bytes);
        out.private.push_back((head, frame));
        if out.waiting {
            out.waiting = false;
            self.wake.push(conn);
        }
    }

    /// Closes `conn`: what is due is written, then `last` (the closing frame), then the writer
    /// is [`Due::Done`]. With `skip_backlog` (a peer too slow to drain it, or gone) only `last`
    /// is written.
    pub fn close(&mut self, conn: ConnId, last: Option<Frame>, skip_backlog: bool) {
        let head = self.head();
        let Some(out) = self.conns.get_mut(&conn) else {
            return;
        };
        if let State::Closing { .. } = out.state {
            return;
        }
        let skip = skip_backlog || out.state == State::Behind;
        let cursor = if skip { None } else { out.cursor() };
        if skip {
            out.private.clear();
            out.private_bytes = 0;
        }
        if skip && last.is_none() {
            out.partial = None; // nobody is reading; a too-slow peer still gets whole frames
        }
        out.state = State::Closing {
            cursor,
            until: head,
        };
        if let Some(frame) = last {
            out.private_bytes += frame.len();
            out.private.push_back((head, frame));
        }
        if out.waiting {
            out.waiting = false;
            self.wake.push(conn);
        }
    }

    /// Moves `conn`, open and not yet following the feed, to `to` (another codec's fan-out):
    /// its own frames keep their order, ahead of anything `to` publishes from now on, and a
    /// waiting writer is woken to look there. Returns false, moving nothing, for a connection
    /// that follows the feed, is closing or behind, or is not here (or already there).
    pub(crate) fn transfer(&mut self, conn: ConnId, to: &mut Fanout) -> bool {
        let open = self
            .conns
            .get(&conn)
            .is_some_and(|o| o.state == State::Open);
        if !open || to.conns.contains_key(&conn) {
            return false;
        }
        let Some(mut out) = self.conns.remove(&conn) else {
            return false;
        };
        let head = to.head();
        for (pos, _) in &mut out.private {
            *pos = head;
        }
        out.parked = false;
        if out.waiting {
            out.waiting = false;
            to.wake.push(conn);
        }
        to.peak_queued = to.peak_queued.max(out.private_bytes);
        to.conns.insert(conn, out);
        true
    }

    /// The writer of `conn` is gone (the socket failed or was shut down): forget it.
    pub fn remove(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
        // Only a publish drains the parked writers: a quiet room with churn would keep the
        // ids of those gone. Dropped once they outnumber the connections, so amortised O(1).
        if self.parked.len() > 2 * self.conns.len() + 64 {
            let conns = &self.conns;
            self.parked.retain(|c| conns.contains_key(c));
        }
    }

    /// The next connection found too far behind since the last call: close it as too slow.
    pub fn poll_stalled(&mut self) -> Option<ConnId> {
        self.stalled.pop()
    }

    /// The next writer to wake: something became due for it.
    pub fn poll_wake(&mut self) -> Option<ConnId> {
        self.wake.pop()
    }

    /// Hands what `conn` has due, in order, to `visit`, until `visit` returns false (it has
    /// enough for one write) or nothing more is due. The slices borrow the shared frames: nothing
    /// is copied. When nothing is due, the writer is registered to be woken (see [`Due`]).
    pub fn due<'a>(&'a mut self, conn: ConnId, mut visit: impl FnMut(&'a [u8]) -> bool) -> Due {
        let head = self.head();
        let Some(out) = self.conns.get_mut(&conn) else {
            return Due::Done;
        };
        if out.partial.is_none() {
            skip_own(conn, out, self.base, &self.entries, head);
        }
        let has_due = out.partial.is_some()
            || !out.private.is_empty()
            || out.cursor().is_some_and(|c| c < out.end(head));
        if !has_due {
            if let State::Closing { .. } = out.state {
                return Due::Done;
            }
            out.waiting = true;
            if out.cursor().is_some() && !out.parked {
                out.parked = true;
                self.parked.push(conn);
            }
            return Due::Wait;
        }
        let out = &self.conns[&conn];
        if let Some((frame, offset)) = &out.partial
            && !visit(&frame[*offset..])
        {
            return Due::Write;
        }
        let mut walk = Walk::new(out, self.base, head);
        while let Some(frame) = walk.next(conn, out, self.base, &self.entries) {
            if !visit(frame) {
                break;
            }
        }
        Due::Write
    }

    /// `written` bytes of what [`Fanout::due`] handed over went out. Returns how many frames
    /// were completed.
    pub fn consumed(&mut self, conn: ConnId, mut written: usize) -> usize {
        let head = self.head();
        let Some(out) = self.conns.get_mut(&conn) else {
            return 0;
        };
        let mut frames = 0;
        if let Some((frame, offset)) = out.partial.take() {
            let rest = frame.len() - offset;
            if written < rest {
                out.partial = Some((frame, offset + written));
                return 0;
            }
            written -= rest;
            frames += 1;
        }
        // One walk over what was handed out: only a frame cut short is cloned; the cursor and
        // the private queue move once, at the end.
        let mut walk = Walk::new(out, self.base, head);
        let mut cut = None;
        while written > 0 {
            let Some(frame) = walk.next(conn, out, self.base, &self.entries) else {
                break;
            };
            if written < frame.len() {
                cut = Some((frame.clone(), written));
                break;
            }
            written -= frame.len();
            frames += 1;
        }
        if let Some(cursor) = walk.cursor {
            out.set_cursor(cursor);
        }
        for _ in 0..walk.private {
            if let Some((_, frame)) = out.private.pop_front() {
                out.private_bytes -= frame.len();
            }
        }
        out.partial = cut;
        frames
    }

    /// Whether `conn` has anything due now (for tests of lost wakeups).
    pub fn has_due(&self, conn: ConnId) -> bool {
        let head = self.head();
        self.conns.get(&conn).is_some_and(|out| {
            out.partial.is_some()
                || !out.private.is_empty()
                || out.cursor().is_some_and(|c| {
                    let end = out.end(head);
                    (c.max(self.base)..end)
                        .any(|p| self.entries[(p - self.base) as usize].except != Some(conn))
                })
        })
    }

    /// Whether `conn` was closed (or is unknown): its writer flushes what it owes and finishes.
    pub fn is_closing(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .is_none_or(|out| matches!(out.state, State::Closing { .. }))
    }

    /// Whether the feed left `conn` behind (it was reported stalled).
    pub fn is_behind(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|out| out.state == State::Behind)
    }

    /// Bytes `conn` still has to write from the feed.
    pub fn lag(&self, conn: ConnId) -> Option<u64> {
        let cursor = self.conns.get(&conn)?.cursor()?;
        Some(self.behind(cursor))
    }
}

/// Feed bytes a connection at `cursor` still has to write: everything published after the
/// entries before `cursor`. A free function so that `trim` can call it while it holds the
/// connections mutably.
fn behind(
    base: u64,
    base_bytes: u64,
    head_bytes: u64,
    entries: &VecDeque<FeedEntry>,
    cursor: u64,
) -> u64 {
    let before = match cursor.checked_sub(base + 1) {
        Some(i) => entries.get(i as usize).map_or(head_bytes, |e| e.end),
        None => base_bytes,
    };
    head_bytes - before
}

/// Moves the feed frames `conn` still owes (those between its cursor and where its feed ends,
/// but its own broadcasts) into its private queue, in the order they were due, and moves its
/// cursor to that end (none when closing): it holds the feed back no longer. Done only when
/// they fit in its own bound with what it already queued; returns whether they did.
///
/// Order: a private frame at position `p` goes out before feed entry `p`, so feed entry `c`
/// joins the queue after the private frames at positions up to `c`, at position `c + 1`.
fn adopt_owed(
    conn: ConnId,
    out: &mut Out,
    base: u64,
    entries: &VecDeque<FeedEntry>,
    head: u64,
    max_bytes: usize,
) -> bool {
    let Some(cursor) = out.cursor() else {
        return false;
    };
    let (from, end) = (cursor.max(base), out.end(head));
    let owed_entries = || {
        (from..end)
            .map(|c| (c, &entries[(c - base) as usize]))
            .filter(|(_, e)| e.except != Some(conn))
    };
    let owed: usize = owed_entries().map(|(_, e)| e.frame.len()).sum();
    if out.private_bytes + owed > max_bytes {
        return false;
    }
    let mut queued = std::mem::take(&mut out.private).into_iter().peekable();
    let mut merged = VecDeque::with_capacity(queued.len() + owed_entries().count());
    for (c, entry) in owed_entries() {
        while let Some(private) = queued.next_if(|(p, _)| *p <= c) {
            merged.push_back(private);
        }
        merged.push_back((c + 1, entry.frame.clone()));
    }
    merged.extend(queued);
    out.private = merged;
    out.private_bytes += owed;
    match &mut out.state {
        State::Following { cursor } => *cursor = head,
        State::Closing { cursor, .. } => *cursor = None,
        State::Open | State::Behind => {}
    }
    true
}

/// Steps over the broadcasts a connection's own member sent, at the front of what is due.
#[inline]
fn skip_own(conn: ConnId, out: &mut Out, base: u64, entries: &VecDeque<FeedEntry>, head: u64) {
    let end = out.end(head);
    let next_private = out.private.front().map(|(pos, _)| *pos);
    while let Some(c) = out.cursor() {
        let c = c.max(base);
        if c >= end || next_private.is_some_and(|p| c >= p) {
            break;
        }
        if entries[(c - base) as usize].except != Some(conn) {
            break;
        }
        out.set_cursor(c + 1);
    }
}

/// A non-consuming walk over a connection's due frames, in the order they must go out: the feed
/// and its private queue merged by position, its own broadcasts skipped.
struct Walk {
    cursor: Option<u64>,
    /// Private frames stepped over.
    private: usize,
    end: u64,
}

impl Walk {
    #[inline]
    fn new(out: &Out, base: u64, head: u64) -> Self {
        Self {
            cursor: out.cursor().map(|c| c.max(base)),
            private: 0,
            end: out.end(head),
        }
    }

    #[inline]
    fn next<'a>(
        &mut self,
        conn: ConnId,
        out: &'a Out,
        base: u64,
        entries: &'a VecDeque<FeedEntry>,
    ) -> Option<&'a Frame> {
        loop {
            let next_private = out.private.get(self.private).map(|(pos, _)| *pos);
            match self.cursor {
                Some(c) if c < self.end && next_private.is_none_or(|p| c < p) => {
                    self.cursor = Some(c + 1);
                    let entry = &entries[(c - base) as usize];
                    if entry.except != Some(conn) {
                        return Some(&entry.frame);
                    }
                }
                _ => {
                    let (_, frame) = out.private.get(self.private)?;
                    self.private += 1;
                    return Some(frame);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
