//! Command-line flags and environment variables, resolved into a [`ServerConfig`].

use std::time::Duration;

use argh::FromArgs;
pub use chat_core::ConfigError;
use chat_gateway::proxy::TrustedProxies;
use chat_proto::settings::{self, PortZero, Raw};

/// The longest server name IRC lines carry (a host name, RFC 2812).
pub const MAX_IRC_SERVER_NAME: usize = 63;

/// The chat server: one room, many members.
#[derive(FromArgs, Debug, Default, Clone, PartialEq, Eq)]
pub struct Args {
    /// address to listen on [env CHAT_HOST, default 127.0.0.1]
    #[argh(option)]
    pub host: Option<String>,
    /// port to listen on, 0 for any free port [env CHAT_PORT, default 7878]
    #[argh(option)]
    pub port: Option<String>,
    /// members allowed at once [env CHAT_MAX_CLIENTS, default 10000]
    #[argh(option)]
    pub max_clients: Option<String>,
    /// connections allowed in the handshake at once [env CHAT_MAX_HANDSHAKES, default 1024]
    #[argh(option)]
    pub max_handshakes: Option<String>,
    /// list the members in a welcome only up to this many [env CHAT_WELCOME_LIST_MAX, default 1000]
    #[argh(option)]
    pub welcome_list_max: Option<String>,
    /// connections from one address (IPv6: one /64) allowed in the handshake at once [env CHAT_MAX_HANDSHAKES_PER_IP, default 32]
    #[argh(option)]
    pub max_handshakes_per_ip: Option<String>,
    /// members from one address allowed at once, 0 for no limit [env CHAT_MAX_CLIENTS_PER_IP, default 0]
    #[argh(option)]
    pub max_clients_per_ip: Option<String>,
    /// announce joins and leaves one by one only up to this many members [env CHAT_ANNOUNCE_MAX, default 1000]
    #[argh(option)]
    pub announce_max: Option<String>,
    /// chat messages kept for newcomers and resuming clients, 0 for none [env CHAT_HISTORY, default 100]
    #[argh(option)]
    pub history: Option<String>,
    /// longest name in characters [env CHAT_MAX_NAME_CHARS, default 32]
    #[argh(option)]
    pub max_name_chars: Option<String>,
    /// longest message in bytes [env CHAT_MAX_TEXT_BYTES, default 1024]
    #[argh(option)]
    pub max_text_bytes: Option<String>,
    /// longest away message in bytes [env CHAT_MAX_AWAY_BYTES, default 200]
    #[argh(option)]
    pub max_away_bytes: Option<String>,
    /// largest frame accepted from a client, in bytes [env CHAT_MAX_FRAME_BYTES, default 2048]
    #[argh(option)]
    pub max_frame_bytes: Option<String>,
    /// bytes queued for one client before it is closed as too slow [env CHAT_QUEUE_BYTES, default 262144]
    #[argh(option)]
    pub queue_bytes: Option<String>,
    /// sustained requests per second per client [env CHAT_RATE, default 20]
    #[argh(option)]
    pub rate: Option<String>,
    /// requests a client may send at once [env CHAT_BURST, default 40]
    #[argh(option)]
    pub burst: Option<String>,
    /// requests refused for rate before a close for flooding [env CHAT_FLOOD_STRIKES, default 40]
    #[argh(option)]
    pub flood_strikes: Option<String>,
    /// time from connect to an accepted hello, e.g. 10s or 500ms [env CHAT_HANDSHAKE_TIMEOUT, default 10s]
    #[argh(option)]
    pub handshake_timeout: Option<String>,
    /// silence after which a client is pinged [env CHAT_PING_INTERVAL, default 30s]
    #[argh(option)]
    pub ping_interval: Option<String>,
    /// silence after which a client is closed [env CHAT_IDLE_TIMEOUT, default 90s]
    #[argh(option)]
    pub idle_timeout: Option<String>,
    /// port for the room in a browser (page at /, WebSocket at /ws), 0 for any free port [env CHAT_WEB_PORT, else off]
    #[argh(option)]
    pub web_port: Option<String>,
    /// origins allowed to open the WebSocket besides the page's own, comma-separated, e.g. https://chat.example.com [env CHAT_WEB_ALLOW_ORIGIN, else the page's own only]
    #[argh(option)]
    pub web_allow_origin: Option<String>,
    /// a host name the page is served under besides localhost and the listening address (DNS rebinding: any other Host gets 421), repeatable or comma-separated, e.g. chat.example.com [env CHAT_WEB_HOST, else none]
    #[argh(option)]
    pub web_host: Vec<String>,
    /// port for IRC clients, in the same room, 0 for any free port [env CHAT_IRC_PORT, else no IRC]
    #[argh(option)]
    pub irc_port: Option<String>,
    /// the IRC channel that is the room [env CHAT_IRC_CHANNEL, default #chat]
    #[argh(option)]
    pub irc_channel: Option<String>,
    /// the server name in IRC lines [env CHAT_IRC_SERVER_NAME, else the host name]
    #[argh(option)]
    pub irc_server_name: Option<String>,
    /// a text file whose lines are the IRC message of the day [env CHAT_IRC_MOTD, else none: 422]
    #[argh(option)]
    pub irc_motd: Option<String>,
    /// share the room with other servers through this Redis, e.g. redis://127.0.0.1:6379 [env CHAT_REDIS, else the room is this process's alone]
    #[argh(option)]
    pub redis: Option<String>,
    /// the shared room's name in Redis [env CHAT_ROOM, default chat]
    #[argh(option)]
    pub room: Option<String>,
    /// this server's label in the shared room's logs [env CHAT_NODE_ID, else HOST-PID]
    #[argh(option)]
    pub node_id: Option<String>,
    /// how long this server stays in the shared room without a heartbeat [env CHAT_LEASE, default 10s]
    #[argh(option)]
    pub lease: Option<String>,
    /// entries the shared room's stream keeps, about [env CHAT_TRIM_LEN, default 100000]
    #[argh(option)]
    pub trim_len: Option<String>,
    /// address for Prometheus metrics at /metrics, and /healthz and /readyz, e.g. 127.0.0.1:9100 (port 0 for any free port) [env CHAT_METRICS_ADDR, else off]
    #[argh(option)]
    pub metrics_addr: Option<String>,
    /// a PEM file of the certificate chain, for TLS on --tls-port, --irc-tls-port and the web port; reread on SIGHUP [env CHAT_TLS_CERT, else no TLS]
    #[argh(option)]
    pub tls_cert: Option<String>,
    /// a PEM file of the certificate's private key; reread on SIGHUP [env CHAT_TLS_KEY, else no TLS]
    #[argh(option)]
    pub tls_key: Option<String>,
    /// port for the native protocol over TLS, beside --port, 0 for any free port [env CHAT_TLS_PORT, else none]
    #[argh(option)]
    pub tls_port: Option<String>,
    /// port for IRC over TLS (6697 by convention), beside --irc-port, 0 for any free port [env CHAT_IRC_TLS_PORT, else none]
    #[argh(option)]
    pub irc_tls_port: Option<String>,
    /// keep accounts, bans, mutes and the room's history and sequence across restarts in DIR/chat.db (SQLite) [env CHAT_DATA_DIR, else in memory only]
    #[argh(option)]
    pub data_dir: Option<String>,
    /// let several servers listen on the same ports (SO_REUSEPORT) [env CHAT_REUSE_PORT, default off]
    #[argh(switch)]
    pub reuse_port: bool,
    /// a proxy whose word on the client's address is taken (the PROXY protocol on the native and IRC ports, X-Forwarded-For or Forwarded on the web port), as a CIDR block, repeatable or comma-separated, e.g. 10.0.0.0/8 [env CHAT_TRUSTED_PROXY, else none]
    #[argh(option)]
    pub trusted_proxy: Vec<String>,
    /// only registered names may join: a closed room (register names with --accounts, or before, through a store) [env CHAT_REQUIRE_ACCOUNT, default off]
    #[argh(switch)]
    pub require_account: bool,
    /// a file of registered names read at start, one `NAME HASH` a line (HASH from `chat-server hash-password`) [env CHAT_ACCOUNTS, else none]
    #[argh(option)]
    pub accounts: Option<String>,

