//! The read lane: follows the stream from the last ID applied and hands each entry to the
//! room, in order; starts over from a fresh snapshot (registering anew if need be) when it finds
//! a gap (trimmed past), a log that went backwards (Redis restarted empty), or when the
//! heartbeat or the proposer finds this node out of the room. Entering the room is the first
//! start.

use std::time::{Duration, Instant};

use chat_proto::CloseReason;

use super::super::NodeId;
use super::reply::{Reply, parse_entry, parse_snapshot, stream_entries};
use super::{
    Answer, CallId, Command, Lane, Level, Note, Output, READ_BLOCK, READ_COUNT, RECONNECT_DELAY,
    RedisLog, Script, millis,
};
use crate::room::Input;

/// The lane's state.
#[derive(Debug)]
pub(super) struct Reader {
    step: Step,
    /// Why this node must start over and whether it registers anew; `reason` is `None` for
    /// entering the room.
    start: Option<Start>,
    /// A rejoin the heartbeat or the proposer asked for, as the node they saw: acted on when
    /// the reader next gets to it, if this node is still that node.
    rejoin: Option<(CloseReason, NodeId)>,
    /// The position of the last entry applied, and its stream ID.
    applied: u64,
    last_id: String,
    /// No call before this: the last one failed.
    down_until: Instant,
    /// How long after Redis appended it the last entry was applied, about (by the estimate of
    /// Redis's clock, which is never ahead of it).
    lag: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Start {
    reason: Option<CloseReason>,
    register: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The next call is due at this time.
    Idle(Instant),
    /// Entering failed; the driver gives up.
    Halted,
    Reading(CallId),
    Registering {
        id: CallId,
        sent: Instant,
    },
    Snapshotting(CallId),
}

impl Reader {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            step: Step::Idle(now),
            start: Some(Start {
                reason: None,
                register: true,
            }),
            rejoin: None,
            applied: 0,
            last_id: String::new(),
            down_until: now,
            lag: None,
        }
    }

    pub(super) fn in_flight(&self) -> Option<CallId> {
        match self.step {
            Step::Idle(_) | Step::Halted => None,
            Step::Reading(id) | Step::Snapshotting(id) | Step::Registering { id, .. } => Some(id),
        }
    }

    pub(super) fn lag(&self) -> Option<Duration> {
        self.lag
    }

    pub(super) fn timeout(&self) -> Option<Instant> {
        match self.step {
            Step::Idle(at) => Some(at),
            _ => None,
        }
    }
}

impl RedisLog {
    /// Sends the lane's next call once it is due: a registration, a snapshot, or a read.
    pub(super) fn drive_reader(&mut self) {
        let Step::Idle(at) = self.reader.step else {
            return;
        };
        if self.now < at {
            return;
        }
        if let Some((reason, node)) = self.reader.rejoin.take()
            && node == self.node()
        {
            let reason = Some(reason);
            self.reader.start = Some(Start {
                reason,
                register: true,
            });
        }
        if self.now < self.reader.down_until {
            self.reader.step = Step::Idle(self.reader.down_until);
            return;
        }
        match self.reader.start {
            Some(Start { register: true, .. }) => self.send_register(),
            Some(_) => self.send_snapshot(),
            None => self.send_read(),
        }
    }

    /// This node is out of the room as `node` was (the heartbeat or a proposal found it
    /// fenced, or the room reset): it rejoins, unless it already did since.
    pub(super) fn rejoin(&mut self, reason: CloseReason, node: NodeId) {
        if let Step::Reading(_) = self.reader.step {
            // The blocking read is given up with its connection (the next call on the lane
            // replaces it): the rejoin starts now.
            self.reader.step = Step::Idle(self.now);
            if node == self.node() {
                let reason = Some(reason);
                self.reader.start = Some(Start {
                    reason,
                    register: true,
                });
            }
            return;
        }
        let stale = self.reader.rejoin.is_some_and(|(_, n)| n != self.node());
        if self.reader.rejoin.is_none() || stale {
            self.reader.rejoin = Some((reason, node));
        }
    }

    fn send_register(&mut self) {
        let args = vec![
            self.new_epoch(),
            millis(self.settings.lease).to_string(),
            self.settings.max_members.to_string(),
        ];
        let call = self.call(Lane::Read, Script::Register, self.keys.common(), args);
        self.reader.step = Step::Registering {
            id: call.id,
            sent: self.now,
        };
        self.send(call);
    }

    fn send_snapshot(&mut self) {
        let args = vec![self.settings.history.to_string()];
        let call = self.call(Lane::Read, Script::Snapshot, self.keys.common(), args);
        self.reader.step = Step::Snapshotting(call.id);
        self.send(call);
    }

    fn send_read(&mut self) {
        let id = self.next_id();
        let args = [
            "XREAD",
            "COUNT",
            &READ_COUNT.to_string(),
            "BLOCK",
            &millis(READ_BLOCK).to_string(),
            "STREAMS",
            &self.keys.log,
            &self.reader.last_id,
        ];
        let mut call = self.call_as(
            id,
            Lane::Read,
            Command::Plain(args.map(String::from).to_vec()),
        );
        // No answer by then: the link is dead, not the stream quiet.
        call.timeout = READ_BLOCK + 2 * call.timeout;
        self.reader.step = Step::Reading(id);
        self.send(call);
    }

