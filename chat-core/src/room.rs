//! The room state machine: a gate over the room's log.
//!
//! The gate handles each connection: handshake, validation, rate limits and deadlines. What a
//! member wants recorded (a join, a chat, a leave, a rename, away) becomes a [`Proposal`]; membership, notices
//! and broadcasts follow the applied log ([`Entry`]), never the proposal. A room made with
//! [`Room::new`] keeps its log in memory and applies each proposal at once; one made with
//! [`Room::shared`] hands proposals to the driver ([`Output::Propose`]) and applies what the
//! driver brings back ([`Input::Applied`], [`Input::Declined`], [`Input::Resync`]).

use core::net::IpAddr;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_proto::{
    BanInfo, ChatKind, ClientMsg, CloseReason, ErrorKind, HistoryChat, Ident, MAGIC, Member,
    ModAction, MuteInfo, PROTOCOL_VERSION, Password, Refusal, ServerMsg, v2,
};

use crate::accounts::{Account, Ban, BanTarget, Moderation, Mute};
use crate::config::{Config, ConfigError};
use crate::log::{
    Declined, Entry, Event, NodeId, Proposal, ProposalKind, Seat, Sequencer, Snapshot,
};
use crate::moderation::{Sanctions, Target, net_holds, parse_target, target_text};
use crate::names::{check_ident, check_name, check_text, display_name, fold_name};

pub(crate) mod accounts;
pub use accounts::{PasswordWork, Ticket, Verdict};
mod moderate;

/// A connection, named by the driver. The core never makes these up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Something that happened, handed to [`Room::handle_input`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A connection was accepted (its address unknown: it counts under no address's limits).
    Opened(ConnId),
    /// A connection was accepted from this address: it counts towards the address's limits
    /// (an IPv6 address counts as its /64).
    OpenedFrom(ConnId, IpAddr),
    /// The connection, still in its handshake, is a client at this address, as a trusted proxy
    /// says (a web request's `X-Forwarded-For`): from now on it counts under that address
    /// instead of the one it was opened from, and is refused as too many connections if that
    /// address's handshakes are full. Ignored once it is joining or a member.
    Readdressed(ConnId, IpAddr),
    /// A whole message arrived on a connection.
    Received(ConnId, ClientMsg),
    /// Bytes arrived on a connection that are not a valid frame; it is closed for a protocol error.
    Malformed(ConnId),
    /// The member on this connection leaves the room with these parting words (as a
    /// [`ClientMsg::Leave`] does) but the connection stays open, back in its handshake: not a
    /// wire message, an adapter's (IRC's PART). A later hello joins again; until then the
    /// handshake deadline, counted from now, applies. Ignored for a connection not a member.
    Part(ConnId, Option<String>),
    /// The connection cannot keep up with what it is sent; it is closed as too slow.
    Stalled(ConnId),
    /// The connection is gone (end of stream, reset, write error).
    Closed(ConnId),
    /// The server is shutting down: every connection is closed.
    Shutdown,
    /// Time passed; deadlines up to `now` are handled.
    Tick,
    /// The driver did not run from `since` until `now` (the process was stopped, the machine
    /// swapped, a virtual machine migrated), so what arrived meanwhile is read late, all at
    /// once. The pause is not held against anyone:
    /// - deadlines (handshake, ping, idle) move on by the pause: it does not count as silence;
    /// - rate limits judge what a member sent, not when the room read it. The room cannot know
    ///   when, within the pause, each request was sent; a member that kept to the rate all
    ///   along sent at most `rate × pause` of them. So each connection is lent that many
    ///   requests, taken before its bucket (which refilled up to its burst meanwhile, as
    ///   always), for what arrives within [`PAUSE_GRACE`] of `now` (what waited in the
    ///   sockets' buffers); then the rest lapses. A member that sent more than
    ///   `rate × pause + burst` while the room was not running sent too fast by any clock: it
    ///   is refused, then closed for flooding, as ever.
    ///
    /// A driver sends this when its loop finds that far more time passed between two turns
    /// than its timer asked for, before the first input of the later turn.
    Paused {
        /// When the driver last ran before the pause.
        since: Instant,
    },
    /// The verdict on the password work of an [`Output::Password`].
    Password {
        /// The work's ticket.
        ticket: Ticket,
        /// Its outcome.
        verdict: Verdict,
    },
    /// The log recorded this entry (a room made with [`Room::shared`]). Entries must come in
    /// log order; one already applied is ignored, and one past a gap is refused with
    /// [`UsageError::Gap`] (resynchronise with [`Input::Resync`]).
    Applied(Entry),
    /// The log did not record a proposal this room made.
    Declined {
        /// The proposal, as [`Output::Propose`] gave it.
        proposal: Proposal,
        /// Why.
        why: Declined,
    },
    /// This node's place in the log may be gone while the log cannot be reached (its lease with
    /// the log's keeper ran out unrenewed, so the other nodes may have let its members go).
    /// Every member and joiner here is closed with `reason` now, told so that it can go
    /// elsewhere, rather than kept in a room it may no longer be part of; their leaves are
    /// proposed, for a log that still holds them. The room goes on: joins are proposed as
    /// usual, and an [`Input::Resync`] follows if the log has let this node go.
    Lost {
        /// What local members are told.
        reason: CloseReason,
    },
    /// The log was lost or could not be followed (it restarted empty, it was trimmed past this
    /// room's position, this node was fenced out): every member and joiner here is closed with
    /// `reason`, and the room starts over from `snapshot` as node `node`.
    Resync {
        /// The node this room is from now on.
        node: NodeId,
        /// Where the log stands.
        snapshot: Snapshot,
        /// What local members are told.
        reason: CloseReason,
    },
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
    /// Send one message to every member here except one: encode it once.
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
    /// `conn` is no longer among the recipients of broadcasts (its member left with
    /// [`Input::Part`] and stays connected): what was broadcast before still reaches it.
    Unsubscribe {
        /// The connection.
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
    /// Ask the log to record this (a room made with [`Room::shared`] only). Answer with
    /// [`Input::Applied`] once it is in the log, or [`Input::Declined`].
    Propose(Proposal),
    /// A member joined, left or was renamed (here or on another node): for the driver's log
    /// and counters. Members here are told by a [`Output::Broadcast`] of their own.
    Notice(Notice),
    /// The room applied this log entry: for a driver that keeps the room's state (a store),
    /// emitted only once it asked with [`Room::report_applied`], before what follows from it.
    Applied(Entry),
    /// Check or hash a password off the room's thread (Argon2id is slow on purpose), and
    /// answer with [`Input::Password`] under the same ticket. A driver with no room for more
    /// work answers [`Verdict::Busy`] at once rather than queue without bound.
    Password {
        /// Names the work in the verdict.
        ticket: Ticket,
        /// What to do.
        work: PasswordWork,
    },
}

