//! Repository checks, run as tests: the sans-IO code stays sans-IO.
//!
//! chat-core, chat-gateway, chat-proto and the client's session (with the command parser and
//! the rendering it decides with) name no clock, socket, thread, process, runtime or randomness,
//! tests aside. chat-core depends on chat-proto and pure libraries only; chat-gateway, directly
//! or not, on no async runtime.

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::{cargo, project_root};

    /// What a sans-IO state machine must not reach for.
    const FORBIDDEN: &[&str] = &[
        "Instant::now",
        "SystemTime",
        "std::net",
        "std::thread",
        "thread::spawn",
        "std::process",
        "std::fs",
        "tokio",
        "smol",
        "mio::",
        "async_channel",
        "async_executor",
        "async_io",
        "async_lock",
        "async_net",
        "async_std",
        "async_task",
        "futures",
        "rand::",
        "println!",
        "eprintln!",
        // Logging macros; the `log` crate itself is kept out of chat-core by the dependency
        // check below (chat-core's own `log` module is the room's ordered log, not logging).
        "log::info!",
        "log::warn!",
        "log::error!",
        "log::debug!",
        "log::trace!",
    ];

    /// Code lines of a Rust file: doc comments and comments left out.
    fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim_start().starts_with("//"))
    }

    /// Checks a source file, or every source file under a folder; tests are left out: they
    /// hold a fake clock that starts from a real instant, and are not the state machine.
    fn check(path: &Path, problems: &mut Vec<String>) {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name == "tests" {
                return;
            }
            let entries =
                std::fs::read_dir(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            for entry in entries {
                check(&entry.expect("dir entry").path(), problems);
            }
            return;
        }
        if !name.ends_with(".rs") || name == "tests.rs" {
            return;
        }
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        for (i, line) in code_lines(&text) {
            for word in FORBIDDEN {
                if line.contains(word) {
                    problems.push(format!("{}:{}: `{word}`", path.display(), i + 1));
                }
            }
        }
    }

    /// Asserts that the files and folders at `paths` (from the repository root) do no I/O.
    fn assert_sans_io(what: &str, paths: &[&str]) {
        let mut problems = Vec::new();
        for path in paths {
            let path = project_root().join(path);
            assert!(
                path.exists(),
                "{} is gone: update this check",
                path.display()
            );
            check(&path, &mut problems);
        }
        assert!(
            problems.is_empty(),
            "{what} must stay sans-IO:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn chat_core_performs_no_io() {
        assert_sans_io("chat-core", &["chat-core/src"]);
    }

    #[test]
    fn chat_gateway_performs_no_io() {
        assert_sans_io("chat-gateway", &["chat-gateway/src"]);
    }

    #[test]
    fn chat_proto_performs_no_io() {
        assert_sans_io("chat-proto", &["chat-proto/src"]);
    }

    /// The driver (`driver.rs`), the terminal (`input.rs`) and the configuration (`config.rs`,
    /// which reads the environment) are the client's I/O; the rest decides.
    #[test]
    fn the_client_session_performs_no_io() {
        assert_sans_io(
            "the client's session",
            &[
                "chat-client/src/session.rs",
                "chat-client/src/command.rs",
                "chat-client/src/render.rs",
            ],
        );
    }

    /// The names in a manifest's `[dependencies]` table.
    fn dependencies(manifest: &str) -> Vec<String> {
        let text = std::fs::read_to_string(project_root().join(manifest))
            .unwrap_or_else(|e| panic!("read {manifest}: {e}"));
        let deps = text
            .split("[dependencies]")
            .nth(1)
            .and_then(|rest| rest.split("\n[").next())
            .expect("a [dependencies] table");
        deps.lines()
            .filter_map(|l| l.split(['.', '=', ' ']).next())
            .filter(|n| !n.is_empty() && !n.starts_with('#'))
            .map(str::to_owned)
            .collect()
    }

    /// An async runtime, or a piece of one (smol's and tokio's families, the futures crates).
    fn is_runtime(name: &str) -> bool {
        ["async-", "async_", "tokio", "futures"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            || ["smol", "mio", "blocking", "polling"].contains(&name)
    }

    #[test]
    fn chat_core_depends_on_pure_libraries_only() {
        assert_eq!(
            dependencies("chat-core/Cargo.toml"),
            [
                "caseless",
                "chat-proto",
                "unicode-normalization",
                "unicode-security"
            ]
        );
    }

    #[test]
    fn chat_gateway_names_no_runtime_among_its_dependencies() {
        let runtimes: Vec<String> = dependencies("chat-gateway/Cargo.toml")
            .into_iter()
            .filter(|name| is_runtime(name))
            .collect();
        assert_eq!(runtimes, Vec::<String>::new(), "chat-gateway/Cargo.toml");
    }

    /// What the crates it depends on bring in counts too: `cargo tree`, normal edges only (the
    /// tests may use anything), every feature on.
    #[test]
    fn chat_gateway_brings_in_no_runtime() {
        let out = cargo(&[
            "tree",
            "--quiet",
            "--package",
            "chat-gateway",
            "--all-features",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("run cargo tree");
        assert!(
            out.status.success(),
            "cargo tree failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tree = String::from_utf8(out.stdout).expect("cargo tree prints UTF-8");
        let crates: Vec<&str> = tree.lines().filter_map(|l| l.split(' ').next()).collect();
        assert!(crates.contains(&"chat-core"), "not the whole tree: {tree}");
        let mut runtimes: Vec<&str> = crates.into_iter().filter(|n| is_runtime(n)).collect();
        runtimes.dedup();
        assert_eq!(
            runtimes,
            Vec::<&str>::new(),
            "in `cargo tree -p chat-gateway`"
        );
    }
}
