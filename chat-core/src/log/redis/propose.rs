//! The proposal lane: the one queue of the room's proposals, run in order in batches, and what
//! the script said about each.
//!
//! Joins and chats that cannot reach Redis are declined as unavailable at once; leaves are kept
//! and tried again first, so that no claim is left behind.

use std::collections::VecDeque;
use std::time::Instant;

use chat_proto::CloseReason;

use super::super::{Declined, NodeId, Proposal, ProposalKind};
use super::reply::{Reply, chat_kind_code, moderation_args};
use super::{
    Answer, Call, CallId, Command, LEAVES_KEPT, Lane, Level, PROPOSAL_BATCH, PROPOSAL_QUEUE,
    RECONNECT_DELAY, RedisLog, Script, Settings,
};
use crate::room::Input;

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

/// The lane's state.
#[derive(Debug)]
pub(super) struct Proposals {
    /// Every proposal not yet sent, in the order the room made them, each with the node the
    /// room was then. The first `kept` are leaves Redis did not take: nothing overtakes them.
    queue: VecDeque<(NodeId, Proposal)>,
    kept: usize,
    /// Proposals still to run in this round (those waiting when it began, from the front).
    round: usize,
    /// Whether every call of this round reached Redis: after one did not, the rest of the
    /// round is not tried.
    reachable: bool,
    /// Leaves of this round Redis did not take: back to the front when the round ends.
    failed: Vec<(NodeId, Proposal)>,
    /// The call in flight.
    batch: Option<Batch>,
    /// Proposals one call runs: far less than the stream keeps, so that readers keep up.
    batch_max: usize,
    /// When kept leaves are tried again if nothing else comes first.
    retry_at: Instant,
    /// No call before this: the last one failed.
    down_until: Instant,
    /// The PING in flight, checking the lane's connection while it idles.
    ping: Option<CallId>,
    /// When the lane last heard from Redis (or began): a PING is due a while after.
    idle_since: Instant,
}

#[derive(Debug)]
struct Batch {
    id: CallId,
    node: NodeId,
    proposals: Vec<Proposal>,
    /// When it was first sent.
    sent: Instant,
    /// The call, kept to try once more on a new connection; `None` once tried again.
    call: Option<Call>,
}

impl Proposals {
    pub(super) fn new(settings: &Settings, now: Instant) -> Self {
        Self {
            queue: VecDeque::new(),
            kept: 0,
            round: 0,
            reachable: true,
            failed: Vec::new(),
            batch: None,
            batch_max: usize::try_from(settings.trim_len / 64)
                .unwrap_or(PROPOSAL_BATCH)
                .clamp(1, PROPOSAL_BATCH),
            retry_at: now,
            down_until: now,
            ping: None,
            idle_since: now,
        }
    }

    pub(super) fn in_flight(&self) -> Option<CallId> {
        self.batch.as_ref().map(|b| b.id)
    }

    pub(super) fn pinging(&self) -> Option<CallId> {
        self.ping
    }

    /// When kept leaves are tried again, if they alone wait.
    pub(super) fn timeout(&self) -> Option<Instant> {
        let idle = self.batch.is_none() && self.round == 0;
        (idle && self.kept > 0 && self.queue.len() == self.kept).then_some(self.retry_at)
    }
}

fn is_leave(proposal: &Proposal) -> bool {
    matches!(proposal.kind, ProposalKind::Leave { .. })
}