/// Which of the kept chats a member asks for ([`Room::history`]), by the times the log gave
/// them (ms since the Unix epoch), at most `limit` of them; bounds are exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryQuery {
    /// The newest, said after `after` if given.
    Latest {
        /// Only chats said after this.
        after: Option<u64>,
        /// The most to give.
        limit: usize,
    },
    /// The newest said before `time`.
    Before {
        /// The bound.
        time: u64,
        /// The most to give.
        limit: usize,
    },
    /// The oldest said after `time`.
    After {
        /// The bound.
        time: u64,
        /// The most to give.
        limit: usize,
    },
    /// About half before `time`, the rest from it on.
    Around {
        /// The middle.
        time: u64,
        /// The most to give.
        limit: usize,
    },
    /// Those said between the two times: the oldest after `from` if `from` is the earlier,
    /// else the newest before it.
    Between {
        /// Where the count starts.
        from: u64,
        /// The other bound.
        to: u64,
        /// The most to give.
        limit: usize,
    },
}

/// A change of membership, as a typed event for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// `name` joined; `conn` is its connection when it is a member here.
    Joined {
        /// The member's name.
        name: Arc<str>,
        /// Its connection, when it is here.
        conn: Option<ConnId>,
    },
    /// `name` left.
    Left {
        /// The member's name.
        name: Arc<str>,
        /// Why.
        reason: CloseReason,
    },
    /// The member `from` is now `to`.
    Renamed {
        /// The name it had.
        from: Arc<str>,
        /// The name it has.
        to: Arc<str>,
    },
    /// The operator `by` acted (here or on another node): for the driver's log.
    Moderated {
        /// The operator.
        by: Arc<str>,
        /// What it did.
        action: ModAction,
    },
}

/// The driver broke the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageError {
    /// `Opened` named a connection that is already open.
    AlreadyOpen(ConnId),
    /// An entry came out of log order: `got` when `expected` was next.
    Gap {
        /// The position that was due.
        expected: u64,
        /// The position that came.
        got: u64,
    },
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UsageError::AlreadyOpen(c) => write!(f, "connection {} is already open", c.0),
            UsageError::Gap { expected, got } => {
                write!(f, "log entry {got} came when {expected} was due")
            }
        }
    }
}

impl std::error::Error for UsageError {}

/// How long after a pause ([`Input::Paused`]) the requests lent for it may be taken: what was
/// sent during the pause is read within it, even on a busy server.
pub const PAUSE_GRACE: Duration = Duration::from_secs(2);

/// Requests lent to a connection for a pause of the driver ([`Input::Paused`]).
#[derive(Debug, Clone, Copy)]
struct Lent {
    /// Requests left.
    tokens: f64,
    /// They lapse after this.
    until: Instant,
}

/// Where a connection stands with the room.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Connected, no name yet.
    Handshake,
    /// A hello for a registered name is waiting for its password to be checked (still in the
    /// handshake: its deadline runs).
    Verifying,
    /// A join was proposed; waiting for the log.
    Joining { name: Arc<str>, key: Arc<str> },
    /// In the room.
    Member { name: Arc<str>, key: Arc<str> },
}

impl Phase {
    /// Not a member nor joining: before a hello, or while its password is checked.
    fn in_handshake(&self) -> bool {
        matches!(self, Phase::Handshake | Phase::Verifying)
    }
}

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
    /// Requests lent for the last pause of the driver, if any are left.
    lent: Option<Lent>,
    phase: Phase,
    /// The address it counts under.
    addr: Option<AddrKey>,
    /// Its address, whole: what address bans match.
    ip: Option<IpAddr>,
    /// Where its history starts, if it asked to resume: after this chat of this epoch.
    resume: Option<(u64, u64)>,
    /// The name and key of a rename proposed and not yet applied nor declined (a shared room
    /// only): what its proposals carry meanwhile. At most one is in flight.
    renaming: Option<(Arc<str>, Arc<str>)>,
    /// Its own chats come back to it with everyone's ([`Room::set_echo`]).
    echo: bool,
    /// Password work out for it: at most one at a time.
    job: Option<Ticket>,
}

/// The names the log may hold for a connection that is gone: the one it joined (or was joining)
/// with, and the one a rename in flight asked for.
#[derive(Debug)]
struct Claim {
    name: Arc<str>,
    key: Arc<str>,
    renaming: Option<(Arc<str>, Arc<str>)>,
}

