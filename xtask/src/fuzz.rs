//! `cargo xtask fuzz [SECONDS] [TARGET]`: runs the fuzz targets for a while (default 60 s each):
//! `decode` (the frame decoder), `irc_line` (the IRC gateway's line reader, parser, session and
//! codec) and `web` (the browser's HTTP, WebSocket and JSON entry), or the one named.
//!
//! The fuzz crate lives in `fuzz/`, outside the workspace, so CI never needs cargo-fuzz. On
//! stable, `-s none` (no sanitizer) is enough; if the stable build fails, the run is retried
//! with `cargo +nightly fuzz`.

use std::process::Command;

use crate::{project_root, step};

const DEFAULT_SECONDS: u64 = 60;

/// The fuzz targets in `fuzz/fuzz_targets/`.
const TARGETS: &[&str] = &["decode", "irc_line", "web"];

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let parse = |secs: &String| {
        secs.parse::<u64>()
            .ok()
            .filter(|&s| s > 0)
            .ok_or_else(|| format!("fuzz takes a number of seconds, got '{secs}'"))
    };
    let (seconds, targets): (u64, Vec<&str>) = match args {
        [] => (DEFAULT_SECONDS, TARGETS.to_vec()),
        [secs] => (parse(secs)?, TARGETS.to_vec()),
        [secs, target] if TARGETS.contains(&target.as_str()) => {
            (parse(secs)?, vec![target.as_str()])
        }
        _ => {
            return Err(format!(
                "fuzz takes [SECONDS] [TARGET] (targets: {}), got '{}'",
                TARGETS.join(", "),
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
    for target in targets {
        run_target(target, seconds)?;
    }
    Ok(())
}

fn run_target(target: &str, seconds: u64) -> Result<(), String> {
    // Build first: a failed build on stable means nightly is needed; a failed run is a finding.
    let mut toolchain = None;
    if step(
        "fuzz build",
        &format!("cargo fuzz build -s none {target}"),
        fuzz(None, "build", target, &[]),
    )
    .is_err()
    {
        eprintln!("==> fuzz: the stable build failed; trying nightly");
        toolchain = Some("+nightly");
        step(
            "fuzz build (nightly)",
            &format!("cargo +nightly fuzz build -s none {target}"),
            fuzz(toolchain, "build", target, &[]),
        )?;
    }
    let max_time = format!("-max_total_time={seconds}");
    let shown = format!(
        "cargo {}fuzz run -s none {target} -- {max_time} (crashes go to fuzz/artifacts/{target}/)",
        toolchain.map(|t| format!("{t} ")).unwrap_or_default()
    );
    step(
        "fuzz",
        &shown,
        fuzz(toolchain, "run", target, &["--", &max_time]),
    )
}

/// `cargo [+toolchain] fuzz <task> -s none <target> [rest]` in `fuzz/`, through the rustup proxy
/// on `PATH` (not `$CARGO`) so that a toolchain can be chosen.
fn fuzz(toolchain: Option<&str>, task: &str, target: &str, rest: &[&str]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args(toolchain)
        .args(["fuzz", task, "-s", "none", target])
        .args(rest)
        .current_dir(project_root().join("fuzz"))
        .env_remove("RUSTUP_TOOLCHAIN");
    cmd
}
