//! `cargo xtask bench`: the benchmark matrix, chat side by side with Redis pub/sub, written to
//! BENCHMARKS.md. `cargo xtask bench --smoke` is the seconds-long check that CI runs.
//!
//! Each point gets a fresh server pinned to CPU 0 and the load generator pinned to CPU 1
//! (where `taskset` exists and there are two CPUs).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{cargo, project_root, step};

/// One point of the matrix.
struct Point {
    name: &'static str,
    members: usize,
    messages: usize,
    rate: u64,
    idle: bool,
}

/// Where BENCHMARKS.md's hand-written part starts, kept when the table is regenerated: its first
/// second-level heading (the generated part has none). Everything from there on survives: the
/// gateway and cluster sections, which their own runs print, and the history.
const HISTORY: &str = "\n## ";

const SENDERS: usize = 10;
const SIZE: usize = 64;

const MATRIX: &[Point] = &[
    Point {
        name: "burst N=100",
        members: 100,
        messages: 5_000,
        rate: 0,
        idle: false,
    },
    Point {
        name: "burst N=1,000",
        members: 1_000,
        messages: 1_000,
        rate: 0,
        idle: false,
    },
    Point {
        name: "burst N=10,000",
        members: 10_000,
        messages: 100,
        rate: 0,
        idle: false,
    },
    Point {
        name: "200k/s N=100",
        members: 100,
        messages: 1_000,
        rate: 200_000,
        idle: false,
    },
    Point {
        name: "200k/s N=1,000",
        members: 1_000,
        messages: 100,
        rate: 200_000,
        idle: false,
    },
    Point {
        name: "200k/s N=10,000",
        members: 10_000,
        messages: 10,
        rate: 200_000,
        idle: false,
    },
    Point {
        name: "idle 19,000",
        members: 19_000,
        messages: 0,
        rate: 0,
        idle: true,
    },
];

