//! The gate's half of accounts: a hello for a registered name (or a look-alike of it: the same
//! folded key) waits for its password to be checked, `Register`, `Passwd` and `Unregister`
//! become log proposals, and failed attempts are throttled per address and per account.
//!
//! Checking and hashing a password is slow and memory-hungry on purpose (Argon2id): the room
//! asks the driver for it ([`Output::Password`]) and takes the verdict back
//! ([`Input::Password`]), so that it stays sans-IO and the driver bounds how much runs at once.
//! The room keeps no password beyond handing it out in the request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_proto::{ErrorKind, Ident, MAX_PASSWORD_BYTES, Password, Refusal, ServerMsg};

use super::{AddrKey, ConnId, Output, Phase, Room};
use crate::log::ProposalKind;

/// Names one piece of password work, so that its verdict finds its way back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// Work on a password that the driver does off the room's thread ([`Output::Password`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordWork {
    /// Does `password` match `hash`? [`Verdict::Match`] or [`Verdict::Mismatch`].
    Verify {
        /// The account's hash (a PHC string).
        hash: Arc<str>,
        /// What the hello gave.
        password: Password,
    },
    /// Hash `password` with a fresh random salt: [`Verdict::Hashed`].
    Hash {
        /// The password to register.
        password: Password,
    },
    /// If `old` matches `hash`, hash `new` ([`Verdict::Hashed`]); else [`Verdict::Mismatch`].
    Change {
        /// The account's hash now.
        hash: Arc<str>,
        /// The password the member says it has.
        old: Password,
        /// The password wanted.
        new: Password,
    },
}

/// The outcome of [`PasswordWork`] ([`Input::Password`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The password matches.
    Match,
    /// It does not (or the hash could not be read).
    Mismatch,
    /// The new password's hash, a PHC string.
    Hashed(Arc<str>),
    /// The driver had no room for the work just now (its queue was full): nothing was done.
    Busy,
}

/// What a ticket was for.
#[derive(Debug)]
pub(super) enum Job {
    /// A hello for a registered name: joins if the password matches.
    Login {
        name: Arc<str>,
        key: Arc<str>,
        ident: Option<Arc<Ident>>,
    },
    /// A member registers its name, or changes its password: proposed once hashed.
    Register,
}

/// Failures allowed before any delay.
const FREE_FAILURES: u32 = 3;
/// The longest an address waits after failures.
const ADDR_DELAY_MAX: Duration = Duration::from_secs(300);
/// The longest an account waits after failures: shorter than an address's, so that someone
/// failing on purpose from many addresses locks its owner out for a minute at most.
const KEY_DELAY_MAX: Duration = Duration::from_secs(60);
/// Failures this long ago are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Addresses (and accounts) tracked at most: past it, the least recently failed is forgotten.
pub(crate) const MAX_TRACKED: usize = 4_096;

/// Failures of one address or one account.
#[derive(Debug, Clone, Copy)]
struct Strikes {
    failures: u32,
    last: Instant,
    /// Before this, attempts are refused without a check.
    until: Instant,
}

/// Failed password attempts, per address and per account, each table bounded.
#[derive(Debug, Default)]
pub(super) struct Throttle {
    by_addr: HashMap<AddrKey, Strikes>,
    by_key: HashMap<Arc<str>, Strikes>,
}

/// The wait after `failures` failures: none for the first few, then 1 s, doubling, up to `max`.
fn delay(failures: u32, max: Duration) -> Duration {
    let past = failures.saturating_sub(FREE_FAILURES);
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    Duration::from_secs(1u64 << past.min(20)).min(max)
}

fn strike<K: Eq + std::hash::Hash + Clone>(
    table: &mut HashMap<K, Strikes>,
    key: &K,
    now: Instant,
    max: Duration,
) {
    if !table.contains_key(key) && table.len() >= MAX_TRACKED {
        table.retain(|_, s| now.saturating_duration_since(s.last) < FORGET_AFTER);
        if table.len() >= MAX_TRACKED {
            let oldest = table
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                table.remove(&oldest);
            }
        }
    }
    let s = table.entry(key.clone()).or_insert(Strikes {
        failures: 0,
        last: now,
        until: now,
    });
    if now.saturating_duration_since(s.last) >= FORGET_AFTER {
        s.failures = 0;
    }
    s.failures = s.failures.saturating_add(1);
    s.last = now;
    s.until = now + delay(s.failures, max);
}

