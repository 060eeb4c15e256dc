//! The room's log kept in Redis, as one node's sans-IO state machine.
//!
//! One stream is the room's log and Lua scripts (beside this file) decide and append
//! atomically. [`RedisLog`] makes every decision of a node taking part: it takes the room's
//! proposals in, gives out the calls to make ([`Call`]: a script, its keys and arguments),
//! takes the replies back in ([`Reply`]), and gives the room its inputs (entries applied,
//! proposals declined, the node lost or starting over). Time is passed in; [`RedisLog::poll_timeout`]
//! says when it next needs to be told. The driver owns the connections, one per [`Lane`], and
//! only runs calls and awaits.
//!
//! Keys, all under one hash tag `chat:{ROOM}:`:
//! - `log`: the stream, one entry per join, chat, leave, rename and away (fields pos, node,
//!   conn, name, key, kind, and by kind: user/realname (a join's ident), seq/text/chat_kind,
//!   reason/message, to_name/to_key, message), trimmed with `MAXLEN ~`. An entry's time is its
//!   stream ID's milliseconds: Redis's clock, the same for every node. A node passes over fields
//!   it does not read and entries of kinds it does not know (a newer node's), so that nodes of
//!   two versions share a room; an older node's entries lack the newer fields (a chat is plain);
//! - `names`: hash folded name -> `node:conn:name`, the claims (the form every version reads);
//! - `seats`: hash folded name -> the claim, then what the seat keeps (away, user, real name),
//!   honoured only while the claim is the one held (an older node's leave does not clear it);
//! - `versions`: hash node -> 3 for the nodes that read rename and away entries (an older node
//!   skips an entry of a kind it does not know and then starts over at the gap it sees: while
//!   such a node is in the room, renames and away are declined as unavailable);
//! - `members:NODE`: set of the folded names a node holds, for the sweep;
//! - `done:NODE`: the token of a node's last batch and its answers, so that a batch tried
//!   again on a new connection (its answer lost) runs once;
//! - `nodes`: sorted set node -> lease expiry (ms, Redis's clock);
//! - `meta`: hash pos, seq, nodes (the node counter), max_members and epoch (a random id
//!   written when the room is created, so that a Redis that restarted empty is recognised).
//!
//! Three lanes: proposals run in order in batches; the lease lane extends this node's lease
//! and sweeps lost nodes; the read lane follows the stream (`XREAD BLOCK`) and starts over from
//! a snapshot on a gap, a reset or a fence.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chat_proto::CloseReason;

use super::{NodeId, Proposal, Snapshot};
use crate::room::Input;

mod lease;
mod link;
mod propose;
mod read;
mod reply;

pub use reply::Reply;

use lease::Lease;
use link::Link;
use propose::Proposals;
use read::Reader;

/// Proposals waiting for Redis, leaves aside: a join or chat past this many is declined as
/// unavailable at once.
pub const PROPOSAL_QUEUE: usize = 8192;
/// Proposals waiting, leaves included: a leave past this many is dropped (its claim stays
/// until this node is swept or retires).
pub const LEAVES_KEPT: usize = 65_536;
// A leave still finds room when joins and chats no longer do.
const _: () = assert!(LEAVES_KEPT > PROPOSAL_QUEUE);
/// Proposals run in one script call, at most.
pub const PROPOSAL_BATCH: usize = 128;
/// Entries read at once.
const READ_COUNT: usize = 512;
/// How long one `XREAD` blocks on the server.
const READ_BLOCK: Duration = Duration::from_millis(1000);
/// How long a call may take before it counts as failed, at least (the default floor: calls
/// get a few measured round trips, between [`Settings::deadline_min`] and
/// [`Settings::deadline_max`]); the blocking read gets its block on top.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// The default ceiling of a call's time.
pub const DEADLINE_MAX: Duration = Duration::from_secs(5);
/// How long the proposal lane stays idle before a PING checks its connection, by default.
pub const PING_IDLE: Duration = Duration::from_secs(1);
/// Wait before a lane whose call failed calls again.
pub const RECONNECT_DELAY: Duration = Duration::from_millis(200);

/// A script with the common prelude in front.
macro_rules! lua {
    ($file:literal) => {
        concat!(include_str!("redis/common.lua"), include_str!($file))
    };
}

