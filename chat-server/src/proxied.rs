//! A listener's door: connections come in through it with the address they count under. From a
//! trusted proxy (`--trusted-proxy`) on the native and IRC ports, that is the client's, read
//! from the PROXY protocol header the proxy sends first ([`chat_gateway::proxy`]); from anyone
//! else, the peer's own. The header is read before the connection is opened in the room, so
//! that the per-address limits count the real client; the bytes read past it are the client's
//! and go to its reader.

use std::net::{IpAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use async_channel::{Receiver, Sender};
use chat_gateway::proxy::{MAX_HEADER_BYTES, Parsed, TrustedProxies, parse_header};
use futures_lite::{AsyncReadExt, FutureExt};
use smol::{Async, Timer};

use crate::conn::Conns;

/// The longest a trusted proxy may take to send its header (less, if the handshake deadline is).
const HEADER_DEADLINE: Duration = Duration::from_secs(5);

/// Connections whose header was read, waiting for their listener's loop to open them; header
/// readers wait when it is full.
const READY_QUEUE: usize = 64;

/// A connection accepted, with the address it counts under and the first bytes of its stream.
pub(crate) struct Arrival {
    /// The socket.
    pub(crate) stream: Arc<Async<TcpStream>>,
    /// The client's address: the peer's, or the one its trusted proxy gave.
    pub(crate) addr: IpAddr,
    /// Bytes of the client's stream already read (those past a PROXY header).
    pub(crate) first: Vec<u8>,
}

/// A listener, and whom it reads PROXY headers from.
pub(crate) struct Door {
    listener: async_net::TcpListener,
    /// Peers that send a PROXY header first; empty: nobody does (the web port, or no
    /// `--trusted-proxy`).
    trusted: TrustedProxies,
    deadline: Duration,
    ready: (Sender<Arrival>, Receiver<Arrival>),
}

impl Door {
    /// A door where every peer's own address counts (the web port reads its proxies' word
    /// from HTTP headers instead).
    pub(crate) fn plain(listener: async_net::TcpListener) -> Self {
        Self::proxied(listener, TrustedProxies::default(), HEADER_DEADLINE)
    }

    /// A door where peers in `trusted` send a PROXY header first, within `deadline` (at most
    /// five seconds).
    pub(crate) fn proxied(
        listener: async_net::TcpListener,
        trusted: TrustedProxies,
        deadline: Duration,
    ) -> Self {
        Self {
            listener,
            trusted,
            deadline: deadline.min(HEADER_DEADLINE),
            ready: async_channel::bounded(READY_QUEUE),
        }
    }

    /// The next connection to open. A trusted peer's header is read by a task of its own, so
    /// that a slow proxy holds up nobody else; its connection comes out of here once read.
    pub(crate) async fn arrive(&self, conns: &Conns<'_, '_>) -> Arrival {
        loop {
            let accepted = async {
                let (stream, peer) = conns.accept(&self.listener).await;
                Next::Accepted(stream, peer)
            };
            let read = async {
                match self.ready.1.recv().await {
                    Ok(arrival) => Next::Read(arrival),
                    Err(_) => std::future::pending().await,
                }
            };
            // Either may be ready again at once: neither starves the other.
            let (stream, peer) = match futures_lite::future::race(accepted, read).await {
                Next::Read(arrival) => return arrival,
                Next::Accepted(stream, peer) if !self.trusted.contains(peer) => {
                    let first = Vec::new();
                    return Arrival {
                        stream,
                        addr: peer,
                        first,
                    };
                }
                Next::Accepted(stream, peer) => (stream, peer),
            };
            let (ready, stats) = (self.ready.0.clone(), conns.stats.clone());
            let deadline = self.deadline;
            conns.spawn_reader(async move {
                match read_header(&stream, peer, deadline).await {
                    Ok((addr, first)) => {
                        let _ = ready
                            .send(Arrival {
                                stream,
                                addr,
                                first,
                            })
                            .await;
                    }
                    Err(why) => {
                        log::warn!("{peer}: closed: {why} (a trusted proxy's connection)");
                        stats.connections.fetch_sub(1, Relaxed);
                    }
                }
            });
        }
    }
}

/// What came first at a door.
enum Next {
    Accepted(Arc<Async<TcpStream>>, IpAddr),
    Read(Arrival),
}

/// Reads the PROXY header at the start of `stream`, from the trusted proxy `peer`, within
/// `deadline`: the client's address (the proxy's own for LOCAL, as health checks send) and the
/// bytes read past the header; or why there is none, in words for the log.
async fn read_header(
    stream: &Async<TcpStream>,
    peer: IpAddr,
    deadline: Duration,
) -> Result<(IpAddr, Vec<u8>), String> {
    let read = async {
        let mut buf = [0u8; MAX_HEADER_BYTES];
        let mut len = 0;
        loop {
            let n = (&*stream).read(&mut buf[len..]).await;
            len += match n {
                Ok(0) => return Err("the stream ended before its PROXY header".to_owned()),
                Ok(n) => n,
                Err(error) => return Err(format!("reading its PROXY header failed: {error}")),
            };
            match parse_header(&buf[..len]) {
                Parsed::Header {
                    len: header,
                    source,
                } => {
                    let addr = source.map_or(peer, |s| s.ip());
                    return Ok((addr, buf[header..len].to_vec()));
                }
                Parsed::NeedMore if len < buf.len() => {}
                Parsed::NeedMore => return Err("a PROXY header too long".to_owned()),
                Parsed::Invalid(why) => return Err(why.to_owned()),
            }
        }
    };
    let late = async {
        Timer::after(deadline).await;
        Err(format!("no PROXY header within {deadline:?}"))
    };
    read.or(late).await
}
