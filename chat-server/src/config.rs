//! Command-line flags and environment variables, resolved into a [`ServerConfig`].

use std::time::Duration;

use argh::FromArgs;

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
    /// longest name in characters [env CHAT_MAX_NAME_CHARS, default 32]
    #[argh(option)]
    pub max_name_chars: Option<String>,
    /// longest message in bytes [env CHAT_MAX_TEXT_BYTES, default 1024]
    #[argh(option)]
    pub max_text_bytes: Option<String>,
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
    /// share the room with other servers through this Redis, e.g. redis://127.0.0.1:6379 [env CHAT_REDIS, default off]
    #[argh(option)]
    pub redis: Option<String>,
    /// the shared room's name in Redis [env CHAT_ROOM, default chat]
    #[argh(option)]
    pub room: Option<String>,
    /// this server's label in the shared room's logs [env CHAT_NODE_ID, default host-pid]
    #[argh(option)]
    pub node_id: Option<String>,
    /// how long this server stays in the shared room without a heartbeat [env CHAT_LEASE, default 10s]
    #[argh(option)]
    pub lease: Option<String>,
    /// entries the shared room's stream keeps, about [env CHAT_TRIM_LEN, default 100000]
    #[argh(option)]
    pub trim_len: Option<String>,
    /// let several servers listen on the same port (SO_REUSEPORT) [env CHAT_REUSE_PORT]
    #[argh(switch)]
    pub reuse_port: bool,
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
    /// The room is shared through Redis (`--redis`); `None`: the room lives in this process.
    pub shared: Option<SharedConfig>,
    /// Listen with SO_REUSEPORT, so that several processes share one port.
    pub reuse_port: bool,
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

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 7878,
            room: chat_core::Config::default(),
            queue_bytes: 256 * 1024,
            linger: Duration::from_secs(2),
            shared: None,
            reuse_port: false,
        }
    }
}

/// A flag or variable whose value is unusable; the message names it and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// One setting's raw value and where it came from, for error messages.
struct Raw {
    value: String,
    origin: String,
}

fn pick(flag: &Option<String>, name: &str, env: &impl Fn(&str) -> Option<String>) -> Option<Raw> {
    let var = format!("CHAT_{}", name.to_uppercase().replace('-', "_"));
    match flag {
        Some(value) => Some(Raw {
            value: value.clone(),
            origin: format!("--{name}"),
        }),
        None => env(&var).map(|value| Raw { value, origin: var }),
    }
}

fn invalid(raw: &Raw, expected: &str) -> ConfigError {
    ConfigError(format!(
        "invalid {} '{}': expected {expected}",
        raw.origin, raw.value
    ))
}

fn number<T: std::str::FromStr + PartialOrd + From<u8>>(raw: &Raw) -> Result<T, ConfigError> {
    match raw.value.trim().parse::<T>() {
        Ok(n) if n >= T::from(1) => Ok(n),
        _ => Err(invalid(raw, "a whole number of at least 1")),
    }
}

