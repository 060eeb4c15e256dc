//! Command-line arguments and their resolution against the environment and the defaults.

use argh::FromArgs;

/// The host used when neither `--host` nor `CHAT_HOST` gives one.
pub const DEFAULT_HOST: &str = "127.0.0.1";

/// The port used when neither `--port` nor `CHAT_PORT` gives one (the server's default too).
pub const DEFAULT_PORT: u16 = 7878;

/// Join the chat room: type `help` at the prompt for the commands.
///
/// Reads commands line by line when stdin is not a terminal, so it can be scripted.
#[derive(FromArgs, Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    /// server host name or address (else CHAT_HOST, else 127.0.0.1)
    #[argh(option)]
    pub host: Option<String>,
    /// server port (else CHAT_PORT, else 7878)
    #[argh(option)]
    pub port: Option<String>,
    /// the name to join under (else CHAT_NAME, else asked for at the prompt)
    #[argh(option)]
    pub name: Option<String>,
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
}

/// A flag or environment variable holds a value the client cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The port is not a number from 1 to 65535.
    BadPort {
        /// The value as given.
        value: String,
        /// Where it came from: `--port` or `CHAT_PORT`.
        source: &'static str,
    },
    /// The host is empty.
    EmptyHost {
        /// Where it came from: `--host`.
        source: &'static str,
    },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::BadPort { value, source } => write!(
                f,
                "invalid port {value:?} from {source}; expected a number from 1 to 65535"
            ),
            ConfigError::EmptyHost { source } => {
                write!(f, "empty host from {source}; give a host name or address")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Applies flag, then environment, then default to each setting.
///
/// `env` looks up an environment variable (`|k| std::env::var(k).ok()` in the binary); an empty
/// variable counts as unset. Only the value that wins is validated, so a bad `CHAT_PORT` is
/// harmless when `--port` is given.
pub fn resolve(args: &Args, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let env = |key: &str| env(key).filter(|v| !v.is_empty());

    let host = match (&args.host, env("CHAT_HOST")) {
        (Some(h), _) if h.is_empty() => return Err(ConfigError::EmptyHost { source: "--host" }),
        (Some(h), _) => h.clone(),
        (None, Some(h)) => h,
        (None, None) => DEFAULT_HOST.to_owned(),
    };
    let port = match (&args.port, env("CHAT_PORT")) {
        (Some(p), _) => parse_port(p, "--port")?,
        (None, Some(p)) => parse_port(&p, "CHAT_PORT")?,
        (None, None) => DEFAULT_PORT,
    };
    let name = args.name.clone().or_else(|| env("CHAT_NAME"));
    Ok(Config { host, port, name })
}

/// Parses a TCP port from 1 to 65535; the one check shared by `--port` and `CHAT_PORT`.
fn parse_port(value: &str, source: &'static str) -> Result<u16, ConfigError> {
    match value.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(ConfigError::BadPort {
            value: value.to_owned(),
            source,
        }),
    }
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
        }
    }

    #[test]
    fn defaults_when_nothing_given() {
        let config = resolve(&Args::default(), env_of(&[])).unwrap();
        assert_eq!(
            config,
            Config {
                host: "127.0.0.1".into(),
                port: 7878,
                name: None
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
                name: Some("alice".into())
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
                name: Some("bob".into())
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
                ConfigError::BadPort {
                    value: bad.into(),
                    source: "--port"
                }
            );
            if !bad.is_empty() {
                let err = resolve(&Args::default(), env_of(&[("CHAT_PORT", bad)])).unwrap_err();
                assert_eq!(
                    err,
                    ConfigError::BadPort {
                        value: bad.into(),
                        source: "CHAT_PORT"
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
    fn bad_environment_port_is_ignored_when_flag_given() {
        let env = env_of(&[("CHAT_PORT", "abc")]);
        let config = resolve(&args(None, Some("8000"), None), env).unwrap();
        assert_eq!(config.port, 8000);
    }

    #[test]
    fn error_text_is_one_line_and_names_the_source() {
        let err = resolve(&Args::default(), env_of(&[("CHAT_PORT", "70000")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid port \"70000\" from CHAT_PORT; expected a number from 1 to 65535"
        );
        let err = resolve(&args(None, Some("abc"), None), env_of(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid port \"abc\" from --port; expected a number from 1 to 65535"
        );
        let err = resolve(&args(Some(""), None, None), env_of(&[])).unwrap_err();
        assert!(!err.to_string().contains('\n'));
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
}
