//! `--metrics-addr`: what a scrape of `/metrics` says after a few members came and went, the
//! health checks, and the exposition as Prometheus's own `promtool` reads it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use chat_proto::{ClientMsg, CloseReason, MAGIC, Refusal, ServerMsg};
use tests::{RawClient, chat, hello, joined, left, start_server, test_config, wait_until};

/// One HTTP/1.1 request on its own connection: the status code and the body.
fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics address");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("a whole answer, then the close");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
    (status.expect("a status code"), body.to_owned())
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"))
}

/// Every sample of an exposition: `name{labels}` to its value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').expect("a sample line");
            (key.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    samples(&body)
}

/// `promtool check metrics` on `text`: its complaints, or `Ok`. Panics when promtool is missing:
/// CI installs it (`prometheus`, see xtask/src/deps.rs), and a check that is not run is no check.
fn promtool_check(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool on PATH (apt-get install prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {said}", out.status))
    }
}

/// Alice and Bob join; Carol with a version 2 hello; Dave over IRC; one hello asks for a taken name and one
/// for an empty name; Alice sends three lines; Bob breaks the protocol; Alice leaves. The
/// scrape counts each of these exactly, the members by protocol as they are, the deliveries
/// and bytes as the writers counted them; `/healthz` and `/readyz` are 200, other paths 404,
/// other methods 405; promtool finds nothing to say about the exposition.
#[test]
fn a_scrape_counts_joins_leaves_closes_refusals_and_messages_and_promtool_accepts_it() {
    let mut config = test_config();
    config.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    config.irc_port = Some(0);
    let server = start_server(config);
    let metrics = server.metrics_addr().expect("a metrics address");
    assert_eq!(get(metrics, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(metrics, "/readyz"), (200, "ok\n".into()));
    assert_eq!(get(metrics, "/health").0, 404);
    let post = "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(http(metrics, post).0, 405);

    let (mut alice, _) = RawClient::join(server.addr(), "alice");
    let (mut bob, _) = RawClient::join(server.addr(), "bob");
    assert_eq!(alice.recv(), joined("bob"));
    let mut carol = RawClient::connect(server.addr());
    let v2_hello = chat_proto::v2::ClientMsg::Hello {
        magic: MAGIC,
        version: 2,
        name: "carol".into(),
    };
    carol.send_raw(&chat_proto::encode_to_vec(&v2_hello).unwrap());
    assert_eq!(alice.recv(), joined("carol"));
    let mut dave = TcpStream::connect(server.irc_addr().unwrap()).unwrap();
    dave.write_all(b"NICK dave\r\nUSER dave 0 * :Dave\r\n")
        .unwrap();
    assert!(matches!(alice.recv(), ServerMsg::Joined { name, .. } if &*name == "dave"));
    let mut refused = RawClient::connect(server.addr());
    refused.send(&hello("alice"));
    assert_eq!(refused.recv(), ServerMsg::Refused(Refusal::NameTaken));
    refused.send(&hello(""));
    assert!(matches!(
        refused.recv(),
        ServerMsg::Refused(Refusal::NameInvalid(_))
    ));
    for i in 0..3 {
        alice.send(&chat(&format!("line {i}")));
    }
    assert_eq!(bob.recv(), joined("carol"));
    assert!(matches!(bob.recv(), ServerMsg::Joined { .. }));
    for _ in 0..3 {
        assert!(matches!(bob.recv(), ServerMsg::Chat { .. }));
    }
    let now = scrape(metrics);
    assert_eq!(now["chat_members{protocol=\"native_v3\"}"], 2.0);
    assert_eq!(now["chat_members{protocol=\"native_v2\"}"], 1.0);
    assert_eq!(now["chat_members{protocol=\"irc\"}"], 1.0);

    bob.send_raw(&[1, 0, 0, 0, 0xff]); // a frame of one byte: no such message
    assert_eq!(bob.until_closed().0, Some(CloseReason::ProtocolError));
    assert_eq!(alice.recv(), left("bob", CloseReason::ProtocolError));
    alice.send(&ClientMsg::Leave { message: None });
    assert_eq!(alice.until_closed().0, Some(CloseReason::Left));
    assert!(wait_until(Duration::from_secs(5), || {
        scrape(metrics)["chat_leaves_total{reason=\"left\"}"] == 1.0
    }));
    // Whatever was owed is written (Carol's v2 lane included): the writers' counts settle.
    assert!(wait_until(Duration::from_secs(5), || {
        let s = scrape(metrics);
        s["chat_deliveries_total"] == server.stats().frames_written.load(Relaxed) as f64
            && s["chat_bytes_out_total"] == server.stats().bytes_written.load(Relaxed) as f64
    }));

    let (_, text) = get(metrics, "/metrics");
    let s = samples(&text);
    let expected = [
        ("chat_members{protocol=\"native_v3\"}", 0.0),
        ("chat_members{protocol=\"native_v2\"}", 1.0),
        ("chat_members{protocol=\"irc\"}", 1.0),
        ("chat_joins_total", 4.0),
        ("chat_messages_total", 3.0),
        ("chat_leaves_total{reason=\"left\"}", 1.0),
        ("chat_leaves_total{reason=\"protocol_error\"}", 1.0),
        ("chat_leaves_total{reason=\"flood\"}", 0.0),
        ("chat_closes_total{reason=\"left\"}", 1.0),
        ("chat_closes_total{reason=\"protocol_error\"}", 1.0),
        ("chat_closes_total{reason=\"too_slow\"}", 0.0),
        ("chat_slow_closes_total", 0.0),
        ("chat_refused_hellos_total{reason=\"name_taken\"}", 1.0),
        ("chat_refused_hellos_total{reason=\"name_invalid\"}", 1.0),
        ("chat_refused_hellos_total{reason=\"server_full\"}", 0.0),
        ("chat_connections", 3.0), // Carol, Dave, and the refused one
        ("chat_accepted_total", 5.0),
        ("chat_ready", 1.0),
    ];
    for (key, value) in expected {
        assert_eq!(s.get(key), Some(&value), "{key} in\n{text}");
    }
    // Three lines to three members, and each one's welcome and notices: at least 9 frames.
    assert!(s["chat_deliveries_total"] >= 9.0, "{text}");
    assert!(
        s["chat_bytes_out_total"] > s["chat_deliveries_total"],
        "{text}"
    );
    assert!(s["chat_writes_total"] >= 1.0, "{text}");
    assert!(s["chat_queue_peak_bytes"] > 0.0, "{text}");
    assert_eq!(promtool_check(&text), Ok(()), "{text}");
    drop((carol, dave, refused));
}

/// A request that never ends, or one that is too long, gets no more than its deadline and a
/// bounded read: the metrics address still answers the next scrape, and the room serves on.
#[test]
fn a_stalled_or_oversized_request_does_not_hold_the_metrics_address_or_the_room() {
    let mut config = test_config();
    config.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    let server = start_server(config);
    let metrics = server.metrics_addr().unwrap();
    // A head that never ends: answered 431 at the read bound (or reset, for the bytes it left
    // unread), at once, not at the deadline.
    let mut long = TcpStream::connect(metrics).unwrap();
    long.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let _ = long.write_all(format!("GET /{} HTTP/1.1\r\n", "x".repeat(10_000)).as_bytes());
    let mut answer = Vec::new();
    match long.read_to_end(&mut answer) {
        Ok(_) => assert!(answer.starts_with(b"HTTP/1.1 431 "), "{answer:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
    }
    // More stalled scrapers than are served at once.
    let mut stalled: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(metrics).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        })
        .collect();
    let (mut alice, _) = RawClient::join(server.addr(), "alice");
    let (mut bob, _) = RawClient::join(server.addr(), "bob");
    assert_eq!(alice.recv(), joined("bob"));
    bob.send(&chat("still here"));
    assert!(matches!(alice.recv(), ServerMsg::Chat { .. }));
    // Past the deadline, the stalled ones are closed unanswered and scrapes are answered again.
    // (Closed with their request unread: a reset, or an end for those read to the last byte.)
    for s in &mut stalled {
        let mut rest = Vec::new();
        match s.read_to_end(&mut rest) {
            Ok(n) => assert_eq!(n, 0, "{rest:?}"),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        }
    }
    assert_eq!(get(metrics, "/healthz").0, 200);
}