/// How this node takes part in the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The room's name: its keys are `chat:{ROOM}:*`.
    pub room: String,
    /// How long this node stays in the room without a renewal.
    pub lease: Duration,
    /// Entries the stream keeps, about.
    pub trim_len: u64,
    /// The member cap this node asks for (the room's own, set by its creator, applies).
    pub max_members: u32,
    /// Recent chats a snapshot brings, for newcomers.
    pub history: u32,
    /// The least time a call is given before it counts as failed (however close Redis is).
    pub deadline_min: Duration,
    /// The most time a call is given: a node whose round trip asks for more says it is not
    /// ready.
    pub deadline_max: Duration,
    /// How long the proposal lane stays idle before a PING checks its connection.
    pub ping_idle: Duration,
}

impl Settings {
    /// The settings for room `room`, with the defaults for the rest.
    pub fn new(room: &str) -> Self {
        Self {
            room: room.to_owned(),
            lease: Duration::from_secs(10),
            trim_len: 100_000,
            max_members: 10_000,
            history: 50,
            deadline_min: COMMAND_TIMEOUT,
            deadline_max: DEADLINE_MAX,
            ping_idle: PING_IDLE,
        }
    }
}

/// The room's keys.
#[derive(Debug)]
struct Keys {
    prefix: String,
    meta: String,
    nodes: String,
    names: String,
    log: String,
}

impl Keys {
    fn new(room: &str) -> Self {
        let prefix = format!("chat:{{{room}}}:");
        Self {
            meta: format!("{prefix}meta"),
            nodes: format!("{prefix}nodes"),
            names: format!("{prefix}names"),
            log: format!("{prefix}log"),
            prefix,
        }
    }

    fn members(&self, node: u64) -> String {
        format!("{}members:{node}", self.prefix)
    }

    /// The token and answers of a node's last batch, for a batch tried again.
    fn done(&self, node: u64) -> String {
        format!("{}done:{node}", self.prefix)
    }

    /// The four keys every script takes first.
    fn common(&self) -> Vec<String> {
        vec![
            self.meta.clone(),
            self.nodes.clone(),
            self.names.clone(),
            self.log.clone(),
        ]
    }
}

/// The scripts, each with the common prelude.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Script {
    /// A new node number with a lease; creates the room if Redis lacks it.
    Register,
    /// Extends a live node's lease.
    Heartbeat,
    /// Runs a batch of proposals in order.
    Propose,
    /// Lets the members of lost (or retiring) nodes go.
    Sweep,
    /// The room now: positions, claims, recent chats.
    Snapshot,
}

impl Script {
    /// Every script, for a driver that loads them once.
    pub const ALL: [Script; 5] = [
        Script::Register,
        Script::Heartbeat,
        Script::Propose,
        Script::Sweep,
        Script::Snapshot,
    ];

    /// The Lua source, to run with `EVALSHA` (loaded first where Redis lacks it).
    pub fn source(self) -> &'static str {
        match self {
            Script::Register => lua!("redis/register.lua"),
            Script::Heartbeat => lua!("redis/heartbeat.lua"),
            Script::Propose => lua!("redis/propose.lua"),
            Script::Sweep => lua!("redis/sweep.lua"),
            Script::Snapshot => lua!("redis/snapshot.lua"),
        }
    }
}

/// A connection of its own: calls on one lane run one at a time, in order, and a slow one
/// (the blocking read) holds up no other lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// The room's proposals.
    Propose,
    /// This node's lease, and the sweep of lost nodes.
    Lease,
    /// Reading the stream, and starting over.
    Read,
}

impl Lane {
    /// Every lane, for a driver that opens one connection each.
    pub const ALL: [Lane; 3] = [Lane::Propose, Lane::Lease, Lane::Read];
}

/// Names a call, so that its reply finds it (and a reply to a call given up finds nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallId(pub u64);

/// What to send to Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A script with its keys and arguments.
    Script {
        /// Which.
        script: Script,
        /// `KEYS`.
        keys: Vec<String>,
        /// `ARGV`.
        args: Vec<String>,
    },
    /// A plain command, its name first (the blocking read).
    Plain(Vec<String>),
}

/// A call for the driver to make on its lane's connection, then to answer with
/// [`RedisLog::handle_reply`] or [`RedisLog::handle_unreachable`].
///
/// A new call on a lane whose call is still running replaces that one: the driver drops it
/// with its connection (a blocking read holds the connection) and runs the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Its name, for the answer.
    pub id: CallId,
    /// The connection it runs on.
    pub lane: Lane,
    /// What to send.
    pub command: Command,
    /// How long to wait for the reply once sent; past it, the call failed
    /// (`Reply::Error`) and its connection is dropped.
    pub timeout: Duration,
    /// Run it on a new connection: the lane's own may be dead (another lane found the link
    /// broken, or this is a batch tried again).
    pub fresh: bool,
}

