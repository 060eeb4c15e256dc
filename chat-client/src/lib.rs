//! The chat terminal client: command-line configuration, the command parser, the rendering of
//! server messages, the session state machine (`session.rs`, no I/O) and its async driver
//! (`driver.rs`).
//!
//! A [`Session`] is sans-IO: it is told what the user typed, what the server sent and what time
//! it is, and answers with [`Output`]s (send this, print that, exit with this code). The binary
//! resolves a [`Config`] from flags and the environment, then calls [`run`], whose driver
//! [`run_session`] owns the socket, the input and the timer. Tests (and other programs) can run
//! a whole session with scripted input and captured output through [`run_session`]:
//!
//! ```no_run
//! use chat_client::{Config, Input, run_session};
//! # smol::block_on(async {
//! let config = Config { name: Some("alice".into()), ..Config::default() };
//! let (tx, rx) = smol::channel::unbounded();
//! tx.send("send hello".to_owned()).await.unwrap();
//! drop(tx); // end of input: leave
//! let (mut out, mut err) = (Vec::new(), Vec::new());
//! let code = run_session(&config, &mut Input::lines(rx), &mut out, &mut err).await;
//! # let _ = code;
//! # });
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod command;
mod config;
mod driver;
mod input;
mod render;
mod session;

use std::io::IsTerminal;

use futures_lite::AsyncWriteExt;

pub use command::{Command, CommandError, HELP, parse_command, parse_typed};
pub use config::{
    Args, Config, ConfigError, DEFAULT_BELL, DEFAULT_HOST, DEFAULT_PORT, DEFAULT_RECONNECT,
    DEFAULT_TIMESTAMPS, DEFAULT_TLS, Switch, SwitchDefault, resolve,
};
pub use driver::run_session;
pub use input::{Input, InputEvent, PromptWriter};
pub use render::{Line, clock, escape, mentions, name_colour, paint, render, render_history};
pub use session::{
    CONNECT_TIMEOUT, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, LAST_WORD_GRACE, LEAVE_GRACE, Output,
    PROBE_TIMEOUT, Prompt, RECONNECT_FIRST, RECONNECT_MAX, REJOIN_TIMEOUT, Session,
};

/// Runs the client on the process's terminal or standard streams and returns the exit code.
///
/// When stdin and stdout are both terminals, commands are read with a line editor and
/// everything (errors included) is printed above the prompt. Otherwise commands are read from
/// stdin line by line, chat and notices go to stdout and errors to stderr.
///
/// Names are shown in colour when stdout is a terminal and `NO_COLOR` is unset or empty
/// (<https://no-color.org>).
pub fn run(config: &Config) -> u8 {
    let mut config = config.clone();
    config.colour = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let config = &config;
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        // If the terminal cannot be put in raw mode, fall back to reading lines.
        if let Ok((mut input, mut writer)) = Input::terminal() {
            let mut err = writer.clone();
            let code = smol::block_on(run_session(config, &mut input, &mut writer, &mut err));
            input.finish(&mut writer);
            return code;
        }
    }
    let mut input = Input::stdin_lines();
    let mut out = smol::Unblock::new(std::io::stdout());
    let mut err = smol::Unblock::new(std::io::stderr());
    smol::block_on(async {
        let code = run_session(config, &mut input, &mut out, &mut err).await;
        let _ = out.flush().await;
        let _ = err.flush().await;
        code
    })
}
