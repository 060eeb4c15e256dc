//! Connections on one thread: the two executors, accepting and opening connections, the
//! native protocol's reader, the reader that only moves an adapter's bytes, the end-of-stream
//! rule every reader shares, and the [`Event`]s they all send the room task.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use async_channel::Sender;
use chat_core::{CodecId, ConnId, Input};
use chat_proto::{ClientDecoder, ClientMsg, FrameDecoder};
use futures_lite::FutureExt;
use smol::{Async, LocalExecutor, Timer};

use crate::config::ServerConfig;
use crate::outbox::{self, Outbox};
use crate::proxied::{Arrival, Door};
use crate::stats::Stats;
use crate::tls::{Certs, Stream};

/// Bytes read from a socket at once, into a buffer shared by every reader on the thread.
const READ_CHUNK: usize = 64 * 1024;

/// Inputs waiting for the room task; readers wait when it is full.
pub(crate) const ROOM_QUEUE: usize = 4096;

/// The most bytes an adapter's reader hands the room task at once: what waits in its queue
/// stays within `ROOM_QUEUE` times this (16 MiB).
const BYTES_READ: usize = 4096;

/// What the room task is told, in the order the readers produced it.
pub(crate) enum Event {
    /// An input for the room.
    Input(Input),
    /// Bytes read from a connection, for its codec to decode on the room task.
    Bytes(ConnId, Vec<u8>),
    /// What became of a call to Redis, for the shared room's log.
    Redis(crate::redis::Answer),
}

/// Two executors on one thread: readers, the room and the accept loop run before any writer.
///
/// Like Redis's event loop (read and process everything ready, then write), this lets the room
/// handle every input that is ready before writers run, so that each writer finds many frames
/// to send in one call instead of one call per frame.
pub(crate) struct Executors<'a> {
    /// Readers, the room task, the Redis link and the accept loops.
    pub(crate) reads: LocalExecutor<'a>,
    /// Writers.
    writes: LocalExecutor<'a>,
}

impl Executors<'_> {
    /// Two empty executors.
    pub(crate) fn new() -> Self {
        Self {
            reads: LocalExecutor::new(),
            writes: LocalExecutor::new(),
        }
    }

    /// Runs both executors, reads first, until `main` completes.
    ///
    /// A read task runs whenever one is ready, so the room handles every ready input before the
    /// writers go. Only a flood of input (a whole budget of reads in a row) hands the turn to
    /// the writers for up to a budget of theirs, so that input cannot starve output.
    pub(crate) async fn run<T>(&self, main: impl std::future::Future<Output = T>) -> T {
        const BUDGET: usize = 1024;
        let drive = async {
            let (mut streak, mut ticks) = (0, 0usize);
            loop {
                let ran = if streak < BUDGET && self.reads.try_tick() {
                    streak += 1;
                    1
                } else if streak >= BUDGET {
                    streak = 0;
                    (0..BUDGET)
                        .take_while(|_| self.writes.try_tick())
                        .count()
                        .max(1)
                } else {
                    streak = 0;
                    usize::from(self.writes.try_tick())
                };
                if ran == 0 {
                    self.reads.tick().or(self.writes.tick()).await;
                    continue;
                }
                ticks += ran;
                if ticks >= 256 {
                    ticks = 0;
                    // Let `main` and the reactor have their turn.
                    futures_lite::future::yield_now().await;
                }
            }
        };
        main.or(drive).await
    }
}

/// What every accept loop shares: the hub, the room's queue, counters, the executors, and the
/// connection ids (one sequence for every listener).
pub(crate) struct Conns<'e, 'a> {
    ex: &'e Executors<'a>,
    outbox: Rc<Outbox>,
    pub(crate) events: Sender<Event>,
    pub(crate) stats: Arc<Stats>,
    writers: Rc<Cell<usize>>,
    linger: Duration,
    next_id: Cell<u64>,
    /// A read buffer shared by every reader on the thread.
    scratch: Rc<RefCell<Vec<u8>>>,
}

