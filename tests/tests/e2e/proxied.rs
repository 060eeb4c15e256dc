//! Trusted proxies on the native and IRC ports, spoken to by hand: the PROXY protocol header
//! a trusted peer sends first gives the address the per-address limits count; an untrusted
//! peer's header is only bytes of its stream; a bad or missing one closes the connection.
//! (The same with real HAProxy and nginx in front is in `proxies`.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use chat_proto::{CloseReason, Refusal, ServerMsg};
use tests::{RawClient, ServerConfig, hello, start_server, test_config};

/// A PROXY protocol v2 header: the PROXY command for a TCP client at `source` (to 127.0.0.1:7878),
/// or LOCAL when `source` is `None`.
pub fn proxy_v2(source: Option<SocketAddr>) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    let Some(source) = source else {
        out.extend_from_slice(&[0x20, 0x00, 0, 0]);
        return out;
    };
    let (family, mut block) = match source.ip() {
        IpAddr::V4(ip) => (0x11, [ip.octets().to_vec(), vec![127, 0, 0, 1]].concat()),
        IpAddr::V6(ip) => (0x21, [ip.octets().to_vec(), [0; 16].to_vec()].concat()),
    };
    block.extend_from_slice(&source.port().to_be_bytes());
    block.extend_from_slice(&7878u16.to_be_bytes());
    out.extend_from_slice(&[0x21, family]);
    out.extend_from_slice(&(block.len() as u16).to_be_bytes());
    out.extend_from_slice(&block);
    out
}

/// A config trusting `proxy`, with two handshakes per address.
fn trusting(proxy: &str) -> ServerConfig {
    let mut config = test_config();
    config.trusted_proxies = chat_server::parse_trusted_proxies(proxy).unwrap();
    config.room.max_handshakes_per_ip = 2;
    config.irc_port = Some(0);
    config
}

fn from(addr: &str) -> Option<SocketAddr> {
    Some(addr.parse().unwrap())
}

/// A native connection that sent `header` and whatever follows it in the same write.
fn proxied(server: SocketAddr, header: &[u8], then: &[u8]) -> RawClient {
    let mut client = RawClient::connect(server);
    client.send_raw(&[header, then].concat());
    client
}

fn assert_refused(client: &mut RawClient) {
    assert_eq!(
        client.recv(),
        ServerMsg::Refused(Refusal::TooManyConnections)
    );
    let (reason, _) = client.until_closed();
    assert_eq!(reason, Some(CloseReason::TooManyConnections));
}

#[test]
fn a_trusted_proxys_header_counts_each_client_under_its_own_address() {
    let server = start_server(trusting("127.0.0.1"));
    let one = from("198.51.100.1:40000");
    // Two handshakes from one client fill its address's slots; its third is refused.
    let _held: Vec<RawClient> = (0..2)
        .map(|_| proxied(server.addr(), &proxy_v2(one), b""))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    assert_refused(&mut proxied(server.addr(), &proxy_v2(one), b""));
    // Another client behind the same proxy still gets in; its hello came in the header's write.
    let hello = chat_proto::encode_to_vec(&hello("bea")).unwrap();
    let mut bea = proxied(server.addr(), &proxy_v2(from("198.51.100.2:40000")), &hello);
    assert!(matches!(bea.recv(), ServerMsg::Welcome { .. }));
    // So does one over IPv6 (an address counts as its /64), and one sent as v1 text.
    let v6 = proxy_v2(from("[2001:db8::7]:1"));
    let mut cid = proxied(
        server.addr(),
        &v6,
        &chat_proto::encode_to_vec(&tests::hello("cid")).unwrap(),
    );
    assert!(matches!(cid.recv(), ServerMsg::Welcome { .. }));
    let v1 = b"PROXY TCP4 198.51.100.3 127.0.0.1 5 7878\r\n";
    let mut dee = proxied(
        server.addr(),
        v1,
        &chat_proto::encode_to_vec(&tests::hello("dee")).unwrap(),
    );
    assert!(matches!(dee.recv(), ServerMsg::Welcome { .. }));
}

