//! What the Lua scripts do, in Rust, over an in-memory model of the room's keys and stream:
//! enough Redis for the log's state machine to run without one. It follows the scripts line by
//! line (`chat-core/src/log/redis/*.lua`) and checks the key layout of every call.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use chat_proto::{ChatKind, CloseReason, Ident, Member};

use crate::log::redis::{Call, Command, Reply, Script};
use crate::{ConnId, Entry, Event, NodeId};

/// A stream ID, `ms-seq`.
type StreamId = (u64, u64);

/// The room's keys in one Redis, and Redis's clock.
#[derive(Debug, Default)]
pub(crate) struct Redis {
    /// Redis's clock, in ms.
    pub(crate) now_ms: u64,
    /// `meta`.
    pos: u64,
    seq: u64,
    node_count: u64,
    epoch: Option<String>,
    max_members: Option<u64>,
    /// `nodes`: node -> lease expiry.
    nodes: BTreeMap<u64, u64>,
    /// `versions`: the nodes that read renames and away (node -> 3).
    versions: BTreeMap<u64, u64>,
    /// `names`: folded name -> `node:conn:name`.
    names: BTreeMap<String, String>,
    /// `seats`: folded name -> the claim, then away, user and real name, each `""` or `+...`.
    seats: BTreeMap<String, String>,
    /// `members:NODE`.
    members: BTreeMap<u64, BTreeSet<String>>,
    /// `done:NODE`: the token of the node's last batch, and its answers (kept a minute, which
    /// outlasts every test's retry).
    done: BTreeMap<u64, (String, Vec<Reply>)>,
    /// `log`: (ID as (ms, seq), fields), trimmed to the length each append asks for.
    stream: VecDeque<(StreamId, Vec<(String, String)>)>,
    /// Stream IDs only grow, across restarts too (they are Redis's time).
    last_id: StreamId,
    /// Every entry appended, one log per life of Redis (a restart without persistence begins
    /// another): what every node must apply.
    pub(crate) logs: Vec<Vec<Entry>>,
}

/// A claim `node:conn:name`, split.
fn claim_parts(claim: &str) -> Option<(&str, &str, &str)> {
    let mut parts = claim.splitn(3, ':');
    let (n, c, name) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(n) && digits(c)).then_some((n, c, name))
}

/// A chat kind as the scripts pass it.
fn reply_kind(code: &str) -> ChatKind {
    match code {
        "action" => ChatKind::Action,
        "notice" => ChatKind::Notice,
        _ => ChatKind::Plain,
    }
}

fn bulk(s: impl Into<String>) -> Reply {
    Reply::Bulk(s.into().into_bytes())
}

fn int(n: u64) -> Reply {
    Reply::Int(i64::try_from(n).unwrap())
}

fn num(s: &str) -> u64 {
    s.parse().unwrap_or(0)
}

/// An optional text as the scripts pass it: `""` for none, else `+` and the text.
fn optional(s: &str) -> Option<Arc<str>> {
    s.strip_prefix('+').map(Arc::from)
}

/// A stream ID `ms-seq`.
fn parse_id(id: &str) -> StreamId {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (num(ms), num(seq))
}

impl Redis {
    pub(crate) fn new() -> Self {
        Self {
            logs: vec![Vec::new()],
            ..Self::default()
        }
    }

    /// Redis restarted without persistence: every key is gone.
    pub(crate) fn restart_empty(&mut self) {
        let (now_ms, last_id, mut logs) =
            (self.now_ms, self.last_id, std::mem::take(&mut self.logs));
        logs.push(Vec::new());
        *self = Self {
            now_ms,
            last_id,
            logs,
            ..Self::default()
        };
    }

    /// The log of this life of Redis.
    pub(crate) fn log(&self) -> &[Entry] {
        self.logs.last().map_or(&[], Vec::as_slice)
    }

    /// The display names of the claims, sorted by folded name.
    pub(crate) fn claimed_names(&self) -> Vec<String> {
        let names = self.names.values().filter_map(|c| claim_parts(c));
        names.map(|(_, _, name)| name.to_owned()).collect()
    }

