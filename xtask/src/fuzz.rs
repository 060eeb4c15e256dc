//! `cargo xtask fuzz [SECONDS]`: runs each fuzz target (the frame decoder's, then the IRC
//! gateway's line handling) for a while (default 60 s each).
//!
//! The fuzz crate lives in `fuzz/`, outside the workspace, so CI never needs cargo-fuzz. On
//! stable, `-s none` (no sanitizer) is enough; if the stable build fails, the run is retried
//! with `cargo +nightly fuzz`.

use std::process::Command;

use crate::{project_root, step};

const DEFAULT_SECONDS: u64 = 60;

/// The targets in `fuzz/fuzz_targets/`, run in turn.
const TARGETS: [&str; 2] = ["decode", "irc_line"];

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let seconds = match args {
        [] => DEFAULT_SECONDS,
        [secs] => secs
            .parse::<u64>()
            .ok()
            .filter(|&s| s > 0)
            .ok_or_else(|| format!("fuzz takes a number of seconds, got '{secs}'"))?,
        _ => {
            return Err(format!(
                "fuzz takes at most one argument (seconds), got '{}'",
                args.join(" ")
            ));
        }
    };
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !installed {
        return Err("cargo-fuzz is not installed; run `cargo install cargo-fuzz`".into());
    }
    // Build first: a failed build on stable means nightly is needed; a failed run is a finding.
    let mut toolchain = None;
    if step(
        "fuzz build",
        "cargo fuzz build -s none",
        fuzz(None, "build", None, &[]),
    )
    .is_err()
    {
        eprintln!("==> fuzz: the stable build failed; trying nightly");
        toolchain = Some("+nightly");
        step(
            "fuzz build (nightly)",
            "cargo +nightly fuzz build -s none",
            fuzz(toolchain, "build", None, &[]),
        )?;
    }
    let max_time = format!("-max_total_time={seconds}");
    for target in TARGETS {
        let shown = format!(
            "cargo {}fuzz run -s none {target} -- {max_time} (crashes go to fuzz/artifacts/{target}/)",
            toolchain.map(|t| format!("{t} ")).unwrap_or_default()
        );
        step(
            "fuzz",
            &shown,
            fuzz(toolchain, "run", Some(target), &["--", &max_time]),
        )?;
    }
    Ok(())
}

/// `cargo [+toolchain] fuzz <task> -s none [target] [rest]` in `fuzz/` (every target when none
/// is named), through the rustup proxy on `PATH` (not `$CARGO`) so that a toolchain can be chosen.
fn fuzz(toolchain: Option<&str>, task: &str, target: Option<&str>, rest: &[&str]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args(toolchain)
        .args(["fuzz", task, "-s", "none"])
        .args(target)
        .args(rest)
        .current_dir(project_root().join("fuzz"))
        .env_remove("RUSTUP_TOOLCHAIN");
    cmd
}
