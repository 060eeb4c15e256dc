//! A real `redis-server` for tests: started on a free loopback port with its own temporary
//! directory, killed and cleaned up on drop, and one-shot commands for assertions (the `redis`
//! crate's blocking client).
//!
//! ```no_run
//! use tests::redis::RedisServer;
//! let redis = RedisServer::builder().aof(true).start();
//! let _id: String = redis.cmd(&["XADD", "room", "*", "text", "hi"]);
//! assert_eq!(redis.cmd::<i64>(&["XLEN", "room"]), 1);
//! ```

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use ::redis::{Client, FromRedisValue, RedisResult};
use chat_core::log::redis::{Call, Command as LogCommand, Reply};

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

    /// Sends one command on a fresh connection and returns the reply as `T`. Panics on an
    /// error reply, or if the server cannot be reached or does not answer in time.
    pub fn cmd<T: FromRedisValue>(&self, args: &[&str]) -> T {
        self.try_cmd(args)
            .unwrap_or_else(|err| panic!("redis {args:?} on port {}: {err}", self.port))
    }

    /// Like [`cmd`](Self::cmd), but an error (a refusal, or the server killed) is returned.
    pub fn try_cmd<T: FromRedisValue>(&self, args: &[&str]) -> RedisResult<T> {
        command(self.addr(), args)
    }

    /// Sends the server a signal by name (`STOP`, `CONT`) through `kill`.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("redis-server runs");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
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
            if self
                .try_cmd::<String>(&["PING"])
                .is_ok_and(|pong| pong == "PONG")
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

/// Sends one command to the Redis at `addr` on a fresh connection and returns the reply,
/// waiting at most 10 s; for code that holds an address rather than the [`RedisServer`] (a
/// thread). A Redis error reply is an `Err`, as an I/O error is.
pub fn command<T: FromRedisValue>(addr: SocketAddr, args: &[&str]) -> RedisResult<T> {
    let client = Client::open(format!("redis://{addr}"))?;
    let mut con = client.get_connection_with_timeout(CMD_TIMEOUT)?;
    con.set_read_timeout(Some(CMD_TIMEOUT))?;
    con.set_write_timeout(Some(CMD_TIMEOUT))?;
    let (name, rest) = args.split_first().expect("a command has a name");
    ::redis::cmd(name).arg(rest).query(&mut con)
}

/// Runs one of the Redis log's calls on `con` as the server's driver does (a script by
/// `EVALSHA`, loaded first where Redis lacks it), giving the reply in the log's terms.
pub fn run_call(con: &mut ::redis::Connection, call: &Call) -> Reply {
    let result = match &call.command {
        LogCommand::Script { script, keys, args } => {
            let script = ::redis::Script::new(script.source());
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(key);
            }
            for arg in args {
                invocation.arg(arg);
            }
            invocation.invoke(con)
        }
        LogCommand::Plain(args) => {
            let (name, rest) = args.split_first().expect("a command has a name");
            ::redis::cmd(name).arg(rest).query(con)
        }
    };
    chat_server::redis_reply(result)
}
