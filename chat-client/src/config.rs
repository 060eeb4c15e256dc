//! Command-line arguments and their resolution against the environment and the defaults.

use argh::FromArgs;
use chat_proto::Password;
use chat_proto::settings::{self, PortZero, SettingError};

/// The host used when neither `--host` nor `CHAT_HOST` gives one.
pub const DEFAULT_HOST: &str = "127.0.0.1";

/// The port used when neither `--port` nor `CHAT_PORT` gives one (the server's default too).
pub const DEFAULT_PORT: u16 = 7878;

/// Join the chat room: type `help` at the prompt for the commands.
///
/// Reads commands line by line when stdin is not a terminal, so it can be scripted.
#[derive(FromArgs, Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    /// server host name or address [env CHAT_HOST, default 127.0.0.1]
    #[argh(option)]
    pub host: Option<String>,
    /// server port [env CHAT_PORT, default 7878]
    #[argh(option)]
    pub port: Option<String>,
    /// the name to join under [env CHAT_NAME, else asked for at the prompt]
    #[argh(option)]
    pub name: Option<String>,
    /// when the connection is lost, join again and show what was missed [env CHAT_RECONNECT, default interactive]
    #[argh(switch)]
    pub reconnect: bool,
    /// when the connection is lost, exit 1 (the default for scripts)
    #[argh(switch)]
    pub no_reconnect: bool,
    /// show in front of each line the time (HH:MM) it was said, history included [env CHAT_TIMESTAMPS, default interactive]
    #[argh(switch)]
    pub timestamps: bool,
    /// no time in front of the lines (the default for scripts)
    #[argh(switch)]
    pub no_timestamps: bool,
    /// ring the terminal bell when someone mentions your name [env CHAT_BELL, default off]
    #[argh(switch)]
    pub bell: bool,
    /// do not ring the bell (the default)
    #[argh(switch)]
    pub no_bell: bool,
    /// connect with TLS (the server's --tls-port), checking its certificate against the system's trusted roots and --tls-ca [env CHAT_TLS, default off]
    #[argh(switch)]
    pub tls: bool,
    /// a PEM file of certificate authorities to trust besides the system's, e.g. a private CA; implies --tls [env CHAT_TLS_CA, else the system's only]
    #[argh(option)]
    pub tls_ca: Option<String>,
    /// a file whose first line is the password of the name, for joining and register (or CHAT_PASSWORD; never a flag) [env CHAT_PASSWORD_FILE, else asked for at a terminal]
    #[argh(option)]
    pub password_file: Option<String>,
}

/// When an on/off setting is on if neither its flag nor its variable says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchDefault {
    /// On for a person at a terminal, off for a script.
    Interactive,
    /// Off.
    Off,
}

/// Whether the client reconnects when neither `--reconnect`, `--no-reconnect` nor
/// `CHAT_RECONNECT` says.
pub const DEFAULT_RECONNECT: SwitchDefault = SwitchDefault::Interactive;

/// Whether lines show the time when neither `--timestamps`, `--no-timestamps` nor
/// `CHAT_TIMESTAMPS` says.
pub const DEFAULT_TIMESTAMPS: SwitchDefault = SwitchDefault::Interactive;

/// Whether a mention rings the bell when neither `--bell`, `--no-bell` nor `CHAT_BELL` says.
pub const DEFAULT_BELL: SwitchDefault = SwitchDefault::Off;

/// Whether the client connects with TLS when neither `--tls`, `--tls-ca`, `CHAT_TLS` nor
/// `CHAT_TLS_CA` says.
pub const DEFAULT_TLS: SwitchDefault = SwitchDefault::Off;

/// An on/off setting after flags and environment: on, off, or left to the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// Turned on by the flag or the variable.
    On,
    /// Turned off by the flag or the variable.
    Off,
    /// Neither said: on for a person at a terminal, off for a script.
    Interactive,
}

impl Switch {
    /// Whether it is on, for a session at a terminal (`interactive`) or a script.
    pub fn is_on(self, interactive: bool) -> bool {
        match self {
            Switch::On => true,
            Switch::Off => false,
            Switch::Interactive => interactive,
        }
    }
}

impl From<SwitchDefault> for Switch {
    fn from(default: SwitchDefault) -> Self {
        match default {
            SwitchDefault::Interactive => Switch::Interactive,
            SwitchDefault::Off => Switch::Off,
        }
    }
}

