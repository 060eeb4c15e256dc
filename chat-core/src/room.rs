//! The room state machine.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_proto::{
    ClientMsg, CloseReason, ErrorKind, Limits, MAGIC, PROTOCOL_VERSION, Refusal, ServerMsg,
};

use crate::names::{check_name, check_text, display_name, fold_name};

/// A connection, named by the driver. The core never makes these up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Every limit the room enforces.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Members allowed in the room at once.
    pub max_clients: u32,
    /// Connections allowed to be in the handshake (opened, not yet joined) at once.
    pub max_handshakes: u32,
    /// A welcome lists every member only while there are at most this many; past it, the
    /// welcome carries the count and `Who` gives the list. Keeps a join into a big room cheap.
    pub welcome_list_max: u32,
    /// Longest name, in characters.
    pub max_name_chars: u32,
    /// Longest chat text, in bytes.
    pub max_text_bytes: u32,
    /// Largest frame payload accepted from a client, in bytes (enforced by the driver's decoder).
    pub max_frame_bytes: u32,
    /// Sustained requests per second per connection.
    pub rate_per_sec: u32,
    /// Requests that may come at once before the rate applies.
    pub burst: u32,
    /// Requests refused for rate, without the bucket refilling in between, before a close for flooding.
    pub flood_strikes: u32,
    /// Time from connect within which a hello must be accepted.
    pub handshake_timeout: Duration,
    /// Silence after which a member is pinged.
    pub ping_interval: Duration,
    /// Silence after which a member is closed.
    pub idle_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_clients: 10_000,
            max_handshakes: 1_024,
            welcome_list_max: 1_000,
            max_name_chars: 32,
            max_text_bytes: 1_024,
            max_frame_bytes: 2_048,
            rate_per_sec: 20,
            burst: 40,
            flood_strikes: 40,
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
        }
    }
}

impl Config {
    /// The limits announced to clients in the welcome.
    pub fn limits(&self) -> Limits {
        Limits {
            max_name_chars: self.max_name_chars,
            max_text_bytes: self.max_text_bytes,
            max_frame_bytes: self.max_frame_bytes,
            rate_per_sec: self.rate_per_sec,
            burst: self.burst,
            idle_timeout_ms: u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Checks that the limits are coherent; the message says which one is not.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max clients", self.max_clients),
            ("max name chars", self.max_name_chars),
            ("max text bytes", self.max_text_bytes),
            ("max frame bytes", self.max_frame_bytes),
            ("rate per second", self.rate_per_sec),
            ("burst", self.burst),
        ];
        for (what, value) in positive {
            if value == 0 {
                return Err(format!("{what} must be at least 1"));
            }
        }
        // A chat frame is a tag, a varint length and the text.
        if u64::from(self.max_text_bytes) + 8 > u64::from(self.max_frame_bytes) {
            return Err(format!(
                "max frame bytes ({}) must exceed max text bytes ({}) by at least 8",
                self.max_frame_bytes, self.max_text_bytes
            ));
        }
        // `Who` (and a welcome in a small room) lists every member; it must fit the frame a
        // client accepts.
        let welcome = u64::from(self.max_clients) * (u64::from(self.max_name_chars) * 4 + 5);
        if welcome + 4096 > u64::from(chat_proto::MAX_SERVER_FRAME) {
            return Err(format!(
                "max clients ({}) times max name chars ({}) is too large for a member list frame",
                self.max_clients, self.max_name_chars
            ));
        }
        for (what, d) in [
            ("handshake timeout", self.handshake_timeout),
            ("ping interval", self.ping_interval),
            ("idle timeout", self.idle_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{what} must be longer than zero"));
            }
        }
        Ok(())
    }
}

/// Something that happened, handed to [`Room::handle_input`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A connection was accepted.
    Opened(ConnId),
    /// A whole message arrived on a connection.
    Received(ConnId, ClientMsg),
    /// Bytes arrived on a connection that are not a valid frame; it is closed for a protocol error.
    Malformed(ConnId),
    /// The connection's outbound queue overflowed; it is closed as too slow.
    Stalled(ConnId),
    /// The connection is gone (end of stream, reset, write error).
    Closed(ConnId),
    /// The server is shutting down: every connection is closed.
    Shutdown,
    /// Time passed; deadlines up to `now` are handled.
    Tick,
}

