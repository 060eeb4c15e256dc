//! The driver of a room shared through Redis (`--redis`): one stream is the room's log, Lua
//! scripts decide and append atomically, and every node reads the stream back into its room.
//!
//! Keys, all under one hash tag `chat:{ROOM}:`:
//! - `log`: the stream, one entry per join, chat and leave (fields pos, node, conn, name, key,
//!   kind, and seq/text or reason), trimmed with `MAXLEN ~`;
//! - `names`: hash folded name -> `node:conn:name`, the claims;
//! - `members:NODE`: set of the folded names a node holds, for the sweep;
//! - `nodes`: sorted set node -> lease expiry (ms, Redis's clock);
//! - `meta`: hash pos, seq, nodes (the node counter) and epoch (a random id written when the room
//!   is created, so that a Redis that restarted empty is recognised).
//!
//! Three tasks beside the room task: the proposer runs the scripts for the room's proposals in
//! order; the reader follows the stream (`XREAD BLOCK`) and feeds entries back, resynchronising
//! on a gap, a reset or a fence; the heartbeat extends this node's lease and sweeps lost nodes.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, RedisResult, Script, Value};
use async_channel::{Receiver, Sender};
use chat_core::{
    ConnId, Declined, Entry, Event as LogEvent, Input, NodeId, Proposal, ProposalKind, Seat,
    Snapshot,
};
use chat_proto::{CloseReason, HistoryChat};
use futures_lite::FutureExt;
use smol::{LocalExecutor, Timer};

use crate::config::SharedConfig;
use crate::conn::Event;

/// Proposals waiting for the proposer; a full queue declines joins and chats as unavailable.
pub(crate) const PROPOSAL_QUEUE: usize = 8192;
/// Leaves kept for retry while Redis is unreachable.
const LEAVES_KEPT: usize = 65_536;
/// Proposals run in one script call, at most.
const PROPOSAL_BATCH: usize = 128;
/// Entries read at once.
const READ_COUNT: usize = 512;
/// How long one `XREAD` blocks on the server.
const READ_BLOCK_MS: u64 = 1000;
/// Timeout for connecting and for every command but the blocking read.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// Wait before reconnecting after a failure.
const RECONNECT_DELAY: Duration = Duration::from_millis(200);

macro_rules! lua {
    ($file:literal) => {
        concat!(include_str!("lua/common.lua"), include_str!($file))
    };
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
}

/// The scripts, run with EVALSHA (and loaded again after NOSCRIPT by `redis::Script`).
struct Scripts {
    register: Script,
    heartbeat: Script,
    propose: Script,
    sweep: Script,
    snapshot: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            register: Script::new(lua!("lua/register.lua")),
            heartbeat: Script::new(lua!("lua/heartbeat.lua")),
            propose: Script::new(lua!("lua/propose.lua")),
            sweep: Script::new(lua!("lua/sweep.lua")),
            snapshot: Script::new(lua!("lua/snapshot.lua")),
        }
    }
}

/// What this server is in the shared room, shared by its tasks (all on one thread).
pub(crate) struct Shared {
    config: SharedConfig,
    max_members: u32,
    /// Recent chats a snapshot brings, for newcomers (`--history`).
    history: u32,
    client: Client,
    keys: Keys,
    scripts: Scripts,
    /// This node's number now (a fenced node comes back under a new one).
    node: Cell<u64>,
    /// The room's epoch as this node joined it.
    epoch: RefCell<String>,
    /// When the last renewal of this node's lease that Redis answered was sent (a registration
    /// counts): the lease runs out, by Redis's clock, no earlier than a lease after it.
    renewed_at: Cell<Instant>,
    /// This node's members were let go because its lease ran out unrenewed.
    lost: Cell<bool>,
    /// Redis's clock (ms) as a reply told it, and when that reply arrived here: an estimate of
    /// Redis's time that is never ahead of it.
    clock: Cell<Option<(Instant, u64)>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("room", &self.config.room)
            .field("node", &self.node.get())
            .finish_non_exhaustive()
    }
}

/// Where a room starts: its node, the snapshot, and the stream ID the snapshot includes.
struct Start {
    node: u64,
    snapshot: Snapshot,
    last_id: String,
}

