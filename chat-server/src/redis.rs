//! The driver of a room shared through Redis (`--redis`): the connections and the awaits
//! around [`RedisLog`], which makes every decision (keys, script arguments, batches, verdicts,
//! deadlines, leases, gaps and resets; see its module).
//!
//! The room task owns the log beside the hub: proposals go in, room inputs come out in the same
//! step. The calls it gives out go to one task per [`Lane`], each with a connection of its own,
//! which runs them one at a time and sends the answers back to the room task as events.

use std::io;
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, RedisError, RedisResult, Value};
use async_channel::{Receiver, Sender};
use chat_core::log::redis::{
    COMMAND_TIMEOUT, Call, CallId, Command, Lane, Level, Note, Output, RedisLog, Reply, Script,
    Settings,
};
use chat_core::{Input, NodeId, Proposal, Snapshot};
use chat_proto::CloseReason;
use futures_lite::FutureExt;
use smol::{LocalExecutor, Timer};

use crate::config::SharedConfig;
use crate::conn::Event;

/// Calls waiting for a lane: one running, and one that replaces it (a read given up).
const LANE_QUEUE: usize = 4;
/// How long a reply may still come once a call's timer has fired: a timer that fires late
/// (this process stalled: a VM paused, a swap storm) fires beside a reply already waiting in
/// the socket, which the connection's own task has not read yet.
const REPLY_GRACE: Duration = Duration::from_millis(50);

/// The scripts, loaded once (and again after NOSCRIPT, by `redis::Script`).
#[derive(Debug)]
struct Scripts([::redis::Script; 5]);

impl Scripts {
    fn new() -> Self {
        Self(Script::ALL.map(|script| ::redis::Script::new(script.source())))
    }

    fn get(&self, script: Script) -> &::redis::Script {
        let at = Script::ALL.iter().position(|s| *s == script);
        &self.0[at.unwrap_or(0)]
    }
}

/// A node that has entered the room, before its lanes run.
#[derive(Debug)]
pub(crate) struct Entered {
    machine: RedisLog,
    client: Client,
}

/// What became of a call: Redis's reply, or `None` when no connection could be made.
#[derive(Debug)]
pub(crate) struct Answer {
    id: CallId,
    reply: Option<Reply>,
}

/// The room's log in Redis as the room task holds it: the state machine, and the lanes its
/// calls go to.
#[derive(Debug)]
pub(crate) struct Log {
    machine: RedisLog,
    client: Client,
    lanes: [Sender<Call>; 3],
}

/// Joins the shared room: registers this node and takes a snapshot. The room is built from what
/// this returns, then [`Entered::spawn`] starts the lanes.
pub(crate) async fn enter(
    config: &SharedConfig,
    max_members: u32,
    history: u32,
) -> io::Result<(Entered, NodeId, Snapshot)> {
    let client = Client::open(config.url.as_str())
        .map_err(|e| io::Error::other(format!("bad Redis URL '{}': {e}", config.url)))?;
    let settings = Settings {
        room: config.room.clone(),
        lease: config.lease,
        trim_len: config.trim_len,
        max_members,
        history,
        ..Settings::new(&config.room)
    };
    let mut machine = RedisLog::new(settings, crate::random::seed(), Instant::now());
    let unreachable =
        |e: RedisError| io::Error::other(format!("cannot use Redis at {}: {e}", config.url));
    let mut conn = connect(&client).await.map_err(unreachable)?;
    let scripts = Scripts::new();
    let mut last = String::from("no answer");
    while let Some(output) = machine.poll_output() {
        match output {
            Output::Call(call) => {
                let value = execute(&mut conn, &scripts, &call).await;
                let value = value.map_err(unreachable)?;
                machine.handle_reply(Instant::now(), call.id, convert(value));
            }
            Output::Entered { node, snapshot } => {
                log::info!(
                    "joined room '{}' in Redis as node {} ({}) at position {}",
                    config.room,
                    node.0,
                    config.label,
                    snapshot.pos
                );
                return Ok((Entered { machine, client }, node, snapshot));
            }
            Output::Note(note) => {
                log_note(&note);
                last = note.text;
            }
            Output::Input(_) => {} // none before the room exists
        }
    }
    Err(io::Error::other(format!(
        "cannot use Redis at {}: {last}",
        config.url
    )))
}

