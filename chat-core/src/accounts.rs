//! What the room keeps beyond its members and chats: accounts (names that belong to someone)
//! and moderation (bans and mutes). Plain data: the log records changes to it as entries
//! ([`crate::Event::Registered`], [`crate::Event::Unregistered`], [`crate::Event::Moderated`]),
//! a [`crate::Snapshot`] carries all of it, and a driver's store keeps it across restarts.

use core::net::IpAddr;
use std::sync::Arc;

/// A registered name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The folded name: the key the account holds.
    pub key: Arc<str>,
    /// The name as registered (display form).
    pub name: Arc<str>,
    /// The password's hash, as a PHC string (`$argon2id$v=19$...`); never the password.
    pub hash: Arc<str>,
}

/// Who a ban covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BanTarget {
    /// A name, by its folded key (look-alikes of it are covered too: the gate compares
    /// skeletons).
    Name(Arc<str>),
    /// An address, or a network: `prefix` leading bits of `addr` (32 or 128 for one address).
    Net {
        /// The address (host bits beyond `prefix` are zero).
        addr: IpAddr,
        /// How many leading bits count.
        prefix: u8,
    },
}

/// A ban in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// Who it covers.
    pub target: BanTarget,
    /// When it ends, in ms since the Unix epoch by the log's clock; `None`: never.
    pub until: Option<u64>,
    /// Why, as the operator said it.
    pub reason: Option<Arc<str>>,
    /// The operator who set it (display name).
    pub by: Arc<str>,
    /// When it was set, in ms since the Unix epoch by the log's clock.
    pub since: u64,
}

/// A mute in force: the member's chats are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mute {
    /// The folded name muted.
    pub key: Arc<str>,
    /// When it ends, in ms since the Unix epoch by the log's clock; `None`: never.
    pub until: Option<u64>,
    /// The operator who set it (display name).
    pub by: Arc<str>,
}

/// A moderator's action, as the log records it. The entry's `name` and `key` are the
/// operator's; the entry's `time` is when it took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moderation {
    /// A member was removed from the room (it may come back).
    Kick {
        /// The member's name.
        name: Arc<str>,
        /// The member's folded name.
        key: Arc<str>,
        /// Why.
        reason: Option<Arc<str>>,
    },
    /// A ban was set (members it covers are removed, and cannot come back while it lasts).
    Ban(Ban),
    /// A ban was lifted.
    Unban(BanTarget),
    /// A member was muted.
    Mute(Mute),
    /// A mute was lifted.
    Unmute {
        /// The folded name.
        key: Arc<str>,
    },
}
