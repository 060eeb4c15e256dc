//! The room's limits, checked once: a room is only ever made from a coherent config.

use std::time::Duration;

use chat_proto::Limits;

/// Every limit the room enforces.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Members allowed in the room at once.
    pub max_clients: u32,
    /// Connections allowed to be in the handshake (opened, not yet joined) at once. When it is
    /// full, the address holding the most handshakes gives up its oldest to a newcomer from an
    /// address holding fewer, so that many addresses together cannot shut everyone else out.
    pub max_handshakes: u32,
    /// A welcome lists every member only while there are at most this many; past it, the
    /// welcome carries the count and `Who` gives the list. Keeps a join into a big room cheap.
    pub welcome_list_max: u32,
    /// Connections from one address (an IPv4 address, or an IPv6 /64) allowed in the handshake
    /// at once, so that one address cannot take every handshake slot.
    pub max_handshakes_per_ip: u32,
    /// Members from one address allowed at once; 0 for no limit.
    pub max_clients_per_ip: u32,
    /// Joins and leaves are announced one by one only while the room has at most this many
    /// members; past it, members learn the count from the welcome and names from `Who`.
    pub announce_max: u32,
    /// Chat messages kept for newcomers and for clients that resume; 0 keeps none.
    pub history: u32,
    /// Longest name, in characters.
    pub max_name_chars: u32,
    /// Longest chat text (and parting words), in bytes.
    pub max_text_bytes: u32,
    /// Longest away message, in bytes: every member's is in the member list, which must fit
    /// a frame.
    pub max_away_bytes: u32,
    /// Largest frame payload accepted from a client, in bytes: every driver's decoder is made
    /// with it.
    pub max_frame_bytes: u32,
    /// Sustained requests per second per connection.
    pub rate_per_sec: u32,
    /// Requests that may come at once before the rate applies.
    pub burst: u32,
    /// Requests refused for rate, without the bucket refilling in between, before a close for flooding.
    pub flood_strikes: u32,
    /// Time from connect within which a hello must be accepted.
    pub handshake_timeout: Duration,
    /// Silence after which a member is pinged.
    pub ping_interval: Duration,
    /// Silence after which a member is closed.
    pub idle_timeout: Duration,
    /// Only registered names may join (a closed room): a hello for any other is refused with
    /// `AccountRequired`. Accounts come from the room's log and its snapshot (a store, or the
    /// operator's accounts file).
    pub require_account: bool,

    // Moderation (issue 22).
    /// The names of the room's operators (`--operators`): a member holding one of them (by
    /// folded name) who proved its account may kick, ban and mute.
    pub operators: Vec<String>,
    /// Bans the room keeps, and mutes, each: past it, an operator must lift one before
    /// setting another (`TooManyBans`).
    pub max_bans: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_clients: 10_000,
            max_handshakes: 1_024,
            welcome_list_max: 1_000,
            max_handshakes_per_ip: 32,
            max_clients_per_ip: 0,
            announce_max: 1_000,
            history: 100,
            max_name_chars: 32,
            max_text_bytes: 1_024,
            max_away_bytes: 200,
            max_frame_bytes: 2_048,
            rate_per_sec: 20,
            burst: 40,
            flood_strikes: 40,
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            require_account: false,
            operators: Vec::new(),
            max_bans: 1_000,
        }
    }
}

impl Config {
    /// The limits announced to clients in the welcome.
    pub fn limits(&self) -> Limits {
        Limits {
            max_name_chars: self.max_name_chars,
            max_text_bytes: self.max_text_bytes,
            max_frame_bytes: self.max_frame_bytes,
            rate_per_sec: self.rate_per_sec,
            burst: self.burst,
            idle_timeout_ms: u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Checks that the limits are coherent; the error says which one is not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(ConfigError)
    }

    fn check(&self) -> Result<(), String> {
        let positive = [
            ("max clients", self.max_clients),
            ("max name chars", self.max_name_chars),
            ("max text bytes", self.max_text_bytes),
            ("max away bytes", self.max_away_bytes),
            ("max frame bytes", self.max_frame_bytes),
            ("rate per second", self.rate_per_sec),
            ("burst", self.burst),
        ];
        for (what, value) in positive {
            if value == 0 {
                return Err(format!("{what} must be at least 1"));
            }
        }
        // A chat, a leave with parting words and an away take the same frame for a text.
        for (what, bytes) in [
            ("a chat of max text bytes", self.max_text_bytes),
            ("an away of max away bytes", self.max_away_bytes),
        ] {
            let frame = chat_proto::chat_payload_len(bytes);
            if frame > u64::from(self.max_frame_bytes) {
                return Err(format!(
                    "max frame bytes ({}) must be at least {frame} to carry {what} ({bytes})",
                    self.max_frame_bytes
                ));
            }
        }
        // `Who` (and a welcome in a small room) lists every member; it must fit the frame a
        // client accepts.
        let list = chat_proto::member_list_payload_max(
            self.max_clients,
            self.max_name_chars,
            self.max_away_bytes,
        );
        if list > u64::from(chat_proto::MAX_SERVER_FRAME) {
            return Err(format!(
                "max clients ({}) times max name chars ({}) and max away bytes ({}) is too \
                 large for a member list frame",
                self.max_clients, self.max_name_chars, self.max_away_bytes
            ));
        }
        if self.max_handshakes_per_ip == 0 {
            return Err("max handshakes per ip must be at least 1".into());
        }
        let history =
            chat_proto::history_payload_max(self.history, self.max_name_chars, self.max_text_bytes);
        if history > u64::from(chat_proto::MAX_SERVER_FRAME) {
            return Err(format!(
                "history ({}) times max text bytes ({}) is too large for one frame",
                self.history, self.max_text_bytes
            ));
        }
        for (what, d) in [
            ("handshake timeout", self.handshake_timeout),
            ("ping interval", self.ping_interval),
            ("idle timeout", self.idle_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{what} must be longer than zero"));
            }
        }
        if self.max_bans == 0 {
            return Err("max bans must be at least 1".into());
        }
        for name in &self.operators {
            if let Err(rule) = crate::names::check_name(name, self.max_name_chars) {
                return Err(format!("operator '{name}' is not a valid name: {rule}"));
            }
        }
        Ok(())
    }
}

/// A config that cannot be used: a setting given a bad value, or limits that do not fit
/// together; says which, in one line (a binary prints it after `error: ` and exits 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl From<chat_proto::settings::SettingError> for ConfigError {
    fn from(error: chat_proto::settings::SettingError) -> Self {
        Self(error.to_string())
    }
}
