//! The lease lane: this node's lease, extended every third of it, the sweep of nodes whose
//! lease ran out, the watch that lets this node's members go when its own lease runs out
//! unrenewed, and the estimate of Redis's clock the deadlines are written in.

use std::time::{Duration, Instant};

use chat_proto::CloseReason;

use super::super::NodeId;
use super::reply::Reply;
use super::{Answer, CallId, Lane, Level, RECONNECT_DELAY, RedisLog, Script, Settings, millis};
use crate::room::Input;

/// The lane's state.
#[derive(Debug)]
pub(super) struct Lease {
    step: Step,
    /// No call before this: the last one failed.
    down_until: Instant,
    /// When the last renewal of this node's lease that Redis answered was sent (a registration
    /// counts): the lease runs out, by Redis's clock, no earlier than a lease after it.
    renewed_at: Instant,
    /// This node's members were let go because its lease ran out unrenewed.
    pub(super) lost: bool,
    /// Redis's clock (ms) as a reply told it, and when that reply was handled here: an
    /// estimate of Redis's time that is never ahead of it.
    clock: Option<(Instant, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The next heartbeat is due at this time.
    Idle(Instant),
    /// A heartbeat sent at `sent` as `node`.
    Beating {
        id: CallId,
        sent: Instant,
        node: u64,
    },
    /// The sweep that follows a heartbeat; then the next heartbeat is due at `next`.
    Sweeping { id: CallId, next: Instant },
}

impl Lease {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            step: Step::Idle(now),
            down_until: now,
            renewed_at: now,
            lost: false,
            clock: None,
        }
    }

    pub(super) fn in_flight(&self) -> Option<CallId> {
        match self.step {
            Step::Idle(_) => None,
            Step::Beating { id, .. } | Step::Sweeping { id, .. } => Some(id),
        }
    }

    /// The next heartbeat, or the lease running out, whichever is first.
    pub(super) fn timeout(&self, settings: &Settings) -> Option<Instant> {
        let beat = match self.step {
            Step::Idle(at) => Some(at),
            _ => None,
        };
        let runs_out = (!self.lost).then(|| self.renewed_at + settings.lease);
        match (beat, runs_out) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Redis's time (ms) `after` from `now`, by the last clock reading; 0 (no deadline) before
    /// the first. Readings are taken when replies are handled, so this is never later than
    /// Redis's own time then.
    pub(super) fn redis_time_in(&self, now: Instant, after: Duration) -> u64 {
        self.clock.map_or(0, |(at, ms)| {
            let since = now.saturating_duration_since(at) + after;
            ms + u64::try_from(since.as_millis()).unwrap_or(u64::MAX / 2)
        })
    }

    /// A reply said Redis's clock read `ms`: it reads at least that now. The best of the
    /// readings is kept (each is a lower bound; one handled late, on a busy thread, is a worse
    /// one).
    pub(super) fn read_clock(&mut self, now: Instant, ms: u64) {
        let known = self.clock.map(|(at, old)| {
            old + u64::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(0)
        });
        if known.is_none_or(|known| ms >= known) {
            self.clock = Some((now, ms));
        }
    }

    /// Time since the last renewal Redis answered was sent.
    pub(super) fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.renewed_at)
    }

    /// Redis extended this node's lease by a call sent at `sent`.
    pub(super) fn renewed(&mut self, sent: Instant) {
        self.renewed_at = self.renewed_at.max(sent);
        self.lost = false;
    }

    /// The node entered the room at `now`: the first heartbeat is a third of a lease away.
    pub(super) fn start(&mut self, now: Instant, settings: &Settings) {
        self.step = Step::Idle(now + settings.lease / 3);
    }
}

impl RedisLog {
    /// Sends the heartbeat once it is due.
    pub(super) fn drive_lease(&mut self) {
        let Step::Idle(at) = self.lease.step else {
            return;
        };
        if self.now < at {
            return;
        }
        if self.now < self.lease.down_until {
            self.lease.step = Step::Idle(self.lease.down_until);
            return;
        }
        let args = vec![
            self.node.to_string(),
            self.epoch.clone(),
            millis(self.settings.lease).to_string(),
        ];
        let mut call = self.call(Lane::Lease, Script::Heartbeat, self.keys.common(), args);
        // Answers later than a quarter of the lease are failures, tried again soon after: a
        // slow link must not cost this node its lease.
        call.timeout = call.timeout.min(self.settings.lease / 4);
        let (id, sent, node) = (call.id, self.now, self.node);
        self.lease.step = Step::Beating { id, sent, node };
        self.send(call);
    }