const CHAT_FLAGS: &[&str] = &[
    "--max-clients",
    "20000",
    "--max-handshakes",
    "20000",
    // Every generated client comes from 127.0.0.1; loopback is not exempt.
    "--max-handshakes-per-ip",
    "20000",
    "--rate",
    "1000000",
    "--burst",
    "1000000",
    "--flood-strikes",
    "1000000",
    "--handshake-timeout",
    "120s",
    "--ping-interval",
    "10m",
    "--idle-timeout",
    "20m",
];

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "--smoke") {
        return step(
            "bench smoke",
            "loadgen --smoke",
            command(&["--smoke".to_owned()]),
        );
    }
    if args.iter().any(|a| a == "--cluster") {
        return cluster();
    }
    if args.iter().any(|a| a == "--gateways" || a == "--irc") {
        return gateways();
    }
    let only: Option<&String> = args.iter().skip_while(|a| *a != "--only").nth(1);
    let with_redis = !args.iter().any(|a| a == "--no-redis");
    build()?;
    let root = project_root();
    let bin = root.join("target/release");
    let redis = with_redis.then(|| which("redis-server")).flatten();
    if with_redis && redis.is_none() {
        eprintln!(
            "bench: redis-server not found; install it (Debian: apt-get install redis-server) to compare. Skipping Redis."
        );
    }
    let pinned = std::thread::available_parallelism()
        .map(|n| n.get() >= 2)
        .unwrap_or(false)
        && which("taskset").is_some();

    let mut rows = Vec::new();
    for point in MATRIX
        .iter()
        .filter(|p| only.is_none_or(|o| p.name.contains(o.as_str())))
    {
        eprintln!("==> {}", point.name);
        let chat = {
            let port = free_port()?;
            let mut args: Vec<String> = vec!["--port".into(), port.to_string()];
            args.extend(CHAT_FLAGS.iter().map(|s| s.to_string()));
            let server = Server::start(&bin.join("chat-server"), &args, port, pinned)?;
            let result = loadgen(&bin, point, "chat", port, server.pid(), pinned);
            drop(server);
            result?
        };
        let redis = match &redis {
            Some(redis) => {
                let port = free_port()?;
                let args: Vec<String> = [
                    "--port",
                    &port.to_string(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--maxclients",
                    "19500",
                    "--protected-mode",
                    "no",
                    "--loglevel",
                    "warning",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                let server = Server::start(Path::new(redis), &args, port, pinned)?;
                let result = loadgen(&bin, point, "redis", port, server.pid(), pinned);
                drop(server);
                Some(result?)
            }
            None => None,
        };
        rows.push((point, chat, redis));
    }
    let mut report = markdown(&rows, pinned, args);
    if only.is_some() {
        // A partial run is printed, not written over the full table.
        println!("{report}");
        return Ok(());
    }
    // The hand-written sections below the generated table survive a new run.
    let path = root.join("BENCHMARKS.md");
    if let Ok(old) = std::fs::read_to_string(&path)
        && let Some(at) = old.find(HISTORY)
    {
        report.push('\n');
        report.push_str(&old[at + 1..]);
    }
    std::fs::write(&path, &report).map_err(|e| format!("write BENCHMARKS.md: {e}"))?;
    println!("{report}");
    Ok(())
}

/// The points `--cluster` runs: one node alone, then three nodes sharing the room through Redis.
const CLUSTER: &[Point] = &[
    Point {
        name: "burst N=1,000",
        members: 1_000,
        messages: 300,
        rate: 0,
        idle: false,
    },
    Point {
        name: "20k/s N=1,000",
        members: 1_000,
        messages: 100,
        rate: 20_000,
        idle: false,
    },
    Point {
        name: "200k/s N=1,000",
        members: 1_000,
        messages: 100,
        rate: 200_000,
        idle: false,
    },
];

/// `cargo xtask bench --cluster`: each point once on a single server, then on three servers
/// sharing the room through one Redis, members spread evenly over the three. Prints a table.
fn cluster() -> Result<(), String> {
    build()?;
    let bin = project_root().join("target/release");
    let redis_bin = which("redis-server")
        .ok_or("bench --cluster needs redis-server (Debian: apt-get install redis-server)")?;
    let mut rows = Vec::new();
    for point in CLUSTER {
        eprintln!("==> {} on one server", point.name);
        let single = {
            let port = free_port()?;
            let mut args: Vec<String> = vec!["--port".into(), port.to_string()];
            args.extend(CHAT_FLAGS.iter().map(|s| s.to_string()));
            let server = Server::start(&bin.join("chat-server"), &args, port, false)?;
            loadgen_at(&bin, point, "chat", &[port], server.pid(), false)?
        };
        eprintln!("==> {} on three servers and Redis", point.name);
        let redis_port = free_port()?;
        let redis_args: Vec<String> = [
            "--port",
            &redis_port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--loglevel",
            "warning",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let redis = Server::start(Path::new(&redis_bin), &redis_args, redis_port, false)?;
        let mut nodes = Vec::new();
        let mut ports = Vec::new();
        for _ in 0..3 {
            let port = free_port()?;
            let mut args: Vec<String> = vec!["--port".into(), port.to_string()];
            args.extend(CHAT_FLAGS.iter().map(|s| s.to_string()));
            args.extend(
                [
                    "--redis",
                    &format!("redis://127.0.0.1:{redis_port}"),
                    "--lease",
                    "30s",
                ]
                .iter()
                .map(|s| s.to_string()),
            );
            nodes.push(Server::start(&bin.join("chat-server"), &args, port, false)?);
            ports.push(port);
        }
        let redis_cpu = || cpu_secs(redis.pid());
        let before = redis_cpu();
        let shared = loadgen_at(&bin, point, "chat", &ports, nodes[0].pid(), false)?;
        let redis_secs = redis_cpu() - before;
        drop(nodes);
        drop(redis);
        rows.push((point, single, shared, redis_secs));
    }
    let mut out = String::new();
    out.push_str(&format!(
        "Produced by `cargo xtask bench --cluster`. Machine: {}. Nothing pinned: three servers, Redis and the load generator share the cores. K = {SENDERS} senders, S = {SIZE}-byte payloads, members spread evenly over the servers.

",
        machine()
    ));
    out.push_str("| point | 1 server deliveries/s | 3 servers deliveries/s (per server) | 1 server p50 / p99 ms | 3 servers p50 / p99 ms | Redis CPU per message | lost (1 / 3) |
");
    out.push_str(
        "|---|---|---|---|---|---|---|
",
    );
    for (point, single, shared, redis_secs) in &rows {
        let messages = (SENDERS * point.messages) as f64;
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} ({:.0}) | {:.2} / {:.2} | {:.2} / {:.2} | {:.0} µs | {} / {} |
",
            point.name,
            single.num("deliveries_per_sec"),
            shared.num("deliveries_per_sec"),
            shared.num("deliveries_per_sec") / 3.0,
            single.num("p50_us") / 1000.0,
            single.num("p99_us") / 1000.0,
            shared.num("p50_us") / 1000.0,
            shared.num("p99_us") / 1000.0,
            redis_secs * 1e6 / messages,
            single.num("lost"),
            shared.num("lost"),
        ));
    }
    println!("{out}");
    Ok(())
}

