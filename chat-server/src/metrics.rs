//! `--metrics-addr`: the server's counters in the Prometheus text format at `/metrics`, and
//! `/healthz` and `/readyz`, on a listener of its own.
//!
//! The room task and the writers count as they already do ([`Stats`]); a scrape reads those
//! counters and asks the hub what only it knows (members by protocol, chat messages), then
//! builds the exposition with `prometheus-client`. A scrape runs on the server's thread between
//! two room steps, holds the hub for one walk of its connections, and never waits on the room.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use chat_core::CodecId;
use chat_proto::{CloseReason, Refusal};
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::conn::Executors;
use crate::outbox::Outbox;
use crate::stats::Stats;

/// The most bytes of a request read: a request line and a few headers.
const MAX_REQUEST: usize = 2048;
/// How long a scraper has to send its request, and to take the answer.
const DEADLINE: Duration = Duration::from_secs(2);
/// Scrapes served at once; more are closed unanswered.
const MAX_OPEN: usize = 8;

/// Which codec lane is which protocol, for `chat_members{protocol}`.
#[derive(Debug, Clone)]
pub(crate) struct Lanes(pub(crate) Vec<(CodecId, &'static str)>);

/// Everything a scrape reads.
#[derive(Debug)]
pub(crate) struct Sources {
    pub(crate) outbox: Rc<Outbox>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) lanes: Lanes,
}

/// Serves scrapes on `listener` until the server stops; each on a task of its own.
pub(crate) async fn serve(ex: &Executors<'_>, listener: async_net::TcpListener, sources: Sources) {
    let sources = Rc::new(sources);
    let open = Rc::new(Cell::new(0usize));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, most likely: try again a little later.
            smol::Timer::after(Duration::from_millis(50)).await;
            continue;
        };
        if open.get() >= MAX_OPEN {
            continue; // dropped: closed unanswered
        }
        open.set(open.get() + 1);
        let (sources, open) = (sources.clone(), open.clone());
        ex.reads
            .spawn(async move {
                let _ = answer(stream, &sources)
                    .or(async {
                        smol::Timer::after(DEADLINE).await;
                        Ok(())
                    })
                    .await;
                open.set(open.get() - 1);
            })
            .detach();
    }
}

