//! The chat-client binary against a real server: scripted clients over pipes, a client in a
//! pseudo-terminal, configuration through flags and the environment, and the ways a session
//! ends. Every wait is bounded, and every child is killed when its handle is dropped.

use chat_proto::ChatKind;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chat_proto::{ClientMsg, CloseReason, FrameReader, Limits, ServerMsg, encode_to_vec};
use expectrl::process::unix::WaitStatus;
use expectrl::session::OsSession;
use expectrl::{Expect, Regex, Session};
use tests::proxy::Proxy;
use tests::{RawClient, ServerProcess, binary, example, start_server, test_config, wait_until};

/// How long to wait for one line of output, or for the client to exit.
const WAIT: Duration = Duration::from_secs(10);

/// The client's environment variables, removed from every child so the test runner's own
/// environment cannot leak in.
const CHAT_VARS: [&str; 3] = ["CHAT_HOST", "CHAT_PORT", "CHAT_NAME"];

/// Command-line arguments.
type Args<'a> = &'a [&'a str];
/// Environment variables.
type Env<'a> = &'a [(&'a str, &'a str)];

/// `chat-client` with the given arguments and environment, and none of the runner's `CHAT_*`.
fn client_command(args: Args<'_>, env: Env<'_>) -> Command {
    let mut command = Command::new(binary("chat-client"));
    command.args(args);
    for var in CHAT_VARS {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    command
}

/// `--port P --name N` for a server at `addr`.
fn port_and_name(addr: SocketAddr, name: &str) -> Vec<String> {
    vec![
        "--port".into(),
        addr.port().to_string(),
        "--name".into(),
        name.into(),
    ]
}

/// Forwards each line read from `from` (without its `\n`) over a channel, until end of stream.
fn forward_lines(from: impl Read + Send + 'static) -> (Receiver<String>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line.ends_with(b"\n") {
                line.pop();
            }
            let text = String::from_utf8(line.clone()).expect("client output is UTF-8");
            if tx.send(text).is_err() {
                return;
            }
        }
    });
    (rx, thread)
}

/// A `chat-client` with piped stdin, stdout and stderr: scripted mode.
struct ScriptedClient {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    readers: Vec<JoinHandle<()>>,
}

impl ScriptedClient {
    /// Starts `name` against the server at `addr`.
    fn join(addr: SocketAddr, name: &str) -> Self {
        let args = port_and_name(addr, name);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::spawn(name, client_command(&args, &[]))
    }

    /// Starts a prepared client command with all three standard streams piped.
    fn spawn(label: &str, mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chat-client");
        let (stdout, out_reader) = forward_lines(child.stdout.take().unwrap());
        let (stderr, err_reader) = forward_lines(child.stderr.take().unwrap());
        Self {
            label: label.to_owned(),
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    /// Writes one command line.
    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to the client's stdin");
        stdin.flush().unwrap();
    }

    /// Closes stdin: the end of the script.
    fn end_input(&mut self) {
        self.stdin = None;
    }

    /// Asserts that the next line on stdout is exactly `expected`.
    fn expect_line(&self, expected: &str) {
        match self.stdout.recv_timeout(WAIT) {
            Ok(line) => assert_eq!(line, expected, "{}'s next stdout line", self.label),
            Err(e) => panic!(
                "{}: no stdout line {expected:?} within {WAIT:?} ({e:?}); stderr: {:?}",
                self.label,
                drain(&self.stderr)
            ),
        }
    }

    /// Waits for the client to exit and returns its status, with everything it wrote after the
    /// lines already expected: (stdout lines, stderr lines). Kills it and fails after [`WAIT`].
    fn wait_exit(&mut self) -> (ExitStatus, Vec<String>, Vec<String>) {
        let status = wait_child(&mut self.child, WAIT)
            .unwrap_or_else(|| panic!("{} did not exit within {WAIT:?}", self.label));
        // The pipes are closed now; the forwarding threads finish on their own.
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        (status, drain(&self.stdout), drain(&self.stderr))
    }
}

impl Drop for ScriptedClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits up to `within` for `child` to exit.
fn wait_child(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let mut status = None;
    wait_until(within, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    status
}

/// The lines already received on `rx`.
fn drain(rx: &Receiver<String>) -> Vec<String> {
    rx.try_iter().collect()
}

/// Runs the client to completion with stdin closed; returns (status, stdout, stderr).
fn run_to_exit(mut command: Command) -> (ExitStatus, String, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chat-client");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).map(|_| text)
    });
    let status = wait_child(&mut child, WAIT);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("chat-client did not exit within {WAIT:?}");
    }
    let out = out.join().unwrap().expect("read stdout");
    let err = err.join().unwrap().expect("read stderr");
    (status.unwrap(), out, err)
}

