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
use crate::passwords::Pool;
use crate::proxied::Door;
use crate::stats::Stats;
use crate::store::{Store, Writer};
use crate::tls::{self, Tls};
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
    serve_with_gateways(listener, None, None, None, None, config, stats, shutdown).await
}

/// [`serve`], with IRC clients on `irc` and the room in a browser on `web`, each when given:
/// one room, whichever way a member comes in. With `metrics`, scrapes and health checks are
/// answered there (`--metrics-addr`). With `tls`, its ports serve the native protocol and IRC
/// over TLS, the web port serves https, and SIGHUP reloads its certificate.
#[allow(clippy::too_many_arguments)]
pub async fn serve_with_gateways(
    listener: async_net::TcpListener,
    irc: Option<async_net::TcpListener>,
    web: Option<async_net::TcpListener>,
    metrics: Option<async_net::TcpListener>,
    tls: Option<Tls>,
    config: ServerConfig,
    stats: Arc<Stats>,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    let ex = Executors::new();
    let (events_tx, events_rx) = async_channel::bounded(ROOM_QUEUE);
    // Live writer tasks, so that shutdown can wait for their flush.
    let writers = Rc::new(Cell::new(0usize));
    let (room, log, store) = enter_room(&config).await?;
    let redis_log = log.map(|log| log.spawn(&ex.reads, events_tx.clone()));
    let pool = Pool::start(events_tx.clone(), stats.clone())?;
    let mut hub = Hub::new(room, config.queue_bytes);
    let (certs, tls_native, tls_irc) = match tls {
        Some(Tls { certs, native, irc }) => (Some(certs), native, irc),
        None => (None, None, None),
    };
    let irc_codec = match irc.is_some() || tls_irc.is_some() {
        true => Some(irc::codec(&config)?.add_to(&mut hub)),
        false => None,
    };
    let irc = irc.zip(irc_codec);
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
        (outbox.clone(), pool),
        events_rx,
        redis_log,
        store,
        stats.clone(),
        writers.clone(),
    ));
    let events = events_tx.clone();
    let conns = Conns::new(&ex, outbox, events, stats.clone(), writers, config.linger);
    // From a trusted proxy, the native and IRC ports (TLS or not) read a PROXY header first.
    let proxied = |listener| {
        let trusted = config.trusted_proxies.clone();
        Door::proxied(listener, trusted, config.room.handshake_timeout)
    };
    let accept = conn::accept_loop(&conns, proxied(listener), &config, None);
    let accept_irc = async {
        match irc {
            Some((listener, codec)) => conns.serve_codec(proxied(listener), codec, None).await,
            None => std::future::pending().await,
        }
    };
    let accept_web = async {
        match web {
            Some((listener, codec)) => {
                let door = Door::plain(listener);
                conns.serve_codec(door, codec, certs.as_ref()).await
            }
            None => std::future::pending().await,
        }
    };
    let accept_tls = async {
        let Some(certs) = certs.as_ref() else {
            return std::future::pending().await;
        };
        let native = async {
            match tls_native {
                Some(listener) => {
                    conn::accept_loop(&conns, proxied(listener), &config, Some(certs)).await
                }
                None => std::future::pending().await,
            }
        };
        let irc = async {
            match tls_irc.zip(irc_codec) {
                Some((listener, codec)) => {
                    conns
                        .serve_codec(proxied(listener), codec, Some(certs))
                        .await
                }
                None => std::future::pending().await,
            }
        };
        native.or(irc).or(tls::reload_on_hangup(certs)).await
    };
    let accept_metrics = async {
        match metrics {
            Some(listener) => metrics::serve(&ex, listener, sources).await,
            None => std::future::pending().await,
        }
    };
    let main = async move {
        let gateways = accept_irc.or(accept_web).or(accept_metrics).or(accept_tls);
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

/// The room, entered before anyone is served: with `--redis`, the node's place in the Redis
/// log it shares; with `--data-dir`, the room as the store kept it, and the store's writer;
/// with `--accounts`, those accounts besides (the file's entry wins over the store's).
async fn enter_room(
    config: &ServerConfig,
) -> io::Result<(Room, Option<crate::redis::Entered>, Option<Writer>)> {
    let (room, log, store) = match (&config.shared, &config.data_dir) {
        (None, None) => {
            log::info!(
                "no --data-dir: history, sequence, accounts and bans are kept in memory only, and lost at restart"
            );
            (local_room(config)?, None, None)
        }
        (None, Some(dir)) => {
            let (store, mut snapshot) = Store::open(dir, config.room.history, new_epoch())?;
            if let Some(path) = &config.accounts {
                let accounts = crate::passwords::read_accounts(path, config.room.max_name_chars)?;
                log::info!("{} accounts from {}", accounts.len(), path.display());
                snapshot
                    .accounts
                    .retain(|a| !accounts.iter().any(|b| b.key == a.key));
                snapshot.accounts.extend(accounts);
            }
            log::info!(
                "data kept in {}: epoch {}, {} chats kept up to seq {}, {} accounts, {} bans, {} mutes",
                dir.join(crate::store::FILE_NAME).display(),
                snapshot.epoch,
                snapshot.history.len(),
                snapshot.seq,
                snapshot.accounts.len(),
                snapshot.bans.len(),
                snapshot.mutes.len(),
            );
            let room = Room::restore(config.room.clone(), snapshot).map(|mut room| {
                room.report_applied(true);
                room
            });
            (room, None, Some(store.spawn()?))
        }
        (Some(_), _) if config.accounts.is_some() => {
            let why = "--accounts is for a room alone: a shared room keeps no accounts yet";
            return Err(io::Error::other(why));
        }
        (Some(shared), _) => {
            let (log, node, snapshot) =
                crate::redis::enter(shared, config.room.max_clients, config.room.history).await?;
            let room = Room::shared(config.room.clone(), node, snapshot);
            (room, Some(log), None)
        }
    };
    Ok((room.map_err(io::Error::other)?, log, store))
}

/// The room alone, with the accounts of `--accounts` if given.
fn local_room(config: &ServerConfig) -> io::Result<Result<Room, chat_core::ConfigError>> {
    let Some(path) = &config.accounts else {
        return Ok(Room::new(config.room.clone(), new_epoch()));
    };
    let accounts = crate::passwords::read_accounts(path, config.room.max_name_chars)?;
    log::info!("{} accounts from {}", accounts.len(), path.display());
    let log = chat_core::Sequencer::new(config.room.max_clients, new_epoch());
    Ok(Room::with_log(
        config.room.clone(),
        log.with_accounts(accounts),
    ))
}

/// How long the room task waits at most between two turns, so that a pause of the whole
/// process is seen even when nothing else wakes it.
const WATCH_EVERY: Duration = Duration::from_millis(200);
/// A gap between two turns of the room task longer than this is a pause: the process did not
/// run (SIGSTOP, swap, a migrated VM) or the thread was starved. The room is told
/// ([`Input::Paused`]) before anything read after it, so that members are not judged by when
/// the server read what they sent. Shorter than any sane rate window (burst / rate).
const PAUSE_AFTER: Duration = Duration::from_millis(500);

/// The one owner of the hub's inputs (and of the shared room's log, which it returns at the
/// end): feeds it, acts on its events, wakes writers, keeps its timer, and notices when it did
/// not run for a while.
async fn room_task(
    config: ServerConfig,
    (outbox, pool): (Rc<Outbox>, Pool),
    events: Receiver<Event>,
    mut redis_log: Option<crate::redis::Log>,
    mut store: Option<Writer>,
    stats: Arc<Stats>,
    writers: Rc<Cell<usize>>,
) -> Option<crate::redis::Log> {
    let linger = config.linger;
    let mut timer = Timer::never();
    // The hub's and the log's next deadline, and the end of the last turn.
    let mut next: Option<Instant> = None;
    let mut last_turn = Instant::now();
    loop {
        let watch = last_turn + WATCH_EVERY;
        timer.set_at(next.map_or(watch, |at| at.min(watch)));
        let event = async { Some(events.recv().await) }.or(async {
            (&mut timer).await;
            None
        });
        let event = event.await;
        let now = Instant::now();
        let event = match event {
            Some(Ok(event)) => Some(event),
            Some(Err(_)) => break,
            None if next.is_some_and(|at| at <= now) => Some(Event::Input(Input::Tick)),
            None => None, // the watch alone
        };
        if now.duration_since(last_turn) > PAUSE_AFTER {
            let secs = now.duration_since(last_turn).as_secs_f64();
            log::warn!(
                "the server did not run for {secs:.1} s (stopped, swapped or starved): \
                 what members sent meanwhile is not held against them"
            );
            let pause = Input::Paused { since: last_turn };
            let (log, store) = (redis_log.as_mut(), store.as_mut());
            next = step((&outbox, &pool), &stats, log, store, |hub, _, now| {
                hub.handle_input(now, pause)
            });
        }
        let Some(event) = event else {
            last_turn = Instant::now();
            continue;
        };
        let shutdown = matches!(event, Event::Input(Input::Shutdown));
        next = step(
            (&outbox, &pool),
            &stats,
            redis_log.as_mut(),
            store.as_mut(),
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
        if let Some(store) = &mut store {
            store.flush().await;
        }
        if shutdown {
            break;
        }
        last_turn = Instant::now();
    }
    // Every connection is closing; give the writers their flush, then return.
    let deadline = Instant::now() + linger + Duration::from_millis(100);
    while writers.get() > 0 && Instant::now() < deadline {
        Timer::after(Duration::from_millis(10)).await;
    }
    if let Some(store) = store
        && !store.close(STORE_CLOSE).await
    {
        log::error!(
            "the store did not finish writing within {STORE_CLOSE:?}: the last entries may be lost"
        );
    }
    redis_log
}

/// How long shutdown waits for the store to write what is queued and close its file.
const STORE_CLOSE: Duration = Duration::from_secs(10);

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
/// step; entries applied are kept for the store; returns the next deadline.
fn step(
    (outbox, pool): (&Outbox, &Pool),
    stats: &Stats,
    mut redis_log: Option<&mut crate::redis::Log>,
    mut store: Option<&mut Writer>,
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
    let mut pending = Vec::new();
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
                // Asked for only when there is a store to keep them (`--data-dir`).
                HubEvent::Applied(entry) => {
                    if let Some(store) = store.as_deref_mut() {
                        store.keep(entry);
                    }
                }
                // Off this thread; a full queue is answered at once.
                HubEvent::Password { ticket, work } => pending.extend(pool.submit(ticket, work)),
                HubEvent::Propose(proposal) => match redis_log.as_deref_mut() {
                    // As the node the room is now: a proposal made before the room started
                    // over is not run as the node it became.
                    Some(log) => log.propose(hub.room().node(), proposal),
                    None => log::error!("driver bug: a room alone proposed {proposal:?}"),
                },
            }
        }
        let next = pending
            .pop()
            .or_else(|| redis_log.as_deref_mut()?.poll_input());
        let Some(input) = next else {
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
    tls_addr: Option<SocketAddr>,
    irc_tls_addr: Option<SocketAddr>,
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
        let (tls, tls_addr, irc_tls_addr) = Self::bind_tls(&config)?;
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
                    tls,
                    config,
                    thread_stats,
                    shutdown,
                ))
            })?;
        Ok(Self {
            addr,
            irc_addr,
            tls_addr,
            irc_tls_addr,
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

    /// With `config.tls`: its certificate, and the TLS ports of `config` bound on its host,
    /// with their addresses. A certificate that cannot be used is an error.
    #[allow(clippy::type_complexity)]
    fn bind_tls(
        config: &ServerConfig,
    ) -> io::Result<(Option<Tls>, Option<SocketAddr>, Option<SocketAddr>)> {
        let Some(files) = &config.tls else {
            return Ok((None, None, None));
        };
        let certs = tls::Certs::load(files).map_err(io::Error::other)?;
        let bind = |port: Option<u16>| -> io::Result<_> {
            let Some(port) = port else {
                return Ok((None, None));
            };
            let listener = listen(&config.host, port, config.reuse_port)?;
            let addr = listener.local_addr()?;
            Ok((
                Some(async_net::TcpListener::try_from(listener)?),
                Some(addr),
            ))
        };
        let (native, native_addr) = bind(config.tls_port)?;
        let (irc, irc_addr) = bind(config.irc_tls_port)?;
        let tls = Tls { certs, native, irc };
        Ok((Some(tls), native_addr, irc_addr))
    }

    /// The address of the native protocol over TLS, when it serves it (`tls_port`).
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The address of IRC over TLS, when it serves it (`irc_tls_port`).
    pub fn irc_tls_addr(&self) -> Option<SocketAddr> {
        self.irc_tls_addr
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