impl Throttle {
    /// Whether an attempt from `addr` for `key` must wait.
    fn delayed(&self, now: Instant, addr: Option<AddrKey>, key: &str) -> bool {
        let waits = |s: &Strikes| now < s.until;
        addr.and_then(|a| self.by_addr.get(&a)).is_some_and(waits)
            || self.by_key.get(key).is_some_and(waits)
    }

    fn failed(&mut self, now: Instant, addr: Option<AddrKey>, key: &Arc<str>) {
        if let Some(addr) = addr {
            strike(&mut self.by_addr, &addr, now, ADDR_DELAY_MAX);
        }
        strike(&mut self.by_key, key, now, KEY_DELAY_MAX);
    }

    /// The account's owner got in: its failures are forgotten (its address's are not, so that
    /// one's own account cannot wash an address clean).
    fn succeeded(&mut self, key: &str) {
        self.by_key.remove(key);
    }

    /// Addresses and accounts tracked, for tests of the bound.
    #[cfg(test)]
    pub(super) fn tracked(&self) -> (usize, usize) {
        (self.by_addr.len(), self.by_key.len())
    }
}

impl Room {
    /// A hello for the registered name `key`: with no password it is refused as registered;
    /// while its address or account waits it is refused as wrong; else its password goes out
    /// to be checked and the connection waits in its handshake (its deadline still runs).
    pub(super) fn log_in(
        &mut self,
        now: Instant,
        id: ConnId,
        (name, key): (Arc<str>, Arc<str>),
        ident: Option<Arc<Ident>>,
        password: Option<Password>,
    ) {
        let Some(password) = password else {
            self.send(id, ServerMsg::Refused(Refusal::NameRegistered));
            return;
        };
        let addr = self.conns.get(&id).and_then(|c| c.addr);
        if self.throttle.delayed(now, addr, &key) {
            self.send(id, ServerMsg::Refused(Refusal::WrongPassword));
            return;
        }
        if password.expose().len() > MAX_PASSWORD_BYTES {
            // No account has one this long: wrong, and never hashed.
            self.throttle.failed(now, addr, &key);
            self.send(id, ServerMsg::Refused(Refusal::WrongPassword));
            return;
        }
        let hash = self.view.accounts[&key].hash.clone();
        let job = Job::Login { name, key, ident };
        if self.start_job(id, job, PasswordWork::Verify { hash, password })
            && let Some(conn) = self.conns.get_mut(&id)
        {
            conn.phase = Phase::Verifying;
        }
    }

    /// Hands `work` out under a new ticket for `id`'s `job`; false if `id` has one already.
    fn start_job(&mut self, id: ConnId, job: Job, work: PasswordWork) -> bool {
        self.next_ticket += 1;
        let ticket = Ticket(self.next_ticket);
        let Some(conn) = self.conns.get_mut(&id).filter(|c| c.job.is_none()) else {
            return false;
        };
        conn.job = Some(ticket);
        self.tickets.insert(ticket, (id, job));
        self.outputs.push_back(Output::Password { ticket, work });
        true
    }

