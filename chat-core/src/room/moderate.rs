//! The room's half of moderation: operators' requests at the gate, and the log's
//! [`Event::Moderated`] entries applied (notices, closes, the tables).

use std::sync::Arc;
use std::time::Instant;

use super::*;

impl Room {
    /// Whether `id` is an operator: a member whose folded name is among `--operators` and who
    /// proved the account. Every operator check goes through here.
    pub(super) fn is_operator(&self, id: ConnId) -> bool {
        let Some(Phase::Member { key, .. }) = self.conns.get(&id).map(|c| &c.phase) else {
            return false;
        };
        self.operators.contains(key) && self.logged_in(id)
    }

    /// Whether the member on `id` proved the account its name belongs to: its name is
    /// registered, so its hello (or its registering) gave the password. An operator's name
    /// that is not registered gives no rights: whoever takes it first is nobody special.
    fn logged_in(&self, id: ConnId) -> bool {
        self.account_of(id).is_some()
    }

    /// Refuses with `Muted` what a muted member wants to say; returns whether it did.
    pub(super) fn refuse_if_muted(&mut self, now: Instant, id: ConnId) -> bool {
        let Some((_, key)) = self.identity(id) else {
            return false;
        };
        let Some(mute) = self.sanctions.mute(&key, self.unix_ms(now)) else {
            return false;
        };
        let until = mute.until;
        self.send(id, ServerMsg::Error(ErrorKind::Muted { until }));
        true
    }

    /// An operator's request, checked here and proposed to the log: refused to the operator
    /// alone (`NotOperator`, `NoSuchMember`, `BadTarget`, `NotBanned`, `TooManyBans`), applied
    /// for everyone once the log has it.
    pub(super) fn moderate(&mut self, now: Instant, id: ConnId, msg: ClientMsg) {
        if !self.is_operator(id) {
            self.send(id, ServerMsg::Error(ErrorKind::NotOperator));
            return;
        }
        let Some((by, by_key)) = self.identity(id) else {
            return;
        };
        let now_ms = self.unix_ms(now);
        let cap = self.config.max_bans as usize;
        let (bans, mutes) = self.sanctions.counts(now_ms);
        let secs = |d: Option<u64>| d.map(|s| s.saturating_mul(1000));
        let proposal = match msg {
            ClientMsg::Kick { name, reason } => {
                let key: Arc<str> = fold_name(&name).into();
                let Some(seat) = self.view.members.get(&key) else {
                    return self.send(id, ServerMsg::Error(ErrorKind::NoSuchMember));
                };
                let name = seat.name.clone();
                let Some(reason) = self.reason(id, reason) else {
                    return;
                };
                (Moderation::Kick { name, key, reason }, None)
            }
            ClientMsg::Ban {
                target,
                duration_secs,
                reason,
            } => {
                let Some(target) = self.target(id, &target) else {
                    return;
                };
                let target = target.ban_target();
                if bans >= cap && !self.sanctions.has_ban(&target) {
                    return self.send(id, ServerMsg::Error(ErrorKind::TooManyBans));
                }
                let Some(reason) = self.reason(id, reason) else {
                    return;
                };
                let ban = Ban {
                    target,
                    until: None,
                    reason,
                    by: by.clone(),
                    since: 0,
                };
                (Moderation::Ban(ban), secs(duration_secs))
            }
            ClientMsg::Unban { target } => {
                let Some(target) = self.target(id, &target) else {
                    return;
                };
                let target = target.ban_target();
                if !self.sanctions.has_ban(&target) {
                    return self.send(id, ServerMsg::Error(ErrorKind::NotBanned));
                }
                (Moderation::Unban(target), None)
            }
            ClientMsg::Mute {
                name,
                duration_secs,
            } => {
                let Some(Target::Name(key)) = self.target(id, &name) else {
                    return self.send(id, ServerMsg::Error(ErrorKind::BadTarget));
                };
                if mutes >= cap && !self.sanctions.has_mute(&key) {
                    return self.send(id, ServerMsg::Error(ErrorKind::TooManyBans));
                }
                let mute = Mute {
                    key,
                    until: None,
                    by: by.clone(),
                };
                (Moderation::Mute(mute), secs(duration_secs))
            }
            ClientMsg::Unmute { name } => {
                let Some(Target::Name(key)) = self.target(id, &name) else {
                    return self.send(id, ServerMsg::Error(ErrorKind::BadTarget));
                };
                if !self.sanctions.has_mute(&key) {
                    return self.send(id, ServerMsg::Error(ErrorKind::NotBanned));
                }
                (Moderation::Unmute { key }, None)
            }
            ClientMsg::Bans => return self.list_bans(id, now_ms),
            _ => return,
        };
        let (action, for_ms) = proposal;
        let kind = ProposalKind::Moderate {
            action: Arc::new(action),
            for_ms,
        };
        self.propose(id, &by, &by_key, kind);
    }

