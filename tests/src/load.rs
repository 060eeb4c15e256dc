//! The load generator's engine: N members and K senders against a chat server or, for
//! comparison, Redis pub/sub (SUBSCRIBE on members, PUBLISH on senders), on one thread.
//!
//! Every message carries its sender, its index and its send time, so each member can count
//! what it received, spot loss, duplicates and reordering, and measure latency.

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_proto::ServerMsg;
use smol::lock::Semaphore;
use smol::{Async, LocalExecutor, Timer};

/// Which server the generator talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Our chat protocol.
    Chat,
    /// Redis pub/sub.
    Redis,
    /// Members over the IRC gateway, senders over our chat protocol (at `sender_addr`).
    Irc,
    /// Members over the browser's WebSocket (JSON frames), senders over our chat protocol.
    Web,
}

/// One benchmark point.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The server.
    pub addr: SocketAddr,
    /// More nodes of the same (shared) room: connection `i` goes to `i mod (1 + others.len())`.
    pub others: Vec<SocketAddr>,
    /// Where senders connect when members speak another protocol ([`Proto::Irc`]).
    pub sender_addr: Option<SocketAddr>,
    /// Its protocol.
    pub proto: Proto,
    /// Receiving members.
    pub members: usize,
    /// Sending connections (they are not counted as members).
    pub senders: usize,
    /// Messages per sender.
    pub messages: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Total deliveries per second to aim for; 0 sends as fast as the window allows.
    pub rate: u64,
    /// Messages in flight (sent, not yet received by every member) in burst mode.
    pub window: usize,
    /// Connections opened at once while joining.
    pub join_concurrency: usize,
    /// Only connect and join, measure memory, and stop.
    pub idle: bool,
    /// The server's process id, for its memory.
    pub server_pid: Option<u32>,
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Seconds to get every member (and sender) joined.
    pub join_secs: f64,
    /// Deliveries expected (members x senders x messages).
    pub expected: u64,
    /// Deliveries received (first copies).
    pub delivered: u64,
    /// Expected deliveries that never came.
    pub lost: u64,
    /// Copies received more than once.
    pub duplicated: u64,
    /// Messages received after a later one from the same sender.
    pub reordered: u64,
    /// Seconds from the first send to the last delivery.
    pub run_secs: f64,
    /// Latency percentiles in microseconds: p50, p99, p99.9, max.
    pub latency_us: [u64; 4],
    /// Server RSS in KiB before connecting, after joining, peak during the run, after it.
    pub rss_kib: [u64; 4],
    /// The generator's CPU use over the run, in percent of one core.
    pub generator_cpu_pct: f64,
    /// Members closed by the server during the run.
    pub dropped: u64,
}

impl Report {
    /// Deliveries per second.
    pub fn rate(&self) -> f64 {
        if self.run_secs > 0.0 {
            self.delivered as f64 / self.run_secs
        } else {
            0.0
        }
    }
}

/// Shared state of one run (single thread).
struct Run {
    w: Workload,
    /// Makes names unique across runs against the same server.
    tag: u32,
    start: Instant,
    /// Per message (sender * messages + index): members that received it.
    counts: RefCell<Vec<u32>>,
    window: Semaphore,
    delivered: Cell<u64>,
    duplicated: Cell<u64>,
    reordered: Cell<u64>,
    dropped: Cell<u64>,
    last_delivery: Cell<Instant>,
    latencies: RefCell<Vec<u32>>,
    scratch: RefCell<Vec<u8>>,
}

static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Runs a workload to the end and reports.
pub fn run(w: Workload) -> io::Result<Report> {
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(drive(&ex, w)))
}

