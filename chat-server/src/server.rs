//! The driver: accept loop, room task, and a reader and a writer task per connection, all on
//! one thread's executor.

use std::cell::{Cell, RefCell};
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use chat_core::{CodecId, ConnId, Hub, HubEvent, Input, Notice, Room, UsageError};
use chat_proto::{ClientMsg, CloseReason, FrameDecoder};
use futures_lite::FutureExt;
use smol::{Async, LocalExecutor, Timer};

use crate::config::ServerConfig;
use crate::outbox::{self, Shared};
use crate::stats::Stats;
use crate::web;
use chat_gateway::web::WebCodec;

/// Bytes read from a socket at once, into a buffer shared by every reader on the thread.
const READ_CHUNK: usize = 64 * 1024;

/// Inputs waiting for the room task; readers wait when it is full.
const ROOM_QUEUE: usize = 4096;

/// What the room task is told, in the order the readers produced it.
pub(crate) enum Event {
    /// An input for the room.
    Input(Input),
    /// Bytes a protocol adapter made itself for one connection (an answer the room has no part
    /// in), queued in order with everything the room sends it.
    Raw(ConnId, Vec<u8>),
    /// Runs on the room task when it gets here: an adapter's per-connection codec state that
    /// must change exactly between the inputs before it and after it.
    Call(Box<dyn FnOnce() + Send>),
    /// What became of a call to Redis, for the shared room's log.
    Redis(crate::redis::Answer),
}

/// Runs the server on `listener` until `shutdown` completes, then closes every connection
/// with a shutting-down frame, lets writers flush for at most `config.linger`, and returns.
///
/// Everything runs on the calling thread: one task owns the [`Room`]; each connection has a
/// reader task and a writer task. The room task never waits on a socket.
pub async fn serve(
    listener: async_net::TcpListener,
    config: ServerConfig,
    stats: Arc<Stats>,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    serve_with_gateways(listener, None, None, config, stats, shutdown).await
}

/// [`serve`], with IRC clients on `irc` and the room in a browser on `web`, each when given:
/// one room, whichever way a member comes in.
pub async fn serve_with_gateways(
    listener: async_net::TcpListener,
    irc: Option<async_net::TcpListener>,
    web: Option<async_net::TcpListener>,
    config: ServerConfig,
    stats: Arc<Stats>,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    let ex = Executors {
        reads: LocalExecutor::new(),
        writes: LocalExecutor::new(),
    };
    let (events_tx, events_rx) = async_channel::bounded(ROOM_QUEUE);
    // Live writer tasks, so that shutdown can wait for their flush.
    let writers = Rc::new(Cell::new(0usize));
    // With `--redis`, the room's log is a Redis stream: join it before serving anyone.
    let (room, log) = match &config.shared {
        None => (Room::new(config.room.clone()), None),
        Some(shared) => {
            let (log, node, snapshot) =
                crate::redis::enter(shared, config.room.max_clients, config.room.history).await?;
            let room = Room::shared(config.room.clone(), node, snapshot);
            (room, Some(log))
        }
    };
    let room = room.map_err(io::Error::other)?;
    let redis_log = log.map(|log| log.spawn(&ex.reads, events_tx.clone()));
    let mut hub = Hub::new(room, config.queue_bytes);
    let irc = irc.map(|listener| {
        let gateway = crate::irc::Gateway::new(&config);
        let codec = hub.add_codec(Box::new(gateway.codec()));
        (listener, gateway, codec)
    });
    let web = web.map(|listener| (listener, hub.add_codec(Box::new(WebCodec::default()))));
    let shared = Shared::new(hub);
    let room = ex.reads.spawn(room_task(
        config.clone(),
        shared.clone(),
        events_rx,
        redis_log,
        stats.clone(),
        writers.clone(),
    ));
    let conns = Conns {
        ex: &ex,
        shared: shared.clone(),
        events: events_tx.clone(),
        stats: stats.clone(),
        writers,
        linger: config.linger,
        next_id: Cell::new(0),
        scratch: Rc::new(RefCell::new(vec![0u8; READ_CHUNK])),
    };
    let accept = accept_loop(&conns, listener, &config);
    let accept_irc = async {
        match irc {
            Some((listener, gateway, codec)) => gateway.accept_loop(&conns, listener, codec).await,
            None => std::future::pending().await,
        }
    };
    let accept_web = async {
        match web {
            Some((listener, codec)) => web::accept_loop(&conns, &config, listener, codec).await,
            None => std::future::pending().await,
        }
    };
    let main = async move {
        accept.or(accept_irc).or(accept_web).or(shutdown).await;
        log::info!("shutting down: closing every connection");
        let _ = events_tx.send(Event::Input(Input::Shutdown)).await;
        events_tx.close();
        if let Some(log) = room.await {
            log.retire(CloseReason::ServerShutdown).await;
        }
    };
    ex.run(main).await;
    Ok(())
}

