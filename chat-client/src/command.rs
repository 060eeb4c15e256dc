//! The commands a user types at the prompt (or a script writes on stdin).

use crate::render::escape;

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `send <MSG>`: say `MSG` (verbatim, spaces included) to everyone else. At a terminal, a
    /// line that is not a command too.
    Send(String),
    /// `me <ACTION>` (or `send /me <ACTION>`): do `ACTION`; others see `* alice ACTION`.
    Me(String),
    /// `leave [MESSAGE]`: leave the room, with parting words if given, and exit.
    Leave(Option<String>),
    /// `nick <NAME>`: take another name.
    Nick(String),
    /// `away [MESSAGE]`: say that one is away, and why if given.
    Away(Option<String>),
    /// `back`: say that one is back.
    Back,
    /// `who`: ask who is online.
    Who,
    /// `help`: list the commands.
    Help,
    /// `register`: register one's name with a password (the given one, or typed unseen).
    Register,
    /// `passwd`: change the password (typed unseen, at a terminal).
    Passwd,
    /// `unregister`: free one's name from its account.
    Unregister,
    /// `kick NAME [REASON]` (operators): remove a member.
    Kick {
        /// The member.
        name: String,
        /// Why.
        reason: Option<String>,
    },
    /// `ban NAME|ADDRESS|CIDR [DURATION] [REASON]` (operators).
    Ban {
        /// The name, address or network.
        target: String,
        /// How long, in seconds; `None`: until lifted.
        duration_secs: Option<u64>,
        /// Why.
        reason: Option<String>,
    },
    /// `unban NAME|ADDRESS|CIDR` (operators).
    Unban(String),
    /// `mute NAME [DURATION]` (operators).
    Mute {
        /// The name.
        name: String,
        /// How long, in seconds; `None`: until lifted.
        duration_secs: Option<u64>,
    },
    /// `unmute NAME` (operators).
    Unmute(String),
    /// `bans` (operators): list the bans and mutes in force.
    Bans,
}