impl Entered {
    /// Starts the lanes on `ex`; their answers come to the room task on `events`.
    pub(crate) fn spawn(self, ex: &LocalExecutor<'_>, events: Sender<Event>) -> Log {
        let lanes = Lane::ALL.map(|_| {
            let (calls_tx, calls_rx) = async_channel::bounded(LANE_QUEUE);
            ex.spawn(lane(self.client.clone(), calls_rx, events.clone()))
                .detach();
            calls_tx
        });
        Log {
            machine: self.machine,
            client: self.client,
            lanes,
        }
    }
}

impl Log {
    /// The room proposes `proposal` as `node`.
    pub(crate) fn propose(&mut self, node: NodeId, proposal: Proposal) {
        self.machine.propose(Instant::now(), node, proposal);
    }

    /// A lane's answer.
    pub(crate) fn handle_answer(&mut self, answer: Answer) {
        let now = Instant::now();
        match answer.reply {
            Some(reply) => self.machine.handle_reply(now, answer.id, reply),
            None => self.machine.handle_unreachable(now, answer.id),
        }
    }

    /// Deadlines up to now.
    pub(crate) fn handle_timeout(&mut self) {
        self.machine.handle_timeout(Instant::now());
    }

    /// The next input for the room; calls go to their lanes and notes to the log on the way.
    pub(crate) fn poll_input(&mut self) -> Option<Input> {
        loop {
            match self.machine.poll_output()? {
                Output::Input(input) => return Some(input),
                Output::Call(call) => self.dispatch(call),
                Output::Note(note) => log_note(&note),
                Output::Entered { .. } => {} // only before the room exists
            }
        }
    }

    #[must_use]
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.machine.poll_timeout()
    }

    fn dispatch(&mut self, call: Call) {
        let lane = Lane::ALL.iter().position(|l| *l == call.lane).unwrap_or(0);
        let id = call.id;
        if self.lanes[lane].try_send(call).is_err() {
            log::error!(
                "driver bug: the {:?} lane cannot take a call",
                Lane::ALL[lane]
            );
            self.machine.handle_unreachable(Instant::now(), id);
        }
    }

    /// Tells the others this node is going: its members leave with `reason` now, not at the
    /// sweep.
    pub(crate) async fn retire(mut self, reason: CloseReason) {
        let call = self.machine.retire(Instant::now(), reason);
        let scripts = Scripts::new();
        let run = async {
            let mut conn = connect(&self.client).await?;
            execute(&mut conn, &scripts, &call).await
        };
        let value = run.or(time_out(call.timeout)).await;
        self.machine
            .handle_reply(Instant::now(), call.id, reply(value));
        while let Some(output) = self.machine.poll_output() {
            if let Output::Note(note) = output {
                log_note(&note);
            }
        }
    }
}

/// Runs the calls of one lane, in order, on a connection made again after it fails. A call that
/// comes while one runs replaces it: the log gave that one up.
async fn lane(client: Client, calls: Receiver<Call>, events: Sender<Event>) {
    enum Ran {
        Done(Option<Reply>),
        Replaced(Option<Call>),
    }
    let scripts = Scripts::new();
    let mut conn: Option<MultiplexedConnection> = None;
    let mut next = None;
    loop {
        let call = match next.take() {
            Some(call) => call,
            None => match calls.recv().await {
                Ok(call) => call,
                Err(_) => return,
            },
        };
        if call.fresh {
            // Another lane found the link broken, or this is a batch tried again.
            conn = None;
        }
        let done = async { Ran::Done(run(&client, &scripts, &mut conn, &call).await) };
        let replaced = async { Ran::Replaced(calls.recv().await.ok()) };
        let reply = match done.or(replaced).await {
            Ran::Done(reply) => reply,
            Ran::Replaced(Some(newer)) => {
                // A blocking read holds its connection: it goes with it.
                conn = None;
                next = Some(newer);
                continue;
            }
            Ran::Replaced(None) => return,
        };
        let answer = Answer { id: call.id, reply };
        if events.send(Event::Redis(answer)).await.is_err() {
            return;
        }
    }
}