impl RedisLog {
    /// Queues a proposal: a leave while fewer than [`LEAVES_KEPT`] wait, a join or chat while
    /// fewer than [`PROPOSAL_QUEUE`] wait besides the kept leaves (else it is declined now); a
    /// join not while this node's lease ran out unrenewed.
    pub(super) fn take_proposal(&mut self, node: NodeId, proposal: Proposal) {
        let p = &mut self.proposals;
        let total = p.queue.len();
        if is_leave(&proposal) {
            if total < LEAVES_KEPT {
                p.queue.push_back((node, proposal));
            } else {
                let name = proposal.name;
                self.note(
                    Level::Warn,
                    format!("too many leaves waiting; dropping {name}'s"),
                );
            }
        } else if total - p.kept >= PROPOSAL_QUEUE || total >= LEAVES_KEPT {
            let why = Declined::Unavailable;
            self.input(Input::Declined { proposal, why });
        } else if matches!(
            proposal.kind,
            ProposalKind::Register { .. } | ProposalKind::Unregister
        ) {
            // Accounts are not kept in Redis yet: a shared room has none.
            let why = Declined::Unavailable;
            self.input(Input::Declined { proposal, why });
        } else if self.lease.lost && matches!(proposal.kind, ProposalKind::Join { .. }) {
            // This node's lease ran out unrenewed: Redis may take the join now, but may sweep
            // the member at any moment after, unknown to this node. Nobody is taken in until a
            // heartbeat is answered.
            let why = Declined::Unavailable;
            self.input(Input::Declined { proposal, why });
        } else {
            p.queue.push_back((node, proposal));
        }
    }

    /// Sends the next batch if the lane is free, settling at once those that cannot go.
    pub(super) fn drive_proposals(&mut self) {
        while self.proposals.batch.is_none() && self.proposals.ping.is_none() {
            if self.proposals.round == 0 && !self.start_round() {
                return self.ping_if_due();
            }
            self.next_batch();
        }
    }

    /// When the idle lane next checks its connection: a while after it last heard from Redis,
    /// or now when another lane found the link broken (so that a new connection is ready
    /// before a proposal needs it). `None` while the lane is busy.
    pub(super) fn ping_due(&self) -> Option<Instant> {
        let p = &self.proposals;
        let busy = p.batch.is_some() || p.ping.is_some() || p.round > 0 || !p.queue.is_empty();
        if busy || !self.entered {
            return None;
        }
        if self.link.redial_due(Lane::Propose) {
            return Some(p.idle_since.min(self.now));
        }
        Some(p.idle_since + self.settings.ping_idle)
    }

    fn ping_if_due(&mut self) {
        if self.ping_due().is_none_or(|at| self.now < at) {
            return;
        }
        let id = self.next_id();
        let call = self.call_as(id, Lane::Propose, Command::Plain(vec!["PING".into()]));
        self.proposals.ping = Some(id);
        self.send(call);
    }

    /// The PING was answered, or failed (the link noted it, and the other lanes dial anew).
    pub(super) fn ping_answered(&mut self) {
        self.proposals.ping = None;
        self.proposals.idle_since = self.now;
    }

    /// Begins a round with what waits: kept leaves first (if they are due), then the rest.
    fn start_round(&mut self) -> bool {
        let p = &mut self.proposals;
        let fresh = p.queue.len() - p.kept;
        if fresh == 0 && (p.kept == 0 || self.now < p.retry_at) {
            return false;
        }
        p.reachable = true;
        if p.kept <= p.batch_max {
            p.round = p.queue.len().min(2 * p.batch_max);
            return true;
        }
        // More kept leaves than one batch takes: nothing may overtake them. A new leave joins
        // them; a join or chat is declined for now (a join must not run before the leave that
        // frees its name).
        p.round = p.batch_max;
        let mut declined = Vec::new();
        for (node, proposal) in p.queue.split_off(p.kept) {
            if is_leave(&proposal) {
                p.queue.push_back((node, proposal));
                p.kept += 1;
            } else {
                declined.push(proposal);
            }
        }
        for proposal in declined {
            let why = Declined::Unavailable;
            self.input(Input::Declined { proposal, why });
        }
        true
    }