/// A loopback port with nothing listening on it.
fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn three_scripted_clients_chat_join_leave_and_who() {
    let server = start_server(test_config());
    let addr = server.addr();

    let mut alice = ScriptedClient::join(addr, "alice");
    alice.expect_line("* joined as alice; online: alice");
    let mut bob = ScriptedClient::join(addr, "bob");
    bob.expect_line("* joined as bob; online: alice, bob");
    alice.expect_line("* bob joined");
    let mut carol = ScriptedClient::join(addr, "carol");
    carol.expect_line("* joined as carol; online: alice, bob, carol");
    alice.expect_line("* carol joined");
    bob.expect_line("* carol joined");

    alice.type_line("send hi");
    bob.expect_line("alice: hi");
    carol.expect_line("alice: hi");
    // The rest of the line goes verbatim, inner and trailing spaces included.
    bob.type_line("send  two  spaces, then one: ");
    alice.expect_line("bob:  two  spaces, then one: ");
    carol.expect_line("bob:  two  spaces, then one: ");

    carol.type_line("who");
    carol.expect_line("* online: alice, bob, carol");

    bob.type_line("leave");
    alice.expect_line("* bob left (left)");
    carol.expect_line("* bob left (left)");
    let (status, out, err) = bob.wait_exit();
    assert_eq!((status.code(), out, err), (Some(0), vec![], vec![]));

    // End of input leaves as cleanly as `leave`.
    alice.end_input();
    carol.expect_line("* alice left (left)");
    let (status, out, err) = alice.wait_exit();
    // Nothing else reached alice: in particular not her own "hi", which the server would have
    // sent before bob's leave notice.
    assert_eq!((status.code(), out, err), (Some(0), vec![], vec![]));

    carol.end_input();
    let (status, out, err) = carol.wait_exit();
    assert_eq!((status.code(), out, err), (Some(0), vec![], vec![]));
}

#[test]
fn a_bad_command_prints_a_hint_and_sends_nothing() {
    let server = start_server(test_config());
    // Build the client now if this run has not, so the raw member cannot idle out meanwhile.
    binary("chat-client");
    let (mut watcher, _) = RawClient::join(server.addr(), "watcher");
    let mut dan = ScriptedClient::join(server.addr(), "dan");
    dan.expect_line("* joined as dan; online: dan, watcher");
    assert_eq!(
        watcher.recv(),
        ServerMsg::Joined {
            name: "dan".into(),
            time: 0,
            ident: None
        }
    );
    dan.type_line("shout hello");
    dan.type_line("send");
    dan.type_line("who now");
    dan.type_line("help");
    for line in chat_client::HELP {
        dan.expect_line(line);
    }
    dan.type_line("send last");
    assert_eq!(
        watcher.recv(),
        ServerMsg::Chat {
            seq: 1,
            from: "dan".into(),
            text: "last".into(),
            time: 0,
            kind: ChatKind::Plain,
        }
    );
    dan.end_input();
    let (status, out, err) = dan.wait_exit();
    assert_eq!(status.code(), Some(0));
    assert_eq!(out, Vec::<String>::new());
    assert_eq!(
        err,
        [
            "error: unknown command 'shout'; type help for the commands",
            "error: nothing to send; type send <MSG>",
            "error: who takes no argument; type who alone",
        ]
    );
}

