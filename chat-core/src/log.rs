//! The room's ordered log, and the in-memory sequencer that keeps it for a room alone.
//!
//! A room is a gate over a log. The gate ([`crate::Room`]) handles connections and proposes
//! joins, chats, leaves, renames and away ([`Proposal`]); a sequencer decides name claims and appends the
//! accepted proposals to the log in one order ([`Entry`]); every room applies the log, and
//! members see only what was applied. In one process the sequencer is a [`Sequencer`] inside
//! the room. In a room shared by several processes it is elsewhere (a Redis stream and scripts
//! that claim names and append atomically): [`redis::RedisLog`] makes a node's decisions about
//! it, and the driver carries its calls to Redis and the replies back.

use std::collections::HashMap;
use std::sync::Arc;

use chat_proto::{ChatKind, CloseReason, HistoryChat, Ident, Member};

use crate::ConnId;
use crate::accounts::{Account, Ban, Moderation, Mute};

pub mod redis;

/// One room taking part in a log. A room alone is node 0; in a shared room each server process
/// gets its own, never reused (a node that was fenced out comes back under a new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

/// What a member of a room asks the log to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// The connection it comes from, on the proposing node.
    pub conn: ConnId,
    /// The member's name as registered (display form).
    pub name: Arc<str>,
    /// The folded name: the key under which names are unique.
    pub key: Arc<str>,
    /// What is proposed.
    pub kind: ProposalKind,
}

/// What a log records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposalKind {
    /// Claim `key` and join. Declined if the key is claimed or the room is full.
    Join {
        /// What the hello said of the user, already checked by the gate.
        ident: Option<Arc<Ident>>,
    },
    /// A line of chat from the member holding `key`.
    Chat {
        /// The text, already validated by the gate.
        text: String,
        /// How it is meant.
        kind: ChatKind,
    },
    /// The member holding `key` leaves; the claim is freed.
    Leave {
        /// Why.
        reason: CloseReason,
        /// Parting words, already validated by the gate.
        message: Option<Arc<str>>,
    },
    /// The member holding `key` takes the name `name`: its claim moves to `key` here. Declined
    /// if another member holds that key (the same key is a change of case or form only).
    Rename {
        /// The new name (display form).
        name: Arc<str>,
        /// The new name folded.
        key: Arc<str>,
    },
    /// The member holding `key` is away (`Some`) or back (`None`).
    Away {
        /// Why, already validated by the gate.
        message: Option<Arc<str>>,
    },
    /// The member holding `key` registers it, or changes its password: `hash` is the new
    /// password's (a PHC string, made off the room's thread). Declined if it does not hold it.
    Register {
        /// The password's hash.
        hash: Arc<str>,
    },
    /// The member holding `key` frees it from its account.
    Unregister,
    /// The operator holding `key` acts: recorded as [`Event::Moderated`], stamped with the
    /// entry's time (a ban's `since`; the end of a ban or mute that lasts `for_ms`).
    Moderate {
        /// What it does; a ban's `since` and `until`, and a mute's `until`, are the log's to set.
        action: Arc<Moderation>,
        /// How long a ban or mute lasts, in ms; `None`: until lifted.
        for_ms: Option<u64>,
    },
}

/// Why the log did not record a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declined {
    /// The key is claimed by someone else.
    NameTaken,
    /// The room has as many members as it allows.
    RoomFull,
    /// The log cannot be reached just now.
    Unavailable,
    /// The proposer does not hold the key (its claim was freed, for instance because its node
    /// was swept); nothing to do.
    NotHolder,
}

/// One record of the log, at its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log: one more than the entry before.
    pub pos: u64,
    /// When the log accepted it, in milliseconds since the Unix epoch, by the log's own clock
    /// (so that every node agrees); never less than the entry before's.
    pub time: u64,
    /// The node that proposed it (or swept a lost node's member out).
    pub node: NodeId,
    /// The connection it concerns, on `node`.
    pub conn: ConnId,
    /// The member's name: for all but a join, the name the log holds for it (not the one
    /// proposed), so that a chat shows the name it was said under.
    pub name: Arc<str>,
    /// The member's folded name.
    pub key: Arc<str>,
    /// What happened.
    pub event: Event,
}

