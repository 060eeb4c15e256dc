//! A connection's outbound queue, bounded in bytes, and the writer task that drains it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use chat_proto::{CloseReason, ServerMsg};
use futures_lite::{AsyncWriteExt, FutureExt};
use smol::{Async, Timer};

use crate::stats::Stats;

/// Whole frames go into one write until it holds this many bytes.
const WRITE_BATCH: usize = 64 * 1024;

/// One encoded frame, shared by every queue it was broadcast to.
pub type Frame = Arc<[u8]>;

/// The queue was full: the connection cannot keep up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

#[derive(Debug)]
struct State {
    frames: VecDeque<Frame>,
    /// Bytes queued or being written: what the bound applies to.
    bytes: usize,
    /// Set once the room closed the connection: write what is queued, then shut down.
    closing: bool,
    /// The writer is parked and waits for a notification.
    parked: bool,
}

/// The sending half of a connection's queue, held by the room task.
#[derive(Debug, Clone)]
pub struct Outbox {
    state: Rc<RefCell<State>>,
    max_bytes: usize,
    wake: async_channel::Sender<()>,
    closed: async_channel::Sender<()>,
}

/// The draining half, owned by the writer task.
#[derive(Debug)]
pub struct Drain {
    state: Rc<RefCell<State>>,
    wake: async_channel::Receiver<()>,
    closed: async_channel::Receiver<()>,
}

/// A queue bounded to `max_bytes` (one frame larger than that is still accepted into an empty queue).
pub fn outbox(max_bytes: usize) -> (Outbox, Drain) {
    let state = Rc::new(RefCell::new(State {
        frames: VecDeque::new(),
        bytes: 0,
        closing: false,
        parked: false,
    }));
    let (wake_tx, wake_rx) = async_channel::bounded(1);
    let (closed_tx, closed_rx) = async_channel::bounded(1);
    (
        Outbox {
            state: state.clone(),
            max_bytes,
            wake: wake_tx,
            closed: closed_tx,
        },
        Drain {
            state,
            wake: wake_rx,
            closed: closed_rx,
        },
    )
}

impl Outbox {
    /// Queues a frame, or reports that the queue is full. Never waits.
    pub fn push(&self, frame: Frame, stats: &Stats) -> Result<(), Overflow> {
        let mut state = self.state.borrow_mut();
        if state.closing {
            return Ok(());
        }
        if state.bytes > 0 && state.bytes + frame.len() > self.max_bytes {
            return Err(Overflow);
        }
        state.bytes += frame.len();
        stats.note_queue(state.bytes);
        state.frames.push_back(frame);
        self.notify(&mut state);
        Ok(())
    }

    /// Ends the connection: unless the peer is already gone, the closing frame goes out after
    /// what is queued; a connection closed as too slow drops its queue first, since it
    /// would never drain. The writer then shuts the socket down.
    pub fn close(&self, reason: CloseReason) {
        let mut state = self.state.borrow_mut();
        if state.closing {
            return;
        }
        if matches!(reason, CloseReason::TooSlow | CloseReason::Disconnected) {
            let dropped: usize = state.frames.drain(..).map(|f| f.len()).sum();
            state.bytes -= dropped;
        }
        if reason != CloseReason::Disconnected {
            if let Ok(frame) = chat_proto::encode_to_vec(&ServerMsg::Closing(reason)) {
                state.bytes += frame.len();
                state.frames.push_back(frame.into());
            }
        }
        state.closing = true;
        self.notify(&mut state);
        self.closed.close();
    }

    fn notify(&self, state: &mut State) {
        if state.parked {
            state.parked = false;
            let _ = self.wake.try_send(());
        }
    }
}

impl Drain {
    /// Moves whole frames into `buf` up to the batch size; returns how many.
    fn fill(&self, buf: &mut Vec<u8>) -> usize {
        let mut state = self.state.borrow_mut();
        let mut count = 0;
        while let Some(frame) = state.frames.front() {
            if !buf.is_empty() && buf.len() + frame.len() > WRITE_BATCH {
                break;
            }
            buf.extend_from_slice(frame);
            state.frames.pop_front();
            count += 1;
        }
        count
    }

    /// Parks until there is something to do; returns false once closed and drained.
    async fn ready(&self) -> bool {
        loop {
            {
                let mut state = self.state.borrow_mut();
                if !state.frames.is_empty() {
                    return true;
                }
                if state.closing {
                    return false;
                }
                state.parked = true;
            }
            if self.wake.recv().await.is_err() {
                return false; // The room dropped the outbox without closing: stop.
            }
        }
    }
}

/// Writes everything queued, coalescing frames into few large writes, until the room closes the
/// connection or a write fails. A closing connection gets `linger` to flush before the socket is
/// shut down.
pub async fn write_loop(
    stream: Arc<Async<TcpStream>>,
    drain: Drain,
    stats: Arc<Stats>,
    linger: Duration,
) -> std::io::Result<()> {
    let write = async {
        let mut buf = Vec::new();
        while drain.ready().await {
            let frames = drain.fill(&mut buf);
            (&*stream).write_all(&buf).await?;
            stats.writes.fetch_add(1, Relaxed);
            stats.frames_written.fetch_add(frames as u64, Relaxed);
            stats.bytes_written.fetch_add(buf.len() as u64, Relaxed);
            drain.state.borrow_mut().bytes -= buf.len();
            buf.clear();
            if buf.capacity() > WRITE_BATCH * 2 {
                buf = Vec::new(); // one oversized frame (a long member list) is not kept
            }
            if drain.state.borrow().frames.is_empty() && buf.capacity() > 0 {
                buf = Vec::new(); // idle connections hold no buffer
            }
        }
        Ok(())
    };
    // Once closing, the flush is bounded: a peer that does not read cannot hold the socket open.
    let flush_deadline = async {
        let _ = drain.closed.recv().await;
        Timer::after(linger).await;
        Err(std::io::ErrorKind::TimedOut.into())
    };
    let result = write.or(flush_deadline).await;
    let _ = stream.get_ref().shutdown(Shutdown::Both);
    result
}