    // Moderation (issue 22).
    /// names of the room's operators, comma-separated: members under these names who proved the account may kick, ban and mute [env CHAT_OPERATORS, else none]
    #[argh(option)]
    pub operators: Option<String>,
}

/// Everything the server needs to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Address to listen on.
    pub host: String,
    /// Port to listen on.
    pub port: u16,
    /// The room's limits.
    pub room: chat_core::Config,
    /// Bytes queued for one client before it is closed as too slow.
    pub queue_bytes: usize,
    /// How long a closing connection may take to flush its last frames.
    pub linger: Duration,
    /// Port of the room in a browser, on the same host; `None`: not served.
    pub web_port: Option<u16>,
    /// Origins allowed to open the WebSocket besides the page's own.
    pub web_allow_origin: Vec<String>,
    /// Host names the page is served under, besides `localhost` and the listening address.
    pub web_hosts: Vec<String>,
    /// Port for IRC clients (the gateway); none: no IRC.
    pub irc_port: Option<u16>,
    /// The IRC channel that is the room.
    pub irc_channel: String,
    /// The server name in IRC lines; none: the host name.
    pub irc_server_name: Option<String>,
    /// The file whose lines are the IRC message of the day, read when the server starts.
    pub irc_motd: Option<std::path::PathBuf>,
    /// The room is shared through Redis (`--redis`); `None`: the room lives in this process.
    pub shared: Option<SharedConfig>,
    /// Listen with SO_REUSEPORT, so that several processes share one port.
    pub reuse_port: bool,
    /// Where metrics and health are served (`--metrics-addr`); `None`: not served.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The certificate and key files for TLS; `None`: no TLS (`--tls-port` and
    /// `--irc-tls-port` need them; with them the web port serves https and wss).
    pub tls: Option<TlsFiles>,
    /// Port for the native protocol over TLS; `None`: not served.
    pub tls_port: Option<u16>,
    /// Port for IRC over TLS; `None`: not served.
    pub irc_tls_port: Option<u16>,
    /// Peers whose word on the client's address is taken (`--trusted-proxy`): from them the
    /// native and IRC ports read a PROXY protocol header first, the web port the forwarding
    /// headers. Nobody by default.
    pub trusted_proxies: TrustedProxies,
    /// The directory of the store that keeps the room across restarts (`--data-dir`); `None`:
    /// everything is in memory.
    pub data_dir: Option<std::path::PathBuf>,
    /// The file of registered names read at start (`--accounts`); `None`: none.
    pub accounts: Option<std::path::PathBuf>,
}

/// The PEM files of the server's certificate chain and private key (`--tls-cert`, `--tls-key`),
/// read at start and again on SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: std::path::PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
}

/// Where and how this server takes part in a room shared through Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedConfig {
    /// The Redis URL.
    pub url: String,
    /// The room's name: its keys are `chat:{ROOM}:*`.
    pub room: String,
    /// This server's label, for logs.
    pub label: String,
    /// How long this server stays in the room without a heartbeat.
    pub lease: Duration,
    /// Entries the stream keeps, about.
    pub trim_len: u64,
}

impl Default for SharedConfig {
    /// The defaults of the shared-room flags; `url` and `label` have none (`--redis` turns the
    /// shared room on; the label is made from the host name and process id).
    fn default() -> Self {
        Self {
            url: String::new(),
            room: "chat".into(),
            label: String::new(),
            lease: Duration::from_secs(10),
            trim_len: 100_000,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 7878,
            room: chat_core::Config::default(),
            queue_bytes: 256 * 1024,
            linger: Duration::from_secs(2),
            web_port: None,
            web_allow_origin: Vec::new(),
            web_hosts: Vec::new(),
            irc_port: None,
            irc_channel: "#chat".into(),
            irc_server_name: None,
            irc_motd: None,
            shared: None,
            reuse_port: false,
            metrics_addr: None,
            tls: None,
            tls_port: None,
            irc_tls_port: None,
            trusted_proxies: TrustedProxies::default(),
            data_dir: None,
            accounts: None,
        }
    }
}