impl<'e, 'a> Conns<'e, 'a> {
    /// Connections on `ex`, whose readers send to `events` and whose writers take from
    /// `outbox`, counted in `writers` and given `linger` to flush once closed.
    pub(crate) fn new(
        ex: &'e Executors<'a>,
        outbox: Rc<Outbox>,
        events: Sender<Event>,
        stats: Arc<Stats>,
        writers: Rc<Cell<usize>>,
        linger: Duration,
    ) -> Self {
        Self {
            ex,
            outbox,
            events,
            stats,
            writers,
            linger,
            next_id: Cell::new(0),
            scratch: Rc::new(RefCell::new(vec![0u8; READ_CHUNK])),
        }
    }

    /// The next connection from `listener`. Accept errors (out of descriptors and the like) are
    /// logged and survived with a backoff.
    pub(crate) async fn accept(
        &self,
        listener: &async_net::TcpListener,
    ) -> (Arc<Async<TcpStream>>, std::net::IpAddr) {
        let mut backoff = Duration::from_millis(5);
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    self.stats.accepted.fetch_add(1, Relaxed);
                    self.stats.connections.fetch_add(1, Relaxed);
                    let _ = stream.set_nodelay(true);
                    return (stream.into(), peer.ip());
                }
                Err(error) => {
                    self.stats.accept_errors.fetch_add(1, Relaxed);
                    log::warn!("accept failed: {error}; retrying in {backoff:?}");
                    Timer::after(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Gives `stream` an id, a place in `codec`'s fan-out and a writer, and tells the room it
    /// opened. `None` once the room task is gone.
    pub(crate) async fn open(
        &self,
        stream: &Stream,
        peer: std::net::IpAddr,
        codec: CodecId,
    ) -> Option<ConnId> {
        self.next_id.set(self.next_id.get() + 1);
        let id = ConnId(self.next_id.get());
        // The writer may run before the room has seen the connection: open its place first.
        self.outbox.hub.borrow_mut().attach(id, codec);
        if self
            .events
            // The peer's address counts towards the per-address limits.
            .send(Event::Input(Input::OpenedFrom(id, peer)))
            .await
            .is_err()
        {
            return None;
        }
        self.writers.set(self.writers.get() + 1);
        let (stats, writers, linger) = (self.stats.clone(), self.writers.clone(), self.linger);
        let (outbox, stream) = (self.outbox.clone(), stream.clone());
        self.ex
            .writes
            .spawn(async move {
                let write = outbox::write_loop(stream, id, outbox, stats.clone(), linger);
                if let Err(error) = write.await {
                    log::debug!("conn {}: write ended: {error}", id.0);
                }
                stats.connections.fetch_sub(1, Relaxed);
                writers.set(writers.get() - 1);
            })
            .detach();
        Some(id)
    }

    /// Runs a connection's reader.
    pub(crate) fn spawn_reader(&self, reader: impl std::future::Future<Output = ()> + 'a) {
        self.ex.reads.spawn(reader).detach();
    }

    /// The next connection through `door` (past its PROXY header, if it comes from a trusted
    /// proxy), with TLS over it when `certs` is given: the stream, the address it counts
    /// under, and the plaintext read before (past a PROXY header on a plain port). `None`
    /// when TLS could not start on it (it is closed).
    async fn arrive(
        &self,
        door: &Door,
        certs: Option<&Certs>,
    ) -> Option<(Stream, std::net::IpAddr, Vec<u8>)> {
        let Arrival {
            stream,
            addr,
            first,
        } = door.arrive(self).await;
        match Stream::new(stream, first, certs, &self.stats) {
            Ok((stream, first)) => Some((stream, addr, first)),
            Err(error) => {
                log::debug!("{addr}: TLS could not start: {error}");
                self.stats.connections.fetch_sub(1, Relaxed);
                None
            }
        }
    }

    /// Accepts connections on `listener` until the server stops, each attached to `codec`
    /// with a reader that only moves its bytes to the room task, where the hub decodes them
    /// (the IRC and web ports); over TLS with `certs`.
    pub(crate) async fn serve_codec(&self, door: Door, codec: CodecId, certs: Option<&Certs>) {
        loop {
            let Some((stream, addr, first)) = self.arrive(&door, certs).await else {
                continue;
            };
            let Some(id) = self.open(&stream, addr, codec).await else {
                return;
            };
            let (events, scratch) = (self.events.clone(), self.scratch.clone());
            self.spawn_reader(read_bytes(stream, id, first, events, scratch));
        }
    }
}

/// Accepts native clients until the server stops; each gets the native reader. Over TLS with
/// `certs`.
pub(crate) async fn accept_loop(
    conns: &Conns<'_, '_>,
    door: Door,
    config: &ServerConfig,
    certs: Option<&Certs>,
) {
    loop {
        let Some((stream, addr, first)) = conns.arrive(&door, certs).await else {
            continue;
        };
        let Some(id) = conns.open(&stream, addr, CodecId::WIRE).await else {
            return;
        };
        let decoder = FrameDecoder::new(config.room.max_frame_bytes);
        let events = conns.events.clone();
        conns.spawn_reader(read_loop(
            stream,
            id,
            first,
            decoder,
            events,
            conns.scratch.clone(),
        ));
    }
}

/// Reads whatever the socket has into the shared scratch buffer, decodes every whole frame in
/// it, and forwards them to the room. An idle connection holds no read buffer of its own.
/// `first` is what was read before (past a PROXY header): decoded first.
async fn read_loop(
    stream: Stream,
    id: ConnId,
    mut first: Vec<u8>,
    mut decoder: FrameDecoder,
    events: Sender<Event>,
    scratch: Rc<RefCell<Vec<u8>>>,
) {
    let mut msgs: Vec<ClientMsg> = Vec::new();
    // Reads each frame in the version the connection's hello says (v2 or v3).
    let mut client = ClientDecoder::new();
    let end = loop {
        // Bytes already read are decoded before waiting for more.
        if first.is_empty() && stream.readable().await.is_err() {
            break Input::Closed(id);
        }
        let mut malformed = false;
        let read = {
            let mut buf = scratch.borrow_mut();
            let read = match std::mem::take(&mut first) {
                first if !first.is_empty() => {
                    buf[..first.len()].copy_from_slice(&first);
                    Ok(first.len())
                }
                _ => stream.read(&mut buf[..]),
            };
            if let Ok(n) = read {
                let mut input = &buf[..n];
                loop {
                    match decoder.decode_with(&mut input, |p| client.decode(p)) {
                        Ok(Some(msg)) => msgs.push(msg),
                        Ok(None) => break,
                        Err(error) => {
                            log::debug!("conn {}: {error}", id.0);
                            malformed = true;
                            break;
                        }
                    }
                }
            }
            read
        };
        for msg in msgs.drain(..) {
            if events
                .send(Event::Input(Input::Received(id, msg)))
                .await
                .is_err()
            {
                return;
            }
        }
        if msgs.capacity() > 64 {
            msgs = Vec::new();
        }
        if malformed {
            break Input::Malformed(id);
        }
        if let Some(end) = read_ended(&read, id) {
            break end;
        }
    };
    let _ = events.send(Event::Input(end)).await;
}

/// Reads whatever the socket has into the shared scratch buffer and hands a copy to the room
/// task, whose hub decodes it with the connection's codec: an adapter's reader does no more.
/// `first` is what was read before (past a PROXY header): handed on first.
async fn read_bytes(
    stream: Stream,
    id: ConnId,
    first: Vec<u8>,
    events: Sender<Event>,
    scratch: Rc<RefCell<Vec<u8>>>,
) {
    if !first.is_empty() && events.send(Event::Bytes(id, first)).await.is_err() {
        return;
    }
    let end = loop {
        if stream.readable().await.is_err() {
            break Input::Closed(id);
        }
        let mut bytes = Vec::new();
        let read = {
            let mut buf = scratch.borrow_mut();
            let read = stream.read(&mut buf[..BYTES_READ]);
            if let Ok(n) = read {
                bytes.extend_from_slice(&buf[..n]);
            }
            read
        };
        if !bytes.is_empty() && events.send(Event::Bytes(id, bytes)).await.is_err() {
            return;
        }
        if let Some(end) = read_ended(&read, id) {
            break end;
        }
    };
    let _ = events.send(Event::Input(end)).await;
}

/// What a read result means for the connection: `Some(Closed)` at the end of the stream or on
/// an error, `None` while it may go on (data, or nothing ready yet). Every reader shares it.
pub(crate) fn read_ended(read: &io::Result<usize>, id: ConnId) -> Option<Input> {
    match read {
        Ok(0) => Some(Input::Closed(id)),
        Ok(_) => None,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            None
        }
        Err(_) => Some(Input::Closed(id)),
    }
}
