//! `cargo xtask ci`: every check CI runs, in order, stopping at the first failure.

use std::env;
use std::process::Command;

use crate::{bench, cargo, deps, deps::on_path, project_root, step};

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if !args.is_empty() {
        return Err(format!("ci takes no arguments, got '{}'", args.join(" ")));
    }
    let root = project_root();

    step(
        "fmt",
        "cargo fmt --all -- --check",
        cargo(&["fmt", "--all", "--", "--check"]),
    )?;
    step(
        "clippy",
        "cargo clippy --workspace --all-targets -- -D warnings",
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step(
        "fuzz check",
        "cargo check --manifest-path fuzz/Cargo.toml --bins --no-default-features",
        fuzz_check(),
    )?;
    // The end-to-end tests start real programs (redis-server); install what is missing.
    deps::ensure()?;
    deps::ensure_axe()?;
    step(
        "test",
        "cargo test --workspace",
        cargo(&["test", "--workspace"]),
    )?;

    if on_path("actionlint") {
        // With no arguments actionlint checks every workflow in .github/workflows.
        let mut actionlint = Command::new("actionlint");
        actionlint.current_dir(&root);
        step("actionlint", "actionlint (.github/workflows)", actionlint)?;
    } else {
        eprintln!("==> actionlint: not on PATH, skipped");
    }

    // A seconds-long load run: a real server, 55 clients, no message lost, duplicated or reordered.
    step(
        "bench smoke",
        "cargo xtask bench --smoke",
        bench::command(&["--smoke".to_owned()]),
    )?;

    eprintln!("==> ci: all steps passed");
    Ok(())
}

/// Checks that the fuzz targets build, so that they cannot rot: on stable, without cargo-fuzz
/// and without libFuzzer's C++ (the `link_libfuzzer` feature, which only cargo-fuzz needs).
/// The fuzz crate is a workspace of its own; it shares the main target directory, where the
/// libraries it depends on were just checked, rather than build its own from nothing.
fn fuzz_check() -> Command {
    let mut cmd = cargo(&[
        "check",
        "--manifest-path",
        "fuzz/Cargo.toml",
        "--bins",
        "--no-default-features",
    ]);
    if env::var_os("CARGO_TARGET_DIR").is_none() {
        cmd.env("CARGO_TARGET_DIR", project_root().join("target"));
    }
    cmd
}
