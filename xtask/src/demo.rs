//! `cargo xtask demo`: records a chat between three people with asciinema and renders it as an
//! animated SVG with svg-term-cli, written to `docs/demo.cast` and `docs/demo.svg` (shown at the
//! top of README). Rerunning it regenerates both, so the demo never drifts from the code.
//!
//! What is recorded is `xtask demo --play`: it starts the real server and three scripted clients,
//! types their commands a key at a time, and shows each person's output under their name as it
//! arrives. Every line it shows is one it waited for, so a client that says something else fails
//! the recording instead of drifting from it.
//!
//! The tools: `asciinema` from Debian (installed with apt when root, like `ci`'s, but from this
//! task's own list) and `svg-term-cli` from npm, installed into `target/demo-tools` when it is
//! not on `PATH`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

use crate::{cargo, deps, project_root, step};

/// What the recording needs, as (program on `PATH`, Debian package): for this task only, not for
/// `cargo xtask ci`.
const NEEDED: &[(&str, &str)] = &[("asciinema", "asciinema")];

/// The terminal the demo is recorded in and rendered for.
const COLS: u16 = 86;
const ROWS: u16 = 30;

/// How long to wait for a line a person should see.
const WAIT: Duration = Duration::from_secs(10);

/// The pause between two keys typed, and between two steps.
const KEY: Duration = Duration::from_millis(45);
const BEAT: Duration = Duration::from_millis(900);

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    match args {
        [] => record(),
        [flag, bin_dir] if flag == "--play" => play(Path::new(bin_dir)),
        _ => Err(format!("demo takes no arguments, got '{}'", args.join(" "))),
    }
}

/// Builds, records and renders.
fn record() -> Result<(), String> {
    let root = project_root();
    step(
        "build",
        "cargo build -p chat-server -p chat-client",
        cargo(&["build", "-p", "chat-server", "-p", "chat-client"]),
    )?;
    deps::ensure_for(NEEDED, "the demo needs")?;
    let svg_term = svg_term(&root)?;
    let docs = root.join("docs");
    std::fs::create_dir_all(&docs).map_err(|e| format!("create {}: {e}", docs.display()))?;
    let cast = docs.join("demo.cast");
    let svg = docs.join("demo.svg");
    let me = std::env::current_exe().map_err(|e| format!("find the xtask binary: {e}"))?;
    let play = format!(
        "{} demo --play {}",
        shell_quote(&me),
        shell_quote(&bin_dir())
    );
    let mut asciinema = Command::new("asciinema");
    asciinema
        .args(["rec", "--overwrite", "--quiet", "--idle-time-limit", "2"])
        .args(["--cols", &COLS.to_string(), "--rows", &ROWS.to_string()])
        .args(["--title", "chat: three people, a refusal, who and a leave"])
        .arg("--command")
        .arg(&play)
        .arg(&cast)
        .env("TERM", "xterm-256color")
        .current_dir(&root);
    step("record", "asciinema rec docs/demo.cast", asciinema)?;
    let mut render = Command::new(svg_term);
    render
        .arg("--in")
        .arg(&cast)
        .arg("--out")
        .arg(&svg)
        .args(["--window", "--no-cursor"])
        .args(["--width", &COLS.to_string(), "--height", &ROWS.to_string()])
        .current_dir(&root);
    step(
        "render",
        "svg-term --in docs/demo.cast --out docs/demo.svg",
        render,
    )?;
    eprintln!("==> demo: wrote docs/demo.cast and docs/demo.svg");
    Ok(())
}

/// `svg-term` from `PATH`, else from `target/demo-tools`, installed there with npm if missing.
fn svg_term(root: &Path) -> Result<PathBuf, String> {
    if deps::on_path("svg-term") {
        return Ok("svg-term".into());
    }
    let tools = root.join("target").join("demo-tools");
    let local = tools.join("node_modules").join(".bin").join("svg-term");
    if !local.is_file() {
        if !deps::on_path("npm") {
            return Err(
                "the demo needs svg-term (npm package svg-term-cli) and npm is not on PATH"
                    .to_owned(),
            );
        }
        let mut npm = Command::new("npm");
        npm.args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&tools)
            .arg("svg-term-cli");
        step(
            "svg-term",
            "npm install --prefix target/demo-tools svg-term-cli",
            npm,
        )?;
    }
    Ok(local)
}

/// Where cargo put the debug binaries.
fn bin_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| project_root().join("target"), PathBuf::from)
        .join("debug")
}