/// Where to connect and under which name, after flags, environment and defaults were applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The server's host name or address.
    pub host: String,
    /// The server's port.
    pub port: u16,
    /// The name to join under; `None` means ask the user.
    pub name: Option<String>,
    /// Join again when the connection is lost (`--reconnect`).
    pub reconnect: Switch,
    /// The time in front of each line (`--timestamps`).
    pub timestamps: Switch,
    /// The bell when someone mentions this member's name (`--bell`).
    pub bell: Switch,
    /// Names in colour: set by [`run`](crate::run) when stdout is a terminal and `NO_COLOR` is
    /// unset; never from a flag.
    pub colour: bool,
    /// Connect with TLS (`--tls`, or `--tls-ca`).
    pub tls: bool,
    /// Certificate authorities trusted besides the system's (`--tls-ca`), a PEM file.
    pub tls_ca: Option<std::path::PathBuf>,
    /// The password of the name (`CHAT_PASSWORD`, or the file's: [`Config::read_password`]).
    pub password: Option<Password>,
    /// The file that holds it (`--password-file`), read by [`Config::read_password`].
    pub password_file: Option<std::path::PathBuf>,
}

impl Default for Config {
    /// The defaults: 127.0.0.1, port 7878, no name (asked for), the switches at their defaults,
    /// no colour.
    fn default() -> Self {
        Config {
            host: DEFAULT_HOST.to_owned(),
            port: DEFAULT_PORT,
            name: None,
            reconnect: DEFAULT_RECONNECT.into(),
            timestamps: DEFAULT_TIMESTAMPS.into(),
            bell: DEFAULT_BELL.into(),
            colour: false,
            tls: false,
            tls_ca: None,
            password: None,
            password_file: None,
        }
    }
}

impl Config {
    /// Reads the password from `--password-file` (its first line, without the line ending),
    /// which wins over `CHAT_PASSWORD`. The error is one line that names the file.
    pub fn read_password(&mut self) -> Result<(), String> {
        let Some(path) = &self.password_file else {
            return Ok(());
        };
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the password file {shown}: {e}"))?;
        let line = text.lines().next().unwrap_or("");
        if line.is_empty() {
            return Err(format!(
                "the password file {shown} has no password on its first line"
            ));
        }
        self.password = Some(Password::from(line));
        Ok(())
    }
}

/// A flag or environment variable holds a value the client cannot use; displays as one line
/// such as `invalid --port 'abc' (from CHAT_PORT): expected a number 1-65535`.
pub type ConfigError = SettingError;