/// An address as limits count it: an IPv4 address, or the /64 of an IPv6 address (one host
/// usually holds a whole /64). Public so that a driver that counts addresses for its own ends
/// counts them the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddrKey {
    /// An IPv4 address (or an IPv4-mapped IPv6 one).
    V4(u32),
    /// The upper 64 bits of an IPv6 address.
    V6(u64),
}
impl From<IpAddr> for AddrKey {
    fn from(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(v4) => AddrKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey::V4(u32::from(v4)),
                None => AddrKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// What one address holds: connections in the handshake (joining ones among them), and members.
#[derive(Debug, Default, Clone, Copy)]
struct AddrCount {
    handshakes: u32,
    /// Of the handshakes, those whose join the log has not decided yet: they count towards the
    /// member limit too, or a shared room (which decides later) would let more in.
    joining: u32,
    members: u32,
}

/// The room as the applied log has it: who is in, and where the log stands.
#[derive(Debug, Default)]
struct View {
    epoch: u64,
    pos: u64,
    seq: u64,
    /// Folded name to member: the one owner of who holds which name.
    members: BTreeMap<Arc<str>, Seat>,
    /// The most recent chats, oldest first.
    history: VecDeque<HistoryChat>,
    /// Registered names, by folded key (a look-alike folds to the same key).
    accounts: HashMap<Arc<str>, Account>,
}

/// The chat room: membership, names, sequence numbers, limits and deadlines.
#[derive(Debug)]
pub struct Room {
    config: Config,
    node: NodeId,
    /// The log, when the room keeps it itself.
    log: Option<Sequencer>,
    conns: HashMap<ConnId, Conn>,
    /// Connections here that are members.
    local_members: usize,
    /// What each address holds, for the per-address limits.
    per_addr: HashMap<AddrKey, AddrCount>,
    view: View,
    next_nonce: u64,
    /// The wall clock at one instant, as the driver last gave it: what times entries.
    clock: Option<(Instant, u64)>,
    timers: BinaryHeap<Reverse<(Instant, ConnId)>>,
    /// Proposals waiting to go to the log.
    proposals: VecDeque<Proposal>,
    outputs: VecDeque<Output>,
    /// Every entry applied is also an [`Output::Applied`] ([`Room::report_applied`]).
    report_applied: bool,
    /// Password work out, by ticket: the connection and what it is for.
    tickets: HashMap<Ticket, (ConnId, accounts::Job)>,
    next_ticket: u64,
    /// Failed password attempts.
    throttle: accounts::Throttle,
    /// The operators' folded names.
    operators: HashSet<Arc<str>>,
    /// The bans and mutes the applied log has in force.
    sanctions: Sanctions,
}

impl Room {
    /// An empty room with these limits, keeping its own log in memory, of epoch `epoch`: a
    /// number the driver chooses at random (never 0) each time it makes the room, so that a
    /// client resuming from another room's numbers is not shown this one's as if it had seen
    /// them. Unless the driver calls [`Room::set_clock`], entries are timed 0.
    pub fn new(config: Config, epoch: u64) -> Result<Self, ConfigError> {
        let log = Sequencer::new(config.max_clients, epoch);
        let snapshot = log.snapshot();
        Self::make(config, NodeId(0), Some(log), snapshot)
    }

    /// A room alone that goes on from `snapshot`, as a store kept it across a restart: the
    /// same epoch (so that a client's resume keeps working), positions and chat sequence numbers
    /// continue, and newcomers are shown the kept history. The members are not carried over: a
    /// restart closed their connections.
    pub fn restore(config: Config, mut snapshot: Snapshot) -> Result<Self, ConfigError> {
        snapshot.members.clear();
        let log = Sequencer::resume(config.max_clients, &snapshot);
        Self::make(config, NodeId(0), Some(log), snapshot)
    }

    /// A room whose log is kept elsewhere, as node `node`, starting from `snapshot` (which gives
    /// the epoch): what members want recorded comes out as [`Output::Propose`], and the log's
    /// entries, timed by the log, go in as [`Input::Applied`].
    pub fn shared(config: Config, node: NodeId, snapshot: Snapshot) -> Result<Self, ConfigError> {
        Self::make(config, node, None, snapshot)
    }

    /// A room keeping `log` in memory, starting where it stands (its accounts among it): a
    /// room with accounts from a store or the operator's file.
    pub fn with_log(config: Config, log: Sequencer) -> Result<Self, ConfigError> {
        let snapshot = log.snapshot();
        Self::make(config, NodeId(0), Some(log), snapshot)
    }

    fn make(
        config: Config,
        node: NodeId,
        log: Option<Sequencer>,
        snapshot: Snapshot,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let operators = config
            .operators
            .iter()
            .map(|name| Arc::from(fold_name(name)))
            .collect();
        let mut room = Self {
            config,
            node,
            log,
            conns: HashMap::new(),
            local_members: 0,
            per_addr: HashMap::new(),
            view: View::default(),
            next_nonce: 0,
            clock: None,
            timers: BinaryHeap::new(),
            proposals: VecDeque::new(),
            outputs: VecDeque::new(),
            report_applied: false,
            tickets: HashMap::new(),
            next_ticket: 0,
            throttle: accounts::Throttle::default(),
            operators,
            sanctions: Sanctions::default(),
        };
        room.load(snapshot);
        Ok(room)
    }

    fn load(&mut self, snapshot: Snapshot) {
        let keep = snapshot.history.len().min(self.config.history as usize);
        let skip = snapshot.history.len() - keep;
        self.view = View {
            epoch: snapshot.epoch,
            pos: snapshot.pos,
            seq: snapshot.seq,
            members: snapshot
                .members
                .into_iter()
                .map(|seat| (seat.key.clone(), seat))
                .collect(),
            history: snapshot.history.into_iter().skip(skip).collect(),
            accounts: snapshot
                .accounts
                .into_iter()
                .map(|account| (account.key.clone(), account))
                .collect(),
        };
        // A snapshot from a room with a larger cap keeps its first bans and mutes only.
        let cap = self.config.max_bans as usize;
        let bans = snapshot.bans.into_iter().take(cap).collect();
        let mutes = snapshot.mutes.into_iter().take(cap).collect();
        self.sanctions = Sanctions::new(bans, mutes);
    }

    /// The bans and mutes held (some may have ended since the last entry applied): what a
    /// store keeps, and a [`Snapshot`] carries.
    pub fn sanctions(&self) -> (Vec<Ban>, Vec<Mute>) {
        self.sanctions.tables()
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This room's node in the log.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Open connections here, joined or not.
    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    /// Members in the room, on every node.
    pub fn member_count(&self) -> usize {
        self.view.members.len()
    }

    /// The sequence number of the last chat message applied.
    pub fn seq(&self) -> u64 {
        self.view.seq
    }

    /// The epoch of the room's log: sequence numbers are comparable only within one.
    pub fn epoch(&self) -> u64 {
        self.view.epoch
    }

    /// Anchors the room's wall clock: at `now` it was `unix_ms` milliseconds since the Unix
    /// epoch. Drivers call it at start and may call it again (each tick, say) to follow changes
    /// of the wall clock. A room that keeps its own log times its entries with it.
    pub fn set_clock(&mut self, now: Instant, unix_ms: u64) {
        self.clock = Some((now, unix_ms));
    }

    /// The wall-clock time at `now`, in milliseconds since the Unix epoch, from the anchor
    /// [`Room::set_clock`] gave; 0 without one.
    pub fn unix_ms(&self, now: Instant) -> u64 {
        let Some((at, ms)) = self.clock else {
            return 0;
        };
        let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if now >= at {
            ms.saturating_add(millis(now - at))
        } else {
            ms.saturating_sub(millis(at - now))
        }
    }

    /// The position of the last log entry applied.
    pub fn pos(&self) -> u64 {
        self.view.pos
    }

    /// From now on (`true`), every entry the room applies is also handed out as an
    /// [`Output::Applied`], for a driver that keeps the room's state across restarts. Off by
    /// default: then applying copies nothing.
    pub fn report_applied(&mut self, on: bool) {
        self.report_applied = on;
    }

    /// Whether `conn`'s own chats come back to it, with everyone's, once the log has them
    /// (IRC's echo-message): off unless an adapter turns it on. Ignored for a connection that
    /// is not open.
    pub fn set_echo(&mut self, conn: ConnId, on: bool) {
        if let Some(conn) = self.conns.get_mut(&conn) {
            conn.echo = on;
        }
    }

    /// A request on `conn` that its adapter answers itself (an IRC `PING`, a WebSocket ping):
    /// it is paid for from the connection's rate limit like any message, so that answers cannot
    /// be drawn out faster than messages. Returns whether it may be answered; past the limit
    /// the connection is told, or closed for flooding, as for a message.
    pub fn charge(&mut self, now: Instant, conn: ConnId) -> bool {
        let paid = self.take_token(now, conn);
        self.flush_proposals(now);
        paid
    }

    /// The registered name of a connection, if it has joined.
    pub fn name_of(&self, conn: ConnId) -> Option<&str> {
        match &self.conns.get(&conn)?.phase {
            Phase::Member { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The account `conn` is logged in to: the folded key of its name, when that name is
    /// registered (a member holds a registered name only once its password was checked, or
    /// once it registered it). `None` for a connection not a member.
    pub fn account_of(&self, conn: ConnId) -> Option<&str> {
        match &self.conns.get(&conn)?.phase {
            Phase::Member { key, .. } => self.view.accounts.get(key).map(|a| &*a.key),
            _ => None,
        }
    }

    /// Every registered name, in no order.
    pub fn accounts(&self) -> impl Iterator<Item = &Account> + '_ {
        self.view.accounts.values()
    }

    /// Whether a connection is open (joined or in its handshake).
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// Every member's connection here: the recipients of a broadcast. Order is unspecified.
    pub fn members(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.conns
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Member { .. }))
            .map(|(id, _)| *id)
    }

    /// The recipients of a [`Output::Broadcast`]: every member here but `except`.
    pub fn recipients(&self, except: Option<ConnId>) -> impl Iterator<Item = ConnId> + '_ {
        self.members().filter(move |id| Some(*id) != except)
    }

    /// Every member's name, on every node, in folded-name order.
    pub fn member_names(&self) -> Vec<Arc<str>> {
        self.view
            .members
            .values()
            .map(|seat| seat.name.clone())
            .collect()
    }

    /// Every member, on every node, in folded-name order, as the welcome and `Who` list them.
    pub fn member_list(&self) -> Vec<Member> {
        self.view.members.values().map(Seat::member).collect()
    }

    /// The kept chats `query` asks for, oldest first (IRC's CHATHISTORY).
    pub fn history(&self, query: HistoryQuery) -> Vec<HistoryChat> {
        let kept = &self.view.history;
        // Times never go back in the log, so the kept chats are in time order.
        let first_after = |t: u64| kept.partition_point(|c| c.time <= t);
        let first_at = |t: u64| kept.partition_point(|c| c.time < t);
        let (range, newest, limit) = match query {
            HistoryQuery::Latest { after, limit } => {
                (after.map_or(0, first_after)..kept.len(), true, limit)
            }
            HistoryQuery::Before { time, limit } => (0..first_at(time), true, limit),
            HistoryQuery::After { time, limit } => (first_after(time)..kept.len(), false, limit),
            HistoryQuery::Around { time, limit } => {
                let mid = first_at(time);
                let start = mid.saturating_sub(limit / 2);
                (start..kept.len().min(start + limit), false, limit)
            }
            HistoryQuery::Between { from, to, limit } => {
                let (lo, hi) = (from.min(to), from.max(to));
                (
                    first_after(lo)..first_at(hi).max(first_after(lo)),
                    from > to,
                    limit,
                )
            }
        };
        let count = range.len().min(limit);
        let range = if newest {
            range.end - count..range.end
        } else {
            range.start..range.start + count
        };
        kept.range(range).cloned().collect()
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
        let result = match input {
            Input::Opened(id) => self.open(now, id, None),
            Input::OpenedFrom(id, addr) => self.open(now, id, Some(addr)),
            Input::Readdressed(id, addr) => {
                self.readdress(now, id, addr);
                Ok(())
            }
            Input::Received(id, msg) => {
                self.receive(now, id, msg);
                Ok(())
            }
            Input::Malformed(id) => {
                self.close(id, CloseReason::ProtocolError);
                Ok(())
            }
            Input::Part(id, message) => {
                self.part(now, id, message);
                Ok(())
            }
            Input::Stalled(id) => {
                self.close(id, CloseReason::TooSlow);
                Ok(())
            }
            Input::Closed(id) => {
                self.close(id, CloseReason::Disconnected);
                Ok(())
            }
            Input::Shutdown => {
                self.shutdown();
                Ok(())
            }
            Input::Tick => {
                self.handle_timeouts(now);
                Ok(())
            }
            Input::Paused { since } => {
                self.paused(since, now);
                Ok(())
            }
            Input::Password { ticket, verdict } => {
                self.verdict(now, ticket, verdict);
                Ok(())
            }
            Input::Applied(entry) => self.apply(now, entry),
            Input::Declined { proposal, why } => {
                self.declined(proposal, why);
                Ok(())
            }
            Input::Lost { reason } => {
                self.let_go(reason);
                Ok(())
            }
            Input::Resync {
                node,
                snapshot,
                reason,
            } => {
                self.let_go(reason);
                self.node = node;
                self.load(snapshot);
                Ok(())
            }
        };
        self.flush_proposals(now);
        result
    }

    /// Hands proposals to the log: to the room's own, at once, or out to the driver.
    fn flush_proposals(&mut self, now: Instant) {
        let unix_ms = self.unix_ms(now);
        while let Some(proposal) = self.proposals.pop_front() {
            let Some(log) = &mut self.log else {
                self.outputs.push_back(Output::Propose(proposal));
                continue;
            };
            match log.propose(self.node, proposal.clone(), unix_ms) {
                Ok(entry) => {
                    // The room's own log never skips or repeats a position.
                    let _ = self.apply(now, entry);
                }
                Err(why) => self.declined(proposal, why),
            }
        }
    }

    fn propose(&mut self, conn: ConnId, name: &Arc<str>, key: &Arc<str>, kind: ProposalKind) {
        self.proposals.push_back(Proposal {
            conn,
            name: name.clone(),
            key: key.clone(),
            kind,
        });
    }

    fn open(&mut self, now: Instant, id: ConnId, ip: Option<IpAddr>) -> Result<(), UsageError> {
        if self.conns.contains_key(&id) {
            return Err(UsageError::AlreadyOpen(id));
        }
        let addr = ip.map(AddrKey::from);
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
                lent: None,
                phase: Phase::Handshake,
                addr,
                ip,
                resume: None,
                renaming: None,
                echo: false,
                job: None,
            },
        );
        let from_addr = addr.map_or(0, |a| {
            let count = self.per_addr.entry(a).or_default();
            count.handshakes += 1;
            count.handshakes
        });
        let banned = ip.and_then(|ip| self.sanctions.addr_ban(ip, self.unix_ms(now)));
        if let Some(ban) = banned {
            let refusal = Refusal::Banned { until: ban.until };
            self.refuse_and_close(id, refusal, CloseReason::Banned);
            return Ok(());
        }
        if from_addr > self.config.max_handshakes_per_ip {
            self.refuse_and_close(
                id,
                Refusal::TooManyConnections,
                CloseReason::TooManyConnections,
            );
            return Ok(());
        }
        let handshakes = self.conns.len() - self.local_members;
        if handshakes > self.config.max_handshakes as usize && !self.free_a_slot(id, addr) {
            self.refuse_and_close(id, Refusal::ServerFull, CloseReason::ServerFull);
            return Ok(());
        }
        self.schedule(id, now + self.config.handshake_timeout);
        Ok(())
    }

