//! The connection loop: connect, say hello, then relay commands out and messages in until
//! someone leaves.
//!
//! One task reads the socket and decodes frames into a channel, so a dead server is noticed at
//! once; the session task waits on that channel, on the user's input and on a deadline, and
//! writes every outgoing frame itself, in order, before it takes the next input.

use std::io;
use std::net::Shutdown;
use std::time::Duration;

use async_net::TcpStream;
use chat_proto::{
    ClientMsg, CloseReason, DecodeError, ErrorKind, FrameDecoder, Limits, MAGIC, MAX_SERVER_FRAME,
    PROTOCOL_VERSION, ServerMsg, encode,
};
use futures_lite::{AsyncReadExt, AsyncWrite, AsyncWriteExt, future};
use smol::Timer;
use smol::channel::{Receiver, Sender};

use crate::command::{Command, CommandError, HELP, parse_command};
use crate::config::Config;
use crate::input::{COMMAND_PROMPT, Input, InputEvent, NAME_PROMPT};
use crate::render::{Line, render};

/// Exit code: the user left (or gave up before joining).
pub const EXIT_OK: u8 = 0;
/// Exit code: cannot connect, refused (scripted), closed by the server, or connection lost.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: bad configuration (a bad port, no name in scripted mode, bad flags).
pub const EXIT_USAGE: u8 = 2;

/// How long to wait for the server's `Closing(Left)` after sending `Leave`.
pub const LEAVE_GRACE: Duration = Duration::from_secs(2);

/// How long to try to connect before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait for the server's last word after a write to it failed.
const LAST_WORD_GRACE: Duration = Duration::from_secs(1);

/// The line printed when the connection ends without a closing frame.
const LOST: &str = "connection to server lost";

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
    let mut console = Console { out, err };
    let name = match &config.name {
        Some(name) => name.clone(),
        None if input.is_interactive() => match ask_name(input).await {
            Some(name) => name,
            None => return EXIT_OK,
        },
        None => {
            console
                .print(Line::error("no name given; pass --name or set CHAT_NAME"))
                .await;
            return EXIT_USAGE;
        }
    };

    let stream = match connect(config, input).await {
        Ok(Some(stream)) => stream,
        Ok(None) => return EXIT_OK,
        Err(e) => {
            let addr = host_port(&config.host, config.port);
            console
                .print(Line::error(format_args!("cannot connect to {addr}: {e}")))
                .await;
            return EXIT_FAILURE;
        }
    };

    let (tx, events) = smol::channel::bounded(256);
    let reader = smol::spawn(read_frames(stream.clone(), tx));
    let mut session = Session {
        input,
        console,
        conn: Conn {
            stream: stream.clone(),
            buf: Vec::new(),
        },
        events,
        phase: Phase::Joining,
        limits: None,
        deadline: None,
    };
    let code = session.run(name).await;
    let _ = stream.shutdown(Shutdown::Both);
    drop(reader);
    code
}

/// Asks for a name at the prompt until a non-blank one is typed; `None` if the user quits.
async fn ask_name(input: &mut Input) -> Option<String> {
    input.set_prompt(NAME_PROMPT);
    let name = loop {
        match input.next().await {
            InputEvent::Line(line) if line.trim().is_empty() => {}
            InputEvent::Line(line) => break Some(line.trim().to_owned()),
            InputEvent::Eof | InputEvent::Interrupted => break None,
        }
    };
    input.set_prompt(COMMAND_PROMPT);
    name
}

/// Connects with a timeout. At a prompt, Ctrl-C or Ctrl-D gives up (`Ok(None)`); script input is
/// left untouched until joined.
async fn connect(config: &Config, input: &mut Input) -> io::Result<Option<TcpStream>> {
    let attempt = async {
        let connect = TcpStream::connect((config.host.as_str(), config.port));
        let timeout = async {
            Timer::after(CONNECT_TIMEOUT).await;
            Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
        };
        future::or(connect, timeout).await.map(Some)
    };
    let give_up = async {
        if !input.is_interactive() {
            return future::pending().await;
        }
        loop {
            match input.next().await {
                InputEvent::Line(_) => {}
                InputEvent::Eof | InputEvent::Interrupted => return Ok(None),
            }
        }
    };
    future::or(attempt, give_up).await
}

