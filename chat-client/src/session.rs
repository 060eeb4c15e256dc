//! One chat session as a sans-IO state machine, [`Session`]: what the user typed, what the
//! server sent and what time it is go in; what to send, what to print and the exit code come
//! out.
//!
//! The session decides everything (what to send, what to print, when to give up, the exit
//! code); its driver ([`run_session`](crate::run_session)) only carries out its outputs and
//! reports what happened. Time is an input, so the session's tests run on a fake clock without
//! sockets.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chat_proto::{
    ChatKind, ClientMsg, CloseReason, DecodeError, ErrorKind, FrameReader, Limits, MAGIC,
    MAX_SERVER_FRAME, PROTOCOL_VERSION, Password, Refusal, ServerMsg,
};

use crate::command::{Command, CommandError, HELP, parse_command, parse_typed};
use crate::config::Config;
use crate::input::{COMMAND_PROMPT, InputEvent, NAME_PROMPT};
use crate::render::{AWAY, Line, away, escape, mentions, render, render_history};

/// Exit code: the user left (or gave up before joining).
pub const EXIT_OK: u8 = 0;
/// Exit code: cannot connect, refused (scripted), closed by the server, or connection lost.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: bad configuration (a bad port, no name in scripted mode, bad flags).
pub const EXIT_USAGE: u8 = 2;

/// How long to wait for the server's `Closing(Left)` after sending `Leave`.
pub const LEAVE_GRACE: Duration = Duration::from_secs(2);

/// How long to try to connect before giving up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait for the server's last word after a write to it failed.
pub const LAST_WORD_GRACE: Duration = Duration::from_secs(1);

/// How long to wait for an answer to the client's own ping before the connection is lost.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a reconnecting client waits for the welcome after its hello.
pub const REJOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The wait before the first attempt to join again; it doubles with each failed attempt.
pub const RECONNECT_FIRST: Duration = Duration::from_secs(1);

/// The longest wait between two attempts to join again.
pub const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// The line printed when the connection ends without a closing frame.
const LOST: &str = "connection to server lost";

/// Which prompt the line editor shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// Choosing a name (`name: `).
    Name,
    /// Typing commands (`> `).
    Command,
    /// Typing a password, not shown (`password: `).
    Password,
    /// Typing a new password, not shown (`new password: `).
    NewPassword,
    /// Typing a new password again, not shown (`again: `).
    Again,
}

impl Prompt {
    /// The prompt's text.
    pub fn text(self) -> &'static str {
        match self {
            Prompt::Name => NAME_PROMPT,
            Prompt::Command => COMMAND_PROMPT,
            Prompt::Password => "password: ",
            Prompt::NewPassword => "new password: ",
            Prompt::Again => "again: ",
        }
    }

    /// Whether what is typed at it is a password: never shown, never kept in the history.
    pub fn is_hidden(self) -> bool {
        matches!(self, Prompt::Password | Prompt::NewPassword | Prompt::Again)
    }
}

/// What the session asks its driver to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open the connection to the configured server; report the outcome with
    /// [`Session::handle_connected`] or [`Session::handle_connect_failed`].
    Connect,
    /// Encode and write this message to the server; report a failed write with
    /// [`Session::handle_send_failed`].
    Send(ClientMsg),
    /// Print this line on its stream.
    Print(Line),
    /// Show this prompt in front of what the user types (only asked for at a terminal).
    Prompt(Prompt),
    /// Ring the terminal bell with the next line printed (someone mentioned this member).
    Bell,
    /// Close the connection and forget it: it is lost, and a later [`Output::Connect`] opens
    /// another. Nothing more is read from it.
    Disconnect,
    /// Close the connection and exit with this code. The session is over: nothing follows.
    Exit(u8),
}