/// Runs `call` on `conn`, connecting first if there is none: `None` if no connection could be
/// made. A failed call drops the connection.
async fn run(
    client: &Client,
    scripts: &Scripts,
    conn: &mut Option<MultiplexedConnection>,
    call: &Call,
) -> Option<Reply> {
    if conn.is_none() {
        match connect(client).await {
            Ok(made) => *conn = Some(made),
            Err(error) => {
                log::debug!("redis: cannot connect: {error}");
                return None;
            }
        }
    }
    let result = execute(conn.as_mut()?, scripts, call).await;
    if result.is_err() {
        *conn = None;
    }
    Some(reply(result))
}

/// Sends `call` and waits for its reply, at most `call.timeout`.
async fn execute(
    conn: &mut MultiplexedConnection,
    scripts: &Scripts,
    call: &Call,
) -> RedisResult<Value> {
    let send = async {
        match &call.command {
            Command::Script { script, keys, args } => {
                let mut invocation = scripts.get(*script).prepare_invoke();
                for key in keys {
                    invocation.key(key);
                }
                for arg in args {
                    invocation.arg(arg);
                }
                invocation.invoke_async(conn).await
            }
            Command::Plain(args) => {
                let Some((name, args)) = args.split_first() else {
                    return Ok(Value::Nil);
                };
                ::redis::cmd(name).arg(args).query_async(conn).await
            }
        }
    };
    let timer = async {
        Timer::after(call.timeout).await;
        time_out(REPLY_GRACE).await
    };
    send.or(timer).await
}

/// An error once `after` has passed.
async fn time_out(after: Duration) -> RedisResult<Value> {
    Timer::after(after).await;
    Err(RedisError::from(io::Error::from(io::ErrorKind::TimedOut)))
}

/// A connection whose calls are timed by [`execute`], not by the client.
async fn connect(client: &Client) -> RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(COMMAND_TIMEOUT))
        .set_response_timeout(None::<Duration>);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// The client's value in the log's terms; an error is the client's words. Public (as
/// `chat_server::redis_reply`) so that tests driving the scripts read replies exactly as the
/// server does.
pub fn reply(result: RedisResult<Value>) -> Reply {
    match result {
        Ok(value) => convert(value),
        Err(error) => Reply::Error(error.to_string()),
    }
}

fn convert(value: Value) -> Reply {
    let all = |items: Vec<Value>| Reply::Array(items.into_iter().map(convert).collect());
    match value {
        Value::Nil => Reply::Nil,
        Value::Int(n) => Reply::Int(n),
        Value::BulkString(bytes) => Reply::Bulk(bytes),
        Value::SimpleString(s) => Reply::Bulk(s.into_bytes()),
        Value::Okay => Reply::Bulk(b"OK".to_vec()),
        Value::Array(items) | Value::Set(items) => all(items),
        Value::Map(pairs) => all(pairs.into_iter().flat_map(|(k, v)| [k, v]).collect()),
        Value::Attribute { data, .. } => convert(*data),
        Value::Double(x) => Reply::Bulk(x.to_string().into_bytes()),
        Value::Boolean(b) => Reply::Int(i64::from(b)),
        Value::VerbatimString { text, .. } => Reply::Bulk(text.into_bytes()),
        Value::BigNumber(n) => Reply::Bulk(n),
        Value::Push { data, .. } => all(data),
        Value::ServerError(error) => Reply::Error(error.to_string()),
        other => Reply::Error(format!("unexpected value {other:?}")),
    }
}

fn log_note(note: &Note) {
    match note.level {
        Level::Info => log::info!("redis: {}", note.text),
        Level::Warn => log::warn!("redis: {}", note.text),
        Level::Error => log::error!("redis: {}", note.text),
    }
}