/// `host:port`, with an IPv6 address in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// What the socket reader reports.
#[derive(Debug)]
enum ServerEvent {
    /// A whole message.
    Msg(ServerMsg),
    /// The connection ended (EOF or an error) without a closing frame being read.
    Lost,
    /// The server sent bytes that are not a valid frame.
    Garbled(DecodeError),
}

/// Reads and decodes frames until the connection ends, reporting each message and then how it
/// ended. Stops early if the session has gone.
async fn read_frames(mut stream: TcpStream, tx: Sender<ServerEvent>) {
    let mut decoder = FrameDecoder::new(MAX_SERVER_FRAME);
    let mut buf = vec![0; 16 * 1024];
    let end = loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break ServerEvent::Lost,
            Ok(n) => n,
        };
        let mut bytes = &buf[..n];
        loop {
            match decoder.decode::<ServerMsg>(&mut bytes) {
                Ok(Some(msg)) => {
                    if tx.send(ServerEvent::Msg(msg)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(ServerEvent::Garbled(e)).await;
                    return;
                }
            }
        }
    };
    let _ = tx.send(end).await;
}

/// The write half of the connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Encodes and writes one message; it is on its way to the server when this returns.
    async fn send(&mut self, msg: &ClientMsg) -> io::Result<()> {
        self.buf.clear();
        encode(msg, &mut self.buf).map_err(io::Error::other)?;
        self.stream.write_all(&self.buf).await?;
        self.stream.flush().await
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A hello was sent; waiting for the welcome or a refusal.
    Joining,
    /// Refused at a prompt; waiting for the user to type another name.
    Naming,
    /// In the room.
    Joined,
    /// `Leave` was sent; waiting for the server's goodbye.
    Leaving,
}

/// What woke the session up.
enum Wake {
    Server(ServerEvent),
    Input(InputEvent),
    Deadline,
}

struct Session<'a, O, E> {
    input: &'a mut Input,
    console: Console<'a, O, E>,
    conn: Conn,
    events: Receiver<ServerEvent>,
    phase: Phase,
    /// The server's limits, known from the welcome.
    limits: Option<Limits>,
    /// When to stop waiting: for the goodbye after leaving, or for the last word after a
    /// failed write. Input is not read while it is set, except at a prompt.
    deadline: Option<Timer>,
}