/// `cargo xtask bench --gateways`: the same burst with every member native, then with every
/// member on the IRC gateway, then on the browser's WebSocket (senders native): what a member
/// of each kind costs per delivery.
fn gateways() -> Result<(), String> {
    build()?;
    let bin = project_root().join("target/release");
    let point = &CLUSTER[0];
    let pinned = std::thread::available_parallelism()
        .map(|n| n.get() >= 2)
        .unwrap_or(false)
        && which("taskset").is_some();
    let mut rows = Vec::new();
    for members in ["chat", "irc", "web"] {
        eprintln!("==> {} with {members} members", point.name);
        let (port, gateway_port) = (free_port()?, free_port()?);
        let mut args: Vec<String> = vec!["--port".into(), port.to_string()];
        args.extend(CHAT_FLAGS.iter().map(|s| s.to_string()));
        let flag = if members == "web" {
            "--web-port"
        } else {
            "--irc-port"
        };
        args.extend([flag.to_string(), gateway_port.to_string()]);
        let server = Server::start(&bin.join("chat-server"), &args, port, pinned)?;
        let cpu_before = cpu_secs(server.pid());
        let result = if members == "chat" {
            loadgen_at(&bin, point, "chat", &[port], server.pid(), pinned)?
        } else {
            let mut cmd = pin(&bin.join("loadgen"), pinned, 1);
            cmd.args([
                "--addr",
                &format!("127.0.0.1:{gateway_port}"),
                "--proto",
                members,
            ]);
            cmd.args(["--sender-addr", &format!("127.0.0.1:{port}")]);
            cmd.args(["--server-pid", &server.pid().to_string()]);
            cmd.args(["--members", &point.members.to_string()]);
            cmd.args(["--senders", &SENDERS.to_string()]);
            cmd.args(["--messages", &point.messages.to_string()]);
            cmd.args(["--size", &SIZE.to_string(), "--rate", "0"]);
            cmd.args(["--join-concurrency", "256"]);
            report(cmd, point, members)?
        };
        let server_secs = cpu_secs(server.pid()) - cpu_before;
        rows.push((members, result, server_secs));
    }
    println!(
        "Produced by `cargo xtask bench --gateways`. Machine: {}. Server and load generator {}. {} members, K = {SENDERS} native senders, S = {SIZE}-byte payloads.\n",
        machine(),
        if pinned {
            "pinned to CPU 0 and CPU 1"
        } else {
            "not pinned"
        },
        point.members
    );
    println!("| members | deliveries/s | p50 / p99 ms | server CPU per delivery | lost |");
    println!("|---|---|---|---|---|");
    for (members, j, secs) in &rows {
        println!(
            "| {members} | {:.0} | {:.2} / {:.2} | {:.2} µs | {} |",
            j.num("deliveries_per_sec"),
            j.num("p50_us") / 1000.0,
            j.num("p99_us") / 1000.0,
            secs * 1e6 / j.num("delivered").max(1.0),
            j.num("lost"),
        );
    }
    Ok(())
}