/// Joins the shared room: registers this node and takes a snapshot. The room is built from what
/// this returns, then [`spawn`] starts the tasks.
pub(crate) async fn enter(
    config: &SharedConfig,
    max_members: u32,
    history: u32,
) -> io::Result<(Rc<Shared>, NodeId, Snapshot, String)> {
    let client = Client::open(config.url.as_str())
        .map_err(|e| io::Error::other(format!("bad Redis URL '{}': {e}", config.url)))?;
    let shared = Rc::new(Shared {
        config: config.clone(),
        max_members,
        history,
        client,
        keys: Keys::new(&config.room),
        scripts: Scripts::new(),
        node: Cell::new(0),
        epoch: RefCell::new(String::new()),
        renewed_at: Cell::new(Instant::now()),
        lost: Cell::new(false),
        clock: Cell::new(None),
    });
    let unreachable = |e: ::redis::RedisError| {
        io::Error::other(format!("cannot use Redis at {}: {e}", config.url))
    };
    let mut conn = connect(&shared.client, Some(COMMAND_TIMEOUT))
        .await
        .map_err(unreachable)?;
    let start = shared.start(&mut conn, true).await.map_err(unreachable)?;
    log::info!(
        "joined room '{}' in Redis as node {} ({}) at position {}",
        config.room,
        start.node,
        config.label,
        start.snapshot.pos
    );
    Ok((shared, NodeId(start.node), start.snapshot, start.last_id))
}

/// Starts the proposer, the reader and the heartbeat on `ex`; returns where the room task sends
/// its proposals.
pub(crate) fn spawn(
    shared: &Rc<Shared>,
    ex: &LocalExecutor<'_>,
    events: Sender<Event>,
    start_pos: u64,
    last_id: String,
) -> Sender<(NodeId, Proposal)> {
    let (proposals_tx, proposals_rx) = async_channel::bounded(PROPOSAL_QUEUE);
    let (control_tx, control_rx) = async_channel::bounded(8);
    let proposer = propose_loop(
        shared.clone(),
        proposals_rx,
        events.clone(),
        control_tx.clone(),
    );
    ex.spawn(proposer).detach();
    ex.spawn(lease_watch(shared.clone(), events.clone()))
        .detach();
    ex.spawn(read_loop(
        shared.clone(),
        events,
        control_rx,
        start_pos,
        last_id,
    ))
    .detach();
    ex.spawn(heartbeat_loop(shared.clone(), control_tx))
        .detach();
    proposals_tx
}

/// Tells the others this node is going: its members leave with `reason` now, not at the sweep.
pub(crate) async fn retire(shared: &Shared, reason: CloseReason) {
    let node = shared.node.get();
    let retire = async {
        let mut conn = connect(&shared.client, Some(COMMAND_TIMEOUT)).await?;
        let mut call = shared.scripts.sweep.prepare_invoke();
        shared.keyed(&mut call);
        call.arg(shared.config.trim_len)
            .arg(node)
            .arg(reason.code());
        call.invoke_async::<i64>(&mut conn).await
    };
    let timeout = async {
        Timer::after(COMMAND_TIMEOUT * 2).await;
        Err(::redis::RedisError::from(io::Error::from(
            io::ErrorKind::TimedOut,
        )))
    };
    match retire.or(timeout).await {
        Ok(n) => log::info!("left the shared room: {n} members let go"),
        Err(error) => log::warn!("could not leave the shared room cleanly: {error}"),
    }
}

async fn connect(client: &Client, timeout: Option<Duration>) -> RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(COMMAND_TIMEOUT))
        .set_response_timeout(timeout);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// A connection that is made again after it fails, no more often than [`RECONNECT_DELAY`].
struct Link {
    conn: Option<MultiplexedConnection>,
    retry_at: Instant,
    timeout: Option<Duration>,
}

impl Link {
    fn new(timeout: Option<Duration>) -> Self {
        Self {
            conn: None,
            retry_at: Instant::now(),
            timeout,
        }
    }

