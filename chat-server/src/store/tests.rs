//! The store on a real file in a temporary directory: every kind of row kept across a reopen,
//! the history trimmed, the writer thread, and files it must refuse untouched.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use chat_core::{ConnId, NodeId};
use chat_proto::CloseReason;

use super::*;

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("chat-store-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).unwrap();
        TempDir(path)
    }

    fn file(&self) -> PathBuf {
        self.0.join(FILE_NAME)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn entry(pos: u64, name: &str, event: Event) -> Entry {
    Entry {
        pos,
        time: 1_000 + pos,
        node: NodeId(0),
        conn: ConnId(pos),
        name: name.into(),
        key: name.to_lowercase().into(),
        event,
    }
}

fn chat(pos: u64, seq: u64, name: &str, text: &str, kind: ChatKind) -> Entry {
    let text = text.into();
    entry(pos, name, Event::Chat { seq, text, kind })
}

fn moderated(pos: u64, action: Moderation) -> Entry {
    entry(pos, "Mod", Event::Moderated(Arc::new(action)))
}

fn ban(target: BanTarget, until: Option<u64>, reason: Option<&str>) -> Ban {
    Ban {
        target,
        until,
        reason: reason.map(Arc::from),
        by: "Mod".into(),
        since: 900,
    }
}

fn net(addr: IpAddr, prefix: u8) -> BanTarget {
    BanTarget::Net { addr, prefix }
}

fn mute(key: &str, until: Option<u64>) -> Mute {
    Mute {
        key: key.into(),
        until,
        by: "Mod".into(),
    }
}

/// One entry of every kind, each row kind written, replaced and deleted.
fn every_kind() -> Vec<Entry> {
    let v4 = net(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0)), 24);
    let v6 = net(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)),
        48,
    );
    let hash = |h: &str| Event::Registered { hash: h.into() };
    vec![
        entry(1, "Alice", Event::Joined { ident: None }),
        chat(2, 1, "Alice", "hi", ChatKind::Plain),
        chat(3, 2, "Alice", "waves", ChatKind::Action),
        entry(4, "Alice", hash("$argon2id$v=19$old")),
        entry(5, "Alice", hash("$argon2id$v=19$new")),
        entry(6, "Bob", hash("$argon2id$v=19$bob")),
        entry(7, "Bob", Event::Unregistered),
        moderated(
            8,
            Moderation::Ban(ban(BanTarget::Name("eve".into()), None, Some("spam"))),
        ),
        moderated(9, Moderation::Ban(ban(v4.clone(), Some(5_000), None))),
        moderated(10, Moderation::Ban(ban(v6.clone(), None, None))),
        moderated(
            11,
            Moderation::Ban(ban(net(IpAddr::V4(Ipv4Addr::LOCALHOST), 32), None, None)),
        ),
        moderated(
            12,
            Moderation::Unban(net(IpAddr::V4(Ipv4Addr::LOCALHOST), 32)),
        ),
        moderated(13, Moderation::Mute(mute("carol", Some(7_000)))),
        moderated(14, Moderation::Mute(mute("dave", None))),
        moderated(15, Moderation::Unmute { key: "dave".into() }),
        moderated(
            16,
            Moderation::Kick {
                name: "Carol".into(),
                key: "carol".into(),
                reason: None,
            },
        ),
        entry(
            17,
            "Alice",
            Event::Away {
                message: Some("lunch".into()),
            },
        ),
        entry(
            18,
            "Alice",
            Event::Renamed {
                name: "Alicia".into(),
                key: "alicia".into(),
            },
        ),
        chat(19, 3, "Alicia", "a notice", ChatKind::Notice),
        entry(
            20,
            "Alicia",
            Event::Left {
                reason: CloseReason::Left,
                message: None,
            },
        ),
        entry(21, "Zed", Event::Unknown),
    ]
}

fn history_chat(seq: u64, time: u64, from: &str, text: &str, kind: ChatKind) -> HistoryChat {
    HistoryChat {
        seq,
        time,
        from: from.into(),
        text: text.into(),
        kind,
    }
}

#[test]
fn every_kind_of_row_survives_a_reopen() {
    let dir = TempDir::new();
    let (mut store, fresh) = Store::open(&dir.0, 100, 0xfeed_0000_0000_0001).unwrap();
    assert_eq!(
        fresh,
        Snapshot {
            epoch: 0xfeed_0000_0000_0001,
            ..Snapshot::default()
        }
    );
    let entries = every_kind();
    // Two batches, as the writer thread may cut them anywhere.
    store.write(&entries[..9]).unwrap();
    store.write(&entries[9..]).unwrap();
    drop(store);
    // A reopened file keeps its epoch: the one offered for a new file is not taken.
    let (_, snapshot) = Store::open(&dir.0, 100, 7).unwrap();
    let v4 = net(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0)), 24);
    let v6 = net(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)),
        48,
    );
    let expected = Snapshot {
        epoch: 0xfeed_0000_0000_0001,
        pos: 21,
        seq: 3,
        members: Vec::new(),
        history: vec![
            history_chat(1, 1_002, "Alice", "hi", ChatKind::Plain),
            history_chat(2, 1_003, "Alice", "waves", ChatKind::Action),
            history_chat(3, 1_019, "Alicia", "a notice", ChatKind::Notice),
        ],
        accounts: vec![Account {
            key: "alice".into(),
            name: "Alice".into(),
            hash: "$argon2id$v=19$new".into(),
        }],
        bans: vec![
            ban(BanTarget::Name("eve".into()), None, Some("spam")),
            ban(v4, Some(5_000), None),
            ban(v6, None, None),
        ],
        mutes: vec![mute("carol", Some(7_000))],
    };
    assert_eq!(snapshot, expected);
}