#[test]
fn flags_beat_the_environment_and_the_environment_alone_works() {
    let server = start_server(test_config());
    let port = server.addr().port().to_string();
    let dead = dead_port().to_string();
    let cases: [(&str, Args<'_>, Env<'_>); 4] = [
        // A wrong CHAT_PORT and CHAT_NAME are overridden by the flags.
        (
            "flags",
            &["--port", &port, "--name", "flags"],
            &[("CHAT_PORT", &dead), ("CHAT_NAME", "env")],
        ),
        // A bad CHAT_PORT is harmless when --port wins.
        (
            "flag",
            &["--port", &port, "--name", "flag"],
            &[("CHAT_PORT", "abc")],
        ),
        // A host that does not resolve, overridden by --host.
        (
            "host",
            &["--host", "127.0.0.1", "--port", &port],
            &[("CHAT_HOST", "no-such-host.invalid"), ("CHAT_NAME", "host")],
        ),
        // The environment alone.
        (
            "env",
            &[],
            &[
                ("CHAT_HOST", "127.0.0.1"),
                ("CHAT_PORT", &port),
                ("CHAT_NAME", "env"),
            ],
        ),
    ];
    for (name, args, env) in cases {
        let mut client = ScriptedClient::spawn(name, client_command(args, env));
        client.expect_line(&format!("* joined as {name}; online: {name}"));
        client.end_input();
        let (status, out, err) = client.wait_exit();
        assert_eq!(
            (status.code(), out, err),
            (Some(0), vec![], vec![]),
            "{args:?} {env:?}"
        );
    }
}

#[test]
fn bad_ports_are_one_error_line_and_exit_code_2() {
    let cases: [(Args<'_>, Env<'_>); 6] = [
        (&["--port", "abc"], &[]),
        (&["--port", "70000"], &[]),
        (&["--port", "0"], &[]),
        (&["--port", "-1"], &[]),
        (&[], &[("CHAT_PORT", "abc")]),
        (&[], &[("CHAT_PORT", "70000")]),
    ];
    for (args, env) in cases {
        let mut command = client_command(args, env);
        command.args(["--name", "x"]);
        let (status, out, err) = run_to_exit(command);
        assert_eq!(status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert_eq!(out, "", "{args:?} {env:?}");
        assert!(
            err.starts_with("error: ") && err.ends_with('\n') && err.lines().count() == 1,
            "{args:?} {env:?}: stderr {err:?}"
        );
    }
}

#[test]
fn a_refused_name_in_scripted_mode_exits_non_zero_with_the_reason() {
    let server = start_server(test_config());
    // Build the client now if this run has not, so the raw member cannot idle out meanwhile.
    binary("chat-client");
    let (_alice, _) = RawClient::join(server.addr(), "alice");
    for (name, reason) in [
        ("ALICE", "error: name is taken; choose another\n"),
        (
            "al ice",
            "error: name contains whitespace; choose another\n",
        ),
    ] {
        let args = port_and_name(server.addr(), name);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, out, err) = run_to_exit(client_command(&args, &[]));
        assert_eq!(
            (status.code(), out.as_str(), err.as_str()),
            (Some(1), "", reason)
        );
    }
}

#[test]
fn cannot_connect_names_the_address_and_exits_1() {
    let port = dead_port();
    let (status, out, err) = run_to_exit(client_command(
        &["--port", &port.to_string(), "--name", "x"],
        &[],
    ));
    assert_eq!(status.code(), Some(1));
    assert_eq!(out, "");
    let prefix = format!("error: cannot connect to 127.0.0.1:{port}: ");
    assert!(
        err.starts_with(&prefix) && err.lines().count() == 1,
        "stderr {err:?}"
    );
}

#[test]
fn a_killed_server_is_noticed_at_once_by_an_idle_client() {
    let mut server = ServerProcess::start(&[]);
    let mut client = ScriptedClient::join(server.addr, "idle");
    client.expect_line("* joined as idle; online: idle");
    server.signal("9");
    server.wait_exit(WAIT).expect("server killed");
    let killed = Instant::now();
    // stdin stays open: the client must notice the lost connection by itself.
    let (status, out, err) = client.wait_exit();
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "noticed after {:?}",
        killed.elapsed()
    );
    assert_eq!(status.code(), Some(1));
    assert_eq!(out, Vec::<String>::new());
    assert_eq!(err, ["error: connection to server lost"]);
}

