//! A real `redis-server` for tests: started on a free loopback port with its own temporary
//! directory, killed and cleaned up on drop, and a tiny blocking RESP client for assertions.
//!
//! ```no_run
//! use tests::redis::{RedisServer, Reply};
//! let redis = RedisServer::builder().aof(true).start();
//! assert!(!redis.cmd(&["XADD", "room", "*", "text", "hi"]).is_error());
//! assert_eq!(redis.cmd(&["XLEN", "room"]), Reply::Int(1));
//! ```

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{TempDir, free_port};

/// How long a started or restarted server has to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`RedisServer::cmd`] waits for a reply.
const CMD_TIMEOUT: Duration = Duration::from_secs(10);
/// How many free ports to try before giving up (another process may take the port we picked).
const START_ATTEMPTS: usize = 5;

/// Options for a [`RedisServer`], from [`RedisServer::builder`].
#[derive(Debug, Clone, Default)]
pub struct RedisBuilder {
    aof: bool,
}

impl RedisBuilder {
    /// Turns the append-only file on with `fsync` on every write, so that the data survives a
    /// SIGKILL and a [`RedisServer::restart`]. Off by default (no persistence at all).
    pub fn aof(mut self, on: bool) -> Self {
        self.aof = on;
        self
    }

    /// Starts the server and waits until it answers PING. Panics (failing the test) with the
    /// server's log if it cannot start.
    pub fn start(self) -> RedisServer {
        let mut dir = TempDir::new("chat-redis");
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let mut server = RedisServer {
                options: self.clone(),
                port,
                child: None,
                dir,
            };
            match server.launch() {
                Ok(()) => return server,
                Err(log) => {
                    last_log = log;
                    dir = server.take_dir();
                }
            }
        }
        panic!("redis-server did not start after {START_ATTEMPTS} tries; last log:\n{last_log}");
    }
}

/// A `redis-server` child process on 127.0.0.1, with its own port and data directory.
/// Dropping it kills the process and removes the directory.
#[derive(Debug)]
pub struct RedisServer {
    options: RedisBuilder,
    port: u16,
    child: Option<Child>,
    dir: TempDir,
}

impl RedisServer {
    /// Options: `RedisServer::builder().aof(true).start()`.
    pub fn builder() -> RedisBuilder {
        RedisBuilder::default()
    }

    /// Starts a server with no persistence.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its address, `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Its URL for a client, `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its data directory (the AOF lives here).
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// Sends one command on a fresh connection and returns the reply; a Redis error is
    /// `Reply::Error`. Panics if the server cannot be reached or does not answer in time.
    pub fn cmd(&self, args: &[&str]) -> Reply {
        self.try_cmd(args)
            .unwrap_or_else(|err| panic!("redis {args:?} on port {}: {err}", self.port))
    }

    /// Like [`cmd`](Self::cmd), but an I/O error (e.g. the server was killed) is returned.
    pub fn try_cmd(&self, args: &[&str]) -> io::Result<Reply> {
        command(self.addr(), args)
    }

    /// Kills the server with SIGKILL (no shutdown, no final save) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server if it runs, then starts it again on the same port with the same
    /// directory: with [`RedisBuilder::aof`] on, the data is still there. Panics if it cannot.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(log) = self.launch() {
            panic!(
                "redis-server did not restart on port {}; log:\n{log}",
                self.port
            );
        }
    }

    /// Spawns the child on `self.port` and waits for PONG; on failure the child is gone and
    /// the error is its log.
    fn launch(&mut self) -> Result<(), String> {
        let log_path = self.dir().join("redis.log");
        let log = fs::File::create(&log_path).expect("create redis.log");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--daemonize", "no", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(self.dir());
        if self.options.aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file"))
            .stderr(log);
        let child = cmd.spawn().unwrap_or_else(|err| {
            panic!("could not start redis-server ({err}); install it: apt-get install redis-server")
        });
        self.child = Some(child);
        let log = || fs::read_to_string(&log_path).unwrap_or_default();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("exited with {status}\n{}", log()));
            }
            if let Ok(Reply::Simple(pong)) = self.try_cmd(&["PING"])
                && pong == "PONG"
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!("no PONG within {READY_TIMEOUT:?}\n{}", log()));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Moves the directory out, for the next start attempt on another port.
    fn take_dir(&mut self) -> TempDir {
        std::mem::replace(&mut self.dir, TempDir(PathBuf::new()))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`, `+PONG`.
    Simple(String),
    /// `-ERR ...`, `-NOSCRIPT ...`: the whole line after `-`.
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$n` bulk string.
    Bulk(Vec<u8>),
    /// `*n` array.
    Array(Vec<Reply>),
    /// `$-1` or `*-1`.
    Nil,
}

