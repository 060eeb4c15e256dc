//! One IRC connection as a sans-IO state machine: bytes in, the room's inbound items out.
//!
//! Lines become actions ([`Phase::handle`]), actions become [`Inbound`] items, which the hub
//! carries out in order, one decode's worth (a batch) at a time. A request whose answer the
//! codec must read (a hello, a member list) opens a batch, so that what the room says to the
//! connection before the batch ends answers it; after a hello nothing more is read until the
//! room has answered it.

use std::collections::VecDeque;

use chat_core::Inbound;
use chat_proto::ClientMsg;

use super::caps::{Cap, Caps};
use super::codec::Identity;
use super::commands::{Action, Listing, Phase, hello};
use super::info::Server;
use super::line::LineReader;
use super::tags;

/// The most bytes a connection may send while its hello is with the room; past it, it is
/// closed for a protocol error. Registering takes two short lines: a client that sends this
/// much before its welcome is not waiting for it.
pub const MAX_KEPT: usize = 16 * 1024;

/// What the codec keeps of one IRC connection: its phase, its unfinished line, and what it
/// sent that waits (for a hello's answer, or for the next batch).
#[derive(Debug, Default)]
pub(crate) struct Session {
    phase: Phase,
    lines: LineReader,
    /// The actions of a line cut short at a batch boundary, in order.
    held: VecDeque<Action>,
    /// Bytes read and not yet split into lines, from `kept_from` on.
    kept: Vec<u8>,
    kept_from: usize,
    /// One line's actions, before they are held.
    actions: Vec<Action>,
    /// The IRCv3 capabilities it turned on.
    caps: Caps,
    /// The lane variant its capabilities need, asked for when it registers.
    moving: Option<usize>,
    /// The label of the line whose member list is asked for (labeled-response).
    label: Option<String>,
    /// Batches opened so far, for their ids.
    batches: u32,
    /// The next history it is sent answers its CHATHISTORY.
    history: bool,
    /// It asked for the ban list (MODE #chat +b): a refusal for not being an operator is
    /// shown as an empty list, as IRC clients ask for it unprompted.
    bans: bool,
}

impl Session {
    /// Takes `bytes` read from the connection, after anything it kept, and appends what they
    /// mean to `out`. Returns whether it stopped at a batch boundary with more to do at once.
    pub(crate) fn decode(
        &mut self,
        id: &Identity,
        srv: &Server,
        bytes: &[u8],
        out: &mut Vec<Inbound>,
    ) -> bool {
        if self.phase == Phase::Shut {
            return false;
        }
        let start = out.len();
        if self.has_kept() && !self.waiting() {
            self.resume(id, srv, start, out);
        }
        if self.has_kept() || self.waiting() {
            self.keep(bytes, out);
        } else {
            let left = self.run(id, srv, bytes, start, out);
            let tail = &bytes[bytes.len() - left..];
            if self.waiting() && tail.len() > MAX_KEPT {
                self.shut(out);
            } else {
                // At a batch boundary, the rest of one read: the hub goes on with it at once.
                self.kept.extend_from_slice(tail);
            }
        }
        self.ready()
    }

    /// The phase, for the codec's lines.
    pub(crate) fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The room welcomed the hello as `nick`; returns `None` if nothing waited for it, else
    /// whether it was a JOIN after a PART. What waited can go on: see [`Session::ready`].
    pub(crate) fn welcomed(&mut self, nick: String) -> Option<bool> {
        self.phase.welcomed(nick)
    }

    /// The nick a refused NICK asked for.
    pub(crate) fn take_renaming(&mut self) -> Option<String> {
        match &mut self.phase {
            Phase::Registered { renaming, .. } => renaming.take(),
            _ => None,
        }
    }

    /// The room renamed it: later lines name it `nick`.
    pub(crate) fn renamed(&mut self, to: String) {
        if let Phase::Registered { nick, renaming, .. } = &mut self.phase {
            *nick = to;
            *renaming = None;
        }
    }

    /// The room refused the hello; returns whether what waited can go on.
    pub(crate) fn refused(&mut self) -> bool {
        self.phase.refused() && self.ready()
    }

    /// The room answered with an error: a hello refused for its rate, or a request that
    /// listed nothing. Returns whether what waited can go on.
    pub(crate) fn error(&mut self) -> bool {
        if let Phase::Registered { listing, .. } = &mut self.phase {
            *listing = None;
        }
        self.refused()
    }

    /// How to show the member list the room just sent.
    pub(crate) fn take_listing(&mut self) -> Option<Listing> {
        match &mut self.phase {
            Phase::Registered { listing, .. } => listing.take(),
            _ => None,
        }
    }

    fn waiting(&self) -> bool {
        matches!(self.phase, Phase::Registering { .. })
    }

    fn has_kept(&self) -> bool {
        !self.held.is_empty() || self.kept_from < self.kept.len()
    }

    /// Whether it has kept lines that can go on now.
    pub(crate) fn ready(&self) -> bool {
        !self.waiting() && self.has_kept()
    }

    /// Goes on with what was kept, as far as the next batch boundary.
    fn resume(&mut self, id: &Identity, srv: &Server, start: usize, out: &mut Vec<Inbound>) {
        let mut kept = std::mem::take(&mut self.kept);
        let left = self.run(id, srv, &kept[self.kept_from..], start, out);
        self.kept_from = kept.len() - left;
        if left == 0 {
            kept.clear();
            self.kept_from = 0;
            if kept.capacity() > MAX_KEPT {
                kept = Vec::new(); // not sized by one large read for good
            }
        }
        self.kept = kept;
    }

