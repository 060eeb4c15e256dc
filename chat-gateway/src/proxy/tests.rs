use super::*;

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn trusted(blocks: &[&str]) -> TrustedProxies {
    TrustedProxies(blocks.iter().map(|b| cidr(b)).collect())
}

#[test]
fn cidr_blocks_contain_their_addresses_and_no_others() {
    let v4 = cidr("10.1.0.0/16");
    assert!(v4.contains(ip("10.1.255.7")));
    assert!(!v4.contains(ip("10.2.0.1")));
    assert!(
        v4.contains(ip("::ffff:10.1.0.1")),
        "an IPv4-mapped peer is its IPv4 address"
    );
    assert!(!v4.contains(ip("fd00::1")));
    let v6 = cidr("fd00:1::/32");
    assert!(v6.contains(ip("fd00:1:ffff::9")));
    assert!(!v6.contains(ip("fd00:2::1")));
    assert!(cidr("127.0.0.1").contains(ip("127.0.0.1")));
    assert!(!cidr("127.0.0.1").contains(ip("127.0.0.2")));
    assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
    assert!(cidr("::/0").contains(ip("2001:db8::1")));
    assert_eq!(cidr("::1").to_string(), "::1/128");
}

#[test]
fn cidr_blocks_are_parsed_strictly() {
    for bad in [
        "",
        "10.0.0.0/",
        "10.0.0.0/33",
        "::/129",
        "10.0.0.1/8",
        "10.0.0.0/08",
        "10.0.0.0/+8",
        " 10.0.0.0/8",
        "10.0.0.0/8 ",
        "10.0.0/8",
        "010.0.0.0/8",
        "host.example/8",
        "fd00::1/8",
        "10.0.0.0/8/8",
        "10.0.0.0/1000",
    ] {
        let error = bad.parse::<Cidr>().expect_err(bad);
        assert!(error.to_string().contains("is not a CIDR block"), "{error}");
    }
    assert_eq!(
        "10.0.0.1/8".parse::<Cidr>().unwrap_err().to_string(),
        "'10.0.0.1/8' is not a CIDR block (bits are set past the prefix: 10.0.0.0/8?)"
    );
    for good in [
        "10.0.0.0/8",
        "0.0.0.0/0",
        "192.0.2.7/32",
        "fd00::/8",
        "::1/128",
        "::1",
    ] {
        good.parse::<Cidr>().expect(good);
    }
}

/// A v2 header: `command` 0 LOCAL or 1 PROXY, `family` byte, the address block.
fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x20 | command);
    out.push(family);
    out.extend_from_slice(&(block.len() as u16).to_be_bytes());
    out.extend_from_slice(block);
    out
}

fn tcp4(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut block = src.to_vec();
    block.extend_from_slice(&[127, 0, 0, 1]);
    block.extend_from_slice(&sport.to_be_bytes());
    block.extend_from_slice(&6667u16.to_be_bytes());
    v2(1, 0x11, &block)
}

#[test]
fn a_v2_header_gives_the_client_and_leaves_the_stream_after_it() {
    let mut input = tcp4([203, 0, 113, 7], 4711);
    let len = input.len();
    input.extend_from_slice(b"NICK alice\r\n");
    assert_eq!(
        parse_header(&input),
        Parsed::Header {
            len,
            source: Some("203.0.113.7:4711".parse().unwrap())
        }
    );
    assert_eq!(&input[len..], b"NICK alice\r\n");
}

#[test]
fn a_v2_header_fed_a_byte_at_a_time_needs_more_until_whole() {
    let mut block = vec![0x20, 0x01, 0x0d, 0xb8];
    block.extend_from_slice(&[0; 12]);
    block.extend_from_slice(&[0; 16]);
    block.extend_from_slice(&[0x12, 0x34, 0, 80]);
    block.extend_from_slice(&[0x04, 0x00, 0x01, 0xff]); // a TLV (NOOP, one byte)
    let input = v2(1, 0x21, &block);
    for n in 0..input.len() {
        assert_eq!(parse_header(&input[..n]), Parsed::NeedMore, "{n} bytes");
    }
    assert_eq!(
        parse_header(&input),
        Parsed::Header {
            len: input.len(),
            source: Some("[2001:db8::]:4660".parse().unwrap())
        }
    );
}

#[test]
fn local_unspec_and_unix_keep_the_proxys_own_address() {
    for (command, family, block) in [
        (0, 0x11, vec![0u8; 12]),
        (0, 0x00, vec![]),
        (1, 0x00, vec![]),
        (1, 0x31, vec![0u8; 216]),
    ] {
        let input = v2(command, family, &block);
        assert_eq!(
            parse_header(&input),
            Parsed::Header {
                len: input.len(),
                source: None
            }
        );
    }
}

#[test]
fn broken_v2_headers_are_invalid() {
    assert!(matches!(
        parse_header(&v2(1, 0x11, &[0; 11])),
        Parsed::Invalid(_)
    ));
    assert!(matches!(
        parse_header(&v2(1, 0x21, &[0; 35])),
        Parsed::Invalid(_)
    ));
    assert!(matches!(
        parse_header(&v2(2, 0x11, &[0; 12])),
        Parsed::Invalid(_)
    ));
    assert!(matches!(
        parse_header(&v2(1, 0x41, &[0; 12])),
        Parsed::Invalid(_)
    ));
    let mut wrong_version = v2(1, 0x11, &[0; 12]);
    wrong_version[12] = 0x11;
    assert!(matches!(parse_header(&wrong_version), Parsed::Invalid(_)));
}