    /// Moves a connection in its handshake to the address `addr` counts it under
    /// ([`Input::Readdressed`]), refusing it if that address is banned or has no handshake
    /// left.
    fn readdress(&mut self, now: Instant, id: ConnId, ip: IpAddr) {
        let addr = AddrKey::from(ip);
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if !conn.phase.in_handshake() || conn.ip == Some(ip) {
            return;
        }
        conn.ip = Some(ip);
        if let Some(ban) = self.sanctions.addr_ban(ip, self.unix_ms(now)) {
            let refusal = Refusal::Banned { until: ban.until };
            self.refuse_and_close(id, refusal, CloseReason::Banned);
            return;
        }
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.addr == Some(addr) {
            return;
        }
        if let Some(old) = conn.addr.replace(addr)
            && let Some(count) = self.per_addr.get_mut(&old)
        {
            count.handshakes -= 1;
            if count.handshakes == 0 && count.members == 0 {
                self.per_addr.remove(&old);
            }
        }
        let count = self.per_addr.entry(addr).or_default();
        count.handshakes += 1;
        if count.handshakes > self.config.max_handshakes_per_ip {
            self.refuse_and_close(
                id,
                Refusal::TooManyConnections,
                CloseReason::TooManyConnections,
            );
        }
    }

    /// The shared handshake pool is full and `newcomer` (from `addr`) asks for a slot: the
    /// address holding the most handshakes, if it holds more than the newcomer's does, gives
    /// up its oldest one (closed as too many connections). Returns whether a slot was freed.
    /// Only then does this look through the pool, so it costs nothing until the pool is full.
    fn free_a_slot(&mut self, newcomer: ConnId, addr: Option<AddrKey>) -> bool {
        let waiting = |c: &AddrCount| c.handshakes - c.joining;
        let own = addr.and_then(|a| self.per_addr.get(&a)).map_or(0, waiting);
        let heaviest = self
            .per_addr
            .iter()
            .map(|(key, count)| (waiting(count), *key))
            .max_by_key(|(n, key)| (*n, std::cmp::Reverse(*key)));
        let Some((most, key)) = heaviest.filter(|(most, _)| *most > own) else {
            return false;
        };
        debug_assert!(most > 0);
        let oldest = self
            .conns
            .iter()
            .filter(|(id, c)| {
                **id != newcomer && c.addr == Some(key) && c.phase == Phase::Handshake
            })
            .min_by_key(|(id, c)| (c.opened_at, **id))
            .map(|(id, _)| *id);
        let Some(oldest) = oldest else { return false };
        self.refuse_and_close(
            oldest,
            Refusal::TooManyConnections,
            CloseReason::TooManyConnections,
        );
        true
    }

