//! Shared harness for the end-to-end tests and the load generator: start a server (in-process
//! or the real binary) on a free loopback port, and a raw protocol client that speaks frames
//! directly so tests can also misbehave.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod load;
pub mod proxy;
pub mod redis;
pub mod web;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chat_proto::{
    ChatKind, ClientMsg, CloseReason, FrameReader, MAGIC, MAX_SERVER_FRAME, PROTOCOL_VERSION,
    ServerMsg,
};
pub use chat_server::{RunningServer, ServerConfig};

/// How long a raw client waits for a frame before the test fails.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts an in-process server on 127.0.0.1 port 0.
pub fn start_server(config: ServerConfig) -> RunningServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    RunningServer::start(listener, config).expect("start server")
}

/// A server config with small, test-friendly limits.
pub fn test_config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.room.rate_per_sec = 10_000;
    config.room.burst = 10_000;
    config.room.flood_strikes = 10_000;
    // Every test client comes from 127.0.0.1, and loopback is not exempt from the per-address
    // limit; the tests of that limit set it themselves.
    config.room.max_handshakes_per_ip = 100_000;
    config.linger = Duration::from_millis(500);
    config
}

/// A hello for `name`.
pub fn hello(name: &str) -> ClientMsg {
    ClientMsg::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        name: name.into(),
        password: None,
        ident: None,
    }
}

/// A plain chat message to send, owning its text.
pub fn chat_msg(text: String) -> ClientMsg {
    ClientMsg::Chat {
        text,
        kind: ChatKind::Plain,
    }
}

/// A chat message to send.
pub fn chat(text: &str) -> ClientMsg {
    ClientMsg::Chat {
        text: text.into(),
        kind: ChatKind::Plain,
    }
}

/// The notice that `name` joined, as [`RawClient::recv`] gives it (untimed).
pub fn joined(name: &str) -> ServerMsg {
    ServerMsg::Joined {
        name: name.into(),
        time: 0,
        ident: None,
    }
}

/// The notice that `name` left, and why, as [`RawClient::recv`] gives it (untimed).
pub fn left(name: &str, reason: CloseReason) -> ServerMsg {
    ServerMsg::Left {
        name: name.into(),
        reason,
        message: None,
        time: 0,
    }
}

/// `msg` with its log time set to 0, and that time: tests compare messages whole, and
/// check times on their own.
pub fn untimed(mut msg: ServerMsg) -> (ServerMsg, Option<u64>) {
    let time = match &mut msg {
        ServerMsg::Chat { time, .. }
        | ServerMsg::Joined { time, .. }
        | ServerMsg::Left { time, .. }
        | ServerMsg::Renamed { time, .. }
        | ServerMsg::Away { time, .. } => Some(std::mem::take(time)),
        ServerMsg::History { chats, .. } => {
            let last = chats.last().map(|c| c.time);
            chats.iter_mut().for_each(|c| c.time = 0);
            last
        }
        _ => None,
    };
    (msg, time)
}