/// Something the driver must do, taken from [`Room::poll_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send a message to one connection.
    Send {
        /// The recipient.
        to: ConnId,
        /// What to send.
        msg: ServerMsg,
    },
    /// Send one message to every member (see [`Room::members`]) except one: encode it once.
    Broadcast {
        /// The member left out (the sender), if any.
        except: Option<ConnId>,
        /// What to send.
        msg: ServerMsg,
    },
    /// From now on `conn` is among the recipients of every [`Output::Broadcast`], until its
    /// [`Output::Close`]. Emitted when a member joins, after its welcome. A driver may resolve
    /// recipients with [`Room::recipients`] at each broadcast instead; following these outputs
    /// lets a large room deliver a broadcast without visiting every member.
    Subscribe {
        /// The new member's connection.
        conn: ConnId,
    },
    /// Close a connection. Unless the reason is [`CloseReason::Disconnected`] (the peer is
    /// gone), send `ServerMsg::Closing(reason)` first where the socket still allows it.
    /// The room has already forgotten the connection.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
}

/// The driver broke the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageError {
    /// `Opened` named a connection that is already open.
    AlreadyOpen(ConnId),
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UsageError::AlreadyOpen(c) => write!(f, "connection {} is already open", c.0),
        }
    }
}

impl std::error::Error for UsageError {}

#[derive(Debug)]
struct Conn {
    opened_at: Instant,
    last_heard: Instant,
    pinged: bool,
    /// The earliest timer entry that is live for this connection.
    timer_at: Option<Instant>,
    tokens: f64,
    tokens_at: Instant,
    strikes: u32,
    member: Option<Member>,
}

#[derive(Debug)]
struct Member {
    name: Arc<str>,
    key: String,
}

/// The chat room: membership, names, sequence numbers, limits and deadlines.
#[derive(Debug)]
pub struct Room {
    config: Config,
    conns: HashMap<ConnId, Conn>,
    /// Folded name to connection and registered name: the one owner of who holds which name.
    names: BTreeMap<String, (ConnId, Arc<str>)>,
    seq: u64,
    next_nonce: u64,
    timers: BinaryHeap<Reverse<(Instant, ConnId)>>,
    outputs: VecDeque<Output>,
}

impl Room {
    /// An empty room with these limits.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            conns: HashMap::new(),
            names: BTreeMap::new(),
            seq: 0,
            next_nonce: 0,
            timers: BinaryHeap::new(),
            outputs: VecDeque::new(),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Open connections, joined or not.
    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    /// Members joined.
    pub fn member_count(&self) -> usize {
        self.names.len()
    }

    /// The sequence number of the last chat message.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The registered name of a connection, if it has joined.
    pub fn name_of(&self, conn: ConnId) -> Option<&str> {
        self.conns.get(&conn)?.member.as_ref().map(|m| &*m.name)
    }

    /// Whether a connection is open (joined or in its handshake).
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// Every member's connection: the recipients of a broadcast. Order is unspecified.
    pub fn members(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.conns
            .iter()
            .filter(|(_, c)| c.member.is_some())
            .map(|(id, _)| *id)
    }