#[test]
fn a_server_shutdown_is_one_notice_and_exit_code_1() {
    let mut server = ServerProcess::start(&[]);
    let mut client = ScriptedClient::join(server.addr, "idle");
    client.expect_line("* joined as idle; online: idle");
    server.signal("TERM");
    client.expect_line("* server is shutting down");
    let (status, out, err) = client.wait_exit();
    assert_eq!((status.code(), out, err), (Some(1), vec![], vec![]));
    assert_eq!(server.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
}

/// A one-connection fake server: reads frames from the client and writes whatever it is told.
struct FakeServer {
    stream: TcpStream,
    reader: FrameReader,
}

impl FakeServer {
    /// The client's connection on `listener`, accepted within [`WAIT`].
    fn accept(listener: &TcpListener) -> Self {
        let stream = accept_within(listener, WAIT);
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Self {
            stream,
            reader: FrameReader::new(64 * 1024),
        }
    }

    /// The next client message; panics on timeout or end of stream.
    fn recv(&mut self) -> ClientMsg {
        loop {
            if let Some(msg) = self.reader.next().unwrap() {
                return msg;
            }
            let n = self
                .reader
                .read_from(&mut self.stream)
                .expect("read from the client");
            assert!(n > 0, "the client closed the connection");
        }
    }

    fn send(&mut self, msg: &ServerMsg) {
        self.stream.write_all(&encode_to_vec(msg).unwrap()).unwrap();
    }
}

/// Accepts one connection, or panics after `within`.
fn accept_within(listener: &TcpListener, within: Duration) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let mut accepted = None;
    wait_until(within, || {
        accepted = listener.accept().ok();
        accepted.is_some()
    });
    let (stream, _) = accepted.expect("the client connected");
    stream.set_nonblocking(false).unwrap();
    stream
}

#[test]
fn control_characters_and_escapes_from_others_are_shown_escaped() {
    // The real server refuses control characters, so a fake one sends them.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut client = ScriptedClient::join(addr, "carol");
    let mut server = FakeServer::accept(&listener);
    assert!(matches!(server.recv(), ClientMsg::Hello { name, .. } if name == "carol"));
    server.send(&ServerMsg::Welcome {
        name: "carol".into(),
        online: 2,
        members: vec![
            chat_proto::Member::named("carol"),
            chat_proto::Member::named("mal\x1b]0;pwned\x07"),
        ],
        limits: Limits {
            max_name_chars: 32,
            max_text_bytes: 1024,
            max_frame_bytes: 2048,
            rate_per_sec: 10,
            burst: 20,
            idle_timeout_ms: 60_000,
        },
        seq: 0,
        epoch: 1,
    });
    server.send(&ServerMsg::Chat {
        seq: 1,
        from: "mal\u{9b}".into(),
        text: "\x1b[2Jgone\u{202e}txt.exe\r\nroot: fake\x00\x08\x7f\t!".into(),
        time: 0,
        kind: ChatKind::Plain,
    });
    server.send(&ServerMsg::Joined {
        name: "\x1b[1Aeve".into(),
        time: 0,
        ident: None,
    });
    client.expect_line(r"* joined as carol; online: carol, mal\x1b]0;pwned\x07");
    client.expect_line(r"mal\u{9b}: \x1b[2Jgone\u{202e}txt.exe\r\nroot: fake\x00\x08\x7f\t!");
    client.expect_line(r"* \x1b[1Aeve joined");

    client.end_input();
    assert_eq!(server.recv(), ClientMsg::Leave { message: None });
    server.send(&ServerMsg::Closing(CloseReason::Left));
    drop(server);
    let (status, out, err) = client.wait_exit();
    assert_eq!((status.code(), out, err), (Some(0), vec![], vec![]));
    // `expect_line` compared whole lines as UTF-8 text: no raw ESC, C1 or bidi control got through.
}

/// The client in a pseudo-terminal, and what an 80x24 terminal would show for its output.
struct Terminal {
    session: OsSession,
    screen: vt100::Parser,
    /// Everything the client wrote to the terminal.
    raw: Vec<u8>,
}

impl Terminal {
    /// Starts the client in a pseudo-terminal without timestamps or colour, so that rows
    /// compare as plain text.
    fn spawn(mut command: Command) -> Self {
        command.arg("--no-timestamps").env("NO_COLOR", "1");
        Self::spawn_as_is(command)
    }

    /// Starts the client in a pseudo-terminal as `command` says.
    fn spawn_as_is(command: Command) -> Self {
        let mut session = Session::spawn(command).expect("spawn chat-client in a pty");
        session.set_expect_timeout(Some(WAIT));
        let rows = std::num::NonZeroU16::new(24).unwrap();
        let cols = std::num::NonZeroU16::new(80).unwrap();
        Self {
            session,
            screen: vt100::Parser::new(rows, cols, 0),
            raw: Vec::new(),
        }
    }