    /// The connection, made now if there is none and the last failure is not too recent.
    async fn get(&mut self, client: &Client) -> Option<&mut MultiplexedConnection> {
        if self.conn.is_none() {
            if Instant::now() < self.retry_at {
                return None;
            }
            match connect(client, self.timeout).await {
                Ok(conn) => self.conn = Some(conn),
                Err(error) => {
                    log::debug!("redis: cannot connect: {error}");
                    self.broken();
                    return None;
                }
            }
        }
        self.conn.as_mut()
    }

    fn broken(&mut self) {
        self.conn = None;
        self.retry_at = Instant::now() + RECONNECT_DELAY;
    }
}

/// What a script said about a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Appended,
    Declined(Declined),
    /// This node was swept (`ServerLost`) or the room was reset (`RoomReset`): nothing it
    /// proposes enters the log until it rejoins.
    Fenced(CloseReason),
    /// Redis could not be reached.
    Unreachable,
}

impl Shared {
    fn node(&self) -> u64 {
        self.node.get()
    }

    /// Redis's time (ms) `after` from now, by the last clock reading; 0 (no deadline) before
    /// the first. Readings are taken when replies arrive, so this is never later than Redis's
    /// own time then.
    fn redis_time_in(&self, after: Duration) -> u64 {
        self.clock.get().map_or(0, |(at, ms)| {
            let since = Instant::now().saturating_duration_since(at) + after;
            ms + u64::try_from(since.as_millis()).unwrap_or(u64::MAX / 2)
        })
    }

    /// A reply said Redis's clock read `ms`: it reads at least that now. The best of the readings
    /// is kept (each is a lower bound; one taken late, on a busy thread, is a worse one).
    fn read_clock(&self, ms: u64) {
        let now = Instant::now();
        let known = self.clock.get().map(|(at, old)| {
            old + u64::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(0)
        });
        if known.is_none_or(|known| ms >= known) {
            self.clock.set(Some((now, ms)));
        }
    }

    /// Redis extended this node's lease by a call sent at `sent`.
    fn renewed(&self, sent: Instant) {
        self.renewed_at.set(self.renewed_at.get().max(sent));
        self.lost.set(false);
    }

    /// The four keys every script takes first.
    fn keyed(&self, call: &mut ::redis::ScriptInvocation<'_>) {
        call.key(&self.keys.meta)
            .key(&self.keys.nodes)
            .key(&self.keys.names)
            .key(&self.keys.log);
    }

    /// Registers (if `register`) and takes a snapshot.
    async fn start(&self, conn: &mut MultiplexedConnection, register: bool) -> RedisResult<Start> {
        if register {
            let mut call = self.scripts.register.prepare_invoke();
            self.keyed(&mut call);
            call.arg(new_epoch())
                .arg(lease_ms(self.config.lease))
                .arg(self.max_members);
            let sent = Instant::now();
            let (node, epoch, now, room_max): (u64, String, u64, u32) =
                call.invoke_async(conn).await?;
            if room_max != self.max_members {
                log::warn!(
                    "room '{}' holds at most {room_max} members, as set by the server that created \
                     it: this server's --max-clients {} does not change that",
                    self.config.room,
                    self.max_members
                );
            }
            self.node.set(node);
            *self.epoch.borrow_mut() = epoch;
            self.renewed(sent);
            self.read_clock(now);
        }
        let mut call = self.scripts.snapshot.prepare_invoke();
        self.keyed(&mut call);
        call.arg(self.history);
        let value: Value = call.invoke_async(conn).await?;
        let (snapshot, last_id) = parse_snapshot(&value)
            .ok_or_else(|| io::Error::other(format!("malformed snapshot from Redis: {value:?}")))?;
        Ok(Start {
            node: self.node(),
            snapshot,
            last_id,
        })
    }