#[test]
fn a_v2_length_past_the_bound_is_refused_before_it_is_waited_for() {
    let mut input = V2_SIGNATURE.to_vec();
    input.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    assert_eq!(
        parse_header(&input),
        Parsed::Invalid("a PROXY header longer than allowed")
    );
    let fits = v2(1, 0x11, &vec![0; MAX_HEADER_BYTES - 16]);
    assert!(matches!(parse_header(&fits), Parsed::Header { .. }));
}

#[test]
fn v1_lines_give_the_client() {
    let input = b"PROXY TCP4 192.0.2.9 127.0.0.1 56324 7878\r\nrest";
    assert_eq!(
        parse_header(input),
        Parsed::Header {
            len: input.len() - 4,
            source: Some("192.0.2.9:56324".parse().unwrap())
        }
    );
    let input = b"PROXY TCP6 2001:db8::7 ::1 1 2\r\n";
    assert!(matches!(
        parse_header(input),
        Parsed::Header { source: Some(s), .. } if s.ip() == ip("2001:db8::7")
    ));
    let input = b"PROXY UNKNOWN\r\n";
    assert_eq!(
        parse_header(input),
        Parsed::Header {
            len: 15,
            source: None
        }
    );
    assert_eq!(
        parse_header(b"PROXY TCP4 192.0.2.9 127.0"),
        Parsed::NeedMore
    );
    assert_eq!(parse_header(b"PRO"), Parsed::NeedMore);
}

#[test]
fn broken_v1_lines_are_invalid() {
    for bad in [
        &b"PROXY TCP4 192.0.2.9 127.0.0.1 56324\r\n"[..],
        b"PROXY TCP4 2001:db8::7 127.0.0.1 1 2\r\n",
        b"PROXY TCP4 192.0.2.9 127.0.0.1 01 2\r\n",
        b"PROXY TCP4 192.0.2.9 127.0.0.1 1 70000\r\n",
        b"PROXY TCP4 192.0.2.9 127.0.0.1 1 2 3\r\n",
        b"PROXY TCP4  192.0.2.9 127.0.0.1 1 2\r\n",
        b"PROXY UDP4 192.0.2.9 127.0.0.1 1 2\r\n",
        b"NICK alice\r\n",
        b"\x16\x03\x01",
    ] {
        assert!(
            matches!(parse_header(bad), Parsed::Invalid(_)),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let long = [&b"PROXY TCP4 "[..], &[b'1'; 200]].concat();
    assert!(matches!(parse_header(&long), Parsed::Invalid(_)));
}

#[test]
fn the_client_is_the_right_most_hop_not_trusted() {
    let t = trusted(&["10.0.0.0/8", "127.0.0.1"]);
    let client = |xff: &[&str], fwd: &[&str]| forwarded_client(xff.to_vec(), fwd.to_vec(), &t);
    assert_eq!(client(&[], &[]), Forwarded::Absent);
    assert_eq!(
        client(&["198.51.100.1, 203.0.113.7"], &[]),
        Forwarded::Client(ip("203.0.113.7")),
        "a forged left-most hop is passed over"
    );
    assert_eq!(
        client(&["198.51.100.1", "203.0.113.7, 10.0.0.5"], &[]),
        Forwarded::Client(ip("203.0.113.7")),
        "trusted hops are skipped, across repeated headers"
    );
    assert_eq!(
        client(&["10.0.0.9, 10.0.0.5"], &[]),
        Forwarded::Client(ip("10.0.0.9"))
    );
    assert_eq!(
        client(&["[2001:db8::1]:4711"], &[]),
        Forwarded::Client(ip("2001:db8::1"))
    );
    assert_eq!(
        client(
            &[],
            &["for=198.51.100.1, for=\"[2001:db8::7]:80\";proto=https"]
        ),
        Forwarded::Client(ip("2001:db8::7"))
    );
    assert_eq!(
        client(&[], &["proto=http;For=203.0.113.7;by=10.0.0.1"]),
        Forwarded::Client(ip("203.0.113.7"))
    );
    assert_eq!(
        client(&["203.0.113.7"], &["for=203.0.113.7"]),
        Forwarded::Client(ip("203.0.113.7"))
    );
}

#[test]
fn unreadable_or_conflicting_forwarding_is_invalid() {
    let t = trusted(&["127.0.0.1"]);
    let client = |xff: &[&str], fwd: &[&str]| forwarded_client(xff.to_vec(), fwd.to_vec(), &t);
    assert_eq!(client(&["unknown"], &[]), Forwarded::Invalid);
    assert_eq!(client(&["203.0.113.7,"], &[]), Forwarded::Invalid);
    assert_eq!(client(&[], &["for=_hidden"]), Forwarded::Invalid);
    assert_eq!(client(&[], &["proto=http"]), Forwarded::Invalid);
    assert_eq!(
        client(&["203.0.113.7"], &["for=198.51.100.1"]),
        Forwarded::Invalid,
        "one of the two was forged"
    );
}
