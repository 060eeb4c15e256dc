//! What Redis answers, in a neutral form (the driver converts its client's values), and the
//! parsing of the answers the log reads: snapshots and stream entries.

use std::borrow::Cow;
use std::sync::Arc;

use chat_proto::{ChatKind, CloseReason, HistoryChat, Ident};

use super::super::{Entry, Event, NodeId, Seat, Snapshot};
use super::{Level, Note};
use crate::ConnId;
use crate::accounts::{Ban, BanTarget, Moderation, Mute};
use crate::moderation::{Target, parse_target, stamp, target_text};

/// One reply from Redis. Status strings come as `Bulk`, maps as arrays of their pairs
/// flattened, sets as arrays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// No value.
    Nil,
    /// An integer.
    Int(i64),
    /// A string, binary-safe.
    Bulk(Vec<u8>),
    /// A list.
    Array(Vec<Reply>),
    /// Redis answered with an error, or the call failed on the way (the driver's words).
    Error(String),
}

impl Reply {
    /// A scalar as text: a UTF-8 string, or an integer written out.
    pub(super) fn text(&self) -> Option<Cow<'_, str>> {
        match self {
            Reply::Bulk(bytes) => std::str::from_utf8(bytes).ok().map(Cow::Borrowed),
            Reply::Int(n) => Some(Cow::Owned(n.to_string())),
            _ => None,
        }
    }

    /// A scalar as a number.
    pub(super) fn number(&self) -> Option<u64> {
        match self {
            Reply::Int(n) => u64::try_from(*n).ok(),
            other => other.text()?.parse().ok(),
        }
    }

    /// The items of a list.
    pub(super) fn items(&self) -> Option<&[Reply]> {
        match self {
            Reply::Array(items) => Some(items),
            _ => None,
        }
    }

    /// Whether this is a string equal to `s`.
    fn is(&self, s: &str) -> bool {
        matches!(self, Reply::Bulk(b) if b == s.as_bytes())
    }
}

/// A claim `node:conn:name` under `key`, with what its seat keeps (`seat`: away, user and real
/// name on three lines, each empty for none or `+` and the text; anything else keeps nothing).
pub(super) fn parse_seat(key: &str, claim: &str, seat: &str) -> Option<Seat> {
    let mut parts = claim.splitn(3, ':');
    let node = parts.next()?.parse().ok()?;
    let conn = parts.next()?.parse().ok()?;
    let name = parts.next()?;
    let mut kept = seat.splitn(3, '\n').map(|part| part.strip_prefix('+'));
    let (away, user, realname) = (kept.next().flatten(), kept.next().flatten(), kept.next());
    let ident = user.map(|user| {
        Arc::new(Ident {
            user: user.to_owned(),
            realname: realname.flatten().unwrap_or_default().to_owned(),
        })
    });
    Some(Seat {
        node: NodeId(node),
        conn: ConnId(conn),
        name: Arc::from(name),
        key: Arc::from(key),
        away: away.map(Arc::from),
        ident,
    })
}

/// The room's epoch as a number, never 0: the hex digits Redis keeps (a node of any version
/// writes 16), or, for anything else, a hash of them.
pub(super) fn epoch_number(epoch: &str) -> u64 {
    let hashed = || {
        let fnv = epoch.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        fnv.max(1)
    };
    u64::from_str_radix(epoch, 16)
        .ok()
        .filter(|&e| e != 0)
        .unwrap_or_else(hashed)
}

/// The time of a stream entry: its ID's milliseconds (Redis's clock when it was appended).
pub(super) fn id_time(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

/// A chat kind as entries write it; one this version does not know (or none: an older node
/// wrote it) is plain.
pub(super) fn chat_kind(code: Option<&str>) -> ChatKind {
    match code {
        Some("action") => ChatKind::Action,
        Some("notice") => ChatKind::Notice,
        _ => ChatKind::Plain,
    }
}

/// A chat kind as entries write it.
pub(super) fn chat_kind_code(kind: ChatKind) -> &'static str {
    match kind {
        ChatKind::Plain => "plain",
        ChatKind::Action => "action",
        ChatKind::Notice => "notice",
    }
}