    /// The members as the claims and their seats hold them, sorted by folded name.
    pub(crate) fn seated_members(&self) -> Vec<Member> {
        let seated = self.names.iter().filter_map(|(key, claim)| {
            let (_, _, name) = claim_parts(claim)?;
            let [away, user, real] = self.seat_of(key, claim);
            let ident = user.strip_prefix('+').map(|user| {
                Arc::new(Ident {
                    user: user.to_owned(),
                    realname: real.strip_prefix('+').unwrap_or_default().to_owned(),
                })
            });
            Some(Member {
                name: Arc::from(name),
                away: optional(&away),
                ident,
            })
        });
        seated.collect()
    }

    /// Whether `node`'s lease has run out (or it holds none): the others may sweep it.
    pub(crate) fn lease_expired(&self, node: NodeId) -> bool {
        self.nodes
            .get(&node.0)
            .is_none_or(|expiry| *expiry < self.now_ms)
    }

    /// Who holds each claim, as (node, conn).
    pub(crate) fn claim_holders(&self) -> Vec<(NodeId, ConnId)> {
        let claims = self.names.values().filter_map(|c| claim_parts(c));
        claims
            .map(|(n, c, _)| (NodeId(num(n)), ConnId(num(c))))
            .collect()
    }

    /// Runs `call` as Redis would, atomically.
    pub(crate) fn run(&mut self, call: &Call) -> Reply {
        match &call.command {
            Command::Script { script, keys, args } => {
                let prefix = self.check_keys(keys);
                let a: Vec<&str> = args.iter().map(String::as_str).collect();
                match script {
                    Script::Register => self.register(&a),
                    Script::Heartbeat => self.heartbeat(&a),
                    Script::Propose => {
                        assert_eq!(keys[4], format!("{prefix}members:{}", a[0]), "KEYS[5]");
                        assert_eq!(keys[5], format!("{prefix}done:{}", a[0]), "KEYS[6]");
                        self.propose(&a)
                    }
                    Script::Sweep => self.sweep(&a),
                    Script::Snapshot => self.snapshot(&a),
                }
            }
            Command::Plain(args) if args.first().is_some_and(|a| a == "PING") => bulk("PONG"),
            Command::Plain(args) => self.xread(args),
        }
    }

    /// The four keys every script takes, under one hash tag; returns their prefix.
    fn check_keys(&self, keys: &[String]) -> String {
        let prefix = keys[0].strip_suffix("meta").expect("KEYS[1] is meta");
        assert!(
            prefix.starts_with("chat:{") && prefix.ends_with("}:"),
            "{prefix}"
        );
        for (key, name) in keys[1..4].iter().zip(["nodes", "names", "log"]) {
            assert_eq!(*key, format!("{prefix}{name}"));
        }
        prefix.to_owned()
    }

