//! One chat session: the sans-IO state machine [`Session`], and [`run_session`], the async
//! driver that connects it to a socket, the user's input, the console and a timer.
//!
//! The session decides everything (what to send, what to print, when to give up, the exit
//! code); the driver only carries out its outputs and reports what happened. Time is an input,
//! so the session's tests run on a fake clock without sockets.

use std::collections::VecDeque;
use std::io;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use async_net::TcpStream;
use chat_proto::{
    ClientMsg, CloseReason, DecodeError, ErrorKind, FrameReader, Limits, MAGIC, MAX_SERVER_FRAME,
    PROTOCOL_VERSION, ServerMsg, encode,
};
use futures_lite::{AsyncReadExt, AsyncWrite, AsyncWriteExt, future};
use smol::Timer;

use crate::command::{Command, CommandError, HELP, parse_command};
use crate::config::Config;
use crate::input::{COMMAND_PROMPT, Input, InputEvent, NAME_PROMPT};
use crate::render::{Line, render, render_history};

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

/// The line printed when the connection ends without a closing frame.
const LOST: &str = "connection to server lost";

/// Which prompt the line editor shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// Choosing a name (`name: `).
    Name,
    /// Typing commands (`> `).
    Command,
}

impl Prompt {
    /// The prompt's text.
    pub fn text(self) -> &'static str {
        match self {
            Prompt::Name => NAME_PROMPT,
            Prompt::Command => COMMAND_PROMPT,
        }
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
    /// A hello was sent; waiting for the welcome or a refusal.
    Joining,
    /// Refused at a prompt; waiting for the user to type another name.
    Naming,
    /// In the room.
    Joined,
    /// `Leave` was sent; waiting for the server's goodbye until `until`.
    Leaving { until: Instant },
    /// `Exit` was output; every input is ignored.
    Done,
}

/// The client side of one chat session, without I/O: the user's input, the server's bytes or
/// messages, the connection's fate and the time go in; messages to send, lines to print, prompt
/// changes and the exit code come out.
///
/// After each `handle_*` call the driver drains [`poll_output`](Self::poll_output), then waits
/// for the next input, for at most [`poll_timeout`](Self::poll_timeout), and reads the user's
/// input only while [`wants_input`](Self::wants_input) says so. Every deadline ends the session
/// when it passes, so the timer never spins. The inputs that can set a deadline take `now`.
///
/// ```
/// use std::time::Instant;
/// use chat_client::{Config, Output, Session};
/// let config = Config { host: "127.0.0.1".into(), port: 7878, name: Some("alice".into()) };
/// let mut session = Session::new(Instant::now(), &config, false);
/// assert_eq!(session.poll_output(), Some(Output::Connect));
/// session.handle_connected(); // the driver opened the socket
/// assert!(matches!(session.poll_output(), Some(Output::Send(_)))); // the hello
/// assert_eq!(session.poll_output(), None);
/// ```
#[derive(Debug)]
pub struct Session {
    /// A person at a prompt (a refusal asks again) rather than a script (a refusal ends it).
    interactive: bool,
    /// `host:port`, for messages.
    addr: String,
    phase: Phase,
    /// The server's limits, known from the welcome.
    limits: Option<Limits>,
    /// Set after a write failed: when to stop waiting for the server's last word (a closing
    /// frame, or the end of the stream). Scripts are not read meanwhile.
    last_word: Option<Instant>,
    /// Bytes from the server, for drivers that read into [`read_buf`](Self::read_buf).
    reader: FrameReader,
    outputs: VecDeque<Output>,
}