/// How the node's link to Redis stands, for metrics and health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// The smoothed round trip, once measured.
    pub rtt: Option<Duration>,
    /// Whether the last call answered.
    pub link_up: bool,
    /// Whether the round trip asks for more time than the ceiling gives.
    pub too_far: bool,
    /// Time since Redis last renewed this node's lease (as sent); `None` before entering.
    pub lease_age: Option<Duration>,
    /// How long after Redis appended it the last entry was applied here, about.
    pub lag: Option<Duration>,
}

/// How much an operator needs to see a [`Note`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Worth a line in the log.
    Info,
    /// Something went wrong that the node handles.
    Warn,
    /// Redis said something this node does not understand.
    Error,
}

/// A line for the operator's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// How much it matters.
    pub level: Level,
    /// What happened, in one line.
    pub text: String,
}

/// Something the driver must do, taken from [`RedisLog::poll_output`].
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Make this call.
    Call(Call),
    /// Feed this to the room.
    Input(Input),
    /// The node is in the room: build the room from this. Comes once, first.
    Entered {
        /// This node's number.
        node: NodeId,
        /// Where the room starts.
        snapshot: Snapshot,
    },
    /// Log this.
    Note(Note),
}

/// One node's part in a room whose log is kept in Redis. Starts by entering: registering and
/// taking a snapshot (a failure there is not tried again: the driver gives up).
#[derive(Debug)]
pub struct RedisLog {
    settings: Settings,
    keys: Keys,
    /// The latest time passed in.
    now: Instant,
    /// Randomness from the driver, for the epoch of a room this node creates.
    seed: u64,
    /// Registrations sent: each proposes a fresh epoch.
    registered: u64,
    next_call: u64,
    /// This node's number now (a fenced node comes back under a new one); 0 before entering.
    node: u64,
    /// The room's epoch as this node joined it.
    epoch: String,
    entered: bool,
    proposals: Proposals,
    lease: Lease,
    reader: Reader,
    link: Link,
    /// The retiring sweep, once asked for.
    retiring: Option<CallId>,
    outputs: VecDeque<Output>,
}

impl RedisLog {
    /// A node about to enter the room under `settings`; `seed` is random (it makes the epoch of
    /// a room this node creates).
    pub fn new(settings: Settings, seed: u64, now: Instant) -> Self {
        Self {
            keys: Keys::new(&settings.room),
            proposals: Proposals::new(&settings, now),
            lease: Lease::new(now),
            reader: Reader::new(now),
            link: Link::new(),
            settings,
            now,
            seed,
            registered: 0,
            next_call: 0,
            node: 0,
            epoch: String::new(),
            entered: false,
            retiring: None,
            outputs: VecDeque::new(),
        }
    }

    /// This node's number now.
    pub fn node(&self) -> NodeId {
        NodeId(self.node)
    }

    /// Whether the node has entered the room.
    pub fn entered(&self) -> bool {
        self.entered
    }

    /// How the link stands now.
    pub fn health(&self) -> Health {
        Health {
            rtt: self.link.rtt(),
            link_up: self.link.up(),
            too_far: self.link.too_far(),
            lease_age: self.entered.then(|| self.lease.age(self.now)),
            lag: self.reader.lag(),
        }
    }

    /// The room asks the log to record `proposal`, made as `node` (the node the room was when
    /// it made it: one made before the room started over is refused, not run as the new node).
    pub fn propose(&mut self, now: Instant, node: NodeId, proposal: Proposal) {
        self.advance(now);
        self.take_proposal(node, proposal);
    }

    /// Redis answered call `id` (an error reply, or the driver giving up on it, is a
    /// `Reply::Error`).
    pub fn handle_reply(&mut self, now: Instant, id: CallId, reply: Reply) {
        self.advance(now);
        self.answer(id, Answer::Reply(reply));
    }

    /// No connection could be made for call `id`.
    pub fn handle_unreachable(&mut self, now: Instant, id: CallId) {
        self.advance(now);
        self.answer(id, Answer::Unreachable);
    }