/// The snapshot script's answer: the snapshot and the last stream ID (the epoch it also carries
/// is the heartbeat's to check). A malformed claim is skipped with a note.
pub(super) fn parse_snapshot(reply: &Reply, notes: &mut Vec<Note>) -> Option<(Snapshot, String)> {
    let [pos, seq, epoch, last_id, claims, chats] = reply.items()? else {
        return None;
    };
    let mut history = Vec::new();
    for chat in chats.items()?.chunks(5) {
        let [id, seq, from, said, kind] = chat else {
            return None;
        };
        history.push(HistoryChat {
            seq: seq.number()?,
            time: id_time(&id.text()?)?,
            from: Arc::from(&*from.text()?),
            text: Arc::from(&*said.text()?),
            kind: chat_kind(Some(&kind.text()?)),
        });
    }
    let mut members = Vec::new();
    for triple in claims.items()?.chunks(3) {
        let [key, claim, seat] = triple else {
            return None;
        };
        match parse_seat(&key.text()?, &claim.text()?, &seat.text()?) {
            Some(seat) => members.push(seat),
            None => notes.push(Note {
                level: Level::Error,
                text: format!("skipping a malformed claim {claim:?}"),
            }),
        }
    }
    members.sort_by(|a, b| a.key.cmp(&b.key));
    let snapshot = Snapshot {
        epoch: epoch_number(&epoch.text()?),
        pos: pos.number()?,
        seq: seq.number()?,
        members,
        history,
        ..Snapshot::default()
    };
    Some((snapshot, last_id.text()?.into_owned()))
}

/// The entries of an `XREAD` reply of one stream: (ID, field-value pairs flattened). A
/// malformed entry is skipped with a note; `Nil` (nothing new within the block) has none.
pub(super) fn stream_entries<'r>(
    reply: &'r Reply,
    notes: &mut Vec<Note>,
) -> Vec<(String, &'r [Reply])> {
    let mut out = Vec::new();
    let Some(streams) = reply.items() else {
        return out;
    };
    // RESP2: [[key, entries]]; RESP3: {key: entries}, flattened to [key, entries].
    let entries = match streams {
        [Reply::Array(pair)] if pair.len() == 2 => &pair[1],
        [_, entries] => entries,
        _ => {
            notes.push(Note {
                level: Level::Error,
                text: format!("unexpected XREAD reply: {reply:?}"),
            });
            return out;
        }
    };
    for entry in entries.items().unwrap_or_default() {
        let parts = entry.items().unwrap_or_default();
        let id = parts.first().and_then(Reply::text);
        let fields = parts.get(1).and_then(Reply::items);
        let (Some(id), Some(fields)) = (id, fields) else {
            notes.push(Note {
                level: Level::Error,
                text: format!("skipping a malformed stream entry {entry:?}"),
            });
            continue;
        };
        out.push((id.into_owned(), fields));
    }
    out
}

