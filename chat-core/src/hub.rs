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

use chat_proto::{
    ClientDecoder, ClientMsg, CloseReason, FrameDecoder, PROTOCOL_VERSION, Refusal, ServerMsg, v2,
};

use crate::conns::ConnMap;
use crate::fanout::{Fanout, Frame};
use crate::log::{Entry, Proposal};
use crate::room::{
    ConnId, HistoryQuery, Input, Notice, Output, PasswordWork, Room, Ticket, UsageError,
};

/// What a [`Hub`] tells its driver, besides bytes to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubEvent {
    /// Carry this proposal to the shared log (rooms made with [`Room::shared`] only).
    Propose(Proposal),
    /// A member joined or left: for logs and counters.
    Notice(Notice),
    /// The room applied this log entry ([`Room::report_applied`]): for a store.
    Applied(Entry),
    /// A hello was refused, and why: for logs and counters. The connection may stay open (a
    /// client may try another name).
    Refused {
        /// The connection.
        conn: ConnId,
        /// Why.
        refusal: Refusal,
    },
    /// A connection was closed, and what it was told: for logs and counters. Its writer finishes
    /// what it owes and then sees [`crate::Due::Done`].
    Closed {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// Check or hash a password off the room's thread ([`Output::Password`]); answer with
    /// [`Input::Password`].
    Password {
        /// Names the work in the verdict.
        ticket: Ticket,
        /// What to do.
        work: PasswordWork,
    },
}

/// What a codec's inbound half makes of a connection's bytes, in the order they came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A message for the room.
    Msg(ClientMsg),
    /// An answer the adapter gives itself (a PONG, a page, a numeric the room has no part in),
    /// queued for the connection in order with everything the room sends it, and paid for from
    /// its rate limit ([`Hub::send_raw`]).
    Reply(Vec<u8>),
    /// The connection's own chats come back to it ([`Room::set_echo`]: IRC's echo-message).
    Echo(bool),
    /// A member asks for kept chats ([`Room::history`]): they come back as a
    /// [`ServerMsg::History`], paid for from its rate limit like a message. Ignored for a
    /// connection that is not a member.
    History(HistoryQuery),
    /// The member leaves the room and stays connected, with these parting words
    /// ([`Input::Part`]: IRC's PART).
    Part(Option<String>),
    /// The connection is a client at this address, as a trusted proxy says
    /// ([`Input::Readdressed`]: a web request's `X-Forwarded-For`).
    Readdress(core::net::IpAddr),
    /// Bytes that break the protocol: the connection is closed for a protocol error.
    Malformed,
    /// The connection is done on the protocol's own terms (a goodbye, an HTTP answer that
    /// closes): it is closed once what it is owed is written, and nothing more it sends is read.
    End,
}