    /// Runs `batch`, proposals made as `node` (the node the room was when it made them), in
    /// order, in one script call: one verdict each. Proposals from before the room started over
    /// are refused without asking Redis.
    async fn propose(&self, link: &mut Link, node: NodeId, batch: &[Proposal]) -> Vec<Verdict> {
        let all = |verdict: Verdict| vec![verdict; batch.len()];
        let NodeId(node) = node;
        if node != self.node() {
            return all(Verdict::Fenced(CloseReason::ServerLost));
        }
        let Some(conn) = link.get(&self.client).await else {
            return all(Verdict::Unreachable);
        };
        let mut call = self.scripts.propose.prepare_invoke();
        self.keyed(&mut call);
        call.key(self.keys.members(node))
            .arg(node)
            .arg(self.epoch.borrow().as_str())
            .arg(self.config.trim_len)
            .arg(self.max_members)
            // A batch held up on the way (a partition, a stalled link) must not run once this
            // node has given up on it and told its members so: it may start no later than half
            // the time this node waits, leaving the other half for it to run and answer.
            .arg(self.redis_time_in(COMMAND_TIMEOUT / 2));
        for proposal in batch {
            let kind = match &proposal.kind {
                ProposalKind::Join { .. } => "join",
                ProposalKind::Chat { .. } => "chat",
                ProposalKind::Leave { .. } => "leave",
                ProposalKind::Rename { .. } => "rename",
                ProposalKind::Away { .. } => "away",
            };
            call.arg(kind)
                .arg(proposal.conn.0)
                .arg(&*proposal.name)
                .arg(&*proposal.key);
            match &proposal.kind {
                ProposalKind::Join { .. } => call.arg(""),
                ProposalKind::Chat { text, .. } => call.arg(text.as_str()),
                ProposalKind::Leave { reason, .. } => call.arg(reason.code()),
                ProposalKind::Rename { name, .. } => call.arg(&**name),
                ProposalKind::Away { message } => call.arg(message.as_deref().unwrap_or("")),
            };
        }
        let answer = match call.invoke_async::<Value>(conn).await {
            Ok(answer) => answer,
            Err(error) => {
                log::warn!("redis: proposals failed: {error}");
                link.broken();
                return all(Verdict::Unreachable);
            }
        };
        let verdict = |answer: Option<String>| match answer.as_deref() {
            Some("OK") => Verdict::Appended,
            Some("NAME_TAKEN") => Verdict::Declined(Declined::NameTaken),
            Some("ROOM_FULL") => Verdict::Declined(Declined::RoomFull),
            Some("NOT_HOLDER") => Verdict::Declined(Declined::NotHolder),
            Some("FENCED") => Verdict::Fenced(CloseReason::ServerLost),
            Some("RESET") => Verdict::Fenced(CloseReason::RoomReset),
            Some("EXPIRED") => {
                log::warn!("redis: proposals reached Redis after this node gave up on them");
                Verdict::Unreachable
            }
            other => {
                log::error!("redis: unexpected answer to a proposal: {other:?}");
                Verdict::Declined(Declined::Unavailable)
            }
        };
        match &answer {
            Value::Array(answers) if answers.len() == batch.len() => {
                answers.iter().map(|a| verdict(text(a))).collect()
            }
            Value::Array(answers) => {
                log::error!(
                    "redis: {} answers to {} proposals",
                    answers.len(),
                    batch.len()
                );
                all(Verdict::Declined(Declined::Unavailable))
            }
            one => all(verdict(text(one))),
        }
    }
}