    fn receive(&mut self, now: Instant, id: ConnId, msg: ClientMsg) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return; // Closed by the room while the message was in flight.
        };
        let joined = matches!(conn.phase, Phase::Member { .. });
        // A pong is free only as the answer to an outstanding ping; otherwise it is paid for
        // like any request, so that it cannot be used to flood.
        let answers_ping = conn.pinged && matches!(msg, ClientMsg::Pong { .. });
        if joined {
            conn.last_heard = now;
            conn.pinged = false;
        }
        if let ClientMsg::Resume { after, epoch } = msg {
            // Free, and only before joining: where the history after the welcome starts.
            if conn.phase == Phase::Handshake {
                conn.resume = Some((after, epoch));
            }
            return;
        }
        // A member's requests are taken from the hello on: in a shared room the join may still
        // be on its way to the log, and what follows it there follows the join.
        let joining = matches!(conn.phase, Phase::Joining { .. });
        let leave = matches!(msg, ClientMsg::Leave { .. });
        if !joined && !joining && !leave && !matches!(msg, ClientMsg::Hello { .. }) {
            self.close(id, CloseReason::ProtocolError);
            return;
        }
        let free = answers_ping || leave;
        if !free && !self.take_token(now, id) {
            return;
        }
        match msg {
            ClientMsg::Hello {
                magic,
                version,
                name,
                password,
                ident,
            } => self.hello(now, id, (magic, version), &name, password, ident),
            ClientMsg::Chat { text, kind } => self.chat(now, id, text, kind),
            ClientMsg::Leave { message } => {
                // A leave is never refused: parting words that break the rules are dropped.
                let message = message
                    .filter(|m| check_text(m, self.config.max_text_bytes).is_ok())
                    .map(Arc::from);
                self.close_with(id, CloseReason::Left, message);
            }
            ClientMsg::Who => {
                let members = self.member_list();
                self.send(id, ServerMsg::Members { members });
            }
            ClientMsg::Ping { nonce } => self.send(id, ServerMsg::Pong { nonce }),
            ClientMsg::Nick { name } => self.nick(now, id, &name),
            ClientMsg::Away { message } => self.away(now, id, message),
            ClientMsg::Pong { .. } | ClientMsg::Resume { .. } => {}
            ClientMsg::Register { password } => self.register(id, password),
            ClientMsg::Passwd { old, new } => self.passwd(now, id, old, new),
            ClientMsg::Unregister => self.unregister(id),
            ClientMsg::Kick { .. }
            | ClientMsg::Ban { .. }
            | ClientMsg::Unban { .. }
            | ClientMsg::Mute { .. }
            | ClientMsg::Unmute { .. }
            | ClientMsg::Bans => self.moderate(now, id, msg),
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
        if let Some(lent) = &mut conn.lent {
            if now <= lent.until && lent.tokens >= 1.0 {
                lent.tokens -= 1.0;
                return true;
            }
            conn.lent = None;
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

    /// The driver did not run from `since` to `now`: see [`Input::Paused`] for the rule.
    fn paused(&mut self, since: Instant, now: Instant) {
        let Some(pause) = now.checked_duration_since(since).filter(|p| !p.is_zero()) else {
            return;
        };
        let lend = pause.as_secs_f64() * f64::from(self.config.rate_per_sec);
        let until = now.checked_add(PAUSE_GRACE).unwrap_or(now);
        // Never past `now`: a deadline moved on is still one measured from a past event.
        let later = |t: Instant| t.checked_add(pause).map_or(now, |t| t.min(now));
        for conn in self.conns.values_mut() {
            conn.opened_at = later(conn.opened_at);
            conn.last_heard = later(conn.last_heard);
            // A second pause within the grace adds to what is left of the first.
            let left = conn
                .lent
                .filter(|l| now <= l.until)
                .map_or(0.0, |l| l.tokens);
            conn.lent = Some(Lent {
                tokens: left + lend,
                until,
            });
        }
    }

    fn hello(
        &mut self,
        now: Instant,
        id: ConnId,
        (magic, version): (u32, u16),
        name: &str,
        password: Option<Password>,
        ident: Option<Ident>,
    ) {
        if magic != MAGIC {
            self.close(id, CloseReason::ProtocolError);
            return;
        }
        let handshake = self
            .conns
            .get(&id)
            .is_some_and(|c| c.phase == Phase::Handshake);
        let refusal = if version != PROTOCOL_VERSION && version != v2::VERSION {
            Some(Refusal::UnsupportedVersion {
                supported: PROTOCOL_VERSION,
            })
        } else if !handshake {
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
        let key: Arc<str> = fold_name(name).into();
        // A ban on the name covers its look-alikes: they fold to the same key.
        if let Some(ban) = self.sanctions.name_ban(&key, self.unix_ms(now)) {
            let refusal = Refusal::Banned { until: ban.until };
            self.send(id, ServerMsg::Refused(refusal));
            return;
        }
        if self.name_held(&key) {
            self.send(id, ServerMsg::Refused(Refusal::NameTaken));
            return;
        }
        let name: Arc<str> = display_name(name).into();
        // An ident that breaks the rules is dropped: it is the gateway's to get right.
        let ident = ident.filter(check_ident).map(Arc::new);
        if self.view.accounts.contains_key(&key) {
            self.log_in(now, id, (name, key), ident, password);
        } else if self.config.require_account {
            self.send(id, ServerMsg::Refused(Refusal::AccountRequired));
        } else {
            self.join(id, name, key, ident);
        }
    }

    /// Whether a member holds `key` as the applied log shows it, which answers at once; the
    /// log decides the rest. A name whose holder here is gone is not taken: its leave is on its
    /// way to the log, ahead of this join (a member that reconnects at once, or after its node
    /// let it go).
    fn name_held(&self, key: &str) -> bool {
        self.view
            .members
            .get(key)
            .is_some_and(|seat| !self.gone_here(seat))
    }

    /// A hello that may join (its name free, its password checked if it needed one): refused
    /// if the room or its address is full, else its join goes to the log.
    fn join(&mut self, id: ConnId, name: Arc<str>, key: Arc<str>, ident: Option<Arc<Ident>>) {
        if self.full() {
            self.refuse_and_close(id, Refusal::ServerFull, CloseReason::ServerFull);
            return;
        }
        let max_per_addr = self.config.max_clients_per_ip;
        let addr = self.conns.get(&id).and_then(|c| c.addr);
        let members_from_addr = addr.map_or(0, |a| {
            let count = self.per_addr[&a];
            count.members + count.joining
        });
        if max_per_addr > 0 && members_from_addr >= max_per_addr {
            self.refuse_and_close(
                id,
                Refusal::TooManyConnections,
                CloseReason::TooManyConnections,
            );
            return;
        }
        self.propose(id, &name, &key, ProposalKind::Join { ident });
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.phase = Phase::Joining { name, key };
            if let Some(count) = conn.addr.and_then(|a| self.per_addr.get_mut(&a)) {
                count.joining += 1;
            }
        }
    }

    fn chat(&mut self, now: Instant, id: ConnId, text: String, kind: ChatKind) {
        if let Err(error) = check_text(&text, self.config.max_text_bytes) {
            self.send(id, ServerMsg::Error(error));
            return;
        }
        if self.refuse_if_muted(now, id) {
            return;
        }
        // A chat sent while the join is in flight follows it in the log; if the join is
        // refused, the log refuses the chat too (its sender holds no name).
        if let Some((name, key)) = self.identity(id) {
            self.propose(id, &name, &key, ProposalKind::Chat { text, kind });
        }
    }

    /// The name and key a connection's proposals carry: those a rename in flight asked for,
    /// else those it joined (or is joining) with. `None` before its hello.
    ///
    /// A rename the log then declines takes what was proposed after it along (the log holds
    /// the old key): in a shared room, a chat sent in that moment is lost. Its leave is not:
    /// see [`Room::close_with`].
    fn identity(&self, id: ConnId) -> Option<(Arc<str>, Arc<str>)> {
        let conn = self.conns.get(&id)?;
        match &conn.phase {
            Phase::Member { name, key } | Phase::Joining { name, key } => {
                Some(conn.renaming.clone().unwrap_or((name.clone(), key.clone())))
            }
            Phase::Handshake | Phase::Verifying => None,
        }
    }

    /// A rename: checked as a hello's name is, refused to the member alone, applied for all.
    fn nick(&mut self, now: Instant, id: ConnId, wanted: &str) {
        let Some((name, key)) = self.identity(id) else {
            return;
        };
        // A muted member keeps its name: a new one would shed the mute.
        if self.refuse_if_muted(now, id) {
            return;
        }
        if self.conns.get(&id).is_some_and(|c| c.renaming.is_some()) {
            // One rename in flight at a time, so that a leave knows which names to give back.
            self.send(id, ServerMsg::Error(ErrorKind::RateLimited));
            return;
        }
        if let Err(rule) = check_name(wanted, self.config.max_name_chars) {
            self.send(id, ServerMsg::Error(ErrorKind::NameInvalid(rule)));
            return;
        }
        let new_name: Arc<str> = display_name(wanted).into();
        if new_name == name {
            return; // Nothing would change.
        }
        let new_key: Arc<str> = fold_name(wanted).into();
        // Held by another member, unless its member here is gone (its leave is on its way to
        // the log, ahead of this rename); the same key is a change of case or form.
        let banned = self
            .sanctions
            .name_ban(&new_key, self.unix_ms(now))
            .is_some();
        let taken = banned
            || new_key != key
                && self
                    .view
                    .members
                    .get(&new_key)
                    .is_some_and(|seat| !self.gone_here(seat));
        if taken {
            self.send(id, ServerMsg::Error(ErrorKind::NameTaken));
            return;
        }
        // A registered name is taken with its password, by a hello: not by a rename.
        if new_key != key && self.view.accounts.contains_key(&new_key) {
            self.send(id, ServerMsg::Error(ErrorKind::NameRegistered));
            return;
        }
        let kind = ProposalKind::Rename {
            name: new_name.clone(),
            key: new_key.clone(),
        };
        self.propose(id, &name, &key, kind);
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.renaming = Some((new_name, new_key));
        }
    }

    /// Away (`Some`, under the text rules of a chat) or back (`None`).
    fn away(&mut self, now: Instant, id: ConnId, message: Option<String>) {
        if message.is_some() && self.refuse_if_muted(now, id) {
            return;
        }
        if let Some(Err(error)) = message
            .as_deref()
            .map(|m| check_text(m, self.config.max_away_bytes))
        {
            self.send(id, ServerMsg::Error(error));
            return;
        }
        if let Some((name, key)) = self.identity(id) {
            let message = message.map(Arc::from);
            self.propose(id, &name, &key, ProposalKind::Away { message });
        }
    }

    /// Applies one log entry: membership, notices and broadcasts follow from it.
    fn apply(&mut self, now: Instant, mut entry: Entry) -> Result<(), UsageError> {
        if entry.pos <= self.view.pos {
            return Ok(()); // Already applied (a reader that resumed from an earlier position).
        }
        if entry.pos != self.view.pos + 1 {
            return Err(UsageError::Gap {
                expected: self.view.pos + 1,
                got: entry.pos,
            });
        }
        self.view.pos = entry.pos;
        if self.report_applied {
            self.outputs.push_back(Output::Applied(entry.clone()));
        }
        let here = entry.node == self.node;
        // Taken out, so that a chat's text moves on to its broadcast without a copy.
        let event = std::mem::replace(&mut entry.event, Event::Joined { ident: None });
        match event {
            Event::Joined { ident } => self.joined(now, here, entry, ident),
            Event::Chat { seq, text, kind } => self.said(&entry, seq, text, kind),
            Event::Left { reason, message } => self.left(&entry, reason, message),
            Event::Renamed { name, key } => self.renamed(&entry, name, key),
            Event::Registered { hash } => self.registered(&entry, hash),
            Event::Unregistered => self.unregistered(&entry),
            Event::Moderated(action) => self.moderated(&entry, &action),
            Event::Unknown => {}
            Event::Away { message } => {
                let announce = self.announce();
                let Some(seat) = self.view.members.get_mut(&entry.key) else {
                    return Ok(());
                };
                seat.away = message.clone();
                let except = (seat.node == self.node).then_some(seat.conn);
                let msg = ServerMsg::Away {
                    name: seat.name.to_string(),
                    message: message.as_deref().map(str::to_owned),
                    time: entry.time,
                };
                if announce {
                    self.outputs.push_back(Output::Broadcast { except, msg });
                }
            }
        }
        Ok(())
    }

    /// Whether changes of membership are announced one by one: past `announce_max` members,
    /// members learn them from the welcome and `Who`.
    fn announce(&self) -> bool {
        self.view.members.len() <= self.config.announce_max as usize
    }

    fn said(&mut self, entry: &Entry, seq: u64, text: String, kind: ChatKind) {
        self.view.seq = seq;
        if self.config.history > 0 {
            if self.view.history.len() >= self.config.history as usize {
                self.view.history.pop_front();
            }
            self.view.history.push_back(HistoryChat {
                seq,
                time: entry.time,
                from: entry.name.clone(),
                text: text.as_str().into(),
                kind,
            });
        }
        let seat = self.view.members.get(&entry.key);
        let except = seat.filter(|s| s.node == self.node).map(|s| s.conn);
        let except = except.filter(|c| !self.conns.get(c).is_some_and(|c| c.echo));
        self.outputs.push_back(Output::Broadcast {
            except,
            msg: ServerMsg::Chat {
                seq,
                time: entry.time,
                from: entry.name.to_string(),
                text,
                kind,
            },
        });
    }

    fn left(&mut self, entry: &Entry, reason: CloseReason, message: Option<Arc<str>>) {
        let announce = self.announce();
        let Some(seat) = self.view.members.remove(&entry.key) else {
            return;
        };
        // A member here that the log let go of (its node was swept) is closed.
        if seat.node == self.node {
            let still_here = self
                .conns
                .get(&seat.conn)
                .is_some_and(|c| matches!(&c.phase, Phase::Member { key, .. } if *key == seat.key));
            if still_here {
                self.forget(seat.conn, reason);
            }
        }
        self.outputs.push_back(Output::Notice(Notice::Left {
            name: seat.name.clone(),
            reason,
        }));
        if announce {
            self.outputs.push_back(Output::Broadcast {
                except: None,
                msg: ServerMsg::Left {
                    name: seat.name.to_string(),
                    reason,
                    message: message.as_deref().map(str::to_owned),
                    time: entry.time,
                },
            });
        }
    }

    /// A member took another name: its seat moves to the new key, and everyone is told, the
    /// member too (past `announce_max`, the member alone).
    fn renamed(&mut self, entry: &Entry, name: Arc<str>, key: Arc<str>) {
        let Some(mut seat) = self.view.members.remove(&entry.key) else {
            return;
        };
        seat.name = name.clone();
        seat.key = key.clone();
        let member = (seat.node == self.node).then_some(seat.conn);
        self.view.members.insert(key.clone(), seat);
        if let Some(conn) = member.and_then(|id| self.conns.get_mut(&id)) {
            if let Phase::Member { name: n, key: k } = &mut conn.phase
                && *k == entry.key
            {
                (*n, *k) = (name.clone(), key.clone());
            }
            if conn.renaming.as_ref().is_some_and(|(_, k)| *k == key) {
                conn.renaming = None;
            }
        }
        self.outputs.push_back(Output::Notice(Notice::Renamed {
            from: entry.name.clone(),
            to: name.clone(),
        }));
        let msg = ServerMsg::Renamed {
            from: entry.name.to_string(),
            to: name.to_string(),
            time: entry.time,
        };
        if self.announce() {
            self.outputs
                .push_back(Output::Broadcast { except: None, msg });
        } else if let Some(to) = member.filter(|id| self.name_of(*id).is_some()) {
            self.send(to, msg);
        }
    }

    fn joined(&mut self, now: Instant, here: bool, entry: Entry, ident: Option<Arc<Ident>>) {
        let seat = Seat {
            node: entry.node,
            conn: entry.conn,
            name: entry.name.clone(),
            key: entry.key.clone(),
            away: None,
            ident: ident.clone(),
        };
        self.view.members.insert(entry.key.clone(), seat);
        let announce = self.announce();
        let joiner = here
            && self.conns.get(&entry.conn).is_some_and(
                |c| matches!(&c.phase, Phase::Joining { key, .. } if *key == entry.key),
            );
        let conn = joiner.then_some(entry.conn);
        self.outputs.push_back(Output::Notice(Notice::Joined {
            name: entry.name.clone(),
            conn,
        }));
        if here && !joiner {
            // The connection went away while its join was in flight: it leaves at once.
            let reason = CloseReason::Disconnected;
            let kind = ProposalKind::Leave {
                reason,
                message: None,
            };
            self.propose(entry.conn, &entry.name, &entry.key, kind);
        }
        let joined = ServerMsg::Joined {
            name: entry.name.to_string(),
            time: entry.time,
            ident,
        };
        if !joiner {
            if announce {
                self.outputs.push_back(Output::Broadcast {
                    except: None,
                    msg: joined,
                });
            }
            return;
        }
        self.welcome(now, &entry);
        if announce {
            self.outputs.push_back(Output::Broadcast {
                except: Some(entry.conn),
                msg: joined,
            });
        }
    }

    /// Makes the joiner here a member: its welcome, its history, and its place in broadcasts.
    fn welcome(&mut self, now: Instant, entry: &Entry) {
        let id = entry.conn;
        let mut resume = None;
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.phase = Phase::Member {
                name: entry.name.clone(),
                key: entry.key.clone(),
            };
            conn.last_heard = now;
            resume = conn.resume;
            if let Some(count) = conn.addr.and_then(|a| self.per_addr.get_mut(&a)) {
                count.handshakes -= 1;
                count.joining -= 1;
                count.members += 1;
            }
        }
        self.local_members += 1;
        self.schedule(
            id,
            now + self.config.ping_interval.min(self.config.idle_timeout),
        );
        let online = self.view.members.len();
        let members = if online <= self.config.welcome_list_max as usize {
            self.member_list()
        } else {
            Vec::new()
        };
        let welcome = ServerMsg::Welcome {
            name: entry.name.to_string(),
            online: u32::try_from(online).unwrap_or(u32::MAX),
            members,
            limits: self.config.limits(),
            seq: self.view.seq,
            epoch: self.view.epoch,
        };
        self.send(id, welcome);
        if let Some(history) = self.history_after(resume) {
            self.send(id, history);
        }
        self.outputs.push_back(Output::Subscribe { conn: id });
    }

    /// What a member joining now is shown of the past: the chats after `resume` (or all kept),
    /// and how many it missed that are no longer kept. `None` when there is nothing to show.
    ///
    /// A resume point from another epoch (the room was reset), or past the room's last chat
    /// (numbers from some other room), means nothing here: the member is shown the history as
    /// a newcomer is, so that it misses none of this room's chats. Epoch 0 is a client that
    /// does not know one (a v2 client): it resumes by number alone.
    fn history_after(&self, resume: Option<(u64, u64)>) -> Option<ServerMsg> {
        let resume = resume
            .filter(|&(after, epoch)| {
                (epoch == 0 || epoch == self.view.epoch) && after <= self.view.seq
            })
            .map(|(after, _)| after);
        let after = resume.unwrap_or(0);
        let chats: Vec<HistoryChat> = self
            .view
            .history
            .iter()
            .filter(|c| c.seq > after)
            .cloned()
            .collect();
        // Only a client that resumes is told what it missed; a newcomer missed nothing.
        let missed = match resume {
            Some(after) => {
                let first_kept = chats.first().map_or(self.view.seq + 1, |c| c.seq);
                // `after` is the peer's number: no arithmetic on it may overflow.
                first_kept.saturating_sub(after.saturating_add(1))
            }
            None => 0,
        };
        (!chats.is_empty() || missed > 0).then_some(ServerMsg::History { chats, missed })
    }

    fn declined(&mut self, proposal: Proposal, why: Declined) {
        let Proposal {
            conn, key, kind, ..
        } = proposal;
        let joining = self
            .conns
            .get(&conn)
            .is_some_and(|c| matches!(&c.phase, Phase::Joining { key: k, .. } if *k == key));
        match kind {
            ProposalKind::Join { .. } if joining => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.phase = Phase::Handshake;
                    c.renaming = None;
                    if let Some(count) = c.addr.and_then(|a| self.per_addr.get_mut(&a)) {
                        count.joining -= 1;
                    }
                }
                match why {
                    Declined::RoomFull => {
                        self.refuse_and_close(conn, Refusal::ServerFull, CloseReason::ServerFull);
                    }
                    Declined::Unavailable => {
                        self.send(conn, ServerMsg::Refused(Refusal::Unavailable));
                    }
                    Declined::NameTaken | Declined::NotHolder => {
                        self.send(conn, ServerMsg::Refused(Refusal::NameTaken));
                    }
                }
            }
            ProposalKind::Chat { .. }
            | ProposalKind::Away { .. }
            | ProposalKind::Register { .. }
            | ProposalKind::Unregister
            | ProposalKind::Moderate { .. }
                if why == Declined::Unavailable && self.name_of(conn).is_some() =>
            {
                self.send(conn, ServerMsg::Error(ErrorKind::Unavailable));
            }
            ProposalKind::Rename { key: wanted, .. } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                if c.renaming.as_ref().is_none_or(|(_, k)| *k != wanted) {
                    return;
                }
                // Its proposals carry the name the log still holds again.
                c.renaming = None;
                let error = match why {
                    Declined::NameTaken => ErrorKind::NameTaken,
                    Declined::Unavailable => ErrorKind::Unavailable,
                    Declined::RoomFull | Declined::NotHolder => return,
                };
                self.send(conn, ServerMsg::Error(error));
            }
            // A chat from a member the log no longer holds, a leave already recorded, a join
            // whose connection is gone: nothing to do.
            _ => {}
        }
    }

    /// Closes every member and joiner here with `reason`, proposing their leaves.
    fn let_go(&mut self, reason: CloseReason) {
        let mut gone: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.phase.in_handshake())
            .map(|(id, _)| *id)
            .collect();
        gone.sort_unstable();
        for id in gone {
            // Its claim, if the log still has one, is given back.
            self.close_with(id, reason, None);
        }
    }

    fn shutdown(&mut self) {
        let mut all: Vec<ConnId> = self.conns.keys().copied().collect();
        all.sort_unstable();
        // Everyone here is told by their own closing frame; no one here is told of the others.
        // Other nodes of a shared log are told through it.
        for id in all {
            if self.log.is_none() {
                self.close_with(id, CloseReason::ServerShutdown, None);
            } else {
                self.forget(id, CloseReason::ServerShutdown);
            }
        }
    }

    /// A member leaves and stays connected, back in its handshake ([`Input::Part`]): its leave
    /// goes to the log as a [`ClientMsg::Leave`]'s does, and it follows broadcasts no more.
    fn part(&mut self, now: Instant, id: ConnId, message: Option<String>) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let Phase::Member { name, key } = std::mem::replace(&mut conn.phase, Phase::Handshake)
        else {
            return;
        };
        let renaming = conn.renaming.take();
        conn.opened_at = now;
        conn.pinged = false;
        if let Some(count) = conn.addr.and_then(|a| self.per_addr.get_mut(&a)) {
            count.members -= 1;
            count.handshakes += 1;
        }
        self.local_members -= 1;
        self.outputs.push_back(Output::Unsubscribe { conn: id });
        let message: Option<Arc<str>> = message
            .filter(|m| check_text(m, self.config.max_text_bytes).is_ok())
            .map(Arc::from);
        let leave = |message| ProposalKind::Leave {
            reason: CloseReason::Left,
            message,
        };
        if let Some((name, key)) = &renaming {
            self.propose(id, name, key, leave(message.clone()));
        }
        self.propose(id, &name, &key, leave(message));
        self.schedule(id, now + self.config.handshake_timeout);
    }

    /// Closes a connection for `reason`: the log is asked to let its member go, and the others
    /// are told once it has.
    fn close(&mut self, id: ConnId, reason: CloseReason) {
        self.close_with(id, reason, None);
    }

    /// [`Room::close`], with parting words. With a rename in flight, the leave is proposed
    /// under both names, the new one first: whichever the log holds when it decides is freed,
    /// and the other is declined as not held.
    fn close_with(&mut self, id: ConnId, reason: CloseReason, message: Option<Arc<str>>) {
        let Some(claim) = self.forget(id, reason) else {
            return;
        };
        let leave = |message| ProposalKind::Leave { reason, message };
        if let Some((name, key)) = &claim.renaming {
            self.propose(id, name, key, leave(message.clone()));
        }
        self.propose(id, &claim.name, &claim.key, leave(message));
    }

    /// Forgets a connection and tells the driver to close it; returns the names the log may
    /// hold for it, if it joined or was joining.
    fn forget(&mut self, id: ConnId, reason: CloseReason) -> Option<Claim> {
        let conn = self.conns.remove(&id)?;
        if let Some(ticket) = conn.job {
            self.tickets.remove(&ticket);
        }
        self.outputs.push_back(Output::Close { conn: id, reason });
        if let Some(addr) = conn.addr
            && let Some(count) = self.per_addr.get_mut(&addr)
        {
            match conn.phase {
                Phase::Member { .. } => count.members -= 1,
                Phase::Joining { .. } => {
                    count.handshakes -= 1;
                    count.joining -= 1;
                }
                Phase::Handshake | Phase::Verifying => count.handshakes -= 1,
            }
            if count.handshakes == 0 && count.members == 0 {
                self.per_addr.remove(&addr);
            }
        }
        let (name, key) = match conn.phase {
            Phase::Handshake | Phase::Verifying => return None,
            Phase::Joining { name, key } => (name, key),
            Phase::Member { name, key } => {
                self.local_members -= 1;
                (name, key)
            }
        };
        Some(Claim {
            name,
            key,
            renaming: conn.renaming,
        })
    }

    /// Whether `seat` is a member of this node whose connection is gone (or parted): in a
    /// shared room its leave may not be applied yet, but it is on its way to the log.
    fn gone_here(&self, seat: &Seat) -> bool {
        // A connection back in its handshake (it parted) is gone from the seat too.
        seat.node == self.node
            && self
                .conns
                .get(&seat.conn)
                .is_none_or(|c| c.phase.in_handshake())
    }

    /// Whether the room is full, seats of members gone from here aside. They are counted only
    /// when the room looks full.
    fn full(&self) -> bool {
        let max = self.config.max_clients as usize;
        let seats = self.view.members.len();
        seats >= max
            && seats
                - self
                    .view
                    .members
                    .values()
                    .filter(|s| self.gone_here(s))
                    .count()
                >= max
    }

    /// Refuses a hello with `refusal` and closes the connection for `reason`.
    fn refuse_and_close(&mut self, id: ConnId, refusal: Refusal, reason: CloseReason) {
        self.send(id, ServerMsg::Refused(refusal));
        self.close(id, reason);
    }

    fn send(&mut self, to: ConnId, msg: ServerMsg) {
        self.outputs.push_back(Output::Send { to, msg });
    }

    /// Keeps one live timer entry per connection, at or before its next deadline.
    fn schedule(&mut self, id: ConnId, at: Instant) {
        if let Some(conn) = self.conns.get_mut(&id)
            && conn.timer_at.is_none_or(|t| at < t)
        {
            conn.timer_at = Some(at);
            self.timers.push(Reverse((at, id)));
        }
    }

    fn deadline(&self, conn: &Conn) -> Instant {
        if !matches!(conn.phase, Phase::Member { .. }) {
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
            let member = matches!(conn.phase, Phase::Member { .. });
            if due > now {
                self.schedule(id, due);
            } else if !member {
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
