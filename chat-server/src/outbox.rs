//! A connection's outbound queue, bounded in bytes, and the writer task that drains it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use chat_proto::{CloseReason, ServerMsg};
use futures_lite::FutureExt;
use smol::{Async, Timer};

use crate::stats::Stats;

/// Whole frames go into one write until it holds this many bytes...
const WRITE_BATCH: usize = 256 * 1024;

/// ...or this many frames (well under the kernel's IOV_MAX of 1024).
const MAX_SLICES: usize = 512;

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
    /// Moves whole frames into `batch`, up to the batch limits; returns their bytes.
    fn fill(&self, batch: &mut Vec<Frame>) -> usize {
        let mut state = self.state.borrow_mut();
        let mut bytes = 0;
        while let Some(frame) = state.frames.front() {
            if !batch.is_empty() && (bytes + frame.len() > WRITE_BATCH || batch.len() == MAX_SLICES)
            {
                break;
            }
            bytes += frame.len();
            batch.extend(state.frames.pop_front());
        }
        bytes
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
        let mut batch: Vec<Frame> = Vec::new();
        while drain.ready().await {
            let bytes = drain.fill(&mut batch);
            write_frames(&stream, &batch, &stats).await?;
            stats.frames_written.fetch_add(batch.len() as u64, Relaxed);
            stats.bytes_written.fetch_add(bytes as u64, Relaxed);
            drain.state.borrow_mut().bytes -= bytes;
            batch.clear();
            if drain.state.borrow().frames.is_empty() {
                batch = Vec::new(); // idle connections hold no batch
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

/// Writes every frame of `batch` with vectored writes straight from the shared frames: no copy
/// into a per-connection buffer. Counts each write call.
async fn write_frames(stream: &Async<TcpStream>, batch: &[Frame], stats: &Stats) -> io::Result<()> {
    let (mut first, mut offset) = (0, 0);
    while first < batch.len() {
        let written = stream
            .write_with(|mut s| {
                let mut slices = Vec::with_capacity(batch.len() - first);
                slices.push(IoSlice::new(&batch[first][offset..]));
                slices.extend(batch[first + 1..].iter().map(|f| IoSlice::new(f)));
                s.write_vectored(&slices)
            })
            .await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        stats.writes.fetch_add(1, Relaxed);
        // Step over what was written: whole frames, then into the next one.
        let mut left = written;
        while left > 0 {
            let rest = batch[first].len() - offset;
            if left >= rest {
                left -= rest;
                first += 1;
                offset = 0;
            } else {
                offset += left;
                left = 0;
            }
        }
    }
    Ok(())
}