async fn drive(ex: &LocalExecutor<'_>, w: Workload) -> io::Result<Report> {
    let mut report = Report::default();
    let sampler = w.server_pid.map(RssSampler::start);
    report.rss_kib[0] = w.server_pid.and_then(crate::rss_kib).unwrap_or(0);
    let run = Rc::new(Run {
        counts: RefCell::new(vec![0; w.senders * w.messages]),
        window: Semaphore::new(w.window.max(1)),
        delivered: Cell::new(0),
        duplicated: Cell::new(0),
        reordered: Cell::new(0),
        dropped: Cell::new(0),
        last_delivery: Cell::new(Instant::now()),
        latencies: RefCell::new(Vec::new()),
        scratch: RefCell::new(vec![0; 256 * 1024]),
        start: Instant::now(),
        tag: RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        w: w.clone(),
    });

    // Join: members, then senders, a bounded number at a time.
    let joined_at = Instant::now();
    let gate = Rc::new(Semaphore::new(w.join_concurrency.max(1)));
    let mut joins = Vec::new();
    for i in 0..w.members + w.senders {
        let (gate, run) = (gate.clone(), run.clone());
        joins.push(ex.spawn(async move {
            let _permit = gate.acquire().await;
            join(&run, i).await
        }));
    }
    let mut conns = Vec::new();
    for j in joins {
        conns.push(j.await?);
    }
    report.join_secs = joined_at.elapsed().as_secs_f64();
    let senders: Vec<(Arc<Async<TcpStream>>, Vec<u8>)> = conns.split_off(w.members);

    // Every member reads from here on; senders read what comes back and discard it.
    for (i, (stream, leftover)) in conns.into_iter().enumerate() {
        ex.spawn(member_loop(run.clone(), stream, leftover, Some(i)))
            .detach();
    }
    let senders: Vec<Arc<Async<TcpStream>>> = senders
        .into_iter()
        .map(|(stream, leftover)| {
            ex.spawn(member_loop(run.clone(), stream.clone(), leftover, None))
                .detach();
            stream
        })
        .collect();
    Timer::after(Duration::from_millis(500)).await; // let join notices drain
    report.rss_kib[1] = w.server_pid.and_then(crate::rss_kib).unwrap_or(0);
    if let Some(s) = &sampler {
        s.reset_peak();
    }
    if w.idle {
        report.rss_kib[2] = report.rss_kib[1];
        report.rss_kib[3] = report.rss_kib[1];
        return Ok(report);
    }

    let cpu_before = self_cpu_secs();
    let started = Instant::now();
    let senders_done: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(k, stream)| ex.spawn(send_loop(run.clone(), stream, k)))
        .collect();
    for s in senders_done {
        s.await?;
    }
    // Wait for the last deliveries: done when all arrived, or nothing arrived for 5 s.
    report.expected = (w.members * w.senders * w.messages) as u64;
    loop {
        if run.delivered.get() >= report.expected {
            break;
        }
        if run.last_delivery.get().elapsed() > Duration::from_secs(5)
            && run.last_delivery.get() > started
            || started.elapsed() > Duration::from_secs(600)
        {
            break;
        }
        Timer::after(Duration::from_millis(5)).await;
    }
    let end = run.last_delivery.get().max(started);
    report.run_secs = (end - started).as_secs_f64();
    report.generator_cpu_pct =
        100.0 * (self_cpu_secs() - cpu_before) / started.elapsed().as_secs_f64();
    report.delivered = run.delivered.get();
    report.lost = report.expected.saturating_sub(report.delivered);
    report.duplicated = run.duplicated.get();
    report.reordered = run.reordered.get();
    report.dropped = run.dropped.get();
    let mut lat = std::mem::take(&mut *run.latencies.borrow_mut());
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as u64
    };
    report.latency_us = [
        pct(0.5),
        pct(0.99),
        pct(0.999),
        lat.last().copied().unwrap_or(0) as u64,
    ];
    report.rss_kib[2] = sampler.as_ref().map(|s| s.peak()).unwrap_or(0);
    Timer::after(Duration::from_secs(1)).await;
    report.rss_kib[3] = w.server_pid.and_then(crate::rss_kib).unwrap_or(0);
    Ok(report)
}

