//! Moderation: the bans and mutes in force, and how an operator's targets are read.
//!
//! The tables change only as log entries are applied, timed by the log, so every node of a
//! shared room holds the same ones; checks compare against the room's own clock.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::accounts::{Ban, BanTarget, Moderation, Mute};
use crate::names::{check_name, fold_name};

/// What an operator named in `ban` or `unban`, read strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A name: its folded key (which covers its look-alikes).
    Name(Arc<str>),
    /// An address (prefix 32 or 128) or a network with no host bits set.
    Net {
        /// The address, IPv4-mapped IPv6 addresses as IPv4.
        addr: IpAddr,
        /// Leading bits that count.
        prefix: u8,
    },
}

impl Target {
    /// The ban target it names.
    pub fn ban_target(&self) -> BanTarget {
        match self {
            Target::Name(key) => BanTarget::Name(key.clone()),
            Target::Net { addr, prefix } => BanTarget::Net {
                addr: *addr,
                prefix: *prefix,
            },
        }
    }
}

/// Reads `NAME`, `ADDRESS` (IPv4 or IPv6) or `CIDR`, strictly: a `/` makes it a network,
/// whose prefix must fit the address with no host bits set past it (`192.0.2.1/24` is
/// refused rather than guessed at); what looks like an address (digits and dots, or a `:`)
/// must be one. `None`: not a valid target.
pub fn parse_target(text: &str, max_name_chars: u32) -> Option<Target> {
    if let Some((addr, prefix)) = text.split_once('/') {
        let addr = canonical(addr.parse::<IpAddr>().ok()?);
        // Digits only, no sign, no leading zero: `/024` is a typo, not 24.
        let digits = !prefix.is_empty()
            && prefix.len() <= 3
            && prefix.bytes().all(|b| b.is_ascii_digit())
            && (prefix.len() == 1 || !prefix.starts_with('0'));
        let prefix = prefix.parse::<u8>().ok().filter(|_| digits)?;
        if u32::from(prefix) > bits(addr) || masked(addr, prefix) != addr {
            return None;
        }
        return Some(Target::Net { addr, prefix });
    }
    if let Ok(addr) = text.parse::<IpAddr>() {
        let addr = canonical(addr);
        return Some(Target::Net {
            addr,
            prefix: u8::try_from(bits(addr)).unwrap_or(128),
        });
    }
    let like_an_address =
        text.contains(':') || text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if like_an_address {
        return None;
    }
    check_name(text, max_name_chars).ok()?;
    Some(Target::Name(fold_name(text).into()))
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is; others as they are.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        IpAddr::V4(_) => addr,
    }
}

/// `addr` with every bit past `prefix` cleared.
fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// Whether the network `addr/prefix` holds `ip`.
pub fn net_holds(addr: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    let ip = canonical(ip);
    ip.is_ipv4() == addr.is_ipv4() && masked(ip, prefix) == addr
}

/// A ban's target as people write it: the folded name, the address, or the CIDR.
pub fn target_text(target: &BanTarget) -> String {
    match target {
        BanTarget::Name(key) => key.to_string(),
        BanTarget::Net { addr, prefix } if u32::from(*prefix) == bits(*addr) => addr.to_string(),
        BanTarget::Net { addr, prefix } => format!("{addr}/{prefix}"),
    }
}

fn bits(addr: IpAddr) -> u32 {
    if addr.is_ipv4() { 32 } else { 128 }
}

/// Whether something that ends at `until` is in force at `now_ms`.
fn in_force(until: Option<u64>, now_ms: u64) -> bool {
    until.is_none_or(|end| now_ms < end)
}

/// The bans and mutes in force, each table at most `cap` long.
#[derive(Debug, Clone, Default)]
pub struct Sanctions {
    bans: Vec<Ban>,
    mutes: Vec<Mute>,
}

impl Sanctions {
    /// The tables as a snapshot holds them.
    pub fn new(bans: Vec<Ban>, mutes: Vec<Mute>) -> Self {
        Self { bans, mutes }
    }