/// Parses `10s`, `500ms`, `2m`, `1.5s`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (digits, scale) = if let Some(d) = text.strip_suffix("ms") {
        (d, 0.001)
    } else if let Some(d) = text.strip_suffix('s') {
        (d, 1.0)
    } else if let Some(d) = text.strip_suffix('m') {
        (d, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = digits.parse().ok()?;
    let secs = value * scale;
    (secs.is_finite() && secs > 0.0 && secs < 1e9).then(|| Duration::from_secs_f64(secs))
}

/// Parses `https://a.example, http://b.example:8080`: each a scheme, a host and maybe a port,
/// as a browser writes it in `Origin` (no path, no trailing slash).
pub fn parse_origins(text: &str) -> Option<Vec<String>> {
    text.split(',')
        .map(str::trim)
        .map(|origin| {
            let rest = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))?;
            let host_ok = !rest.is_empty()
                && rest
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
            host_ok.then(|| origin.to_ascii_lowercase())
        })
        .collect()
}

/// Host names for `--web-host`: letters, digits, `-` and `.` (an IPv6 literal in brackets),
/// lower-cased; `None` if any is not one.
pub fn parse_hosts(text: &str) -> Option<Vec<String>> {
    text.split(',')
        .map(str::trim)
        .map(|host| {
            let ok = !host.is_empty()
                && host.len() <= 253
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
            ok.then(|| host.to_ascii_lowercase())
        })
        .collect()
}

/// CIDR blocks for `--trusted-proxy`, read strictly ([`chat_gateway::proxy::Cidr`]); `None` if
/// any is not one.
pub fn parse_trusted_proxies(text: &str) -> Option<TrustedProxies> {
    let blocks = text.split(',').map(|b| b.trim().parse().ok());
    blocks.collect::<Option<Vec<_>>>().map(TrustedProxies)
}

/// Operators' names for `--operators`: comma-separated, none empty (each is then checked as a
/// name by the room's config).
pub fn parse_operators(text: &str) -> Option<Vec<String>> {
    text.split(',')
        .map(str::trim)
        .map(|name| (!name.is_empty()).then(|| name.to_owned()))
        .collect()
}

/// Resolves each setting by the one rule in [`chat_proto::settings`]: flag, then environment
/// variable (via `env`; empty counts as unset), then default. Port 0 means any free port.
/// Pure: the caller passes `|k| std::env::var(k).ok()` or a test's map.
pub fn resolve(
    args: &Args,
    env: impl Fn(&str) -> Option<String>,
) -> Result<ServerConfig, ConfigError> {
    let pick = |flag: &str, given: &Option<String>| settings::pick(flag, given.as_deref(), &env);
    let mut config = ServerConfig::default();
    if let Some(raw) = pick("host", &args.host) {
        config.host = raw.host()?;
    }
    if let Some(raw) = pick("port", &args.port) {
        config.port = raw.port(PortZero::AnyFree)?;
    }
    resolve_room_limits(args, &pick, &mut config.room)?;
    resolve_room_timers(args, &pick, &mut config.room)?;
    if let Some(raw) = pick("queue-bytes", &args.queue_bytes) {
        config.queue_bytes = raw.count()?;
    }
    resolve_gateways(args, &pick, &mut config)?;
    config.reuse_port = args.reuse_port
        || match pick("reuse-port", &None) {
            Some(raw) => raw.on_off()?,
            None => false,
        };
    config.shared = resolve_shared(args, &pick)?;
    resolve_tls(args, &pick, &mut config)?;
    let trusted_proxy = (!args.trusted_proxy.is_empty()).then(|| args.trusted_proxy.join(","));
    if let Some(raw) = pick("trusted-proxy", &trusted_proxy) {
        config.trusted_proxies = raw.parse_with(
            parse_trusted_proxies,
            "comma-separated CIDR blocks such as 10.0.0.0/8 or fd00::/8, with no bits set past the prefix",
        )?;
    }
    config.data_dir = resolve_data_dir(args, &pick, config.shared.is_some())?;
    resolve_accounts(args, &pick, &mut config)?;
    if let Some(raw) = pick("operators", &args.operators) {
        config.room.operators =
            raw.parse_with(parse_operators, "comma-separated names such as alice,bob")?;
    }
    config.room.validate()?;
    Ok(config)
}

/// The room's limits that are numbers: members, handshakes, history, name, text and frame
/// sizes, rates. How they fit together is checked last, by `chat_core::Config::validate`.
fn resolve_room_limits(
    args: &Args,
    pick: &impl Fn(&str, &Option<String>) -> Option<Raw>,
    room: &mut chat_core::Config,
) -> Result<(), ConfigError> {
    let numbers: [(&str, &Option<String>, &mut u32); 2] = [
        (
            "max-clients-per-ip",
            &args.max_clients_per_ip,
            &mut room.max_clients_per_ip,
        ),
        ("history", &args.history, &mut room.history),
    ];
    for (flag, given, slot) in numbers {
        if let Some(raw) = pick(flag, given) {
            *slot = raw.number()?;
        }
    }
    let counts: [(&str, &Option<String>, &mut u32); 12] = [
        (
            "max-handshakes-per-ip",
            &args.max_handshakes_per_ip,
            &mut room.max_handshakes_per_ip,
        ),
        ("announce-max", &args.announce_max, &mut room.announce_max),
        ("max-clients", &args.max_clients, &mut room.max_clients),
        (
            "max-handshakes",
            &args.max_handshakes,
            &mut room.max_handshakes,
        ),
        (
            "welcome-list-max",
            &args.welcome_list_max,
            &mut room.welcome_list_max,
        ),
        (
            "max-name-chars",
            &args.max_name_chars,
            &mut room.max_name_chars,
        ),
        (
            "max-text-bytes",
            &args.max_text_bytes,
            &mut room.max_text_bytes,
        ),
        (
            "max-away-bytes",
            &args.max_away_bytes,
            &mut room.max_away_bytes,
        ),
        (
            "max-frame-bytes",
            &args.max_frame_bytes,
            &mut room.max_frame_bytes,
        ),
        ("rate", &args.rate, &mut room.rate_per_sec),
        ("burst", &args.burst, &mut room.burst),
        (
            "flood-strikes",
            &args.flood_strikes,
            &mut room.flood_strikes,
        ),
    ];
    for (flag, given, slot) in counts {
        if let Some(raw) = pick(flag, given) {
            *slot = raw.count()?;
        }
    }
    Ok(())
}