/// Where the session is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// At a terminal without a name: waiting for the user to type one.
    AskingName,
    /// The driver is connecting; the hello for `name` follows, unless `until` passes first.
    Connecting { name: String, until: Instant },
    /// A hello was sent; waiting for the welcome or a refusal, until `until` when joining again.
    Joining { until: Option<Instant> },
    /// Refused at a prompt; waiting for the user to type another name.
    Naming,
    /// In the room.
    Joined,
    /// `Leave` was sent; waiting for the server's goodbye until `until`.
    Leaving { until: Instant },
    /// The connection was lost; the next attempt to join again starts at `until`.
    Reconnecting { until: Instant },
    /// `Exit` was output; every input is ignored.
    Done,
}

/// The client side of one chat session, without I/O: the user's input, the server's bytes or
/// messages, the connection's fate and the time go in; messages to send, lines to print, prompt
/// changes and the exit code come out.
///
/// After each `handle_*` call the driver drains [`poll_output`](Self::poll_output), then waits
/// for the next input, for at most [`poll_timeout`](Self::poll_timeout), and reads the user's
/// input only while [`wants_input`](Self::wants_input) says so. Every deadline, once handled,
/// is gone or later, so the timer never spins. Every input that can set a deadline takes `now`.
///
/// Once in the room, a session that hears nothing from the server for longer than the idle
/// timeout of the welcome sends its own ping; with no answer within [`PROBE_TIMEOUT`] the
/// connection is lost. A lost connection ends a script (exit 1); with reconnecting on (the
/// default at a terminal) the session waits a growing, jittered while ([`Output::Disconnect`],
/// then [`Output::Connect`]), sends `Resume` with the last sequence number it saw and the
/// room's epoch from the last welcome, then the same hello (under the name it has now), and
/// shows what it missed once. A room reset meanwhile (another epoch) shows its whole history.
///
/// ```
/// use std::time::Instant;
/// use chat_client::{Config, Output, Session};
/// let config = Config { name: Some("alice".into()), ..Config::default() };
/// let now = Instant::now();
/// let mut session = Session::new(now, &config, false).with_jitter_seed(7);
/// assert_eq!(session.poll_output(), Some(Output::Connect));
/// session.handle_connected(now); // the driver opened the socket
/// assert!(matches!(session.poll_output(), Some(Output::Send(_)))); // the hello
/// assert_eq!(session.poll_output(), None);
/// ```
#[derive(Debug)]
pub struct Session {
    /// A person at a prompt (a refusal asks again) rather than a script (a refusal ends it).
    interactive: bool,
    /// Join again when the connection is lost, instead of exiting.
    reconnect: bool,
    /// Ring the bell when someone mentions this member's name.
    bell: bool,
    /// `host:port`, for messages.
    addr: String,
    phase: Phase,
    /// The server's limits, known from the welcome.
    limits: Option<Limits>,
    /// The name as registered, once welcomed: the name to join again under.
    name: Option<String>,
    /// The sequence number of the last chat seen (from the welcome, the history or live), to
    /// resume after when joining again.
    last_seq: Option<u64>,
    /// The room's epoch from the last welcome: sequence numbers are comparable only within it.
    epoch: Option<u64>,
    /// Between a lost connection and the next welcome: the next hello resumes.
    rejoining: bool,
    /// Failed attempts to join again in a row, for the backoff.
    attempt: u32,
    /// When the server was last heard from (any frame).
    heard: Instant,
    /// Our own ping is out: when the connection counts as lost if nothing is heard by then.
    probe: Option<Instant>,
    /// The nonce of the next ping.
    nonce: u64,
    /// The state of the jitter generator (seeded by the driver).
    jitter: u64,
    /// Set after a write failed: when to stop waiting for the server's last word (a closing
    /// frame, or the end of the stream). Scripts are not read meanwhile.
    last_word: Option<Instant>,
    /// Bytes from the server, for drivers that read into [`read_buf`](Self::read_buf).
    reader: FrameReader,
    outputs: VecDeque<Output>,
    /// The password of the name: given (`--password-file`, `CHAT_PASSWORD`), typed when the
    /// server asked for it, or registered; every hello carries it.
    password: Option<Password>,
    /// The name of the last hello, to ask its password for.
    wanted: Option<String>,
    /// A password being asked for at the terminal, and what it is for.
    asking: Option<accounts::Asking>,
    /// A password registered or changed, until the server says it is.
    pending: Option<Password>,
}