impl Reply {
    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// The integer; panics on any other reply.
    pub fn int(&self) -> i64 {
        match self {
            Reply::Int(n) => *n,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    /// A simple or bulk string as text; panics on any other reply.
    pub fn text(&self) -> String {
        match self {
            Reply::Simple(s) => s.clone(),
            Reply::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("expected a string reply, got {other:?}"),
        }
    }

    /// The elements of an array; panics on any other reply.
    pub fn array(&self) -> &[Reply] {
        match self {
            Reply::Array(items) => items,
            other => panic!("expected an array reply, got {other:?}"),
        }
    }
}

/// Sends one command to the Redis at `addr` on a fresh connection and returns the reply, waiting
/// at most 10 s; for code that holds an address rather than the [`RedisServer`] (a thread).
pub fn command(addr: SocketAddr, args: &[&str]) -> io::Result<Reply> {
    let stream = TcpStream::connect_timeout(&addr, CMD_TIMEOUT)?;
    stream.set_read_timeout(Some(CMD_TIMEOUT))?;
    stream.set_write_timeout(Some(CMD_TIMEOUT))?;
    (&stream).write_all(&encode(args))?;
    read_reply(&mut BufReader::new(stream))
}

/// A command as a RESP array of bulk strings.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one RESP2 reply.
fn read_reply(input: &mut impl BufRead) -> io::Result<Reply> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let Some(body) = line.strip_suffix("\r\n") else {
        return Err(invalid(format!("reply line without CRLF: {line:?}")));
    };
    let (kind, rest) = body.split_at(body.len().min(1));
    let number = || {
        rest.parse::<i64>()
            .map_err(|_| invalid(format!("bad number in {body:?}")))
    };
    Ok(match kind {
        "+" => Reply::Simple(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(number()?),
        "$" => match usize::try_from(number()?) {
            Err(_) => Reply::Nil,
            Ok(len) => {
                let mut bytes = vec![0; len + 2];
                input.read_exact(&mut bytes)?;
                if !bytes.ends_with(b"\r\n") {
                    return Err(invalid("bulk string without CRLF".into()));
                }
                bytes.truncate(len);
                Reply::Bulk(bytes)
            }
        },
        "*" => match usize::try_from(number()?) {
            Err(_) => Reply::Nil,
            Ok(len) => Reply::Array(
                (0..len)
                    .map(|_| read_reply(input))
                    .collect::<io::Result<_>>()?,
            ),
        },
        _ => return Err(invalid(format!("unknown reply type in {body:?}"))),
    })
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_of_every_kind_are_parsed() {
        let wire =
            b"+OK\r\n-ERR no\r\n:-3\r\n$2\r\nhi\r\n$-1\r\n*2\r\n:1\r\n*1\r\n$0\r\n\r\n*-1\r\n";
        let mut input = &wire[..];
        let replies: Vec<Reply> = (0..7).map(|_| read_reply(&mut input).unwrap()).collect();
        assert_eq!(
            replies,
            [
                Reply::Simple("OK".into()),
                Reply::Error("ERR no".into()),
                Reply::Int(-3),
                Reply::Bulk(b"hi".to_vec()),
                Reply::Nil,
                Reply::Array(vec![Reply::Int(1), Reply::Array(vec![Reply::Bulk(vec![])])]),
                Reply::Nil,
            ]
        );
        assert!(input.is_empty());
    }

    #[test]
    fn a_command_is_an_array_of_bulk_strings() {
        assert_eq!(
            encode(&["SET", "k", ""]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
        );
    }
}
