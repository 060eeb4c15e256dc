//! The writer task of one connection: takes what the hub's fan-out has due and writes it with
//! vectored writes straight from the shared frames. Everything about what is due, in what order,
//! and when a connection is too slow lives in [`chat_core::Fanout`]; this is only the I/O.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Poll, Waker};
use std::time::Duration;

use chat_core::{ConnId, ConnMap, Due, Hub};
use futures_lite::FutureExt;
use futures_lite::future::poll_fn;
use smol::Timer;

use crate::stats::Stats;
use crate::tls::Stream;

/// Whole frames go into one write until it holds this many bytes...
const WRITE_BATCH: usize = 256 * 1024;

/// ...or this many frames (the kernel's IOV_MAX).
const MAX_SLICES: usize = 1024;

/// What every writer on the thread takes from: the hub (shared with the room task), and the
/// writers' wakers.
#[derive(Debug)]
pub struct Outbox {
    /// The room and its fan-out.
    pub hub: RefCell<Hub>,
    /// Writers parked until the fan-out names them.
    writers: RefCell<ConnMap<Waker>>,
    /// Writers waiting for their connection to close, to start the flush deadline.
    closers: RefCell<ConnMap<Waker>>,
}

impl Outbox {
    /// Shares `hub` with the writers.
    pub fn new(hub: Hub) -> Rc<Self> {
        Rc::new(Self {
            hub: RefCell::new(hub),
            writers: RefCell::default(),
            closers: RefCell::default(),
        })
    }

    /// Wakes the writers the hub named since the last call.
    pub fn wake_writers(&self) {
        let mut hub = self.hub.borrow_mut();
        let mut writers = self.writers.borrow_mut();
        while let Some(conn) = hub.poll_wake() {
            if let Some(waker) = writers.remove(&conn) {
                waker.wake();
            }
        }
    }

    /// `conn` was closed: its writer's flush deadline starts now.
    pub fn closed(&self, conn: ConnId) {
        if let Some(waker) = self.closers.borrow_mut().remove(&conn) {
            waker.wake();
        }
    }
}

/// What one write step did.
pub(crate) enum Step {
    Wrote,
    Blocked,
    Done,
}

/// Writes what is due with `write` (a vectored write to the socket, or to a TLS connection),
/// once: waits (registering the writer) when nothing is.
pub(crate) fn write_step(
    outbox: &Outbox,
    conn: ConnId,
    write: &mut dyn FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    stats: &Stats,
    waker: &Waker,
) -> Poll<io::Result<Step>> {
    let mut hub = outbox.hub.borrow_mut();
    let fanout = hub.fanout_of(conn);
    let (due, result) = {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let (mut count, mut bytes) = (0, 0);
        let due = fanout.due(conn, |frame| {
            slices[count] = IoSlice::new(frame);
            count += 1;
            bytes += frame.len();
            count < MAX_SLICES && bytes < WRITE_BATCH
        });
        let result = match due {
            Due::Write => loop {
                match write(&slices[..count]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break Some(other),
                }
            },
            Due::Wait | Due::Done => None,
        };
        (due, result)
    };
    match (due, result) {
        (Due::Done, _) => Poll::Ready(Ok(Step::Done)),
        (Due::Wait, _) | (Due::Write, None) => {
            outbox.writers.borrow_mut().insert(conn, waker.clone());
            Poll::Pending
        }
        (Due::Write, Some(Ok(0))) => Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
        (Due::Write, Some(Ok(n))) => {
            let frames = fanout.consumed(conn, n);
            stats.writes.fetch_add(1, Relaxed);
            stats.bytes_written.fetch_add(n as u64, Relaxed);
            stats.frames_written.fetch_add(frames as u64, Relaxed);
            Poll::Ready(Ok(Step::Wrote))
        }
        (Due::Write, Some(Err(e))) if e.kind() == io::ErrorKind::WouldBlock => {
            Poll::Ready(Ok(Step::Blocked))
        }
        (Due::Write, Some(Err(e))) => Poll::Ready(Err(e)),
    }
}

/// Writes everything due, coalescing frames into few large writes, until the connection is
/// closed and flushed or a write fails. A closing connection gets `linger` to flush before the
/// socket is shut down.
pub(crate) async fn write_loop(
    stream: Stream,
    conn: ConnId,
    outbox: Rc<Outbox>,
    stats: Arc<Stats>,
    linger: Duration,
) -> io::Result<()> {
    let write = async {
        loop {
            let step = poll_fn(|cx| stream.poll_write(&outbox, conn, &stats, cx.waker()));
            match step.await? {
                Step::Wrote => {}
                Step::Blocked => stream.socket().writable().await?,
                Step::Done => return Ok(()),
            }
        }
    };
    // Once closing, the flush is bounded: a peer that does not read cannot hold the socket open.
    let flush_deadline = async {
        poll_fn(|cx| {
            if outbox.hub.borrow_mut().fanout_of(conn).is_closing(conn) {
                Poll::Ready(())
            } else {
                outbox.closers.borrow_mut().insert(conn, cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        Timer::after(linger).await;
        Err(io::ErrorKind::TimedOut.into())
    };
    let result = write.or(flush_deadline).await;
    if result.is_ok() {
        stream.finish();
    }
    let _ = stream.socket().get_ref().shutdown(Shutdown::Both);
    outbox.hub.borrow_mut().detach(conn);
    outbox.writers.borrow_mut().remove(&conn);
    outbox.closers.borrow_mut().remove(&conn);
    result
}