/// Reads one request, writes one response, closes.
async fn answer(mut stream: async_net::TcpStream, sources: &Sources) -> std::io::Result<()> {
    let mut buf = [0u8; MAX_REQUEST];
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        if len == buf.len() {
            return respond(&mut stream, "431 Request Header Fields Too Large", "", "").await;
        }
        match stream.read(&mut buf[len..]).await? {
            0 => return Ok(()),
            n => len += n,
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut words = head.lines().next().unwrap_or("").split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let known = matches!(path, "/metrics" | "/healthz" | "/readyz");
    if !known {
        return respond(&mut stream, "404 Not Found", TEXT, "not found\n").await;
    }
    if method != "GET" {
        return respond(&mut stream, "405 Method Not Allowed", TEXT, "GET only\n").await;
    }
    match path {
        "/metrics" => {
            let body = exposition(sources);
            respond(&mut stream, "200 OK", prometheus_text::CONTENT_TYPE, &body).await
        }
        "/healthz" => respond(&mut stream, "200 OK", TEXT, "ok\n").await,
        // A room alone is in the room whenever it serves; a node of a shared room serves only
        // after it has entered the room, and is out while its lease has run out.
        _ if sources.stats.lease_lost.load(Relaxed) => {
            let body = "out of the room: its lease ran out\n";
            respond(&mut stream, "503 Service Unavailable", TEXT, body).await
        }
        _ => respond(&mut stream, "200 OK", TEXT, "ok\n").await,
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

async fn respond(
    stream: &mut async_net::TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Allow: GET\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await
}

type Labels = Vec<(&'static str, &'static str)>;

/// The metrics now, in the Prometheus text format.
pub(crate) fn exposition(sources: &Sources) -> String {
    let stats = &sources.stats;
    let mut registry = Registry::with_prefix("chat");
    let members = Family::<Labels, Gauge>::default();
    let chats = {
        let hub = sources.outbox.hub.borrow();
        for &(codec, protocol) in &sources.lanes.0 {
            let n = hub.members_of(codec) as i64;
            members.get_or_create(&vec![("protocol", protocol)]).set(n);
        }
        hub.chats()
    };
    registry.register("members", "Members in the room through this node", members);
    let gauge = |registry: &mut Registry, name: &str, help: &str, value: u64| {
        let g = Gauge::<i64>::default();
        g.set(value as i64);
        registry.register(name, help, g);
    };
    let in_room = u64::from(!stats.lease_lost.load(Relaxed));
    gauge(
        &mut registry,
        "ready",
        "1 while in the room (what /readyz says)",
        in_room,
    );
    gauge(
        &mut registry,
        "connections",
        "Connections open now",
        load(&stats.connections),
    );
    gauge(
        &mut registry,
        "queue_peak_bytes",
        "The most bytes queued for one connection that kept up",
        load(&stats.max_queued),
    );
    gauge(
        &mut registry,
        "password_queue_peak",
        "The most password checks that waited at once for a hashing thread",
        load(&stats.password_queue_peak),
    );
    let counters: [(&str, &str, u64); 12] = [
        (
            "password_checks",
            "Password checks and hashes done (Argon2id runs)",
            load(&stats.password_checks),
        ),
        (
            "password_busy",
            "Password checks refused because the hashing queue was full",
            load(&stats.password_busy),
        ),
        ("accepted", "Connections accepted", load(&stats.accepted)),
        (
            "accept_errors",
            "Accept calls that failed",
            load(&stats.accept_errors),
        ),
        (
            "joins",
            "Members that joined the room (every node's, in a shared room)",
            load(&stats.joins),
        ),
        ("messages", "Chat messages the room broadcast", chats),
        (
            "deliveries",
            "Frames written to connections",
            load(&stats.frames_written),
        ),
        ("writes", "Socket write calls", load(&stats.writes)),
        (
            "bytes_out",
            "Bytes written to connections",
            load(&stats.bytes_written),
        ),
        (
            "slow_closes",
            "Connections closed as too slow",
            load(&stats.too_slow),
        ),
        (
            "tls_handshakes",
            "TLS handshakes completed",
            load(&stats.tls_handshakes),
        ),
        (
            "tls_handshake_failures",
            "TLS handshakes that failed, or that the connection ended before",
            load(&stats.tls_failures),
        ),
    ];
    for (name, help, value) in counters {
        let c = Counter::<u64>::default();
        c.inc_by(value);
        registry.register(name, help, c);
    }
    register_by_reason(&mut registry, stats);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_text::encode(&mut out, &registry);
    out
}

/// The counters by reason: leaves and closes by close reason, refused hellos by refusal.
fn register_by_reason(registry: &mut Registry, stats: &Stats) {
    let by_reason = |counts: &[std::sync::atomic::AtomicU64], codes: &[&'static str]| {
        let family = Family::<Labels, Counter>::default();
        for (count, &code) in counts.iter().zip(codes) {
            family
                .get_or_create(&vec![("reason", code)])
                .inc_by(load(count));
        }
        family
    };
    let close_codes = CloseReason::ALL.map(CloseReason::code);
    let (leaves, closes) = (&stats.leaves, &stats.closes);
    let help = "Members that left the room, by reason (every node's, in a shared room)";
    registry.register("leaves", help, by_reason(leaves, &close_codes));
    let help = "Connections closed by the room, by reason";
    registry.register("closes", help, by_reason(closes, &close_codes));
    let help = "Hellos refused, by reason";
    registry.register("refused_hellos", help, by_reason(&stats.refused, &REFUSALS));
}

fn load(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(Relaxed)
}

/// The label of each kind of refusal, in the order of [`refusal_index`].
pub(crate) const REFUSALS: [&str; 11] = [
    "name_taken",
    "name_invalid",
    "unsupported_version",
    "server_full",
    "already_joined",
    "unavailable",
    "too_many_connections",
    "wrong_password",
    "name_registered",
    "account_required",
    "banned",
];

/// Where `refusal` is counted in [`Stats::refused`].
pub(crate) fn refusal_index(refusal: &Refusal) -> usize {
    match refusal {
        Refusal::NameTaken => 0,
        Refusal::NameInvalid(_) => 1,
        Refusal::UnsupportedVersion { .. } => 2,
        Refusal::ServerFull => 3,
        Refusal::AlreadyJoined => 4,
        Refusal::Unavailable => 5,
        Refusal::TooManyConnections => 6,
        Refusal::WrongPassword => 7,
        Refusal::NameRegistered => 8,
        Refusal::AccountRequired => 9,
        Refusal::Banned { .. } => 10,
    }
}

/// Where `reason` is counted in [`Stats::leaves`] and [`Stats::closes`].
pub(crate) fn close_index(reason: CloseReason) -> usize {
    CloseReason::ALL
        .iter()
        .position(|&r| r == reason)
        .unwrap_or(0)
}