    /// The verdict on a ticket's work. One whose connection is gone, or that is not the
    /// connection's job now, is dropped.
    pub(super) fn verdict(&mut self, now: Instant, ticket: Ticket, verdict: Verdict) {
        let Some((id, job)) = self.tickets.remove(&ticket) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&id).filter(|c| c.job == Some(ticket)) else {
            return;
        };
        conn.job = None;
        let addr = conn.addr;
        match job {
            Job::Login { name, key, ident } => {
                conn.phase = Phase::Handshake;
                match verdict {
                    Verdict::Match => {
                        self.throttle.succeeded(&key);
                        if self.name_held(&key) {
                            self.send(id, ServerMsg::Refused(Refusal::NameTaken));
                        } else {
                            self.join(id, name, key, ident);
                        }
                    }
                    Verdict::Mismatch | Verdict::Hashed(_) => {
                        self.throttle.failed(now, addr, &key);
                        self.send(id, ServerMsg::Refused(Refusal::WrongPassword));
                    }
                    Verdict::Busy => self.send(id, ServerMsg::Refused(Refusal::Unavailable)),
                }
            }
            Job::Register => match verdict {
                Verdict::Hashed(hash) => {
                    if let Some((name, key)) = self.member_identity(id) {
                        self.propose(id, &name, &key, ProposalKind::Register { hash });
                    }
                }
                Verdict::Mismatch | Verdict::Match => {
                    if let Some((_, key)) = self.member_identity(id) {
                        self.throttle.failed(now, addr, &key);
                    }
                    self.send(id, ServerMsg::Error(ErrorKind::WrongPassword));
                }
                Verdict::Busy => self.send(id, ServerMsg::Error(ErrorKind::Unavailable)),
            },
        }
    }

    /// The name and key of a member here (not one still joining).
    fn member_identity(&self, id: ConnId) -> Option<(Arc<str>, Arc<str>)> {
        match &self.conns.get(&id)?.phase {
            Phase::Member { name, key } => Some((name.clone(), key.clone())),
            _ => None,
        }
    }

    /// What a member asks of its account, checked before any hashing: the error to answer
    /// with, if any.
    fn account_error(&self, id: ConnId, registered: bool) -> Option<ErrorKind> {
        let (_, key) = self.member_identity(id)?;
        let conn = self.conns.get(&id)?;
        if conn.job.is_some() || conn.renaming.is_some() {
            Some(ErrorKind::Busy)
        } else if self.view.accounts.contains_key(&key) != registered {
            Some(if registered {
                ErrorKind::NotRegistered
            } else {
                ErrorKind::NameRegistered
            })
        } else {
            None
        }
    }

    fn password_invalid() -> ErrorKind {
        ErrorKind::PasswordInvalid {
            max_bytes: MAX_PASSWORD_BYTES as u32,
        }
    }

    /// `Register`: the member's name becomes an account once the password is hashed and the
    /// log has the entry.
    pub(super) fn register(&mut self, id: ConnId, password: Password) {
        if self.member_identity(id).is_none() {
            return;
        }
        if let Some(error) = self.account_error(id, false) {
            self.send(id, ServerMsg::Error(error));
        } else if !password.is_valid() {
            self.send(id, ServerMsg::Error(Self::password_invalid()));
        } else {
            self.start_job(id, Job::Register, PasswordWork::Hash { password });
        }
    }

    /// `Passwd`: the old password is checked (and throttled as a login is), the new one hashed.
    pub(super) fn passwd(&mut self, now: Instant, id: ConnId, old: Password, new: Password) {
        let Some((_, key)) = self.member_identity(id) else {
            return;
        };
        let addr = self.conns.get(&id).and_then(|c| c.addr);
        if let Some(error) = self.account_error(id, true) {
            self.send(id, ServerMsg::Error(error));
        } else if !new.is_valid() {
            self.send(id, ServerMsg::Error(Self::password_invalid()));
        } else if self.throttle.delayed(now, addr, &key) || !old.is_valid() {
            if !old.is_valid() {
                self.throttle.failed(now, addr, &key);
            }
            self.send(id, ServerMsg::Error(ErrorKind::WrongPassword));
        } else {
            let hash = self.view.accounts[&key].hash.clone();
            let work = PasswordWork::Change { hash, old, new };
            self.start_job(id, Job::Register, work);
        }
    }

    /// `Unregister`: the member's name is first-come again once the log has the entry.
    pub(super) fn unregister(&mut self, id: ConnId) {
        let Some((name, key)) = self.member_identity(id) else {
            return;
        };
        match self.account_error(id, true) {
            Some(error) => self.send(id, ServerMsg::Error(error)),
            None => self.propose(id, &name, &key, ProposalKind::Unregister),
        }
    }

    /// The log registered the entry's key (or changed its password): the member here holding
    /// it is told.
    pub(super) fn registered(&mut self, entry: &crate::log::Entry, hash: Arc<str>) {
        let account = crate::accounts::Account {
            key: entry.key.clone(),
            name: entry.name.clone(),
            hash,
        };
        self.view.accounts.insert(entry.key.clone(), account);
        let name = entry.name.to_string();
        self.tell_holder(entry, ServerMsg::Registered { name });
    }

    /// The log freed the entry's key from its account.
    pub(super) fn unregistered(&mut self, entry: &crate::log::Entry) {
        if self.view.accounts.remove(&entry.key).is_some() {
            let name = entry.name.to_string();
            self.tell_holder(entry, ServerMsg::Unregistered { name });
        }
    }

    /// Sends `msg` to the member here that holds the entry's key, if it is here.
    fn tell_holder(&mut self, entry: &crate::log::Entry, msg: ServerMsg) {
        let holder = self
            .view
            .members
            .get(&entry.key)
            .filter(|seat| seat.node == self.node)
            .map(|seat| seat.conn)
            .filter(|c| {
                self.member_identity(*c)
                    .is_some_and(|(_, k)| k == entry.key)
            });
        if let Some(conn) = holder {
            self.send(conn, msg);
        }
    }

    /// Addresses and accounts the throttle tracks (for tests of its bound).
    #[cfg(test)]
    pub(crate) fn throttle_tracked(&self) -> (usize, usize) {
        self.throttle.tracked()
    }
}