/// How a hub turns the room's messages into bytes for one kind of connection, and a
/// connection's bytes into the room's inputs: the chat wire protocol ([`Wire`]), or another
/// protocol's adapter (IRC lines, WebSocket frames). A broadcast is encoded once per codec in
/// use, whatever the number of members.
pub trait Codec: std::fmt::Debug + Send {
    /// Takes bytes read from `conn` and appends what they mean, in order. A codec may keep
    /// bytes it cannot act on yet (a line after a hello whose outcome is not known); it must
    /// bound what it keeps, and answers [`Inbound::Malformed`] past its bound.
    fn decode(&mut self, conn: ConnId, bytes: &[u8], out: &mut Vec<Inbound>);
    /// A connection whose kept bytes can now be acted on (its hello was answered): the hub
    /// calls [`Codec::decode`] for it with no new bytes. Drained after every step.
    fn poll_ready(&mut self) -> Option<ConnId> {
        None
    }
    /// Appends the bytes of `msg`, sent to `to` alone. Returns false if it has nothing to send
    /// (the message means nothing in this protocol).
    fn encode_to(&mut self, to: ConnId, msg: &ServerMsg, out: &mut Vec<u8>) -> bool;
    /// Appends the bytes of a broadcast, the same for every recipient. Returns false if it has
    /// nothing to send.
    fn encode_broadcast(&mut self, msg: &ServerMsg, out: &mut Vec<u8>) -> bool;
    /// `conn` was opened from `peer` ([`Input::OpenedFrom`]), before any of its bytes: for a
    /// codec that takes a trusted proxy's word on who the client is.
    fn opened(&mut self, conn: ConnId, peer: core::net::IpAddr) {
        let _ = (conn, peer);
    }
    /// `conn` is gone: forget anything kept about it.
    fn forget(&mut self, conn: ConnId) {
        let _ = conn;
    }
    /// Every broadcast, before any lane encodes it, whether or not this codec's lane has
    /// connections: for a codec that keeps state about its members (a rename changes the nick
    /// its lines name one by) while they are served by its views.
    fn observe(&mut self, msg: &ServerMsg) {
        let _ = msg;
    }
    /// Bytes the codec has for one connection alone, prompted by a broadcast it observed
    /// (IRC's MONITOR tells a watcher when a watched nick comes or goes): queued for it after
    /// the broadcast. Drained after every broadcast.
    fn poll_send(&mut self) -> Option<(ConnId, Vec<u8>)> {
        None
    }
    /// A connection to move to another lane of this codec before it follows the broadcasts:
    /// 0 is the codec's own lane, `k` its `k`-th view ([`Hub::add_view`]). Drained after
    /// every decode, before what was decoded goes to the room.
    fn poll_move(&mut self) -> Option<(ConnId, usize)> {
        None
    }
}

/// The chat wire protocol: each message one length-prefixed postcard frame, written in
/// version 3 ([`Wire::new`]) or version 2 ([`Wire::v2`], through [`v2::downgrade`]).
///
/// Its inbound half keeps a [`FrameDecoder`] and a [`ClientDecoder`] for each connection fed
/// through [`Hub::handle_bytes`], so that it reads either version, by the connection's hello; a
/// driver may instead decode frames on its own and hand the room [`Input::Received`] (the smol
/// server's readers do, off the room's task).
#[derive(Debug, Default)]
pub struct Wire {
    max_frame: u32,
    /// Writes version 2.
    v2: bool,
    decoders: ConnMap<(FrameDecoder, ClientDecoder)>,
}

impl Wire {
    /// The wire protocol in version 3, refusing frames over `max_frame` bytes.
    pub fn new(max_frame: u32) -> Self {
        Self {
            max_frame,
            v2: false,
            decoders: ConnMap::default(),
        }
    }

    /// The wire protocol in version 2, for clients that speak it: what version 3 adds is left
    /// out ([`v2::downgrade`]). It reads as [`Wire::new`] does.
    pub fn v2(max_frame: u32) -> Self {
        Self {
            v2: true,
            ..Self::new(max_frame)
        }
    }
}

impl Codec for Wire {
    fn decode(&mut self, conn: ConnId, mut bytes: &[u8], out: &mut Vec<Inbound>) {
        let max_frame = self.max_frame;
        let (decoder, client) = self
            .decoders
            .entry(conn)
            .or_insert_with(|| (FrameDecoder::new(max_frame), ClientDecoder::new()));
        loop {
            match decoder.decode_with(&mut bytes, |p| client.decode(p)) {
                Ok(Some(msg)) => out.push(Inbound::Msg(msg)),
                Ok(None) => return,
                Err(_) => {
                    out.push(Inbound::Malformed);
                    self.decoders.remove(&conn);
                    return;
                }
            }
        }
    }

    fn forget(&mut self, conn: ConnId) {
        self.decoders.remove(&conn);
    }

    fn encode_to(&mut self, _to: ConnId, msg: &ServerMsg, out: &mut Vec<u8>) -> bool {
        self.encode_broadcast(msg, out)
    }