/// How a connection was lost.
enum Loss {
    /// It ended (end of stream, reset, a failed write) without a closing frame.
    Closed,
    /// The server did not answer our ping: nothing was heard for this long.
    Silent(Duration),
    /// The server closed it for a reason worth joining again after (the line was printed).
    ClosedBy,
    /// An attempt to join again failed (the line saying why was printed).
    Attempt,
}

impl Session {
    /// A session for `config`, started at `now`. It first asks for a name (at a terminal
    /// without one), to connect, or (a script without a name) to exit with [`EXIT_USAGE`].
    pub fn new(now: Instant, config: &Config, interactive: bool) -> Self {
        let mut session = Session {
            interactive,
            reconnect: config.reconnect.is_on(interactive),
            bell: config.bell.is_on(interactive),
            addr: host_port(&config.host, config.port),
            phase: Phase::AskingName,
            limits: None,
            name: None,
            last_seq: None,
            epoch: None,
            rejoining: false,
            attempt: 0,
            heard: now,
            probe: None,
            nonce: 1,
            jitter: 0x9e37_79b9_7f4a_7c15,
            last_word: None,
            reader: FrameReader::new(MAX_SERVER_FRAME),
            outputs: VecDeque::new(),
            password: config.password.clone(),
            wanted: None,
            asking: None,
            pending: None,
        };
        match &config.name {
            Some(name) => session.connect(now, name.clone()),
            None if interactive => session.push(Output::Prompt(Prompt::Name)),
            None => {
                session.print(Line::error("no name given; pass --name or set CHAT_NAME"));
                session.exit(EXIT_USAGE);
            }
        }
        session
    }

    /// Seeds the jitter added to the waits between attempts to join again, so that clients cut
    /// off together do not all come back at the same instant. The driver passes a random seed;
    /// a test passes a fixed one.
    #[must_use]
    pub fn with_jitter_seed(mut self, seed: u64) -> Self {
        self.jitter = seed;
        self
    }