/// Parses `10s`, `500ms`, `2m`, `1.5s`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (digits, scale) = if let Some(d) = text.strip_suffix("ms") {
        (d, 0.001)
    } else if let Some(d) = text.strip_suffix('s') {
        (d, 1.0)
    } else if let Some(d) = text.strip_suffix('m') {
        (d, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = digits.trim().parse().ok()?;
    let secs = value * scale;
    (secs.is_finite() && secs > 0.0 && secs < 1e9).then(|| Duration::from_secs_f64(secs))
}

fn duration(raw: &Raw) -> Result<Duration, ConfigError> {
    parse_duration(&raw.value)
        .ok_or_else(|| invalid(raw, "a positive duration such as 10s or 500ms"))
}

/// Resolves flags, then environment variables (via `env`), then defaults. Pure: the caller
/// passes `|k| std::env::var(k).ok()` or a test's map.
pub fn resolve(
    args: &Args,
    env: impl Fn(&str) -> Option<String>,
) -> Result<ServerConfig, ConfigError> {
    let mut config = ServerConfig::default();
    if let Some(raw) = pick(&args.host, "host", &env) {
        if raw.value.trim().is_empty() {
            return Err(invalid(&raw, "a host name or IP address"));
        }
        config.host = raw.value.trim().to_string();
    }
    if let Some(raw) = pick(&args.port, "port", &env) {
        config.port = raw
            .value
            .trim()
            .parse()
            .map_err(|_| invalid(&raw, "a port number from 0 to 65535"))?;
    }
    let room = &mut config.room;
    let counts: [(&Option<String>, &str, &mut u32); 9] = [
        (
            &args.welcome_list_max,
            "welcome-list-max",
            &mut room.welcome_list_max,
        ),
        (&args.max_clients, "max-clients", &mut room.max_clients),
        (
            &args.max_handshakes,
            "max-handshakes",
            &mut room.max_handshakes,
        ),
        (
            &args.max_name_chars,
            "max-name-chars",
            &mut room.max_name_chars,
        ),
        (
            &args.max_text_bytes,
            "max-text-bytes",
            &mut room.max_text_bytes,
        ),
        (
            &args.max_frame_bytes,
            "max-frame-bytes",
            &mut room.max_frame_bytes,
        ),
        (&args.rate, "rate", &mut room.rate_per_sec),
        (&args.burst, "burst", &mut room.burst),
        (
            &args.flood_strikes,
            "flood-strikes",
            &mut room.flood_strikes,
        ),
    ];
    for (flag, name, slot) in counts {
        if let Some(raw) = pick(flag, name, &env) {
            *slot = number(&raw)?;
        }
    }
    let durations: [(&Option<String>, &str, &mut Duration); 3] = [
        (
            &args.handshake_timeout,
            "handshake-timeout",
            &mut room.handshake_timeout,
        ),
        (
            &args.ping_interval,
            "ping-interval",
            &mut room.ping_interval,
        ),
        (&args.idle_timeout, "idle-timeout", &mut room.idle_timeout),
    ];
    for (flag, name, slot) in durations {
        if let Some(raw) = pick(flag, name, &env) {
            *slot = duration(&raw)?;
        }
    }
    if let Some(raw) = pick(&args.queue_bytes, "queue-bytes", &env) {
        config.queue_bytes = number(&raw)?;
    }
    config.reuse_port = args.reuse_port || env("CHAT_REUSE_PORT").is_some_and(|v| v == "1");
    config.shared = resolve_shared(args, &env)?;
    config
        .room
        .validate()
        .map_err(|e| ConfigError(e.to_string()))?;
    Ok(config)
}

/// The shared-room settings: `None` without `--redis`.
fn resolve_shared(
    args: &Args,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<SharedConfig>, ConfigError> {
    let Some(url) = pick(&args.redis, "redis", env) else {
        return Ok(None);
    };
    if !url.value.starts_with("redis://") && !url.value.starts_with("unix://") {
        return Err(invalid(&url, "a URL such as redis://127.0.0.1:6379"));
    }
    let mut shared = SharedConfig {
        url: url.value.trim().to_string(),
        room: "chat".into(),
        label: format!(
            "{}-{}",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "host".into()),
            std::process::id()
        ),
        lease: Duration::from_secs(10),
        trim_len: 100_000,
    };
    if let Some(raw) = pick(&args.room, "room", env) {
        let ok = !raw.value.is_empty()
            && raw.value.len() <= 64
            && raw
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(invalid(&raw, "a name of letters, digits, '-', '_' or '.'"));
        }
        shared.room = raw.value;
    }
    if let Some(raw) = pick(&args.node_id, "node-id", env) {
        if raw.value.trim().is_empty() {
            return Err(invalid(&raw, "a non-empty label"));
        }
        shared.label = raw.value.trim().to_string();
    }
    if let Some(raw) = pick(&args.lease, "lease", env) {
        shared.lease = duration(&raw)?;
        if shared.lease < Duration::from_millis(300) {
            return Err(invalid(&raw, "a lease of at least 300ms"));
        }
    }
    if let Some(raw) = pick(&args.trim_len, "trim-len", env) {
        shared.trim_len = number(&raw)?;
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
                "invalid --port 'abc': expected a port number from 0 to 65535",
            ),
            (
                Args {
                    port: Some("70000".into()),
                    ..Args::default()
                },
                vec![],
                "invalid --port '70000': expected a port number from 0 to 65535",
            ),
            (
                Args::default(),
                vec![("CHAT_PORT", "-1")],
                "invalid CHAT_PORT '-1': expected a port number from 0 to 65535",
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
