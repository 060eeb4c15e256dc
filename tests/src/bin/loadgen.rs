//! `loadgen`: fan-out load against a running chat server or Redis, or a self-contained smoke run.
//!
//! Prints a human summary on stderr and one JSON line on stdout.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

use argh::FromArgs;
use tests::load::{Proto, Report, Workload, run};

/// Fan-out load generator for chat (and Redis pub/sub, for comparison).
#[derive(FromArgs, Debug)]
struct Args {
    /// server address, e.g. 127.0.0.1:7878, or several separated by commas (the nodes of a
    /// shared room: connection i goes to address i mod n) (not needed with --smoke)
    #[argh(option)]
    addr: Option<String>,
    /// where senders connect with --proto irc or web: the server's chat port
    #[argh(option)]
    sender_addr: Option<String>,
    /// server process id, to read its memory from /proc
    #[argh(option)]
    server_pid: Option<u32>,
    /// protocol: chat, redis, irc or web (irc and web: members over that gateway at --addr,
    /// senders over chat at --sender-addr) [default chat]
    #[argh(option, default = "String::from(\"chat\")")]
    proto: String,
    /// receiving members [default 100]
    #[argh(option, default = "100")]
    members: usize,
    /// sending connections [default 10]
    #[argh(option, default = "10")]
    senders: usize,
    /// messages per sender [default 1000]
    #[argh(option, default = "1000")]
    messages: usize,
    /// payload bytes per message [default 64]
    #[argh(option, default = "64")]
    size: usize,
    /// total deliveries per second; 0 = burst, paced only by the window [default 0]
    #[argh(option, default = "0")]
    rate: u64,
    /// messages in flight in burst mode [default 64]
    #[argh(option, default = "64")]
    window: usize,
    /// connections opened at once while joining [default 64]
    #[argh(option, default = "64")]
    join_concurrency: usize,
    /// only connect and join the members, then report memory
    #[argh(switch)]
    idle: bool,
    /// start our own chat-server, run a tiny burst and a tiny paced point, fail on any loss
    #[argh(switch)]
    smoke: bool,
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    if args.smoke {
        return smoke();
    }
    let addrs: Option<Vec<SocketAddr>> = args.addr.as_deref().and_then(|list| {
        list.split(',')
            .map(|a| a.to_socket_addrs().ok()?.next())
            .collect()
    });
    let Some(addrs) = addrs.filter(|a| !a.is_empty()) else {
        eprintln!("error: --addr HOST:PORT[,HOST:PORT...] is required (or --smoke)");
        return ExitCode::from(2);
    };
    let addr = addrs[0];
    let proto = match args.proto.as_str() {
        "chat" => Proto::Chat,
        "redis" => Proto::Redis,
        "irc" => Proto::Irc,
        "web" => Proto::Web,
        other => {
            eprintln!("error: unknown --proto '{other}': expected chat, redis, irc or web");
            return ExitCode::from(2);
        }
    };
    let w = Workload {
        addr,
        others: addrs[1..].to_vec(),
        sender_addr: args
            .sender_addr
            .as_deref()
            .and_then(|a| a.to_socket_addrs().ok()?.next()),
        proto,
        members: args.members,
        senders: args.senders,
        messages: args.messages,
        size: args.size.max(24),
        rate: args.rate,
        window: args.window,
        join_concurrency: args.join_concurrency,
        idle: args.idle,
        server_pid: args.server_pid,
    };
    match run(w.clone()) {
        Ok(report) => {
            summarize(&w, &report);
            println!("{}", json(&w, &report));
            if report.lost + report.duplicated + report.reordered > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn summarize(w: &Workload, r: &Report) {
    let mode = if w.idle {
        "idle".to_string()
    } else if w.rate == 0 {
        "burst".to_string()
    } else {
        format!("{} deliveries/s", w.rate)
    };
    eprintln!(
        "{:?} N={} K={} M={} S={} {mode}: joined in {:.2}s",
        w.proto, w.members, w.senders, w.messages, w.size, r.join_secs
    );
    if !w.idle {
        eprintln!(
            "  {} deliveries in {:.2}s = {:.0}/s; latency p50 {}us p99 {}us p99.9 {}us max {}us",
            r.delivered,
            r.run_secs,
            r.rate(),
            r.latency_us[0],
            r.latency_us[1],
            r.latency_us[2],
            r.latency_us[3]
        );
        eprintln!(
            "  lost {} duplicated {} reordered {} dropped {}; generator CPU {:.0}%",
            r.lost, r.duplicated, r.reordered, r.dropped, r.generator_cpu_pct
        );
    }
    if w.server_pid.is_some() {
        eprintln!(
            "  server RSS KiB: base {} joined {} peak {} settled {}; {:.0} bytes per connection",
            r.rss_kib[0],
            r.rss_kib[1],
            r.rss_kib[2],
            r.rss_kib[3],
            per_conn(w, r)
        );
    }
}

fn per_conn(w: &Workload, r: &Report) -> f64 {
    (r.rss_kib[1].saturating_sub(r.rss_kib[0]) * 1024) as f64
        / (w.members + w.senders).max(1) as f64
}

fn json(w: &Workload, r: &Report) -> String {
    format!(
        concat!(
            "{{\"proto\":\"{}\",\"members\":{},\"senders\":{},\"messages\":{},\"size\":{},\"rate\":{},",
            "\"idle\":{},\"join_secs\":{:.3},\"expected\":{},\"delivered\":{},\"lost\":{},",
            "\"duplicated\":{},\"reordered\":{},\"dropped\":{},\"run_secs\":{:.3},",
            "\"deliveries_per_sec\":{:.0},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},",
            "\"rss_base_kib\":{},\"rss_joined_kib\":{},\"rss_peak_kib\":{},\"rss_settled_kib\":{},",
            "\"rss_per_conn_bytes\":{:.0},\"generator_cpu_pct\":{:.1}}}"
        ),
        match w.proto {
            Proto::Chat => "chat",
            Proto::Redis => "redis",
            Proto::Irc => "irc",
            Proto::Web => "web",
        },
        w.members,
        w.senders,
        w.messages,
        w.size,
        w.rate,
        w.idle,
        r.join_secs,
        r.expected,
        r.delivered,
        r.lost,
        r.duplicated,
        r.reordered,
        r.dropped,
        r.run_secs,
        r.rate(),
        r.latency_us[0],
        r.latency_us[1],
        r.latency_us[2],
        r.latency_us[3],
        r.rss_kib[0],
        r.rss_kib[1],
        r.rss_kib[2],
        r.rss_kib[3],
        per_conn(w, r),
        r.generator_cpu_pct,
    )
}

/// Starts the chat-server binary next to this one, runs two tiny points, checks nothing was lost.
fn smoke() -> ExitCode {
    let server = tests::ServerProcess::start(&[
        "--rate",
        "1000000",
        "--burst",
        "1000000",
        "--flood-strikes",
        "1000000",
    ]);
    let addr: SocketAddr = server.addr;
    let mut ok = true;
    for rate in [0, 20_000] {
        let w = Workload {
            addr,
            others: Vec::new(),
            sender_addr: None,
            proto: Proto::Chat,
            members: 50,
            senders: 5,
            messages: 200,
            size: 64,
            rate,
            window: 64,
            join_concurrency: 16,
            idle: false,
            server_pid: Some(server.child.id()),
        };
        match run(w.clone()) {
            Ok(r) => {
                summarize(&w, &r);
                println!("{}", json(&w, &r));
                ok &= r.lost == 0
                    && r.duplicated == 0
                    && r.reordered == 0
                    && r.delivered == r.expected;
            }
            Err(error) => {
                eprintln!("error: {error}");
                ok = false;
            }
        }
    }
    if ok {
        eprintln!("smoke: ok");
        ExitCode::SUCCESS
    } else {
        eprintln!("smoke: FAILED (messages lost, duplicated or reordered)");
        ExitCode::FAILURE
    }
}