/// What an [`Entry`] records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The member joined.
    Joined {
        /// What its hello said of its user.
        ident: Option<Arc<Ident>>,
    },
    /// The member said something.
    Chat {
        /// The room's chat sequence number: one more than the chat before.
        seq: u64,
        /// The text.
        text: String,
        /// How it is meant.
        kind: ChatKind,
    },
    /// The member left.
    Left {
        /// Why.
        reason: CloseReason,
        /// Its parting words.
        message: Option<Arc<str>>,
    },
    /// The member (the entry's `name` and `key`, as they were) took another name.
    Renamed {
        /// The new name.
        name: Arc<str>,
        /// The new name folded.
        key: Arc<str>,
    },
    /// The member went away (`Some`) or came back (`None`).
    Away {
        /// Why.
        message: Option<Arc<str>>,
    },
    /// The entry's key became an account, or its password changed: `hash` (a PHC string) is
    /// what a hello for that name (or a look-alike of it) must now match.
    Registered {
        /// The password's hash.
        hash: Arc<str>,
    },
    /// The entry's key is an account no longer: its name is first-come again.
    Unregistered,
    /// An operator (the entry's name and key) acted.
    Moderated(Arc<Moderation>),
    /// An entry of a kind this version does not know (a newer node wrote it): passed over, it
    /// only moves the position on.
    Unknown,
}

/// A member as a snapshot records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    /// The node the member is connected to.
    pub node: NodeId,
    /// Its connection on that node.
    pub conn: ConnId,
    /// Its name.
    pub name: Arc<str>,
    /// Its folded name.
    pub key: Arc<str>,
    /// Why it is away, if it is.
    pub away: Option<Arc<str>>,
    /// What its hello said of its user.
    pub ident: Option<Arc<Ident>>,
}

impl Seat {
    /// The member as lists show it.
    pub fn member(&self) -> Member {
        Member {
            name: self.name.clone(),
            away: self.away.clone(),
            ident: self.ident.clone(),
        }
    }
}

/// The state of the log at one position: where a room starts applying from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// The log's epoch: a number the log's keeper chose when the log was made, new whenever it
    /// starts over (0: none). Chat sequence numbers are comparable only within one epoch.
    pub epoch: u64,
    /// The position of the last entry included.
    pub pos: u64,
    /// The last chat sequence number included.
    pub seq: u64,
    /// Everyone in the room at `pos`.
    pub members: Vec<Seat>,
    /// The most recent chats up to `pos`, oldest first, as many as the log still holds: what
    /// a newcomer is shown, the same on a room that starts now as on one that applied them.
    pub history: Vec<HistoryChat>,
    /// Every registered name at `pos`.
    pub accounts: Vec<Account>,
    /// Every ban in force at `pos`.
    pub bans: Vec<Ban>,
    /// Every mute in force at `pos`.
    pub mutes: Vec<Mute>,
}

/// An in-memory log: claims names by folded key, numbers entries and stamps them with the time
/// it is given. The sequencer inside a room alone; also usable to share one log among several
/// rooms in one process (tests do).
#[derive(Debug, Default)]
pub struct Sequencer {
    epoch: u64,
    pos: u64,
    seq: u64,
    /// The time of the last entry: no entry is stamped earlier (a wall clock may step back).
    time: u64,
    max_members: u32,
    claims: HashMap<Arc<str>, Seat>,
    /// Registered names by key, for its snapshot.
    accounts: HashMap<Arc<str>, Account>,
}

impl Sequencer {
    /// An empty log for a room of at most `max_members`, of epoch `epoch` (chosen by the
    /// driver: random, and not 0).
    pub fn new(max_members: u32, epoch: u64) -> Self {
        Self {
            epoch,
            max_members,
            ..Self::default()
        }
    }

    /// A log that goes on from `snapshot` (as a store kept it across a restart): the same
    /// epoch, positions and chat sequence numbers continue, no entry is stamped earlier than
    /// its last kept chat, and its members hold their names.
    pub fn resume(max_members: u32, snapshot: &Snapshot) -> Self {
        Self {
            epoch: snapshot.epoch,
            pos: snapshot.pos,
            seq: snapshot.seq,
            time: snapshot.history.last().map_or(0, |chat| chat.time),
            max_members,
            claims: snapshot
                .members
                .iter()
                .map(|seat| (seat.key.clone(), seat.clone()))
                .collect(),
            accounts: snapshot
                .accounts
                .iter()
                .map(|account| (account.key.clone(), account.clone()))
                .collect(),
        }
    }

    /// An empty log of these accounts (a store's, say): a room made with it asks their
    /// passwords from the start.
    pub fn with_accounts(mut self, accounts: impl IntoIterator<Item = Account>) -> Self {
        self.accounts = accounts.into_iter().map(|a| (a.key.clone(), a)).collect();
        self
    }

