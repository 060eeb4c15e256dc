//! Request heads read strictly (a test per refusal), and the host and origin rules.

use super::*;

fn head(lines: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\n{lines}\r\n").into_bytes()
}

fn refused(bytes: &[u8]) -> Option<u16> {
    match parse(bytes) {
        Parsed::Refused(status, _) => Some(status),
        _ => None,
    }
}

#[test]
fn a_plain_request_passes_with_what_the_answer_needs() {
    let bytes =
        head("Host: 127.0.0.1:8080\r\nOrigin: http://127.0.0.1:8080\r\nContent-Length: 0\r\n");
    let Parsed::Head(n, head) = parse(&bytes) else {
        panic!("{:?}", parse(&bytes));
    };
    assert_eq!(n, bytes.len());
    assert_eq!(head.path, "/");
    assert_eq!(head.host, Some("127.0.0.1:8080"));
    assert_eq!(head.origin, Some("http://127.0.0.1:8080"));
    assert!(!head.close && !head.websocket);
    assert_eq!(parse(&bytes[..bytes.len() - 1]), Parsed::Partial);
}

#[test]
fn a_second_content_length_is_refused_even_when_both_agree() {
    assert_eq!(
        refused(&head(
            "Host: a\r\nContent-Length: 0\r\nContent-Length: 26\r\n"
        )),
        Some(400)
    );
    assert_eq!(
        refused(&head(
            "Host: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n"
        )),
        Some(400)
    );
    assert_eq!(
        refused(&head("Host: a\r\nContent-Length: 0, 26\r\n")),
        Some(400)
    );
    assert_eq!(refused(&head("Host: a\r\nContent-Length: \r\n")), Some(400));
}

#[test]
fn a_request_with_a_body_is_refused_not_drained() {
    let mut bytes = head("Host: a\r\nContent-Length: 26\r\n");
    bytes.extend(b"GET /smuggled HTTP/1.1\r\n\r\n");
    assert_eq!(refused(&bytes), Some(400));
    assert_eq!(
        refused(&head("Host: a\r\nContent-Length: +0\r\n")),
        Some(400)
    );
}

#[test]
fn any_transfer_encoding_is_refused_on_these_gets() {
    assert_eq!(
        refused(&head("Host: a\r\nTransfer-Encoding: chunked\r\n")),
        Some(400)
    );
    assert_eq!(
        refused(&head("Host: a\r\nTransfer-Encoding: identity\r\n")),
        Some(400)
    );
    assert_eq!(
        refused(&head(
            "Host: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
        )),
        Some(400)
    );
}

