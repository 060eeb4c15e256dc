//! `cargo xtask install-hooks`: use the repository's `.githooks` (pre-commit: fmt check, clippy).

use std::process::Command;

use crate::project_root;

pub(crate) fn install(args: &[String]) -> Result<(), String> {
    if !args.is_empty() {
        return Err(format!(
            "install-hooks takes no arguments, got '{}'",
            args.join(" ")
        ));
    }
    let root = project_root();
    let status = Command::new("git")
        .args(["config", "core.hooksPath", ".githooks"])
        .current_dir(&root)
        .status()
        .map_err(|err| format!("could not run git: {err}"))?;
    if !status.success() {
        return Err(format!(
            "`git config core.hooksPath .githooks` exited with {status}"
        ));
    }
    println!(
        "ran `git config core.hooksPath .githooks` in {}: the pre-commit hook now runs \
         `cargo fmt --all -- --check` and clippy (skip once with `git commit --no-verify`)",
        root.display()
    );
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::{
        fs,
        path::PathBuf,
        process::{self, Command, Output},
        time::{SystemTime, UNIX_EPOCH},
    };

    use crate::project_root;

    /// A standalone package: its own `[workspace]` table keeps it out of any outer workspace.
    const MANIFEST: &str = "\
[package]
name = \"tiny\"
version = \"0.1.0\"
edition = \"2021\"
publish = false

[workspace]
";
    const UNFORMATTED: &str = "fn main(){println!(\"hello\");}\n";
    const FORMATTED: &str = "fn main() {\n    println!(\"hello\");\n}\n";

    /// A scratch git repository under the system temp directory, removed on drop.
    #[derive(Debug)]
    struct ScratchRepo(PathBuf);

    impl ScratchRepo {
        fn new() -> Self {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock after 1970")
                .as_nanos();
            let dir =
                std::env::temp_dir().join(format!("xtask-pre-commit-{}-{nanos}", process::id()));
            fs::create_dir_all(dir.join("src")).expect("create scratch repository");
            ScratchRepo(dir)
        }

        /// Runs git in the scratch repository, isolated from any repository we run inside of.
        fn git(&self, args: &[&str]) -> Output {
            Command::new("git")
                .args(args)
                .current_dir(&self.0)
                .env_remove("GIT_DIR")
                .env_remove("GIT_WORK_TREE")
                .env_remove("GIT_INDEX_FILE")
                .env("GIT_AUTHOR_NAME", "xtask test")
                .env("GIT_AUTHOR_EMAIL", "xtask@example.invalid")
                .env("GIT_COMMITTER_NAME", "xtask test")
                .env("GIT_COMMITTER_EMAIL", "xtask@example.invalid")
                .env("CARGO_TARGET_DIR", self.0.join("target"))
                .output()
                .expect("git runs")
        }

        fn git_ok(&self, args: &[&str]) -> Output {
            let out = self.git(args);
            assert!(out.status.success(), "git {args:?} failed:\n{}", text(&out));
            out
        }
    }

    impl Drop for ScratchRepo {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn text(out: &Output) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn has_head(repo: &ScratchRepo) -> bool {
        repo.git(&["rev-parse", "--verify", "--quiet", "HEAD"])
            .status
            .success()
    }

    #[test]
    fn pre_commit_blocks_unformatted_code_and_lets_formatted_code_through() {
        let hooks = project_root().join(".githooks");
        assert!(
            hooks.join("pre-commit").is_file(),
            "no .githooks/pre-commit"
        );

        let repo = ScratchRepo::new();
        fs::write(repo.0.join("Cargo.toml"), MANIFEST).unwrap();
        fs::write(repo.0.join(".gitignore"), "/target\n/Cargo.lock\n").unwrap();
        fs::write(repo.0.join("src/main.rs"), UNFORMATTED).unwrap();
        repo.git_ok(&["init", "--quiet"]);
        repo.git_ok(&["config", "core.hooksPath", hooks.to_str().unwrap()]);
        repo.git_ok(&["add", "Cargo.toml", ".gitignore", "src/main.rs"]);

        let commit = ["commit", "--quiet", "--no-gpg-sign", "-m", "tiny"];
        let blocked = repo.git(&commit);
        assert!(
            !blocked.status.success(),
            "the hook let unformatted code through:\n{}",
            text(&blocked)
        );
        assert!(
            text(&blocked).contains("cargo fmt --all"),
            "the hook gave no hint:\n{}",
            text(&blocked)
        );
        assert!(!has_head(&repo), "a commit was created despite the hook");

        fs::write(repo.0.join("src/main.rs"), FORMATTED).unwrap();
        repo.git_ok(&["add", "src/main.rs"]);
        let allowed = repo.git(&commit);
        assert!(
            allowed.status.success(),
            "the hook blocked formatted code:\n{}",
            text(&allowed)
        );
        let count = repo.git_ok(&["rev-list", "--count", "HEAD"]);
        assert_eq!(String::from_utf8_lossy(&count.stdout).trim(), "1");
    }
}
