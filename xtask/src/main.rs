//! Project tasks, run as `cargo xtask <task>` (matklad's cargo-xtask pattern).
//!
//! One binary, one module per task, std only so that it stays cheap to compile.

mod bench;
mod ci;
mod demo;
mod deps;
mod fuzz;
mod hooks;
mod purity;
mod tidy;

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

const USAGE: &str = "\
usage: cargo xtask <task> [args]

tasks:
  ci              fmt check, clippy -D warnings, a check of the fuzz targets, all tests,
                  actionlint (if installed), and the load generator's smoke run
                  (cargo xtask bench --smoke)
  bench [--only NAME] [--no-redis] | --smoke | --gateways | --cluster
                  the benchmark matrix side by side with Redis, written to BENCHMARKS.md;
                  --gateways compares IRC and browser members with native ones, --cluster
                  one server with three sharing the room through Redis (both print their
                  table for BENCHMARKS.md's hand-written sections)
  demo            record a chat between three people (asciinema) and render it as an
                  animated SVG (svg-term-cli): docs/demo.cast and docs/demo.svg
  fuzz [SECONDS] [TARGET]
                  run the fuzz targets decode, irc_line and web, or the one named
                  (needs cargo-fuzz; default 60 s each)
  install-hooks   point git at .githooks (pre-commit runs the fmt check and clippy)
  help            show this text
";

fn main() -> ExitCode {
    let mut args = env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    let result = match task.as_deref() {
        None | Some("help" | "-h" | "--help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("ci") => ci::run(&rest),
        Some("bench") => bench::run(&rest),
        Some("demo") => demo::run(&rest),
        Some("fuzz") => fuzz::run(&rest),
        Some("install-hooks") => hooks::install(&rest),
        Some(other) => Err(format!(
            "unknown task '{other}'; run `cargo xtask help` for the list"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The repository root: the parent of this crate's directory.
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}

/// The `cargo` that started us (`$CARGO`), else the one on `PATH`, run from the repository root.
fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(args).current_dir(project_root());
    cmd
}

/// Runs one named step: prints `==> shown` on stderr, then fails with a one-line message
/// naming the step unless the command exits successfully.
fn step(name: &str, shown: &str, mut cmd: Command) -> Result<(), String> {
    eprintln!("==> {shown}");
    let status = cmd
        .status()
        .map_err(|err| format!("step '{name}' could not start `{shown}`: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "step '{name}' failed: `{shown}` exited with {status}"
        ))
    }
}
