//! The real client behind a trusted proxy, as sans-IO code: which peers are trusted
//! ([`TrustedProxies`], `--trusted-proxy CIDR`), the PROXY protocol header (v2, binary, and
//! v1, text) that HAProxy and others put before a client's stream ([`parse_header`]), and the
//! client an HTTP request's `X-Forwarded-For` or `Forwarded` names ([`forwarded_client`]).
//!
//! Only a connection from a trusted peer is read this way: anyone else could claim any address.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use core::str::FromStr;

/// A block of addresses, `10.0.0.0/8` or `fd00::/8`; a bare address is the block of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `addr` is in the block. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what a
    /// socket bound to `::` sees of an IPv4 peer) is read as its IPv4 address.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, canonical(addr)) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// `addr`, with an IPv4-mapped IPv6 address read as its IPv4 address.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// Why a `--trusted-proxy` value is not a block of addresses: one line for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrError(String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CidrError {}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Strictly: an address, or an address, `/` and a prefix length in range with no bits set
    /// past it (`10.0.0.1/8` is refused: it is most likely a typo for a single host).
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let bad = |why: &str| CidrError(format!("'{s}' is not a CIDR block ({why})"));
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| bad("expected an address like 10.0.0.0/8 or fd00::/8"))?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => match port(p).filter(|p| *p <= u16::from(bits)) {
                Some(p) => p as u8,
                None => return Err(bad(&format!("the prefix length must be 0 to {bits}"))),
            },
        };
        let cidr = Cidr { addr, prefix };
        let network = match addr {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        };
        if network != addr {
            return Err(bad(&format!(
                "bits are set past the prefix: {network}/{prefix}?"
            )));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The peers whose word on the client's address is taken (`--trusted-proxy`): none by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<Cidr>);

impl TrustedProxies {
    /// Whether `addr` is a trusted proxy.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.0.iter().any(|cidr| cidr.contains(addr))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The PROXY protocol v2 signature, the first 12 bytes of its header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// The longest v1 header, `\r\n` included (the protocol's own bound).
const V1_MAX: usize = 107;

/// The most bytes a header may take, v2's address block and TLVs included: its length field is
/// the sender's word, so a longer one is refused rather than waited for.
pub const MAX_HEADER_BYTES: usize = 16 + 1024;

/// What the bytes at the start of a proxied connection are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header of `len` bytes; the client's stream starts after it.
    Header {
        /// Bytes of the header.
        len: usize,
        /// The client's address, or `None` when the connection is the proxy's own (a v2
        /// LOCAL command, as health checks send; v1 UNKNOWN; an address that is not IP).
        source: Option<SocketAddr>,
    },
    /// Not a whole header yet: read more (while under [`MAX_HEADER_BYTES`]).
    NeedMore,
    /// Not a PROXY header, or a broken one.
    Invalid(&'static str),
}

/// Reads the PROXY protocol header (v2 or v1) at the start of `input`. Never looks past
/// [`MAX_HEADER_BYTES`], never allocates.
pub fn parse_header(input: &[u8]) -> Parsed {
    let n = input.len().min(V2_SIGNATURE.len());
    if input[..n] == V2_SIGNATURE[..n] {
        return if n < V2_SIGNATURE.len() {
            Parsed::NeedMore
        } else {
            parse_v2(input)
        };
    }
    let n = input.len().min(6);
    if input[..n] == b"PROXY "[..n] {
        return if n < 6 {
            Parsed::NeedMore
        } else {
            parse_v1(input)
        };
    }
    Parsed::Invalid("no PROXY protocol header")
}

fn parse_v2(input: &[u8]) -> Parsed {
    let Some(&[ver_cmd, family, hi, lo]) = input.get(12..16) else {
        return Parsed::NeedMore;
    };
    if ver_cmd >> 4 != 2 {
        return Parsed::Invalid("an unknown PROXY protocol version");
    }
    let len = 16 + usize::from(u16::from_be_bytes([hi, lo]));
    if len > MAX_HEADER_BYTES {
        return Parsed::Invalid("a PROXY header longer than allowed");
    }
    let Some(block) = input.get(16..len) else {
        return Parsed::NeedMore;
    };
    let source = match ver_cmd & 0x0f {
        0 => None, // LOCAL: the proxy's own connection.
        1 => match v2_source(family, block) {
            Ok(source) => source,
            Err(why) => return Parsed::Invalid(why),
        },
        _ => return Parsed::Invalid("an unknown PROXY command"),
    };
    Parsed::Header { len, source }
}

/// The source address of a v2 PROXY command's address block; `None` for a family that is not
/// IP (unspecified, a Unix socket).
fn v2_source(family: u8, block: &[u8]) -> Result<Option<SocketAddr>, &'static str> {
    let short = "a PROXY address block too short for its family";
    match family >> 4 {
        1 => {
            let b: &[u8; 12] = block
                .get(..12)
                .and_then(|b| b.try_into().ok())
                .ok_or(short)?;
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            Ok(Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([b[8], b[9]]),
            )))
        }
        2 => {
            let b: &[u8; 36] = block
                .get(..36)
                .and_then(|b| b.try_into().ok())
                .ok_or(short)?;
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&b[..16]);
            let port = u16::from_be_bytes([b[32], b[33]]);
            Ok(Some(SocketAddr::new(Ipv6Addr::from(ip).into(), port)))
        }
        0 | 3 => Ok(None),
        _ => Err("an unknown PROXY address family"),
    }
}