    /// common.lua's `check`.
    fn check(&self, node: &str, epoch: &str) -> &'static str {
        if self.epoch.as_deref() != Some(epoch) {
            return "RESET";
        }
        match self.nodes.get(&num(node)) {
            Some(&expiry) if expiry >= self.now_ms => "OK",
            _ => "FENCED",
        }
    }

    /// common.lua's `holds`: the name held.
    fn holds(&self, key: &str, node: &str, conn: &str) -> Option<String> {
        let (n, c, name) = self.names.get(key).and_then(|c| claim_parts(c))?;
        (n == node && c == conn).then(|| name.to_owned())
    }

    /// common.lua's `seat_of`: away, user, real name (each `""` or `+...`).
    fn seat_of(&self, key: &str, claim: &str) -> [String; 3] {
        let kept = self
            .seats
            .get(key)
            .and_then(|k| k.strip_prefix(claim)?.strip_prefix('\n'));
        let parts = kept.map(|k| k.splitn(3, '\n').map(str::to_owned).collect::<Vec<_>>());
        match parts.as_deref() {
            Some([away, user, real]) => [away.clone(), user.clone(), real.clone()],
            _ => Default::default(),
        }
    }

    /// common.lua's `keep_seat`.
    fn keep_seat(&mut self, key: &str, claim: &str, [away, user, real]: [&str; 3]) {
        let kept = format!("{claim}\n{away}\n{user}\n{real}");
        self.seats.insert(key.to_owned(), kept);
    }

    /// common.lua's `append`, keeping the entry in the log of this life of Redis too.
    fn append(&mut self, trim: &str, parts: [&str; 4], event: Event) {
        self.pos += 1;
        let [node, conn, name, key] = parts;
        let mut fields: Vec<(String, String)> = vec![("pos".into(), self.pos.to_string())];
        for (field, value) in ["node", "conn", "name", "key"].into_iter().zip(parts) {
            fields.push((field.into(), value.into()));
        }
        let message = |m: &Option<Arc<str>>| -> Vec<(&str, String)> {
            m.iter().map(|m| ("message", m.to_string())).collect()
        };
        let tail: Vec<(&str, String)> = match &event {
            Event::Joined { ident } => {
                let mut tail = vec![("kind", "join".into())];
                if let Some(ident) = ident {
                    tail.push(("user", ident.user.clone()));
                    tail.push(("realname", ident.realname.clone()));
                }
                tail
            }
            Event::Chat { seq, text, kind } => {
                let kind = match kind {
                    ChatKind::Plain => "plain",
                    ChatKind::Action => "action",
                    ChatKind::Notice => "notice",
                };
                vec![
                    ("kind", "chat".into()),
                    ("seq", seq.to_string()),
                    ("text", text.clone()),
                    ("chat_kind", kind.into()),
                ]
            }
            Event::Left { reason, message: m } => {
                let head = [("kind", "leave".into()), ("reason", reason.code().into())];
                head.into_iter().chain(message(m)).collect()
            }
            Event::Renamed { name, key } => vec![
                ("kind", "rename".into()),
                ("to_name", name.to_string()),
                ("to_key", key.to_string()),
            ],
            Event::Away { message: m } => [("kind", "away".into())]
                .into_iter()
                .chain(message(m))
                .collect(),
            Event::Unknown
            | Event::Registered { .. }
            | Event::Unregistered
            | Event::Moderated(_) => unreachable!("the scripts write no such entry"),
        };
        fields.extend(tail.into_iter().map(|(f, v)| (f.to_owned(), v)));
        // XADD's `*`: Redis's time, or one past the last ID if the clock is behind it.
        self.last_id = if self.now_ms > self.last_id.0 {
            (self.now_ms, 0)
        } else {
            (self.last_id.0, self.last_id.1 + 1)
        };
        self.stream.push_back((self.last_id, fields));
        while self.stream.len() > usize::try_from(num(trim)).unwrap() {
            self.stream.pop_front();
        }
        let entry = Entry {
            pos: self.pos,
            time: self.last_id.0,
            node: NodeId(num(node)),
            conn: ConnId(num(conn)),
            name: Arc::from(name),
            key: Arc::from(key),
            event,
        };
        self.logs.last_mut().unwrap().push(entry);
    }

    /// register.lua.
    fn register(&mut self, a: &[&str]) -> Reply {
        let epoch = self.epoch.get_or_insert_with(|| a[0].to_owned()).clone();
        let max = *self.max_members.get_or_insert(num(a[2]));
        self.node_count += 1;
        self.nodes.insert(self.node_count, self.now_ms + num(a[1]));
        self.versions.insert(self.node_count, 3);
        Reply::Array(vec![
            int(self.node_count),
            bulk(epoch),
            int(self.now_ms),
            int(max),
        ])
    }

    /// heartbeat.lua.
    fn heartbeat(&mut self, a: &[&str]) -> Reply {
        let state = self.check(a[0], a[1]);
        if state == "OK" {
            self.nodes.insert(num(a[0]), self.now_ms + num(a[2]));
        }
        Reply::Array(vec![bulk(state), int(self.now_ms)])
    }

    /// propose.lua.
    fn propose(&mut self, a: &[&str]) -> Reply {
        let (node, epoch, trim) = (a[0], a[1], a[2]);
        let max = self.max_members.unwrap_or(num(a[3]));
        let deadline = num(a[4]);
        let token = a[5];
        if let Some((last, answers)) = self.done.get(&num(node))
            && last == token
        {
            return Reply::Array(answers.clone());
        }
        if deadline > 0 && self.now_ms > deadline {
            return bulk("EXPIRED");
        }
        let state = self.check(node, epoch);
        if state != "OK" {
            return bulk(state);
        }
        let proposals: Vec<[&str; 6]> = a[6..]
            .chunks(6)
            .map(|p| {
                p.try_into()
                    .unwrap_or_else(|_| panic!("a proposal of {p:?}"))
            })
            .collect();
        // propose.lua's `all_read_new`, asked once per batch.
        let all_new = self.nodes.keys().all(|n| self.versions.contains_key(n));
        let answers = proposals.into_iter().map(|[kind, conn, name, key, x, y]| {
            if kind == "join" {
                return bulk(self.join(trim, [node, conn, name, key], [x, y], max));
            }
            let Some(held) = self.holds(key, node, conn) else {
                return bulk("NOT_HOLDER");
            };
            if matches!(kind, "rename" | "away") && !all_new {
                return bulk("OLD_NODES");
            }
            let parts = [node, conn, &held, key];
            bulk(match kind {
                "chat" => {
                    self.seq += 1;
                    let (seq, text, kind) = (self.seq, x.to_owned(), reply_kind(y));
                    self.append(trim, parts, Event::Chat { seq, text, kind });
                    "OK"
                }
                "leave" => {
                    self.names.remove(key);
                    self.seats.remove(key);
                    self.members.entry(num(node)).or_default().remove(key);
                    let reason = CloseReason::from_code(x).unwrap_or(CloseReason::Disconnected);
                    let message = optional(y);
                    self.append(trim, parts, Event::Left { reason, message });
                    "OK"
                }
                "rename" => self.rename(trim, parts, x, y),
                "away" => {
                    let claim = format!("{node}:{conn}:{held}");
                    let [_, user, real] = self.seat_of(key, &claim);
                    self.keep_seat(key, &claim, [x, &user, &real]);
                    let message = optional(x);
                    self.append(trim, parts, Event::Away { message });
                    "OK"
                }
                _ => "BAD_KIND",
            })
        });
        let answers: Vec<Reply> = answers.collect();
        self.done
            .insert(num(node), (token.to_owned(), answers.clone()));
        Reply::Array(answers)
    }

    /// propose.lua's `join`.
    fn join(
        &mut self,
        trim: &str,
        parts: [&str; 4],
        [user, real]: [&str; 2],
        max: u64,
    ) -> &'static str {
        let [node, conn, name, key] = parts;
        if self.names.contains_key(key) {
            return "NAME_TAKEN";
        }
        if self.names.len() as u64 >= max {
            return "ROOM_FULL";
        }
        let claim = format!("{node}:{conn}:{name}");
        self.names.insert(key.to_owned(), claim.clone());
        self.members
            .entry(num(node))
            .or_default()
            .insert(key.to_owned());
        let real = if user.is_empty() {
            String::new()
        } else {
            format!("+{real}")
        };
        self.keep_seat(key, &claim, ["", user, &real]);
        let ident = user.strip_prefix('+').map(|user| {
            Arc::new(Ident {
                user: user.to_owned(),
                realname: real[1..].to_owned(),
            })
        });
        self.append(trim, parts, Event::Joined { ident });
        "OK"
    }

    /// propose.lua's `rename`.
    fn rename(
        &mut self,
        trim: &str,
        parts: [&str; 4],
        to_name: &str,
        to_key: &str,
    ) -> &'static str {
        let [node, conn, held, key] = parts;
        if to_key != key && self.names.contains_key(to_key) {
            return "NAME_TAKEN";
        }
        let claim = format!("{node}:{conn}:{held}");
        let [away, user, real] = self.seat_of(key, &claim);
        self.names.remove(key);
        self.seats.remove(key);
        let mine = self.members.entry(num(node)).or_default();
        mine.remove(key);
        mine.insert(to_key.to_owned());
        let to_claim = format!("{node}:{conn}:{to_name}");
        self.names.insert(to_key.to_owned(), to_claim.clone());
        self.keep_seat(to_key, &to_claim, [&away, &user, &real]);
        let (name, key) = (Arc::from(to_name), Arc::from(to_key));
        self.append(trim, parts, Event::Renamed { name, key });
        "OK"
    }

    /// sweep.lua.
    fn sweep(&mut self, a: &[&str]) -> Reply {
        let targets: Vec<String> = match a.get(1) {
            Some(node) => vec![(*node).to_owned()],
            None => {
                let lost = self.nodes.iter().filter(|(_, e)| **e < self.now_ms);
                lost.map(|(n, _)| n.to_string()).collect()
            }
        };
        let reason = a.get(2).copied().unwrap_or("server_lost");
        let reason = CloseReason::from_code(reason).unwrap_or(CloseReason::Disconnected);
        let mut count = 0;
        for node in targets {
            let keys = self.members.remove(&num(&node)).unwrap_or_default();
            for key in keys {
                let Some(claim) = self.names.get(&key).cloned() else {
                    continue;
                };
                let Some((n, c, name)) = claim_parts(&claim) else {
                    continue;
                };
                if n == node {
                    self.names.remove(&key);
                    self.seats.remove(&key);
                    let event = Event::Left {
                        reason,
                        message: None,
                    };
                    self.append(a[0], [n, c, name, &key], event);
                    count += 1;
                }
            }
            self.nodes.remove(&num(&node));
            self.versions.remove(&num(&node));
        }
        int(count)
    }

    /// snapshot.lua.
    fn snapshot(&mut self, a: &[&str]) -> Reply {
        let want = a.first().map_or(0, |w| num(w)) as usize;
        let last = self
            .stream
            .back()
            .map_or("0-0".into(), |((ms, seq), _)| format!("{ms}-{seq}"));
        let field = |fields: &[(String, String)], name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let mut found = Vec::new();
        for ((ms, n), fields) in self.stream.iter().rev().take(want * 20) {
            if found.len() == want {
                break;
            }
            if field(fields, "kind").as_deref() == Some("chat") {
                let [seq, name, text] = ["seq", "name", "text"].map(|f| field(fields, f).unwrap());
                let kind = field(fields, "chat_kind").unwrap_or_default();
                let id = format!("{ms}-{n}");
                found.push([bulk(id), bulk(seq), bulk(name), bulk(text), bulk(kind)]);
            }
        }
        let history = found.into_iter().rev().flatten().collect();
        let claims = self.names.iter().flat_map(|(k, c)| {
            let [away, user, real] = self.seat_of(k, c);
            [
                bulk(k.clone()),
                bulk(c.clone()),
                bulk(format!("{away}\n{user}\n{real}")),
            ]
        });
        Reply::Array(vec![
            bulk(self.pos.to_string()),
            bulk(self.seq.to_string()),
            bulk(self.epoch.clone().unwrap_or_default()),
            bulk(last),
            Reply::Array(claims.collect()),
            Reply::Array(history),
        ])
    }

    /// `XREAD COUNT n BLOCK ms STREAMS log ID`: entries after ID, or `Nil` (the block ran out).
    fn xread(&self, args: &[String]) -> Reply {
        let [cmd, count, n, block, _, streams, key, id] = args else {
            panic!("not a read: {args:?}");
        };
        assert_eq!(
            [&**cmd, &**count, &**block, &**streams],
            ["XREAD", "COUNT", "BLOCK", "STREAMS"]
        );
        assert!(key.ends_with("}:log"), "{key}");
        let after = parse_id(id);
        let entries: Vec<Reply> = self
            .stream
            .iter()
            .filter(|(i, _)| *i > after)
            .take(n.parse().unwrap())
            .map(|(i, fields)| {
                let flat = fields
                    .iter()
                    .flat_map(|(k, v)| [bulk(k.clone()), bulk(v.clone())]);
                let id = format!("{}-{}", i.0, i.1);
                Reply::Array(vec![bulk(id), Reply::Array(flat.collect())])
            })
            .collect();
        if entries.is_empty() {
            return Reply::Nil;
        }
        Reply::Array(vec![Reply::Array(vec![
            bulk(key.clone()),
            Reply::Array(entries),
        ])])
    }
}
