//! The commands a user types at the prompt (or a script writes on stdin).

use crate::render::escape;

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `send <MSG>`: say `MSG` (verbatim, spaces included) to everyone else.
    Send(String),
    /// `leave`: leave the room and exit.
    Leave,
    /// `who`: ask who is online.
    Who,
    /// `help`: list the commands.
    Help,
}

/// A line that is not a command; its `Display` is a one-line hint for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// The line is blank; nothing to do and nothing to say.
    Blank,
    /// `send` without a message.
    EmptySend,
    /// A command that takes no argument was given one.
    UnexpectedArgument(&'static str),
    /// The first word is no command.
    Unknown(String),
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::Blank => f.write_str("empty line; type help for the commands"),
            CommandError::EmptySend => f.write_str("nothing to send; type send <MSG>"),
            CommandError::UnexpectedArgument(cmd) => {
                write!(f, "{cmd} takes no argument; type {cmd} alone")
            }
            CommandError::Unknown(word) => {
                write!(
                    f,
                    "unknown command '{}'; type help for the commands",
                    escape(word)
                )
            }
        }
    }
}

impl std::error::Error for CommandError {}

/// The lines printed by `help`.
pub const HELP: &[&str] = &[
    "* commands:",
    "*   send <MSG>  say MSG to everyone else",
    "*   who         list who is online",
    "*   leave       leave the room (Ctrl-D and Ctrl-C too)",
    "*   help        show this list",
];

/// Parses one input line (without its line ending).
///
/// Leading whitespace is ignored. For `send`, the message is the rest of the line after the one
/// space that follows `send`, kept verbatim (more spaces included); an empty message is an error.
/// The other commands accept trailing whitespace but no argument.
pub fn parse_command(line: &str) -> Result<Command, CommandError> {
    let line = line.trim_start();
    let (word, rest) = match line.split_once(' ') {
        Some((word, rest)) => (word, Some(rest)),
        None => (line, None),
    };
    let no_argument = |cmd: &'static str, command: Command| match rest {
        Some(rest) if !rest.trim().is_empty() => Err(CommandError::UnexpectedArgument(cmd)),
        _ => Ok(command),
    };
    match word.trim_end() {
        "" => Err(CommandError::Blank),
        "send" => match rest {
            Some(text) if word == "send" && !text.is_empty() => Ok(Command::Send(text.to_owned())),
            _ => Err(CommandError::EmptySend),
        },
        "leave" => no_argument("leave", Command::Leave),
        "who" => no_argument("who", Command::Who),
        "help" => no_argument("help", Command::Help),
        _ => Err(CommandError::Unknown(word.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_keeps_the_rest_verbatim() {
        assert_eq!(parse_command("send hi"), Ok(Command::Send("hi".into())));
        assert_eq!(
            parse_command("send  two  spaces "),
            Ok(Command::Send(" two  spaces ".into()))
        );
        assert_eq!(
            parse_command("send send leave"),
            Ok(Command::Send("send leave".into()))
        );
        assert_eq!(parse_command("  send x"), Ok(Command::Send("x".into())));
        assert_eq!(parse_command("send  "), Ok(Command::Send(" ".into())));
    }

    #[test]
    fn send_with_nothing_is_refused() {
        assert_eq!(parse_command("send"), Err(CommandError::EmptySend));
        assert_eq!(parse_command("send "), Err(CommandError::EmptySend));
        assert_eq!(parse_command("send\t"), Err(CommandError::EmptySend));
    }

    #[test]
    fn plain_commands() {
        assert_eq!(parse_command("leave"), Ok(Command::Leave));
        assert_eq!(parse_command("who"), Ok(Command::Who));
        assert_eq!(parse_command("help"), Ok(Command::Help));
        assert_eq!(parse_command("  who  "), Ok(Command::Who));
        assert_eq!(parse_command("who\t"), Ok(Command::Who));
    }

    #[test]
    fn plain_commands_take_no_argument() {
        assert_eq!(
            parse_command("who is here"),
            Err(CommandError::UnexpectedArgument("who"))
        );
        assert_eq!(
            parse_command("leave now"),
            Err(CommandError::UnexpectedArgument("leave"))
        );
    }

    #[test]
    fn unknown_and_blank() {
        assert_eq!(
            parse_command("say hi"),
            Err(CommandError::Unknown("say".into()))
        );
        assert_eq!(
            parse_command("sendhi"),
            Err(CommandError::Unknown("sendhi".into()))
        );
        assert_eq!(
            parse_command("SEND hi"),
            Err(CommandError::Unknown("SEND".into()))
        );
        assert_eq!(
            parse_command("send\thi"),
            Err(CommandError::Unknown("send\thi".into()))
        );
        assert_eq!(parse_command(""), Err(CommandError::Blank));
        assert_eq!(parse_command("   "), Err(CommandError::Blank));
    }

    #[test]
    fn hints_are_one_line_and_escape_the_input() {
        let hint = parse_command("\x1b[2Jboom").unwrap_err().to_string();
        assert_eq!(
            hint,
            "unknown command '\\x1b[2Jboom'; type help for the commands"
        );
        for line in ["send", "who x", "nope", "a\nb"] {
            let hint = parse_command(line).unwrap_err().to_string();
            assert!(!hint.contains('\n'), "{hint:?}");
        }
    }
}