    /// Takes the next batch of the round (one node's, in order) and sends it, or settles it at
    /// once when it cannot go.
    fn next_batch(&mut self) {
        let p = &mut self.proposals;
        let Some(&(node, _)) = p.queue.front() else {
            p.round = 0;
            return;
        };
        let len = p
            .queue
            .iter()
            .take(p.round.min(p.batch_max))
            .take_while(|(n, _)| *n == node)
            .count();
        let proposals: Vec<Proposal> = p.queue.drain(..len).map(|(_, p)| p).collect();
        p.kept -= len.min(p.kept);
        p.round -= len;
        let at_once = if !p.reachable {
            Some(Verdict::Unreachable)
        } else if node.0 != self.node {
            // Made before the room started over: not run as the node it became.
            Some(Verdict::Fenced(CloseReason::ServerLost))
        } else if self.now < p.down_until {
            Some(Verdict::Unreachable)
        } else {
            None
        };
        let mut batch = Batch {
            id: CallId(0),
            node,
            proposals,
            sent: self.now,
            call: None,
        };
        match at_once {
            Some(verdict) => {
                let verdicts = vec![verdict; batch.proposals.len()];
                self.settle(batch, verdicts);
            }
            None => {
                let call = self.propose_call(node, &batch.proposals);
                batch.id = call.id;
                batch.call = Some(call.clone());
                self.proposals.batch = Some(batch);
                self.send(call);
            }
        }
    }

    /// The script call that runs `batch`, as `node`, in order. Its id is its token: tried
    /// again, the script answers what it answered the first time, if it ran.
    fn propose_call(&mut self, node: NodeId, batch: &[Proposal]) -> Call {
        let mut keys = self.keys.common();
        keys.push(self.keys.members(node.0));
        keys.push(self.keys.done(node.0));
        let id = self.next_id();
        // A batch held up on the way (a partition, a stalled link) must not run once this node
        // has given up on it and told its members so: it may start no later than half the time
        // this node waits, leaving the other half for it to run and answer.
        let wait = self.link.timeout(&self.settings);
        let deadline = self.lease.redis_time_in(self.now, wait / 2);
        let mut args = Vec::with_capacity(6 + 6 * batch.len());
        args.extend([
            node.0.to_string(),
            self.epoch.clone(),
            self.settings.trim_len.to_string(),
            self.settings.max_members.to_string(),
            deadline.to_string(),
            id.0.to_string(),
        ]);
        for proposal in batch {
            let optional = |text: Option<&str>| text.map_or_else(String::new, |t| format!("+{t}"));
            let (kind, a, b) = match &proposal.kind {
                ProposalKind::Join { ident } => (
                    "join",
                    optional(ident.as_deref().map(|i| i.user.as_str())),
                    ident
                        .as_ref()
                        .map(|i| i.realname.clone())
                        .unwrap_or_default(),
                ),
                ProposalKind::Chat { text, kind } => {
                    ("chat", text.clone(), chat_kind_code(*kind).to_owned())
                }
                ProposalKind::Leave { reason, message } => (
                    "leave",
                    reason.code().to_owned(),
                    optional(message.as_deref()),
                ),
                ProposalKind::Rename { name, key } => ("rename", name.to_string(), key.to_string()),
                ProposalKind::Away { message } => {
                    ("away", optional(message.as_deref()), String::new())
                }
                ProposalKind::Moderate { action, for_ms } => {
                    let (action, fields) = moderation_args(action, *for_ms);
                    ("moderate", action.to_owned(), fields)
                }
                // Declined as they come (`take_proposal`): never queued.
                ProposalKind::Register { .. } | ProposalKind::Unregister => continue,
            };
            args.extend([
                kind.to_owned(),
                proposal.conn.0.to_string(),
                proposal.name.to_string(),
                proposal.key.to_string(),
                a,
                b,
            ]);
        }
        let script = Script::Propose;
        self.call_as(id, Lane::Propose, Command::Script { script, keys, args })
    }