    /// Time passed: deadlines up to `now` are handled.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        self.watch_lease();
        self.drive();
    }

    /// When [`RedisLog::handle_timeout`] is next due, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.reader.timeout();
        if self.entered {
            let timeouts = [
                self.lease.timeout(&self.settings),
                self.proposals.timeout(),
                self.ping_due(),
            ];
            for at in timeouts {
                next = match (next, at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        next
    }

    /// The next thing to do; drain until `None` after every `handle_*` and `propose`.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.outputs.is_empty() {
            self.drive();
        }
        self.outputs.pop_front()
    }

    /// The call that tells the others this node is going: its members leave with `reason` now,
    /// not at the sweep. The driver runs it on a connection of its own once the room has stopped.
    pub fn retire(&mut self, now: Instant, reason: CloseReason) -> Call {
        self.advance(now);
        let args = vec![
            self.settings.trim_len.to_string(),
            self.node.to_string(),
            reason.code().to_string(),
        ];
        let call = self.call(Lane::Propose, Script::Sweep, self.keys.common(), args);
        self.retiring = Some(call.id);
        Call {
            timeout: self.link.timeout(&self.settings) * 2,
            fresh: true,
            ..call
        }
    }

    /// Time only moves forward here, whatever the driver's clock did.
    fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// Issues what each lane is due to send.
    fn drive(&mut self) {
        self.drive_reader();
        if self.entered {
            self.drive_lease();
            self.drive_proposals();
        }
    }

    fn answer(&mut self, id: CallId, answer: Answer) {
        self.link_answered(id, &answer);
        if self.proposals.in_flight() == Some(id) {
            self.proposals_answered(answer);
        } else if self.proposals.pinging() == Some(id) {
            self.ping_answered();
        } else if self.lease.in_flight() == Some(id) {
            self.lease_answered(answer);
        } else if self.reader.in_flight() == Some(id) {
            self.reader_answered(answer);
        } else if self.retiring == Some(id) {
            self.retiring = None;
            self.retired(answer);
        }
        // Otherwise a call given up on (a read abandoned for a rejoin): its answer is stale.
    }

    fn retired(&mut self, answer: Answer) {
        match answer {
            Answer::Reply(reply) => match reply.number() {
                Some(n) => self.note(
                    Level::Info,
                    format!("left the shared room: {n} members let go"),
                ),
                None => self.note(
                    Level::Warn,
                    format!("could not leave the shared room cleanly: {reply:?}"),
                ),
            },
            Answer::Unreachable => self.note(
                Level::Warn,
                "could not leave the shared room cleanly: Redis is unreachable".into(),
            ),
        }
    }

    /// A call on `lane` to `script`, with a fresh id and the usual timeout.
    fn call(&mut self, lane: Lane, script: Script, keys: Vec<String>, args: Vec<String>) -> Call {
        let id = self.next_id();
        self.call_as(id, lane, Command::Script { script, keys, args })
    }

    /// A call named `id`, with the usual timeout.
    fn call_as(&self, id: CallId, lane: Lane, command: Command) -> Call {
        Call {
            id,
            lane,
            command,
            timeout: self.link.timeout(&self.settings),
            fresh: false,
        }
    }

    fn next_id(&mut self) -> CallId {
        self.next_call += 1;
        CallId(self.next_call)
    }

    /// Gives `call` out, on a new connection if another lane found the link broken; its answer
    /// measures the round trip unless it waits on purpose (the blocking read).
    fn send(&mut self, mut call: Call) {
        call.fresh |= self.link.take_redial(call.lane);
        let blocking = matches!(&call.command, Command::Plain(args) if args.first().is_some_and(|a| a == "XREAD"));
        let measures = !blocking;
        self.link.sent(call.lane, call.id, self.now, measures);
        self.outputs.push_back(Output::Call(call));
    }

    fn input(&mut self, input: Input) {
        self.outputs.push_back(Output::Input(input));
    }

    fn note(&mut self, level: Level, text: String) {
        self.outputs.push_back(Output::Note(Note { level, text }));
    }

    /// A fresh epoch for a room this node may create: 16 hex digits from the seed and a
    /// counter (splitmix64), so that each registration proposes another.
    fn new_epoch(&mut self) -> String {
        self.registered += 1;
        let mut z = self
            .seed
            .wrapping_add(self.registered.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        format!("{:016x}", z ^ (z >> 31))
    }
}

/// What became of a call.
#[derive(Debug)]
enum Answer {
    Reply(Reply),
    Unreachable,
}

/// Milliseconds, for a script's argument.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
