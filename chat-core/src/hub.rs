//! The room and its fan-out together, speaking the chat wire protocol: what a driver that
//! moves bytes embeds.
//!
//! A [`Hub`] feeds inputs to its [`Room`], encodes each output once with `chat_proto` and hands
//! the frames to its [`Fanout`]; connections the fan-out finds too slow go back into the room as
//! [`Input::Stalled`] before the call returns. The driver is left with sockets: it reads bytes
//! into a decoder and hands over messages, writes what [`Fanout::due`] gives, wakes the writers
//! [`Hub::poll_wake`] names, and carries [`HubEvent::Propose`] to the log when the log is shared.

use std::collections::VecDeque;
use std::time::Instant;

use chat_proto::{CloseReason, ServerMsg};

use crate::fanout::{Fanout, Frame};
use crate::log::Proposal;
use crate::room::{ConnId, Input, Notice, Output, Room, UsageError};

/// What a [`Hub`] tells its driver, besides bytes to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubEvent {
    /// Carry this proposal to the shared log (rooms made with [`Room::shared`] only).
    Propose(Proposal),
    /// A member joined or left: for logs and counters.
    Notice(Notice),
    /// A connection was closed, and what it was told: for logs and counters. Its writer finishes
    /// what it owes and then sees [`crate::Due::Done`].
    Closed {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
}

/// A room, its fan-out, and the encoding between them.
#[derive(Debug)]
pub struct Hub {
    room: Room,
    fanout: Fanout,
    scratch: Vec<u8>,
    events: VecDeque<HubEvent>,
}

impl Hub {
    /// A hub around `room` whose connections may fall `queue_bytes` behind before they are
    /// closed as too slow.
    pub fn new(room: Room, queue_bytes: usize) -> Self {
        Self {
            room,
            fanout: Fanout::new(queue_bytes),
            scratch: Vec::new(),
            events: VecDeque::new(),
        }
    }

    /// The room.
    pub fn room(&self) -> &Room {
        &self.room
    }

    /// The fan-out: writers take what is due from it.
    pub fn fanout(&mut self) -> &mut Fanout {
        &mut self.fanout
    }

    /// The largest frame payload a connection's decoder may accept.
    pub fn max_frame_bytes(&self) -> u32 {
        self.room.config().max_frame_bytes
    }

    /// Feeds one input into the room at time `now` and carries out everything that follows.
    pub fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), UsageError> {
        if let Input::Opened(conn) = input {
            self.fanout.open(conn);
        }
        let result = self.room.handle_input(now, input);
        loop {
            while let Some(output) = self.room.poll_output() {
                self.carry_out(output);
            }
            let Some(conn) = self.fanout.poll_stalled() else {
                break;
            };
            self.room.handle_input(now, Input::Stalled(conn))?;
        }
        result
    }

    /// The next event for the driver. Drain until `None` after every input.
    pub fn poll_event(&mut self) -> Option<HubEvent> {
        self.events.pop_front()
    }

    /// The next writer to wake. Drain until `None` after every input.
    pub fn poll_wake(&mut self) -> Option<ConnId> {
        self.fanout.poll_wake()
    }

    /// The next deadline: call `handle_input(deadline, Input::Tick)` at or after it.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.room.poll_timeout()
    }

    fn carry_out(&mut self, output: Output) {
        match output {
            Output::Send { to, msg } => {
                if let Some(frame) = self.encode(&msg) {
                    self.fanout.send(to, frame);
                }
            }
            Output::Broadcast { except, msg } => {
                // Once, whatever the number of members: each writer follows the feed.
                if let Some(frame) = self.encode(&msg) {
                    self.fanout.publish(frame, except);
                }
            }
            Output::Subscribe { conn } => self.fanout.follow(conn),
            Output::Close { conn, reason } => {
                let gone = reason == CloseReason::Disconnected;
                let last = if gone {
                    None
                } else {
                    self.encode(&ServerMsg::Closing(reason))
                };
                // A peer too slow to drain its backlog, or gone, gets no more of it.
                let skip_backlog = gone || reason == CloseReason::TooSlow;
                self.fanout.close(conn, last, skip_backlog);
                self.events.push_back(HubEvent::Closed { conn, reason });
            }
            Output::Propose(proposal) => self.events.push_back(HubEvent::Propose(proposal)),
            Output::Notice(notice) => self.events.push_back(HubEvent::Notice(notice)),
        }
    }

    /// Encodes a message into a shared frame. The scratch buffer keeps its capacity between
    /// calls, so a large frame (a welcome listing every member) is built without regrowing,
    /// then copied once.
    fn encode(&mut self, msg: &ServerMsg) -> Option<Frame> {
        self.scratch.clear();
        // Every message the room makes fits a frame (the config was checked for it).
        chat_proto::encode(msg, &mut self.scratch).ok()?;
        let frame = Frame::from(&self.scratch[..]);
        if self.scratch.capacity() > 1 << 20 {
            self.scratch = Vec::new(); // do not keep a buffer sized by a rare huge frame
        }
        Some(frame)
    }
}