    /// The next thing for the driver to do, in order; `None` once all is done.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout), if a deadline is set.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let phase = match &self.phase {
            Phase::Connecting { until, .. }
            | Phase::Leaving { until }
            | Phase::Reconnecting { until } => Some(*until),
            Phase::Joining { until } => *until,
            Phase::Joined => self.liveness_deadline(),
            Phase::Done => return None,
            Phase::AskingName | Phase::Naming => None,
        };
        match (phase, self.last_word) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the driver should read the user's input now. A terminal is always read (its
    /// line editor also prints queued lines); a script only once joined, and not after a failed
    /// write, so its commands are never sent before the welcome or into a dead connection.
    pub fn wants_input(&self) -> bool {
        match self.phase {
            Phase::Done => false,
            Phase::Joined => self.interactive || self.last_word.is_none(),
            _ => self.interactive,
        }
    }

    /// Whether the session has output [`Output::Exit`].
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The connection asked for with [`Output::Connect`] is open at `now`: say hello (after a
    /// `Resume` when joining again, with the epoch of the last welcome: in another epoch, the
    /// room shows its whole history instead).
    pub fn handle_connected(&mut self, now: Instant) {
        if let Phase::Connecting { name, .. } = &self.phase {
            let name = name.clone();
            self.heard = now;
            if self.rejoining
                && let Some(after) = self.last_seq
            {
                let epoch = self.epoch.unwrap_or(0);
                self.send(ClientMsg::Resume { after, epoch });
            }
            self.hello(now, name);
        }
    }

    /// The connection asked for with [`Output::Connect`] could not be opened at `now`, because
    /// of `error`.
    pub fn handle_connect_failed(&mut self, now: Instant, error: impl std::fmt::Display) {
        if matches!(self.phase, Phase::Connecting { .. }) {
            let addr = &self.addr;
            if self.rejoining {
                self.print(Line::notice(format_args!(
                    "cannot connect to {addr}: {error}"
                )));
                self.lost(now, Loss::Attempt);
            } else {
                self.print(Line::error(format_args!(
                    "cannot connect to {addr}: {error}"
                )));
                self.exit(EXIT_FAILURE);
            }
        }
    }

    /// A write of an [`Output::Send`] failed: stop reading a script and wait a little for the
    /// server's last word, which says why.
    pub fn handle_send_failed(&mut self, now: Instant) {
        let waiting = matches!(
            self.phase,
            Phase::Joining { .. } | Phase::Naming | Phase::Joined
        );
        if waiting && self.last_word.is_none() {
            self.last_word = Some(now + LAST_WORD_GRACE);
        }
    }

    /// Space to read the server's bytes into; report the count with
    /// [`handle_read`](Self::handle_read). Small while the connection is quiet.
    pub fn read_buf(&mut self) -> &mut [u8] {
        self.reader.buf()
    }

    /// `n` bytes from the server were read into [`read_buf`](Self::read_buf) at `now`; `0` is
    /// the end of the stream. Every whole message among them is handled in order.
    pub fn handle_read(&mut self, now: Instant, n: usize) {
        if n == 0 {
            self.handle_closed(now);
            return;
        }
        self.reader.filled(n);
        while self.phase != Phase::Done {
            match self.reader.next::<ServerMsg>() {
                Ok(Some(msg)) => self.handle_msg(now, msg),
                Ok(None) => break,
                Err(error) => self.garbled(error),
            }
        }
    }

    /// A message from the server, received at `now` (for drivers that decode frames
    /// themselves). Any message is an answer to our ping.
    pub fn handle_msg(&mut self, now: Instant, msg: ServerMsg) {
        if matches!(self.phase, Phase::Done | Phase::Reconnecting { .. }) {
            return;
        }
        self.heard = now;
        self.probe = None;
        let joining = matches!(self.phase, Phase::Joining { .. });
        match &msg {
            ServerMsg::Ping { nonce } => self.send(ClientMsg::Pong { nonce: *nonce }),
            ServerMsg::Welcome { .. } if joining => self.welcomed(&msg),
            ServerMsg::Refused(refusal) if joining => self.refused(now, *refusal),
            ServerMsg::Closing(reason) => self.closed_by(now, *reason),
            ServerMsg::Chat { .. } | ServerMsg::History { .. } => {
                self.note_chats(&msg);
                self.print_msg(&msg);
            }
            ServerMsg::Registered { .. } => {
                if let Some(password) = self.pending.take() {
                    self.password = Some(password);
                }
                self.print_msg(&msg);
            }
            ServerMsg::Renamed { from, to, .. } => {
                if self.name.as_deref() == Some(from.as_str()) {
                    self.name = Some(to.clone());
                }
                self.print_msg(&msg);
            }
            // Shown as they are; a welcome or refusal out of turn too.
            ServerMsg::Welcome { .. }
            | ServerMsg::Refused(_)
            | ServerMsg::Joined { .. }
            | ServerMsg::Left { .. }
            | ServerMsg::Members { .. }
            | ServerMsg::Away { .. }
            | ServerMsg::Moderated { .. }
            | ServerMsg::Bans { .. }
            | ServerMsg::Error(_)
            | ServerMsg::Unregistered { .. }
            | ServerMsg::Pong { .. } => self.print_msg(&msg),
        }
    }

    /// The connection ended at `now` (the end of the stream, or an error) without a closing
    /// frame.
    pub fn handle_closed(&mut self, now: Instant) {
        match self.phase {
            Phase::Done | Phase::Reconnecting { .. } => {}
            Phase::Leaving { .. } => self.exit(EXIT_OK),
            Phase::Joined | Phase::Joining { .. } | Phase::Connecting { .. }
                if self.reconnect && (self.rejoining || self.phase == Phase::Joined) =>
            {
                self.lost(now, Loss::Closed);
            }
            _ => {
                self.print(Line::error(LOST));
                self.exit(EXIT_FAILURE);
            }
        }
    }

    /// The user typed a line, or ended the input (Ctrl-D, the end of a script, Ctrl-C).
    pub fn handle_input(&mut self, now: Instant, event: InputEvent) {
        if let Some(asking) = self.asking.take() {
            self.answered(now, asking, event);
            return;
        }
        let line = match event {
            InputEvent::Line(line) => line,
            InputEvent::Eof | InputEvent::Interrupted => {
                match self.phase {
                    Phase::Joined => self.leave(now, None),
                    // Not in the room (or already leaving): nothing to say goodbye to.
                    Phase::AskingName
                    | Phase::Connecting { .. }
                    | Phase::Joining { .. }
                    | Phase::Naming
                    | Phase::Reconnecting { .. }
                    | Phase::Leaving { .. } => self.exit(EXIT_OK),
                    Phase::Done => {}
                }
                return;
            }
        };
        if self.rejoining {
            // Between a lost connection and the next welcome: nothing can be sent.
            match self.parse(&line) {
                Ok(Command::Leave(_)) => self.exit(EXIT_OK),
                Err(CommandError::Blank) => {}
                _ => self.print(Line::error(
                    "not in the room; reconnecting (type leave to quit)",
                )),
            }
            return;
        }
        match self.phase {
            Phase::AskingName | Phase::Naming => {
                let name = line.trim();
                if !name.is_empty() {
                    let name = name.to_owned();
                    self.push(Output::Prompt(Prompt::Command));
                    if self.phase == Phase::AskingName {
                        self.connect(now, name);
                    } else {
                        self.hello(now, name);
                    }
                }
            }
            Phase::Joining { .. } => {
                self.print(Line::error("not in the room yet; wait for the welcome"));
            }
            Phase::Joined => self.command(now, &line),
            Phase::Connecting { .. }
            | Phase::Leaving { .. }
            | Phase::Reconnecting { .. }
            | Phase::Done => {}
        }
    }

    /// Time passed: a deadline at or before `now` is acted on (the session ends, pings the
    /// server, or tries to join again). Earlier calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &self.phase {
            Phase::Connecting { until, .. } if *until <= now => {
                let addr = &self.addr;
                if self.rejoining {
                    self.print(Line::notice(format_args!(
                        "cannot connect to {addr}: timed out"
                    )));
                    self.lost(now, Loss::Attempt);
                } else {
                    self.print(Line::error(format_args!(
                        "cannot connect to {addr}: timed out"
                    )));
                    self.exit(EXIT_FAILURE);
                }
            }
            Phase::Joining { until: Some(until) } if *until <= now => {
                let silent = now.saturating_duration_since(self.heard);
                self.lost(now, Loss::Silent(silent));
            }
            Phase::Reconnecting { until } if *until <= now => {
                let name = self.name.clone().unwrap_or_default();
                self.connect(now, name);
            }
            Phase::Leaving { until } if *until <= now => self.exit(EXIT_OK),
            Phase::Done | Phase::Leaving { .. } | Phase::Reconnecting { .. } => {}
            _ if self.last_word.is_some_and(|at| at <= now) => {
                self.last_word = None;
                self.lost(now, Loss::Closed);
            }
            Phase::Joined => match self.probe {
                Some(until) if until <= now => {
                    let silent = now.saturating_duration_since(self.heard);
                    self.lost(now, Loss::Silent(silent));
                }
                Some(_) => {}
                None => {
                    if self.liveness_deadline().is_some_and(|at| at <= now) {
                        let nonce = self.nonce;
                        self.nonce += 1;
                        self.probe = Some(now + PROBE_TIMEOUT);
                        self.send(ClientMsg::Ping { nonce });
                    }
                }
            },
            _ => {}
        }
    }

    /// The welcome to our hello: in the room. It is shown, unless joining again: then one line
    /// says so, and whether the room was reset meanwhile (its whole history follows).
    fn welcomed(&mut self, welcome: &ServerMsg) {
        let ServerMsg::Welcome {
            name,
            limits,
            seq,
            epoch,
            ..
        } = welcome
        else {
            return;
        };
        let reset = self.epoch.is_some_and(|known| known != *epoch);
        self.epoch = Some(*epoch);
        self.limits = Some(*limits);
        self.name = Some(name.clone());
        self.last_seq = Some(*seq);
        self.phase = Phase::Joined;
        self.attempt = 0;
        if self.rejoining {
            self.rejoining = false;
            self.print(Line::notice(format_args!(
                "reconnected as {}",
                escape(name)
            )));
            if reset {
                self.print(Line::notice(
                    "the room was reset meanwhile; its history follows",
                ));
            }
        } else {
            self.print_msg(welcome);
        }
    }

    /// A refusal of our hello: ask for another name at a prompt, try again later when joining
    /// again and the refusal may pass, or exit.
    fn refused(&mut self, now: Instant, refusal: Refusal) {
        if let Refusal::UnsupportedVersion { supported } = refusal {
            self.print(Line::error(version_refusal(supported)));
            self.exit(EXIT_FAILURE);
            return;
        }
        self.print_msg(&ServerMsg::Refused(refusal));
        if self.ask_login(refusal) {
            return;
        }
        let retry = matches!(
            refusal,
            Refusal::NameTaken
                | Refusal::ServerFull
                | Refusal::Unavailable
                | Refusal::TooManyConnections
        );
        if self.rejoining && retry {
            self.lost(now, Loss::Attempt);
        } else if self.interactive && !self.rejoining {
            self.phase = Phase::Naming;
            self.push(Output::Prompt(Prompt::Name));
        } else {
            self.exit(EXIT_FAILURE);
        }
    }

    /// The server's closing frame: say why (unless it is the goodbye we asked for), then join
    /// again after a while or exit.
    fn closed_by(&mut self, now: Instant, reason: CloseReason) {
        let leaving = matches!(self.phase, Phase::Leaving { .. });
        // The goodbye we asked for needs no line.
        if !(leaving && reason == CloseReason::Left) {
            self.print_msg(&ServerMsg::Closing(reason));
        }
        let joined = matches!(self.phase, Phase::Joined) || self.rejoining;
        if self.reconnect && joined && worth_joining_again(reason) {
            self.lost(now, Loss::ClosedBy);
        } else {
            self.exit(if leaving { EXIT_OK } else { EXIT_FAILURE });
        }
    }

    /// Keeps the number of the last chat seen, to resume after; rings the bell when a chat
    /// mentions this member.
    fn note_chats(&mut self, msg: &ServerMsg) {
        match msg {
            ServerMsg::Chat {
                seq, from, text, ..
            } => {
                self.last_seq = Some(*seq);
                let me = self.name.as_deref().unwrap_or("");
                if self.bell && from != me && mentions(text, me) {
                    self.push(Output::Bell);
                }
            }
            ServerMsg::History { chats, .. } => {
                if let Some(last) = chats.last() {
                    self.last_seq = Some(self.last_seq.unwrap_or(0).max(last.seq));
                }
            }
            _ => {}
        }
    }

    /// In the room: when to ping the server (nothing heard for longer than its idle timeout),
    /// or, with a ping out, when to give up on it.
    fn liveness_deadline(&self) -> Option<Instant> {
        if let Some(until) = self.probe {
            return Some(until);
        }
        let idle = self.limits.map_or(0, |l| l.idle_timeout_ms);
        (idle > 0).then(|| self.heard + Duration::from_millis(idle))
    }

    /// The connection is lost: join again after a while, or (a script, `--no-reconnect`, or
    /// never joined) report it and exit 1.
    fn lost(&mut self, now: Instant, loss: Loss) {
        let why = match loss {
            Loss::Closed => Some(LOST.to_owned()),
            Loss::Silent(silent) => Some(format!(
                "connection lost (no answer from the server for {} s)",
                (silent.as_millis() + 500) / 1000
            )),
            Loss::ClosedBy | Loss::Attempt => None,
        };
        let can_rejoin = self.reconnect && self.name.is_some();
        if !can_rejoin {
            if let Some(why) = why {
                self.print(Line::error(why));
            }
            self.exit(EXIT_FAILURE);
            return;
        }
        if let Some(why) = why {
            self.print(Line::notice(why));
        }
        self.push(Output::Disconnect);
        self.reader = FrameReader::new(MAX_SERVER_FRAME);
        self.last_word = None;
        self.probe = None;
        let wait = self.backoff();
        self.attempt = self.attempt.saturating_add(1);
        if !self.rejoining {
            self.print(Line::notice("reconnecting…"));
        }
        self.rejoining = true;
        self.phase = Phase::Reconnecting { until: now + wait };
    }

    /// The wait before the next attempt: [`RECONNECT_FIRST`] doubled per failed attempt, at most
    /// [`RECONNECT_MAX`], of which a random part (from half to all of it) is taken.
    fn backoff(&mut self) -> Duration {
        let full = RECONNECT_FIRST
            .saturating_mul(1 << self.attempt.min(16))
            .min(RECONNECT_MAX);
        // splitmix64: a new value from the seed with each call.
        self.jitter = self.jitter.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.jitter;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let half = full / 2;
        let millis = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(z % (millis + 1))
    }

    fn connect(&mut self, now: Instant, name: String) {
        self.phase = Phase::Connecting {
            name,
            until: now + CONNECT_TIMEOUT,
        };
        self.push(Output::Connect);
    }

    fn hello(&mut self, now: Instant, name: String) {
        self.phase = Phase::Joining {
            until: self.rejoining.then(|| now + REJOIN_TIMEOUT),
        };
        self.wanted = Some(name.clone());
        self.send(ClientMsg::Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            name,
            password: self.password.clone(),
            ident: None,
        });
    }

    fn leave(&mut self, now: Instant, message: Option<String>) {
        self.phase = Phase::Leaving {
            until: now + LEAVE_GRACE,
        };
        self.last_word = None;
        self.send(ClientMsg::Leave { message });
    }

    /// A typed line as a command: at a terminal, a line that is not one is a chat.
    fn parse(&self, line: &str) -> Result<Command, CommandError> {
        if self.interactive {
            parse_typed(line)
        } else {
            parse_command(line)
        }
    }

    /// Carries out a line typed in the room. At a terminal, where the line editor has erased
    /// the typed line, a chat, an action and away are shown as the others see them, so that
    /// the screen reads as a conversation; a script's output stays the others' lines alone.
    fn command(&mut self, now: Instant, line: &str) {
        match self.parse(line) {
            Ok(Command::Send(text)) => self.chat(text, ChatKind::Plain),
            Ok(Command::Me(text)) => self.chat(text, ChatKind::Action),
            Ok(Command::Nick(name)) => self.send(ClientMsg::Nick { name }),
            Ok(Command::Away(why)) => {
                let message = why.unwrap_or_else(|| AWAY.to_owned());
                self.echo_away(Some(&message));
                self.send(ClientMsg::Away {
                    message: Some(message),
                });
            }
            Ok(Command::Back) => {
                self.echo_away(None);
                self.send(ClientMsg::Away { message: None });
            }
            Ok(Command::Who) => self.send(ClientMsg::Who),
            Ok(Command::Register) => self.register(),
            Ok(Command::Passwd) => self.passwd(),
            Ok(Command::Unregister) => self.send(ClientMsg::Unregister),
            Ok(Command::Kick { name, reason }) => self.send(ClientMsg::Kick { name, reason }),
            Ok(Command::Ban {
                target,
                duration_secs,
                reason,
            }) => self.send(ClientMsg::Ban {
                target,
                duration_secs,
                reason,
            }),
            Ok(Command::Unban(target)) => self.send(ClientMsg::Unban { target }),
            Ok(Command::Mute {
                name,
                duration_secs,
            }) => self.send(ClientMsg::Mute {
                name,
                duration_secs,
            }),
            Ok(Command::Unmute(name)) => self.send(ClientMsg::Unmute { name }),
            Ok(Command::Bans) => self.send(ClientMsg::Bans),
            Ok(Command::Leave(message)) => self.leave(now, message),
            Ok(Command::Help) => {
                for line in HELP {
                    self.print(Line::Out((*line).to_owned()));
                }
            }
            Err(CommandError::Blank) => {}
            Err(e) => self.print(Line::error(e)),
        }
    }

    /// Says `text` as `kind` means it, unless it is longer than the server takes; at a
    /// terminal, shows it as the others see it (at the time it is printed: the room does not
    /// echo it, so its own time is unknown).
    fn chat(&mut self, text: String, kind: ChatKind) {
        let max_bytes = self.limits.map_or(u32::MAX, |l| l.max_text_bytes);
        if text.len() > max_bytes as usize {
            self.print(Line::error(ErrorKind::TextTooLong { max_bytes }));
            return;
        }
        if self.interactive {
            let me = self.name.as_deref().unwrap_or("");
            self.print(Line::chat(false, me, &text, kind, None));
        }
        self.send(ClientMsg::Chat { text, kind });
    }

    /// At a terminal, shows one's own away (`Some`) or back as the others see it.
    fn echo_away(&mut self, message: Option<&str>) {
        if self.interactive {
            let me = self.name.as_deref().unwrap_or("");
            self.print(Line::event(0, away(me, message)));
        }
    }

    /// The server sent bytes that are not a valid frame: the stream is out of step.
    fn garbled(&mut self, error: DecodeError) {
        self.print(Line::error(format_args!("{LOST}: {error}")));
        let leaving = matches!(self.phase, Phase::Leaving { .. });
        self.exit(if leaving { EXIT_OK } else { EXIT_FAILURE });
    }

    fn print_msg(&mut self, msg: &ServerMsg) {
        if let ServerMsg::History { chats, missed } = msg {
            for line in render_history(chats, *missed) {
                self.print(line);
            }
        } else if let Some(line) = render(msg) {
            self.print(line);
        }
    }

    fn send(&mut self, msg: ClientMsg) {
        self.push(Output::Send(msg));
    }

    fn print(&mut self, line: Line) {
        self.push(Output::Print(line));
    }

    fn exit(&mut self, code: u8) {
        self.phase = Phase::Done;
        self.last_word = None;
        self.push(Output::Exit(code));
    }

    fn push(&mut self, output: Output) {
        self.outputs.push_back(output);
    }
}

/// Whether a connection closed by the server for `reason` is worth joining again after: the
/// server went away or timed us out, not a goodbye or a penalty.
fn worth_joining_again(reason: CloseReason) -> bool {
    match reason {
        CloseReason::IdleTimeout
        | CloseReason::ServerShutdown
        | CloseReason::ServerLost
        | CloseReason::RoomReset
        | CloseReason::Disconnected
        | CloseReason::HandshakeTimeout
        | CloseReason::TooSlow
        | CloseReason::ServerFull
        | CloseReason::TooManyConnections => true,
        CloseReason::Left
        | CloseReason::Flood
        | CloseReason::ProtocolError
        | CloseReason::Kicked
        | CloseReason::Banned => false,
    }
}

/// What to say when the server does not speak our protocol version: which side is older, and
/// what to do about it, in one line.
fn version_refusal(supported: u16) -> String {
    if supported < PROTOCOL_VERSION {
        format!(
            "server speaks protocol version {supported}, this client {PROTOCOL_VERSION}; \
             use an older client or upgrade the server"
        )
    } else {
        Refusal::UnsupportedVersion { supported }.to_string()
    }
}

/// `host:port`, with an IPv6 address in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

mod accounts;
#[cfg(test)]
mod tests;