/// Two executors on one thread: readers, the room and the accept loop run before any writer.
///
/// Like Redis's event loop (read and process everything ready, then write), this lets the room
/// handle every input that is ready before writers run, so that each writer finds many frames
/// to send in one call instead of one call per frame.
struct Executors<'a> {
    reads: LocalExecutor<'a>,
    writes: LocalExecutor<'a>,
}

impl Executors<'_> {
    /// Runs both executors, reads first, until `main` completes.
    ///
    /// A read task runs whenever one is ready, so the room handles every ready input before the
    /// writers go. Only a flood of input (a whole budget of reads in a row) hands the turn to
    /// the writers for up to a budget of theirs, so that input cannot starve output.
    async fn run<T>(&self, main: impl std::future::Future<Output = T>) -> T {
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
    pub(crate) shared: Rc<Shared>,
    pub(crate) events: Sender<Event>,
    pub(crate) stats: Arc<Stats>,
    writers: Rc<Cell<usize>>,
    linger: Duration,
    next_id: Cell<u64>,
    /// A read buffer shared by every reader on the thread.
    pub(crate) scratch: Rc<RefCell<Vec<u8>>>,
}

impl<'a> Conns<'_, 'a> {
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

    /// Gives `stream` an id (handed to `prepare` first), a place in `codec`'s fan-out and a writer, and tells the room it
    /// opened. `None` once the room task is gone.
    pub(crate) async fn open(
        &self,
        stream: &Arc<Async<TcpStream>>,
        peer: std::net::IpAddr,
        codec: CodecId,
        prepare: impl FnOnce(ConnId),
    ) -> Option<ConnId> {
        self.next_id.set(self.next_id.get() + 1);
        let id = ConnId(self.next_id.get());
        // The writer may run before the room has seen the connection: open its place first.
        prepare(id);
        self.shared.hub.borrow_mut().attach(id, codec);
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
        let (shared, stream) = (self.shared.clone(), stream.clone());
        self.ex
            .writes
            .spawn(async move {
                let write = outbox::write_loop(stream, id, shared, stats.clone(), linger);
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
}

async fn accept_loop(
    conns: &Conns<'_, '_>,
    listener: async_net::TcpListener,
    config: &ServerConfig,
) {
    loop {
        let (stream, peer) = conns.accept(&listener).await;
        let Some(id) = conns.open(&stream, peer, CodecId::WIRE, |_| {}).await else {
            return;
        };
        let decoder = FrameDecoder::new(config.room.max_frame_bytes);
        let events = conns.events.clone();
        conns.spawn_reader(read_loop(
            stream,
            id,
            decoder,
            events,
            conns.scratch.clone(),
        ));
    }
}

/// Reads whatever the socket has into the shared scratch buffer, decodes every whole frame in
/// it, and forwards them to the room. An idle connection holds no read buffer of its own.
async fn read_loop(
    stream: Arc<Async<TcpStream>>,
    id: ConnId,
    mut decoder: FrameDecoder,
    events: Sender<Event>,
    scratch: Rc<RefCell<Vec<u8>>>,
) {
    let mut msgs: Vec<ClientMsg> = Vec::new();
    let end = loop {
        if stream.readable().await.is_err() {
            break Input::Closed(id);
        }
        let mut malformed = false;
        let read = {
            let mut buf = scratch.borrow_mut();
            let read = stream.get_ref().read(&mut buf[..]);
            if let Ok(n) = read {
                let mut input = &buf[..n];
                loop {
                    match decoder.decode::<ClientMsg>(&mut input) {
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

/// The one owner of the hub's inputs (and of the shared room's log, which it returns at the
/// end): feeds it, acts on its events, wakes writers, keeps its timer.
async fn room_task(
    config: ServerConfig,
    shared: Rc<Shared>,
    events: Receiver<Event>,
    mut redis_log: Option<crate::redis::Log>,
    stats: Arc<Stats>,
    writers: Rc<Cell<usize>>,
) -> Option<crate::redis::Log> {
    let linger = config.linger;
    let mut timer = Timer::never();
    loop {
        let event = async { Some(events.recv().await) }.or(async {
            (&mut timer).await;
            None
        });
        let event = match event.await {
            Some(Ok(Event::Call(call))) => {
                call();
                continue;
            }
            Some(Ok(event)) => event,
            Some(Err(_)) => break,
            None => Event::Input(Input::Tick),
        };
        let shutdown = matches!(event, Event::Input(Input::Shutdown));
        let next = step(
            &shared,
            &stats,
            redis_log.as_mut(),
            |hub, log, now| match event {
                Event::Input(input) => hub.handle_input(now, input),
                Event::Raw(conn, bytes) => hub.send_raw(now, conn, &bytes),
                Event::Redis(answer) => {
                    if let Some(log) = log {
                        log.handle_answer(answer);
                    }
                    Ok(())
                }
                Event::Call(_) => Ok(()), // run above
            },
        );
        if shutdown {
            break;
        }
        match next {
            Some(at) => timer.set_at(at),
            None => timer = Timer::never(),
        }
    }
    // Every connection is closing; give the writers their flush, then return.
    let deadline = Instant::now() + linger + Duration::from_millis(100);
    while writers.get() > 0 && Instant::now() < deadline {
        Timer::after(Duration::from_millis(10)).await;
    }
    redis_log
}

/// Feeds one input to the hub (or queues raw bytes, or hands the shared log an answer) and
/// carries out what follows: proposals go to the shared log, and what it gives the room goes
/// in, in the same step; returns the next deadline.
fn step(
    shared: &Shared,
    stats: &Stats,
    mut redis_log: Option<&mut crate::redis::Log>,
    feed: impl FnOnce(&mut Hub, Option<&mut crate::redis::Log>, Instant) -> Result<(), UsageError>,
) -> Option<Instant> {
    let mut hub = shared.hub.borrow_mut();
    if let Err(error) = feed(&mut hub, redis_log.as_deref_mut(), Instant::now()) {
        log::error!("driver bug: {error}");
    }
    if let Some(log) = redis_log.as_deref_mut() {
        log.handle_timeout();
    }
    let mut closed = Vec::new();
    loop {
        while let Some(event) = hub.poll_event() {
            match event {
                HubEvent::Notice(Notice::Joined { name, .. }) => log::info!("{name} joined"),
                HubEvent::Notice(Notice::Left { name, reason }) => {
                    log::info!("{name} left ({reason})");
                }
                HubEvent::Closed { conn, reason } => {
                    if reason == CloseReason::TooSlow {
                        stats.too_slow.fetch_add(1, Relaxed);
                    }
                    log::debug!("conn {}: closing ({reason})", conn.0);
                    closed.push(conn);
                }
                HubEvent::Propose(proposal) => match redis_log.as_deref_mut() {
                    // As the node the room is now: a proposal made before the room started
                    // over is not run as the node it became.
                    Some(log) => log.propose(hub.room().node(), proposal),
                    None => log::error!("driver bug: a room alone proposed {proposal:?}"),
                },
            }
        }
        let Some(input) = redis_log.as_deref_mut().and_then(|log| log.poll_input()) else {
            break;
        };
        if let Err(error) = hub.handle_input(Instant::now(), input) {
            log::error!("driver bug: {error}");
        }
    }
    stats
        .members
        .store(hub.room().member_count() as u64, Relaxed);
    stats
        .max_queued
        .fetch_max(hub.peak_queued() as u64, Relaxed);
    let mut next = hub.poll_timeout();
    if let Some(at) = redis_log.as_deref().and_then(|log| log.poll_timeout()) {
        next = Some(next.map_or(at, |next| next.min(at)));
    }
    drop(hub);
    for conn in closed {
        shared.closed(conn);
    }
    shared.wake_writers();
    next
}

/// Binds the listening socket; with `reuse_port`, other processes may bind the same port
/// (SO_REUSEPORT) and the kernel spreads connections among them.
pub fn listen(host: &str, port: u16, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs;
    if !reuse_port {
        return std::net::TcpListener::bind((host, port));
    }
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// A server running on its own thread: for tests and for embedding in a program that has
/// other things to do.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    irc_addr: Option<SocketAddr>,
    web_addr: Option<SocketAddr>,
    stats: Arc<Stats>,
    stop: Sender<()>,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl RunningServer {
    /// Starts a server on `listener` (bind it to port 0 for a free port). With
    /// `config.irc_port`, IRC clients are served too, on that port of `config.host`.
    pub fn start(listener: std::net::TcpListener, config: ServerConfig) -> io::Result<Self> {
        Self::start_with_web(listener, None, config)
    }

    /// [`RunningServer::start`], with the room in a browser on `web` when given.
    pub fn start_with_web(
        listener: std::net::TcpListener,
        web: Option<std::net::TcpListener>,
        config: ServerConfig,
    ) -> io::Result<Self> {
        let web_addr = web.as_ref().map(|w| w.local_addr()).transpose()?;
        let web = web.map(async_net::TcpListener::try_from).transpose()?;
        let addr = listener.local_addr()?;
        let listener = async_net::TcpListener::try_from(listener)?;
        let irc = match config.irc_port {
            Some(port) => Some(listen(&config.host, port, config.reuse_port)?),
            None => None,
        };
        let irc_addr = irc.as_ref().map(|l| l.local_addr()).transpose()?;
        let irc = irc.map(async_net::TcpListener::try_from).transpose()?;
        let stats = Arc::new(Stats::default());
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("chat-server".into())
            .spawn(move || {
                let shutdown = async move {
                    let _ = stopped.recv().await;
                };
                smol::block_on(serve_with_gateways(
                    listener,
                    irc,
                    web,
                    config,
                    thread_stats,
                    shutdown,
                ))
            })?;
        Ok(Self {
            addr,
            irc_addr,
            web_addr,
            stats,
            stop,
            thread: Some(thread),
        })
    }

    /// The address of the room in a browser, when it serves one.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web_addr
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address IRC clients connect to, if it serves them.
    pub fn irc_addr(&self) -> Option<SocketAddr> {
        self.irc_addr
    }

    /// Its counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Shuts it down as on SIGTERM and waits until it has finished.
    pub fn shutdown(mut self) -> io::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> io::Result<()> {
        self.stop.close();
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("server thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}