/// CPU seconds a process has used (user + system), from /proc.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    // The kernel counts in clock ticks: 100 per second on Linux.
    ticks / 100.0
}

/// The load generator against one server, or the servers of one shared room.
fn loadgen_at(
    bin: &Path,
    point: &Point,
    proto: &str,
    ports: &[u16],
    pid: u32,
    pinned: bool,
) -> Result<Json, String> {
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut cmd = pin(&bin.join("loadgen"), pinned, 1);
    cmd.args(["--addr", &addrs.join(","), "--proto", proto]);
    cmd.args(["--server-pid", &pid.to_string()]);
    cmd.args(["--members", &point.members.to_string()]);
    cmd.args(["--senders", &SENDERS.to_string()]);
    cmd.args(["--messages", &point.messages.to_string()]);
    cmd.args(["--size", &SIZE.to_string()]);
    cmd.args(["--rate", &point.rate.to_string()]);
    cmd.args(["--join-concurrency", "256"]);
    if point.idle {
        cmd.arg("--idle");
    }
    report(cmd, point, proto)
}

/// Runs a prepared load-generator command and reads its JSON report.
fn report(mut cmd: Command, point: &Point, proto: &str) -> Result<Json, String> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = cmd.spawn().map_err(|e| format!("start loadgen: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .last()
        .unwrap_or_default();
    let _ = child.wait();
    Json::parse(&line).ok_or_else(|| {
        format!(
            "{} ({proto}): the load generator printed no report",
            point.name
        )
    })
}

/// Builds the release server and load generator.
fn build() -> Result<(), String> {
    step(
        "bench build",
        "cargo build --release -p chat-server -p tests --bin chat-server --bin loadgen",
        cargo(&[
            "build",
            "--release",
            "-p",
            "chat-server",
            "-p",
            "tests",
            "--bin",
            "chat-server",
            "--bin",
            "loadgen",
        ]),
    )
}

/// `loadgen <args>` in release mode, from the repository root.
pub(crate) fn command(args: &[String]) -> Command {
    let mut cmd = cargo(&[
        "run",
        "--quiet",
        "--release",
        "-p",
        "tests",
        "--bin",
        "loadgen",
        "--",
    ]);
    cmd.args(args);
    cmd
}

/// A server process (ours or Redis), killed when dropped.
struct Server(Child);

impl Server {
    fn start(program: &Path, args: &[String], port: u16, pinned: bool) -> Result<Self, String> {
        let mut cmd = pin(program, pinned, 0);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| format!("start {}: {e}", program.display()))?;
        let server = Server(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not listen on port {port}",
                    program.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A command run through `sh` with the open-file limit raised to the hard limit, and pinned to
/// `cpu` when asked (taskset execs the program, so the pid is the program's).
fn pin(program: &Path, pinned: bool, cpu: u32) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; exec \"$@\"")
        .arg("sh");
    if pinned {
        cmd.args(["taskset", "-c", &cpu.to_string()]);
    }
    cmd.arg(program);
    cmd
}

fn loadgen(
    bin: &Path,
    point: &Point,
    proto: &str,
    port: u16,
    pid: u32,
    pinned: bool,
) -> Result<Json, String> {
    loadgen_at(bin, point, proto, &[port], pid, pinned)
}

/// The load generator's JSON line, read by key (flat, numbers and strings only).
struct Json(String);

impl Json {
    fn parse(line: &str) -> Option<Self> {
        line.trim_start()
            .starts_with('{')
            .then(|| Json(line.to_string()))
    }

    fn num(&self, key: &str) -> f64 {
        let pat = format!("\"{key}\":");
        self.0
            .find(&pat)
            .map(|i| &self.0[i + pat.len()..])
            .and_then(|rest| rest.split([',', '}']).next()?.trim().parse().ok())
            .unwrap_or(f64::NAN)
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn which(program: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
                    / 1024
                    / 1024
            })
        })
        .unwrap_or(0);
    format!("{cores} cores ({cpu}), {mem} GiB, Linux {}", kernel.trim())
}

