//! Programs the tests need on `PATH`, and installing the missing ones with apt before they run.
//!
//! As root (CI, `.ci/run`) the missing packages are installed: `apt-get update` once, then one
//! `apt-get install -y` for all of them. Otherwise the task fails with the one command to run.

use std::{
    env,
    process::{Command, Stdio},
};

/// What the tests run, as (program looked up on `PATH`, Debian package that provides it).
/// A new need is one line here.
pub(crate) const NEEDED: &[(&str, &str)] = &[
    // The Redis-backed room's end-to-end tests start their own redis-server on a free port.
    ("redis-server", "redis-server"),
    // The IRC gateway's end-to-end tests drive ii, a file-driven IRC client, and irssi and
    // WeeChat, headless (irssi under script(1), from bsdutils; WeeChat through its FIFO).
    ("ii", "ii"),
    ("irssi", "irssi"),
    ("weechat-headless", "weechat-headless"),
    ("script", "bsdutils"),
    // The room in a browser: a real headless Chromium, driven through WebDriver.
    ("chromium", "chromium"),
    ("chromedriver", "chromium-driver"),
    // npm installs axe-core, which the browser tests inject into the page (see `ensure_axe`).
    ("npm", "npm"),
    // The metrics test validates the server's exposition with Prometheus's own checker.
    ("promtool", "prometheus"),
];

/// The accessibility engine the browser tests inject into the page, pinned.
pub(crate) const AXE_CORE: &str = "axe-core@4.10.3";

/// Where [`ensure_axe`] installs it, under the workspace; the tests read
/// `node_modules/axe-core/axe.min.js` there.
pub(crate) const AXE_DIR: &str = "target/npm";

/// Installs axe-core into [`AXE_DIR`] with npm, unless it is there.
pub(crate) fn ensure_axe() -> Result<(), String> {
    let dir = crate::project_root().join(AXE_DIR);
    if dir.join("node_modules/axe-core/axe.min.js").is_file() {
        eprintln!("==> deps: {AXE_CORE} present in {AXE_DIR}");
        return Ok(());
    }
    let mut npm = Command::new("npm");
    npm.args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .arg(AXE_CORE);
    crate::step(
        "axe-core",
        &format!("npm install --prefix {AXE_DIR} {AXE_CORE}"),
        npm,
    )
}

/// What to do about the programs the tests need.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Every program is on `PATH`.
    Nothing,
    /// Install these packages (each once, in the order of `NEEDED`).
    Install(Vec<String>),
    /// Not root: tell the person this one command.
    Ask(String),
}

/// Decides, without touching the system, what to do given which programs are present and
/// whether we are root.
pub(crate) fn plan(needed: &[(&str, &str)], present: impl Fn(&str) -> bool, root: bool) -> Plan {
    let mut packages: Vec<String> = Vec::new();
    for (program, package) in needed {
        if !present(program) && !packages.iter().any(|p| p == package) {
            packages.push((*package).to_owned());
        }
    }
    if packages.is_empty() {
        Plan::Nothing
    } else if root {
        Plan::Install(packages)
    } else {
        Plan::Ask(format!(
            "sudo apt-get update && sudo apt-get install -y {}",
            packages.join(" ")
        ))
    }
}

/// Makes sure every program in `NEEDED` is on `PATH`, installing the missing ones when root.
pub(crate) fn ensure() -> Result<(), String> {
    ensure_for(NEEDED, "the tests need")
}

