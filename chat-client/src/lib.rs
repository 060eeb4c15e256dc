//! The chat terminal client: command-line configuration, the command parser, the rendering of
//! server messages, and the connection loop.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod command;
mod config;
mod render;

pub use command::{Command, CommandError, HELP, parse_command};
pub use config::{Args, Config, ConfigError, DEFAULT_HOST, DEFAULT_PORT, resolve};
pub use render::{Line, escape, render};