fn markdown(rows: &[(&Point, Json, Option<Json>)], pinned: bool, args: &[String]) -> String {
    let mut out = String::new();
    let command = if args.is_empty() {
        "cargo xtask bench".to_string()
    } else {
        format!("cargo xtask bench {}", args.join(" "))
    };
    out.push_str("# Benchmarks\n\n");
    out.push_str(&format!(
        "Produced by `{command}`. Machine: {}.\n",
        machine()
    ));
    out.push_str(&format!(
        "Server and load generator {}. K = {SENDERS} senders, S = {SIZE}-byte payloads; each point starts a fresh server.\n\n",
        if pinned { "pinned to CPU 0 and CPU 1 (taskset)" } else { "not pinned" }
    ));
    out.push_str("| point | chat deliveries/s | Redis deliveries/s | ratio | chat p50 / p99 / p99.9 ms | Redis p50 / p99 / p99.9 ms | lost (chat/Redis) | peak RSS MiB (chat/Redis) | join s (chat/Redis) | generator CPU % (chat/Redis) |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    let ms = |j: &Json, k: &str| j.num(k) / 1000.0;
    for (point, chat, redis) in rows.iter().filter(|(p, _, _)| !p.idle) {
        let r = |f: &dyn Fn(&Json) -> String| redis.as_ref().map_or("-".to_string(), f);
        out.push_str(&format!(
            "| {} | {:.0} | {} | {} | {:.2} / {:.2} / {:.2} | {} | {} / {} | {:.1} / {} | {:.2} / {} | {:.0} / {} |\n",
            point.name,
            chat.num("deliveries_per_sec"),
            r(&|j| format!("{:.0}", j.num("deliveries_per_sec"))),
            r(&|j| format!("{:.2}x", chat.num("deliveries_per_sec") / j.num("deliveries_per_sec"))),
            ms(chat, "p50_us"),
            ms(chat, "p99_us"),
            ms(chat, "p999_us"),
            r(&|j| format!("{:.2} / {:.2} / {:.2}", ms(j, "p50_us"), ms(j, "p99_us"), ms(j, "p999_us"))),
            chat.num("lost"),
            r(&|j| format!("{}", j.num("lost"))),
            chat.num("rss_peak_kib") / 1024.0,
            r(&|j| format!("{:.1}", j.num("rss_peak_kib") / 1024.0)),
            chat.num("join_secs"),
            r(&|j| format!("{:.2}", j.num("join_secs"))),
            chat.num("generator_cpu_pct"),
            r(&|j| format!("{:.0}", j.num("generator_cpu_pct"))),
        ));
    }
    for (point, chat, redis) in rows.iter().filter(|(p, _, _)| p.idle) {
        out.push_str(&format!(
            "\n**{}** connections joined and idle: chat server RSS {:.1} MiB, {:.0} bytes per connection (joined in {:.2} s){}.\n",
            point.name,
            chat.num("rss_joined_kib") / 1024.0,
            chat.num("rss_per_conn_bytes"),
            chat.num("join_secs"),
            redis.as_ref().map_or(String::new(), |j| format!(
                "; Redis {:.1} MiB, {:.0} bytes per connection",
                j.num("rss_joined_kib") / 1024.0,
                j.num("rss_per_conn_bytes")
            )),
        ));
    }
    out
}