    /// Types bytes, as keys.
    fn keys(&mut self, keys: &str) {
        self.session.send(keys).expect("write to the pty");
    }

    /// Reads what is available now; `false` at end of output.
    fn pump(&mut self) -> bool {
        match self.session.check(Regex("(?s-u:.)+")) {
            Ok(found) => {
                self.screen.process(found.as_bytes());
                self.raw.extend_from_slice(found.as_bytes());
                true
            }
            Err(expectrl::Error::Eof) => false,
            // Linux reports EIO on the pty once the child has gone.
            Err(expectrl::Error::IO(e)) if e.raw_os_error() == Some(5) => false,
            Err(e) => panic!("reading the pty: {e}"),
        }
    }

    /// The visible rows, trailing spaces removed.
    fn rows(&self) -> Vec<String> {
        self.screen
            .screen()
            .rows(0, 80)
            .map(|row| row.trim_end().to_owned())
            .collect()
    }

    /// Waits until `cond` holds for the screen; panics with the screen after [`WAIT`].
    fn wait_for(&mut self, what: &str, cond: impl FnMut(&vt100::Screen) -> bool) {
        self.wait_for_within(WAIT, what, cond);
    }

    /// Waits until `cond` holds for the screen; panics with the screen after `within`.
    fn wait_for_within(
        &mut self,
        within: Duration,
        what: &str,
        mut cond: impl FnMut(&vt100::Screen) -> bool,
    ) {
        let deadline = Instant::now() + within;
        loop {
            let open = self.pump();
            if cond(self.screen.screen()) {
                return;
            }
            if !open || Instant::now() > deadline {
                panic!(
                    "the terminal never showed {what}; screen:\n{}\nraw output: {:?}",
                    self.rows().join("\n"),
                    String::from_utf8_lossy(&self.raw)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the client to exit; returns its exit code.
    fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        loop {
            self.pump();
            match self.session.get_process().status() {
                Ok(WaitStatus::Exited(_, code)) => return code,
                Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => panic!("the client did not exit cleanly: {other:?}"),
            }
        }
    }
}

/// The row that shows `text` exactly, if any.
fn row_of(screen: &vt100::Screen, text: &str) -> Option<u16> {
    screen
        .rows(0, 80)
        .position(|row| row.trim_end() == text)
        .map(|i| i as u16)
}

#[test]
fn an_incoming_message_does_not_garble_a_half_typed_line() {
    let server = start_server(test_config());
    // Build the client now if this run has not, so the raw member cannot idle out meanwhile.
    binary("chat-client");
    let (mut bob, _) = RawClient::join(server.addr(), "bob");
    let args = port_and_name(server.addr(), "alice");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut term = Terminal::spawn(client_command(&args, &[]));
    term.wait_for("the welcome", |s| {
        row_of(s, "* joined as alice; online: alice, bob").is_some()
    });
    assert_eq!(
        bob.recv(),
        ServerMsg::Joined {
            name: "alice".into(),
            time: 0,
            ident: None,
        }
    );

    term.keys("send hello wor");
    term.wait_for("the half-typed line", |s| {
        row_of(s, "> send hello wor").is_some()
    });
    let typed_at = term.raw.len();

    bob.send(&ClientMsg::Chat {
        text: "are you there?".into(),
        kind: ChatKind::Plain,
    });
    term.wait_for(
        "the message above the intact prompt line",
        |s| match row_of(s, "bob: are you there?") {
            Some(row) => {
                row_of(s, "> send hello wor") == Some(row + 1)
                    && s.cursor_position() == (row + 1, 16)
            }
            None => false,
        },
    );
    // The prompt and the half-typed text were drawn again after the incoming line.
    let after = String::from_utf8_lossy(&term.raw[typed_at..]).into_owned();
    let message = after
        .find("bob: are you there?")
        .expect("message in the output");
    assert!(
        after[message..].contains("> ") && after[message..].contains("send hello wor"),
        "not redrawn: {after:?}"
    );
    let rows = term.rows();
    assert!(
        !rows
            .iter()
            .any(|r| r.contains("worbob") || r.contains("there?>")),
        "garbled: {rows:#?}"
    );

    term.keys("ld\r");
    assert_eq!(
        bob.recv(),
        ServerMsg::Chat {
            seq: 2,
            from: "alice".into(),
            text: "hello world".into(),
            time: 0,
            kind: ChatKind::Plain,
        }
    );
    // Ctrl-D at an empty prompt leaves.
    term.keys("\x04");
    assert_eq!(
        bob.recv(),
        ServerMsg::Left {
            name: "alice".into(),
            reason: CloseReason::Left,
            message: None,
            time: 0,
        }
    );
    assert_eq!(term.wait_exit(), 0);
}

#[test]
fn at_a_terminal_the_name_is_asked_for_again_after_a_refusal_and_ctrl_c_leaves() {
    let server = start_server(test_config());
    // Build the client now if this run has not, so the raw member cannot idle out meanwhile.
    binary("chat-client");
    let (mut bob, _) = RawClient::join(server.addr(), "bob");
    let port = server.addr().port().to_string();
    let mut term = Terminal::spawn(client_command(&["--port", &port], &[]));
    term.wait_for("the name prompt", |s| row_of(s, "name:").is_some());

    term.keys("Bob\r");
    term.wait_for("the refusal and the name prompt again", |s| {
        row_of(s, "error: name is taken; choose another")
            .is_some_and(|row| row_of(s, "name:") == Some(row + 1))
    });
    term.keys("alice\r");
    term.wait_for("the welcome", |s| {
        row_of(s, "* joined as alice; online: alice, bob").is_some()
    });
    assert_eq!(
        bob.recv(),
        ServerMsg::Joined {
            name: "alice".into(),
            time: 0,
            ident: None,
        }
    );

    // Ctrl-C with a half-typed line leaves too, and sends nothing else.
    term.keys("send never");
    term.wait_for("the half-typed line", |s| {
        row_of(s, "> send never").is_some()
    });
    term.keys("\x03");
    assert_eq!(
        bob.recv(),
        ServerMsg::Left {
            name: "alice".into(),
            reason: CloseReason::Left,
            message: None,
            time: 0,
        }
    );
    assert_eq!(term.wait_exit(), 0);
}

#[test]
fn an_idle_client_answers_pings_and_stays() {
    let mut config = test_config();
    config.room.ping_interval = Duration::from_millis(100);
    config.room.idle_timeout = Duration::from_millis(400);
    let server = start_server(config);
    let mut client = ScriptedClient::join(server.addr(), "idle");
    client.expect_line("* joined as idle; online: idle");
    // Several idle timeouts pass; only the answers to the server's pings keep it in the room.
    std::thread::sleep(Duration::from_millis(1500));
    client.type_line("who");
    client.expect_line("* online: idle");
    client.end_input();
    let (status, out, err) = client.wait_exit();
    assert_eq!((status.code(), out, err), (Some(0), vec![], vec![]));
}

#[test]
fn no_name_in_scripted_mode_is_a_usage_error() {
    let port = dead_port().to_string();
    let (status, out, err) = run_to_exit(client_command(&["--port", &port], &[]));
    assert_eq!(
        (status.code(), out.as_str(), err.as_str()),
        (
            Some(2),
            "",
            "error: no name given; pass --name or set CHAT_NAME\n"
        )
    );
}

/// chat-core's blocking `std::net` example drives the same hub as the server: the real client
/// cannot tell them apart.
#[test]
fn the_client_talks_through_the_blocking_example_server() {
    let server = ServerProcess::start_with(
        Command::new(example("chat-core", "blocking")).arg("127.0.0.1:0"),
    );
    let addr = server.addr;
    let mut alice = ScriptedClient::join(addr, "alice");
    alice.expect_line("* joined as alice; online: alice");
    let mut bob = ScriptedClient::join(addr, "bob");
    bob.expect_line("* joined as bob; online: alice, bob");
    alice.expect_line("* bob joined");
    // The same folding of look-alike names as the server's.
    let mut copy = ScriptedClient::join(addr, "ALICE");
    let (status, _, err) = copy.wait_exit();
    assert_eq!(status.code(), Some(1));
    assert_eq!(err, vec!["error: name is taken; choose another"]);

    alice.type_line("send hello from a thread");
    bob.expect_line("alice: hello from a thread");
    bob.type_line("who");
    bob.expect_line("* online: alice, bob");
    bob.type_line("leave");
    alice.expect_line("* bob left (left)");
    let (status, out, err) = bob.wait_exit();
    assert_eq!((status.code(), out, err), (Some(0), vec![], vec![]));
    alice.end_input();
    let (status, out, err) = alice.wait_exit();
    assert_eq!((status.code(), out, err), (Some(0), vec![], vec![]));
}

/// The server's flags for the cut-link tests: a ping after 2 s of silence, a close after 6 s.
const QUICK_IDLE: [&str; 4] = ["--ping-interval", "2s", "--idle-timeout", "6s"];

/// The client's own ping goes out after the server's idle timeout (6 s) of silence, and the
/// connection is lost when no answer comes within the client's 5 s.
const NOTICED_WITHIN: Duration = Duration::from_secs(6 + 5 + 3);

#[test]
fn a_scripted_client_behind_a_cut_link_exits_1_within_the_idle_timeout_and_a_few_seconds() {
    let server = ServerProcess::start(&QUICK_IDLE);
    let proxy = Proxy::start(server.addr);
    let mut client = ScriptedClient::join(proxy.addr(), "alice");
    client.expect_line("* joined as alice; online: alice");
    // No FIN, no RST: bytes are held both ways.
    proxy.cut();
    let cut = Instant::now();
    let status = wait_child(&mut client.child, NOTICED_WITHIN + Duration::from_secs(5))
        .expect("the client noticed the cut link");
    let noticed = cut.elapsed();
    for reader in client.readers.drain(..) {
        reader.join().unwrap();
    }
    assert!(noticed <= NOTICED_WITHIN, "noticed after {noticed:?}");
    assert_eq!(status.code(), Some(1));
    assert_eq!(drain(&client.stdout), Vec::<String>::new());
    let stderr = drain(&client.stderr);
    assert!(
        matches!(&stderr[..], [line] if SILENT_FOR.iter().any(|s| *line == format!("error: {s}"))),
        "{stderr:?}"
    );
}

/// What the client says when the link goes silent in these tests: the idle timeout (6 s) and
/// its own ping's 5 s, rounded, so 11 s, or 12 s when the timers run late on a loaded machine.
const SILENT_FOR: [&str; 2] = [
    "connection lost (no answer from the server for 11 s)",
    "connection lost (no answer from the server for 12 s)",
];

/// How many times `needle` was written to the terminal.
fn times_shown(raw: &[u8], needle: &str) -> usize {
    String::from_utf8_lossy(raw).matches(needle).count()
}

#[test]
fn at_a_terminal_a_cut_link_is_lost_then_rejoined_with_what_was_missed_shown_once() {
    let server = ServerProcess::start(&QUICK_IDLE);
    let proxy = Proxy::start(server.addr);
    let args = port_and_name(proxy.addr(), "alice");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut term = Terminal::spawn(client_command(&args, &[]));
    term.wait_for("the welcome", |s| {
        row_of(s, "* joined as alice; online: alice").is_some()
    });
    let mut bob = ScriptedClient::join(server.addr, "bob");
    bob.expect_line("* joined as bob; online: alice, bob");
    term.wait_for("bob's join", |s| row_of(s, "* bob joined").is_some());
    bob.type_line("send before the cut");
    term.wait_for("bob's first line", |s| {
        row_of(s, "bob: before the cut").is_some()
    });

    proxy.cut();
    bob.type_line("send missed one");
    bob.type_line("send missed two");
    term.wait_for_within(
        NOTICED_WITHIN + Duration::from_secs(5),
        "the lost connection",
        |s| {
            SILENT_FOR
                .iter()
                .find_map(|lost| row_of(s, &format!("* {lost}")))
                .is_some_and(|row| row_of(s, "* reconnecting…") == Some(row + 1))
        },
    );
    // The server timed alice out meanwhile (6 s): her name is free again.
    bob.expect_line("* alice left (timed out)");
    bob.type_line("send missed three");
    proxy.restore();
    term.wait_for("the rejoin and the missed lines", |s| {
        row_of(s, "* reconnected as alice").is_some_and(|row| {
            row_of(s, "[earlier] bob: missed one") == Some(row + 1)
                && row_of(s, "[earlier] bob: missed two") == Some(row + 2)
                && row_of(s, "[earlier] bob: missed three") == Some(row + 3)
        })
    });
    bob.expect_line("* alice joined");
    bob.type_line("send after");
    term.wait_for("a live line after the rejoin", |s| {
        row_of(s, "bob: after").is_some()
    });
    // Each line exactly once: the missed ones only from the history, the one seen before the cut
    // not again.
    for (line, times) in [
        ("bob: before the cut", 1),
        ("bob: missed one", 1),
        ("bob: missed two", 1),
        ("bob: missed three", 1),
        ("[earlier]", 3),
        ("* reconnected as alice", 1),
    ] {
        assert_eq!(times_shown(&term.raw, line), times, "{line}");
    }
    term.keys("\x04");
    assert_eq!(term.wait_exit(), 0);
    bob.expect_line("* alice left (left)");
}

#[test]
fn a_newcomer_sees_the_conversation_so_far_set_apart() {
    let server = start_server(test_config());
    let mut alice = ScriptedClient::join(server.addr(), "alice");
    alice.expect_line("* joined as alice; online: alice");
    alice.type_line("send first");
    alice.type_line("send second");
    alice.type_line("who");
    alice.expect_line("* online: alice");
    let mut carol = ScriptedClient::join(server.addr(), "carol");
    carol.expect_line("* joined as carol; online: alice, carol");
    carol.expect_line("[earlier] alice: first");
    carol.expect_line("[earlier] alice: second");
    alice.type_line("send third");
    carol.expect_line("alice: third");
    carol.end_input();
    let (status, out, err) = carol.wait_exit();
    assert_eq!((status.code(), out, err), (Some(0), vec![], vec![]));
}

#[test]
fn a_server_of_another_protocol_version_is_one_line_and_exit_1() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut client = ScriptedClient::join(addr, "carol");
    let mut server = FakeServer::accept(&listener);
    assert!(matches!(
        server.recv(),
        ClientMsg::Hello {
            version: chat_proto::PROTOCOL_VERSION,
            ..
        }
    ));
    // A version 1 server refuses, then closes.
    server.send(&ServerMsg::Refused(
        chat_proto::Refusal::UnsupportedVersion { supported: 1 },
    ));
    drop(server);
    let (status, out, err) = client.wait_exit();
    assert_eq!(status.code(), Some(1));
    assert_eq!(out, Vec::<String>::new());
    assert_eq!(
        err,
        [
            "error: server speaks protocol version 1, this client 3; use an older client or upgrade the server"
        ]
    );
}

#[test]
fn at_a_terminal_lines_have_the_time_and_names_their_colour() {
    let server = start_server(test_config());
    binary("chat-client");
    let (mut bob, _) = RawClient::join(server.addr(), "bob");
    let args = port_and_name(server.addr(), "alice");
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.push("--bell");
    let mut command = client_command(&args, &[]);
    command.env_remove("NO_COLOR");
    let mut term = Terminal::spawn_as_is(command);
    term.wait_for("the welcome with the time", |s| {
        s.rows(0, 80)
            .any(|r| is_stamped(&r, "* joined as alice; online: alice, bob"))
    });
    bob.recv();
    bob.send(&ClientMsg::Chat {
        text: "hi alice".into(),
        kind: ChatKind::Plain,
    });
    term.wait_for("bob's line with the time", |s| {
        s.rows(0, 80).any(|r| is_stamped(&r, "bob: hi alice"))
    });
    // The name in its colour, and the bell (someone mentioned alice) with the line.
    let colour = chat_client::name_colour("bob");
    let raw = String::from_utf8_lossy(&term.raw).into_owned();
    assert!(
        raw.contains(&format!("\x1b[{colour}mbob\x1b[0m: hi alice")),
        "{raw:?}"
    );
    assert!(raw.contains('\x07'), "no bell: {raw:?}");
    term.keys("\x04");
    assert_eq!(term.wait_exit(), 0);
}

/// Whether `row` is `HH:MM ` then `text`.
fn is_stamped(row: &str, text: &str) -> bool {
    let row = row.trim_end();
    let Some((time, rest)) = row.split_once(' ') else {
        return false;
    };
    let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    rest == text
        && time
            .split_once(':')
            .is_some_and(|(h, m)| digits(h) && digits(m))
}
