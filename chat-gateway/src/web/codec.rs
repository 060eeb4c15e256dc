//! The web entrance as one [`Codec`]: each connection's state from its HTTP phase to its
//! WebSocket, fed the socket's bytes, and the room's messages as WebSocket frames of JSON.
//!
//! The room opens a web connection when it is accepted, so its handshake limits and deadline
//! cover the HTTP phase: one place decides how many handshakes an address may hold.

use std::collections::VecDeque;

use chat_core::{Codec, ConnId, ConnMap, Inbound};
use chat_proto::{ErrorKind, ServerMsg};

use super::http::{
    Answer, MAX_REQUEST_BYTES, MAX_REQUESTS, WsReader, answer, max_ws_message, too_many_requests,
};
use super::json::{close_frame, json_frame};
use super::request::{WebPolicy, forwarded};
use crate::proxy::{Forwarded, TrustedProxies};

/// Where one web connection stands.
#[derive(Debug)]
enum Phase {
    /// Serving HTTP requests: the bytes of those not answered yet, and how many were answered.
    Http { input: Vec<u8>, served: usize },
    /// The upgrade is answered; `rest`, read past the request, is read as frames once the hub
    /// has carried out everything before it (the codec names the connection in `poll_ready`).
    Upgraded { rest: Vec<u8> },
    /// The WebSocket. After the page's goodbye or a bad frame its reader reads nothing more.
    /// Boxed: a connection in its HTTP phase is small.
    WebSocket(Box<WsReader>),
    /// The HTTP phase ended with an answer that closes: nothing more is read. `end` while
    /// [`Inbound::End`] is still owed; `refused` once a request was answered 429.
    Closed { end: bool, refused: bool },
}

/// The web entrance: the HTTP phase (the page, its script and style, errors, the upgrade of
/// `/ws`), then WebSocket frames of JSON both ways. Each message the room sends is one unmasked
/// text frame; a `Closing` message is followed by a close frame whose status says the same.
/// A connection in its HTTP phase is sent nothing of the room's: its close is a plain one.
#[derive(Debug)]
pub struct WebCodec {
    policy: WebPolicy,
    max_message: usize,
    conns: ConnMap<Phase>,
    /// Connections to decode again with no new bytes (an upgrade answered, a 429 sent).
    ready: VecDeque<ConnId>,
    /// The JSON of the message being encoded, kept between calls.
    json: Vec<u8>,
    /// Proxies whose forwarding headers are read ([`WebCodec::trust_proxies`]).
    trusted: TrustedProxies,
    /// Connections opened from one of them.
    proxied: ConnMap<()>,
}

impl WebCodec {
    /// A codec for pages allowed by `origins`, in a room that accepts frames of up to
    /// `max_frame_bytes` (a page's message may be twice that and more, as JSON).
    pub fn new(policy: WebPolicy, max_frame_bytes: u32) -> Self {
        Self {
            policy,
            max_message: max_ws_message(max_frame_bytes),
            conns: ConnMap::default(),
            ready: VecDeque::new(),
            json: Vec::new(),
            trusted: TrustedProxies::default(),
            proxied: ConnMap::default(),
        }
    }

    /// Takes the word of `trusted` proxies on who the client is: a connection from one of
    /// them is moved to the address its requests' `X-Forwarded-For` or `Forwarded` names
    /// ([`Inbound::Readdress`], before each answer), so that the room's per-address limits
    /// count the client. A request whose forwarding cannot be read closes the connection.
    pub fn trust_proxies(&mut self, trusted: TrustedProxies) {
        self.trusted = trusted;
    }
}

impl Codec for WebCodec {
    fn decode(&mut self, conn: ConnId, bytes: &[u8], out: &mut Vec<Inbound>) {
        // A connection's state starts with its first bytes: one refused at open never has any.
        if bytes.is_empty() && !self.conns.contains_key(&conn) {
            return;
        }
        let phase = self.conns.entry(conn).or_insert(Phase::Http {
            input: Vec::new(),
            served: 0,
        });
        let trusted = self.proxied.contains_key(&conn).then_some(&self.trusted);
        if phase.decode(bytes, &self.policy, trusted, self.max_message, out) {
            self.ready.push_back(conn);
        }
    }

    fn poll_ready(&mut self) -> Option<ConnId> {
        self.ready.pop_front()
    }

