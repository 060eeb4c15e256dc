//! `cargo xtask bench [args]`: the load generator in release mode, arguments passed through.

use std::process::Command;

use crate::{cargo, step};

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut shown = String::from("cargo run --release -p tests --bin loadgen --");
    for arg in args {
        shown.push(' ');
        shown.push_str(arg);
    }
    step("bench", &shown, command(args))
}

/// `cargo run --release -p tests --bin loadgen -- <args>` from the repository root.
pub(crate) fn command(args: &[String]) -> Command {
    let mut cmd = cargo(&["run", "--release", "-p", "tests", "--bin", "loadgen", "--"]);
    cmd.args(args);
    cmd
}