/// Runs the room's proposals in order, as many as are waiting (up to [`PROPOSAL_BATCH`], and a
/// 64th of `--trim-len`) in one script call. Joins and chats that cannot reach Redis are declined as unavailable at once;
/// leaves are kept and retried first, so that no claim is left behind.
async fn propose_loop(
    shared: Rc<Shared>,
    proposals: Receiver<(NodeId, Proposal)>,
    events: Sender<Event>,
    control: Sender<Rejoin>,
) {
    let mut link = Link::new(Some(COMMAND_TIMEOUT));
    // A batch appends at once: far less than the stream keeps, so that readers keep up.
    let batch_max = usize::try_from(shared.config.trim_len / 64)
        .unwrap_or(PROPOSAL_BATCH)
        .clamp(1, PROPOSAL_BATCH);
    let mut leaves: VecDeque<(NodeId, Proposal)> = VecDeque::new();
    let mut work: Vec<(NodeId, Proposal)> = Vec::new();
    let mut retry: Vec<(NodeId, Proposal)> = Vec::new();
    loop {
        let next = if leaves.is_empty() {
            match proposals.recv().await {
                Ok(p) => Some(p),
                Err(_) => return,
            }
        } else {
            let recv = async { proposals.recv().await.ok() };
            let retry = async {
                Timer::after(RECONNECT_DELAY).await;
                None
            };
            recv.or(retry).await
        };
        // Kept leaves first, then what waits, in the order the room made them. While more
        // kept leaves wait than one batch takes, nothing may overtake them: a new leave joins
        // them, and a join or chat is declined for now (a join must not run before the leave
        // that frees its name).
        work.extend(leaves.drain(..leaves.len().min(batch_max)));
        let from_kept = work.len();
        let mut incoming = next;
        while let Some((node, proposal)) = incoming {
            if leaves.is_empty() {
                work.push((node, proposal));
            } else if matches!(proposal.kind, ProposalKind::Leave { .. }) {
                keep(&mut leaves, (node, proposal));
            } else {
                let why = Declined::Unavailable;
                if events
                    .send(Event::Input(Input::Declined { proposal, why }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            incoming = (work.len() < 2 * batch_max)
                .then(|| proposals.try_recv().ok())
                .flatten();
        }
        let (mut reachable, mut index) = (true, 0);
        let mut rest = &mut work[..];
        while let Some((node, _)) = rest.first() {
            let node = *node;
            let len = rest
                .iter()
                .take(batch_max)
                .take_while(|(n, _)| *n == node)
                .count();
            let (chunk, after) = rest.split_at_mut(len);
            rest = after;
            let batch: Vec<Proposal> = chunk.iter().map(|(_, p)| p.clone()).collect();
            let verdicts = if reachable {
                shared.propose(&mut link, node, &batch).await
            } else {
                vec![Verdict::Unreachable; batch.len()]
            };
            let mut rejoin = None;
            for (proposal, verdict) in batch.into_iter().zip(verdicts) {
                index += 1;
                let is_leave = matches!(proposal.kind, ProposalKind::Leave { .. });
                let why = match verdict {
                    Verdict::Appended => continue,
                    Verdict::Declined(why) => why,
                    Verdict::Fenced(reason) => {
                        rejoin = Some(reason);
                        Declined::Unavailable
                    }
                    Verdict::Unreachable if is_leave => {
                        reachable = false;
                        if index <= from_kept {
                            retry.push((node, proposal));
                        } else {
                            keep(&mut leaves, (node, proposal));
                        }
                        continue;
                    }
                    Verdict::Unreachable => {
                        reachable = false;
                        Declined::Unavailable
                    }
                };
                if is_leave {
                    continue; // refused by the log: nothing for the room to do
                }
                let input = Input::Declined { proposal, why };
                if events.send(Event::Input(input)).await.is_err() {
                    return;
                }
            }
            if let Some(reason) = rejoin {
                // Found out before the heartbeat: the reader rejoins now.
                let _ = control.try_send(Rejoin {
                    reason,
                    node: node.0,
                });
            }
        }
        work.clear();
        // Kept leaves Redis did not answer go back to the front, in order (new ones went to
        // the back).
        for leave in retry.drain(..).rev() {
            leaves.push_front(leave);
        }
    }
}

/// Keeps a leave Redis did not take, behind those kept before it, up to [`LEAVES_KEPT`].
fn keep(leaves: &mut VecDeque<(NodeId, Proposal)>, leave: (NodeId, Proposal)) {
    if leaves.len() < LEAVES_KEPT {
        leaves.push_back(leave);
    } else {
        // The claim stays until this node is swept or retires.
        log::warn!(
            "redis: too many leaves waiting; dropping {}'s",
            leave.1.name
        );
    }
}

/// Why the reader must start over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rejoin {
    /// What local members are told.
    reason: CloseReason,
    /// The node that found it must rejoin; stale if the reader already rejoined since.
    node: u64,
}

/// What ended a wait on the blocking read.
enum Read {
    Reply(RedisResult<Value>),
    Rejoin(Option<Rejoin>),
}

/// Extends this node's lease every third of it, and sweeps nodes whose lease ran out.
async fn heartbeat_loop(shared: Rc<Shared>, control: Sender<Rejoin>) {
    // Answers later than a quarter of the lease are failures, tried again soon after: a slow
    // link must not cost this node its lease.
    // The period counts from each renewal's sending, so that a slow answer or sweep does not
    // push the next renewal towards the lease's end.
    let lease = shared.config.lease;
    let mut link = Link::new(Some(COMMAND_TIMEOUT.min(lease / 4)));
    let period = lease / 3;
    let mut next = Instant::now() + period;
    loop {
        Timer::at(next).await;
        next = Instant::now() + RECONNECT_DELAY;
        let Some(conn) = link.get(&shared.client).await else {
            continue;
        };
        let node = shared.node();
        let mut call = shared.scripts.heartbeat.prepare_invoke();
        shared.keyed(&mut call);
        call.arg(node)
            .arg(shared.epoch.borrow().as_str())
            .arg(lease_ms(shared.config.lease));
        let sent = Instant::now();
        let answer = call.invoke_async::<(String, u64)>(conn).await;
        if let Ok((_, now)) = &answer {
            shared.read_clock(*now);
        }
        let reason = match answer.as_ref().map(|(state, _)| state.as_str()) {
            Ok("OK") => {
                shared.renewed(sent);
                next = sent + period;
                None
            }
            Ok("FENCED") => Some(CloseReason::ServerLost),
            Ok("RESET") => Some(CloseReason::RoomReset),
            Ok(other) => {
                log::error!("redis: unexpected heartbeat answer: {other}");
                None
            }
            Err(error) => {
                log::warn!("redis: heartbeat failed: {error}");
                link.broken();
                continue;
            }
        };
        if let Some(reason) = reason {
            log::warn!("redis: node {node} is out of the room ({reason}); rejoining");
            let _ = control.try_send(Rejoin { reason, node });
        }
        let mut call = shared.scripts.sweep.prepare_invoke();
        shared.keyed(&mut call);
        call.arg(shared.config.trim_len);
        match call.invoke_async::<i64>(conn).await {
            Ok(0) => {}
            Ok(n) => log::info!("redis: swept {n} members of lost servers"),
            Err(error) => {
                log::warn!("redis: sweep failed: {error}");
                link.broken();
            }
        }
    }
}

/// Lets this node's members go once its lease has run out unrenewed: Redis may be out of reach
/// for good, and the other nodes sweep a node whose lease ran out, announcing its members lost.
/// They are told now, so that they can go elsewhere, rather than sit in a room that has let them
/// go. When Redis answers again, the heartbeat finds this node fenced and it rejoins (or, if
/// nobody swept it yet, their leaves enter the log).
async fn lease_watch(shared: Rc<Shared>, events: Sender<Event>) {
    let lease = shared.config.lease;
    loop {
        let runs_out = shared.renewed_at.get() + lease;
        if Instant::now() < runs_out {
            Timer::at(runs_out).await;
            continue;
        }
        if shared.lost.get() {
            // Let go already: wait for a renewal.
            Timer::after(RECONNECT_DELAY).await;
            continue;
        }
        shared.lost.set(true);
        log::warn!(
            "redis: no lease renewal for {lease:?}: letting this node's members go ({})",
            CloseReason::ServerLost
        );
        let lost = Input::Lost {
            reason: CloseReason::ServerLost,
        };
        if events.send(Event::Input(lost)).await.is_err() {
            return;
        }
    }
}

/// Follows the stream from `last_id` and feeds each entry to the room, in order. Starts over
/// from a fresh snapshot when it finds a gap (trimmed past), a log that went backwards (Redis
/// restarted empty), or when the heartbeat says this node is out.
async fn read_loop(
    shared: Rc<Shared>,
    events: Sender<Event>,
    control: Receiver<Rejoin>,
    mut applied: u64,
    mut last_id: String,
) {
    // No response timeout: the read blocks on purpose. A dead link is caught by `stuck` below.
    let mut link = Link::new(None);
    let mut pending: Option<(CloseReason, bool)> = None;
    loop {
        if let Ok(rejoin) = control.try_recv()
            && rejoin.node == shared.node()
        {
            pending = Some((rejoin.reason, true));
        }
        let Some(conn) = link.get(&shared.client).await else {
            Timer::after(RECONNECT_DELAY).await;
            continue;
        };
        if let Some((reason, register)) = pending {
            match shared.start(conn, register).await {
                Ok(start) => {
                    log::warn!(
                        "redis: starting over as node {} at position {} ({reason})",
                        start.node,
                        start.snapshot.pos
                    );
                    applied = start.snapshot.pos;
                    last_id = start.last_id;
                    let input = Input::Resync {
                        node: NodeId(start.node),
                        snapshot: start.snapshot,
                        reason,
                    };
                    if events.send(Event::Input(input)).await.is_err() {
                        return;
                    }
                    pending = None;
                }
                Err(error) => {
                    log::warn!("redis: cannot start over yet: {error}");
                    link.broken();
                }
            }
            continue;
        }
        let mut cmd = ::redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(READ_BLOCK_MS)
            .arg("STREAMS")
            .arg(&shared.keys.log)
            .arg(&last_id);
        let read = async { Read::Reply(cmd.query_async::<Value>(conn).await) };
        let stuck = async {
            Timer::after(Duration::from_millis(READ_BLOCK_MS) + 2 * COMMAND_TIMEOUT).await;
            let stuck = io::Error::from(io::ErrorKind::TimedOut);
            Read::Reply(Err(::redis::RedisError::from(stuck)))
        };
        let rejoin = async { Read::Rejoin(control.recv().await.ok()) };
        let value = match read.or(stuck).or(rejoin).await {
            Read::Rejoin(None) => return,
            Read::Rejoin(Some(rejoin)) => {
                // The blocking read is abandoned with its connection: the rejoin starts now.
                link.conn = None;
                if rejoin.node == shared.node() {
                    pending = Some((rejoin.reason, true));
                }
                continue;
            }
            Read::Reply(Ok(value)) => value,
            Read::Reply(Err(error)) => {
                log::warn!("redis: reading the room failed: {error}");
                link.broken();
                continue;
            }
        };
        for (id, fields) in stream_entries(&value) {
            last_id = id;
            let Some(entry) = parse_entry(&fields) else {
                log::error!("redis: skipping a malformed entry {last_id}: {fields:?}");
                continue;
            };
            if entry.pos <= applied {
                // Positions only grow in one log: this is another log (Redis lost the room).
                pending = Some((CloseReason::RoomReset, true));
                break;
            }
            if entry.pos != applied + 1 {
                log::warn!(
                    "redis: entry {} follows {applied}: the stream was trimmed past this node",
                    entry.pos
                );
                pending = Some((CloseReason::RoomReset, false));
                break;
            }
            applied = entry.pos;
            if events
                .send(Event::Input(Input::Applied(entry)))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

fn lease_ms(lease: Duration) -> u64 {
    u64::try_from(lease.as_millis()).unwrap_or(u64::MAX)
}

/// A fresh random id for a room being created.
fn new_epoch() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

/// A scalar reply as text.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

fn number(value: &Value) -> Option<u64> {
    text(value)?.parse().ok()
}

/// A list reply, or the pairs of a map reply flattened.
fn items(value: &Value) -> Option<Vec<&Value>> {
    match value {
        Value::Array(items) => Some(items.iter().collect()),
        Value::Map(pairs) => Some(pairs.iter().flat_map(|(k, v)| [k, v]).collect()),
        _ => None,
    }
}

/// A claim `node:conn:name` under `key`.
fn parse_seat(key: String, claim: &str) -> Option<Seat> {
    let mut parts = claim.splitn(3, ':');
    let node = parts.next()?.parse().ok()?;
    let conn = parts.next()?.parse().ok()?;
    let name = parts.next()?;
    Some(Seat {
        node: NodeId(node),
        conn: ConnId(conn),
        name: Arc::from(name),
        key: Arc::from(key),
        away: None,
        ident: None,
    })
}

/// The snapshot script's answer: the snapshot and the last stream ID (the epoch it also carries
/// is the heartbeat's to check).
fn parse_snapshot(value: &Value) -> Option<(Snapshot, String)> {
    let parts = items(value)?;
    let [pos, seq, _epoch, last_id, claims, chats] = parts.as_slice() else {
        return None;
    };
    let mut history = Vec::new();
    for chat in items(chats)?.chunks(3) {
        let [seq, from, said] = chat else { return None };
        history.push(HistoryChat {
            seq: number(seq)?,
            time: 0,
            from: Arc::from(text(from)?),
            text: Arc::from(text(said)?),
            kind: chat_proto::ChatKind::Plain,
        });
    }
    let mut members = Vec::new();
    for pair in items(claims)?.chunks(2) {
        let [key, claim] = pair else { return None };
        match parse_seat(text(key)?, &text(claim)?) {
            Some(seat) => members.push(seat),
            None => log::error!("redis: skipping a malformed claim {claim:?}"),
        }
    }
    members.sort_by(|a, b| a.key.cmp(&b.key));
    let snapshot = Snapshot {
        pos: number(pos)?,
        seq: number(seq)?,
        members,
        history,
        epoch: 1,
    };
    Some((snapshot, text(last_id)?))
}

/// The entries of an `XREAD` reply of one stream: (ID, field-value pairs).
fn stream_entries(value: &Value) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    let Some(streams) = items(value) else {
        return out; // Nil: nothing new within the block time.
    };
    // RESP2: [[key, entries]]; RESP3: {key: entries}, flattened by `items` to [key, entries].
    let entries = match streams.as_slice() {
        [Value::Array(pair)] if pair.len() == 2 => &pair[1],
        [_, entries] => *entries,
        _ => {
            log::error!("redis: unexpected XREAD reply: {value:?}");
            return out;
        }
    };
    for entry in items(entries).unwrap_or_default() {
        let parts = items(entry).unwrap_or_default();
        let (Some(id), Some(fields)) = (parts.first().and_then(|v| text(v)), parts.get(1)) else {
            log::error!("redis: skipping a malformed stream entry {entry:?}");
            continue;
        };
        let pairs = items(fields)
            .unwrap_or_default()
            .chunks(2)
            .filter_map(|kv| Some((text(kv.first()?)?, text(kv.get(1)?)?)))
            .collect();
        out.push((id, pairs));
    }
    out
}

/// A stream entry's fields as a log entry; `None` if any is missing or malformed.
fn parse_entry(fields: &[(String, String)]) -> Option<Entry> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let event = match get("kind")? {
        "join" => LogEvent::Joined { ident: None },
        "chat" => LogEvent::Chat {
            seq: get("seq")?.parse().ok()?,
            text: get("text")?.to_string(),
            kind: chat_proto::ChatKind::Plain,
        },
        "leave" => LogEvent::Left {
            // A reason this version does not know (a newer node wrote it) is still a leave.
            reason: CloseReason::from_code(get("reason")?).unwrap_or(CloseReason::Disconnected),
            message: None,
        },
        _ => return None,
    };
    Some(Entry {
        pos: get("pos")?.parse().ok()?,
        time: 0,
        node: NodeId(get("node")?.parse().ok()?),
        conn: ConnId(get("conn")?.parse().ok()?),
        name: Arc::from(get("name")?),
        key: Arc::from(get("key")?),
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_entry_is_none_not_a_panic() {
        let f = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let good = f(&[
            ("pos", "3"),
            ("node", "2"),
            ("conn", "7"),
            ("name", "Bob:x"),
            ("key", "bob:x"),
            ("kind", "chat"),
            ("seq", "1"),
            ("text", "hi"),
        ]);
        let entry = parse_entry(&good).unwrap();
        assert_eq!(entry.pos, 3);
        assert_eq!(&*entry.name, "Bob:x");
        assert!(parse_entry(&good[1..]).is_none());
        assert!(parse_entry(&f(&[("pos", "x"), ("kind", "join")])).is_none());
        assert!(parse_seat("k".into(), "1:2:a:b").is_some_and(|s| &*s.name == "a:b"));
        assert!(parse_seat("k".into(), "1:x:a").is_none());
    }
}
