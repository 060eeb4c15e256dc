//! The wiring: the hub and its codecs, the room task that owns it, the accept loops of every
//! listener, the Redis link when the room is shared, shutdown, and [`RunningServer`]. What a
//! connection is (executors, readers, ids) is in `conn`; writers are in `outbox`.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use chat_core::{CodecId, Hub, HubEvent, Input, Notice, Room, UsageError};
use chat_proto::CloseReason;
use futures_lite::FutureExt;
use smol::Timer;

use crate::config::ServerConfig;
use crate::conn::{self, Conns, Event, Executors, ROOM_QUEUE};
use crate::outbox::Outbox;
use crate::stats::Stats;
use crate::{irc, metrics, web};

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
    serve_with_gateways(listener, None, None, None, config, stats, shutdown).await
}

/// [`serve`], with IRC clients on `irc` and the room in a browser on `web`, each when given:
/// one room, whichever way a member comes in. With `metrics`, scrapes and health checks are
/// answered there (`--metrics-addr`).
pub async fn serve_with_gateways(
    listener: async_net::TcpListener,
    irc: Option<async_net::TcpListener>,
    web: Option<async_net::TcpListener>,
    metrics: Option<async_net::TcpListener>,
    config: ServerConfig,
    stats: Arc<Stats>,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    let ex = Executors::new();
    let (events_tx, events_rx) = async_channel::bounded(ROOM_QUEUE);
    // Live writer tasks, so that shutdown can wait for their flush.
    let writers = Rc::new(Cell::new(0usize));
    let (room, log) = enter_room(&config).await?;
    let redis_log = log.map(|log| log.spawn(&ex.reads, events_tx.clone()));
    let mut hub = Hub::new(room, config.queue_bytes);
    let irc = match irc {
        Some(listener) => Some((listener, irc::codec(&config)?.add_to(&mut hub))),
        None => None,
    };
    let web = web.map(|listener| {
        let listen = listener.local_addr().ok().map(|a| a.ip());
        (
            listener,
            hub.add_codec(Box::new(web::codec(&config, listen))),
        )
    });
    let outbox = Outbox::new(hub);
    let lanes = [
        (CodecId::WIRE, "native_v3"),
        (CodecId::WIRE_V2, "native_v2"),
    ]
    .into_iter()
    .chain(irc.as_ref().map(|(_, codec)| (*codec, "irc")))
    .chain(web.as_ref().map(|(_, codec)| (*codec, "web")));
    let sources = metrics::Sources {
        outbox: outbox.clone(),
        stats: stats.clone(),
        lanes: metrics::Lanes(lanes.collect()),
    };
    let room = ex.reads.spawn(room_task(
        config.clone(),
        outbox.clone(),
        events_rx,
        redis_log,
        stats.clone(),
        writers.clone(),
    ));
    let events = events_tx.clone();
    let conns = Conns::new(&ex, outbox, events, stats.clone(), writers, config.linger);
    let accept = conn::accept_loop(&conns, listener, &config);
    let accept_irc = async {
        match irc {
            Some((listener, codec)) => conns.serve_codec(listener, codec).await,
            None => std::future::pending().await,
        }
    };
    let accept_web = async {
        match web {
            Some((listener, codec)) => conns.serve_codec(listener, codec).await,
            None => std::future::pending().await,
        }
    };
    let accept_metrics = async {
        match metrics {
            Some(listener) => metrics::serve(&ex, listener, sources).await,
            None => std::future::pending().await,
        }
    };
    let main = async move {
        let gateways = accept_irc.or(accept_web).or(accept_metrics);
        accept.or(gateways).or(shutdown).await;
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

/// The room, and with `--redis` the node's place in the Redis log it shares, entered before
/// anyone is served.
async fn enter_room(config: &ServerConfig) -> io::Result<(Room, Option<crate::redis::Entered>)> {
    let (room, log) = match &config.shared {
        None => (Room::new(config.room.clone(), new_epoch()), None),
        Some(shared) => {
            let (log, node, snapshot) =
                crate::redis::enter(shared, config.room.max_clients, config.room.history).await?;
            let room = Room::shared(config.room.clone(), node, snapshot);
            (room, Some(log))
        }
    };
    Ok((room.map_err(io::Error::other)?, log))
}

/// The one owner of the hub's inputs (and of the shared room's log, which it returns at the
/// end): feeds it, acts on its events, wakes writers, keeps its timer.
async fn room_task(
    config: ServerConfig,
    outbox: Rc<Outbox>,
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
            Some(Ok(event)) => event,
            Some(Err(_)) => break,
            None => Event::Input(Input::Tick),
        };
        let shutdown = matches!(event, Event::Input(Input::Shutdown));
        let next = step(
            &outbox,
            &stats,
            redis_log.as_mut(),
            |hub, log, now| match event {
                Event::Input(input) => hub.handle_input(now, input),
                Event::Bytes(conn, bytes) => hub.handle_bytes(now, conn, &bytes),
                Event::Redis(answer) => {
                    if let Some(log) = log {
                        log.handle_answer(answer);
                    }
                    Ok(())
                }
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

/// For `/readyz`: a shared room's node is out of the room from the moment its lease ran out
/// unrenewed until the log speaks to it again (an entry applied, or the room started over).
fn note_lease(stats: &Stats, input: &Input) {
    match input {
        Input::Lost { .. } => stats.lease_lost.store(true, Relaxed),
        Input::Applied(_) | Input::Resync { .. } if stats.lease_lost.load(Relaxed) => {
            stats.lease_lost.store(false, Relaxed);
        }
        _ => {}
    }
}

/// Feeds one input to the hub (or hands the shared log an answer) and carries out what
/// follows: proposals go to the shared log, and what it gives the room goes in, in the same
/// step; returns the next deadline.
fn step(
    outbox: &Outbox,
    stats: &Stats,
    mut redis_log: Option<&mut crate::redis::Log>,
    feed: impl FnOnce(&mut Hub, Option<&mut crate::redis::Log>, Instant) -> Result<(), UsageError>,
) -> Option<Instant> {
    let mut hub = outbox.hub.borrow_mut();
    let now = Instant::now();
    // The room's entries carry wall-clock times: anchor them here, the core reads no clock.
    hub.set_clock(now, unix_ms());
    if let Err(error) = feed(&mut hub, redis_log.as_deref_mut(), now) {
        log::error!("driver bug: {error}");
    }
    if let Some(log) = redis_log.as_deref_mut() {
        log.handle_timeout();
    }
    let mut closed = Vec::new();
    loop {
        while let Some(event) = hub.poll_event() {
            match event {
                HubEvent::Notice(Notice::Joined { name, .. }) => {
                    stats.joins.fetch_add(1, Relaxed);
                    log::info!("{name} joined");
                }
                HubEvent::Notice(Notice::Left { name, reason }) => {
                    stats.leaves[metrics::close_index(reason)].fetch_add(1, Relaxed);
                    log::info!("{name} left ({reason})");
                }
                HubEvent::Refused { conn, refusal } => {
                    stats.refused[metrics::refusal_index(&refusal)].fetch_add(1, Relaxed);
                    log::debug!("conn {}: hello refused ({refusal})", conn.0);
                }
                HubEvent::Notice(Notice::Renamed { from, to }) => {
                    log::info!("{from} is now {to}");
                }
                HubEvent::Notice(Notice::Moderated { by, action }) => {
                    log::info!("operator {by}: {}", moderation_line(&action));
                }
                HubEvent::Closed { conn, reason } => {
                    stats.closes[metrics::close_index(reason)].fetch_add(1, Relaxed);
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
        note_lease(stats, &input);
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
        outbox.closed(conn);
    }
    outbox.wake_writers();
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
    metrics_addr: Option<SocketAddr>,
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
        let metrics = config
            .metrics_addr
            .map(std::net::TcpListener::bind)
            .transpose()?;
        let metrics_addr = metrics.as_ref().map(|l| l.local_addr()).transpose()?;
        let metrics = metrics.map(async_net::TcpListener::try_from).transpose()?;
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
                    metrics,
                    config,
                    thread_stats,
                    shutdown,
                ))
            })?;
        Ok(Self {
            addr,
            irc_addr,
            web_addr,
            metrics_addr,
            stats,
            stop,
            thread: Some(thread),
        })
    }

    /// The address of the room in a browser, when it serves one.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web_addr
    }

    /// The address of its metrics and health checks, when it serves them (`metrics_addr`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
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

/// A room epoch for a room alone: random, never 0 (0 means "unknown" to a resuming client), so
/// that a client resuming after a restart gets the new room's history, not a gap.
fn new_epoch() -> u64 {
    crate::random::seed().max(1)
}

/// Milliseconds since the Unix epoch by the system clock (0 before 1970).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An operator's action as the server's log says it: `kicked bob (spam)`, `banned
/// 192.0.2.0/24 until 1796334000000`.
fn moderation_line(action: &chat_proto::ModAction) -> String {
    use chat_proto::ModAction;
    let until = |u: &Option<u64>| u.map_or_else(String::new, |ms| format!(" until {ms}"));
    let why = |r: &Option<String>| r.as_ref().map_or_else(String::new, |r| format!(" ({r})"));
    match action {
        ModAction::Kicked { name, reason } => format!("kicked {name}{}", why(reason)),
        ModAction::Banned {
            target,
            until: end,
            reason,
        } => format!("banned {target}{}{}", until(end), why(reason)),
        ModAction::Unbanned { target } => format!("unbanned {target}"),
        ModAction::Muted { name, until: end } => format!("muted {name}{}", until(end)),
        ModAction::Unmuted { name } => format!("unmuted {name}"),
    }
}