impl Session {
    /// A session for `config`, started at `now`. It first asks for a name (at a terminal
    /// without one), to connect, or (a script without a name) to exit with [`EXIT_USAGE`].
    pub fn new(now: Instant, config: &Config, interactive: bool) -> Self {
        let mut session = Session {
            interactive,
            addr: host_port(&config.host, config.port),
            phase: Phase::AskingName,
            limits: None,
            last_word: None,
            reader: FrameReader::new(MAX_SERVER_FRAME),
            outputs: VecDeque::new(),
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

    /// The next thing for the driver to do, in order; `None` once all is done.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout), if a deadline is set.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let phase = match &self.phase {
            Phase::Connecting { until, .. } | Phase::Leaving { until } => Some(*until),
            Phase::Done => return None,
            Phase::AskingName | Phase::Joining | Phase::Naming | Phase::Joined => None,
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

    /// The connection asked for with [`Output::Connect`] is open: say hello.
    pub fn handle_connected(&mut self) {
        if let Phase::Connecting { name, .. } = &self.phase {
            let name = name.clone();
            self.hello(name);
        }
    }

    /// The connection asked for with [`Output::Connect`] could not be opened, because of
    /// `error`.
    pub fn handle_connect_failed(&mut self, error: impl std::fmt::Display) {
        if matches!(self.phase, Phase::Connecting { .. }) {
            let addr = &self.addr;
            self.print(Line::error(format_args!(
                "cannot connect to {addr}: {error}"
            )));
            self.exit(EXIT_FAILURE);
        }
    }

    /// A write of an [`Output::Send`] failed: stop reading a script and wait a little for the
    /// server's last word, which says why.
    pub fn handle_send_failed(&mut self, now: Instant) {
        let waiting = matches!(self.phase, Phase::Joining | Phase::Naming | Phase::Joined);
        if waiting && self.last_word.is_none() {
            self.last_word = Some(now + LAST_WORD_GRACE);
        }
    }

    /// Space to read the server's bytes into; report the count with
    /// [`handle_read`](Self::handle_read). Small while the connection is quiet.
    pub fn read_buf(&mut self) -> &mut [u8] {
        self.reader.buf()
    }

    /// `n` bytes from the server were read into [`read_buf`](Self::read_buf); `0` is the end
    /// of the stream. Every whole message among them is handled in order.
    pub fn handle_read(&mut self, n: usize) {
        if n == 0 {
            self.handle_closed();
            return;
        }
        self.reader.filled(n);
        while self.phase != Phase::Done {
            match self.reader.next::<ServerMsg>() {
                Ok(Some(msg)) => self.handle_msg(msg),
                Ok(None) => break,
                Err(error) => self.garbled(error),
            }
        }
    }

    /// A message from the server (for drivers that decode frames themselves).
    pub fn handle_msg(&mut self, msg: ServerMsg) {
        if self.phase == Phase::Done {
            return;
        }
        match &msg {
            ServerMsg::Ping { nonce } => {
                self.send(ClientMsg::Pong { nonce: *nonce });
                return;
            }
            ServerMsg::Welcome { limits, .. } if self.phase == Phase::Joining => {
                self.limits = Some(*limits);
                self.phase = Phase::Joined;
            }
            ServerMsg::Refused(_) if self.phase == Phase::Joining => {
                self.print_msg(&msg);
                if self.interactive {
                    self.phase = Phase::Naming;
                    self.push(Output::Prompt(Prompt::Name));
                } else {
                    self.exit(EXIT_FAILURE);
                }
                return;
            }
            ServerMsg::Closing(reason) => {
                let leaving = matches!(self.phase, Phase::Leaving { .. });
                // The goodbye we asked for needs no line.
                if !(leaving && *reason == CloseReason::Left) {
                    self.print_msg(&msg);
                }
                self.exit(if leaving { EXIT_OK } else { EXIT_FAILURE });
                return;
            }
            // Shown as they are; a welcome or refusal out of turn too.
            ServerMsg::Welcome { .. }
            | ServerMsg::Refused(_)
            | ServerMsg::History { .. }
            | ServerMsg::Chat { .. }
            | ServerMsg::Joined { .. }
            | ServerMsg::Left { .. }
            | ServerMsg::Members { .. }
            | ServerMsg::Error(_)
            | ServerMsg::Pong { .. } => {}
        }
        self.print_msg(&msg);
    }

    /// The connection ended (the end of the stream, or an error) without a closing frame.
    pub fn handle_closed(&mut self) {
        match self.phase {
            Phase::Done => {}
            Phase::Leaving { .. } => self.exit(EXIT_OK),
            _ => {
                self.print(Line::error(LOST));
                self.exit(EXIT_FAILURE);
            }
        }
    }

    /// The user typed a line, or ended the input (Ctrl-D, the end of a script, Ctrl-C).
    pub fn handle_input(&mut self, now: Instant, event: InputEvent) {
        let line = match event {
            InputEvent::Line(line) => line,
            InputEvent::Eof | InputEvent::Interrupted => {
                match self.phase {
                    Phase::Joined => self.leave(now),
                    // Not in the room (or already leaving): nothing to say goodbye to.
                    Phase::AskingName
                    | Phase::Connecting { .. }
                    | Phase::Joining
                    | Phase::Naming
                    | Phase::Leaving { .. } => self.exit(EXIT_OK),
                    Phase::Done => {}
                }
                return;
            }
        };
        match self.phase {
            Phase::AskingName | Phase::Naming => {
                let name = line.trim();
                if !name.is_empty() {
                    let name = name.to_owned();
                    self.push(Output::Prompt(Prompt::Command));
                    if self.phase == Phase::AskingName {
                        self.connect(now, name);
                    } else {
                        self.hello(name);
                    }
                }
            }
            Phase::Joining => self.print(Line::error("not in the room yet; wait for the welcome")),
            Phase::Joined => self.command(now, &line),
            Phase::Connecting { .. } | Phase::Leaving { .. } | Phase::Done => {}
        }
    }

    /// Time passed: a deadline at or before `now` ends the session. Earlier calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &self.phase {
            Phase::Connecting { until, .. } if *until <= now => {
                let addr = &self.addr;
                self.print(Line::error(format_args!(
                    "cannot connect to {addr}: timed out"
                )));
                self.exit(EXIT_FAILURE);
            }
            Phase::Leaving { until } if *until <= now => self.exit(EXIT_OK),
            Phase::Done | Phase::Leaving { .. } => {}
            _ if self.last_word.is_some_and(|at| at <= now) => {
                self.print(Line::error(LOST));
                self.exit(EXIT_FAILURE);
            }
            _ => {}
        }
    }