/// Applies the one rule in [`chat_proto::settings`] to each setting: flag, then environment
/// variable, then default.
///
/// `env` looks up an environment variable (`|k| std::env::var(k).ok()` in the binary); an empty
/// variable counts as unset. Only the value that wins is validated, so a bad `CHAT_PORT` is
/// harmless when `--port` is given. Port 0 is refused: there is no port 0 to connect to.
pub fn resolve(args: &Args, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let pick = |flag: &str, given: &Option<String>| settings::pick(flag, given.as_deref(), &env);
    let host = match pick("host", &args.host) {
        Some(raw) => raw.host()?,
        None => DEFAULT_HOST.to_owned(),
    };
    let port = match pick("port", &args.port) {
        Some(raw) => raw.port(PortZero::Refused)?,
        None => DEFAULT_PORT,
    };
    let name = pick("name", &args.name).map(|raw| raw.value);
    let password_file =
        pick("password-file", &args.password_file).map(|raw| std::path::PathBuf::from(raw.value));
    // A password only ever comes from the environment or a file: argv is public (`ps`).
    let password = env("CHAT_PASSWORD")
        .filter(|p| !p.is_empty())
        .map(Password::from);
    let switch = |flag: &str, on: bool, off: bool, default: SwitchDefault| {
        if on && off {
            return Err(SettingError {
                flag: flag.to_owned(),
                value: format!("--no-{flag}"),
                var: None,
                expected: format!("--{flag} or --no-{flag}, not both"),
            });
        }
        if on || off {
            return Ok(if on { Switch::On } else { Switch::Off });
        }
        match settings::pick(flag, None, &env) {
            Some(raw) => Ok(if raw.on_off()? {
                Switch::On
            } else {
                Switch::Off
            }),
            None => Ok(default.into()),
        }
    };
    let tls = args.tls
        || match settings::pick("tls", None, &env) {
            Some(raw) => raw.on_off()?,
            None => DEFAULT_TLS != SwitchDefault::Off,
        };
    let tls_ca = match pick("tls-ca", &args.tls_ca) {
        Some(raw) => Some(raw.parse_with(
            |v| (!v.is_empty()).then(|| std::path::PathBuf::from(v)),
            "a file name",
        )?),
        None => None,
    };
    Ok(Config {
        host,
        port,
        name,
        reconnect: switch(
            "reconnect",
            args.reconnect,
            args.no_reconnect,
            DEFAULT_RECONNECT,
        )?,
        timestamps: switch(
            "timestamps",
            args.timestamps,
            args.no_timestamps,
            DEFAULT_TIMESTAMPS,
        )?,
        bell: switch("bell", args.bell, args.no_bell, DEFAULT_BELL)?,
        colour: false,
        tls: tls || tls_ca.is_some(),
        tls_ca,
        password,
        password_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn args(host: Option<&str>, port: Option<&str>, name: Option<&str>) -> Args {
        Args {
            host: host.map(Into::into),
            port: port.map(Into::into),
            name: name.map(Into::into),
            ..Args::default()
        }
    }

    #[test]
    fn tls_is_a_switch_and_a_ca_file_implies_it() {
        let tls = |args: &Args, pairs: &[(&str, &str)]| {
            resolve(args, env_of(pairs)).map(|c| (c.tls, c.tls_ca))
        };
        assert_eq!(tls(&Args::default(), &[]), Ok((false, None)));
        assert_eq!(
            tls(&Args::default(), &[("CHAT_TLS", "1")]),
            Ok((true, None))
        );
        let on = Args {
            tls: true,
            ..Args::default()
        };
        assert_eq!(tls(&on, &[("CHAT_TLS", "0")]), Ok((true, None)));
        assert_eq!(
            tls(&Args::default(), &[("CHAT_TLS_CA", "/etc/ca.pem")]),
            Ok((true, Some("/etc/ca.pem".into())))
        );
        assert!(tls(&Args::default(), &[("CHAT_TLS", "maybe")]).is_err());
    }

    #[test]
    fn defaults_when_nothing_given() {
        let config = resolve(&Args::default(), env_of(&[])).unwrap();
        assert_eq!(
            config,
            Config {
                host: "127.0.0.1".into(),
                port: 7878,
                name: None,
                ..Config::default()
            }
        );
    }

    #[test]
    fn environment_beats_default() {
        let env = env_of(&[
            ("CHAT_HOST", "chat.example"),
            ("CHAT_PORT", "9000"),
            ("CHAT_NAME", "alice"),
        ]);
        let config = resolve(&Args::default(), env).unwrap();
        assert_eq!(
            config,
            Config {
                host: "chat.example".into(),
                port: 9000,
                name: Some("alice".into()),
                ..Config::default()
            }
        );
    }

    #[test]
    fn flag_beats_environment() {
        let env = env_of(&[
            ("CHAT_HOST", "chat.example"),
            ("CHAT_PORT", "9000"),
            ("CHAT_NAME", "alice"),
        ]);
        let config = resolve(&args(Some("::1"), Some("7000"), Some("bob")), env).unwrap();
        assert_eq!(
            config,
            Config {
                host: "::1".into(),
                port: 7000,
                name: Some("bob".into()),
                ..Config::default()
            }
        );
    }

    #[test]
    fn each_setting_resolves_on_its_own() {
        let env = env_of(&[("CHAT_PORT", "9000")]);
        let config = resolve(&args(Some("h"), None, None), env).unwrap();
        assert_eq!((config.host.as_str(), config.port), ("h", 9000));
        assert_eq!(config.name, None);
    }

    #[test]
    fn empty_environment_counts_as_unset() {
        let env = env_of(&[("CHAT_HOST", ""), ("CHAT_PORT", ""), ("CHAT_NAME", "")]);
        let config = resolve(&Args::default(), env).unwrap();
        assert_eq!((config.host.as_str(), config.port), ("127.0.0.1", 7878));
        assert_eq!(config.name, None);
    }

    #[test]
    fn bad_port_from_flag_or_environment_is_refused() {
        for bad in ["abc", "70000", "0", "-1", "", " 80", "80x"] {
            let err = resolve(&args(None, Some(bad), None), env_of(&[])).unwrap_err();
            assert_eq!(
                err,
                SettingError {
                    flag: "port".into(),
                    value: bad.into(),
                    var: None,
                    expected: "a number 1-65535".into(),
                }
            );
            if !bad.is_empty() {
                let err = resolve(&Args::default(), env_of(&[("CHAT_PORT", bad)])).unwrap_err();
                assert_eq!(
                    err,
                    SettingError {
                        flag: "port".into(),
                        value: bad.into(),
                        var: Some("CHAT_PORT".into()),
                        expected: "a number 1-65535".into(),
                    }
                );
            }
        }
    }

    #[test]
    fn port_limits_are_exact() {
        let port = |p: &str| resolve(&args(None, Some(p), None), env_of(&[])).map(|c| c.port);
        assert_eq!(port("1"), Ok(1));
        assert_eq!(port("65535"), Ok(65535));
        assert!(port("65536").is_err());
    }

    #[test]
    fn port_zero_is_refused_from_the_flag_and_from_the_environment() {
        let err = resolve(&args(None, Some("0"), None), env_of(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid --port '0': expected a number 1-65535"
        );
        let err = resolve(&Args::default(), env_of(&[("CHAT_PORT", "0")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid --port '0' (from CHAT_PORT): expected a number 1-65535"
        );
    }

    #[test]
    fn bad_environment_port_is_ignored_when_flag_given() {
        let env = env_of(&[("CHAT_PORT", "abc")]);
        let config = resolve(&args(None, Some("8000"), None), env).unwrap();
        assert_eq!(config.port, 8000);
    }

    #[test]
    fn error_text_is_one_line_and_names_the_flag_and_the_variable() {
        let err = resolve(&Args::default(), env_of(&[("CHAT_PORT", "70000")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid --port '70000' (from CHAT_PORT): expected a number 1-65535"
        );
        let err = resolve(&args(None, Some("abc"), None), env_of(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid --port 'abc': expected a number 1-65535"
        );
        let err = resolve(&args(Some(""), None, None), env_of(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid --host '': expected a host name or IP address"
        );
        let err = resolve(&Args::default(), env_of(&[("CHAT_HOST", "a b\n")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            r"invalid --host 'a b\n' (from CHAT_HOST): expected a host name or IP address"
        );
    }

    #[test]
    fn argh_parses_the_flags() {
        let parsed = Args::from_args(
            &["chat-client"],
            &["--host", "h", "--port", "abc", "--name", "n"],
        )
        .unwrap();
        assert_eq!(parsed, args(Some("h"), Some("abc"), Some("n")));
    }

    #[test]
    fn switches_default_to_the_mode_and_the_bell_to_off() {
        let config = resolve(&Args::default(), env_of(&[])).unwrap();
        assert_eq!(
            (config.reconnect, config.timestamps, config.bell),
            (Switch::Interactive, Switch::Interactive, Switch::Off)
        );
        assert!(config.reconnect.is_on(true) && !config.reconnect.is_on(false));
        assert!(!config.bell.is_on(true));
    }

    #[test]
    fn a_switch_flag_beats_its_variable_and_the_variable_beats_the_default() {
        let env = env_of(&[
            ("CHAT_RECONNECT", "0"),
            ("CHAT_TIMESTAMPS", "yes"),
            ("CHAT_BELL", "On"),
        ]);
        let config = resolve(&Args::default(), &env).unwrap();
        assert_eq!(
            (config.reconnect, config.timestamps, config.bell),
            (Switch::Off, Switch::On, Switch::On)
        );
        let args = Args::from_args(
            &["chat-client"],
            &["--reconnect", "--no-timestamps", "--no-bell"],
        )
        .unwrap();
        let config = resolve(&args, &env).unwrap();
        assert_eq!(
            (config.reconnect, config.timestamps, config.bell),
            (Switch::On, Switch::Off, Switch::Off)
        );
    }

    #[test]
    fn a_bad_switch_value_or_both_flags_is_one_error_line() {
        let err = resolve(&Args::default(), env_of(&[("CHAT_RECONNECT", "maybe")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid --reconnect 'maybe' (from CHAT_RECONNECT): expected 1 or 0 (also yes/no, true/false, on/off)"
        );
        let args = Args::from_args(&["chat-client"], &["--bell", "--no-bell"]).unwrap();
        let err = resolve(&args, env_of(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid --bell '--no-bell': expected --bell or --no-bell, not both"
        );
    }
}
