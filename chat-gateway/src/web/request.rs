//! A request head read strictly (RFC 9112), and which hosts and origins the web port serves.
//!
//! httparse reads the head; every header it returns is looked at, so that a second
//! `Content-Length`, `Transfer-Encoding` or `Host` is refused rather than shadowed by the
//! first. A request is never drained: one with a body (or a framing this server does not read)
//! is answered 400 and the connection closes.

use core::net::IpAddr;

use crate::proxy::{Forwarded, TrustedProxies, forwarded_client};

/// Headers read in one request head; more is 431.
const MAX_HEADERS: usize = 64;

/// Which hosts the page and its WebSocket are served for, and which origins may open the
/// WebSocket: the defence against DNS rebinding, where a page at `http://evil.example` whose
/// name resolves to this server's address would otherwise load the page and join the room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebPolicy {
    /// Whether the port serves HTTPS: a page's own origin is then `https://`, else `http://`.
    pub https: bool,
    /// The address the port listens on: a `Host` naming it is served. `None`, or an
    /// unspecified address (`0.0.0.0`, `::`), serves a `Host` naming any IP address (an
    /// address, unlike a name, cannot be rebound).
    pub listen: Option<IpAddr>,
    /// Host names served besides `localhost` and the listening address (`--web-host`), e.g.
    /// `chat.example.com`.
    pub hosts: Vec<String>,
    /// Origins allowed besides the page's own (`--web-allow-origin`), e.g.
    /// `https://chat.example.com`.
    pub allowed: Vec<String>,
}

impl WebPolicy {
    /// Whether the port serves a request whose `Host` is `host` (a name or address, and an
    /// optional port, which is not compared: a rebound name reaches the same port).
    pub fn allows_host(&self, host: &str) -> bool {
        let Some((name, _)) = split_authority(host) else {
            return false;
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.eq_ignore_ascii_case("localhost") || self.hosts.iter().any(|h| same_name(h, name)) {
            return true;
        }
        let Ok(addr) = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        else {
            return false;
        };
        match self.listen {
            Some(listen) if !listen.is_unspecified() => listen == addr,
            _ => true,
        }
    }

    /// Whether a page whose `Origin` is `origin` may open the WebSocket of a request for
    /// `host`. No `Origin` is a program, not a page, and is allowed. Otherwise the origin must
    /// be the page's own (this port's scheme, the same host and port as `Host`) or a listed one.
    pub fn allows_origin(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if self.allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
            return true;
        }
        let (scheme, port) = if self.https {
            ("https://", 443)
        } else {
            ("http://", 80)
        };
        let (Some(host), Some(rest)) = (host, strip_prefix_ignore_case(origin, scheme)) else {
            return false;
        };
        match (split_authority(rest), split_authority(host)) {
            (Some((a, a_port)), Some((b, b_port))) => {
                same_name(a, b) && a_port.unwrap_or(port) == b_port.unwrap_or(port)
            }
            _ => false,
        }
    }
}

/// Whether two host names are the same (ASCII case and a final dot aside).
fn same_name(a: &str, b: &str) -> bool {
    let a = a.strip_suffix('.').unwrap_or(a);
    let b = b.strip_suffix('.').unwrap_or(b);
    a.eq_ignore_ascii_case(b)
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `name[:port]` or `[v6]:port` split into the name and the port; `None` if it is not one
/// (empty, a path or user info in it, a port that is not a number).
fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if authority.starts_with('[') {
        let end = authority.find(']')? + 1;
        match &authority[end..] {
            "" => (&authority[..end], None),
            rest => (&authority[..end], Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (authority, None),
        }
    };
    let name_ok = |c: char| c.is_ascii_alphanumeric() || "-._[]:".contains(c);
    if name.is_empty() || !name.chars().all(name_ok) {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some((name, port))
}

/// What the answer needs of a request head that passed every check.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Head<'b> {
    /// The path, without the query.
    pub path: &'b str,
    /// `Host`, absent only in HTTP/1.0.
    pub host: Option<&'b str>,
    /// `Origin`, if a page sent it.
    pub origin: Option<&'b str>,
    /// Whether `Upgrade` names `websocket`.
    pub websocket: bool,
    /// Whether `Connection` names `close` (or the request is HTTP/1.0).
    pub close: bool,
}

/// The start of a connection's input read as a request head.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Parsed<'b> {
    /// Not a whole head yet.
    Partial,
    /// A head of `usize` bytes that passed every check.
    Head(usize, Head<'b>),
    /// Refused with this status: the connection closes after it.
    Refused(u16, &'static str),
}

const BAD: Parsed<'static> = Parsed::Refused(400, "Bad Request");

/// What the forwarding headers (`X-Forwarded-For`, `Forwarded`) of the request head at the
/// start of `input` say of its client, taking the word of `trusted` proxies: for a connection
/// from one of them. [`Forwarded::Absent`] for a head that is not whole or not readable (its
/// answer says so).
pub(super) fn forwarded(input: &[u8], trusted: &TrustedProxies) -> Forwarded {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    if !matches!(request.parse(input), Ok(httparse::Status::Complete(_))) {
        return Forwarded::Absent;
    }
    // A value that is not text is no address: it makes the whole header unreadable.
    let values = |name: &'static str| {
        request
            .headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| std::str::from_utf8(h.value).unwrap_or(""))
    };
    forwarded_client(values("x-forwarded-for"), values("forwarded"), trusted)
}