/// A stream entry (its ID and fields) as a log entry; `None` if a field is missing or
/// malformed. Fields this version does not read are passed over, and so is an entry of a kind
/// it does not know (a newer node wrote it): [`Event::Unknown`], which only moves the position.
/// An older node's entries lack kinds and parting words: a chat is plain, a leave says nothing.
pub(super) fn parse_entry(id: &str, fields: &[Reply]) -> Option<Entry> {
    let get = |name: &str| {
        fields
            .chunks(2)
            .find(|kv| kv[0].is(name))
            .and_then(|kv| kv.get(1))
            .and_then(Reply::text)
    };
    let message = || get("message").map(|m| Arc::from(&*m));
    let event = match &*get("kind")? {
        "join" => Event::Joined {
            ident: get("user").map(|user| {
                Arc::new(Ident {
                    user: user.into_owned(),
                    realname: get("realname").unwrap_or_default().into_owned(),
                })
            }),
        },
        "chat" => Event::Chat {
            seq: get("seq")?.parse().ok()?,
            text: get("text")?.into_owned(),
            kind: chat_kind(get("chat_kind").as_deref()),
        },
        // A reason this version does not know (a newer node wrote it) is still a leave.
        "leave" => Event::Left {
            reason: CloseReason::from_code(&get("reason")?).unwrap_or(CloseReason::Disconnected),
            message: message(),
        },
        "rename" => Event::Renamed {
            name: Arc::from(&*get("to_name")?),
            key: Arc::from(&*get("to_key")?),
        },
        "away" => Event::Away { message: message() },
        // One this version cannot read (a newer node's action) only moves the position on.
        "moderate" => {
            let time = id_time(id)?;
            let for_ms = get("for_ms").map(|ms| ms.parse::<u64>().ok());
            let why = get("why").map(|w| Arc::from(&*w));
            let action = parse_moderation(&get("action")?, &get("target")?, why, &get("name")?);
            match (action, for_ms) {
                (Some(action), None) => Event::Moderated(Arc::new(stamp(&action, None, time))),
                (Some(action), Some(Some(ms))) => {
                    Event::Moderated(Arc::new(stamp(&action, Some(ms), time)))
                }
                _ => Event::Unknown,
            }
        }
        _ => Event::Unknown,
    };
    Some(Entry {
        pos: get("pos")?.parse().ok()?,
        time: id_time(id)?,
        node: NodeId(get("node")?.parse().ok()?),
        conn: ConnId(get("conn")?.parse().ok()?),
        name: Arc::from(&*get("name")?),
        key: Arc::from(&*get("key")?),
        event,
    })
}

/// A moderation proposal as the propose script takes it: the action's code, then its target,
/// how long it lasts in ms (`''` for until lifted) and its reason (`''` for none, else `+` and
/// the reason), one per line (none of them holds a line break: the gate refuses those).
pub(super) fn moderation_args(action: &Moderation, for_ms: Option<u64>) -> (&'static str, String) {
    let name = |key: &str| format!("n:{key}");
    let target = |t: &BanTarget| match t {
        BanTarget::Name(key) => name(key),
        net => format!("a:{}", target_text(net)),
    };
    let reason = |r: &Option<Arc<str>>| r.as_deref().map_or_else(String::new, |r| format!("+{r}"));
    let (code, target, reason) = match action {
        Moderation::Kick { key, reason: r, .. } => ("kick", name(key), reason(r)),
        Moderation::Ban(ban) => ("ban", target(&ban.target), reason(&ban.reason)),
        Moderation::Unban(t) => ("unban", target(t), String::new()),
        Moderation::Mute(mute) => ("mute", name(&mute.key), String::new()),
        Moderation::Unmute { key } => ("unmute", name(key), String::new()),
    };
    let for_ms = for_ms.map_or_else(String::new, |ms| ms.to_string());
    (code, format!("{target}\n{for_ms}\n{reason}"))
}

/// A moderation entry's action from its fields (`by`: the operator's name), times unset; `None`
/// if malformed.
fn parse_moderation(
    code: &str,
    target: &str,
    why: Option<Arc<str>>,
    by: &str,
) -> Option<Moderation> {
    let target = match target.split_once(':')? {
        ("n", key) => BanTarget::Name(Arc::from(key)),
        ("a", net) => match parse_target(net, u32::MAX)? {
            Target::Net { addr, prefix } => BanTarget::Net { addr, prefix },
            Target::Name(_) => return None,
        },
        _ => return None,
    };
    let key = || match &target {
        BanTarget::Name(key) => Some(key.clone()),
        BanTarget::Net { .. } => None,
    };
    Some(match code {
        "kick" => Moderation::Kick {
            name: key()?,
            key: key()?,
            reason: why,
        },
        "ban" => Moderation::Ban(Ban {
            target,
            until: None,
            reason: why,
            by: by.into(),
            since: 0,
        }),
        "unban" => Moderation::Unban(target),
        "mute" => Moderation::Mute(Mute {
            key: key()?,
            until: None,
            by: by.into(),
        }),
        "unmute" => Moderation::Unmute { key: key()? },
        _ => return None,
    })
}