#[test]
fn a_byte_past_ascii_or_a_control_in_a_header_value_is_refused() {
    assert_eq!(refused(b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x80\r\nTransfer-Encoding: chunked\r\n\r\n"), Some(400));
    assert_eq!(
        refused(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 26\xff\r\n\r\n"),
        Some(400)
    );
    assert_eq!(
        refused(b"GET / HTTP/1.1\r\nHost: a\r\nX-Note: caf\xc3\xa9\r\n\r\n"),
        Some(400)
    );
    assert_eq!(
        refused(b"GET / HTTP/1.1\r\nHost: a\r\nX-Note: a\x01b\r\n\r\n"),
        Some(400)
    );
    assert_eq!(refused(b"GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n"), Some(400));
    // A tab inside a value is allowed.
    assert_eq!(
        refused(b"GET / HTTP/1.1\r\nHost: a\r\nX-Note: a\tb\r\n\r\n"),
        None
    );
}

#[test]
fn a_duplicate_host_is_refused() {
    assert_eq!(refused(&head("Host: a\r\nHost: a\r\n")), Some(400));
    assert_eq!(refused(&head("Host: a\r\nhost: b\r\n")), Some(400));
    assert_eq!(
        refused(&head("Host: a\r\nOrigin: http://a\r\nOrigin: http://a\r\n")),
        Some(400)
    );
}

#[test]
fn http_1_1_without_host_is_refused_and_http_1_0_is_served() {
    assert_eq!(refused(&head("")), Some(400));
    let Parsed::Head(_, old) = parse(b"GET /app.js HTTP/1.0\r\n\r\n") else {
        panic!("HTTP/1.0 without Host is allowed");
    };
    assert_eq!((old.path, old.host, old.close), ("/app.js", None, true));
}

#[test]
fn an_absolute_form_target_must_name_the_host() {
    // The path served, or the status refused with.
    let at = |target: &str, host: &str| match parse(
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
    ) {
        Parsed::Head(_, head) => Ok(head.path.to_owned()),
        Parsed::Refused(status, _) => Err(status),
        Parsed::Partial => Err(0),
    };
    assert_eq!(at("http://a:8080/app.js?x", "a:8080"), Ok("/app.js".into()));
    assert_eq!(at("HTTP://A:8080", "a:8080"), Ok("/".into()));
    assert_eq!(at("http://evil.test:8080/", "a:8080"), Err(400));
    assert_eq!(at("http://a:8081/", "a:8080"), Err(400));
    assert_eq!(at("http://a@evil/", "a"), Err(400));
    assert_eq!(at("*", "a"), Err(400));
    assert_eq!(at("a:8080", "a"), Err(400));
}

#[test]
fn methods_other_than_get_are_405_and_garbage_400_and_too_many_headers_431() {
    assert_eq!(refused(b"POST / HTTP/1.1\r\nHost: a\r\n\r\n"), Some(405));
    assert_eq!(refused(b"\x16\x03\x01\x02\r\n\r\n"), Some(400));
    assert_eq!(refused(b"GET / HTTP/1.1\r\nHost a\r\n\r\n"), Some(400));
    let many = "X-A: b\r\n".repeat(MAX_HEADERS + 1);
    assert_eq!(refused(&head(&format!("Host: a\r\n{many}"))), Some(431));
}

#[test]
fn connection_and_upgrade_are_read_as_lists() {
    let bytes = head(
        "Host: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\nConnection: close\r\n",
    );
    let Parsed::Head(_, h) = parse(&bytes) else {
        panic!()
    };
    assert!(h.websocket && h.close);
}

fn policy() -> WebPolicy {
    WebPolicy {
        https: false,
        listen: Some("127.0.0.1".parse().unwrap()),
        hosts: vec!["chat.example.com".into()],
        allowed: vec!["https://extra.example".into()],
    }
}

#[test]
fn hosts_served_are_the_listening_address_localhost_and_the_named_ones() {
    let p = policy();
    for ok in [
        "127.0.0.1:8080",
        "127.0.0.1",
        "localhost:8080",
        "LOCALHOST",
        "localhost.",
        "chat.example.com",
        "Chat.Example.Com:443",
    ] {
        assert!(p.allows_host(ok), "{ok}");
    }
    for no in [
        "evil.test:8080",
        "127.0.0.2:8080",
        "[::1]:8080",
        "",
        "localhost:x",
        "a@localhost",
        "chat.example.com.evil.test",
        "127.0.0.1:8080/x",
    ] {
        assert!(!p.allows_host(no), "{no}");
    }
    // Listening on every address: any address is served, still no other name.
    let any = WebPolicy {
        listen: Some("::".parse().unwrap()),
        ..WebPolicy::default()
    };
    assert!(any.allows_host("[::1]:8080") && any.allows_host("10.1.2.3"));
    assert!(!any.allows_host("evil.test"));
}

#[test]
fn an_origin_is_allowed_only_with_the_same_scheme_host_and_port() {
    let p = policy();
    let host = Some("127.0.0.1:8080");
    assert!(p.allows_origin(None, host));
    assert!(p.allows_origin(Some("http://127.0.0.1:8080"), host));
    assert!(p.allows_origin(Some("https://extra.example"), host));
    assert!(
        !p.allows_origin(Some("https://127.0.0.1:8080"), host),
        "the scheme differs"
    );
    assert!(
        !p.allows_origin(Some("http://127.0.0.1:8081"), host),
        "the port differs"
    );
    assert!(!p.allows_origin(Some("http://evil.test:8080"), host));
    assert!(!p.allows_origin(Some("null"), host));
    assert!(!p.allows_origin(Some("http://127.0.0.1:8080"), None));
    // Default ports are the same port, written or not.
    assert!(p.allows_origin(Some("http://localhost"), Some("localhost:80")));
    let tls = WebPolicy {
        https: true,
        ..policy()
    };
    assert!(tls.allows_origin(
        Some("https://chat.example.com"),
        Some("chat.example.com:443")
    ));
    assert!(!tls.allows_origin(Some("http://chat.example.com"), Some("chat.example.com")));
}