/// A port that was free a moment ago on 127.0.0.1: bind port 0, read the port, let it go.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A fresh directory under the system's temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `PREFIX-PID-N`, a name no other test uses.
    pub fn new(prefix: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        loop {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return TempDir(path),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => panic!("create {}: {err}", path.display()),
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A connection to `addr` with a 4 KiB receive buffer: a peer that stops reading fills it at
/// once, so the server's writes to it stall after a few frames (the slow-member tests).
pub fn connect_small_window(addr: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("receive buffer");
    socket.connect(&addr.into()).expect("connect");
    socket.into()
}

/// Asserts that what a member closed as too slow got before its closing frame is broadcasts
/// only (joins and chats): no reply or notice of its own among them. Their order is not
/// checked here.
pub fn assert_only_broadcasts(before: &[ServerMsg]) {
    let out_of_place: Vec<&ServerMsg> = before
        .iter()
        .filter(|msg| !matches!(msg, ServerMsg::Joined { .. } | ServerMsg::Chat { .. }))
        .collect();
    assert_eq!(out_of_place, Vec::<&ServerMsg>::new());
}

/// A blocking client that speaks raw frames.
#[derive(Debug)]
pub struct RawClient {
    /// The socket, for tests that misbehave on it.
    pub stream: TcpStream,
    reader: FrameReader,
    /// The log time of the last timed message received (see [`untimed`]).
    pub last_time: Option<u64>,
}

impl RawClient {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> Self {
        Self::from_stream(TcpStream::connect(addr).expect("connect"))
    }

    /// Wraps a connected socket.
    pub fn from_stream(stream: TcpStream) -> Self {
        stream.set_nodelay(true).ok();
        stream.set_read_timeout(Some(RECV_TIMEOUT)).ok();
        Self {
            stream,
            reader: FrameReader::new(MAX_SERVER_FRAME),
            last_time: None,
        }
    }

    /// Connects and joins as `name`; panics unless welcomed. Returns the welcome's member list.
    pub fn join(addr: SocketAddr, name: &str) -> (Self, Vec<String>) {
        let mut client = Self::connect(addr);
        client.send(&hello(name));
        match client.recv() {
            ServerMsg::Welcome { members, .. } => {
                (client, members.iter().map(|m| m.name.to_string()).collect())
            }
            other => panic!("{name} was not welcomed: {other:?}"),
        }
    }

    /// Sends one message.
    pub fn send(&mut self, msg: &ClientMsg) {
        self.send_raw(&chat_proto::encode_to_vec(msg).unwrap());
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// The next message; `None` at end of stream. A read timeout is an `Err`.
    pub fn try_recv(&mut self) -> io::Result<Option<ServerMsg>> {
        loop {
            if let Some(msg) = self.reader.next().map_err(io::Error::other)? {
                let (msg, time) = untimed(msg);
                self.last_time = time.or(self.last_time);
                return Ok(Some(msg));
            }
            if self.reader.read_from(&mut self.stream)? == 0 {
                return Ok(None);
            }
        }
    }

    /// The next message, skipping pings (answered) ; panics at end of stream or timeout.
    pub fn recv(&mut self) -> ServerMsg {
        loop {
            match self.try_recv() {
                Ok(Some(ServerMsg::Ping { nonce })) => self.send(&ClientMsg::Pong { nonce }),
                Ok(Some(msg)) => return msg,
                Ok(None) => panic!("connection closed while waiting for a message"),
                Err(e) => panic!("no message within {RECV_TIMEOUT:?}: {e}"),
            }
        }
    }

    /// Reads until the server closes; returns the reason in its closing frame (if any) and
    /// the messages before it.
    pub fn until_closed(&mut self) -> (Option<CloseReason>, Vec<ServerMsg>) {
        let mut seen = Vec::new();
        loop {
            match self.try_recv() {
                Ok(Some(ServerMsg::Closing(reason))) => {
                    // Nothing may follow the closing frame.
                    let after = self.try_recv();
                    assert!(
                        matches!(after, Ok(None) | Err(_)),
                        "frame after Closing: {after:?}"
                    );
                    return (Some(reason), seen);
                }
                Ok(Some(msg)) => seen.push(msg),
                Ok(None) => return (None, seen),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    panic!("server did not close within {RECV_TIMEOUT:?}")
                }
                Err(_) => return (None, seen),
            }
        }
    }

    /// Sends a `Ping` and returns what comes before its `Pong`: the room answers a ping after
    /// everything it did before reading it, so this is all that was on its way to this client.
    ///
    /// In a room shared through Redis a node answers at once, and covers only the log entries
    /// it has applied: call it once a member on the same node has received the last of them.
    pub fn recv_until_pong(&mut self) -> Vec<ServerMsg> {
        static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let nonce = NONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.send(&ClientMsg::Ping { nonce });
        let mut before = Vec::new();
        loop {
            match self.recv() {
                ServerMsg::Pong { nonce: n } if n == nonce => return before,
                msg => before.push(msg),
            }
        }
    }

    /// Asserts that nothing is on its way to this client (see [`recv_until_pong`]).
    ///
    /// [`recv_until_pong`]: Self::recv_until_pong
    pub fn expect_nothing_more(&mut self) {
        assert_eq!(self.recv_until_pong(), Vec::new(), "before the pong");
    }

    /// Asserts that nothing arrives within `wait`.
    pub fn expect_silence(&mut self, wait: Duration) {
        self.stream.set_read_timeout(Some(wait)).ok();
        match self.try_recv() {
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {
            }
            other => panic!("expected silence, got {other:?}"),
        }
        self.stream.set_read_timeout(Some(RECV_TIMEOUT)).ok();
    }
}

/// Reads a stalled-reader run from member `me`'s side: chats from members named `m0`, `m1`, ...
/// whose texts start with the message's index, until `expected` chats have arrived and
/// `stalled` has been seen leaving as too slow. Checks that nothing comes back to its sender,
/// that each sender's messages come in order and that sequence numbers rise; calls `on_chat`
/// for each chat. Returns the chats received and how often `stalled` was seen leaving.
pub fn receive_chatter(
    member: &mut RawClient,
    me: usize,
    expected: usize,
    stalled: &str,
    mut on_chat: impl FnMut(),
) -> (usize, usize) {
    let mut next: Vec<usize> = Vec::new();
    let (mut got, mut stalled_left, mut last_seq) = (0, 0, 0);
    while got < expected || stalled_left == 0 {
        match member.recv() {
            ServerMsg::Chat {
                seq, from, text, ..
            } => {
                let s: usize = from[1..].parse().expect("sender named m<index>");
                assert_ne!(s, me, "m{me} got its own message back");
                let n: usize = text
                    .split(' ')
                    .next()
                    .unwrap()
                    .parse()
                    .expect("index first");
                if next.len() <= s {
                    next.resize(s + 1, 0);
                }
                assert_eq!(n, next[s], "m{me} got m{s}'s messages out of order");
                assert!(seq > last_seq, "m{me}: sequence number did not rise");
                next[s] += 1;
                last_seq = seq;
                got += 1;
                on_chat();
            }
            msg if msg == left(stalled, CloseReason::TooSlow) => stalled_left += 1,
            other => panic!("m{me}: unexpected {other:?}"),
        }
    }
    (got, stalled_left)
}

/// Polls `cond` every 10 ms until it holds or `within` passes; returns whether it held.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The path of a binary built from this workspace (`chat-server`, `chat-client`), building
/// them first if this test run has not (e.g. `cargo test -p tests`).
pub fn binary(name: &str) -> PathBuf {
    static BUILD: std::sync::Once = std::sync::Once::new();
    let mut dir = std::env::current_exe().expect("current exe");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        command.args(["build", "--quiet", "-p", "chat-server", "-p", "chat-client"]);
        if dir.ends_with("release") {
            command.arg("--release");
        }
        let status = command.status().expect("run cargo build");
        assert!(status.success(), "cargo build of the binaries failed");
    });
    dir.join(name)
}