fn parse_v1(input: &[u8]) -> Parsed {
    let window = &input[..input.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if input.len() >= V1_MAX {
            Parsed::Invalid("a PROXY v1 line longer than 107 bytes")
        } else {
            Parsed::NeedMore
        };
    };
    let Ok(line) = core::str::from_utf8(&window[6..end]) else {
        return Parsed::Invalid("a PROXY v1 line that is not text");
    };
    let mut fields = line.split(' ');
    let invalid = Parsed::Invalid("a malformed PROXY v1 line");
    let source = match fields.next() {
        Some("UNKNOWN") => None,
        Some(proto @ ("TCP4" | "TCP6")) => {
            let mut next = || fields.next().unwrap_or("");
            let (src, dst, sport, dport) = (next(), next(), next(), next());
            let (Ok(src), Ok(dst)) = (src.parse::<IpAddr>(), dst.parse::<IpAddr>()) else {
                return invalid;
            };
            let v4 = proto == "TCP4";
            if src.is_ipv4() != v4 || dst.is_ipv4() != v4 || fields.next().is_some() {
                return invalid;
            }
            match (port(sport), port(dport)) {
                (Some(sport), Some(_)) => Some(SocketAddr::new(src, sport)),
                _ => return invalid,
            }
        }
        _ => return invalid,
    };
    Parsed::Header {
        len: end + 2,
        source,
    }
}

/// A port as v1 writes it (or a prefix length): decimal, no sign, no leading zero.
fn port(s: &str) -> Option<u16> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits && (s == "0" || !s.starts_with('0')))
        .then(|| s.parse().ok())
        .flatten()
}

/// What a request's forwarding headers say of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    /// No `X-Forwarded-For` and no `Forwarded`: the connection is the proxy's own.
    Absent,
    /// The client: the right-most address that is not a trusted proxy, or the left-most if
    /// every one is.
    Client(IpAddr),
    /// A header that cannot be read, a hop that is not an address, or the two headers naming
    /// different clients (one of them was forged, and which is unknown).
    Invalid,
}

/// The client named by the values of `X-Forwarded-For` (`xff`, each a comma-separated list of
/// addresses) and `Forwarded` (`forwarded`, RFC 7239, whose `for=` parameters are read), in the
/// order the headers came, for a request from a trusted proxy.
pub fn forwarded_client<'a>(
    xff: impl IntoIterator<Item = &'a str>,
    forwarded: impl IntoIterator<Item = &'a str>,
    trusted: &TrustedProxies,
) -> Forwarded {
    let xff = xff
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(|hop| parse_hop(hop.trim_matches([' ', '\t'])));
    let fwd = forwarded
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(forwarded_for);
    match (pick(xff, trusted), pick(fwd, trusted)) {
        (Forwarded::Absent, other) | (other, Forwarded::Absent) => other,
        (a, b) if a == b => a,
        _ => Forwarded::Invalid,
    }
}

/// The client among `hops` (nearest last): the right-most not trusted.
fn pick(hops: impl Iterator<Item = Option<IpAddr>>, trusted: &TrustedProxies) -> Forwarded {
    let (mut first, mut client) = (None, None);
    for hop in hops {
        let Some(hop) = hop else {
            return Forwarded::Invalid;
        };
        let hop = canonical(hop);
        first.get_or_insert(hop);
        if !trusted.contains(hop) {
            client = Some(hop);
        }
    }
    match client.or(first) {
        Some(addr) => Forwarded::Client(addr),
        None => Forwarded::Absent,
    }
}

/// One hop's address: `203.0.113.7`, `2001:db8::1`, `[2001:db8::1]`, with an optional port
/// (`203.0.113.7:4711`, `[2001:db8::1]:4711`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(addr) = hop.parse::<IpAddr>() {
        return Some(addr);
    }
    hop.parse::<SocketAddr>().ok().map(|s| s.ip()).or_else(|| {
        let inner = hop.strip_prefix('[')?.strip_suffix(']')?;
        inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    })
}

/// The `for=` of one `Forwarded` element (`for=192.0.2.60;proto=http;by=203.0.113.43`):
/// `None` when it has none, or one that is not an address (`unknown`, an obfuscated name).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.trim_matches([' ', '\t']).split_once('=')?;
        if !key.eq_ignore_ascii_case("for") {
            return None;
        }
        let value = match value.strip_prefix('"') {
            Some(quoted) => quoted.strip_suffix('"')?,
            None => value,
        };
        parse_hop(value)
    })
}

#[cfg(test)]
mod tests;