/// A line that is not a command; its `Display` is a one-line hint for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// The line is blank; nothing to do and nothing to say.
    Blank,
    /// `send` without a message.
    EmptySend,
    /// `me` (or `send /me`) without an action.
    EmptyAction,
    /// `nick` without a name.
    NoName,
    /// A command that takes no argument was given one.
    UnexpectedArgument(&'static str),
    /// The first word is no command.
    Unknown(String),
    /// `register` or `passwd` with words after it, maybe a password: never sent, not even as
    /// a chat.
    PasswordInLine(&'static str),
    /// A moderation command without its target: the usage to type.
    NoTarget(&'static str),
    /// `mute NAME` followed by something that is no duration.
    BadDuration(String),
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::Blank => f.write_str("empty line; type help for the commands"),
            CommandError::EmptySend => f.write_str("nothing to send; type send <MSG>"),
            CommandError::EmptyAction => f.write_str("nothing to do; type me <ACTION>"),
            CommandError::NoName => f.write_str("no name given; type nick <NAME>"),
            CommandError::UnexpectedArgument(cmd) => {
                write!(f, "{cmd} takes no argument; type {cmd} alone")
            }
            CommandError::PasswordInLine(cmd) => write!(
                f,
                "type {cmd} alone: the password is asked for, unseen (nothing was sent)"
            ),
            CommandError::NoTarget(usage) => write!(f, "nothing to act on; type {usage}"),
            CommandError::BadDuration(word) => write!(
                f,
                "'{}' is no duration; type a number with s, m, h or d, as in 10m, 2h, 1d",
                escape(word)
            ),
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
    "* commands (each also with a leading /, as in /me or /nick):",
    "*   send <MSG>       say MSG to everyone else",
    "*   me <ACTION>      do ACTION: others see * <you> ACTION (send /me ACTION too)",
    "*   nick <NAME>      take another name",
    "*   away [MESSAGE]   say that you are away, and why",
    "*   back             say that you are back",
    "*   who              list who is online, and who is away",
    "*   leave [MESSAGE]  leave the room, with parting words (Ctrl-D, Ctrl-C too)",
    "*   register         register your name: joining as it then needs your password",
    "*   passwd           change your password",
    "*   unregister       free your name: anyone may take it when you leave",
    "*   help             show this list",
    "* operators (DURATION: 30s, 10m, 2h, 1d; without one, until lifted):",
    "*   kick NAME [REASON]       remove a member (it may come back)",
    "*   ban NAME|ADDRESS|CIDR [DURATION] [REASON]",
    "*                            ban a name (and its look-alikes) or addresses",
    "*   unban NAME|ADDRESS|CIDR  lift a ban",
    "*   mute NAME [DURATION]     refuse a member's chats (unmute NAME lifts it)",
    "*   bans                     list the bans and mutes in force",
    "* at a terminal, a line that is no command is sent as a chat",
];

/// How a chat that starts with it is meant as an action: `send /me waves`.
const ME_PREFIX: &str = "/me";

/// Parses one input line (without its line ending), as a script's lines are: a line that is
/// not a command is an error, so that a typo is never sent.
///
/// Leading whitespace is ignored, and so is one `/` in front of the command word. For `send`
/// and `me`, the text is the rest of the line after the one space that follows the word, kept
/// verbatim (more spaces included); an empty one is an error. `send /me <ACTION>` is an
/// action. The words of `leave`, `away` and `nick` are the rest of the line, trimmed. The
/// other commands accept trailing whitespace but no argument.
pub fn parse_command(line: &str) -> Result<Command, CommandError> {
    let line = line.trim_start();
    let (word, rest) = match line.split_once(' ') {
        Some((word, rest)) => (word, Some(rest)),
        None => (line, None),
    };
    let name = word.strip_prefix('/').unwrap_or(word);
    let words = rest.map(str::trim).filter(|r| !r.is_empty());
    let no_argument = |cmd: &'static str, command: Command| match words {
        Some(_) => Err(CommandError::UnexpectedArgument(cmd)),
        None => Ok(command),
    };
    match name.trim_end() {
        "" if word.is_empty() => Err(CommandError::Blank),
        "send" => match rest {
            Some(text) if name == "send" && !text.is_empty() => said(text),
            _ => Err(CommandError::EmptySend),
        },
        "me" => match rest {
            Some(text) if name == "me" && !text.is_empty() => Ok(Command::Me(text.to_owned())),
            _ => Err(CommandError::EmptyAction),
        },
        "leave" => Ok(Command::Leave(words.map(str::to_owned))),
        "away" => Ok(Command::Away(words.map(str::to_owned))),
        "nick" => words
            .map(|name| Command::Nick(name.to_owned()))
            .ok_or(CommandError::NoName),
        "back" => no_argument("back", Command::Back),
        "who" => no_argument("who", Command::Who),
        // No argument: a password is never typed in a command line (nor kept in its history).
        "register" | "passwd" if words.is_some() => {
            Err(CommandError::PasswordInLine(if name == "register" {
                "register"
            } else {
                "passwd"
            }))
        }
        "register" => Ok(Command::Register),
        "passwd" => Ok(Command::Passwd),
        "unregister" => no_argument("unregister", Command::Unregister),
        "help" => no_argument("help", Command::Help),
        "kick" | "ban" | "unban" | "mute" | "unmute" => moderation(name, words.unwrap_or("")),
        "bans" => no_argument("bans", Command::Bans),
        _ => Err(CommandError::Unknown(word.to_owned())),
    }
}

/// Parses a line typed at a terminal, where people chat: as [`parse_command`] does, except
/// that a line that is not a command (its first word is none, or a command word is followed by
/// words it does not take, as in `who is there?`) is a chat, sent verbatim. A line that starts
/// with `/` is always meant as a command, so a typo there is still an error.
pub fn parse_typed(line: &str) -> Result<Command, CommandError> {
    match parse_command(line) {
        Err(CommandError::Unknown(_) | CommandError::UnexpectedArgument(_))
            if !line.trim_start().starts_with('/') =>
        {
            Ok(Command::Send(line.to_owned()))
        }
        parsed => parsed,
    }
}

/// A moderation command's arguments: a target, then (`ban`, `mute`) a duration if the next
/// word is one, then (`kick`, `ban`) the reason, the rest of the line.
fn moderation(cmd: &str, args: &str) -> Result<Command, CommandError> {
    let (target, rest) = match args.split_once(char::is_whitespace) {
        Some((target, rest)) => (target.to_owned(), rest.trim()),
        None => (args.to_owned(), ""),
    };
    let usage = match cmd {
        "kick" => "kick NAME [REASON]",
        "ban" => "ban NAME|ADDRESS|CIDR [DURATION] [REASON]",
        "unban" => "unban NAME|ADDRESS|CIDR",
        "mute" => "mute NAME [DURATION]",
        _ => "unmute NAME",
    };
    if target.is_empty() {
        return Err(CommandError::NoTarget(usage));
    }
    let (first, after) = match rest.split_once(char::is_whitespace) {
        Some((first, after)) => (first, after.trim()),
        None => (rest, ""),
    };
    let duration = parse_duration(first);
    let text = |t: &str| (!t.is_empty()).then(|| t.to_owned());
    let (duration_secs, reason) = match duration {
        Some(secs) => (Some(secs), text(after)),
        None => (None, text(rest)),
    };
    match cmd {
        "kick" => Ok(Command::Kick {
            name: target,
            reason: text(rest),
        }),
        "ban" => Ok(Command::Ban {
            target,
            duration_secs,
            reason,
        }),
        "mute" if reason.is_some() => Err(CommandError::BadDuration(rest.to_owned())),
        "mute" => Ok(Command::Mute {
            name: target,
            duration_secs,
        }),
        "unban" if rest.is_empty() => Ok(Command::Unban(target)),
        "unmute" if rest.is_empty() => Ok(Command::Unmute(target)),
        _ => Err(CommandError::NoTarget(usage)),
    }
}

/// `30s`, `10m`, `2h`, `1d` (a bare number is seconds), in seconds; `None` if it is not one.
pub fn parse_duration(word: &str) -> Option<u64> {
    let (digits, scale) = match word.char_indices().last()? {
        (i, 's') => (&word[..i], 1),
        (i, 'm') => (&word[..i], 60),
        (i, 'h') => (&word[..i], 3600),
        (i, 'd') => (&word[..i], 86_400),
        _ => (word, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

/// What `send TEXT` says: an action when `TEXT` is `/me <ACTION>`, else `TEXT` itself.
fn said(text: &str) -> Result<Command, CommandError> {
    match text.strip_prefix(ME_PREFIX) {
        Some("") => Err(CommandError::EmptyAction),
        Some(action) => match action.strip_prefix(' ') {
            Some("") => Err(CommandError::EmptyAction),
            Some(action) => Ok(Command::Me(action.to_owned())),
            None => Ok(Command::Send(text.to_owned())), // `/meow`
        },
        None => Ok(Command::Send(text.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_typed_after_register_or_passwd_is_never_sent_even_as_a_chat() {
        for line in ["register hunter2", "passwd hunter2 x", "/register hunter2"] {
            let error = parse_typed(line).unwrap_err();
            assert!(matches!(error, CommandError::PasswordInLine(_)), "{line}");
            assert!(!error.to_string().contains("hunter2"));
        }
        assert_eq!(parse_typed("register"), Ok(Command::Register));
        assert_eq!(parse_command("passwd "), Ok(Command::Passwd));
        assert_eq!(parse_command("unregister"), Ok(Command::Unregister));
    }

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
    fn moderation_commands_take_a_target_a_duration_and_a_reason() {
        assert_eq!(
            parse_command("kick bob stop spamming"),
            Ok(Command::Kick {
                name: "bob".into(),
                reason: Some("stop spamming".into())
            })
        );
        assert_eq!(
            parse_command("/ban 192.0.2.0/24 2h flood"),
            Ok(Command::Ban {
                target: "192.0.2.0/24".into(),
                duration_secs: Some(7200),
                reason: Some("flood".into())
            })
        );
        assert_eq!(
            parse_command("ban mallory was rude"),
            Ok(Command::Ban {
                target: "mallory".into(),
                duration_secs: None,
                reason: Some("was rude".into())
            })
        );
        assert_eq!(
            parse_command("mute bob 10m"),
            Ok(Command::Mute {
                name: "bob".into(),
                duration_secs: Some(600)
            })
        );
        assert_eq!(
            parse_command("mute bob soon"),
            Err(CommandError::BadDuration("soon".into()))
        );
        assert_eq!(parse_command("unban bob"), Ok(Command::Unban("bob".into())));
        assert_eq!(
            parse_command("unmute bob"),
            Ok(Command::Unmute("bob".into()))
        );
        assert_eq!(parse_command("bans"), Ok(Command::Bans));
        assert_eq!(
            parse_command("kick"),
            Err(CommandError::NoTarget("kick NAME [REASON]"))
        );
        assert_eq!(parse_duration("1d"), Some(86_400));
        assert_eq!(parse_duration("45"), Some(45));
        for bad in ["", "m", "-1m", "1w", "1.5h", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn send_with_nothing_is_refused() {
        assert_eq!(parse_command("send"), Err(CommandError::EmptySend));
        assert_eq!(parse_command("send "), Err(CommandError::EmptySend));
        assert_eq!(parse_command("send\t"), Err(CommandError::EmptySend));
    }

    #[test]
    fn plain_commands() {
        assert_eq!(parse_command("leave"), Ok(Command::Leave(None)));
        assert_eq!(parse_command("who"), Ok(Command::Who));
        assert_eq!(parse_command("help"), Ok(Command::Help));
        assert_eq!(parse_command("back"), Ok(Command::Back));
        assert_eq!(parse_command("  who  "), Ok(Command::Who));
        assert_eq!(parse_command("who\t"), Ok(Command::Who));
        assert_eq!(parse_command("leave "), Ok(Command::Leave(None)));
    }

    #[test]
    fn plain_commands_take_no_argument() {
        assert_eq!(
            parse_command("who is here"),
            Err(CommandError::UnexpectedArgument("who"))
        );
        assert_eq!(
            parse_command("back in 5"),
            Err(CommandError::UnexpectedArgument("back"))
        );
        assert_eq!(
            parse_command("/help me"),
            Err(CommandError::UnexpectedArgument("help"))
        );
    }

    #[test]
    fn me_and_send_me_are_actions() {
        assert_eq!(parse_command("me waves"), Ok(Command::Me("waves".into())));
        assert_eq!(parse_command("/me waves"), Ok(Command::Me("waves".into())));
        assert_eq!(
            parse_command("send /me waves  twice"),
            Ok(Command::Me("waves  twice".into()))
        );
        assert_eq!(
            parse_command("me  waves "),
            Ok(Command::Me(" waves ".into()))
        );
        // Not an action: more than `/me`, or `/me` not first.
        assert_eq!(
            parse_command("send /meow"),
            Ok(Command::Send("/meow".into()))
        );
        assert_eq!(
            parse_command("send  /me x"),
            Ok(Command::Send(" /me x".into()))
        );
        for line in ["me", "me ", "/me", "send /me", "send /me "] {
            assert_eq!(
                parse_command(line),
                Err(CommandError::EmptyAction),
                "{line:?}"
            );
        }
    }

    #[test]
    fn leave_and_away_take_optional_words_and_nick_a_name() {
        assert_eq!(
            parse_command("leave gone for  lunch "),
            Ok(Command::Leave(Some("gone for  lunch".into())))
        );
        assert_eq!(
            parse_command("/leave bye"),
            Ok(Command::Leave(Some("bye".into())))
        );
        assert_eq!(parse_command("away"), Ok(Command::Away(None)));
        assert_eq!(parse_command("/away  "), Ok(Command::Away(None)));
        assert_eq!(
            parse_command("away lunch, back at 2"),
            Ok(Command::Away(Some("lunch, back at 2".into())))
        );
        assert_eq!(parse_command("/back"), Ok(Command::Back));
        assert_eq!(
            parse_command("nick alicia"),
            Ok(Command::Nick("alicia".into()))
        );
        assert_eq!(
            parse_command("/nick  alicia "),
            Ok(Command::Nick("alicia".into()))
        );
        // A name with a space goes to the server, which says why it is refused.
        assert_eq!(parse_command("nick a b"), Ok(Command::Nick("a b".into())));
        assert_eq!(parse_command("nick"), Err(CommandError::NoName));
        assert_eq!(parse_command("/nick "), Err(CommandError::NoName));
    }

    #[test]
    fn every_command_takes_a_leading_slash() {
        for (line, command) in [
            ("/send hi", Command::Send("hi".into())),
            ("/who", Command::Who),
            ("/help", Command::Help),
            ("/leave", Command::Leave(None)),
            ("  /back", Command::Back),
        ] {
            assert_eq!(parse_command(line), Ok(command), "{line:?}");
        }
        assert_eq!(
            parse_command("//who"),
            Err(CommandError::Unknown("//who".into()))
        );
        assert_eq!(parse_command("/"), Err(CommandError::Unknown("/".into())));
    }

    #[test]
    fn at_a_terminal_a_line_that_is_no_command_is_a_chat() {
        for line in [
            "hi all",
            "hi",
            " who is there?",
            "back in 5",
            "help me out",
            "sendhi",
        ] {
            assert_eq!(
                parse_typed(line),
                Ok(Command::Send(line.into())),
                "{line:?}"
            );
        }
        // Commands stay commands.
        assert_eq!(parse_typed("send hi"), Ok(Command::Send("hi".into())));
        assert_eq!(parse_typed("me waves"), Ok(Command::Me("waves".into())));
        assert_eq!(parse_typed("who"), Ok(Command::Who));
        assert_eq!(
            parse_typed("leave now"),
            Ok(Command::Leave(Some("now".into())))
        );
        // A leading `/` means a command: a typo there is an error, not a chat.
        assert_eq!(
            parse_typed("/shout hi"),
            Err(CommandError::Unknown("/shout".into()))
        );
        assert_eq!(
            parse_typed("/who is there"),
            Err(CommandError::UnexpectedArgument("who"))
        );
        assert_eq!(parse_typed("   "), Err(CommandError::Blank));
        assert_eq!(parse_typed("send"), Err(CommandError::EmptySend));
        assert_eq!(parse_typed("nick"), Err(CommandError::NoName));
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
    fn help_fits_a_terminal_of_80_columns() {
        for line in HELP {
            assert!(line.chars().count() <= 80, "{line:?}");
        }
    }

    #[test]
    fn hints_are_one_line_and_escape_the_input() {
        let hint = parse_command("\x1b[2Jboom").unwrap_err().to_string();
        assert_eq!(
            hint,
            "unknown command '\\x1b[2Jboom'; type help for the commands"
        );
        for line in ["send", "who x", "nope", "a\nb", "me", "nick"] {
            let hint = parse_command(line).unwrap_err().to_string();
            assert!(!hint.contains('\n'), "{hint:?}");
        }
    }
}