impl<O: AsyncWrite + Unpin, E: AsyncWrite + Unpin> Session<'_, O, E> {
    async fn run(&mut self, name: String) -> u8 {
        self.hello(name).await;
        loop {
            let wake = self.wait().await;
            let exit = match wake {
                Wake::Server(event) => self.on_server(event).await,
                Wake::Input(event) => self.on_input(event).await,
                Wake::Deadline if self.phase == Phase::Leaving => Some(EXIT_OK),
                Wake::Deadline => {
                    self.console.print(Line::error(LOST)).await;
                    Some(EXIT_FAILURE)
                }
            };
            if let Some(code) = exit {
                return code;
            }
        }
    }

    /// Waits for the next server event, input or deadline.
    ///
    /// At a prompt the line editor is polled first, so lines queued for the terminal are printed
    /// on every turn; a script is only read once joined, and fairly against the server.
    async fn wait(&mut self) -> Wake {
        let interactive = self.input.is_interactive();
        let read_input = interactive || (self.phase == Phase::Joined && self.deadline.is_none());
        let events = &self.events;
        let server = async {
            // The reader always ends with an event; a closed channel means it was cancelled.
            Wake::Server(events.recv().await.unwrap_or(ServerEvent::Lost))
        };
        let input = &mut *self.input;
        let user = async {
            if read_input {
                Wake::Input(input.next().await)
            } else {
                future::pending().await
            }
        };
        let deadline = &mut self.deadline;
        let timer = async {
            match deadline {
                Some(timer) => {
                    timer.await;
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

    /// Sends a message; after a failed write, stops reading input and waits briefly for the
    /// reader to deliver the server's last word (a closing frame, or the lost connection).
    async fn send(&mut self, msg: &ClientMsg) {
        let failed = self.conn.send(msg).await.is_err();
        if failed && self.phase != Phase::Leaving && self.deadline.is_none() {
            self.deadline = Some(Timer::after(LAST_WORD_GRACE));
        }
    }

    async fn hello(&mut self, name: String) {
        self.phase = Phase::Joining;
        self.send(&ClientMsg::Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            name,
        })
        .await;
    }

    async fn leave(&mut self) {
        self.phase = Phase::Leaving;
        self.send(&ClientMsg::Leave).await;
        self.deadline = Some(Timer::after(LEAVE_GRACE));
    }

    async fn on_server(&mut self, event: ServerEvent) -> Option<u8> {
        let msg = match event {
            ServerEvent::Msg(msg) => msg,
            ServerEvent::Lost if self.phase == Phase::Leaving => return Some(EXIT_OK),
            ServerEvent::Lost => {
                self.console.print(Line::error(LOST)).await;
                return Some(EXIT_FAILURE);
            }
            ServerEvent::Garbled(e) => {
                self.console
                    .print(Line::error(format_args!("{LOST}: {e}")))
                    .await;
                return Some(if self.phase == Phase::Leaving {
                    EXIT_OK
                } else {
                    EXIT_FAILURE
                });
            }
        };
        match &msg {
            ServerMsg::Ping { nonce } => {
                self.send(&ClientMsg::Pong { nonce: *nonce }).await;
                return None;
            }
            ServerMsg::Welcome { limits, .. } if self.phase == Phase::Joining => {
                self.limits = Some(*limits);
                self.phase = Phase::Joined;
            }
            ServerMsg::Refused(_) if self.phase == Phase::Joining => {
                self.print_msg(&msg).await;
                if !self.input.is_interactive() {
                    return Some(EXIT_FAILURE);
                }
                self.phase = Phase::Naming;
                self.input.set_prompt(NAME_PROMPT);
                return None;
            }
            ServerMsg::Closing(reason) if self.phase == Phase::Leaving => {
                if *reason != CloseReason::Left {
                    self.print_msg(&msg).await;
                }
                return Some(EXIT_OK);
            }
            ServerMsg::Closing(_) => {
                self.print_msg(&msg).await;
                return Some(EXIT_FAILURE);
            }
            _ => {}
        }
        self.print_msg(&msg).await;
        None
    }

    async fn print_msg(&mut self, msg: &ServerMsg) {
        if let Some(line) = render(msg) {
            self.console.print(line).await;
        }
    }

    async fn on_input(&mut self, event: InputEvent) -> Option<u8> {
        let line = match event {
            InputEvent::Line(line) => line,
            InputEvent::Eof | InputEvent::Interrupted => {
                return match self.phase {
                    Phase::Joined => {
                        self.leave().await;
                        None
                    }
                    // Not in the room (or already leaving): nothing to say goodbye to.
                    Phase::Joining | Phase::Naming | Phase::Leaving => Some(EXIT_OK),
                };
            }
        };
        self.input.remember(&line);
        match self.phase {
            Phase::Naming => {
                let name = line.trim();
                if !name.is_empty() {
                    let name = name.to_owned();
                    self.input.set_prompt(COMMAND_PROMPT);
                    self.hello(name).await;
                }
            }
            Phase::Joining => {
                self.console
                    .print(Line::error("not in the room yet; wait for the welcome"))
                    .await;
            }
            Phase::Leaving => {}
            Phase::Joined => self.on_command(&line).await,
        }
        None
    }

    async fn on_command(&mut self, line: &str) {
        match parse_command(line) {
            Ok(Command::Send(text)) => {
                let max_bytes = self.limits.map_or(u32::MAX, |l| l.max_text_bytes);
                if text.len() > max_bytes as usize {
                    let refusal = ErrorKind::TextTooLong { max_bytes };
                    self.console.print(Line::error(refusal)).await;
                } else {
                    self.send(&ClientMsg::Chat { text }).await;
                }
            }
            Ok(Command::Who) => self.send(&ClientMsg::Who).await,
            Ok(Command::Leave) => self.leave().await,
            Ok(Command::Help) => {
                for line in HELP {
                    self.console.print(Line::Out((*line).to_owned())).await;
                }
            }
            Err(CommandError::Blank) => {}
            Err(e) => self.console.print(Line::error(e)).await,
        }
    }
}

#[cfg(test)]
mod tests;
