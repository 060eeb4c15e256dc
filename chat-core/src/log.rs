//! The room's ordered log, and the in-memory sequencer that keeps it for a room alone.
//!
//! A room is a gate over a log. The gate ([`crate::Room`]) handles connections and proposes
//! joins, chats and leaves ([`Proposal`]); a sequencer decides name claims and appends the
//! accepted proposals to the log in one order ([`Entry`]); every room applies the log, and
//! members see only what was applied. In one process the sequencer is a [`Sequencer`] inside
//! the room. In a room shared by several processes it is elsewhere (a Redis stream and scripts
//! that claim names and append atomically): [`redis::RedisLog`] makes a node's decisions about
//! it, and the driver carries its calls to Redis and the replies back.

use std::collections::HashMap;
use std::sync::Arc;

use chat_proto::{CloseReason, HistoryChat};

use crate::ConnId;

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

/// The three things a log records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposalKind {
    /// Claim `key` and join. Declined if the key is claimed or the room is full.
    Join,
    /// A line of chat from the member holding `key`.
    Chat {
        /// The text, already validated by the gate.
        text: String,
    },
    /// The member holding `key` leaves; the claim is freed.
    Leave {
        /// Why.
        reason: CloseReason,
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
    /// The node that proposed it (or swept a lost node's member out).
    pub node: NodeId,
    /// The connection it concerns, on `node`.
    pub conn: ConnId,
    /// The member's name.
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
    Joined,
    /// The member said something.
    Chat {
        /// The room's chat sequence number: one more than the chat before.
        seq: u64,
        /// The text.
        text: String,
    },
    /// The member left.
    Left {
        /// Why.
        reason: CloseReason,
    },
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
}

/// The state of the log at one position: where a room starts applying from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// The position of the last entry included.
    pub pos: u64,
    /// The last chat sequence number included.
    pub seq: u64,
    /// Everyone in the room at `pos`.
    pub members: Vec<Seat>,
    /// The most recent chats up to `pos`, oldest first, as many as the log still holds: what
    /// a newcomer is shown, the same on a room that starts now as on one that applied them.
    pub history: Vec<HistoryChat>,
}

/// An in-memory log: claims names by folded key and numbers entries. The sequencer inside a
/// room alone; also usable to share one log among several rooms in one process (tests do).
#[derive(Debug, Default)]
pub struct Sequencer {
    pos: u64,
    seq: u64,
    max_members: u32,
    claims: HashMap<Arc<str>, Seat>,
}

impl Sequencer {
    /// An empty log for a room of at most `max_members`.
    pub fn new(max_members: u32) -> Self {
        Self {
            max_members,
            ..Self::default()
        }
    }

    /// The position of the last entry appended.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Decides `proposal` from `node`: the entry appended, or why not.
    pub fn propose(&mut self, node: NodeId, proposal: Proposal) -> Result<Entry, Declined> {
        let Proposal {
            conn,
            name,
            key,
            kind,
        } = proposal;
        let holds = self
            .claims
            .get(&key)
            .is_some_and(|seat| seat.node == node && seat.conn == conn);
        let event = match kind {
            ProposalKind::Join => {
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
                };
                self.claims.insert(key.clone(), seat);
                Event::Joined
            }
            ProposalKind::Chat { text } => {
                if !holds {
                    return Err(Declined::NotHolder);
                }
                self.seq += 1;
                Event::Chat {
                    seq: self.seq,
                    text,
                }
            }
            ProposalKind::Leave { reason } => {
                if !holds {
                    return Err(Declined::NotHolder);
                }
                self.claims.remove(&key);
                Event::Left { reason }
            }
        };
        self.pos += 1;
        Ok(Entry {
            pos: self.pos,
            node,
            conn,
            name,
            key,
            event,
        })
    }

    /// Frees every claim `node` holds, as when that node is lost: the entries that say so.
    pub fn sweep(&mut self, node: NodeId) -> Vec<Entry> {
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
                self.pos += 1;
                Entry {
                    pos: self.pos,
                    node: seat.node,
                    conn: seat.conn,
                    name: seat.name,
                    key: seat.key,
                    event: Event::Left {
                        reason: CloseReason::ServerLost,
                    },
                }
            })
            .collect()
    }

    /// The log's state now: where a room that starts now begins.
    pub fn snapshot(&self) -> Snapshot {
        let mut members: Vec<Seat> = self.claims.values().cloned().collect();
        members.sort_by(|a, b| a.key.cmp(&b.key));
        // This log keeps no chats: a room started from it shows only what it applies.
        Snapshot {
            pos: self.pos,
            seq: self.seq,
            members,
            history: Vec::new(),
        }
    }
}