    pub(super) fn lease_answered(&mut self, answer: Answer) {
        let now = self.now;
        match self.lease.step {
            Step::Beating { sent, node, .. } => self.beaten(answer, sent, node),
            Step::Sweeping { next, .. } => {
                match answer {
                    Answer::Reply(Reply::Error(error)) => {
                        self.note(Level::Warn, format!("sweep failed: {error}"));
                        self.lease.down_until = now + RECONNECT_DELAY;
                    }
                    Answer::Unreachable => self.lease.down_until = now + RECONNECT_DELAY,
                    Answer::Reply(reply) => match reply.number() {
                        Some(0) => {}
                        Some(n) => {
                            self.note(Level::Info, format!("swept {n} members of lost servers"));
                        }
                        None => {
                            self.note(Level::Error, format!("unexpected sweep answer: {reply:?}"))
                        }
                    },
                }
                self.lease.step = Step::Idle(next.max(self.lease.down_until));
            }
            Step::Idle(_) => {}
        }
    }

    /// The heartbeat sent at `sent` as `node` was answered: the lease renewed, or this node
    /// out of the room (it rejoins); then the sweep.
    fn beaten(&mut self, answer: Answer, sent: Instant, node: u64) {
        let now = self.now;
        // The period counts from each renewal's sending, so that a slow answer or sweep does
        // not push the next renewal towards the lease's end.
        let mut next = sent + RECONNECT_DELAY;
        let reply = match answer {
            Answer::Reply(Reply::Error(error)) => {
                self.note(Level::Warn, format!("heartbeat failed: {error}"));
                return self.heartbeat_failed();
            }
            Answer::Unreachable => return self.heartbeat_failed(),
            Answer::Reply(reply) => reply,
        };
        let (state, ms) = match reply.items() {
            Some([state, ms]) => (state.text(), ms.number()),
            _ => (None, None),
        };
        let (Some(state), Some(ms)) = (state, ms) else {
            self.note(
                Level::Warn,
                format!("heartbeat failed: unexpected answer {reply:?}"),
            );
            return self.heartbeat_failed();
        };
        self.lease.read_clock(now, ms);
        let reason = match &*state {
            "OK" => {
                self.lease.renewed(sent);
                next = sent + self.settings.lease / 3;
                None
            }
            "FENCED" => Some(CloseReason::ServerLost),
            "RESET" => Some(CloseReason::RoomReset),
            other => {
                self.note(
                    Level::Error,
                    format!("unexpected heartbeat answer: {other}"),
                );
                None
            }
        };
        if let Some(reason) = reason {
            let text = format!("node {node} is out of the room ({reason}); rejoining");
            self.note(Level::Warn, text);
            self.rejoin(reason, NodeId(node));
        }
        let args = vec![self.settings.trim_len.to_string()];
        let call = self.call(Lane::Lease, Script::Sweep, self.keys.common(), args);
        self.lease.step = Step::Sweeping { id: call.id, next };
        self.send(call);
    }

    fn heartbeat_failed(&mut self) {
        self.lease.down_until = self.now + RECONNECT_DELAY;
        self.lease.step = Step::Idle(self.lease.down_until);
    }

    /// Lets this node's members go once its lease has run out unrenewed: Redis may be out of
    /// reach for good, and the other nodes sweep a node whose lease ran out, announcing its
    /// members lost. They are told now, so that they can go elsewhere, rather than sit in a
    /// room that has let them go. When Redis answers again, the heartbeat finds this node
    /// fenced and it rejoins (or, if nobody swept it yet, their leaves enter the log).
    pub(super) fn watch_lease(&mut self) {
        let lease = self.settings.lease;
        if !self.entered || self.lease.lost || self.now < self.lease.renewed_at + lease {
            return;
        }
        self.lease.lost = true;
        let reason = CloseReason::ServerLost;
        let text =
            format!("no lease renewal for {lease:?}: letting this node's members go ({reason})");
        self.note(Level::Warn, text);
        self.input(Input::Lost { reason });
    }
}
