//! One rule for the server's and the client's settings: the flag, else the environment variable,
//! else the default; one error format for a value that cannot be used.
//!
//! The rule, the same in both programs:
//! - `--max-clients` pairs with `CHAT_MAX_CLIENTS` ([`var_name`]); a flag given wins even when
//!   the variable is set, and only the value that wins is checked.
//! - An empty environment variable counts as unset (`CHAT_PORT= chat-server` uses the default),
//!   while an empty flag (`--port ''`) is a value, and refused like any other bad one.
//! - Values are taken as given: `' 80'` is not a port.
//! - A bad value is one line naming the flag, the value and, when it came from the environment,
//!   the variable: `invalid --port 'abc' (from CHAT_PORT): expected a number 1-65535`.
//!
//! No I/O here: the environment is a lookup function (`|k| std::env::var(k).ok()` in a binary,
//! a map in a test).

use std::fmt;

/// The environment variable that pairs with a flag: `max-clients` gives `CHAT_MAX_CLIENTS`.
pub fn var_name(flag: &str) -> String {
    format!("CHAT_{}", flag.to_uppercase().replace('-', "_"))
}

/// Where a setting's winning value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The command-line flag.
    Flag,
    /// The environment variable of this name.
    Env(String),
}

/// A setting's winning value as text, before it is checked, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw {
    /// The flag's name without dashes, e.g. `port`.
    pub flag: String,
    /// The text as given.
    pub value: String,
    /// The flag or the variable.
    pub origin: Origin,
}

/// Applies the rule to one setting: the flag's value if given, else the variable's if set and
/// not empty, else `None` (the caller keeps its default).
pub fn pick(flag: &str, given: Option<&str>, env: &impl Fn(&str) -> Option<String>) -> Option<Raw> {
    let (value, origin) = match given {
        Some(value) => (value.to_owned(), Origin::Flag),
        None => {
            let var = var_name(flag);
            let value = env(&var).filter(|v| !v.is_empty())?;
            (value, Origin::Env(var))
        }
    };
    Some(Raw {
        flag: flag.to_owned(),
        value,
        origin,
    })
}

/// What port 0 means to a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortZero {
    /// "Any free port": a listener asks the system for one.
    AnyFree,
    /// Refused: there is no port 0 to connect to.
    Refused,
}

impl Raw {
    /// The error for this value: `invalid --FLAG 'VALUE' [(from VAR)]: expected EXPECTED`.
    pub fn invalid(&self, expected: &str) -> SettingError {
        SettingError {
            flag: self.flag.clone(),
            value: self.value.clone(),
            var: match &self.origin {
                Origin::Flag => None,
                Origin::Env(var) => Some(var.clone()),
            },
            expected: expected.to_owned(),
        }
    }

    /// Parses the value with `parse`; `None` from it is the error naming `expected`.
    pub fn parse_with<T>(
        &self,
        parse: impl FnOnce(&str) -> Option<T>,
        expected: &str,
    ) -> Result<T, SettingError> {
        parse(&self.value).ok_or_else(|| self.invalid(expected))
    }

    /// A TCP port; whether 0 is allowed is the program's choice.
    pub fn port(&self, zero: PortZero) -> Result<u16, SettingError> {
        let (lowest, expected) = match zero {
            PortZero::AnyFree => (0, "a number 0-65535"),
            PortZero::Refused => (1, "a number 1-65535"),
        };
        self.parse_with(|v| v.parse::<u16>().ok().filter(|&p| p >= lowest), expected)
    }

    /// A count of at least 1 (a limit of 0 would refuse everything).
    pub fn count<T: std::str::FromStr + PartialOrd + From<u8>>(&self) -> Result<T, SettingError> {
        self.parse_with(
            |v| v.parse::<T>().ok().filter(|n| *n >= T::from(1)),
            "a whole number of at least 1",
        )
    }

    /// A whole number, 0 included (for settings where 0 means "none" or "no limit").
    pub fn number<T: std::str::FromStr>(&self) -> Result<T, SettingError> {
        self.parse_with(|v| v.parse::<T>().ok(), "a whole number")
    }

    /// On or off: `1`/`yes`/`true`/`on` or `0`/`no`/`false`/`off`, in any case.
    pub fn on_off(&self) -> Result<bool, SettingError> {
        self.parse_with(
            |v| match v.to_ascii_lowercase().as_str() {
                "1" | "yes" | "true" | "on" => Some(true),
                "0" | "no" | "false" | "off" => Some(false),
                _ => None,
            },
            "1 or 0 (also yes/no, true/false, on/off)",
        )
    }