    fn encode_broadcast(&mut self, msg: &ServerMsg, out: &mut Vec<u8>) -> bool {
        // Every message the room makes fits a frame (the config was checked for it).
        if !self.v2 {
            return chat_proto::encode(msg, out).is_ok();
        }
        let start = out.len();
        let mut encoded = true;
        v2::downgrade(msg, |old| encoded &= chat_proto::encode(&old, out).is_ok());
        if !encoded {
            out.truncate(start);
        }
        out.len() > start
    }
}

/// One of a hub's codecs. [`CodecId::WIRE`] and [`CodecId::WIRE_V2`] are always there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CodecId(usize);

impl CodecId {
    /// The chat wire protocol, codec 0 of every hub.
    pub const WIRE: CodecId = CodecId(0);
    /// The chat wire protocol in version 2, codec 1 of every hub: a connection of either wire
    /// codec whose hello says version 2 moves here before the room answers it (and back to
    /// [`CodecId::WIRE`] for a version 3 hello), while it does not follow the broadcasts yet.
    pub const WIRE_V2: CodecId = CodecId(1);
}

/// A codec and the fan-out of the connections that use it.
#[derive(Debug)]
struct Lane {
    codec: Box<dyn Codec>,
    fanout: Fanout,
    /// The lane whose codec reads its connections' bytes and encodes what is sent to one of
    /// them: its own, or the codec it is a view of.
    reader: usize,
    /// Its views, in the order they were added.
    views: Vec<usize>,
    /// A view: its reader also encodes what is sent to one of its connections.
    view: bool,
}

/// A room, its fan-outs (one per codec in use), and the encoding between them.
#[derive(Debug)]
pub struct Hub {
    room: Room,
    lanes: Vec<Lane>,
    /// The codec of every connection attached.
    conns: ConnMap<usize>,
    scratch: Vec<u8>,
    /// What a codec's inbound half made of the bytes being handled.
    inbound: Vec<Inbound>,
    events: VecDeque<HubEvent>,
    /// Chat messages the room has broadcast.
    chats: u64,
}

impl Hub {
    /// A hub around `room` whose connections may fall `queue_bytes` behind before they are
    /// closed as too slow.
    pub fn new(room: Room, queue_bytes: usize) -> Self {
        let max_frame = room.config().max_frame_bytes;
        let wire = Lane {
            codec: Box::new(Wire::new(max_frame)),
            fanout: Fanout::new(queue_bytes),
            reader: CodecId::WIRE.0,
            views: Vec::new(),
            view: false,
        };
        // v3's codec reads both versions, so that a frame cut in two by the move is read whole.
        let wire_v2 = Lane {
            codec: Box::new(Wire::v2(max_frame)),
            fanout: Fanout::new(queue_bytes),
            reader: CodecId::WIRE.0,
            views: Vec::new(),
            view: false,
        };
        Self {
            room,
            lanes: vec![wire, wire_v2],
            conns: ConnMap::default(),
            scratch: Vec::new(),
            inbound: Vec::new(),
            events: VecDeque::new(),
            chats: 0,
        }
    }

    /// Adds a codec (another protocol's adapter) with a fan-out of its own.
    pub fn add_codec(&mut self, codec: Box<dyn Codec>) -> CodecId {
        let id = self.lanes.len();
        self.lanes.push(Lane {
            codec,
            fanout: Fanout::new(self.lanes[0].fanout.max_bytes()),
            reader: id,
            views: Vec::new(),
            view: false,
        });
        CodecId(id)
    }