    pub(super) fn proposals_answered(&mut self, answer: Answer) {
        let Some(mut batch) = self.proposals.batch.take() else {
            return;
        };
        self.proposals.idle_since = self.now;
        // A batch that failed on the way is tried once more on a new connection: one that
        // never reached Redis runs if it is still in time (else Redis refuses it as expired),
        // and one whose answer was lost (a dead connection, a reply late past the timer) is
        // answered as it was the first time: the token names it.
        let in_time = self.now < batch.sent + self.link.timeout(&self.settings) / 2;
        let again = match answer {
            Answer::Reply(Reply::Error(_)) => true,
            Answer::Unreachable => in_time,
            Answer::Reply(_) => false,
        };
        if again && let Some(call) = batch.call.take() {
            let id = self.next_id();
            let timeout = self.link.timeout(&self.settings);
            batch.id = id;
            self.proposals.batch = Some(batch);
            let fresh = true;
            return self.send(Call {
                id,
                timeout,
                fresh,
                ..call
            });
        }
        let n = batch.proposals.len();
        let verdicts = match answer {
            Answer::Reply(Reply::Error(error)) => {
                self.note(Level::Warn, format!("proposals failed: {error}"));
                self.proposals.down_until = self.now + RECONNECT_DELAY;
                vec![Verdict::Unreachable; n]
            }
            Answer::Unreachable => {
                self.proposals.down_until = self.now + RECONNECT_DELAY;
                vec![Verdict::Unreachable; n]
            }
            Answer::Reply(reply) => self.verdicts(&reply, n),
        };
        self.settle(batch, verdicts);
    }

    /// One verdict per proposal of a batch of `n`.
    fn verdicts(&mut self, reply: &Reply, n: usize) -> Vec<Verdict> {
        match reply {
            Reply::Array(answers) if answers.len() == n => {
                answers.iter().map(|a| self.verdict(a)).collect()
            }
            Reply::Array(answers) => {
                let text = format!("{} answers to {n} proposals", answers.len());
                self.note(Level::Error, text);
                vec![Verdict::Declined(Declined::Unavailable); n]
            }
            one => {
                let verdict = self.verdict(one);
                vec![verdict; n]
            }
        }
    }

    fn verdict(&mut self, answer: &Reply) -> Verdict {
        match answer.text().as_deref() {
            Some("OK") => Verdict::Appended,
            Some("NAME_TAKEN") => Verdict::Declined(Declined::NameTaken),
            Some("ROOM_FULL") => Verdict::Declined(Declined::RoomFull),
            Some("NOT_HOLDER") => Verdict::Declined(Declined::NotHolder),
            // A node of an older version is in the room: not now.
            Some("OLD_NODES") => Verdict::Declined(Declined::Unavailable),
            Some("FENCED") => Verdict::Fenced(CloseReason::ServerLost),
            Some("RESET") => Verdict::Fenced(CloseReason::RoomReset),
            Some("EXPIRED") => {
                let text = "proposals reached Redis after this node gave up on them";
                self.note(Level::Warn, text.into());
                Verdict::Unreachable
            }
            other => {
                let text = format!("unexpected answer to a proposal: {other:?}");
                self.note(Level::Error, text);
                Verdict::Declined(Declined::Unavailable)
            }
        }
    }

    /// Tells the room what became of a batch. A leave Redis did not take waits for the next
    /// round; one the log refused needs nothing (there is no claim to give back).
    fn settle(&mut self, batch: Batch, verdicts: Vec<Verdict>) {
        let mut rejoin = None;
        for (proposal, verdict) in batch.proposals.into_iter().zip(verdicts) {
            let leave = is_leave(&proposal);
            let why = match verdict {
                Verdict::Appended => continue,
                Verdict::Declined(why) => why,
                Verdict::Fenced(reason) => {
                    rejoin = Some(reason);
                    Declined::Unavailable
                }
                Verdict::Unreachable => {
                    self.proposals.reachable = false;
                    if leave {
                        self.proposals.failed.push((batch.node, proposal));
                        continue;
                    }
                    Declined::Unavailable
                }
            };
            if !leave {
                self.input(Input::Declined { proposal, why });
            }
        }
        if let Some(reason) = rejoin {
            // Found out before the heartbeat: the reader rejoins now.
            self.rejoin(reason, batch.node);
        }
        if self.proposals.round == 0 {
            self.end_round();
        }
    }

    /// The round's failed leaves go back to the front, in order, and are tried again soon.
    fn end_round(&mut self) {
        let p = &mut self.proposals;
        for leave in p.failed.drain(..).rev() {
            p.queue.push_front(leave);
            p.kept += 1;
        }
        if p.kept > 0 {
            p.retry_at = self.now + RECONNECT_DELAY;
        }
    }
}