    /// A reason under the text rules of a chat (`Some(None)`: none given); `None`: refused.
    fn reason(&mut self, id: ConnId, reason: Option<String>) -> Option<Option<Arc<str>>> {
        match reason.filter(|r| !r.trim().is_empty()) {
            None => Some(None),
            Some(r) => match check_text(&r, self.config.max_text_bytes) {
                Ok(()) => Some(Some(r.into())),
                Err(error) => {
                    self.send(id, ServerMsg::Error(error));
                    None
                }
            },
        }
    }

    /// A target read strictly; `None` (and `BadTarget` sent): not one.
    fn target(&mut self, id: ConnId, text: &str) -> Option<Target> {
        let target = parse_target(text, self.config.max_name_chars);
        if target.is_none() {
            self.send(id, ServerMsg::Error(ErrorKind::BadTarget));
        }
        target
    }

    fn list_bans(&mut self, id: ConnId, now_ms: u64) {
        let bans = self
            .sanctions
            .bans(now_ms)
            .map(|b| BanInfo {
                target: target_text(&b.target),
                until: b.until,
                reason: b.reason.as_deref().map(str::to_owned),
                by: b.by.to_string(),
                since: b.since,
            })
            .collect();
        let mutes = self
            .sanctions
            .mutes(now_ms)
            .map(|m| MuteInfo {
                name: m.key.to_string(),
                until: m.until,
                by: m.by.to_string(),
            })
            .collect();
        self.send(id, ServerMsg::Bans { bans, mutes });
    }

    /// Applies an operator's action from the log (the entry's name is the operator's): the
    /// tables change, everyone here is told, and members here it covers are closed after the
    /// notice (so that they read why).
    pub(super) fn moderated(&mut self, entry: &Entry, action: &Moderation) {
        let changed = self
            .sanctions
            .apply(action, entry.time, self.config.max_bans as usize);
        // A name as the room shows it: its member's if online, else the folded name.
        let shown = |key: &str| {
            self.view
                .members
                .get(key)
                .map_or_else(|| key.to_owned(), |s| s.name.to_string())
        };
        let notice = match action {
            Moderation::Kick { key, reason, .. } => {
                let Some(seat) = self.view.members.get(key) else {
                    return; // Gone before the kick came.
                };
                ModAction::Kicked {
                    name: seat.name.to_string(),
                    reason: reason.as_deref().map(str::to_owned),
                }
            }
            _ if !changed => return, // Nothing to lift, or the table was full.
            Moderation::Ban(ban) => ModAction::Banned {
                target: match &ban.target {
                    BanTarget::Name(key) => shown(key),
                    net => target_text(net),
                },
                until: ban.until,
                reason: ban.reason.as_deref().map(str::to_owned),
            },
            Moderation::Unban(target) => ModAction::Unbanned {
                target: target_text(target),
            },
            Moderation::Mute(mute) => ModAction::Muted {
                name: shown(&mute.key),
                until: mute.until,
            },
            Moderation::Unmute { key } => ModAction::Unmuted { name: shown(key) },
        };
        self.outputs.push_back(Output::Notice(Notice::Moderated {
            by: entry.name.clone(),
            action: notice.clone(),
        }));
        self.outputs.push_back(Output::Broadcast {
            except: None,
            msg: ServerMsg::Moderated {
                by: entry.name.to_string(),
                action: notice,
                time: entry.time,
            },
        });
        self.close_covered(action);
    }

    /// Closes the connections here that `action` removes: a kicked member; the members and
    /// joiners holding a banned name (or a look-alike: the same key), or a rename to it in
    /// flight; every connection from a banned address or network.
    fn close_covered(&mut self, action: &Moderation) {
        let mut gone: Vec<(ConnId, CloseReason)> = self
            .conns
            .iter()
            .filter_map(|(id, c)| covers(action, c).map(|reason| (*id, reason)))
            .collect();
        gone.sort_unstable_by_key(|(id, _)| *id);
        for (id, reason) in gone {
            self.close(id, reason);
        }
    }
}

/// Whether `action` removes the connection `c`, and why.
fn covers(action: &Moderation, c: &Conn) -> Option<CloseReason> {
    let holds = |key: &Arc<str>| match &c.phase {
        Phase::Member { key: k, .. } | Phase::Joining { key: k, .. } => {
            k == key || c.renaming.as_ref().is_some_and(|(_, r)| r == key)
        }
        Phase::Handshake | Phase::Verifying => false,
    };
    let covered = match action {
        Moderation::Kick { key, .. } => {
            return matches!(&c.phase, Phase::Member { key: k, .. } if k == key)
                .then_some(CloseReason::Kicked);
        }
        Moderation::Ban(Ban {
            target: BanTarget::Name(key),
            ..
        }) => holds(key),
        Moderation::Ban(Ban {
            target: BanTarget::Net { addr, prefix },
            ..
        }) => c.ip.is_some_and(|ip| net_holds(*addr, *prefix, ip)),
        Moderation::Unban(_) | Moderation::Mute(_) | Moderation::Unmute { .. } => false,
    };
    covered.then_some(CloseReason::Banned)
}