    /// Applies a moderation entry of time `time`: what ended by then is dropped first. A ban
    /// or mute that finds its table at `cap` (and replaces none) is not kept: every node
    /// applies the same entries with the same cap, so they agree; the gate refuses it first.
    /// Returns whether the tables changed.
    pub fn apply(&mut self, action: &Moderation, time: u64, cap: usize) -> bool {
        self.expire(time);
        match action {
            Moderation::Kick { .. } => false,
            Moderation::Ban(ban) => {
                if let Some(old) = self.bans.iter_mut().find(|b| b.target == ban.target) {
                    *old = ban.clone();
                } else if self.bans.len() < cap {
                    self.bans.push(ban.clone());
                } else {
                    return false;
                }
                true
            }
            Moderation::Unban(target) => {
                let before = self.bans.len();
                self.bans.retain(|b| b.target != *target);
                self.bans.len() != before
            }
            Moderation::Mute(mute) => {
                if let Some(old) = self.mutes.iter_mut().find(|m| m.key == mute.key) {
                    *old = mute.clone();
                } else if self.mutes.len() < cap {
                    self.mutes.push(mute.clone());
                } else {
                    return false;
                }
                true
            }
            Moderation::Unmute { key } => {
                let before = self.mutes.len();
                self.mutes.retain(|m| m.key != *key);
                self.mutes.len() != before
            }
        }
    }

    /// Drops what ended by `now_ms`.
    pub fn expire(&mut self, now_ms: u64) {
        self.bans.retain(|b| in_force(b.until, now_ms));
        self.mutes.retain(|m| in_force(m.until, now_ms));
    }

    /// The ban in force at `now_ms` on the folded name `key` (and so its look-alikes).
    pub fn name_ban(&self, key: &str, now_ms: u64) -> Option<&Ban> {
        self.bans.iter().find(|b| {
            matches!(&b.target, BanTarget::Name(k) if **k == *key) && in_force(b.until, now_ms)
        })
    }

    /// The ban in force at `now_ms` on a network holding `ip`.
    pub fn addr_ban(&self, ip: IpAddr, now_ms: u64) -> Option<&Ban> {
        self.bans.iter().find(|b| {
            matches!(b.target, BanTarget::Net { addr, prefix } if net_holds(addr, prefix, ip))
                && in_force(b.until, now_ms)
        })
    }

    /// The mute in force at `now_ms` on the folded name `key`.
    pub fn mute(&self, key: &str, now_ms: u64) -> Option<&Mute> {
        self.mutes
            .iter()
            .find(|m| *m.key == *key && in_force(m.until, now_ms))
    }

    /// Whether a ban on `target` is held (in force or not yet dropped).
    pub fn has_ban(&self, target: &BanTarget) -> bool {
        self.bans.iter().any(|b| b.target == *target)
    }

    /// Whether a mute on `key` is held.
    pub fn has_mute(&self, key: &str) -> bool {
        self.mutes.iter().any(|m| *m.key == *key)
    }

    /// How many bans and mutes are in force at `now_ms`, each.
    pub fn counts(&self, now_ms: u64) -> (usize, usize) {
        (
            self.bans
                .iter()
                .filter(|b| in_force(b.until, now_ms))
                .count(),
            self.mutes
                .iter()
                .filter(|m| in_force(m.until, now_ms))
                .count(),
        )
    }

    /// The bans in force at `now_ms`, oldest first.
    pub fn bans(&self, now_ms: u64) -> impl Iterator<Item = &Ban> {
        self.bans.iter().filter(move |b| in_force(b.until, now_ms))
    }

    /// The mutes in force at `now_ms`.
    pub fn mutes(&self, now_ms: u64) -> impl Iterator<Item = &Mute> {
        self.mutes.iter().filter(move |m| in_force(m.until, now_ms))
    }

    /// Every ban and mute held, for a snapshot.
    pub fn tables(&self) -> (Vec<Ban>, Vec<Mute>) {
        (self.bans.clone(), self.mutes.clone())
    }
}

/// `action` stamped with the time the log took it: a ban's `since`, and the end of a ban or
/// mute that lasts `for_ms`.
pub fn stamp(action: &Moderation, for_ms: Option<u64>, time: u64) -> Moderation {
    let until = for_ms.map(|d| time.saturating_add(d));
    match action {
        Moderation::Ban(ban) => Moderation::Ban(Ban {
            since: time,
            until,
            ..ban.clone()
        }),
        Moderation::Mute(mute) => Moderation::Mute(Mute {
            until,
            ..mute.clone()
        }),
        other => other.clone(),
    }
}
