//! The web codec alone (bytes in, inbound items out; messages in, bytes out), and inside a hub
//! with a room, where the room's limits and deadlines cover the HTTP phase.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use chat_core::{Config, Due, Hub, Input, Room};
use chat_proto::{ClientMsg, CloseReason, Refusal};

use super::*;
use crate::web::http::tests::masked;
use crate::web::{CONTENT_SECURITY_POLICY, WebPolicy};

/// An upgrade request as a browser sends it.
const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
    Origin: http://127.0.0.1:8080\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

const CONN: ConnId = ConnId(1);

fn codec() -> WebCodec {
    WebCodec::new(WebPolicy::default(), 2048)
}

/// Decodes `bytes` as the hub does: then the connections the codec names, with no new bytes.
fn feed(codec: &mut WebCodec, conn: ConnId, bytes: &[u8], out: &mut Vec<Inbound>) {
    codec.decode(conn, bytes, out);
    while let Some(ready) = codec.poll_ready() {
        codec.decode(ready, &[], out);
    }
}

/// What a codec makes of `bytes` fed in pieces of the given sizes (cycled), with adjacent
/// replies joined (how a pong is cut depends on the reads).
fn read_all(bytes: &[u8], sizes: &[usize]) -> Vec<Inbound> {
    let mut codec = codec();
    let mut out = Vec::new();
    let mut size = sizes.iter().cycle();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = size.next().copied().unwrap_or(1).clamp(1, rest.len());
        let (piece, tail) = rest.split_at(n);
        feed(&mut codec, CONN, piece, &mut out);
        rest = tail;
    }
    let mut joined: Vec<Inbound> = Vec::new();
    for inbound in out {
        match (joined.last_mut(), inbound) {
            (Some(Inbound::Reply(last)), Inbound::Reply(more)) => last.extend(more),
            (_, inbound) => joined.push(inbound),
        }
    }
    joined
}

fn text(inbound: &Inbound) -> String {
    match inbound {
        Inbound::Reply(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        other => format!("{other:?}"),
    }
}

fn get(path: &str, close: bool) -> String {
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n{connection}\r\n")
}

#[test]
fn the_http_phase_reads_requests_however_the_bytes_are_cut() {
    let requests = [
        get("/", false),
        get("/app.js", false),
        get("/secret", false),
        get("/app.css", true),
    ]
    .concat();
    let bytes = requests.as_bytes();
    let whole = read_all(bytes, &[bytes.len()]);
    assert_eq!(
        whole.len(),
        2,
        "the answers are one run of bytes, then the end"
    );
    // Answers in order, each once: split them at their status lines.
    let answers = text(&whole[0]);
    let statuses: Vec<&str> = answers
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &answers[at..at + 12])
        .collect();
    assert_eq!(
        statuses,
        [
            "HTTP/1.1 200",
            "HTTP/1.1 200",
            "HTTP/1.1 404",
            "HTTP/1.1 200"
        ]
    );
    assert!(answers.contains("text/javascript") && answers.contains("text/css"));
    assert_eq!(answers.matches("Connection: close").count(), 1);
    assert_eq!(whole[1], Inbound::End);
    for cut in 1..bytes.len() {
        assert_eq!(read_all(bytes, &[cut, bytes.len()]), whole, "cut at {cut}");
    }
    assert_eq!(read_all(bytes, &[1]), whole, "a byte at a time");
    assert_eq!(read_all(bytes, &[7, 3]), whole);
}