/// The room's deadlines: the handshake's, the ping's and the idle close's.
fn resolve_room_timers(
    args: &Args,
    pick: &impl Fn(&str, &Option<String>) -> Option<Raw>,
    room: &mut chat_core::Config,
) -> Result<(), ConfigError> {
    let durations: [(&str, &Option<String>, &mut Duration); 3] = [
        (
            "handshake-timeout",
            &args.handshake_timeout,
            &mut room.handshake_timeout,
        ),
        (
            "ping-interval",
            &args.ping_interval,
            &mut room.ping_interval,
        ),
        ("idle-timeout", &args.idle_timeout, &mut room.idle_timeout),
    ];
    for (flag, given, slot) in durations {
        if let Some(raw) = pick(flag, given) {
            *slot = raw.parse_with(parse_duration, "a positive duration such as 10s or 500ms")?;
        }
    }
    Ok(())
}

/// Accounts: `--require-account` and `--accounts FILE`.
fn resolve_accounts(
    args: &Args,
    pick: &impl Fn(&str, &Option<String>) -> Option<Raw>,
    config: &mut ServerConfig,
) -> Result<(), ConfigError> {
    config.room.require_account = args.require_account
        || match pick("require-account", &None) {
            Some(raw) => raw.on_off()?,
            None => false,
        };
    if let Some(raw) = pick("accounts", &args.accounts) {
        config.accounts = Some(raw.parse_with(
            |v| (!v.is_empty()).then(|| std::path::PathBuf::from(v)),
            "a file name",
        )?);
    }
    Ok(())
}

/// The other ways in: the browser's port and the origins it allows, IRC's port, channel and
/// server name.
fn resolve_gateways(
    args: &Args,
    pick: &impl Fn(&str, &Option<String>) -> Option<Raw>,
    config: &mut ServerConfig,
) -> Result<(), ConfigError> {
    if let Some(raw) = pick("web-port", &args.web_port) {
        config.web_port = Some(raw.port(PortZero::AnyFree)?);
    }
    if let Some(raw) = pick("web-allow-origin", &args.web_allow_origin) {
        config.web_allow_origin = raw.parse_with(
            parse_origins,
            "comma-separated origins such as https://chat.example.com",
        )?;
    }
    let web_host = (!args.web_host.is_empty()).then(|| args.web_host.join(","));
    if let Some(raw) = pick("web-host", &web_host) {
        config.web_hosts = raw.parse_with(
            parse_hosts,
            "comma-separated host names such as chat.example.com",
        )?;
    }
    if let Some(raw) = pick("metrics-addr", &args.metrics_addr) {
        config.metrics_addr = Some(raw.parse_with(
            |v| v.parse().ok(),
            "an IP address and port such as 127.0.0.1:9100",
        )?);
    }
    if let Some(raw) = pick("irc-port", &args.irc_port) {
        config.irc_port = Some(raw.port(PortZero::AnyFree)?);
    }
    if let Some(raw) = pick("irc-channel", &args.irc_channel) {
        config.irc_channel = raw.parse_with(
            |v| {
                let usable = v.starts_with('#')
                    && (2..=50).contains(&v.len())
                    && !v
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || c == ',');
                usable.then(|| v.to_owned())
            },
            "a channel name such as #chat (up to 50 bytes, no spaces or commas)",
        )?;
    }
    if let Some(raw) = pick("irc-server-name", &args.irc_server_name) {
        let name = raw.host()?;
        if name.starts_with(':') || name.len() > MAX_IRC_SERVER_NAME {
            return Err(raw
                .invalid("a host name or IP address of up to 63 bytes")
                .into());
        }
        config.irc_server_name = Some(name);
    }
    if let Some(raw) = pick("irc-motd", &args.irc_motd) {
        config.irc_motd = Some(raw.parse_with(
            |v| (!v.is_empty()).then(|| std::path::PathBuf::from(v)),
            "a file name",
        )?);
    }
    Ok(())
}

/// The TLS settings: the certificate and key go together, and the TLS ports need them. The
/// files are read when the server starts (an unreadable one stops it there, with one line).
fn resolve_tls(
    args: &Args,
    pick: &impl Fn(&str, &Option<String>) -> Option<Raw>,
    config: &mut ServerConfig,
) -> Result<(), ConfigError> {
    let file = |raw: Raw| {
        raw.parse_with(
            |v| (!v.is_empty()).then(|| std::path::PathBuf::from(v)),
            "a file name",
        )
    };
    let cert = pick("tls-cert", &args.tls_cert).map(file).transpose()?;
    let key = pick("tls-key", &args.tls_key).map(file).transpose()?;
    config.tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        (Some(_), None) => return Err(ConfigError("--tls-cert needs --tls-key".into())),
        (None, Some(_)) => return Err(ConfigError("--tls-key needs --tls-cert".into())),
    };
    for (flag, given, slot) in [
        ("tls-port", &args.tls_port, &mut config.tls_port),
        ("irc-tls-port", &args.irc_tls_port, &mut config.irc_tls_port),
    ] {
        if let Some(raw) = pick(flag, given) {
            *slot = Some(raw.port(PortZero::AnyFree)?);
            if config.tls.is_none() {
                return Err(ConfigError(format!(
                    "--{flag} needs --tls-cert and --tls-key"
                )));
            }
        }
    }
    Ok(())
}