/// Connects connection `i` and joins (chat) or subscribes (Redis members).
async fn join(run: &Run, i: usize) -> io::Result<(Arc<Async<TcpStream>>, Vec<u8>)> {
    let node = i % (1 + run.w.others.len());
    let is_member = i < run.w.members;
    let proto = conn_proto(run.w.proto, is_member);
    let addr = match run.w.sender_addr {
        Some(addr) if !is_member => addr,
        _ if node == 0 => run.w.addr,
        _ => run.w.others[node - 1],
    };
    let stream = Async::<TcpStream>::connect(addr).await?;
    stream.get_ref().set_nodelay(true)?;
    let stream = Arc::new(stream);
    let mut leftover = Vec::new();
    match proto {
        Proto::Irc => {
            let nick = format!("r{}m{i}", run.tag);
            write_all(
                &stream,
                format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n").as_bytes(),
            )
            .await?;
            // Read until the welcome (001); what follows it is kept for the member's loop.
            let mut buf = Vec::new();
            loop {
                let mut chunk = [0u8; 16 * 1024];
                let n = stream.read_with(|mut s| s.read(&mut chunk)).await?;
                if n == 0 {
                    return Err(io::Error::other(format!("{nick}: closed before 001")));
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(at) = find(&buf, b" 001 ") {
                    let end = find(&buf[at..], b"\r\n").map_or(buf.len(), |e| at + e + 2);
                    leftover = buf[end..].to_vec();
                    break;
                }
                if let Some(at) = find(&buf, b" 433 ").or_else(|| find(&buf, b" 432 ")) {
                    let line = String::from_utf8_lossy(&buf[at..]).into_owned();
                    return Err(io::Error::other(format!("{nick}: refused: {line}")));
                }
            }
        }
        Proto::Web => {
            let name = format!("r{}m{i}", run.tag);
            let request = format!(
                "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            );
            write_all(&stream, request.as_bytes()).await?;
            let hello = format!(r#"{{"type":"hello","name":"{name}"}}"#);
            let mut sent_hello = false;
            let mut buf = Vec::new();
            loop {
                let mut chunk = [0u8; 16 * 1024];
                let n = stream.read_with(|mut s| s.read(&mut chunk)).await?;
                if n == 0 {
                    return Err(io::Error::other(format!("{name}: closed before welcome")));
                }
                buf.extend_from_slice(&chunk[..n]);
                if !sent_hello {
                    let Some(end) = find(&buf, b"\r\n\r\n") else {
                        continue;
                    };
                    if !buf.starts_with(b"HTTP/1.1 101") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        return Err(io::Error::other(format!("{name}: not upgraded: {head}")));
                    }
                    buf.drain(..end + 4);
                    write_all(&stream, &masked_text_frame(hello.as_bytes())).await?;
                    sent_hello = true;
                }
                if let Some((used, _)) = ws_frame(&buf) {
                    let first = &buf[..used];
                    if find(first, br#""type":"welcome""#).is_none() {
                        let text = String::from_utf8_lossy(first).into_owned();
                        return Err(io::Error::other(format!("{name}: not welcomed: {text}")));
                    }
                    leftover = buf[used..].to_vec();
                    break;
                }
            }
        }
        Proto::Chat => {
            let name = if is_member {
                format!("r{}m{i}", run.tag)
            } else {
                format!("r{}s{}", run.tag, i - run.w.members)
            };
            let hello =
                chat_proto::encode_to_vec(&crate::hello(&name)).map_err(io::Error::other)?;
            write_all(&stream, &hello).await?;
            // Read until the welcome: it is the first frame.
            let mut buf = Vec::new();
            loop {
                let mut chunk = [0u8; 64 * 1024];
                let n = stream.read_with(|mut s| s.read(&mut chunk)).await?;
                if n == 0 {
                    return Err(io::Error::other(format!("{name}: closed before welcome")));
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some((payload, _)) = split_frame(&buf) {
                    // The welcome is variant 0; its member list is not needed, so it is not decoded.
                    if payload.first() != Some(&0) {
                        let msg = chat_proto::decode_payload::<ServerMsg>(payload);
                        return Err(io::Error::other(format!("{name}: not welcomed: {msg:?}")));
                    }
                    let used = 4 + payload.len();
                    leftover = buf[used..].to_vec(); // join notices may follow at once
                    break;
                }
            }
        }
        Proto::Redis if is_member => {
            write_all(&stream, b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nchat\r\n").await?;
            let mut buf = Vec::new();
            loop {
                let mut chunk = [0u8; 256];
                let n = stream.read_with(|mut s| s.read(&mut chunk)).await?;
                if n == 0 {
                    return Err(io::Error::other("redis closed before subscribing"));
                }
                buf.extend_from_slice(&chunk[..n]);
                if parse_resp_array(&buf).is_some() {
                    break;
                }
            }
        }
        Proto::Redis => {}
    }
    Ok((stream, leftover))
}

async fn write_all(stream: &Async<TcpStream>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = stream.write_with(|mut s| s.write(bytes)).await?;
        bytes = &bytes[n..];
    }
    Ok(())
}

/// The payload of message `index` from sender `k`: its identity and send time, padded.
fn payload(run: &Run, k: usize, index: usize) -> String {
    let t = run.start.elapsed().as_micros() as u64;
    let mut text = format!("{k:x},{index:x},{t:x},");
    while text.len() < run.w.size {
        text.push('x');
    }
    text
}

async fn send_loop(run: Rc<Run>, stream: Arc<Async<TcpStream>>, k: usize) -> io::Result<()> {
    let w = &run.w;
    // In rate mode each sender sends every `interval`; in burst mode the window paces it.
    let interval = (w.rate > 0).then(|| {
        let per_sender = w.rate as f64 / (w.members as f64 * w.senders as f64);
        Duration::from_secs_f64(1.0 / per_sender)
    });
    let first = Instant::now() + Duration::from_micros((k as u64 * 997) % 1000);
    let mut out = Vec::new();
    for index in 0..w.messages {
        match interval {
            Some(every) => {
                Timer::at(first + every * index as u32).await;
            }
            None => {
                // A window that stops moving means members were lost: stop sending.
                let permit = async { Some(run.window.acquire().await) };
                let stuck = async {
                    Timer::after(Duration::from_secs(10)).await;
                    None
                };
                match futures_lite::FutureExt::or(permit, stuck).await {
                    Some(guard) => guard.forget(),
                    None => return Ok(()),
                }
            }
        };
        let text = payload(&run, k, index);
        out.clear();
        match w.proto {
            Proto::Chat | Proto::Irc | Proto::Web => {
                chat_proto::encode(&crate::chat_msg(text), &mut out).map_err(io::Error::other)?
            }
            Proto::Redis => {
                write!(
                    out,
                    "*3\r\n$7\r\nPUBLISH\r\n$4\r\nchat\r\n${}\r\n{text}\r\n",
                    text.len()
                )?;
            }
        }
        write_all(&stream, &out).await?;
    }
    Ok(())
}

/// Reads one connection until it closes, counting every chat message it receives.
/// `member` is `None` for a sender, whose incoming traffic is only drained.
///
/// This keeps its own read loop rather than `chat_proto::FrameReader`: it reads into one scratch
/// buffer shared by every connection, decodes chat frames borrowed (no allocation per message)
/// and skips other frames undecoded, and it speaks Redis too. `FrameReader` decodes every frame
/// into an owned message, which would make the generator, not the server, the bottleneck.
async fn member_loop(
    run: Rc<Run>,
    stream: Arc<Async<TcpStream>>,
    mut carry: Vec<u8>,
    member: Option<usize>,
) {
    let mut next = vec![0u32; if member.is_some() { run.w.senders } else { 0 }];
    loop {
        if stream.readable().await.is_err() {
            break;
        }
        let mut scratch = run.scratch.borrow_mut();
        let n = match stream.get_ref().read(&mut scratch[..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => break,
        };
        let data: &[u8] = if carry.is_empty() {
            &scratch[..n]
        } else {
            carry.extend_from_slice(&scratch[..n]);
            &carry
        };
        let mut at = 0;
        let mut closed = false;
        while at < data.len() {
            let proto = conn_proto(run.w.proto, member.is_some());
            let Some((used, msg)) = next_message(proto, &data[at..]) else {
                break;
            };
            at += used;
            match msg {
                Incoming::Text(text) => {
                    if member.is_some() {
                        on_message(&run, &mut next, text);
                    }
                }
                Incoming::Closed => closed = true,
                Incoming::Other => {}
            }
        }
        let consumed = at;
        if carry.is_empty() {
            carry.extend_from_slice(&scratch[consumed..n]);
        } else {
            carry.drain(..consumed);
            if carry.capacity() > 64 * 1024 && carry.len() < 1024 {
                carry.shrink_to_fit();
            }
        }
        drop(scratch);
        if closed {
            run.dropped
                .set(run.dropped.get() + u64::from(member.is_some()));
            break;
        }
    }
}

enum Incoming<'a> {
    Text(&'a [u8]),
    Closed,
    Other,
}

/// Splits one length-prefixed frame off the front of `buf`.
fn split_frame(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    let payload = buf.get(4..4 + len)?;
    Some((payload, &buf[4 + len..]))
}

/// The next whole message in `buf` and the bytes it took, or `None` if it is not all there.
fn next_message(proto: Proto, buf: &[u8]) -> Option<(usize, Incoming<'_>)> {
    match proto {
        Proto::Web => {
            let (used, (opcode, payload)) = ws_frame(buf)?;
            let msg = match opcode {
                // A chat's JSON: {"type":"chat","seq":N,"from":"..","text":".."}; the
                // generator's texts hold no quotes or escapes.
                1 if payload.starts_with(br#"{"type":"chat""#) => {
                    match find(payload, br#""text":""#) {
                        Some(at) => {
                            let text = &payload[at + 8..];
                            let end = text.iter().position(|&b| b == b'"').unwrap_or(text.len());
                            Incoming::Text(&text[..end])
                        }
                        None => Incoming::Other,
                    }
                }
                8 => Incoming::Closed,
                _ => Incoming::Other,
            };
            Some((used, msg))
        }
        Proto::Irc => {
            let end = find(buf, b"\r\n")?;
            let line = &buf[..end];
            let msg = if let Some(at) = find(line, b" PRIVMSG ") {
                match find(&line[at..], b" :") {
                    Some(colon) => Incoming::Text(&line[at + colon + 2..]),
                    None => Incoming::Other,
                }
            } else if line.starts_with(b"ERROR ") {
                Incoming::Closed
            } else {
                Incoming::Other
            };
            Some((end + 2, msg))
        }
        Proto::Chat => {
            let (payload, _) = split_frame(buf)?;
            let used = 4 + payload.len();
            // ServerMsg::Chat is variant 2: seq, time, from, text, kind. Decode it borrowed,
            // without allocating.
            type Chat<'a> = (u64, u64, &'a str, &'a str, chat_proto::ChatKind);
            let msg = match payload.first() {
                Some(2) => match postcard::from_bytes::<Chat<'_>>(&payload[1..]) {
                    Ok((_, _, _, text, _)) => Incoming::Text(text.as_bytes()),
                    Err(_) => Incoming::Other,
                },
                // Closing is variant 9; everything else (join notices, welcomes) is skipped
                // without decoding, so the generator keeps up with a join storm.
                Some(9) => Incoming::Closed,
                Some(_) => Incoming::Other,
                None => Incoming::Other,
            };
            Some((used, msg))
        }
        Proto::Redis => {
            let (used, items) = parse_resp_array(buf)?;
            match items.as_slice() {
                [Resp::Bulk(kind), _, Resp::Bulk(text)] if *kind == b"message" => {
                    Some((used, Incoming::Text(text)))
                }
                _ => Some((used, Incoming::Other)),
            }
        }
    }
}

/// One whole server-to-client WebSocket frame at the front of `buf` (unmasked): the bytes it
/// takes, its opcode and its payload.
fn ws_frame(buf: &[u8]) -> Option<(usize, (u8, &[u8]))> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let (len, at) = match b1 & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let end = at + usize::try_from(len).ok()?;
    let payload = buf.get(at..end)?;
    Some((end, (b0 & 0x0f, payload)))
}

/// A client-to-server WebSocket text frame (clients must mask; the key need not be secret
/// for a load generator).
fn masked_text_frame(payload: &[u8]) -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![0x81];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Where `needle` first starts in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The protocol connection `is_member` speaks: senders always speak ours, but to Redis.
fn conn_proto(proto: Proto, is_member: bool) -> Proto {
    match proto {
        Proto::Irc | Proto::Web if !is_member => Proto::Chat,
        other => other,
    }
}

fn on_message(run: &Run, next: &mut [u32], text: &[u8]) {
    let mut fields = text.split(|&b| b == b',');
    let mut hex = || -> Option<u64> {
        u64::from_str_radix(std::str::from_utf8(fields.next()?).ok()?, 16).ok()
    };
    let (Some(k), Some(index), Some(sent_us)) = (hex(), hex(), hex()) else {
        return;
    };
    let (k, index) = (k as usize, index as usize);
    if k >= run.w.senders || index >= run.w.messages {
        return;
    }
    let now_us = run.start.elapsed().as_micros() as u64;
    let slot = k * run.w.messages + index;
    let mut counts = run.counts.borrow_mut();
    if index as u32 >= next[k] {
        next[k] = index as u32 + 1; // a gap here is loss, or reordering if the rest comes later
    } else {
        run.reordered.set(run.reordered.get() + 1);
    }
    counts[slot] += 1;
    if counts[slot] > run.w.members as u32 {
        run.duplicated.set(run.duplicated.get() + 1);
        return;
    }
    run.delivered.set(run.delivered.get() + 1);
    run.last_delivery.set(Instant::now());
    run.latencies
        .borrow_mut()
        .push(now_us.saturating_sub(sent_us).min(u32::MAX as u64) as u32);
    if counts[slot] == run.w.members as u32 && run.w.rate == 0 {
        run.window.add_permits(1);
    }
}

/// A RESP value inside an array, borrowed.
enum Resp<'a> {
    Bulk(&'a [u8]),
    Int,
}

/// Parses one RESP array of bulk strings and integers; `None` if incomplete.
fn parse_resp_array(buf: &[u8]) -> Option<(usize, Vec<Resp<'_>>)> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = buf.get(at..)?.windows(2).position(|w| w == b"\r\n")? + at;
        Some((&buf[at..end], end + 2))
    }
    let num = |s: &[u8]| std::str::from_utf8(s).ok()?.parse::<i64>().ok();
    let (head, mut at) = line(buf, 0)?;
    if head.first() == Some(&b':') {
        return Some((at, vec![Resp::Int])); // a PUBLISH reply
    }
    let count = num(head.strip_prefix(b"*")?)?;
    let mut items = Vec::with_capacity(count.max(0) as usize);
    for _ in 0..count {
        let (head, next) = line(buf, at)?;
        match head.first()? {
            b'$' => {
                let len = num(&head[1..])? as usize;
                let body = buf.get(next..next + len)?;
                buf.get(next + len..next + len + 2)?;
                items.push(Resp::Bulk(body));
                at = next + len + 2;
            }
            _ => {
                items.push(Resp::Int);
                at = next;
            }
        }
    }
    Some((at, items))
}

/// This process's CPU time (user + system) in seconds.
fn self_cpu_secs() -> f64 {
    crate::cpu_time(std::process::id()).map_or(0.0, |d| d.as_secs_f64())
}

/// Samples a process's RSS every 20 ms on its own thread, keeping the peak.
struct RssSampler {
    peak: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Relaxed) {
                if let Some(kib) = crate::rss_kib(pid) {
                    p.fetch_max(kib, Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self { peak, stop }
    }

    fn peak(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn reset_peak(&self) {
        self.peak.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_proto::CloseReason;

    #[test]
    fn the_fast_path_tags_match_the_protocol() {
        let chat = ServerMsg::Chat {
            seq: 7,
            time: 1_700_000_000_000,
            from: "a".into(),
            text: "1,2,3,".into(),
            kind: chat_proto::ChatKind::Action,
        };
        let bytes = chat_proto::encode_to_vec(&chat).unwrap();
        match next_message(Proto::Chat, &bytes) {
            Some((used, Incoming::Text(text))) => {
                assert_eq!(used, bytes.len());
                assert_eq!(text, b"1,2,3,");
            }
            _ => panic!("chat not recognised"),
        }
        let closing = chat_proto::encode_to_vec(&ServerMsg::Closing(CloseReason::TooSlow)).unwrap();
        assert!(matches!(
            next_message(Proto::Chat, &closing),
            Some((_, Incoming::Closed))
        ));
        let joined = chat_proto::encode_to_vec(&crate::joined("b")).unwrap();
        assert!(matches!(
            next_message(Proto::Chat, &joined),
            Some((_, Incoming::Other))
        ));
        assert!(next_message(Proto::Chat, &joined[..joined.len() - 1]).is_none());
        let welcome = ServerMsg::Welcome {
            name: "a".into(),
            online: 1,
            members: vec![chat_proto::Member::named("a")],
            limits: chat_core::Config::default().limits(),
            seq: 0,
            epoch: 1,
        };
        assert_eq!(
            chat_proto::encode_to_vec(&welcome).unwrap()[4],
            0,
            "welcome is variant 0"
        );
    }

    #[test]
    fn resp_messages_parse_whole_or_not_at_all() {
        let msg = b"*3\r\n$7\r\nmessage\r\n$4\r\nchat\r\n$5\r\nhello\r\n";
        match next_message(Proto::Redis, msg) {
            Some((used, Incoming::Text(text))) => {
                assert_eq!(used, msg.len());
                assert_eq!(text, b"hello");
            }
            _ => panic!("message not recognised"),
        }
        assert!(next_message(Proto::Redis, &msg[..msg.len() - 1]).is_none());
        assert!(matches!(
            next_message(Proto::Redis, b":12\r\n"),
            Some((5, Incoming::Other))
        ));
    }
}