    /// A host name or address: not empty, no spaces or control characters.
    pub fn host(&self) -> Result<String, SettingError> {
        self.parse_with(
            |v| {
                let usable =
                    !v.is_empty() && !v.chars().any(|c| c.is_whitespace() || c.is_control());
                usable.then(|| v.to_owned())
            },
            "a host name or IP address",
        )
    }
}

/// A setting whose value cannot be used; displays as one line (the value escaped), which a
/// binary prints after `error: ` and exits 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// The flag's name without dashes.
    pub flag: String,
    /// The value as given.
    pub value: String,
    /// The variable it came from, if it did not come from the flag.
    pub var: Option<String>,
    /// What would have been accepted, e.g. `a number 1-65535`.
    pub expected: String,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid --{} '{}'", self.flag, self.value.escape_debug())?;
        if let Some(var) = &self.var {
            write!(f, " (from {var})")?;
        }
        write!(f, ": expected {}", self.expected)
    }
}

impl std::error::Error for SettingError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn a_flag_maps_to_its_variable() {
        assert_eq!(var_name("port"), "CHAT_PORT");
        assert_eq!(var_name("max-text-bytes"), "CHAT_MAX_TEXT_BYTES");
    }

    #[test]
    fn the_flag_beats_the_variable_which_beats_the_default() {
        let both = env(&[("CHAT_PORT", "8000")]);
        assert_eq!(pick("port", Some("9000"), &both).unwrap().value, "9000");
        assert_eq!(
            pick("port", Some("9000"), &both).unwrap().origin,
            Origin::Flag
        );
        let from_env = pick("port", None, &both).unwrap();
        assert_eq!(from_env.value, "8000");
        assert_eq!(from_env.origin, Origin::Env("CHAT_PORT".into()));
        assert_eq!(pick("port", None, &env(&[])), None);
    }

    #[test]
    fn an_empty_variable_counts_as_unset_but_an_empty_flag_is_a_value() {
        let empty = env(&[("CHAT_HOST", "")]);
        assert_eq!(pick("host", None, &empty), None);
        let flag = pick("host", Some(""), &empty).unwrap();
        assert_eq!(
            flag.host().unwrap_err().to_string(),
            "invalid --host '': expected a host name or IP address"
        );
    }

    #[test]
    fn port_zero_is_any_free_port_or_refused_as_the_program_chooses() {
        let zero = pick("port", Some("0"), &env(&[])).unwrap();
        assert_eq!(zero.port(PortZero::AnyFree), Ok(0));
        assert_eq!(
            zero.port(PortZero::Refused).unwrap_err().to_string(),
            "invalid --port '0': expected a number 1-65535"
        );
    }

    #[test]
    fn port_limits_are_exact() {
        let port = |v: &'static str| {
            Raw {
                flag: "port".into(),
                value: v.into(),
                origin: Origin::Flag,
            }
            .port(PortZero::Refused)
        };
        assert_eq!(port("1"), Ok(1));
        assert_eq!(port("65535"), Ok(65535));
        assert!(port("65536").is_err());
        assert!(port(" 80").is_err());
    }

    #[test]
    fn the_error_names_the_flag_the_value_and_the_variable_it_came_from() {
        let from_env = pick("port", None, &env(&[("CHAT_PORT", "abc")])).unwrap();
        assert_eq!(
            from_env.port(PortZero::Refused).unwrap_err().to_string(),
            "invalid --port 'abc' (from CHAT_PORT): expected a number 1-65535"
        );
        let from_flag = pick("max-clients", Some("-5"), &env(&[])).unwrap();
        assert_eq!(
            from_flag.count::<u32>().unwrap_err().to_string(),
            "invalid --max-clients '-5': expected a whole number of at least 1"
        );
    }

    #[test]
    fn the_error_is_one_line_whatever_the_value_holds() {
        let raw = pick("host", None, &env(&[("CHAT_HOST", "a\nb'c")])).unwrap();
        assert_eq!(
            raw.host().unwrap_err().to_string(),
            r"invalid --host 'a\nb\'c' (from CHAT_HOST): expected a host name or IP address"
        );
    }
}