    fn connect(&mut self, now: Instant, name: String) {
        self.phase = Phase::Connecting {
            name,
            until: now + CONNECT_TIMEOUT,
        };
        self.push(Output::Connect);
    }

    fn hello(&mut self, name: String) {
        self.phase = Phase::Joining;
        self.send(ClientMsg::Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            name,
        });
    }

    fn leave(&mut self, now: Instant) {
        self.phase = Phase::Leaving {
            until: now + LEAVE_GRACE,
        };
        self.last_word = None;
        self.send(ClientMsg::Leave);
    }

    fn command(&mut self, now: Instant, line: &str) {
        match parse_command(line) {
            Ok(Command::Send(text)) => {
                let max_bytes = self.limits.map_or(u32::MAX, |l| l.max_text_bytes);
                if text.len() > max_bytes as usize {
                    self.print(Line::error(ErrorKind::TextTooLong { max_bytes }));
                } else {
                    self.send(ClientMsg::Chat { text });
                }
            }
            Ok(Command::Who) => self.send(ClientMsg::Who),
            Ok(Command::Leave) => self.leave(now),
            Ok(Command::Help) => {
                for line in HELP {
                    self.print(Line::Out((*line).to_owned()));
                }
            }
            Err(CommandError::Blank) => {}
            Err(e) => self.print(Line::error(e)),
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

/// `host:port`, with an IPv6 address in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Runs one chat session: connects to `config`'s server, joins, and relays commands from `input`
/// and messages from the server until someone leaves. Chat and notices are written to `out`,
/// errors and hints to `err`, one line per write, each followed by a flush.
///
/// Returns the process exit code ([`EXIT_OK`], [`EXIT_FAILURE`] or [`EXIT_USAGE`]).
pub async fn run_session<O, E>(config: &Config, input: &mut Input, out: &mut O, err: &mut E) -> u8
where
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let mut session = Session::new(Instant::now(), config, input.is_interactive());
    let mut driver = Driver {
        console: Console { out, err },
        connecting: None,
        stream: None,
        scratch: Vec::new(),
    };
    let code = driver.run(config, input, &mut session).await;
    if let Some(stream) = &driver.stream {
        let _ = stream.shutdown(Shutdown::Both);
    }
    code
}

/// What woke the driver up.
enum Wake {
    Connected(io::Result<TcpStream>),
    Read(io::Result<usize>),
    Input(InputEvent),
    Deadline,
}

/// The I/O half of a session: the socket, the console and the connection attempt.
struct Driver<'a, O, E> {
    console: Console<'a, O, E>,
    connecting: Option<future::Boxed<io::Result<TcpStream>>>,
    stream: Option<TcpStream>,
    /// Encoding space for outgoing frames.
    scratch: Vec<u8>,
}