#[test]
fn irc_behind_a_trusted_proxy_counts_per_client_and_keeps_the_first_lines() {
    let server = start_server(trusting("127.0.0.1"));
    let irc = server.irc_addr().unwrap();
    let one = from("198.51.100.1:40000");
    let _held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(irc).unwrap();
            s.write_all(&proxy_v2(one)).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut third = TcpStream::connect(irc).unwrap();
    third.write_all(&proxy_v2(one)).unwrap();
    let lines = read_to_end(third);
    assert!(lines.contains("ERROR"), "{lines}");
    let mut other = TcpStream::connect(irc).unwrap();
    let registration = b"NICK eve\r\nUSER eve 0 * :Eve\r\n";
    other
        .write_all(&[&proxy_v2(from("198.51.100.2:1"))[..], registration].concat())
        .unwrap();
    other
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(other).read_line(&mut line).unwrap();
    assert!(line.contains(" 001 eve "), "{line}");
}

/// What the server sends until it closes, as text.
fn read_to_end(mut stream: TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn an_untrusted_peers_header_is_only_bytes_of_its_stream() {
    // 127.0.0.2 is trusted; these tests connect from 127.0.0.1.
    let server = start_server(trusting("127.0.0.2"));
    // On the native port a v2 header is not a frame: a protocol error.
    let mut native = proxied(server.addr(), &proxy_v2(from("198.51.100.9:1")), b"");
    assert_eq!(native.until_closed().0, Some(CloseReason::ProtocolError));
    // On IRC a v1 header is a line like any other: every connection counts under 127.0.0.1,
    // whatever address it claims, and the third is refused.
    let irc = server.irc_addr().unwrap();
    let _held: Vec<TcpStream> = (1..=2)
        .map(|i| {
            let mut s = TcpStream::connect(irc).unwrap();
            let line = format!("PROXY TCP4 198.51.100.{i} 127.0.0.1 5 6667\r\n");
            s.write_all(line.as_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut third = TcpStream::connect(irc).unwrap();
    third
        .write_all(b"PROXY TCP4 198.51.100.3 127.0.0.1 5 6667\r\n")
        .unwrap();
    assert!(read_to_end(third).contains("ERROR"));
}

#[test]
fn a_bad_or_missing_header_from_a_trusted_proxy_closes_the_connection() {
    let mut config = trusting("127.0.0.1");
    config.room.handshake_timeout = Duration::from_secs(1);
    let server = start_server(config);
    // A hello where the header should be: closed, and nothing of it was read as a hello.
    let hello = chat_proto::encode_to_vec(&hello("ann")).unwrap();
    let mut bad = proxied(server.addr(), b"", &hello);
    assert_eq!(bad.until_closed(), (None, vec![]));
    // A header whose length field claims 64 KiB: refused before it is waited for.
    let mut long = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff".to_vec();
    long.extend_from_slice(&[0; 12]);
    assert_eq!(
        proxied(server.addr(), &long, b"").until_closed(),
        (None, vec![])
    );
    // Nothing at all: closed at the deadline.
    let started = Instant::now();
    let mut silent = RawClient::connect(server.addr());
    assert_eq!(silent.until_closed(), (None, vec![]));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

#[test]
fn a_local_command_keeps_the_proxys_own_address() {
    let server = start_server(trusting("127.0.0.1"));
    // Health checks (LOCAL) count under the proxy's own address: two fill it.
    let _held: Vec<RawClient> = (0..2)
        .map(|_| proxied(server.addr(), &proxy_v2(None), b""))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    assert_refused(&mut proxied(server.addr(), &proxy_v2(None), b""));
    let hello = chat_proto::encode_to_vec(&hello("fay")).unwrap();
    let mut fay = proxied(server.addr(), &proxy_v2(from("198.51.100.5:1")), &hello);
    assert!(matches!(fay.recv(), ServerMsg::Welcome { .. }));
}