    /// Adds a view of `of` (a codec added with [`Hub::add_codec`]): another lane, whose codec
    /// only encodes broadcasts, for connections of `of` that need other bytes for the same
    /// broadcast (IRC clients with tags). `of` reads their bytes and encodes what is sent to
    /// one of them, and moves them there with [`Codec::poll_move`]; each broadcast is still
    /// encoded once per lane in use.
    pub fn add_view(&mut self, of: CodecId, codec: Box<dyn Codec>) -> CodecId {
        let id = self.add_codec(codec);
        if of.0 < id.0 && self.lanes[of.0].reader == of.0 && of.0 > CodecId::WIRE_V2.0 {
            self.lanes[id.0].reader = of.0;
            self.lanes[id.0].view = true;
            self.lanes[of.0].views.push(id.0);
        }
        id
    }

    /// The room.
    pub fn room(&self) -> &Room {
        &self.room
    }

    /// Every entry the room applies comes out as [`HubEvent::Applied`] ([`Room::report_applied`]).
    pub fn report_applied(&mut self, on: bool) {
        self.room.report_applied(on);
    }

    /// Anchors the room's wall clock ([`Room::set_clock`]).
    pub fn set_clock(&mut self, now: Instant, unix_ms: u64) {
        self.room.set_clock(now, unix_ms);
    }

    /// The most bytes one connection that kept up has had waiting, over every codec's fan-out.
    pub fn peak_queued(&self) -> usize {
        self.lanes
            .iter()
            .map(|l| l.fanout.peak_queued())
            .max()
            .unwrap_or(0)
    }

    /// Chat messages the room has broadcast so far (every member's, of every node of a shared
    /// room): for counters.
    pub fn chats(&self) -> u64 {
        self.chats
    }

    /// Members whose connection uses `codec`: for counters. It walks every connection, so ask
    /// when a person looks (a scrape), not per message.
    pub fn members_of(&self, codec: CodecId) -> usize {
        self.conns
            .iter()
            .filter(|&(&conn, &lane)| lane == codec.0 && self.room.name_of(conn).is_some())
            .count()
    }

    /// The fan-out `conn`'s writer takes from: the one of its codec, which a wire connection's
    /// hello may change (v2's or v3's), so ask at every write. A connection that is not attached
    /// gets the wire protocol's, where it is unknown (its writer sees [`crate::Due::Done`]).
    pub fn fanout_of(&mut self, conn: ConnId) -> &mut Fanout {
        &mut self.lane_of(conn).fanout
    }

    /// Gives `conn` a place in the fan-out of `codec` before its writer starts; the room learns
    /// of it with [`Input::Opened`]. A connection opened without being attached uses the wire
    /// protocol.
    pub fn attach(&mut self, conn: ConnId, codec: CodecId) {
        if self.conns.contains_key(&conn) || codec.0 >= self.lanes.len() {
            return;
        }
        self.conns.insert(conn, codec.0);
        let lane = &mut self.lanes[codec.0];
        lane.fanout.open(conn);
    }

    /// `conn`'s writer is done: forget it everywhere but in the room (whose [`Input::Closed`]
    /// comes from the reader).
    pub fn detach(&mut self, conn: ConnId) {
        if let Some(lane) = self.conns.remove(&conn) {
            self.lanes[lane].fanout.remove(conn);
            self.lanes[lane].codec.forget(conn);
            let reader = self.lanes[lane].reader;
            if reader != lane {
                self.lanes[reader].codec.forget(conn); // which read its bytes
            }
        }
    }

    /// Queues bytes an adapter made itself (an answer the room has no part in) for `conn`
    /// alone, in order with everything the room sends it. Each answer is paid for from the
    /// connection's rate limit ([`Room::charge`]): past it, the room's own answer goes instead.
    pub fn send_raw(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) -> Result<(), UsageError> {
        if self.room.charge(now, conn) {
            self.fanout_of(conn).send(conn, Frame::from(bytes));
        }
        self.settle(now)
    }