/// Makes sure every program in `needed` is on `PATH` (`what` names who needs them, as in "the
/// demo needs"), installing
/// the missing ones when root.
pub(crate) fn ensure_for(needed: &[(&str, &str)], what: &str) -> Result<(), String> {
    let missing = || -> Vec<&str> {
        needed
            .iter()
            .map(|(program, _)| *program)
            .filter(|program| !on_path(program))
            .collect()
    };
    let packages = match plan(needed, on_path, is_root()) {
        Plan::Nothing => {
            eprintln!("==> deps: all present ({what} them)");
            return Ok(());
        }
        Plan::Ask(command) => {
            return Err(format!(
                "{what} {}; install with: {command}",
                missing().join(", ")
            ));
        }
        Plan::Install(packages) => packages,
    };
    if !on_path("apt-get") {
        return Err(format!(
            "{what} {} and apt-get is not on PATH; install the packages {} by hand",
            missing().join(", "),
            packages.join(" ")
        ));
    }
    apt(&["update"])?;
    let mut install = vec!["install", "-y"];
    install.extend(packages.iter().map(String::as_str));
    apt(&install)?;
    let still = missing();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "installed {} but {} is still not on PATH",
            packages.join(" "),
            still.join(", ")
        ))
    }
}

/// Runs `apt-get ARGS` non-interactively (no stdin, no questions), failing with one line.
fn apt(args: &[&str]) -> Result<(), String> {
    let shown = format!("apt-get {}", args.join(" "));
    eprintln!("==> {shown}");
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .map_err(|err| format!("could not start `{shown}`: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` exited with {status}"))
    }
}

/// Whether we run as root (effective uid 0), asked of `id -u` so that xtask stays std only.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.trim_ascii() == b"0")
}

/// Whether an executable named `program` is in a directory on `PATH`.
pub(crate) fn on_path(program: &str) -> bool {
    env::var_os("PATH").is_some_and(|paths| {
        env::split_paths(&paths)
            .any(|dir| dir.join(program).is_file() || dir.join(format!("{program}.exe")).is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEEDS: &[(&str, &str)] = &[
        ("redis-server", "redis-server"),
        ("chromium", "chromium"),
        ("chromedriver", "chromium-driver"),
        ("ii", "ii"),
        ("redis-cli", "redis-server"),
    ];

    #[test]
    fn nothing_to_do_when_every_program_is_present() {
        assert_eq!(plan(NEEDS, |_| true, true), Plan::Nothing);
        assert_eq!(plan(NEEDS, |_| true, false), Plan::Nothing);
    }

    #[test]
    fn root_installs_only_the_missing_packages_each_once_in_order() {
        let present = |program: &str| program == "chromium" || program == "ii";
        assert_eq!(
            plan(NEEDS, present, true),
            Plan::Install(vec!["redis-server".into(), "chromium-driver".into()])
        );
    }

    #[test]
    fn without_root_the_person_is_told_the_one_command_to_run() {
        let present = |program: &str| program != "redis-server";
        assert_eq!(
            plan(NEEDS, present, false),
            Plan::Ask("sudo apt-get update && sudo apt-get install -y redis-server".into())
        );
    }

    #[test]
    fn the_real_list_names_each_program_once() {
        for (i, (program, package)) in NEEDED.iter().enumerate() {
            assert!(!program.is_empty() && !package.is_empty());
            assert!(
                NEEDED[..i].iter().all(|(p, _)| p != program),
                "{program} twice"
            );
        }
    }

    /// `.ci/run` installs the same programs from the same packages before it hands over to
    /// `cargo xtask ci`: a need added here and not there would fail CI on a new machine.
    #[test]
    fn ci_run_installs_every_needed_package() {
        let script =
            std::fs::read_to_string(crate::project_root().join(".ci/run")).expect("read .ci/run");
        let list = |name: &str| -> Vec<String> {
            let line = script
                .lines()
                .find(|l| l.starts_with(&format!("{name}=(")))
                .unwrap_or_else(|| panic!(".ci/run has no {name}=(...) line"));
            line[name.len() + 2..line.len() - 1]
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        let (programs, packages) = (list("programs"), list("packages"));
        assert_eq!(
            programs.len(),
            packages.len(),
            "programs and packages pair up"
        );
        let mut pairs: Vec<(String, String)> = programs.into_iter().zip(packages).collect();
        let mut needed: Vec<(String, String)> = NEEDED
            .iter()
            .map(|(program, package)| (program.to_string(), package.to_string()))
            .collect();
        pairs.sort();
        needed.sort();
        assert_eq!(pairs, needed, ".ci/run's lists and NEEDED differ");
    }
}