#[test]
fn the_history_is_trimmed_to_what_the_room_keeps() {
    let dir = TempDir::new();
    let (mut store, _) = Store::open(&dir.0, 3, 1).unwrap();
    let chats: Vec<Entry> = (1..=10)
        .map(|i| chat(i, i, "alice", &format!("m{i}"), ChatKind::Plain))
        .collect();
    for batch in chats.chunks(4) {
        store.write(batch).unwrap();
    }
    let rows = |store: &Store| -> i64 {
        store
            .conn
            .query_row("SELECT count(*) FROM history", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(rows(&store), 3);
    drop(store);
    // A smaller --history at the next start trims the file too.
    let (store, snapshot) = Store::open(&dir.0, 2, 1).unwrap();
    let seqs: Vec<u64> = snapshot.history.iter().map(|c| c.seq).collect();
    assert_eq!((seqs, snapshot.seq, snapshot.pos), (vec![9, 10], 10, 10));
    assert_eq!(rows(&store), 2);
    drop(store);
    // No history kept: no chat is written, the sequence still goes on.
    let (mut store, _) = Store::open(&dir.0, 0, 1).unwrap();
    store
        .write(&[chat(11, 11, "alice", "m11", ChatKind::Plain)])
        .unwrap();
    assert_eq!(rows(&store), 0);
    drop(store);
    let (_, snapshot) = Store::open(&dir.0, 0, 1).unwrap();
    assert_eq!(
        (snapshot.history.len(), snapshot.seq, snapshot.pos),
        (0, 11, 11)
    );
}

#[test]
fn the_writer_thread_writes_everything_kept_before_it_closes() {
    let dir = TempDir::new();
    let (store, _) = Store::open(&dir.0, 10_000, 5).unwrap();
    let mut writer = store.spawn().unwrap();
    // More than the queue holds, so that flushing waits for the thread at least once.
    let total = (QUEUE + 2 * BATCH) as u64;
    smol::block_on(async {
        for i in 1..=total {
            writer.keep(chat(i, i, "alice", &format!("m{i}"), ChatKind::Plain));
            if i % 500 == 0 {
                writer.flush().await;
            }
        }
        writer.flush().await;
        assert!(
            writer.close(Duration::from_secs(30)).await,
            "closed in time"
        );
    });
    let (_, snapshot) = Store::open(&dir.0, 10_000, 5).unwrap();
    assert_eq!((snapshot.pos, snapshot.seq), (total, total));
    let seqs: Vec<u64> = snapshot.history.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
}

/// Opens `dir` expecting a refusal, and checks that the file is byte for byte as it was.
fn refused(dir: &TempDir) -> String {
    let before = std::fs::read(dir.file()).unwrap();
    let error = Store::open(&dir.0, 100, 1).unwrap_err().0;
    assert!(!error.contains('\n'), "one line: {error}");
    assert_eq!(std::fs::read(dir.file()).unwrap(), before, "file unchanged");
    error
}

#[test]
fn a_file_of_garbage_is_refused_untouched() {
    let dir = TempDir::new();
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.file(), garbage).unwrap();
    let error = refused(&dir);
    assert!(error.contains("is corrupt or not a database"), "{error}");
    assert!(error.contains(&dir.file().display().to_string()), "{error}");
}

#[test]
fn a_file_damaged_past_its_header_is_refused_untouched() {
    let dir = TempDir::new();
    let (mut store, _) = Store::open(&dir.0, 1_000, 1).unwrap();
    let chats: Vec<Entry> = (1..=300)
        .map(|i| chat(i, i, "alice", &"x".repeat(200), ChatKind::Plain))
        .collect();
    store.write(&chats).unwrap();
    drop(store); // checkpoints the WAL into the file
    let mut bytes = std::fs::read(dir.file()).unwrap();
    assert!(bytes.len() > 16 * 4096, "{} bytes", bytes.len());
    for (i, byte) in bytes[4096..].iter_mut().enumerate() {
        *byte = (i % 251) as u8;
    }
    std::fs::write(dir.file(), bytes).unwrap();
    let error = refused(&dir);
    assert!(error.contains("corrupt"), "{error}");
}

#[test]
fn a_file_from_a_newer_version_is_refused_untouched() {
    let dir = TempDir::new();
    drop(Store::open(&dir.0, 100, 1).unwrap());
    let conn = Connection::open(dir.file()).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let error = refused(&dir);
    assert!(
        error.ends_with(&format!(
            "has schema version {}, newer than this server's ({SCHEMA_VERSION}): run the newer \
             chat-server, or restore a backup",
            SCHEMA_VERSION + 1
        )),
        "{error}"
    );
}

#[test]
fn another_programs_database_is_refused_untouched() {
    let dir = TempDir::new();
    let conn = Connection::open(dir.file()).unwrap();
    conn.execute_batch("CREATE TABLE notes (body TEXT)")
        .unwrap();
    drop(conn);
    let error = refused(&dir);
    assert!(error.contains("not chat-server's"), "{error}");
}

#[test]
fn a_data_directory_that_is_a_file_is_refused() {
    let dir = TempDir::new();
    let not_a_dir = dir.0.join("plain-file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let error = Store::open(&not_a_dir, 100, 1).unwrap_err().0;
    assert!(error.starts_with("cannot create data directory"), "{error}");
}

#[test]
fn a_missing_data_directory_is_made() {
    let dir = TempDir::new();
    let nested = dir.0.join("a/b");
    let (_, snapshot) = Store::open(&nested, 100, 9).unwrap();
    assert_eq!(snapshot.epoch, 9);
    assert!(nested.join(FILE_NAME).exists());
}