/// A node of a shared room is ready while it holds its lease: cut off from Redis past its lease,
/// `/readyz` says 503 and `chat_ready` 0 while `/healthz` stays 200; once Redis is back and the
/// node is in the room again, 200.
#[test]
fn readyz_is_503_while_a_shared_room_s_node_is_cut_off_past_its_lease() {
    let redis = tests::redis::RedisServer::start();
    let proxy = tests::proxy::Proxy::start(redis.addr());
    let mut config = test_config();
    config.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    config.shared = Some(chat_server::SharedConfig {
        url: format!("redis://{}", proxy.addr()),
        label: "a".into(),
        lease: Duration::from_secs(2),
        ..Default::default()
    });
    let server = start_server(config);
    let metrics = server.metrics_addr().unwrap();
    let (mut alice, _) = RawClient::join(server.addr(), "alice");
    assert_eq!(get(metrics, "/readyz").0, 200);

    proxy.cut();
    assert_eq!(alice.until_closed().0, Some(CloseReason::ServerLost));
    let (status, body) = get(metrics, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert_eq!(get(metrics, "/healthz").0, 200);
    assert_eq!(scrape(metrics)["chat_ready"], 0.0);

    proxy.restore();
    assert!(wait_until(Duration::from_secs(10), || {
        get(metrics, "/readyz").0 == 200
    }));
    assert_eq!(scrape(metrics)["chat_ready"], 1.0);
}