    /// The recipients of a [`Output::Broadcast`]: every member but `except`.
    pub fn recipients(&self, except: Option<ConnId>) -> impl Iterator<Item = ConnId> + '_ {
        self.members().filter(move |id| Some(*id) != except)
    }

    /// Every member's name, in folded-name order.
    pub fn member_names(&self) -> Vec<Arc<str>> {
        self.names.values().map(|(_, name)| name.clone()).collect()
    }

    /// The next thing the driver must do. Drain until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The next deadline: call `handle_input(deadline, Input::Tick)` at or after it.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Feeds one input into the room at time `now`.
    pub fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), UsageError> {
        match input {
            Input::Opened(id) => return self.open(now, id),
            Input::Received(id, msg) => self.receive(now, id, msg),
            Input::Malformed(id) => self.close(id, CloseReason::ProtocolError),
            Input::Stalled(id) => self.close(id, CloseReason::TooSlow),
            Input::Closed(id) => self.close(id, CloseReason::Disconnected),
            Input::Shutdown => {
                let mut all: Vec<ConnId> = self.conns.keys().copied().collect();
                all.sort_unstable();
                // Everyone is told by their own closing frame; no one is told of the others.
                for id in all {
                    self.close_quietly(id, CloseReason::ServerShutdown);
                }
            }
            Input::Tick => self.handle_timeouts(now),
        }
        Ok(())
    }

    fn open(&mut self, now: Instant, id: ConnId) -> Result<(), UsageError> {
        if self.conns.contains_key(&id) {
            return Err(UsageError::AlreadyOpen(id));
        }
        self.conns.insert(
            id,
            Conn {
                opened_at: now,
                last_heard: now,
                pinged: false,
                timer_at: None,
                tokens: f64::from(self.config.burst),
                tokens_at: now,
                strikes: 0,
                member: None,
            },
        );
        let handshakes = self.conns.len() - self.names.len();
        if handshakes > self.config.max_handshakes as usize {
            self.send(id, ServerMsg::Refused(Refusal::ServerFull));
            self.close(id, CloseReason::ServerFull);
            return Ok(());
        }
        self.schedule(id, now + self.config.handshake_timeout);
        Ok(())
    }

    fn receive(&mut self, now: Instant, id: ConnId, msg: ClientMsg) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return; // Closed by the room while the message was in flight.
        };
        let joined = conn.member.is_some();
        // A pong is free only as the answer to an outstanding ping; otherwise it is paid for
        // like any request, so that it cannot be used to flood.
        let answers_ping = conn.pinged && matches!(msg, ClientMsg::Pong { .. });
        if joined {
            conn.last_heard = now;
            conn.pinged = false;
        }
        if !joined && !matches!(msg, ClientMsg::Hello { .. } | ClientMsg::Leave) {
            self.close(id, CloseReason::ProtocolError);
            return;
        }
        let free = answers_ping || matches!(msg, ClientMsg::Leave);
        if !free && !self.take_token(now, id) {
            return;
        }
        match msg {
            ClientMsg::Hello {
                magic,
                version,
                name,
            } => self.hello(now, id, magic, version, &name),
            ClientMsg::Chat { text } => self.chat(id, text),
            ClientMsg::Leave => self.close(id, CloseReason::Left),
            ClientMsg::Who => {
                let names = self.member_names();
                self.send(id, ServerMsg::Members { names });
            }
            ClientMsg::Ping { nonce } => self.send(id, ServerMsg::Pong { nonce }),
            ClientMsg::Pong { .. } => {}
        }
    }

    /// Takes one token from the connection's bucket; on refusal answers with an error, or
    /// closes for flooding once the strikes run out. Returns whether the request may proceed.
    fn take_token(&mut self, now: Instant, id: ConnId) -> bool {
        let (rate, burst) = (
            f64::from(self.config.rate_per_sec),
            f64::from(self.config.burst),
        );
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        let elapsed = now.saturating_duration_since(conn.tokens_at).as_secs_f64();
        conn.tokens = (conn.tokens + elapsed * rate).min(burst);
        conn.tokens_at = now;
        if conn.tokens >= burst {
            conn.strikes = 0;
        }
        if conn.tokens >= 1.0 {
            conn.tokens -= 1.0;
            return true;
        }
        conn.strikes += 1;
        if conn.strikes > self.config.flood_strikes {
            self.close(id, CloseReason::Flood);
        } else {
            self.send(id, ServerMsg::Error(ErrorKind::RateLimited));
        }
        false
    }

    fn hello(&mut self, now: Instant, id: ConnId, magic: u32, version: u16, name: &str) {
        if magic != MAGIC {
            self.close(id, CloseReason::ProtocolError);
            return;
        }
        let refusal = if version != PROTOCOL_VERSION {
            Some(Refusal::UnsupportedVersion {
                supported: PROTOCOL_VERSION,
            })
        } else if self.name_of(id).is_some() {
            Some(Refusal::AlreadyJoined)
        } else if let Err(rule) = check_name(name, self.config.max_name_chars) {
            Some(Refusal::NameInvalid(rule))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.send(id, ServerMsg::Refused(refusal));
            return;
        }
        let key = fold_name(name);
        if self.names.contains_key(&key) {
            self.send(id, ServerMsg::Refused(Refusal::NameTaken));
            return;
        }
        if self.names.len() >= self.config.max_clients as usize {
            self.send(id, ServerMsg::Refused(Refusal::ServerFull));
            self.close(id, CloseReason::ServerFull);
            return;
        }
        let name: Arc<str> = display_name(name).into();
        self.names.insert(key.clone(), (id, name.clone()));
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.member = Some(Member {
                name: name.clone(),
                key,
            });
            conn.last_heard = now;
        }
        self.schedule(
            id,
            now + self.config.ping_interval.min(self.config.idle_timeout),
        );
        let online = self.names.len();
        let members = if online <= self.config.welcome_list_max as usize {
            self.member_names()
        } else {
            Vec::new()
        };
        let welcome = ServerMsg::Welcome {
            name: name.to_string(),
            online: u32::try_from(online).unwrap_or(u32::MAX),
            members,
            limits: self.config.limits(),
            seq: self.seq,
        };
        self.send(id, welcome);
        self.outputs.push_back(Output::Subscribe { conn: id });
        self.outputs.push_back(Output::Broadcast {
            except: Some(id),
            msg: ServerMsg::Joined {
                name: name.to_string(),
            },
        });
    }

    fn chat(&mut self, id: ConnId, text: String) {
        if let Err(error) = check_text(&text, self.config.max_text_bytes) {
            self.send(id, ServerMsg::Error(error));
            return;
        }
        let Some(from) = self.name_of(id).map(str::to_owned) else {
            return;
        };
        self.seq += 1;
        self.outputs.push_back(Output::Broadcast {
            except: Some(id),
            msg: ServerMsg::Chat {
                seq: self.seq,
                from,
                text,
            },
        });
    }

    /// Forgets a connection, frees its name, tells the others, and tells the driver to close it.
    fn close(&mut self, id: ConnId, reason: CloseReason) {
        if let Some(name) = self.close_quietly(id, reason) {
            self.outputs.push_back(Output::Broadcast {
                except: None,
                msg: ServerMsg::Left {
                    name: name.to_string(),
                    reason,
                },
            });
        }
    }

    /// Forgets a connection, frees its name and tells the driver to close it, without telling
    /// the others; returns the member's name if it had joined.
    fn close_quietly(&mut self, id: ConnId, reason: CloseReason) -> Option<Arc<str>> {
        let conn = self.conns.remove(&id)?;
        self.outputs.push_back(Output::Close { conn: id, reason });
        let member = conn.member?;
        self.names.remove(&member.key);
        Some(member.name)
    }

    fn send(&mut self, to: ConnId, msg: ServerMsg) {
        self.outputs.push_back(Output::Send { to, msg });
    }

    /// Keeps one live timer entry per connection, at or before its next deadline.
    fn schedule(&mut self, id: ConnId, at: Instant) {
        if let Some(conn) = self.conns.get_mut(&id) {
            if conn.timer_at.is_none_or(|t| at < t) {
                conn.timer_at = Some(at);
                self.timers.push(Reverse((at, id)));
            }
        }
    }

    fn deadline(&self, conn: &Conn) -> Instant {
        if conn.member.is_none() {
            return conn.opened_at + self.config.handshake_timeout;
        }
        let ping_at = conn.last_heard + self.config.ping_interval;
        let close_at = conn.last_heard + self.config.idle_timeout;
        if !conn.pinged && ping_at < close_at {
            ping_at
        } else {
            close_at
        }
    }

    fn handle_timeouts(&mut self, now: Instant) {
        while let Some(&Reverse((at, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            if conn.timer_at != Some(at) {
                continue; // Superseded by an earlier entry.
            }
            conn.timer_at = None;
            let conn = &self.conns[&id];
            let due = self.deadline(conn);
            if due > now {
                self.schedule(id, due);
            } else if conn.member.is_none() {
                self.close(id, CloseReason::HandshakeTimeout);
            } else if !conn.pinged && self.config.ping_interval < self.config.idle_timeout {
                // The ping deadline passed (see `deadline`): ask for a sign of life.
                let close_at = conn.last_heard + self.config.idle_timeout;
                self.next_nonce += 1;
                let nonce = self.next_nonce;
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.pinged = true;
                }
                self.send(id, ServerMsg::Ping { nonce });
                self.schedule(id, close_at);
            } else {
                self.close(id, CloseReason::IdleTimeout);
            }
        }
    }
}