/// The path of an example of the workspace's library crates (`blocking`, chat-core's second
/// driver), building it first: `cargo test -p tests` alone does not build examples.
pub fn example(package: &str, name: &str) -> PathBuf {
    let mut dir = binary("chat-server");
    dir.pop();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(["build", "--quiet", "-p", package, "--example", name]);
    if dir.ends_with("release") {
        command.arg("--release");
    }
    let status = command.status().expect("run cargo build");
    assert!(status.success(), "cargo build of example {name} failed");
    dir.join("examples").join(name)
}

/// The real server binary, started on port 0; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    /// The child process.
    pub child: Child,
    /// The address it printed.
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `chat-server --port 0` with extra arguments and waits for `listening on ADDR`.
    pub fn start(args: &[&str]) -> Self {
        let mut command = Command::new(binary("chat-server"));
        command.args(["--port", "0"]);
        // Every test client comes from 127.0.0.1, and loopback is not exempt from the
        // per-address limit; a test of that limit passes the flag itself.
        if !args.contains(&"--max-handshakes-per-ip") {
            command.args(["--max-handshakes-per-ip", "100000"]);
        }
        Self::start_with(command.args(args))
    }

    /// Starts a prepared command (which must print `listening on ADDR`).
    pub fn start_with(command: &mut Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chat-server (is it built? cargo build -p chat-server)");
        let mut stdout = child.stdout.take().unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\n") {
            match stdout.read(&mut byte) {
                Ok(1) => line.push(byte[0]),
                _ => panic!("chat-server exited before listening"),
            }
        }
        let line = String::from_utf8(line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .expect("listening line")
            .parse()
            .unwrap();
        // Keep draining stdout so the server never blocks on it.
        std::thread::spawn(move || io::copy(&mut stdout, &mut io::sink()));
        Self { child, addr }
    }

    /// Sends a signal by number (15 = TERM, 9 = KILL) through `kill`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for exit up to `within`; returns the exit status.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory of the server in KiB, from /proc.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.child.id())
    }

    /// Open file descriptors of the server, from /proc.
    pub fn open_fds(&self) -> Option<usize> {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .ok()
            .map(|d| d.count())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of process `pid` in KiB (`VmRSS` in /proc/PID/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time (user and system) that process `pid` has used so far, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields from the state on follow its ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / clock_ticks_per_sec() as f64,
    ))
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`), which /proc counts CPU time in.
fn clock_ticks_per_sec() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok()?.trim().parse().ok())
            .filter(|&ticks| ticks > 0)
            .unwrap_or(100)
    })
}

impl ServerProcess {
    /// CPU time the server has used so far, from /proc.
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time(self.child.id())
    }
}