    pub(super) fn reader_answered(&mut self, answer: Answer) {
        let reply = match answer {
            Answer::Reply(Reply::Error(error)) => return self.read_failed(Some(error)),
            Answer::Unreachable => return self.read_failed(None),
            Answer::Reply(reply) => reply,
        };
        match self.reader.step {
            Step::Registering { sent, .. } => self.registered(&reply, sent),
            Step::Snapshotting(_) => self.snapshot_taken(&reply),
            Step::Reading(_) => self.entries_read(&reply),
            Step::Idle(_) | Step::Halted => {}
        }
    }

    /// The lane's call failed (`error` is `None` when no connection could be made): tried
    /// again after [`RECONNECT_DELAY`], but not when entering.
    fn read_failed(&mut self, error: Option<String>) {
        let starting = !matches!(self.reader.step, Step::Reading(_));
        if !self.entered {
            self.reader.step = Step::Halted;
            let why = error.unwrap_or_else(|| "Redis is unreachable".into());
            self.note(Level::Error, format!("cannot enter the room: {why}"));
            return;
        }
        // A failed read is the link's news ("Redis link lost"); starting over is the node's.
        if let Some(error) = error.filter(|_| starting) {
            self.note(Level::Warn, format!("cannot start over yet: {error}"));
        }
        self.reader.down_until = self.now + RECONNECT_DELAY;
        self.reader.step = Step::Idle(self.reader.down_until);
    }

    fn registered(&mut self, reply: &Reply, sent: Instant) {
        let parts = match reply.items() {
            Some([node, epoch, ms, max]) => {
                (node.number(), epoch.text(), ms.number(), max.number())
            }
            _ => (None, None, None, None),
        };
        let (Some(node), Some(epoch), Some(ms), Some(room_max)) = parts else {
            return self.read_failed(Some(format!("unexpected registration answer {reply:?}")));
        };
        let mine = self.settings.max_members;
        if room_max != u64::from(mine) {
            let room = &self.settings.room;
            let text = format!(
                "room '{room}' holds at most {room_max} members, as set by the server that \
                 created it: this server's cap of {mine} does not change that"
            );
            self.note(Level::Warn, text);
        }
        self.epoch = epoch.into_owned();
        self.node = node;
        self.lease.renewed(sent);
        self.lease.read_clock(self.now, ms);
        self.send_snapshot();
    }

    fn snapshot_taken(&mut self, reply: &Reply) {
        let mut notes = Vec::new();
        let parsed = parse_snapshot(reply, &mut notes);
        self.notes(notes);
        let Some((snapshot, last_id)) = parsed else {
            return self.read_failed(Some(format!("malformed snapshot from Redis: {reply:?}")));
        };
        let start = self.reader.start.take();
        self.reader.applied = snapshot.pos;
        self.reader.last_id = last_id;
        self.reader.step = Step::Idle(self.now);
        let node = self.node();
        if !self.entered {
            self.entered = true;
            self.lease.start(self.now, &self.settings);
            self.outputs.push_back(Output::Entered { node, snapshot });
            return;
        }
        let reason = start
            .and_then(|s| s.reason)
            .unwrap_or(CloseReason::RoomReset);
        let text = format!(
            "starting over as node {} at position {} ({reason})",
            node.0, snapshot.pos
        );
        self.note(Level::Warn, text);
        self.input(Input::Resync {
            node,
            snapshot,
            reason,
        });
    }

    /// Hands the entries read to the room in order; a position that does not follow the last
    /// one applied means the room must start over.
    fn entries_read(&mut self, reply: &Reply) {
        let mut notes = Vec::new();
        let entries = stream_entries(reply, &mut notes);
        self.notes(notes);
        self.reader.step = Step::Idle(self.now);
        for (id, fields) in entries {
            let parsed = parse_entry(&id, fields);
            self.reader.last_id = id;
            let Some(entry) = parsed else {
                let id = &self.reader.last_id;
                let text = format!("skipping a malformed entry {id}: {fields:?}");
                self.note(Level::Error, text);
                continue;
            };
            let applied = self.reader.applied;
            if entry.pos <= applied {
                // Positions only grow in one log: this is another log (Redis lost the room).
                let reason = Some(CloseReason::RoomReset);
                self.reader.start = Some(Start {
                    reason,
                    register: true,
                });
                return;
            }
            if entry.pos != applied + 1 {
                let text = format!(
                    "entry {} follows {applied}: the stream was trimmed past this node",
                    entry.pos
                );
                self.note(Level::Warn, text);
                let reason = Some(CloseReason::RoomReset);
                self.reader.start = Some(Start {
                    reason,
                    register: false,
                });
                return;
            }
            self.reader.applied = entry.pos;
            let redis_now = self.lease.redis_time_in(self.now, Duration::ZERO);
            let lag = redis_now.saturating_sub(entry.time);
            self.reader.lag = Some(Duration::from_millis(lag));
            self.input(Input::Applied(entry));
        }
    }

    fn notes(&mut self, notes: Vec<Note>) {
        self.outputs.extend(notes.into_iter().map(Output::Note));
    }
}