    /// The position of the last entry appended.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// The log's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Decides `proposal` from `node` at `unix_ms` (the driver's wall clock, in milliseconds
    /// since the Unix epoch): the entry appended, or why not.
    pub fn propose(
        &mut self,
        node: NodeId,
        proposal: Proposal,
        unix_ms: u64,
    ) -> Result<Entry, Declined> {
        let Proposal {
            conn,
            name,
            key,
            kind,
        } = proposal;
        // The name the log holds, not the one proposed: they differ only when a rename the
        // proposer counted on was declined.
        let held = self
            .claims
            .get(&key)
            .filter(|seat| seat.node == node && seat.conn == conn)
            .map(|seat| seat.name.clone());
        let event = match kind {
            ProposalKind::Join { ident } => {
                return self.join(node, conn, name, key, ident, unix_ms);
            }
            _ if held.is_none() => return Err(Declined::NotHolder),
            ProposalKind::Chat { text, kind } => {
                self.seq += 1;
                Event::Chat {
                    seq: self.seq,
                    text,
                    kind,
                }
            }
            ProposalKind::Moderate { action, for_ms } => {
                let time = self.time.max(unix_ms);
                Event::Moderated(Arc::new(crate::moderation::stamp(&action, for_ms, time)))
            }
            ProposalKind::Away { message } => {
                if let Some(seat) = self.claims.get_mut(&key) {
                    seat.away = message.clone();
                }
                Event::Away { message }
            }
            ProposalKind::Leave { reason, message } => {
                self.claims.remove(&key);
                Event::Left { reason, message }
            }
            ProposalKind::Register { hash } => {
                let account = Account {
                    key: key.clone(),
                    name: held.clone().unwrap_or_else(|| name.clone()),
                    hash: hash.clone(),
                };
                self.accounts.insert(key.clone(), account);
                Event::Registered { hash }
            }
            ProposalKind::Unregister => {
                self.accounts.remove(&key);
                Event::Unregistered
            }
            ProposalKind::Rename {
                name: new_name,
                key: new_key,
            } => {
                if new_key != key && self.claims.contains_key(&new_key) {
                    return Err(Declined::NameTaken);
                }
                if let Some(mut seat) = self.claims.remove(&key) {
                    seat.name = new_name.clone();
                    seat.key = new_key.clone();
                    self.claims.insert(new_key.clone(), seat);
                }
                Event::Renamed {
                    name: new_name,
                    key: new_key,
                }
            }
        };
        let name = held.unwrap_or(name);
        Ok(self.append(node, conn, name, key, event, unix_ms))
    }

    fn join(
        &mut self,
        node: NodeId,
        conn: ConnId,
        name: Arc<str>,
        key: Arc<str>,
        ident: Option<Arc<Ident>>,
        unix_ms: u64,
    ) -> Result<Entry, Declined> {
        if self.claims.contains_key(&key) {
            return Err(Declined::NameTaken);
        }
        if self.claims.len() >= self.max_members as usize {
            return Err(Declined::RoomFull);
        }
        let seat = Seat {
            node,
            conn,
            name: name.clone(),
            key: key.clone(),
            away: None,
            ident: ident.clone(),
        };
        self.claims.insert(key.clone(), seat);
        Ok(self.append(node, conn, name, key, Event::Joined { ident }, unix_ms))
    }

    fn append(
        &mut self,
        node: NodeId,
        conn: ConnId,
        name: Arc<str>,
        key: Arc<str>,
        event: Event,
        unix_ms: u64,
    ) -> Entry {
        self.pos += 1;
        self.time = self.time.max(unix_ms);
        Entry {
            pos: self.pos,
            time: self.time,
            node,
            conn,
            name,
            key,
            event,
        }
    }

    /// Frees every claim `node` holds, as when that node is lost, at `unix_ms`: the entries
    /// that say so.
    pub fn sweep(&mut self, node: NodeId, unix_ms: u64) -> Vec<Entry> {
        let mut gone: Vec<Seat> = self
            .claims
            .values()
            .filter(|seat| seat.node == node)
            .cloned()
            .collect();
        gone.sort_by(|a, b| a.key.cmp(&b.key));
        gone.into_iter()
            .map(|seat| {
                self.claims.remove(&seat.key);
                let event = Event::Left {
                    reason: CloseReason::ServerLost,
                    message: None,
                };
                self.append(seat.node, seat.conn, seat.name, seat.key, event, unix_ms)
            })
            .collect()
    }

    /// The log's state now: where a room that starts now begins.
    pub fn snapshot(&self) -> Snapshot {
        let mut members: Vec<Seat> = self.claims.values().cloned().collect();
        members.sort_by(|a, b| a.key.cmp(&b.key));
        let mut accounts: Vec<Account> = self.accounts.values().cloned().collect();
        accounts.sort_by(|a, b| a.key.cmp(&b.key));
        // This log keeps no chats, bans or mutes: a room started from it shows only what it
        // applies.
        Snapshot {
            epoch: self.epoch,
            pos: self.pos,
            seq: self.seq,
            members,
            history: Vec::new(),
            accounts,
            ..Snapshot::default()
        }
    }
}
