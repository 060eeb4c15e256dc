//! A repository check, run as a test: chat-core stays sans-IO.
//!
//! Its code (tests aside) names no clock, socket, thread, process or randomness, and its only
//! dependencies are chat-proto and pure libraries.

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::project_root;

    /// What a sans-IO state machine must not reach for.
    const FORBIDDEN: &[&str] = &[
        "Instant::now",
        "SystemTime",
        "std::net",
        "std::thread",
        "std::process",
        "std::fs",
        "tokio",
        "smol",
        "async_net",
        "rand::",
        "println!",
        "eprintln!",
        // Logging macros; the `log` crate itself is kept out by the dependency check below
        // (chat-core's own `log` module is the room's ordered log, not logging).
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

    fn check_dir(dir: &Path, problems: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read chat-core/src") {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if name != "tests" {
                    check_dir(&path, problems);
                }
                continue;
            }
            // Tests hold a fake clock that starts from a real instant; they are not the core.
            if !name.ends_with(".rs") || name == "tests.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            for (i, line) in code_lines(&text) {
                for word in FORBIDDEN {
                    if line.contains(word) {
                        problems.push(format!("{}:{}: `{word}`", path.display(), i + 1));
                    }
                }
            }
        }
    }

    #[test]
    fn chat_core_performs_no_io() {
        let mut problems = Vec::new();
        check_dir(&project_root().join("chat-core/src"), &mut problems);
        assert!(
            problems.is_empty(),
            "chat-core must stay sans-IO:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn chat_core_depends_on_pure_libraries_only() {
        let manifest = std::fs::read_to_string(project_root().join("chat-core/Cargo.toml"))
            .expect("read chat-core/Cargo.toml");
        let deps = manifest
            .split("[dependencies]")
            .nth(1)
            .and_then(|rest| rest.split("\n[").next())
            .expect("a [dependencies] table");
        let names: Vec<&str> = deps
            .lines()
            .filter_map(|l| l.split(['.', '=', ' ']).next())
            .filter(|n| !n.is_empty() && !n.starts_with('#'))
            .collect();
        assert_eq!(
            names,
            [
                "caseless",
                "chat-proto",
                "unicode-normalization",
                "unicode-security"
            ]
        );
    }
}
