//! What the Lua scripts do, in Rust, over an in-memory model of the room's keys and stream:
//! enough Redis for the log's state machine to run without one. It follows the scripts line by
//! line (`chat-core/src/log/redis/*.lua`) and checks the key layout of every call.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use chat_proto::CloseReason;

use crate::log::redis::{Call, Command, Reply, Script};
use crate::{ConnId, Entry, Event, NodeId};

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
    /// `names`: folded name -> `node:conn:name`.
    names: BTreeMap<String, String>,
    /// `members:NODE`.
    members: BTreeMap<u64, BTreeSet<String>>,
    /// `log`: (ID, fields), trimmed to the length each append asks for.
    stream: VecDeque<(u64, Vec<(String, String)>)>,
    /// Stream IDs only grow, across restarts too (they are Redis's time).
    last_id: u64,
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

fn bulk(s: impl Into<String>) -> Reply {
    Reply::Bulk(s.into().into_bytes())
}

fn int(n: u64) -> Reply {
    Reply::Int(i64::try_from(n).unwrap())
}

fn num(s: &str) -> u64 {
    s.parse().unwrap_or(0)
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
                        self.propose(&a)
                    }
                    Script::Sweep => self.sweep(&a),
                    Script::Snapshot => self.snapshot(&a),
                }
            }
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

    /// common.lua's `holds`.
    fn holds(&self, key: &str, node: &str, conn: &str) -> bool {
        let claim = self.names.get(key).and_then(|c| claim_parts(c));
        claim.is_some_and(|(n, c, _)| n == node && c == conn)
    }

    /// common.lua's `append`, keeping the entry in the log of this life of Redis too.
    fn append(&mut self, trim: &str, parts: [&str; 4], event: Event) {
        self.pos += 1;
        let [node, conn, name, key] = parts;
        let mut fields: Vec<(String, String)> = vec![("pos".into(), self.pos.to_string())];
        for (field, value) in ["node", "conn", "name", "key"].into_iter().zip(parts) {
            fields.push((field.into(), value.into()));
        }
        let tail: Vec<(&str, String)> = match &event {
            Event::Joined => vec![("kind", "join".into())],
            Event::Chat { seq, text } => {
                vec![
                    ("kind", "chat".into()),
                    ("seq", seq.to_string()),
                    ("text", text.clone()),
                ]
            }
            Event::Left { reason } => {
                vec![("kind", "leave".into()), ("reason", reason.code().into())]
            }
        };
        fields.extend(tail.into_iter().map(|(f, v)| (f.to_owned(), v)));
        self.last_id += 1;
        self.stream.push_back((self.last_id, fields));
        while self.stream.len() > usize::try_from(num(trim)).unwrap() {
            self.stream.pop_front();
        }
        let entry = Entry {
            pos: self.pos,
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
        if deadline > 0 && self.now_ms > deadline {
            return bulk("EXPIRED");
        }
        let state = self.check(node, epoch);
        if state != "OK" {
            return bulk(state);
        }
        let answers = a[5..].chunks(5).map(|p| {
            let [kind, conn, name, key, extra] = p else {
                panic!("a proposal of {p:?}")
            };
            let parts = [node, *conn, *name, *key];
            bulk(match *kind {
                "join" => self.join(trim, parts, max),
                "chat" if !self.holds(key, node, conn) => "NOT_HOLDER",
                "chat" => {
                    self.seq += 1;
                    let (seq, text) = (self.seq, (*extra).to_owned());
                    self.append(trim, parts, Event::Chat { seq, text });
                    "OK"
                }
                "leave" if !self.holds(key, node, conn) => "NOT_HOLDER",
                "leave" => {
                    self.names.remove(*key);
                    self.members.entry(num(node)).or_default().remove(*key);
                    let reason = CloseReason::from_code(extra).unwrap_or(CloseReason::Disconnected);
                    self.append(trim, parts, Event::Left { reason });
                    "OK"
                }
                _ => "BAD_KIND",
            })
        });
        Reply::Array(answers.collect())
    }

    /// propose.lua's `join`.
    fn join(&mut self, trim: &str, parts: [&str; 4], max: u64) -> &'static str {
        let [node, conn, name, key] = parts;
        if self.names.contains_key(key) {
            return "NAME_TAKEN";
        }
        if self.names.len() as u64 >= max {
            return "ROOM_FULL";
        }
        self.names
            .insert(key.to_owned(), format!("{node}:{conn}:{name}"));
        self.members
            .entry(num(node))
            .or_default()
            .insert(key.to_owned());
        self.append(trim, parts, Event::Joined);
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
                    self.append(a[0], [n, c, name, &key], Event::Left { reason });
                    count += 1;
                }
            }
            self.nodes.remove(&num(&node));
        }
        int(count)
    }

    /// snapshot.lua.
    fn snapshot(&mut self, a: &[&str]) -> Reply {
        let want = a.first().map_or(0, |w| num(w)) as usize;
        let last = self
            .stream
            .back()
            .map_or("0-0".into(), |(id, _)| format!("{id}-0"));
        let field = |fields: &[(String, String)], name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let mut found = Vec::new();
        for (_, fields) in self.stream.iter().rev().take(want * 20) {
            if found.len() == want {
                break;
            }
            if field(fields, "kind").as_deref() == Some("chat") {
                let [seq, name, text] = ["seq", "name", "text"].map(|f| field(fields, f).unwrap());
                found.push([bulk(seq), bulk(name), bulk(text)]);
            }
        }
        let history = found.into_iter().rev().flatten().collect();
        let claims = self
            .names
            .iter()
            .flat_map(|(k, c)| [bulk(k.clone()), bulk(c.clone())]);
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
        let after = num(id.split('-').next().unwrap());
        let entries: Vec<Reply> = self
            .stream
            .iter()
            .filter(|(i, _)| *i > after)
            .take(n.parse().unwrap())
            .map(|(i, fields)| {
                let flat = fields
                    .iter()
                    .flat_map(|(k, v)| [bulk(k.clone()), bulk(v.clone())]);
                Reply::Array(vec![bulk(format!("{i}-0")), Reply::Array(flat.collect())])
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