/// The store's directory: `None` without `--data-dir`. Refused with `--redis`, whose room
/// keeps its state in Redis.
fn resolve_data_dir(
    args: &Args,
    pick: &impl Fn(&str, &Option<String>) -> Option<Raw>,
    shared: bool,
) -> Result<Option<std::path::PathBuf>, ConfigError> {
    let Some(raw) = pick("data-dir", &args.data_dir) else {
        return Ok(None);
    };
    let dir = raw.parse_with(
        |v| (!v.is_empty()).then(|| std::path::PathBuf::from(v)),
        "a directory",
    )?;
    if shared {
        return Err(ConfigError(
            "--data-dir cannot be used with --redis: Redis keeps the shared room's history, \
             sequence, accounts and bans"
                .into(),
        ));
    }
    Ok(Some(dir))
}

/// The shared-room settings: `None` without `--redis`. The same rule as every other setting.
fn resolve_shared(
    args: &Args,
    pick: &impl Fn(&str, &Option<String>) -> Option<Raw>,
) -> Result<Option<SharedConfig>, ConfigError> {
    let Some(url) = pick("redis", &args.redis) else {
        return Ok(None);
    };
    let url = url.parse_with(
        |v| (v.starts_with("redis://") || v.starts_with("unix://")).then(|| v.to_owned()),
        "a URL such as redis://127.0.0.1:6379",
    )?;
    let mut shared = SharedConfig {
        url,
        label: format!(
            "{}-{}",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "host".into()),
            std::process::id()
        ),
        ..SharedConfig::default()
    };
    if let Some(raw) = pick("room", &args.room) {
        shared.room = raw.parse_with(
            |v| {
                let ok = !v.is_empty()
                    && v.len() <= 64
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                ok.then(|| v.to_owned())
            },
            "a name of letters, digits, '-', '_' or '.'",
        )?;
    }
    if let Some(raw) = pick("node-id", &args.node_id) {
        shared.label = raw.parse_with(
            |v| (!v.trim().is_empty()).then(|| v.trim().to_owned()),
            "a non-empty label",
        )?;
    }
    if let Some(raw) = pick("lease", &args.lease) {
        shared.lease = raw.parse_with(
            |v| parse_duration(v).filter(|d| *d >= Duration::from_millis(300)),
            "a duration of at least 300ms",
        )?;
    }
    if let Some(raw) = pick("trim-len", &args.trim_len) {
        shared.trim_len = raw.count()?;
    }
    Ok(Some(shared))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn defaults_apply_with_nothing_set() {
        assert_eq!(
            resolve(&Args::default(), env(&[])),
            Ok(ServerConfig::default())
        );
    }

    #[test]
    fn flag_beats_environment_beats_default() {
        let args = Args {
            port: Some("9000".into()),
            ..Args::default()
        };
        let config = resolve(
            &args,
            env(&[("CHAT_PORT", "8000"), ("CHAT_HOST", "0.0.0.0")]),
        )
        .unwrap();
        assert_eq!(config.port, 9000);
        assert_eq!(config.host, "0.0.0.0");
        let config = resolve(&Args::default(), env(&[("CHAT_PORT", "8000")])).unwrap();
        assert_eq!(config.port, 8000);
    }

    #[test]
    fn every_limit_has_a_flag_and_a_variable() {
        let args = Args {
            max_clients: Some("5".into()),
            rate: Some("7".into()),
            handshake_timeout: Some("1s".into()),
            ..Args::default()
        };
        let config = resolve(
            &args,
            env(&[
                ("CHAT_MAX_CLIENTS", "99"),
                ("CHAT_BURST", "9"),
                ("CHAT_QUEUE_BYTES", "4096"),
                ("CHAT_IDLE_TIMEOUT", "2m"),
                ("CHAT_PING_INTERVAL", "500ms"),
            ]),
        )
        .unwrap();
        assert_eq!(config.room.max_clients, 5);
        assert_eq!(config.room.rate_per_sec, 7);
        assert_eq!(config.room.burst, 9);
        assert_eq!(config.queue_bytes, 4096);
        assert_eq!(config.room.handshake_timeout, Duration::from_secs(1));
        assert_eq!(config.room.idle_timeout, Duration::from_secs(120));
        assert_eq!(config.room.ping_interval, Duration::from_millis(500));
    }

    #[test]
    fn bad_values_are_one_clear_line() {
        let cases = [
            (
                Args {
                    port: Some("abc".into()),
                    ..Args::default()
                },
                vec![],
                "invalid --port 'abc': expected a number 0-65535",
            ),
            (
                Args {
                    port: Some("70000".into()),
                    ..Args::default()
                },
                vec![],
                "invalid --port '70000': expected a number 0-65535",
            ),
            (
                Args::default(),
                vec![("CHAT_PORT", "-1")],
                "invalid --port '-1' (from CHAT_PORT): expected a number 0-65535",
            ),
            (
                Args {
                    max_clients: Some("-5".into()),
                    ..Args::default()
                },
                vec![],
                "invalid --max-clients '-5': expected a whole number of at least 1",
            ),
            (
                Args {
                    rate: Some("0".into()),
                    ..Args::default()
                },
                vec![],
                "invalid --rate '0': expected a whole number of at least 1",
            ),
            (
                Args {
                    idle_timeout: Some("soon".into()),
                    ..Args::default()
                },
                vec![],
                "invalid --idle-timeout 'soon': expected a positive duration such as 10s or 500ms",
            ),
        ];
        for (args, vars, message) in cases {
            let error = resolve(&args, env(&vars)).unwrap_err();
            assert_eq!(error.0, message);
            assert!(!error.0.contains('\n'));
        }
    }

    #[test]
    fn an_empty_variable_counts_as_unset() {
        let config = resolve(
            &Args::default(),
            env(&[("CHAT_HOST", ""), ("CHAT_PORT", ""), ("CHAT_RATE", "")]),
        );
        assert_eq!(config, Ok(ServerConfig::default()));
    }

    #[test]
    fn port_zero_means_any_free_port() {
        let args = Args {
            port: Some("0".into()),
            ..Args::default()
        };
        assert_eq!(resolve(&args, env(&[])).unwrap().port, 0);
        assert_eq!(
            resolve(&Args::default(), env(&[("CHAT_PORT", "0")]))
                .unwrap()
                .port,
            0
        );
    }

    #[test]
    fn a_bad_variable_is_harmless_when_its_flag_is_given() {
        let args = Args {
            port: Some("9000".into()),
            rate: Some("5".into()),
            ..Args::default()
        };
        let config = resolve(&args, env(&[("CHAT_PORT", "abc"), ("CHAT_RATE", "0")])).unwrap();
        assert_eq!((config.port, config.room.rate_per_sec), (9000, 5));
    }

    #[test]
    fn a_bad_variable_is_reported_under_its_flag_and_its_name() {
        let cases = [
            (
                "CHAT_HOST",
                " ",
                "invalid --host ' ' (from CHAT_HOST): expected a host name or IP address",
            ),
            (
                "CHAT_PORT",
                "abc",
                "invalid --port 'abc' (from CHAT_PORT): expected a number 0-65535",
            ),
            (
                "CHAT_BURST",
                "many",
                "invalid --burst 'many' (from CHAT_BURST): expected a whole number of at least 1",
            ),
            (
                "CHAT_QUEUE_BYTES",
                "0",
                "invalid --queue-bytes '0' (from CHAT_QUEUE_BYTES): expected a whole number of at least 1",
            ),
            (
                "CHAT_PING_INTERVAL",
                "0s",
                "invalid --ping-interval '0s' (from CHAT_PING_INTERVAL): expected a positive duration such as 10s or 500ms",
            ),
        ];
        for (var, value, message) in cases {
            let pairs = [(var, value)];
            assert_eq!(
                resolve(&Args::default(), env(&pairs)),
                Err(ConfigError(message.into())),
                "{var}={value}"
            );
        }
    }

    /// Every flag with a value no other flag has and no default equals: a flag that wrote
    /// another's field (or none) shows as a wrong number in a field named here.
    #[test]
    fn every_flag_lands_in_its_own_field() {
        let args = Args {
            host: Some("10.1.2.3".into()),
            port: Some("4001".into()),
            max_clients: Some("101".into()),
            max_handshakes: Some("102".into()),
            welcome_list_max: Some("103".into()),
            max_handshakes_per_ip: Some("104".into()),
            max_clients_per_ip: Some("105".into()),
            announce_max: Some("106".into()),
            history: Some("107".into()),
            max_name_chars: Some("14".into()),
            max_text_bytes: Some("1005".into()),
            max_away_bytes: Some("1014".into()),
            max_frame_bytes: Some("3006".into()),
            web_host: vec!["Chat.Example".into(), "b.example".into()],
            queue_bytes: Some("70007".into()),
            rate: Some("7".into()),
            burst: Some("9".into()),
            flood_strikes: Some("11".into()),
            handshake_timeout: Some("3s".into()),
            ping_interval: Some("4s".into()),
            idle_timeout: Some("5s".into()),
            web_port: Some("4002".into()),
            web_allow_origin: Some("https://a.example, http://b.example:8080".into()),
            irc_port: Some("6668".into()),
            irc_channel: Some("#room".into()),
            irc_server_name: Some("irc.example".into()),
            irc_motd: Some("/etc/chat/motd".into()),
            redis: Some("redis://127.0.0.1:6390".into()),
            room: Some("r1".into()),
            node_id: Some("n1".into()),
            lease: Some("6s".into()),
            trim_len: Some("108".into()),
            metrics_addr: Some("127.0.0.1:9109".into()),
            tls_cert: Some("/etc/chat/cert.pem".into()),
            tls_key: Some("/etc/chat/key.pem".into()),
            tls_port: Some("4003".into()),
            irc_tls_port: Some("6698".into()),
            // With --redis it is refused: tested on its own below.
            data_dir: None,
            reuse_port: true,
            trusted_proxy: vec!["10.0.0.0/8".into(), "fd00::/8, 127.0.0.1".into()],
            require_account: true,
            accounts: Some("/etc/chat/accounts".into()),
            operators: Some("alice,bob".into()),
        };
        assert_eq!(resolve(&args, env(&[])), Ok(distinct_config()));
    }

    /// The same for every variable: each one lands in its own field.
    #[test]
    fn every_variable_lands_in_its_own_field() {
        let vars = [
            ("CHAT_HOST", "10.1.2.3"),
            ("CHAT_PORT", "4001"),
            ("CHAT_MAX_CLIENTS", "101"),
            ("CHAT_MAX_HANDSHAKES", "102"),
            ("CHAT_WELCOME_LIST_MAX", "103"),
            ("CHAT_MAX_HANDSHAKES_PER_IP", "104"),
            ("CHAT_MAX_CLIENTS_PER_IP", "105"),
            ("CHAT_ANNOUNCE_MAX", "106"),
            ("CHAT_HISTORY", "107"),
            ("CHAT_MAX_NAME_CHARS", "14"),
            ("CHAT_MAX_TEXT_BYTES", "1005"),
            ("CHAT_MAX_AWAY_BYTES", "1014"),
            ("CHAT_MAX_FRAME_BYTES", "3006"),
            ("CHAT_QUEUE_BYTES", "70007"),
            ("CHAT_RATE", "7"),
            ("CHAT_BURST", "9"),
            ("CHAT_FLOOD_STRIKES", "11"),
            ("CHAT_HANDSHAKE_TIMEOUT", "3s"),
            ("CHAT_PING_INTERVAL", "4s"),
            ("CHAT_IDLE_TIMEOUT", "5s"),
            ("CHAT_WEB_PORT", "4002"),
            (
                "CHAT_WEB_ALLOW_ORIGIN",
                "https://a.example, http://b.example:8080",
            ),
            ("CHAT_WEB_HOST", "chat.example,b.example"),
            ("CHAT_IRC_PORT", "6668"),
            ("CHAT_IRC_CHANNEL", "#room"),
            ("CHAT_IRC_SERVER_NAME", "irc.example"),
            ("CHAT_IRC_MOTD", "/etc/chat/motd"),
            ("CHAT_REDIS", "redis://127.0.0.1:6390"),
            ("CHAT_ROOM", "r1"),
            ("CHAT_NODE_ID", "n1"),
            ("CHAT_LEASE", "6s"),
            ("CHAT_TRIM_LEN", "108"),
            ("CHAT_METRICS_ADDR", "127.0.0.1:9109"),
            ("CHAT_REUSE_PORT", "1"),
            ("CHAT_TLS_CERT", "/etc/chat/cert.pem"),
            ("CHAT_TLS_KEY", "/etc/chat/key.pem"),
            ("CHAT_TLS_PORT", "4003"),
            ("CHAT_IRC_TLS_PORT", "6698"),
            ("CHAT_TRUSTED_PROXY", "10.0.0.0/8, fd00::/8,127.0.0.1"),
            ("CHAT_REQUIRE_ACCOUNT", "yes"),
            ("CHAT_ACCOUNTS", "/etc/chat/accounts"),
            ("CHAT_OPERATORS", "alice, bob"),
        ];
        assert_eq!(resolve(&Args::default(), env(&vars)), Ok(distinct_config()));
    }

    /// What the two tests above expect, written out field by field.
    fn distinct_config() -> ServerConfig {
        ServerConfig {
            host: "10.1.2.3".into(),
            port: 4001,
            room: chat_core::Config {
                max_clients: 101,
                max_handshakes: 102,
                welcome_list_max: 103,
                max_handshakes_per_ip: 104,
                max_clients_per_ip: 105,
                announce_max: 106,
                history: 107,
                max_name_chars: 14,
                max_text_bytes: 1005,
                max_away_bytes: 1014,
                max_frame_bytes: 3006,
                rate_per_sec: 7,
                burst: 9,
                flood_strikes: 11,
                handshake_timeout: Duration::from_secs(3),
                ping_interval: Duration::from_secs(4),
                idle_timeout: Duration::from_secs(5),
                require_account: true,
                operators: vec!["alice".into(), "bob".into()],
                ..chat_core::Config::default()
            },
            queue_bytes: 70007,
            linger: Duration::from_secs(2),
            web_port: Some(4002),
            web_allow_origin: vec!["https://a.example".into(), "http://b.example:8080".into()],
            web_hosts: vec!["chat.example".into(), "b.example".into()],
            irc_port: Some(6668),
            irc_channel: "#room".into(),
            irc_server_name: Some("irc.example".into()),
            irc_motd: Some("/etc/chat/motd".into()),
            shared: Some(SharedConfig {
                url: "redis://127.0.0.1:6390".into(),
                room: "r1".into(),
                label: "n1".into(),
                lease: Duration::from_secs(6),
                trim_len: 108,
            }),
            reuse_port: true,
            metrics_addr: Some("127.0.0.1:9109".parse().unwrap()),
            tls: Some(TlsFiles {
                cert: "/etc/chat/cert.pem".into(),
                key: "/etc/chat/key.pem".into(),
            }),
            tls_port: Some(4003),
            irc_tls_port: Some(6698),
            trusted_proxies: parse_trusted_proxies("10.0.0.0/8,fd00::/8,127.0.0.1").unwrap(),
            data_dir: None,
            accounts: Some("/etc/chat/accounts".into()),
        }
    }

    #[test]
    fn tls_files_go_together_and_tls_ports_need_them() {
        let tls = |pairs: &[(&str, &str)]| {
            resolve(&Args::default(), env(pairs)).map(|c| (c.tls.is_some(), c.tls_port))
        };
        assert_eq!(tls(&[]), Ok((false, None)));
        assert_eq!(
            tls(&[("CHAT_TLS_CERT", "c.pem")]).unwrap_err().0,
            "--tls-cert needs --tls-key"
        );
        assert_eq!(
            tls(&[("CHAT_TLS_KEY", "k.pem")]).unwrap_err().0,
            "--tls-key needs --tls-cert"
        );
        assert_eq!(
            tls(&[("CHAT_TLS_PORT", "6000")]).unwrap_err().0,
            "--tls-port needs --tls-cert and --tls-key"
        );
        let both = [("CHAT_TLS_CERT", "c.pem"), ("CHAT_TLS_KEY", "k.pem")];
        assert_eq!(tls(&both), Ok((true, None)));
        let port = [both[0], both[1], ("CHAT_TLS_PORT", "0")];
        assert_eq!(tls(&port), Ok((true, Some(0))));
    }

    #[test]
    fn trusted_proxies_are_cidr_blocks_from_flags_or_the_environment() {
        let proxies = |args: &Args, pairs: &[(&str, &str)]| {
            resolve(args, env(pairs)).map(|c| c.trusted_proxies.0.len())
        };
        assert_eq!(proxies(&Args::default(), &[]), Ok(0));
        let pairs = [("CHAT_TRUSTED_PROXY", "10.0.0.0/8, ::1")];
        assert_eq!(proxies(&Args::default(), &pairs), Ok(2));
        let args = Args {
            trusted_proxy: vec!["192.0.2.0/24".into()],
            ..Args::default()
        };
        assert_eq!(
            proxies(&args, &pairs),
            Ok(1),
            "the flag wins over the variable"
        );
        let args = Args {
            trusted_proxy: vec!["10.0.0.1/8".into()],
            ..Args::default()
        };
        assert_eq!(
            resolve(&args, env(&[])).unwrap_err().0,
            "invalid --trusted-proxy '10.0.0.1/8': expected comma-separated CIDR blocks such as \
             10.0.0.0/8 or fd00::/8, with no bits set past the prefix"
        );
    }

    #[test]
    fn the_data_dir_is_a_flag_or_a_variable_and_refused_with_redis() {
        let data_dir = |args: &Args, pairs: &[(&str, &str)]| {
            resolve(args, env(pairs)).map(|c| c.data_dir.map(|d| d.display().to_string()))
        };
        assert_eq!(data_dir(&Args::default(), &[]), Ok(None));
        assert_eq!(
            data_dir(&Args::default(), &[("CHAT_DATA_DIR", "/var/lib/chat")]),
            Ok(Some("/var/lib/chat".into()))
        );
        let args = Args {
            data_dir: Some("/srv/chat".into()),
            ..Args::default()
        };
        assert_eq!(
            data_dir(&args, &[("CHAT_DATA_DIR", "/var/lib/chat")]),
            Ok(Some("/srv/chat".into()))
        );
        assert_eq!(
            data_dir(&args, &[("CHAT_REDIS", "redis://127.0.0.1:6379")])
                .unwrap_err()
                .0,
            "--data-dir cannot be used with --redis: Redis keeps the shared room's history, \
             sequence, accounts and bans"
        );
    }

    #[test]
    fn reuse_port_is_a_flag_or_an_on_off_variable() {
        let reuse =
            |pairs: &[(&str, &str)]| resolve(&Args::default(), env(pairs)).map(|c| c.reuse_port);
        assert_eq!(reuse(&[]), Ok(false));
        assert_eq!(reuse(&[("CHAT_REUSE_PORT", "yes")]), Ok(true));
        assert_eq!(reuse(&[("CHAT_REUSE_PORT", "0")]), Ok(false));
        assert_eq!(
            reuse(&[("CHAT_REUSE_PORT", "maybe")]).unwrap_err().0,
            "invalid --reuse-port 'maybe' (from CHAT_REUSE_PORT): expected 1 or 0 (also yes/no, true/false, on/off)"
        );
    }

    #[test]
    fn irc_settings_are_checked() {
        let bad = |args: Args| resolve(&args, env(&[])).unwrap_err().0;
        assert_eq!(
            bad(Args {
                irc_channel: Some("chat".into()),
                ..Args::default()
            }),
            "invalid --irc-channel 'chat': expected a channel name such as #chat (up to 50 bytes, no spaces or commas)"
        );
        assert!(
            bad(Args {
                irc_server_name: Some(":x".into()),
                ..Args::default()
            })
            .starts_with("invalid --irc-server-name ':x'")
        );
        assert!(
            bad(Args {
                irc_server_name: Some("s".repeat(64)),
                ..Args::default()
            })
            .ends_with("expected a host name or IP address of up to 63 bytes")
        );
        assert!(
            bad(Args {
                irc_port: Some("irc".into()),
                ..Args::default()
            })
            .starts_with("invalid --irc-port 'irc'")
        );
    }

    #[test]
    fn the_metrics_address_is_an_ip_address_and_a_port() {
        let metrics = |value: &str| {
            let args = Args {
                metrics_addr: Some(value.into()),
                ..Args::default()
            };
            resolve(&args, env(&[])).map(|c| c.metrics_addr)
        };
        assert_eq!(metrics("[::1]:0"), Ok(Some("[::1]:0".parse().unwrap())));
        for bad in ["localhost:9100", "9100", "127.0.0.1"] {
            assert_eq!(
                metrics(bad).unwrap_err().0,
                format!(
                    "invalid --metrics-addr '{bad}': expected an IP address and port such as 127.0.0.1:9100"
                )
            );
        }
        assert_eq!(
            resolve(&Args::default(), env(&[])).unwrap().metrics_addr,
            None
        );
    }

    #[test]
    fn incoherent_limits_are_refused() {
        let args = Args {
            max_text_bytes: Some("4096".into()),
            ..Args::default()
        };
        assert!(
            resolve(&args, env(&[]))
                .unwrap_err()
                .0
                .contains("max frame bytes")
        );
    }

    #[test]
    fn origins_are_a_scheme_and_a_host_each() {
        assert_eq!(
            parse_origins("https://Chat.Example.com,http://[::1]:8080"),
            Some(vec![
                "https://chat.example.com".into(),
                "http://[::1]:8080".into()
            ])
        );
        for bad in [
            "chat.example.com",
            "https://",
            "https://a.example/",
            "*",
            "",
        ] {
            assert_eq!(parse_origins(bad), None, "{bad}");
        }
        let args = Args {
            web_allow_origin: Some("example.com".into()),
            ..Args::default()
        };
        assert_eq!(
            resolve(&args, env(&[])).unwrap_err().0,
            "invalid --web-allow-origin 'example.com': expected comma-separated origins such as https://chat.example.com"
        );
    }

    #[test]
    fn the_shared_room_is_off_unless_redis_is_given() {
        let args = Args::default();
        assert_eq!(resolve(&args, env(&[])).unwrap().shared, None);
        let config = resolve(
            &args,
            env(&[
                ("CHAT_REDIS", "redis://127.0.0.1:6379"),
                ("CHAT_LEASE", "3s"),
                ("CHAT_NODE_ID", "n1"),
            ]),
        )
        .unwrap();
        let shared = config.shared.unwrap();
        assert_eq!(shared.room, "chat");
        assert_eq!(shared.label, "n1");
        assert_eq!(shared.lease, Duration::from_secs(3));
        assert_eq!(shared.trim_len, 100_000);
        let bad = Args {
            redis: Some("redis://x".into()),
            room: Some("a{b}".into()),
            ..Args::default()
        };
        assert_eq!(
            resolve(&bad, env(&[])).unwrap_err().0,
            "invalid --room 'a{b}': expected a name of letters, digits, '-', '_' or '.'"
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("NaN"), None);
    }
}