impl<O: AsyncWrite + Unpin, E: AsyncWrite + Unpin> Driver<'_, O, E> {
    /// Carries out the session's outputs and feeds it what happens, until it exits.
    async fn run(&mut self, config: &Config, input: &mut Input, session: &mut Session) -> u8 {
        loop {
            while let Some(output) = session.poll_output() {
                match output {
                    Output::Connect => {
                        let (host, port) = (config.host.clone(), config.port);
                        self.connecting = Some(Box::pin(async move {
                            TcpStream::connect((host.as_str(), port)).await
                        }));
                    }
                    Output::Send(msg) => {
                        if self.send(&msg).await.is_err() {
                            session.handle_send_failed(Instant::now());
                        }
                    }
                    Output::Print(line) => self.console.print(line).await,
                    Output::Prompt(prompt) => input.set_prompt(prompt.text()),
                    Output::Exit(code) => return code,
                }
            }
            let wake = self.wait(input, session).await;
            let now = Instant::now();
            match wake {
                Wake::Connected(Ok(stream)) => {
                    self.connecting = None;
                    self.stream = Some(stream);
                    session.handle_connected();
                }
                Wake::Connected(Err(e)) => {
                    self.connecting = None;
                    session.handle_connect_failed(e);
                }
                Wake::Read(Ok(n)) => session.handle_read(n),
                Wake::Read(Err(_)) => session.handle_closed(),
                Wake::Input(event) => {
                    if let InputEvent::Line(line) = &event {
                        input.remember(line);
                    }
                    session.handle_input(now, event);
                }
                Wake::Deadline => session.handle_timeout(now),
            }
        }
    }

    /// Waits for the connection attempt, the server, the user or the session's deadline.
    ///
    /// At a prompt the line editor is polled first, so lines queued for the terminal are printed
    /// on every turn; a script is read fairly against the server.
    async fn wait(&mut self, input: &mut Input, session: &mut Session) -> Wake {
        let interactive = input.is_interactive();
        let read_input = session.wants_input();
        let deadline = session.poll_timeout();
        let (connecting, stream) = (&mut self.connecting, &mut self.stream);
        let server = async {
            if let Some(attempt) = connecting {
                Wake::Connected(attempt.await)
            } else if let Some(stream) = stream.as_mut() {
                Wake::Read(stream.read(session.read_buf()).await)
            } else {
                future::pending().await
            }
        };
        let user = async {
            if read_input {
                Wake::Input(input.next().await)
            } else {
                future::pending().await
            }
        };
        let timer = async {
            match deadline {
                Some(at) => {
                    Timer::at(at).await;
                    Wake::Deadline
                }
                None => future::pending().await,
            }
        };
        if interactive {
            future::or(user, future::or(server, timer)).await
        } else {
            future::or(timer, future::race(server, user)).await
        }
    }

    /// Encodes and writes one message; it is on its way to the server when this returns.
    async fn send(&mut self, msg: &ClientMsg) -> io::Result<()> {
        let Some(stream) = &mut self.stream else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        self.scratch.clear();
        encode(msg, &mut self.scratch).map_err(io::Error::other)?;
        stream.write_all(&self.scratch).await?;
        stream.flush().await
    }
}

/// The two output streams.
struct Console<'a, O, E> {
    out: &'a mut O,
    err: &'a mut E,
}

impl<O: AsyncWrite + Unpin, E: AsyncWrite + Unpin> Console<'_, O, E> {
    /// Writes one line and flushes it. A closed stdout or stderr is not a reason to stop chatting.
    async fn print(&mut self, line: Line) {
        let (sink, text): (&mut (dyn AsyncWrite + Unpin), String) = match line {
            Line::Out(text) => (&mut *self.out, text),
            Line::Err(text) => (&mut *self.err, text),
        };
        let mut bytes = text.into_bytes();
        bytes.push(b'\n');
        if sink.write_all(&bytes).await.is_ok() {
            let _ = sink.flush().await;
        }
    }
}

#[cfg(test)]
mod tests;