/// Reads the request head at the start of `input`.
pub(super) fn parse(input: &[u8]) -> Parsed<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let consumed = match request.parse(input) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refused(431, "Request Header Fields Too Large");
        }
        Err(_) => return BAD,
    };
    if request.method != Some("GET") {
        return Parsed::Refused(405, "Method Not Allowed");
    }
    let http11 = request.version == Some(1);
    match read_headers(request.headers, http11) {
        Ok(mut head) => match target(request.path.unwrap_or(""), head.host) {
            Some(path) => {
                head.path = path;
                Parsed::Head(consumed, head)
            }
            None => BAD,
        },
        Err(refused) => refused,
    }
}

/// Checks every header and keeps those the answer needs.
fn read_headers<'b>(
    headers: &[httparse::Header<'b>],
    http11: bool,
) -> Result<Head<'b>, Parsed<'static>> {
    let mut head = Head {
        path: "",
        host: None,
        origin: None,
        websocket: false,
        close: !http11,
    };
    let mut length = None;
    for header in headers {
        // Visible ASCII, spaces and tabs only: a byte past ASCII or a control is not read as
        // "absent" by one hop and as something else by the next.
        let visible = |b: &u8| matches!(b, b' ' | b'\t' | 0x21..=0x7e);
        let Some(value) = std::str::from_utf8(header.value)
            .ok()
            .filter(|_| header.value.iter().all(visible))
        else {
            return Err(BAD);
        };
        let value = value.trim_matches([' ', '\t']);
        let once = |slot: &mut Option<&'b str>| slot.replace(value).map_or(Ok(()), |_| Err(BAD));
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            once(&mut head.host)?;
        } else if name.eq_ignore_ascii_case("origin") {
            once(&mut head.origin)?;
        } else if name.eq_ignore_ascii_case("content-length") {
            once(&mut length)?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // No GET here has a body, so no framing of one is read: any coding is refused.
            return Err(BAD);
        } else if name.eq_ignore_ascii_case("upgrade") {
            head.websocket |= tokens(value).any(|t| t.eq_ignore_ascii_case("websocket"));
        } else if name.eq_ignore_ascii_case("connection") {
            head.close |= tokens(value).any(|t| t.eq_ignore_ascii_case("close"));
        }
    }
    // A body is refused, not drained: only an explicit zero length passes.
    if length.is_some_and(|n| n.is_empty() || n.bytes().any(|b| b != b'0')) {
        return Err(BAD);
    }
    if http11 && head.host.is_none() {
        return Err(BAD);
    }
    Ok(head)
}

fn tokens(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(|t| t.trim_matches([' ', '\t']))
}

/// The path a request target names, without its query: an origin-form target (`/path`), or an
/// absolute-form one (`http://host/path`) whose host is the request's `Host`.
fn target<'b>(target: &'b str, host: Option<&str>) -> Option<&'b str> {
    let path = if target.starts_with('/') {
        target
    } else {
        let rest = strip_prefix_ignore_case(target, "http://")
            .or_else(|| strip_prefix_ignore_case(target, "https://"))?;
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let host = host?;
        let (a, a_port) = split_authority(authority)?;
        let (h, h_port) = split_authority(host)?;
        if !same_name(a, h) || a_port != h_port {
            return None;
        }
        if path.starts_with('/') { path } else { "/" }
    };
    Some(path.split('?').next().unwrap_or(path))
}

#[cfg(test)]
mod tests;