/// `path` in single quotes for `sh -c`.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// One person's client: a scripted `chat-client`, its output lines on one channel.
struct Person {
    name: &'static str,
    colour: u8,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Person {
    /// Shows `$ chat-client --name NAME` typed, and starts it.
    fn join(bin: &Path, port: u16, name: &'static str, colour: u8) -> Result<Self, String> {
        let port_flag = if port == 7878 {
            String::new()
        } else {
            format!("--port {port} ")
        };
        shell(&format!("chat-client {port_flag}--name {name}"));
        let mut child = Command::new(bin.join("chat-client"))
            .args(["--port", &port.to_string(), "--name", name])
            .env_remove("CHAT_HOST")
            .env_remove("CHAT_PORT")
            .env_remove("CHAT_NAME")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start chat-client: {e}"))?;
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        Ok(Person {
            name,
            colour,
            stdin: child.stdin.take(),
            child,
            lines,
        })
    }

    /// The label in front of this person's lines.
    fn label(&self) -> String {
        format!(
            "\x1b[1;{}m{:>6}\x1b[0m \x1b[2m│\x1b[0m ",
            self.colour, self.name
        )
    }

    /// Types `command` at this person's prompt, a key at a time, and sends it.
    fn types(&mut self, command: &str) -> Result<(), String> {
        thread::sleep(BEAT);
        print!("{}\x1b[2m>\x1b[0m ", self.label());
        type_out(command);
        println!();
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{command}").map_err(|e| format!("{}: write: {e}", self.name))
    }

    /// Waits for the next line this person sees, which must be `expected` (or, with a trailing
    /// `*`, start with it), and shows it.
    fn sees(&self, expected: &str) -> Result<(), String> {
        let line = self.lines.recv_timeout(WAIT).map_err(|_| {
            format!(
                "{} never saw {expected:?} within {WAIT:?}; the demo script and the client disagree",
                self.name
            )
        })?;
        let matches = match expected.strip_suffix('*') {
            Some(prefix) => line.starts_with(prefix),
            None => line == expected,
        };
        if !matches {
            return Err(format!(
                "{} saw {line:?} where the demo expects {expected:?}",
                self.name
            ));
        }
        thread::sleep(Duration::from_millis(150));
        println!("{}{line}", self.label());
        Ok(())
    }

    /// Ends the script (Ctrl-D) and waits for the exit code.
    fn ends(&mut self) -> Result<Option<i32>, String> {
        self.stdin = None;
        self.exit()
    }

    fn exit(&mut self) -> Result<Option<i32>, String> {
        let status = self
            .child
            .wait()
            .map_err(|e| format!("{}: wait: {e}", self.name))?;
        Ok(status.code())
    }
}

impl Drop for Person {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prints `$ command`, typed a key at a time.
fn shell(command: &str) {
    thread::sleep(BEAT);
    print!("\x1b[1;32m$\x1b[0m ");
    type_out(command);
    println!();
}

fn type_out(text: &str) {
    for c in text.chars() {
        print!("{c}");
        let _ = std::io::stdout().flush();
        thread::sleep(KEY);
    }
}

/// Starts `chat-server` on 7878 if it is free (so the recording shows the usual command), else
/// on a free port; returns it and its port.
fn start_server(bin: &Path) -> Result<(Child, u16), String> {
    let port = if std::net::TcpListener::bind("127.0.0.1:7878").is_ok() {
        7878
    } else {
        0
    };
    let shown = if port == 7878 {
        "chat-server".to_owned()
    } else {
        "chat-server --port 0".to_owned()
    };
    shell(&shown);
    let mut server = Command::new(bin.join("chat-server"))
        .args(["--port", &port.to_string()])
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start chat-server: {e}"))?;
    let mut stdout = BufReader::new(server.stdout.take().expect("piped"));
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .map_err(|e| format!("chat-server: {e}"))?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("chat-server said {line:?}, not `listening on ADDR`"))?;
    println!("{}", line.trim());
    let port = addr
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .ok_or_else(|| format!("chat-server listens on {addr:?}"))?;
    thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    Ok((server, port))
}

/// The recorded session.
fn play(bin: &Path) -> Result<(), String> {
    println!(
        "\x1b[1mchat\x1b[0m: one room, a server and three people, each on their own terminal\n"
    );
    let (mut server, port) = start_server(bin)?;
    let result = conversation(bin, port);
    let _ = server.kill();
    let _ = server.wait();
    thread::sleep(BEAT);
    result
}

fn conversation(bin: &Path, port: u16) -> Result<(), String> {
    let mut alice = Person::join(bin, port, "alice", 35)?;
    alice.sees("* joined as alice; online: alice")?;
    alice.types("send hello, anyone here?")?;

    let mut bob = Person::join(bin, port, "bob", 36)?;
    bob.sees("* joined as bob; online: alice, bob")?;
    bob.sees("[earlier] alice: hello, anyone here?")?;
    alice.sees("* bob joined")?;
    bob.types("send hi alice!")?;
    alice.sees("bob: hi alice!")?;

    // Someone tries to pass for alice with a Cyrillic 'а': refused, one line, exit 1.
    let mut fake = Person::join(bin, port, "аlice", 31)?;
    fake.sees("error: name mixes look-alike letters from different scripts; choose another")?;
    fake.exit()?;

    let mut carol = Person::join(bin, port, "carol", 33)?;
    carol.sees("* joined as carol; online: alice, bob, carol")?;
    carol.sees("[earlier] alice: hello, anyone here?")?;
    carol.sees("[earlier] bob: hi alice!")?;
    alice.sees("* carol joined")?;
    bob.sees("* carol joined")?;
    carol.types("who")?;
    carol.sees("* online: alice, bob, carol")?;
    carol.types("send hi both, I read what I missed")?;
    alice.sees("carol: hi both, I read what I missed")?;
    bob.sees("carol: hi both, I read what I missed")?;

    bob.types("leave")?;
    alice.sees("* bob left (left)")?;
    carol.sees("* bob left (left)")?;
    if bob.exit()? != Some(0) {
        return Err("bob did not exit 0 after leave".to_owned());
    }
    alice.types("send bye carol")?;
    carol.sees("alice: bye carol")?;
    alice.ends()?;
    carol.sees("* alice left (left)")?;
    carol.ends()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_for_the_shell_asciinema_runs() {
        assert_eq!(shell_quote(Path::new("/a b/x")), "'/a b/x'");
        assert_eq!(shell_quote(Path::new("/it's")), r"'/it'\''s'");
    }

    #[test]
    fn the_demo_installs_only_its_own_tools_and_ci_does_not() {
        assert!(NEEDED.contains(&("asciinema", "asciinema")));
        assert!(
            !deps::NEEDED
                .iter()
                .any(|(program, _)| *program == "asciinema")
        );
    }
}