    fn encode_to(&mut self, to: ConnId, msg: &ServerMsg, out: &mut Vec<u8>) -> bool {
        let phase = self.conns.get_mut(&to);
        if let Some(Phase::WebSocket(_)) = phase {
            let sent = json_frame(&mut self.json, msg, out);
            if let ServerMsg::Closing(reason) = msg {
                close_frame(*reason, out);
            }
            return sent;
        }
        // The room's one message for the HTTP phase: a request its rate limit refused (each
        // answer is paid for). It is answered 429 and the connection closes, so that every
        // request the page made is answered, in order, or the connection is gone.
        let Some(phase) = phase else { return false };
        if !matches!(msg, ServerMsg::Error(ErrorKind::RateLimited)) {
            return false;
        }
        let end = match phase {
            Phase::Http { .. } | Phase::Upgraded { .. } => true,
            Phase::Closed {
                refused: false,
                end,
            } => *end,
            Phase::Closed { refused: true, .. } | Phase::WebSocket(_) => return false,
        };
        out.extend_from_slice(&too_many_requests());
        *phase = Phase::Closed { end, refused: true };
        if end {
            self.ready.push_back(to);
        }
        true
    }

    fn encode_broadcast(&mut self, msg: &ServerMsg, out: &mut Vec<u8>) -> bool {
        json_frame(&mut self.json, msg, out)
    }

    fn opened(&mut self, conn: ConnId, peer: core::net::IpAddr) {
        if self.trusted.contains(peer) {
            self.proxied.insert(conn, ());
        }
    }

    fn forget(&mut self, conn: ConnId) {
        self.proxied.remove(&conn);
        self.conns.remove(&conn);
        self.ready.retain(|c| *c != conn);
    }
}

impl Phase {
    /// Reads `bytes` and appends what they mean. Returns whether the connection must be
    /// decoded again with no new bytes once what it yielded is carried out.
    fn decode(
        &mut self,
        bytes: &[u8],
        policy: &WebPolicy,
        trusted: Option<&TrustedProxies>,
        max_message: usize,
        out: &mut Vec<Inbound>,
    ) -> bool {
        match self {
            Phase::Http { input, served } => {
                input.extend_from_slice(bytes);
                match serve(input, served, policy, trusted, out) {
                    Some(next) => {
                        let upgraded = matches!(next, Phase::Upgraded { .. });
                        *self = next;
                        return upgraded;
                    }
                    // An idle keep-alive connection holds no buffer.
                    None if input.is_empty() => *input = Vec::new(),
                    None => input.shrink_to(2 * MAX_REQUEST_BYTES),
                }
            }
            Phase::Upgraded { rest } => {
                let mut reader = Box::new(WsReader::new(rest, max_message));
                reader.feed(bytes);
                read_frames(&mut reader, out);
                *self = Phase::WebSocket(reader);
            }
            Phase::WebSocket(reader) => {
                reader.feed(bytes);
                read_frames(reader, out);
            }
            Phase::Closed { end, .. } => {
                if std::mem::take(end) {
                    out.push(Inbound::End);
                }
            }
        }
        false
    }
}

/// Answers the whole requests at the start of `input`, in order, and drops their bytes. Returns
/// the phase that follows when one closes or upgrades; `None` while more requests may come.
/// From a `trusted` proxy, each answer follows the client's address its request names.
fn serve(
    input: &mut Vec<u8>,
    served: &mut usize,
    policy: &WebPolicy,
    trusted: Option<&TrustedProxies>,
    out: &mut Vec<Inbound>,
) -> Option<Phase> {
    loop {
        let last = *served + 1 >= MAX_REQUESTS;
        let answer = answer(input, policy, last);
        let consumed = match &answer {
            Answer::Incomplete => return None,
            Answer::Reply { consumed, .. } | Answer::Upgrade { consumed, .. } => *consumed,
        };
        let head = &input[..consumed.min(input.len())];
        match trusted.map_or(Forwarded::Absent, |trusted| forwarded(head, trusted)) {
            Forwarded::Absent => {}
            Forwarded::Client(addr) => out.push(Inbound::Readdress(addr)),
            Forwarded::Invalid => {
                out.push(Inbound::Malformed);
                return Some(Phase::Closed {
                    end: false,
                    refused: false,
                });
            }
        }
        match answer {
            Answer::Incomplete => return None,
            Answer::Reply {
                bytes,
                consumed,
                close,
            } => {
                out.push(Inbound::Reply(bytes));
                if close {
                    out.push(Inbound::End);
                    return Some(Phase::Closed {
                        end: false,
                        refused: false,
                    });
                }
                *served += 1;
                input.drain(..consumed.min(input.len()));
            }
            Answer::Upgrade { bytes, consumed } => {
                out.push(Inbound::Reply(bytes));
                input.drain(..consumed.min(input.len()));
                return Some(Phase::Upgraded {
                    rest: std::mem::take(input),
                });
            }
        }
    }
}

/// Appends everything `reader` can read now.
fn read_frames(reader: &mut WsReader, out: &mut Vec<Inbound>) {
    while let Some(inbound) = reader.poll_inbound() {
        out.push(inbound);
    }
}

#[cfg(test)]
mod tests;