#[test]
fn bytes_after_the_upgrade_in_the_same_read_are_websocket_frames() {
    let mut bytes = UPGRADE.to_vec();
    bytes.extend(masked(0x1, br#"{"type":"hello","name":"ann"}"#));
    bytes.extend(masked(0x9, b"ping"));
    bytes.extend(masked(0x1, br#"{"type":"who"}"#));
    let mut codec = codec();
    let mut out = Vec::new();
    // The upgrade's answer comes alone: the frames are read once the hub has carried it out,
    // so that what the room says to them is encoded for a WebSocket.
    codec.decode(CONN, &bytes, &mut out);
    assert_eq!(out.len(), 1);
    assert!(text(&out[0]).starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(text(&out[0]).contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    assert_eq!(codec.poll_ready(), Some(CONN));
    assert_eq!(codec.poll_ready(), None);
    out.clear();
    codec.decode(CONN, &[], &mut out);
    assert!(matches!(&out[0], Inbound::Msg(ClientMsg::Hello { name, .. }) if name == "ann"));
    assert_eq!(
        out[1],
        Inbound::Reply(vec![0x8a, 4, b'p', b'i', b'n', b'g'])
    );
    assert_eq!(out[2], Inbound::Msg(ClientMsg::Who));
    assert_eq!(out.len(), 3);
    // However the bytes are cut, the same.
    let whole = read_all(&bytes, &[bytes.len()]);
    assert_eq!(whole.len(), 4);
    assert_eq!(read_all(&bytes, &[bytes.len() / 2 + 1]), whole);
    assert_eq!(read_all(&bytes, &[1]), whole);
    assert_eq!(read_all(&bytes, &[UPGRADE.len() - 1, 5]), whole);
}

#[test]
fn a_request_answered_with_close_yields_end_and_nothing_after_it_is_read() {
    let cases = [
        (get("/secret", true), "HTTP/1.1 404 Not Found\r\n"),
        (get("/ws", false), "HTTP/1.1 426 Upgrade Required\r\n"),
        (
            "\x16\x03\x01\r\n\r\n".to_owned(),
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        (
            "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n".to_owned(),
            "HTTP/1.1 405 Method Not Allowed\r\n",
        ),
        (
            "GET /ws HTTP/1.1\r\nHost: localhost\r\nOrigin: http://b\r\nUpgrade: websocket\r\n\r\n"
                .into(),
            "HTTP/1.1 403 Forbidden\r\n",
        ),
    ];
    for (request, status) in cases {
        let mut codec = codec();
        let mut out = Vec::new();
        // A request after the one that closes is not answered.
        feed(
            &mut codec,
            CONN,
            (request + &get("/", false)).as_bytes(),
            &mut out,
        );
        assert_eq!(out.len(), 2, "{status}: {out:?}");
        assert!(text(&out[0]).starts_with(status), "{}", text(&out[0]));
        assert!(text(&out[0]).contains("Connection: close\r\n"));
        assert_eq!(out[1], Inbound::End);
        out.clear();
        feed(&mut codec, CONN, get("/", false).as_bytes(), &mut out);
        assert_eq!(out, [], "{status}: nothing more is read");
    }
}

#[test]
fn a_connection_is_answered_thirty_two_requests_and_the_last_closes() {
    let many = get("/app.css", false).repeat(40);
    let out = read_all(many.as_bytes(), &[many.len()]);
    assert_eq!(out.len(), 2);
    assert_eq!(
        text(&out[0]).matches("HTTP/1.1 200 OK").count(),
        MAX_REQUESTS
    );
    assert_eq!(text(&out[0]).matches("Connection: close").count(), 1);
    assert_eq!(out[1], Inbound::End);
}

#[test]
fn nothing_of_the_rooms_is_encoded_for_a_connection_in_its_http_phase() {
    let mut codec = codec();
    let mut out = Vec::new();
    let (unheard, partial, served, closed) = (ConnId(1), ConnId(2), ConnId(3), ConnId(4));
    feed(&mut codec, partial, b"GET / HT", &mut out);
    feed(&mut codec, served, get("/", false).as_bytes(), &mut out);
    feed(&mut codec, closed, get("/", true).as_bytes(), &mut out);
    let said = [
        ServerMsg::Refused(Refusal::TooManyConnections),
        ServerMsg::Closing(CloseReason::TooManyConnections),
        ServerMsg::Closing(CloseReason::HandshakeTimeout),
        ServerMsg::Closing(CloseReason::ServerShutdown),
        ServerMsg::Ping { nonce: 1 },
    ];
    for conn in [unheard, partial, served, closed] {
        for msg in &said {
            let mut bytes = Vec::new();
            assert!(!codec.encode_to(conn, msg, &mut bytes), "{conn:?} {msg:?}");
            assert_eq!(bytes, b"", "{conn:?} {msg:?}");
        }
    }
    // Upgraded, the same connection gets the room's messages as frames.
    feed(&mut codec, served, UPGRADE, &mut out);
    let mut bytes = Vec::new();
    assert!(codec.encode_to(served, &ServerMsg::Ping { nonce: 1 }, &mut bytes));
    assert_eq!(bytes[0], 0x81);
}

#[test]
fn closing_is_the_json_then_a_close_frame_with_its_status() {
    let mut codec = codec();
    feed(&mut codec, CONN, UPGRADE, &mut Vec::new());
    let mut out = Vec::new();
    let msg = ServerMsg::Closing(CloseReason::Flood);
    assert!(codec.encode_to(CONN, &msg, &mut out));
    let json = r#"{"type":"closing","reason":"Flood","text":"flooding"}"#;
    assert_eq!(&out[2..2 + json.len()], json.as_bytes());
    let close = &out[2 + json.len()..];
    assert_eq!(close[0], 0x88);
    assert_eq!(close[1] as usize, close.len() - 2);
    assert_eq!(u16::from_be_bytes([close[2], close[3]]), 1008);
    assert_eq!(&close[4..], b"flooding");
}

#[test]
fn a_forgotten_connection_keeps_nothing() {
    let mut codec = codec();
    codec.decode(CONN, UPGRADE, &mut Vec::new());
    codec.forget(CONN);
    assert_eq!(codec.poll_ready(), None);
    codec.decode(CONN, &[], &mut Vec::new());
    assert!(codec.conns.is_empty());
}

/// A hub whose room has `config`, with the web codec; returns its id too.
fn hub(config: Config) -> (Hub, chat_core::CodecId) {
    let mut hub = Hub::new(Room::new(config, 1).unwrap(), 1 << 20);
    let web = hub.add_codec(Box::new(codec()));
    (hub, web)
}

/// Everything due for `conn`, and whether its writer is then done.
fn drain(hub: &mut Hub, conn: ConnId) -> (String, bool) {
    let mut got = Vec::new();
    loop {
        let mut chunk = Vec::new();
        let due = hub.fanout_of(conn).due(conn, |f| {
            chunk.extend_from_slice(f);
            true
        });
        if due != Due::Write {
            return (String::from_utf8_lossy(&got).into_owned(), due == Due::Done);
        }
        hub.fanout_of(conn).consumed(conn, chunk.len());
        got.extend(chunk);
    }
}

fn open(hub: &mut Hub, now: Instant, conn: u64, codec: chat_core::CodecId, from: IpAddr) {
    hub.attach(ConnId(conn), codec);
    hub.handle_input(now, Input::OpenedFrom(ConnId(conn), from))
        .unwrap();
}

#[test]
fn the_handshake_cap_per_address_counts_connections_in_their_http_phase() {
    let now = Instant::now();
    let (mut hub, web) = hub(Config {
        max_handshakes_per_ip: 2,
        ..Config::default()
    });
    let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
    open(&mut hub, now, 1, web, a);
    open(&mut hub, now, 2, web, a);
    hub.handle_bytes(now, ConnId(1), b"GET / HTTP/1.1\r\n")
        .unwrap();
    hub.handle_bytes(now, ConnId(2), get("/", false).as_bytes())
        .unwrap();
    assert!(drain(&mut hub, ConnId(2)).0.starts_with("HTTP/1.1 200 OK"));
    // A third from the same address, a page or a native client, is refused: the page's
    // connection is closed plainly, with nothing of the room's.
    open(&mut hub, now, 3, web, a);
    assert!(!hub.room().is_open(ConnId(3)));
    assert_eq!(drain(&mut hub, ConnId(3)), (String::new(), true));
    hub.handle_input(now, Input::OpenedFrom(ConnId(4), a))
        .unwrap();
    assert!(!hub.room().is_open(ConnId(4)));
    open(&mut hub, now, 5, web, b);
    assert!(
        hub.room().is_open(ConnId(5)),
        "another address still gets in"
    );
    // A connection whose HTTP phase ends frees its slot.
    hub.handle_bytes(
        now,
        ConnId(1),
        b"Host: localhost\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert!(!hub.room().is_open(ConnId(1)));
    let (page, done) = drain(&mut hub, ConnId(1));
    assert!(page.starts_with("HTTP/1.1 200 OK") && done, "{page}");
    open(&mut hub, now, 6, web, a);
    assert!(hub.room().is_open(ConnId(6)));
}

#[test]
fn the_handshake_deadline_counts_from_connect_across_the_http_phase() {
    let start = Instant::now();
    let (mut hub, web) = hub(Config {
        handshake_timeout: Duration::from_secs(10),
        ..Config::default()
    });
    let from: IpAddr = "10.0.0.1".parse().unwrap();
    open(&mut hub, start, 1, web, from);
    open(&mut hub, start, 2, web, from);
    // Requests do not move the deadline.
    let later = start + Duration::from_secs(9);
    hub.handle_bytes(later, ConnId(1), get("/", false).as_bytes())
        .unwrap();
    hub.handle_bytes(later, ConnId(2), UPGRADE).unwrap();
    let (page, _) = drain(&mut hub, ConnId(1));
    assert!(page.starts_with("HTTP/1.1 200 OK"));
    let (upgrade, _) = drain(&mut hub, ConnId(2));
    assert!(upgrade.starts_with("HTTP/1.1 101"));
    assert_eq!(hub.poll_timeout(), Some(start + Duration::from_secs(10)));
    hub.handle_input(start + Duration::from_secs(10), Input::Tick)
        .unwrap();
    // In the HTTP phase, a plain close; upgraded, the WebSocket's goodbye.
    assert_eq!(drain(&mut hub, ConnId(1)), (String::new(), true));
    let (goodbye, done) = drain(&mut hub, ConnId(2));
    assert!(goodbye.contains(r#"{"type":"closing","reason":"HandshakeTimeout""#));
    assert!(done);
}

#[test]
fn a_request_past_the_rate_limit_is_answered_429_and_the_connection_closes() {
    let now = Instant::now();
    let (mut hub, web) = hub(Config {
        rate_per_sec: 1,
        burst: 2,
        ..Config::default()
    });
    open(&mut hub, now, 1, web, "10.0.0.1".parse().unwrap());
    let requests = [
        get("/", false),
        get("/app.js", false),
        get("/app.css", false),
    ]
    .concat();
    let mut bytes = requests.into_bytes();
    bytes.extend(UPGRADE);
    hub.handle_bytes(now, ConnId(1), &bytes).unwrap();
    let (answers, done) = drain(&mut hub, ConnId(1));
    let statuses: Vec<&str> = answers.lines().filter(|l| l.starts_with("HTTP/")).collect();
    assert_eq!(
        statuses,
        [
            "HTTP/1.1 200 OK",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 429 Too Many Requests"
        ]
    );
    assert!(answers.ends_with("Connection: close\r\n\r\n429 Too Many Requests\n"));
    assert!(done);
    assert!(!hub.room().is_open(ConnId(1)));
}

#[test]
fn the_default_burst_covers_every_request_a_connection_may_make() {
    let now = Instant::now();
    let (mut hub, web) = hub(Config::default());
    open(&mut hub, now, 1, web, "10.0.0.1".parse().unwrap());
    let mut bytes = get("/app.js", false).repeat(MAX_REQUESTS - 1).into_bytes();
    bytes.extend(UPGRADE);
    bytes.extend(masked(0x1, br#"{"type":"hello","name":"ann"}"#));
    hub.handle_bytes(now, ConnId(1), &bytes).unwrap();
    let (answers, done) = drain(&mut hub, ConnId(1));
    assert_eq!(answers.matches("HTTP/1.1 200 OK").count(), MAX_REQUESTS - 1);
    assert!(answers.contains("HTTP/1.1 101") && !answers.contains("429"));
    assert!(!done);
    assert_eq!(hub.room().name_of(ConnId(1)), Some("ann"));
}

/// Asserts that an answer carries the policy, no-sniffing and no-framing headers.
fn assert_guarded(answer: &str) {
    let head = answer.split("\r\n\r\n").next().unwrap_or("");
    let head = format!("{head}\r\n").to_ascii_lowercase();
    let csp = format!(
        "\r\ncontent-security-policy: {}\r\n",
        CONTENT_SECURITY_POLICY.to_ascii_lowercase()
    );
    assert!(head.contains(&csp), "{answer}");
    assert!(head.contains("frame-ancestors 'none'"), "{answer}");
    assert!(
        head.contains("\r\nx-content-type-options: nosniff\r\n"),
        "{answer}"
    );
    assert!(head.contains("\r\nx-frame-options: deny\r\n"), "{answer}");
}

#[test]
fn every_answer_of_the_web_port_carries_the_security_headers() {
    let evil = "GET / HTTP/1.1\r\nHost: evil.test:8080\r\n\r\n".to_owned();
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n",
        "a".repeat(MAX_REQUEST_BYTES)
    );
    let cases = [
        (get("/", false), "200 OK"),
        (get("/favicon.ico", false), "200 OK"),
        (
            String::from_utf8_lossy(UPGRADE).into_owned(),
            "101 Switching Protocols",
        ),
        ("GET / HTTP/1.1\r\n\r\n".to_owned(), "400 Bad Request"),
        (get("/nope", false), "404 Not Found"),
        (
            "PUT / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_owned(),
            "405 Method Not Allowed",
        ),
        (evil, "421 Misdirected Request"),
        (get("/ws", false), "426 Upgrade Required"),
        (huge, "431 Request Header Fields Too Large"),
        (
            "GET /ws HTTP/1.1\r\nHost: localhost\r\nOrigin: http://b\r\nUpgrade: websocket\r\n\r\n"
                .to_owned(),
            "403 Forbidden",
        ),
    ];
    for (request, status) in cases {
        let out = read_all(request.as_bytes(), &[request.len()]);
        let answer = text(&out[0]);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{answer}"
        );
        assert_guarded(&answer);
    }
    assert_guarded(&String::from_utf8_lossy(&too_many_requests()));
}

#[test]
fn a_rebound_name_gets_neither_the_page_nor_the_socket() {
    let upgrade = String::from_utf8_lossy(UPGRADE).replace("127.0.0.1:8080", "evil.test:8080");
    for request in [get("/", false).replace("127.0.0.1", "evil.test"), upgrade] {
        let out = read_all(request.as_bytes(), &[request.len()]);
        assert!(text(&out[0]).starts_with("HTTP/1.1 421 Misdirected Request\r\n"));
        assert!(!text(&out[0]).contains("<html"));
        assert_eq!(out[1], Inbound::End);
    }
    // Named by the operator, the same name is served.
    let policy = WebPolicy {
        hosts: vec!["evil.test".into()],
        ..WebPolicy::default()
    };
    let mut named = WebCodec::new(policy, 2048);
    let mut out = Vec::new();
    let request = get("/", false).replace("127.0.0.1", "evil.test");
    feed(&mut named, CONN, request.as_bytes(), &mut out);
    assert!(text(&out[0]).starts_with("HTTP/1.1 200 OK\r\n"));
}

#[test]
fn a_smuggled_second_request_is_never_answered() {
    let smuggle = "GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\
        Content-Length: 26\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n";
    let out = read_all(smuggle.as_bytes(), &[smuggle.len()]);
    assert_eq!(out.len(), 2);
    assert!(text(&out[0]).starts_with("HTTP/1.1 400 Bad Request\r\n"));
    assert_eq!(text(&out[0]).matches("HTTP/1.1").count(), 1);
    assert_eq!(out[1], Inbound::End);
}

/// A hub whose web codec trusts the proxy at 10.0.0.1, two handshakes per address.
fn proxied_hub() -> (Hub, chat_core::CodecId) {
    let mut hub = Hub::new(
        Room::new(
            Config {
                max_handshakes_per_ip: 2,
                ..Config::default()
            },
            1,
        )
        .unwrap(),
        1 << 20,
    );
    let mut codec = codec();
    codec.trust_proxies(crate::proxy::TrustedProxies(vec![
        "10.0.0.1".parse().unwrap(),
    ]));
    let web = hub.add_codec(Box::new(codec));
    (hub, web)
}

/// A request for the page as nginx forwards it, with `headers` added.
fn forwarded_get(headers: &str) -> String {
    format!("GET / HTTP/1.0\r\nHost: 127.0.0.1:8080\r\n{headers}Connection: close\r\n\r\n")
}

#[test]
fn a_trusted_proxys_requests_count_under_the_client_they_name() {
    let now = Instant::now();
    let (mut hub, web) = proxied_hub();
    let proxy: IpAddr = "10.0.0.1".parse().unwrap();
    // Two clients' upgrades through the proxy hold a handshake each, under their own address.
    for (conn, client) in [
        (1, "198.51.100.1"),
        (2, "198.51.100.1"),
        (3, "198.51.100.2"),
    ] {
        open(&mut hub, now, conn, web, proxy);
        let xff = format!("X-Forwarded-For: 203.0.113.99, {client}\r\n");
        let upgrade = String::from_utf8_lossy(UPGRADE).replace("Host:", &format!("{xff}Host:"));
        hub.handle_bytes(now, ConnId(conn), upgrade.as_bytes())
            .unwrap();
        assert!(drain(&mut hub, ConnId(conn)).0.starts_with("HTTP/1.1 101"));
    }
    // The first client's third is refused once its request names it: no answer, closed.
    open(&mut hub, now, 4, web, proxy);
    let xff = forwarded_get("X-Forwarded-For: 198.51.100.1\r\n");
    hub.handle_bytes(now, ConnId(4), xff.as_bytes()).unwrap();
    assert!(!hub.room().is_open(ConnId(4)));
    assert_eq!(drain(&mut hub, ConnId(4)), (String::new(), true));
    // The proxy's own slots are free (three of its connections moved away), and `Forwarded`
    // is read as well.
    open(&mut hub, now, 5, web, proxy);
    open(&mut hub, now, 6, web, proxy);
    let fwd = forwarded_get("Forwarded: for=\"[2001:db8::1]:4711\";proto=https\r\n");
    hub.handle_bytes(now, ConnId(6), fwd.as_bytes()).unwrap();
    assert!(drain(&mut hub, ConnId(6)).0.starts_with("HTTP/1.1 200 OK"));
    // No forwarding header: the proxy's own request (a health check), under its address.
    open(&mut hub, now, 7, web, proxy);
    hub.handle_bytes(now, ConnId(7), forwarded_get("").as_bytes())
        .unwrap();
    assert!(drain(&mut hub, ConnId(7)).0.starts_with("HTTP/1.1 200 OK"));
}

#[test]
fn forwarding_headers_are_ignored_from_others_and_a_forgery_closes() {
    let now = Instant::now();
    let (mut hub, web) = proxied_hub();
    let stranger: IpAddr = "10.0.0.9".parse().unwrap();
    // An untrusted peer names other clients: it still counts as itself, and its third is
    // refused at open.
    for conn in 1..=2 {
        open(&mut hub, now, conn, web, stranger);
        let keep_alive = get("/", false).replace(
            "Host:",
            &format!("X-Forwarded-For: 198.51.100.{conn}\r\nHost:"),
        );
        hub.handle_bytes(now, ConnId(conn), keep_alive.as_bytes())
            .unwrap();
        assert!(
            drain(&mut hub, ConnId(conn))
                .0
                .starts_with("HTTP/1.1 200 OK")
        );
        assert!(hub.room().is_open(ConnId(conn)));
    }
    open(&mut hub, now, 3, web, stranger);
    assert!(!hub.room().is_open(ConnId(3)));
    // Through the proxy, headers that disagree (one forged) or a hop that is no address: closed
    // unanswered.
    let proxy: IpAddr = "10.0.0.1".parse().unwrap();
    for (conn, headers) in [
        (
            5,
            "X-Forwarded-For: 198.51.100.1\r\nForwarded: for=198.51.100.7\r\n",
        ),
        (6, "X-Forwarded-For: unknown\r\n"),
    ] {
        open(&mut hub, now, conn, web, proxy);
        hub.handle_bytes(now, ConnId(conn), forwarded_get(headers).as_bytes())
            .unwrap();
        assert!(!hub.room().is_open(ConnId(conn)), "{headers}");
        assert_eq!(drain(&mut hub, ConnId(conn)), (String::new(), true));
    }
}