    /// Feeds one input into the room at time `now` and carries out everything that follows.
    pub fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), UsageError> {
        match &input {
            Input::Opened(conn) => self.attach(*conn, CodecId::WIRE),
            Input::OpenedFrom(conn, peer) => {
                self.attach(*conn, CodecId::WIRE);
                self.reader_of(*conn).opened(*conn, *peer);
            }
            Input::Received(conn, msg) => self.follow_version(*conn, msg),
            _ => {}
        }
        let result = self.room.handle_input(now, input);
        self.settle(now)?;
        result
    }

    /// Feeds bytes read from `conn` through its codec's inbound half and carries out what they
    /// mean, in order: messages go to the room, the adapter's own answers to the connection.
    /// A connection not attached reads as the wire protocol. Bytes from a connection the room
    /// has closed are dropped unread: its codec keeps nothing for a connection that is gone.
    pub fn handle_bytes(
        &mut self,
        now: Instant,
        conn: ConnId,
        bytes: &[u8],
    ) -> Result<(), UsageError> {
        if !self.room.is_open(conn) {
            return Ok(());
        }
        let mut inbound = std::mem::take(&mut self.inbound);
        self.reader_of(conn).decode(conn, bytes, &mut inbound);
        self.take_moves(conn);
        let result = self.take_inbound(now, conn, &mut inbound);
        inbound.clear();
        self.inbound = inbound;
        result.and_then(|()| self.settle(now))
    }

    /// Carries out what a codec decoded from `conn`, in order.
    fn take_inbound(
        &mut self,
        now: Instant,
        conn: ConnId,
        inbound: &mut Vec<Inbound>,
    ) -> Result<(), UsageError> {
        for item in inbound.drain(..) {
            match item {
                Inbound::Msg(msg) => {
                    self.follow_version(conn, &msg);
                    self.room.handle_input(now, Input::Received(conn, msg))?;
                }
                Inbound::Reply(bytes) => {
                    if self.room.charge(now, conn) {
                        self.fanout_of(conn).send(conn, Frame::from(&bytes[..]));
                    }
                }
                Inbound::Echo(on) => self.room.set_echo(conn, on),
                Inbound::History(query) => {
                    if self.room.name_of(conn).is_some() && self.room.charge(now, conn) {
                        let chats = self.room.history(query);
                        self.send(conn, &ServerMsg::History { chats, missed: 0 });
                    }
                }
                Inbound::Part(message) => {
                    self.room.handle_input(now, Input::Part(conn, message))?;
                }
                Inbound::Readdress(addr) => {
                    self.room
                        .handle_input(now, Input::Readdressed(conn, addr))?;
                }
                Inbound::Malformed => self.room.handle_input(now, Input::Malformed(conn))?,
                Inbound::End => {
                    let leave = ClientMsg::Leave { message: None };
                    self.room.handle_input(now, Input::Received(conn, leave))?;
                }
            }
            // Each item sees the room as the ones before it left it (a line after a hello
            // waits in the codec until the hello is answered).
            self.settle_room(now)?;
        }
        Ok(())
    }

    /// Carries out the room's outputs, closes whoever the fan-outs found too slow, and lets
    /// codecs act on bytes they kept until now.
    fn settle(&mut self, now: Instant) -> Result<(), UsageError> {
        loop {
            self.settle_room(now)?;
            let ready = self.lanes.iter_mut().find_map(|l| l.codec.poll_ready());
            let Some(conn) = ready else {
                return Ok(());
            };
            let mut inbound = std::mem::take(&mut self.inbound);
            self.reader_of(conn).decode(conn, &[], &mut inbound);
            self.take_moves(conn);
            let result = self.take_inbound(now, conn, &mut inbound);
            inbound.clear();
            self.inbound = inbound;
            result?;
        }
    }

    /// Carries out the room's outputs, and closes whoever the fan-outs found too slow.
    fn settle_room(&mut self, now: Instant) -> Result<(), UsageError> {
        loop {
            while let Some(output) = self.room.poll_output() {
                self.carry_out(output);
            }
            let stalled = self.lanes.iter_mut().find_map(|l| l.fanout.poll_stalled());
            let Some(conn) = stalled else {
                return Ok(());
            };
            self.room.handle_input(now, Input::Stalled(conn))?;
        }
    }

    /// The next event for the driver. Drain until `None` after every input.
    pub fn poll_event(&mut self) -> Option<HubEvent> {
        self.events.pop_front()
    }

    /// The next writer to wake. Drain until `None` after every input.
    pub fn poll_wake(&mut self) -> Option<ConnId> {
        self.lanes.iter_mut().find_map(|l| l.fanout.poll_wake())
    }

    /// The next deadline: call `handle_input(deadline, Input::Tick)` at or after it.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.room.poll_timeout()
    }

    fn carry_out(&mut self, output: Output) {
        match output {
            Output::Send { to, msg } => {
                self.send(to, &msg);
                if let ServerMsg::Refused(refusal) = msg {
                    self.events
                        .push_back(HubEvent::Refused { conn: to, refusal });
                }
            }
            Output::Broadcast { except, msg } => {
                for lane in &mut self.lanes {
                    lane.codec.observe(&msg);
                }
                self.chats += u64::from(matches!(msg, ServerMsg::Chat { .. }));
                // Once per codec in use, whatever the number of members: each writer follows
                // its codec's feed.
                for lane in self.lanes.iter_mut().filter(|l| l.fanout.conn_count() > 0) {
                    self.scratch.clear();
                    if lane.codec.encode_broadcast(&msg, &mut self.scratch) {
                        lane.fanout.publish(frame(&mut self.scratch), except);
                    }
                }
                self.take_sends();
            }
            Output::Subscribe { conn } => self.fanout_of(conn).follow(conn),
            Output::Unsubscribe { conn } => self.fanout_of(conn).unfollow(conn),
            Output::Close { conn, reason } => {
                let gone = reason == CloseReason::Disconnected;
                let lane = self.conns.get(&conn).copied().unwrap_or(0);
                let encoder = self.encoder_of(lane);
                self.scratch.clear();
                let closing = ServerMsg::Closing(reason);
                let last = (!gone
                    && self.lanes[encoder]
                        .codec
                        .encode_to(conn, &closing, &mut self.scratch))
                .then(|| frame(&mut self.scratch));
                // A peer too slow to drain its backlog, or gone, gets no more of it.
                let skip_backlog = gone || reason == CloseReason::TooSlow;
                self.lanes[lane].fanout.close(conn, last, skip_backlog);
                self.events.push_back(HubEvent::Closed { conn, reason });
            }
            Output::Propose(proposal) => self.events.push_back(HubEvent::Propose(proposal)),
            Output::Notice(notice) => self.events.push_back(HubEvent::Notice(notice)),
            Output::Applied(entry) => self.events.push_back(HubEvent::Applied(entry)),
            Output::Password { ticket, work } => {
                self.events.push_back(HubEvent::Password { ticket, work });
            }
        }
    }

    /// The lane of `conn`'s codec; the wire protocol's for a connection not attached.
    fn lane_of(&mut self, conn: ConnId) -> &mut Lane {
        Self::lane_in(&mut self.lanes, &self.conns, conn)
    }

    /// The codec that reads `conn`'s bytes: its lane's reader (the v3 wire codec's for both
    /// wire versions, a codec's own for its views).
    fn reader_of(&mut self, conn: ConnId) -> &mut dyn Codec {
        let lane = self.conns.get(&conn).copied().unwrap_or(CodecId::WIRE.0);
        let reader = self.lanes[lane].reader;
        self.lanes[reader].codec.as_mut()
    }

    /// Queues what codecs have for one connection alone ([`Codec::poll_send`]).
    fn take_sends(&mut self) {
        for i in 0..self.lanes.len() {
            while let Some((conn, bytes)) = self.lanes[i].codec.poll_send() {
                if self.conns.contains_key(&conn) {
                    self.fanout_of(conn).send(conn, Frame::from(&bytes[..]));
                }
            }
        }
    }

    /// The lane whose codec encodes what is sent to one connection of `lane`: the codec a view
    /// is a view of, else its own.
    fn encoder_of(&self, lane: usize) -> usize {
        if self.lanes[lane].view {
            self.lanes[lane].reader
        } else {
            lane
        }
    }

    /// Carries out the moves `conn`'s reader asked for: to one of its lanes, while the
    /// connection does not follow the broadcasts yet.
    fn take_moves(&mut self, conn: ConnId) {
        let Some(&lane) = self.conns.get(&conn) else {
            return;
        };
        let reader = self.lanes[lane].reader;
        while let Some((moved, variant)) = self.lanes[reader].codec.poll_move() {
            let to = match variant {
                0 => Some(reader),
                k => self.lanes[reader].views.get(k - 1).copied(),
            };
            let Some(from) = self.conns.get(&moved).copied() else {
                continue;
            };
            if let Some(to) = to
                && to != from
                && self.lanes[from].reader == reader
                && self.move_lane(moved, from, to)
            {
                self.conns.insert(moved, to);
            }
        }
    }

    /// Moves `conn`, not yet following the broadcasts, from lane `from` to lane `to`.
    fn move_lane(&mut self, conn: ConnId, from: usize, to: usize) -> bool {
        let (low, high) = (from.min(to), from.max(to));
        let (head, tail) = self.lanes.split_at_mut(high);
        let (a, b) = (&mut head[low].fanout, &mut tail[0].fanout);
        if from < to {
            a.transfer(conn, b)
        } else {
            b.transfer(conn, a)
        }
    }

    /// A hello says which version of the wire protocol its connection speaks: a wire connection
    /// not yet following the broadcasts moves to that version's lane before the room answers.
    fn follow_version(&mut self, conn: ConnId, msg: &ClientMsg) {
        let ClientMsg::Hello { version, .. } = msg else {
            return;
        };
        let to = match *version {
            v2::VERSION => CodecId::WIRE_V2,
            PROTOCOL_VERSION => CodecId::WIRE,
            _ => return,
        };
        let Some(&from) = self.conns.get(&conn) else {
            return;
        };
        if from == to.0 || from > CodecId::WIRE_V2.0 {
            return;
        }
        let [wire, wire_v2, ..] = &mut self.lanes[..] else {
            return;
        };
        let moved = if to == CodecId::WIRE_V2 {
            wire.fanout.transfer(conn, &mut wire_v2.fanout)
        } else {
            wire_v2.fanout.transfer(conn, &mut wire.fanout)
        };
        if moved {
            self.conns.insert(conn, to.0);
        }
    }

    /// [`Hub::lane_of`], borrowing only the fields it needs (beside `scratch`).
    fn lane_in<'l>(lanes: &'l mut [Lane], conns: &ConnMap<usize>, conn: ConnId) -> &'l mut Lane {
        &mut lanes[conns.get(&conn).copied().unwrap_or(0)]
    }

    fn send(&mut self, to: ConnId, msg: &ServerMsg) {
        let lane = self.conns.get(&to).copied().unwrap_or(0);
        let encoder = self.encoder_of(lane);
        self.scratch.clear();
        if self.lanes[encoder]
            .codec
            .encode_to(to, msg, &mut self.scratch)
        {
            self.lanes[lane].fanout.send(to, frame(&mut self.scratch));
        }
    }
}

/// The encoded bytes as a shared frame. The scratch buffer keeps its capacity between calls, so
/// a large frame (a welcome listing every member) is built without regrowing, then copied once.
fn frame(scratch: &mut Vec<u8>) -> Frame {
    let frame = Frame::from(&scratch[..]);
    if scratch.capacity() > 1 << 20 {
        *scratch = Vec::new(); // do not keep a buffer sized by a rare huge frame
    }
    frame
}
