//! Hostile input and faults: nothing lost, nothing leaked, nobody let in as someone else.
//!
//! Each test's doc names the figures it checks. Limits are small where that makes a test quick
//! (a 3 s handshake deadline, 64 descriptors); everything is on loopback, port 0, and bounded in
//! time. Tests that open hundreds of sockets or threads take [`heavy`] so that they do not run
//! at the same time as each other and do not disturb the one that measures a deadline.

use chat_proto::ChatKind;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use chat_proto::{
    ClientMsg, CloseReason, ErrorKind, MAGIC, NameRule, PROTOCOL_VERSION, Refusal, ServerMsg,
    encode_to_vec,
};
use tests::{
    RawClient, ServerProcess, chat, hello, joined, left, receive_chatter, start_server,
    test_config, wait_until,
};

/// Taken by tests that open hundreds of sockets or threads, so they run one at a time.
fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A thread with a small stack, for tests that run hundreds of blocking readers.
fn spawn_small<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> thread::JoinHandle<T> {
    thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .expect("spawn thread")
}

/// xorshift64*: reproducible noise without a random-number crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// 1. No loss: 100 members each send 100 messages at once. Every member receives the other 99 x
///    100 = 9,900 messages exactly once, each sender's in its order, with seq strictly
///    increasing; none of its own; and the seqs seen, taken together, are exactly 1..=10,000,
///    each naming one message, every member seeing all of them but its own 100.
#[test]
fn no_loss_when_100_members_each_send_100_messages() {
    const MEMBERS: usize = 100;
    const PER_MEMBER: usize = 100;
    const EXPECTED: usize = (MEMBERS - 1) * PER_MEMBER;
    let _heavy = heavy();
    let server = start_server(test_config());
    let addr = server.addr();
    let members: Vec<RawClient> = (0..MEMBERS)
        .map(|i| RawClient::join(addr, &format!("m{i}")).0)
        .collect();
    let go = Arc::new(Barrier::new(MEMBERS));
    let handles: Vec<_> = members
        .into_iter()
        .enumerate()
        .map(|(i, mut member)| {
            let go = go.clone();
            spawn_small(move || {
                // Joins of later members come first in every queue.
                for j in i + 1..MEMBERS {
                    assert_eq!(member.recv(), joined(&format!("m{j}")));
                }
                let mut writer = member.stream.try_clone().unwrap();
                go.wait();
                let sender = spawn_small(move || {
                    for n in 0..PER_MEMBER {
                        let frame = encode_to_vec(&chat(&format!("m{i} {n}"))).unwrap();
                        writer.write_all(&frame).unwrap();
                    }
                });
                let mut got = Vec::with_capacity(EXPECTED);
                while got.len() < EXPECTED {
                    match member.recv() {
                        ServerMsg::Chat {
                            seq, from, text, ..
                        } => {
                            let (who, n) = text.split_once(' ').unwrap();
                            assert_eq!(who, from, "the text names its real sender");
                            let from: usize = from[1..].parse().unwrap();
                            got.push((seq, from, n.parse::<usize>().unwrap()));
                        }
                        other => panic!("m{i} got {other:?}"),
                    }
                }
                sender.join().unwrap();
                (member, got)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();

    let mut by_seq: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
    for (i, (_, got)) in results.iter().enumerate() {
        let mut next = [0usize; MEMBERS];
        let mut last_seq = 0;
        for &(seq, from, n) in got {
            assert_ne!(from, i, "m{i} received its own message");
            assert_eq!(
                n, next[from],
                "m{i}: m{from}'s messages repeated or out of order"
            );
            next[from] += 1;
            assert!(seq > last_seq, "m{i}: seq {seq} after {last_seq}");
            last_seq = seq;
            let named = by_seq.entry(seq).or_insert((from, n));
            assert_eq!(*named, (from, n), "seq {seq} names two messages");
        }
        for (s, count) in next.iter().enumerate() {
            let want = if s == i { 0 } else { PER_MEMBER };
            assert_eq!(*count, want, "m{i} got {count} of m{s}'s messages");
        }
    }
    let all: Vec<u64> = by_seq.keys().copied().collect();
    assert_eq!(all, (1..=(MEMBERS * PER_MEMBER) as u64).collect::<Vec<_>>());
    for (i, (_, got)) in results.iter().enumerate() {
        let seen: Vec<u64> = got.iter().map(|g| g.0).collect();
        let others: Vec<u64> = by_seq
            .iter()
            .filter(|(_, (from, _))| *from != i)
            .map(|(seq, _)| *seq)
            .collect();
        assert_eq!(seen, others, "m{i} missed a seq");
    }
    // Nothing arrives twice, late (everyone still connected, so no leave notices either).
    let mut members: Vec<RawClient> = results.into_iter().map(|(member, _)| member).collect();
    for member in &mut members {
        member.expect_nothing_more();
    }
}

/// 2. Stalled reader under load (the real binary, 256 KiB queues): 20 members each send 100
///    messages of 2 KB as fast as the others read them, while one member never reads (4 MB for
///    it, twice what its queue and the kernel's socket buffers hold). It is closed as too slow
///    (every other member sees it leave once, reason TooSlow, and it receives
///    `Closing(TooSlow)` after a prefix of its stream); the server's resident memory
///    grows by less than all its queues full plus 4 MiB (9.25 MiB) over the run; each of the
///    20 receives all 19 x 100 messages of the others, in order, and nothing more.
#[test]
fn a_stalled_reader_is_closed_as_too_slow_memory_stays_bounded_others_lose_nothing() {
    const SENDERS: usize = 20;
    const PER_SENDER: usize = 100;
    const QUEUE_BYTES: usize = 256 * 1024;
    // Every queue full, plus 4 MiB for everything else.
    const GROWTH_BOUND_KIB: u64 = ((SENDERS + 1) * QUEUE_BYTES / 1024 + 4096) as u64;
    // Messages in flight to each member that reads: 64 KB, a quarter of its queue.
    const WINDOW: u64 = 32;
    let _heavy = heavy();
    let server = ServerProcess::start(&[
        "--queue-bytes",
        &QUEUE_BYTES.to_string(),
        "--max-text-bytes",
        "2048",
        "--max-frame-bytes",
        "4096",
        "--rate",
        "10000",
        "--burst",
        "10000",
        "--flood-strikes",
        "10000",
    ]);
    let mut stalled = RawClient::from_stream(tests::connect_small_window(server.addr));
    stalled.send(&hello("stalled"));
    assert!(matches!(stalled.recv(), ServerMsg::Welcome { .. }));
    // Joins before the members, so they never see it arrive; it reads everything.
    let (mut observer, _) = RawClient::join(server.addr, "observer");
    let mut members: Vec<RawClient> = (0..SENDERS)
        .map(|i| RawClient::join(server.addr, &format!("m{i}")).0)
        .collect();
    for (i, member) in members.iter_mut().enumerate() {
        for j in i + 1..SENDERS {
            assert_eq!(member.recv(), joined(&format!("m{j}")));
        }
    }
    // The observer raises `told` when it sees the stalled member leave as too slow: the cue for
    // the stalled member to start reading, within the 2 s linger its closing gets, so that it
    // receives what its socket held and then the frame that says why.
    let told = Arc::new(AtomicBool::new(false));
    let watcher = {
        let told = told.clone();
        thread::spawn(move || {
            let mut chats = 0;
            while chats < SENDERS * PER_SENDER || !told.load(Relaxed) {
                match observer.recv() {
                    ServerMsg::Chat { .. } => chats += 1,
                    ServerMsg::Joined { .. } => {}
                    msg if msg == left("stalled", CloseReason::TooSlow) => {
                        told.store(true, Relaxed);
                    }
                    other => panic!("observer: unexpected {other:?}"),
                }
            }
            observer
        })
    };
    let stalled_reader = thread::spawn(move || {
        assert!(wait_until(Duration::from_secs(60), || told.load(Relaxed)));
        stalled.until_closed()
    });

    let rss_before = server.rss_kib().expect("server RSS");
    let pid = server.child.id();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(rss_before));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        thread::spawn(move || {
            while !stop.load(Relaxed) {
                if let Some(rss) = tests::rss_kib(pid) {
                    peak.fetch_max(rss, Relaxed);
                }
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let text = "x".repeat(2000);
    // Messages sent and deliveries seen, over all members that read: senders keep what is in
    // flight to each reader far below its queue bound, so readers keep up however slow the
    // machine, while the stalled member is sent everything.
    let sent = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = members
        .into_iter()
        .enumerate()
        .map(|(i, mut member)| {
            let mut writer = member.stream.try_clone().unwrap();
            let (text, sent, seen) = (text.clone(), sent.clone(), delivered.clone());
            let sender = thread::spawn(move || {
                let readers = SENDERS as u64 - 1;
                let in_flight =
                    || (sent.load(Relaxed) * readers).saturating_sub(seen.load(Relaxed)) / readers;
                for n in 0..PER_SENDER {
                    assert!(wait_until(Duration::from_secs(20), || in_flight() < WINDOW));
                    sent.fetch_add(1, Relaxed);
                    let frame = encode_to_vec(&chat(&format!("{n} {text}"))).unwrap();
                    writer.write_all(&frame).unwrap();
                }
            });
            let delivered = delivered.clone();
            thread::spawn(move || {
                let (got, stalled_left) = receive_chatter(
                    &mut member,
                    i,
                    (SENDERS - 1) * PER_SENDER,
                    "stalled",
                    || {
                        delivered.fetch_add(1, Relaxed);
                    },
                );
                sender.join().unwrap();
                (member, got, stalled_left)
            })
        })
        .collect();
    let mut members = Vec::new();
    for handle in handles {
        let (member, got, stalled_left) = handle.join().unwrap();
        assert_eq!((got, stalled_left), ((SENDERS - 1) * PER_SENDER, 1));
        members.push(member);
    }
    for member in &mut members {
        member.expect_nothing_more();
    }
    stop.store(true, Relaxed);
    sampler.join().unwrap();
    let growth = peak.load(Relaxed).saturating_sub(rss_before);
    eprintln!("stalled reader: server RSS {rss_before} KiB before, grew by {growth} KiB at peak");
    assert!(
        growth < GROWTH_BOUND_KIB,
        "server RSS grew by {growth} KiB (bound {GROWTH_BOUND_KIB} KiB)"
    );
    // It was told why, after what its socket already held.
    let (reason, before) = stalled_reader.join().unwrap();
    assert_eq!(reason, Some(CloseReason::TooSlow));
    tests::assert_only_broadcasts(&before);
    drop(watcher.join().unwrap());
}

/// A TLS 1.3 ClientHello record for "localhost", as a browser would open with.
const TLS_CLIENT_HELLO: &[u8] = &[
    0x16, 0x03, 0x01, 0x00, 0x4a, // record: handshake, legacy version 3.1, 74 bytes
    0x01, 0x00, 0x00, 0x46, // ClientHello, 70 bytes
    0x03, 0x03, // legacy version TLS 1.2
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e,
    0x1f, // random
    0x00, // no session id
    0x00, 0x04, 0x13, 0x01, 0x13, 0x02, // cipher suites: AES-128-GCM, AES-256-GCM
    0x01, 0x00, // compression: null
    0x00, 0x19, // extensions, 25 bytes
    0x00, 0x00, 0x00, 0x0e, 0x00, 0x0c, 0x00, 0x00, 0x09, b'l', b'o', b'c', b'a', b'l', b'h', b'o',
    b's', b't', // server_name
    0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04, // supported_versions: TLS 1.3
];

/// 3. Wrong protocol (the real binary): an HTTP request, a TLS ClientHello, 1 MiB of random
///    bytes and 1 MiB of random payloads behind plausible length prefixes are each closed
///    within 1 s, with a `Closing(ProtocolError)` frame (or, for the megabytes the server
///    stopped reading, the frame or a reset), and nothing before it. Then, with two
///    connections holding partial frames, the server uses under 0.3 s of CPU in a 1 s window,
///    and a client still joins.
#[test]
fn wrong_protocols_are_closed_promptly_with_a_protocol_error_and_the_cpu_stays_idle() {
    let server = ServerProcess::start(&[]);
    let mut noise = XorShift(0x9e37_79b9_7f4a_7c15);
    let random = noise.bytes(1 << 20);
    let mut framed = Vec::with_capacity((1 << 20) + 4096);
    while framed.len() < 1 << 20 {
        let len = 1 + noise.next() as usize % 2048;
        framed.extend_from_slice(&(len as u32).to_le_bytes());
        framed.extend_from_slice(&noise.bytes(len));
    }
    let http =
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";
    let cases: [(&str, &[u8], bool); 4] = [
        ("an HTTP request", http, true),
        ("a TLS ClientHello", TLS_CLIENT_HELLO, true),
        ("1 MiB of random bytes", &random, false),
        ("1 MiB of random framed payloads", &framed, false),
    ];
    for (what, bytes, small) in cases {
        let mut bad = RawClient::connect(server.addr);
        bad.stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let started = Instant::now();
        let mut writer = bad.stream.try_clone().unwrap();
        let bytes = bytes.to_vec();
        // The server may stop reading (and reset) long before the last byte: ignore write errors.
        let sender = thread::spawn(move || writer.write_all(&bytes).is_ok());
        let (reason, seen) = bad.until_closed();
        let took = started.elapsed();
        sender.join().unwrap();
        eprintln!("{what}: closed after {took:?} with {reason:?}");
        assert_eq!(seen, vec![], "{what}: frames before the close");
        if small {
            assert_eq!(reason, Some(CloseReason::ProtocolError), "{what}");
        } else {
            assert!(
                matches!(reason, Some(CloseReason::ProtocolError) | None),
                "{what}: {reason:?}"
            );
        }
        assert!(took < Duration::from_secs(1), "{what}: took {took:?}");
    }

    // Partial frames held open must not make the server spin.
    let mut prefix_only = RawClient::connect(server.addr);
    prefix_only.send_raw(&[0x10, 0x00, 0x00]);
    let mut half_payload = RawClient::connect(server.addr);
    half_payload.send_raw(&[100, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    thread::sleep(Duration::from_millis(200));
    let before = server.cpu_time().expect("server CPU time");
    thread::sleep(Duration::from_secs(1));
    let used = server.cpu_time().unwrap() - before;
    eprintln!("wrong protocols: server used {used:?} of CPU in a 1 s idle window");
    assert!(
        used < Duration::from_millis(300),
        "server used {used:?} of CPU while idle"
    );
    let (_ok, members) = RawClient::join(server.addr, "after");
    assert_eq!(members, vec!["after"]);
}

/// 4. Slow handshakes (3 s deadline): 200 connections trickle a hello one byte a second and
///    200 send nothing. Every one is closed with `Closing(HandshakeTimeout)` and nothing else,
///    between the deadline and deadline + 1.5 s after its connect (a deadline reset by each
///    byte would close the tricklers at 5 s). Meanwhile a client joins, chats and stays.
#[test]
fn slow_handshakes_are_closed_at_the_deadline_counted_from_connect() {
    const TRICKLERS: usize = 200;
    const SILENT: usize = 200;
    const DEADLINE: Duration = Duration::from_secs(3);
    let _heavy = heavy();
    let mut config = test_config();
    config.room.handshake_timeout = DEADLINE;
    let server = start_server(config);
    let addr = server.addr();
    let (mut early, _) = RawClient::join(addr, "early");

    let mut watchers = Vec::new();
    let mut tricklers = Vec::new();
    for i in 0..TRICKLERS + SILENT {
        // Taken before the connect: the server cannot have opened the connection earlier.
        let connected = Instant::now();
        let stream = TcpStream::connect(addr).unwrap();
        if i < TRICKLERS {
            let frame = encode_to_vec(&hello(&format!("trickler{i}"))).unwrap();
            tricklers.push((stream.try_clone().unwrap(), frame));
        }
        let mut client = RawClient::from_stream(stream);
        watchers.push(spawn_small(move || {
            let (reason, seen) = client.until_closed();
            (i < TRICKLERS, reason, seen, connected.elapsed())
        }));
    }
    let start = Instant::now();
    // One byte a second from each trickler, at 0, 1 and 2 s; never a whole hello.
    let trickle = thread::spawn(move || {
        for k in 0..3 {
            for (stream, frame) in &mut tricklers {
                let _ = stream.write_all(&frame[k..k + 1]);
            }
            thread::sleep(
                (start + Duration::from_secs(k as u64 + 1))
                    .saturating_duration_since(Instant::now()),
            );
        }
    });
    // A real client joins meanwhile and chats.
    thread::sleep(Duration::from_millis(1500));
    let (mut real, members) = RawClient::join(addr, "real");
    assert_eq!(members, vec!["early", "real"]);
    assert_eq!(early.recv(), joined("real"));
    real.send(&chat("hello through the crowd"));
    assert!(matches!(early.recv(), ServerMsg::Chat { from, .. } if from == "real"));

    let mut spans = (Duration::MAX, Duration::ZERO);
    for watcher in watchers {
        let (trickled, reason, seen, after) = watcher.join().unwrap();
        let what = if trickled { "trickler" } else { "silent" };
        assert_eq!(reason, Some(CloseReason::HandshakeTimeout), "{what}");
        assert_eq!(seen, vec![], "{what}");
        assert!(
            after >= DEADLINE,
            "{what} closed early, {after:?} after connect"
        );
        assert!(
            after <= DEADLINE + Duration::from_millis(1500),
            "{what} closed late, {after:?} after connect"
        );
        spans = (spans.0.min(after), spans.1.max(after));
    }
    trickle.join().unwrap();
    eprintln!(
        "slow handshakes: {} closed between {:?} and {:?} after connect (deadline {DEADLINE:?})",
        TRICKLERS + SILENT,
        spans.0,
        spans.1
    );
    // The joined client outlived the deadline.
    real.send(&ClientMsg::Who);
    assert_eq!(
        real.recv(),
        ServerMsg::Members {
            members: vec![
                chat_proto::Member::named("early"),
                chat_proto::Member::named("real")
            ]
        }
    );
    assert!(wait_until(Duration::from_secs(2), || {
        server.stats().connections.load(Relaxed) == 2
    }));
}

/// 5. Flood (rate 20/s, burst 40, 40 strikes): one member sends 5,000 messages as fast as it
///    can. It gets exactly 40 `RateLimited` errors and then `Closing(Flood)`. At most
///    40 + 20/s x elapsed + 1 of its messages pass: the first 39 all of them (its hello took one
///    token of the burst), then a few as the bucket refills, in order, the same ones to both
///    others. The two others, chatting at 10/s meanwhile, receive each other's 10 messages in
///    order, see the flooder leave once for Flood, and are never limited.
#[test]
fn a_flooding_member_is_throttled_then_closed_and_others_lose_nothing() {
    const FLOOD: usize = 5_000;
    const CALM: usize = 10;
    let mut config = test_config();
    config.room.rate_per_sec = 20;
    config.room.burst = 40;
    config.room.flood_strikes = 40;
    let server = start_server(config);
    let addr = server.addr();
    let (mut alice, _) = RawClient::join(addr, "alice");
    let (mut bob, _) = RawClient::join(addr, "bob");
    let (mut flooder, _) = RawClient::join(addr, "flooder");
    assert_eq!(alice.recv(), joined("bob"));
    assert_eq!(alice.recv(), joined("flooder"));
    assert_eq!(bob.recv(), joined("flooder"));

    let calm = |mut member: RawClient, me: &'static str, peer: &'static str| {
        thread::spawn(move || {
            let mut writer = member.stream.try_clone().unwrap();
            let sender = thread::spawn(move || {
                for n in 0..CALM {
                    let frame = encode_to_vec(&chat(&format!("{n}"))).unwrap();
                    writer.write_all(&frame).unwrap();
                    thread::sleep(Duration::from_millis(100));
                }
            });
            let (mut from_other, mut from_flooder, mut flooder_left) = (Vec::new(), Vec::new(), 0);
            while from_other.len() < CALM || flooder_left == 0 {
                match member.recv() {
                    ServerMsg::Chat { from, text, .. } if from == peer => {
                        from_other.push(text.parse::<usize>().unwrap());
                    }
                    ServerMsg::Chat { from, text, .. } if from == "flooder" => {
                        from_flooder.push(text.parse::<usize>().unwrap());
                    }
                    msg if msg == left("flooder", CloseReason::Flood) => flooder_left += 1,
                    other => panic!("{me}: unexpected {other:?}"),
                }
            }
            sender.join().unwrap();
            (member, from_other, from_flooder, flooder_left)
        })
    };
    let alice = calm(alice, "alice", "bob");
    let bob = calm(bob, "bob", "alice");

    let started = Instant::now();
    let mut writer = flooder.stream.try_clone().unwrap();
    let flood = thread::spawn(move || {
        let mut sent = 0;
        for n in 0..FLOOD {
            let frame = encode_to_vec(&chat(&format!("{n}"))).unwrap();
            if writer.write_all(&frame).is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    let (reason, seen) = flooder.until_closed();
    let elapsed = started.elapsed();
    flood.join().unwrap();
    assert_eq!(reason, Some(CloseReason::Flood));
    let limited = seen
        .iter()
        .filter(|m| **m == ServerMsg::Error(ErrorKind::RateLimited))
        .count();
    assert_eq!(limited, 40, "rate-limited answers before the close");
    assert!(
        seen.iter().all(|m| matches!(
            m,
            ServerMsg::Error(ErrorKind::RateLimited) | ServerMsg::Chat { .. }
        )),
        "{seen:?}"
    );

    let (mut alice, alice_got, alice_flood, alice_left) = alice.join().unwrap();
    let (mut bob, bob_got, bob_flood, bob_left) = bob.join().unwrap();
    alice.expect_nothing_more();
    bob.expect_nothing_more();
    let in_order: Vec<usize> = (0..CALM).collect();
    assert_eq!(alice_got, in_order, "alice's view of bob");
    assert_eq!(bob_got, in_order, "bob's view of alice");
    assert_eq!((alice_left, bob_left), (1, 1));
    assert_eq!(alice_flood, bob_flood, "both saw the same flood messages");
    // The hello took one token of the burst.
    assert!(alice_flood.len() >= 39, "{} passed", alice_flood.len());
    assert_eq!(
        alice_flood[..39],
        (0..39).collect::<Vec<_>>()[..],
        "the burst passes whole"
    );
    assert!(alice_flood.windows(2).all(|w| w[0] < w[1]));
    let allowed = 40 + (20.0 * elapsed.as_secs_f64()).ceil() as usize + 1;
    eprintln!(
        "flood: {} passed, {limited} limited, closed after {elapsed:?} (allowed {allowed})",
        alice_flood.len()
    );
    assert!(alice_flood.len() <= allowed, "{} passed", alice_flood.len());
}

/// 6. Name race: 20 rounds of 50 connections sending a hello for the same name (in five
///    spellings that fold together) at once: exactly one `Welcome` and 49 `NameTaken` each
///    round; a watcher sees exactly one join and one leave per round.
#[test]
fn fifty_connections_racing_for_one_name_have_exactly_one_winner() {
    const ROUNDS: usize = 20;
    const RACERS: usize = 50;
    const SPELLINGS: [&str; 5] = ["racer", "Racer", "RACER", "ｒａｃｅｒ", "rAcEr"];
    let _heavy = heavy();
    let server = start_server(test_config());
    let addr = server.addr();
    let (mut watcher, _) = RawClient::join(addr, "watcher");
    for round in 0..ROUNDS {
        let start = Arc::new(Barrier::new(RACERS));
        let racers: Vec<_> = (0..RACERS)
            .map(|i| {
                let start = start.clone();
                spawn_small(move || {
                    let mut client = RawClient::connect(addr);
                    let frame = encode_to_vec(&hello(SPELLINGS[i % SPELLINGS.len()])).unwrap();
                    start.wait();
                    client.send_raw(&frame);
                    let answer = client.recv();
                    (client, answer)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for racer in racers {
            match racer.join().unwrap() {
                (client, ServerMsg::Welcome { name, .. }) => winners.push((client, name)),
                (_, ServerMsg::Refused(Refusal::NameTaken)) => {}
                (_, other) => panic!("round {round}: unexpected {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {} winners", winners.len());
        let (mut winner, name) = winners.pop().unwrap();
        assert!(SPELLINGS.contains(&name.as_str()), "{name}");
        winner.send(&ClientMsg::Leave { message: None });
        assert_eq!(winner.until_closed(), (Some(CloseReason::Left), vec![]));
        assert_eq!(watcher.recv(), joined(&name));
        assert_eq!(watcher.recv(), left(&name, CloseReason::Left));
    }
    watcher.expect_nothing_more();
}

/// What the server answers to a hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameVerdict {
    Welcome,
    Taken,
    Invalid(NameRule),
}

/// What the server does with a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextVerdict {
    Delivered,
    Refused(ErrorKind),
    Closed(CloseReason),
}

/// Names registered before the name table runs.
const REGISTERED: [&str; 9] = [
    "alice", "José", "Zoë", "straße", "file", "kelvin", "ω", "ix", "alice2",
];

fn name_table() -> Vec<(String, NameVerdict)> {
    use NameRule::*;
    use NameVerdict::*;
    let too_long = Invalid(TooLong { max_chars: 32 });
    let mut table: Vec<(String, NameVerdict)> = [
        // Case variants.
        ("alice", Taken),
        ("Alice", Taken),
        ("ALICE", Taken),
        ("aLiCe", Taken),
        ("FILE", Taken),
        ("KELVIN", Taken),
        ("IX", Taken),
        ("\u{03A9}", Taken), // capital omega
        ("STRASSE", Taken),  // full case folding: ß is ss
        ("strasse", Taken),
        ("Straße", Taken),
        ("stra\u{1E9E}e", Taken), // capital sharp s
        // Fullwidth and other compatibility forms.
        ("ａｌｉｃｅ", Taken),
        ("ＡＬＩＣＥ", Taken),
        ("Ａlice", Taken),
        ("ALICE２", Taken),       // fullwidth digit, as alice2
        ("alice\u{00B2}", Taken), // superscript two
        ("\u{1D41A}\u{1D425}\u{1D422}\u{1D41C}\u{1D41E}", Taken), // mathematical bold
        ("\u{1D51E}\u{1D529}\u{1D526}\u{1D520}\u{1D522}", Taken), // fraktur
        ("\u{24D0}\u{24DB}\u{24D8}\u{24D2}\u{24D4}", Taken), // circled letters
        ("\u{FB01}le", Taken),    // fi ligature
        ("\u{212A}elvin", Taken), // Kelvin sign
        ("\u{2126}", Taken),      // ohm sign
        ("\u{2168}", Taken),      // roman numeral nine
        ("ｉｘ", Taken),
        // Composed and decomposed accents.
        ("José", Taken),
        ("Jose\u{0301}", Taken),
        ("JOSÉ", Taken),
        ("JOSE\u{0301}", Taken),
        ("ｊｏｓｅ\u{0301}", Taken),
        ("Zoë", Taken),
        ("Zoe\u{0308}", Taken),
        ("ZOË", Taken),
        ("zoe\u{0308}", Taken),
        // Invisible characters inside.
        ("al\u{200B}ice", Invalid(Invisible)), // zero-width space
        ("alice\u{200B}", Invalid(Invisible)),
        ("\u{200B}alice", Invalid(Invisible)),
        ("al\u{200C}ice", Invalid(Invisible)), // zero-width non-joiner
        ("al\u{200D}ice", Invalid(Invisible)), // zero-width joiner
        ("al\u{2060}ice", Invalid(Invisible)), // word joiner
        ("\u{FEFF}alice", Invalid(Invisible)), // byte-order mark
        ("al\u{00AD}ice", Invalid(Invisible)), // soft hyphen
        ("al\u{034F}ice", Invalid(Invisible)), // combining grapheme joiner
        ("alice\u{200E}", Invalid(Invisible)), // left-to-right mark
        ("alice\u{200F}", Invalid(Invisible)), // right-to-left mark
        ("\u{202E}ecila", Invalid(Invisible)), // right-to-left override
        ("al\u{202A}ice", Invalid(Invisible)), // left-to-right embedding
        ("al\u{2066}ice", Invalid(Invisible)), // left-to-right isolate
        ("al\u{2069}ice", Invalid(Invisible)), // pop directional isolate
        ("al\u{061C}ice", Invalid(Invisible)), // Arabic letter mark
        ("al\u{180E}ice", Invalid(Invisible)), // Mongolian vowel separator
        ("alice\u{FE0F}", Invalid(Invisible)), // variation selector 16
        ("alice\u{E0041}", Invalid(Invisible)), // tag letter A
        ("al\u{2064}ice", Invalid(Invisible)), // invisible plus
        ("\u{3164}", Invalid(Invisible)),      // Hangul filler
        ("\u{115F}alice", Invalid(Invisible)), // Hangul choseong filler
        // Whitespace.
        ("al ice", Invalid(Whitespace)),
        (" alice", Invalid(Whitespace)),
        ("alice ", Invalid(Whitespace)),
        (" ", Invalid(Whitespace)),
        ("al\u{00A0}ice", Invalid(Whitespace)), // no-break space
        ("al\u{3000}ice", Invalid(Whitespace)), // ideographic space
        ("al\u{2003}ice", Invalid(Whitespace)), // em space
        ("al\u{2028}ice", Invalid(Whitespace)), // line separator
        ("al\u{1680}ice", Invalid(Whitespace)), // ogham space mark
        ("al\u{205F}ice", Invalid(Whitespace)), // medium mathematical space
        ("alice: hi", Invalid(Whitespace)),
        ("* server", Invalid(Whitespace)),
        // Control characters and terminal escapes.
        ("al\tice", Invalid(Control)),
        ("alice\n", Invalid(Control)),
        ("al\rice", Invalid(Control)),
        ("\u{1b}[31malice", Invalid(Control)),
        ("alice\u{7}", Invalid(Control)),
        ("alice\u{0}", Invalid(Control)),
        ("alice\u{7f}", Invalid(Control)),
        ("alice\u{85}", Invalid(Control)), // next line (C1)
        ("alice\u{9b}", Invalid(Control)), // control sequence introducer (C1)
        // Empty.
        ("", Invalid(Empty)),
        // Fine names, each joined and left again.
        ("bob", Welcome),
        ("alice_2", Welcome),
        ("Ünïcödé", Welcome),
        ("名前", Welcome),
        ("😀", Welcome),
        ("O'Brien", Welcome),
        ("x.y", Welcome),
        ("user@host", Welcome),
        ("bob-the-builder", Welcome),
        ("*server", Welcome), // shown as "*server: text", never as a "* " notice
        ("[server]", Welcome),
        ("alicé", Welcome), // a different letter, not a variant
        ("alice3", Welcome),
        ("Josè", Welcome),
        // Look-alikes from other scripts: UTS #39 skeletons and restriction levels.
        ("\u{0430}lice", Invalid(MixedScript)), // Cyrillic a among Latin letters
        ("b\u{03BF}b", Invalid(MixedScript)),   // Greek omicron among Latin letters
        ("al\u{0131}ce", Taken),                // dotless i: the same skeleton as alice
        ("\u{0430}\u{04CF}\u{0456}\u{0441}\u{0435}", Taken), // "alice" all in Cyrillic look-alikes
        ("Łukasz", Welcome),
        ("Дмитрий", Welcome),
        ("太郎", Welcome),
    ]
    .into_iter()
    .map(|(name, verdict)| (name.to_owned(), verdict))
    .collect();
    // Lengths are counted in characters, before normalisation.
    table.extend([
        ("a".repeat(32), Welcome),
        ("a".repeat(33), too_long),
        ("é".repeat(32), Welcome),
        ("é".repeat(33), too_long),
        ("😀".repeat(32), Welcome),
        ("😀".repeat(33), too_long),
        ("e\u{0301}".repeat(16), Welcome),
        ("e\u{0301}".repeat(17), too_long),
        ("x".repeat(1000), too_long),
    ]);
    table
}

/// The name a welcome shows for a fine name of the table, written out by hand rather than with
/// the room's own normalisation: as typed, but the one decomposed accent (e and a combining
/// acute) composed into one character.
fn shown_as(typed: &str) -> String {
    typed.replace("e\u{0301}", "\u{e9}")
}

fn text_table() -> Vec<(String, TextVerdict)> {
    use ErrorKind::*;
    use TextVerdict::*;
    let too_long = Refused(TextTooLong { max_bytes: 1024 });
    let mut table: Vec<(String, TextVerdict)> = [
        ("hello", Delivered),
        ("  padded  ", Delivered),
        ("😀", Delivered),
        ("bob: this is not bob", Delivered),
        ("* bob joined", Delivered),
        ("back\\slash \\n not a newline", Delivered),
        ("é ü 名前 ｆｕｌｌ", Delivered),
        ("hi\u{2028}there", Refused(TextInvalid)), // line separator
        ("hi\u{2029}there", Refused(TextInvalid)), // paragraph separator
        ("\u{200B}", Refused(TextEmpty)),          // nothing visible
        ("\u{200B} \u{FEFF}", Refused(TextEmpty)),
        ("", Refused(TextEmpty)),
        ("   ", Refused(TextEmpty)),
        ("\t", Refused(TextEmpty)),
        ("\u{3000}", Refused(TextEmpty)),
        ("a\nb", Refused(TextInvalid)),
        ("a\rb", Refused(TextInvalid)),
        ("\nbob: fake", Refused(TextInvalid)),
        ("\u{1b}[2J", Refused(TextInvalid)),
        ("ring\u{7}", Refused(TextInvalid)),
        ("nul\u{0}", Refused(TextInvalid)),
        ("del\u{7f}", Refused(TextInvalid)),
        ("nel\u{85}", Refused(TextInvalid)),
        ("x\u{202E}y", Refused(TextInvalid)),
        ("x\u{202A}y", Refused(TextInvalid)),
        ("x\u{2066}y", Refused(TextInvalid)),
        ("tab\tinside", Refused(TextInvalid)),
    ]
    .into_iter()
    .map(|(text, verdict)| (text.to_owned(), verdict))
    .collect();
    table.extend([
        ("a".repeat(1024), Delivered),
        ("é".repeat(512), Delivered),
        ("a".repeat(1025), too_long),
        ("a".repeat(1023) + "é", too_long),
        ("a".repeat(2000), too_long), // still fits the 2048-byte frame
        // Over the frame limit: the frame is refused before it is read.
        ("a".repeat(3000), Closed(CloseReason::ProtocolError)),
    ]);
    table
}

/// 7. Look-alike names and validation: a table of 103 names and 31 messages, each with the
///    verdict the live server must give. Case variants, fullwidth and other compatibility
///    forms, and composed vs decomposed accents of a registered name are refused as taken; a
///    zero-width or other invisible character inside, whitespace, controls, empty and over-long
///    names are refused as invalid with the rule broken.
#[test]
fn look_alike_names_and_bad_messages_get_the_expected_verdicts() {
    let names = name_table();
    let texts = text_table();
    assert!(names.len() + texts.len() >= 100);
    let server = start_server(test_config());
    let addr = server.addr();
    let _registered: Vec<RawClient> = REGISTERED
        .iter()
        .map(|name| RawClient::join(addr, name).0)
        .collect();

    let mut wrong = Vec::new();
    let mut probe = RawClient::connect(addr);
    for (name, expected) in &names {
        probe.send(&hello(name));
        let got = match probe.recv() {
            ServerMsg::Welcome { name: shown, .. } => {
                assert_eq!(shown, shown_as(name), "shown composed (NFC)");
                probe.send(&ClientMsg::Leave { message: None });
                assert_eq!(probe.until_closed().0, Some(CloseReason::Left));
                probe = RawClient::connect(addr);
                NameVerdict::Welcome
            }
            ServerMsg::Refused(Refusal::NameTaken) => NameVerdict::Taken,
            ServerMsg::Refused(Refusal::NameInvalid(rule)) => NameVerdict::Invalid(rule),
            other => panic!("{name:?}: unexpected {other:?}"),
        };
        if got != *expected {
            wrong.push(format!("name {name:?}: expected {expected:?}, got {got:?}"));
        }
    }

    let (mut listener, _) = RawClient::join(addr, "listener");
    let (mut speaker, _) = RawClient::join(addr, "speaker");
    assert_eq!(listener.recv(), joined("speaker"));
    let mut delivered = Vec::new();
    let mut refused = Vec::new();
    for (text, expected) in &texts {
        match expected {
            TextVerdict::Delivered => {
                speaker.send(&chat(text));
                delivered.push(text.clone());
            }
            TextVerdict::Refused(kind) => {
                speaker.send(&chat(text));
                refused.push((text.clone(), *kind));
            }
            TextVerdict::Closed(reason) => {
                let (mut doomed, _) = RawClient::join(addr, "doomed");
                doomed.send(&chat(text));
                let got = doomed.until_closed().0;
                if got != Some(*reason) {
                    wrong.push(format!("text of {} bytes: closed with {got:?}", text.len()));
                }
            }
        }
    }
    speaker.send(&ClientMsg::Ping { nonce: 7 });
    let mut next_answer = || loop {
        match speaker.recv() {
            ServerMsg::Joined { name, .. } | ServerMsg::Left { name, .. } if name == "doomed" => {}
            msg => return msg,
        }
    };
    for (text, kind) in &refused {
        let got = next_answer();
        if got != ServerMsg::Error(*kind) {
            wrong.push(format!("text {text:?}: expected {kind:?}, got {got:?}"));
        }
    }
    assert_eq!(next_answer(), ServerMsg::Pong { nonce: 7 });
    speaker.send(&chat("end"));
    let mut heard = Vec::new();
    loop {
        match listener.recv() {
            ServerMsg::Chat { from, text, .. } if text == "end" => {
                assert_eq!(from, "speaker");
                break;
            }
            ServerMsg::Chat { from, text, .. } => {
                assert_eq!(from, "speaker");
                heard.push(text);
            }
            ServerMsg::Joined { name, .. } | ServerMsg::Left { name, .. } if name == "doomed" => {}
            other => panic!("listener: unexpected {other:?}"),
        }
    }
    if heard != delivered {
        wrong.push(format!("delivered {heard:?}, expected {delivered:?}"));
    }
    eprintln!(
        "validation table: {} names, {} messages",
        names.len(),
        texts.len()
    );
    assert!(
        wrong.is_empty(),
        "{} wrong verdicts:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// 8. Mass disconnect: 500 members dropped at once. The watcher gets exactly one
///    `Left(Disconnected)` for each of the 500 and nothing else; afterwards `who` lists only
///    the watcher, the server counts 1 member and 1 connection, a new client joins, and the
///    server shuts down cleanly (its thread did not panic).
#[test]
fn five_hundred_members_dropped_at_once_each_leave_once() {
    const MEMBERS: usize = 500;
    let _heavy = heavy();
    let server = start_server(test_config());
    let addr = server.addr();
    let (mut watcher, _) = RawClient::join(addr, "watcher");
    let members: Vec<RawClient> = (0..MEMBERS)
        .map(|i| RawClient::join(addr, &format!("m{i}")).0)
        .collect();
    for i in 0..MEMBERS {
        assert_eq!(watcher.recv(), joined(&format!("m{i}")));
    }
    assert_eq!(server.stats().members.load(Relaxed), MEMBERS as u64 + 1);
    drop(members);
    let mut gone = BTreeSet::new();
    for _ in 0..MEMBERS {
        match watcher.recv() {
            ServerMsg::Left {
                name,
                reason: CloseReason::Disconnected,
                message: None,
                time: 0,
            } => assert!(gone.insert(name.clone()), "{name} left twice"),
            other => panic!("unexpected {other:?}"),
        }
    }
    let expected: BTreeSet<String> = (0..MEMBERS).map(|i| format!("m{i}")).collect();
    assert_eq!(gone, expected);
    watcher.expect_silence(Duration::from_millis(300));
    watcher.send(&ClientMsg::Who);
    assert_eq!(
        watcher.recv(),
        ServerMsg::Members {
            members: vec![chat_proto::Member::named("watcher")]
        }
    );
    assert_eq!(server.stats().members.load(Relaxed), 1);
    assert!(wait_until(Duration::from_secs(3), || {
        server.stats().connections.load(Relaxed) == 1
    }));
    let (_late, members) = RawClient::join(addr, "late");
    assert_eq!(members, vec!["late", "watcher"]);
    drop(watcher);
    server.shutdown().expect("server thread ended cleanly");
}

/// 9. Churn (the real binary): 5,000 cycles of connect, join, abrupt drop, in batches of 100.
///    Afterwards the server's open descriptors return to their baseline within 5 s, and a
///    fresh client's `who` lists only itself (member count 0 before it joined). Resident
///    memory does not keep growing: the second 2,500 cycles add under 2 MiB.
#[test]
fn churn_of_5000_joins_and_drops_leaves_no_member_and_no_descriptor() {
    const CYCLES: usize = 5_000;
    const BATCH: usize = 100;
    let _heavy = heavy();
    let server = ServerProcess::start(&[]);
    let baseline = server.open_fds().expect("server fds");
    let addr = server.addr;
    let started = Instant::now();
    let mut rss_half = 0;
    for batch in 0..CYCLES / BATCH {
        if batch == CYCLES / BATCH / 2 {
            rss_half = server.rss_kib().expect("server RSS");
        }
        let clients: Vec<RawClient> = (0..BATCH)
            .map(|i| RawClient::join(addr, &format!("b{batch}c{i}")).0)
            .collect();
        drop(clients); // no goodbye; unread join notices make most of these resets
    }
    let churn = started.elapsed();
    let mut fds = 0;
    let settled = wait_until(Duration::from_secs(5), || {
        fds = server.open_fds().unwrap_or(usize::MAX);
        fds <= baseline
    });
    let rss_end = server.rss_kib().expect("server RSS");
    eprintln!(
        "churn: {CYCLES} cycles in {churn:?}; fds {baseline} before, {fds} after; RSS {rss_half} KiB at half way, {rss_end} KiB at the end"
    );
    assert!(settled, "server holds {fds} fds, baseline {baseline}");
    assert!(
        rss_end < rss_half + 2048,
        "RSS grew from {rss_half} to {rss_end} KiB in the second half"
    );
    let (mut probe, members) = RawClient::join(addr, "probe");
    assert_eq!(members, vec!["probe"]);
    probe.send(&ClientMsg::Who);
    assert_eq!(
        probe.recv(),
        ServerMsg::Members {
            members: vec![chat_proto::Member::named("probe")]
        }
    );
}

/// 10. Out of descriptors (the real binary under `ulimit -n 64`): 200 connections flood it.
///     Its descriptors reach the limit, it keeps serving a member already joined, uses under
///     0.3 s of CPU in a 1 s window while starved, and once the flood closes a client joins
///     within 5 s.
#[test]
fn out_of_descriptors_the_accept_loop_survives_and_recovers() {
    const FLOOD: usize = 200;
    const LIMIT: usize = 64;
    let bin = tests::binary("chat-server");
    let log = std::env::temp_dir().join(format!("chat-hostile-fds-{}.log", std::process::id()));
    let script = format!(
        "ulimit -n {LIMIT} && exec \"$0\" --port 0 --max-handshakes-per-ip 100000 2>\"$1\""
    );
    let server = ServerProcess::start_with(
        Command::new("sh")
            .arg("-c")
            .arg(&script)
            .arg(&bin)
            .arg(&log),
    );
    let (mut watcher, _) = RawClient::join(server.addr, "watcher");
    // Past the descriptors, connections wait in the listen backlog; once that is full too,
    // connects time out: the flood stops there.
    let flood: Vec<TcpStream> = (0..FLOOD)
        .map_while(|_| TcpStream::connect_timeout(&server.addr, Duration::from_millis(300)).ok())
        .collect();
    assert!(flood.len() > LIMIT, "only {} connections", flood.len());
    let mut fds = 0;
    let starved = wait_until(Duration::from_secs(5), || {
        fds = server.open_fds().unwrap_or(0);
        fds >= LIMIT - 1
    });
    assert!(starved, "server reached only {fds} fds of {LIMIT}");
    // Still serving, and not spinning on the accept errors.
    watcher.send(&ClientMsg::Who);
    assert_eq!(
        watcher.recv(),
        ServerMsg::Members {
            members: vec![chat_proto::Member::named("watcher")]
        }
    );
    let before = server.cpu_time().expect("server CPU time");
    thread::sleep(Duration::from_secs(1));
    let used = server.cpu_time().unwrap() - before;
    assert!(
        used < Duration::from_millis(300),
        "starved server used {used:?} of CPU in 1 s"
    );

    let flood_len = flood.len();
    drop(flood);
    let started = Instant::now();
    let (_after, members) = RawClient::join(server.addr, "after");
    let took = started.elapsed();
    eprintln!(
        "out of fds: {} connections, {fds} fds at the limit of {LIMIT}; {used:?} CPU in 1 s starved; joined {took:?} after the flood closed",
        flood_len
    );
    assert_eq!(members, vec!["after", "watcher"]);
    assert!(took < Duration::from_secs(5), "join took {took:?}");
    assert_eq!(watcher.recv(), joined("after"));
    // The server saw the accept errors, logged them, and went on.
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let failures = logged.matches("accept failed").count();
    eprintln!("out of fds: {failures} accept failures logged");
    assert!(failures >= 1, "no accept failure logged:\n{logged}");
}

/// 11. Server killed with SIGKILL: the real client, scripted with its stdin kept open, exits
///     with a non-zero code within 5 s and says on stderr that the connection was lost.
#[test]
fn a_client_notices_a_killed_server_and_exits_non_zero() {
    let server = ServerProcess::start(&[]);
    let (mut watcher, _) = RawClient::join(server.addr, "watcher");
    let mut client = Command::new(tests::binary("chat-client"))
        .args(["--host", "127.0.0.1", "--port"])
        .arg(server.addr.port().to_string())
        .args(["--name", "alice"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chat-client");
    let _stdin = client.stdin.take(); // kept open: the client waits for commands
    assert_eq!(watcher.recv(), joined("alice"));
    server.signal("KILL");
    let killed = Instant::now();
    let status = loop {
        if let Some(status) = client.try_wait().unwrap() {
            break status;
        }
        if killed.elapsed() > Duration::from_secs(5) {
            let _ = client.kill();
            panic!("the client did not exit within 5 s of the server's death");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let took = killed.elapsed();
    let mut stderr = String::new();
    client
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    eprintln!("SIGKILL: client exited with {status} after {took:?}: {stderr:?}");
    assert!(!status.success(), "{status}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr:?}");
    assert!(lines[0].contains("connection to server lost"), "{stderr:?}");
}

/// 12. Spoofing: hello names that look like a chat line, a notice or another member are refused;
///     after joining, a second hello is refused; texts that would start a new line, erase or
///     reorder the terminal are refused; server frames sent by a client close it for a
///     protocol error. Every chat anyone receives carries its true sender, and renders as
///     one `<sender>: ` line; every notice is about a real join or leave.
#[test]
fn no_field_a_client_sends_makes_a_message_appear_from_someone_else() {
    let server = start_server(test_config());
    let addr = server.addr();
    let (mut bob, _) = RawClient::join(addr, "bob");
    let (mut carol, _) = RawClient::join(addr, "carol");
    assert_eq!(bob.recv(), joined("carol"));

    let mut mallory = RawClient::connect(addr);
    let impostors = [
        ("alice: hi", Refusal::NameInvalid(NameRule::Whitespace)),
        ("* server", Refusal::NameInvalid(NameRule::Whitespace)),
        ("bob: hi", Refusal::NameInvalid(NameRule::Whitespace)),
        ("bob", Refusal::NameTaken),
        ("BOB", Refusal::NameTaken),
        ("ｂｏｂ", Refusal::NameTaken),
        ("bob\u{200B}", Refusal::NameInvalid(NameRule::Invisible)),
        ("\u{202E}bob", Refusal::NameInvalid(NameRule::Invisible)),
        ("bob\n", Refusal::NameInvalid(NameRule::Control)),
        ("\rbob", Refusal::NameInvalid(NameRule::Control)),
        ("\u{1b}[1Abob", Refusal::NameInvalid(NameRule::Control)),
    ];
    for (name, refusal) in impostors {
        mallory.send(&hello(name));
        assert_eq!(mallory.recv(), ServerMsg::Refused(refusal), "{name:?}");
    }
    mallory.send(&hello("mallory"));
    assert!(matches!(mallory.recv(), ServerMsg::Welcome { name, .. } if name == "mallory"));
    // A second hello cannot rename a member.
    mallory.send(&ClientMsg::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        name: "bob".into(),
        password: None,
        ident: None,
    });
    assert_eq!(mallory.recv(), ServerMsg::Refused(Refusal::AlreadyJoined));

    let server_frame = encode_to_vec(&ServerMsg::Chat {
        seq: 1,
        from: "bob".into(),
        text: "fake".into(),
        time: 0,
        kind: ChatKind::Plain,
    })
    .unwrap();
    let refused_texts = [
        "\nbob: fake".to_owned(),
        "ok\r\nbob: fake".to_owned(),
        "\r\u{1b}[2Kbob: fake".to_owned(),
        "\u{1b}[1A\u{1b}[2K* bob left (left)".to_owned(),
        "\u{202E}ekaf :bob".to_owned(),
        String::from_utf8_lossy(&server_frame).into_owned(),
    ];
    for text in &refused_texts {
        mallory.send(&chat(text));
        assert_eq!(
            mallory.recv(),
            ServerMsg::Error(ErrorKind::TextInvalid),
            "{text:?}"
        );
    }
    let passed_texts = ["bob: fake", "* bob left (left)", "hi bob: fake"];
    for text in passed_texts {
        mallory.send(&chat(text));
    }
    // Mallory's messages are in before bob speaks.
    mallory.send(&ClientMsg::Ping { nonce: 1 });
    assert_eq!(mallory.recv(), ServerMsg::Pong { nonce: 1 });
    bob.send(&chat("the real bob"));

    // Server frames sent by a client: never relayed, the sender is closed.
    let forged = [
        server_frame,
        encode_to_vec(&joined("bob")).unwrap(),
        encode_to_vec(&left("bob", CloseReason::Left)).unwrap(),
        encode_to_vec(&ServerMsg::Closing(CloseReason::ServerShutdown)).unwrap(),
    ];
    for (i, frame) in forged.iter().enumerate() {
        let name = format!("eve{i}");
        let (mut eve, _) = RawClient::join(addr, &name);
        eve.send_raw(frame);
        let (reason, _) = eve.until_closed();
        assert_eq!(reason, Some(CloseReason::ProtocolError), "forged frame {i}");
    }
    mallory.send(&ClientMsg::Leave { message: None });
    assert_eq!(mallory.until_closed().0, Some(CloseReason::Left));

    let mut expected = vec![joined("mallory")];
    for text in passed_texts {
        expected.push(ServerMsg::Chat {
            seq: 0,
            from: "mallory".into(),
            text: text.into(),
            time: 0,
            kind: ChatKind::Plain,
        });
    }
    expected.push(ServerMsg::Chat {
        seq: 0,
        from: "bob".into(),
        text: "the real bob".into(),
        time: 0,
        kind: ChatKind::Plain,
    });
    for i in 0..forged.len() {
        expected.push(joined(&format!("eve{i}")));
        expected.push(left(&format!("eve{i}"), CloseReason::ProtocolError));
    }
    expected.push(left("mallory", CloseReason::Left));

    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let mut msg = carol.recv();
        if let ServerMsg::Chat {
            seq, from, text, ..
        } = &msg
        {
            let line = chat_client::render(&msg).unwrap();
            let line = line.text();
            assert!(line.starts_with(&format!("{from}: ")), "{line:?}");
            assert!(
                !line.contains(['\n', '\r', '\u{1b}', '\u{2028}']),
                "{line:?}"
            );
            assert!(*seq > 0);
            msg = ServerMsg::Chat {
                seq: 0,
                from: from.clone(),
                text: text.clone(),
                time: 0,
                kind: ChatKind::Plain,
            };
        }
        seen.push(msg);
    }
    assert_eq!(seen, expected, "what carol saw");
    carol.expect_nothing_more();
    // Bob never hears anything said in his name but by him.
    for msg in bob.recv_until_pong() {
        if let ServerMsg::Chat { from, .. } = msg {
            assert_eq!(from, "mallory");
        }
    }
}

/// 13. One address cannot lock everyone out: 1,100 silent sockets from 127.0.0.1 take at most
///     their address's 32 handshake slots (the rest are refused at once, with the reason), and a
///     newcomer from 127.0.0.2 is welcomed.
#[test]
fn silent_sockets_from_one_address_do_not_lock_out_another() {
    let mut config = tests::test_config();
    config.room.max_handshakes_per_ip = 32;
    let server = tests::start_server(config);
    let silent: Vec<TcpStream> = (0..1_100)
        .map(|_| TcpStream::connect(server.addr()).unwrap())
        .collect();
    // The last one is past its address's limit: refused with the reason, then closed.
    let mut last = RawClient::from_stream(silent.last().unwrap().try_clone().unwrap());
    assert_eq!(last.recv(), ServerMsg::Refused(Refusal::TooManyConnections));
    assert_eq!(
        last.until_closed(),
        (Some(CloseReason::TooManyConnections), vec![])
    );
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: std::net::SocketAddr = "127.0.0.2:0".parse().unwrap();
    socket.bind(&from.into()).unwrap();
    socket.connect(&server.addr().into()).unwrap();
    let mut newcomer = RawClient::from_stream(socket.into());
    newcomer.send(&tests::hello("newcomer"));
    assert!(
        matches!(newcomer.recv(), ServerMsg::Welcome { .. }),
        "a newcomer from another address is welcomed"
    );
    drop(silent);
}
