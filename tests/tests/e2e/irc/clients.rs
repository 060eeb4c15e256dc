//! Native IRC clients, headless: WeeChat (scripted through its FIFO) and irssi (through a
//! terminal it gets and keys typed into it) join, chat, /me, notice, rename, go away, part,
//! join again and quit, with a native member watching; WeeChat negotiates server-time and
//! echo-message.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_proto::{ChatKind, CloseReason, Ident, ServerMsg};
use tests::{RawClient, chat, start_server};

use super::{Kill, WAIT, irc_config};

/// A fresh directory for one client's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chat-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until `path` holds `what`; returns the file's text.
fn wait_for_text(path: &Path, what: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(what) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{path:?} never held {what:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The next message the native member gets that is not a ping's answer.
fn next(nat: &mut RawClient) -> ServerMsg {
    nat.recv()
}

fn said(from: &str, text: &str, kind: ChatKind) -> impl Fn(&ServerMsg) -> bool {
    let (from, text) = (from.to_owned(), text.to_owned());
    move |msg| {
        matches!(msg, ServerMsg::Chat { from: f, text: t, kind: k, .. }
            if *f == from && *t == text && *k == kind)
    }
}

fn left_with(name: &str, words: &str) -> ServerMsg {
    ServerMsg::Left {
        name: name.into(),
        reason: CloseReason::Left,
        message: Some(words.into()),
        time: 0,
    }
}

/// What a native member sees of an IRC client doing the usual things, the same for every
/// client: `act` performs one step, by its name.
fn the_usual(nat: &mut RawClient, nick: &str, ident: Ident, mut act: impl FnMut(&str)) {
    let joined = ServerMsg::Joined {
        name: nick.into(),
        time: 0,
        ident: Some(Arc::new(ident)),
    };
    assert_eq!(next(nat), joined);
    act("say");
    assert!(said(nick, "hello from irc", ChatKind::Plain)(&next(nat)));
    act("me");
    assert!(said(nick, "waves", ChatKind::Action)(&next(nat)));
    act("notice");
    assert!(said(nick, "a notice", ChatKind::Notice)(&next(nat)));
    nat.send(&chat("hi irc"));
    act("read");
    let renamed = format!("{nick}2");
    act("nick");
    assert_eq!(
        next(nat),
        ServerMsg::Renamed {
            from: nick.into(),
            to: renamed.clone(),
            time: 0
        }
    );
    act("away");
    assert_eq!(
        next(nat),
        ServerMsg::Away {
            name: renamed.clone(),
            message: Some("gone".into()),
            time: 0
        }
    );
    act("part");
    assert_eq!(next(nat), left_with(&renamed, "bye for now"));
    act("join");
    match next(nat) {
        ServerMsg::Joined { name, .. } => assert_eq!(name, renamed),
        other => panic!("expected a join again, got {other:?}"),
    }
    act("again");
    assert!(said(&renamed, "back again", ChatKind::Plain)(&next(nat)));
    act("quit");
    assert_eq!(next(nat), left_with(&renamed, "see you"));
}

#[test]
fn weechat_joins_chats_renames_goes_away_parts_rejoins_and_negotiates_caps() {
    assert!(
        Command::new("weechat-headless")
            .arg("--version")
            .output()
            .is_ok(),
        "weechat-headless is not installed: `apt-get install -y weechat-headless` (cargo xtask ci installs it)"
    );
    let server = start_server(irc_config());
    let (mut nat, _) = RawClient::join(server.addr(), "nat");
    let dir = scratch("weechat");
    let logs = dir.join("logs");
    let port = server.irc_addr().unwrap().port();
    let setup = format!(
        "/set plugins.var.fifo.fifo on;/set logger.file.path {logs};/set logger.level.irc 9;\
         /set logger.file.flush_delay 0;\
         /server add t 127.0.0.1/{port} -notls -nicks=wee -username=weeu -realname=Wee_W;\
         /set irc.server.t.capabilities \"*,echo-message\";\
         /set irc.server.t.anti_flood_prio_high 0;/set irc.server.t.anti_flood_prio_low 0;\
         /connect t",
        logs = logs.display()
    );
    let child = Command::new("weechat-headless")
        .arg("--dir")
        .arg(dir.join("home"))
        .args(["-r", &setup])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn weechat-headless");
    let pid = child.id();
    let _weechat = Kill(child);
    let fifo = dir.join("home").join(format!("weechat_fifo_{pid}"));
    let channel_log = logs.join("irc.t.#chat.weechatlog");
    let send = |line: &str| {
        let deadline = Instant::now() + WAIT;
        while !fifo.exists() {
            assert!(Instant::now() < deadline, "no FIFO at {fifo:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::write(&fifo, format!("{line}\n")).unwrap();
    };
    let ident = Ident {
        user: "weeu".into(),
        realname: "Wee_W".into(),
    };
    the_usual(&mut nat, "wee", ident, |step| match step {
        "say" => {
            // The channel's buffer exists once WeeChat has seen its own JOIN.
            wait_for_text(&channel_log, "has joined #chat");
            send("irc.t.#chat *hello from irc");
        }
        "me" => send("irc.t.#chat */me waves"),
        "notice" => send("irc.t.#chat */notice #chat a notice"),
        "read" => {
            let log = wait_for_text(&channel_log, "hi irc");
            // echo-message: its own line came back from the room, once sent and once echoed.
            assert_eq!(log.matches("\twee\thello from irc").count(), 2, "{log}");
        }
        "nick" => send("irc.t.#chat */nick wee2"),
        "away" => send("irc.t.#chat */away gone"),
        "part" => send("irc.t.#chat */part bye for now"),
        "join" => send("irc.server.t */join #chat"),
        "again" => send("irc.t.#chat *back again"),
        "quit" => send("irc.server.t */quit see you"),
        other => unreachable!("{other}"),
    });
    let server_log = std::fs::read_to_string(logs.join("irc.server.t.weechatlog")).unwrap();
    let enabled = server_log
        .lines()
        .find(|l| l.contains("client capability, enabled:"))
        .unwrap_or_else(|| panic!("no capabilities enabled:\n{server_log}"));
    assert!(
        enabled.contains("server-time") && enabled.contains("echo-message"),
        "{enabled}"
    );
    // server-time: the history a join is shown carries the times the lines were said. WeeChat
    // writes its log when it likes: wait for the line rather than read once.
    wait_for_text(&channel_log, "[earlier] <wee> hello from irc");
}

#[test]
fn irssi_joins_chats_renames_goes_away_parts_and_rejoins() {
    use std::io::Write as _;
    assert!(
        Command::new("irssi").arg("--version").output().is_ok(),
        "irssi is not installed: `apt-get install -y irssi` (cargo xtask ci installs it)"
    );
    let server = start_server(irc_config());
    let (mut nat, _) = RawClient::join(server.addr(), "nat");
    let dir = scratch("irssi");
    // irssi wants a terminal: script(1) gives it one, and types what comes on its stdin.
    let irssi = format!("irssi --home={} -n irssy", dir.join("home").display());
    let mut child = Command::new("script")
        .args(["-qfec", &irssi, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn irssi under script");
    let mut keys = child.stdin.take().unwrap();
    let _irssi = Kill(child);
    let mut type_line = |line: &str| {
        keys.write_all(format!("{line}\r").as_bytes()).unwrap();
        keys.flush().unwrap();
    };
    let port = server.irc_addr().unwrap().port();
    let log = dir.join("chat.log");
    for line in [
        "/set user_name irssiu",
        "/set real_name Irssi I",
        "/set cmds_max_at_once 100",
        "/set autolog on",
        &format!("/set autolog_path {}", log.display()),
        &format!("/connect 127.0.0.1 {port}"),
    ] {
        type_line(line);
    }
    let ident = Ident {
        user: "irssiu".into(),
        realname: "Irssi I".into(),
    };
    the_usual(&mut nat, "irssy", ident, |step| match step {
        "say" => type_line("/msg #chat hello from irc"),
        "me" => type_line("/action #chat waves"),
        "notice" => type_line("/notice #chat a notice"),
        "read" => {
            wait_for_text(&log, "nat> hi irc");
        }
        "nick" => type_line("/nick irssy2"),
        "away" => type_line("/away gone"),
        "part" => type_line("/part #chat bye for now"),
        "join" => type_line("/join #chat"),
        "again" => type_line("/msg #chat back again"),
        "quit" => type_line("/quit see you"),
        other => unreachable!("{other}"),
    });
}