    /// Keeps `bytes` behind what waits, within [`MAX_KEPT`].
    fn keep(&mut self, bytes: &[u8], out: &mut Vec<Inbound>) {
        if bytes.is_empty() {
            return;
        }
        self.kept.drain(..self.kept_from);
        self.kept_from = 0;
        if self.kept.len() + bytes.len() > MAX_KEPT {
            self.shut(out);
        } else {
            self.kept.extend_from_slice(bytes);
        }
    }

    fn shut(&mut self, out: &mut Vec<Inbound>) {
        out.push(Inbound::Malformed);
        *self = Session {
            phase: Phase::Shut,
            ..Session::default()
        };
    }

    /// Turns held actions, then the lines of `input`, into items until a batch boundary or a
    /// hello; returns how many bytes of `input` are left.
    fn run(
        &mut self,
        id: &Identity,
        srv: &Server,
        mut input: &[u8],
        start: usize,
        out: &mut Vec<Inbound>,
    ) -> usize {
        loop {
            while let Some(action) = self.held.pop_front() {
                if let Err(action) = self.take(action, start, out) {
                    self.held.push_front(action);
                    return input.len();
                }
            }
            if self.waiting() {
                return input.len();
            }
            let Some(line) = self.lines.next(&mut input) else {
                return 0;
            };
            let label = self
                .phase
                .handle(id, srv, &mut self.caps, line, &mut self.actions);
            if let Some(label) = label {
                self.label_actions(&id.server, &label);
            }
            // The replies of one command that follow each other go as one: the room charges
            // each reply to the rate limit, and a command is one request.
            for action in self.actions.drain(..) {
                match (self.held.back_mut(), action) {
                    (Some(Action::Reply(last)), Action::Reply(more)) => {
                        last.extend_from_slice(&more);
                    }
                    (_, action) => self.held.push_back(action),
                }
            }
        }
    }

    /// Appends the item for `action`; a request whose answer must be read opens a batch, so
    /// it is handed back when the batch already holds something.
    fn take(&mut self, action: Action, start: usize, out: &mut Vec<Inbound>) -> Result<(), Action> {
        match action {
            Action::Who(_) | Action::Register(_) | Action::History(_) if out.len() > start => {
                return Err(action);
            }
            Action::History(query) => {
                self.history = true;
                out.push(Inbound::History(query));
            }
            Action::Part(message) => {
                self.phase.parted();
                out.push(Inbound::Part(message));
            }
            Action::Room(msg) => {
                self.bans |= msg == ClientMsg::Bans;
                out.push(Inbound::Msg(msg));
            }
            Action::Echo(on) => out.push(Inbound::Echo(on)),
            Action::Label(label) => self.label = Some(label),
            Action::Reply(bytes) => out.push(Inbound::Reply(bytes)),
            Action::Who(asked) => {
                if let Phase::Registered { listing, .. } = &mut self.phase {
                    *listing = Some(asked);
                }
                out.push(Inbound::Msg(ClientMsg::Who));
            }
            Action::Register(nick) => {
                if self.caps.has(Cap::ECHO_MESSAGE) {
                    out.push(Inbound::Echo(true));
                }
                self.moving = Some(self.caps.variant());
                out.push(Inbound::Msg(hello(&nick, self.phase.ident().cloned())));
                self.phase.hello_sent(nick);
            }
        }
        Ok(())
    }

    /// Labels what one line's actions answer with (labeled-response): its replies, or the
    /// member list it asks for, or an `ACK` when nothing answers it.
    fn label_actions(&mut self, server: &str, label: &str) {
        if let Some(i) = self
            .actions
            .iter()
            .position(|a| matches!(a, Action::Who(_)))
        {
            self.actions.insert(i, Action::Label(label.to_owned()));
            return;
        }
        let lines = self.actions.iter().find_map(|a| match a {
            Action::Reply(bytes) => Some(bytes.iter().filter(|&&b| b == b'\n').count()),
            _ => None,
        });
        let batch = if lines > Some(1) {
            self.batch_id()
        } else {
            None
        };
        let first = self.actions.iter_mut().find_map(|a| match a {
            Action::Reply(bytes) => Some(bytes),
            _ => None,
        });
        match first {
            Some(bytes) => *bytes = tags::labeled(server, bytes, label, batch.as_deref()),
            None => self
                .actions
                .push(Action::Reply(tags::labeled(server, b"", label, None))),
        }
    }

    /// A new batch id, if the client takes batches.
    pub(crate) fn batch_id(&mut self) -> Option<String> {
        self.caps.has(Cap::BATCH).then(|| {
            self.batches = self.batches.wrapping_add(1);
            format!("b{}", self.batches)
        })
    }

    /// Its capabilities.
    pub(crate) fn caps(&self) -> Caps {
        self.caps
    }

    /// The lane variant to move it to, once, when it registers.
    pub(crate) fn take_move(&mut self) -> Option<usize> {
        self.moving.take()
    }

    /// The label the member list being answered carries.
    pub(crate) fn take_label(&mut self) -> Option<String> {
        self.label.take()
    }

    /// Whether a ban list was asked for and not answered yet.
    pub(crate) fn take_bans(&mut self) -> bool {
        std::mem::take(&mut self.bans)
    }

    /// Whether the history being sent answers a CHATHISTORY (else it is a join's replay).
    pub(crate) fn take_history(&mut self) -> bool {
        std::mem::take(&mut self.history)
    }
}
