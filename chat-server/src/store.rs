//! The store behind `--data-dir`: the room's accounts, bans, mutes, kept history, sequence
//! (log position and chat sequence number) and epoch in one SQLite file, `DIR/chat.db`.
//!
//! At start, [`Store::open`] checks the file (writable, a SQLite database, not corrupt, a schema
//! this server knows), migrates it, and gives the [`Snapshot`] the room restarts from. Then
//! every entry the room applies goes to [`Writer::keep`], and [`Writer::flush`] hands them to a
//! thread of the store's own, off the room's thread, which writes them in batches: one
//! transaction per batch, in WAL mode with `synchronous=FULL`, so that a commit is on disk when
//! it returns. A crash (the process killed, or the machine losing power) loses at most the
//! entries not yet committed: the batch being written and what is queued behind it.
//!
//! When the disk is slower than the room, the bounded queue fills and the room task waits for
//! room in it ([`Writer::flush`]): the room slows down (its own input queue fills, and readers
//! stop reading, so TCP pushes back on clients) rather than dropping applied entries or growing
//! a buffer. That only happens under disk trouble: a batch of a thousand entries is one fsync.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_channel::{Receiver, Sender, TrySendError};
use chat_core::accounts::{Account, Ban, BanTarget, Moderation, Mute};
use chat_core::{Entry, Event, Snapshot};
use chat_proto::{ChatKind, HistoryChat};
use futures_lite::FutureExt;
use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, params};

/// The file's name in the data directory.
pub const FILE_NAME: &str = "chat.db";

/// Entries queued between the room and the store's thread.
const QUEUE: usize = 4096;

/// The most entries written in one transaction.
const BATCH: usize = 1024;

/// The schema, one step per version: step `i` takes a file from version `i` to `i + 1`
/// (`PRAGMA user_version`). Steps are never edited once released; a change is a new step.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE meta (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        epoch INTEGER NOT NULL,
        pos INTEGER NOT NULL,
        seq INTEGER NOT NULL
    );
    CREATE TABLE history (
        seq INTEGER PRIMARY KEY,
        time INTEGER NOT NULL,
        sender TEXT NOT NULL,
        text TEXT NOT NULL,
        kind INTEGER NOT NULL
    );
    CREATE TABLE accounts (
        key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE TABLE bans (
        kind TEXT NOT NULL CHECK (kind IN ('name', 'net')),
        target TEXT NOT NULL,
        until INTEGER,
        reason TEXT,
        by TEXT NOT NULL,
        since INTEGER NOT NULL,
        PRIMARY KEY (kind, target)
    );
    CREATE TABLE mutes (
        key TEXT PRIMARY KEY,
        until INTEGER,
        by TEXT NOT NULL
    );
"];

/// The schema version this server writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Why the store cannot be used: one line for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

impl From<StoreError> for io::Error {
    fn from(error: StoreError) -> Self {
        io::Error::other(error)
    }
}

/// The open data file, and where the room stands in it.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Chats kept (the room's `--history`).
    history: u32,
    pos: u64,
    seq: u64,
}

/// SQLite keeps signed 64-bit integers: a `u64` is stored with the same bits (an epoch is
/// random over all 64) and read back the same.
fn int(value: u64) -> i64 {
    value as i64
}

fn uint(value: i64) -> u64 {
    value as u64
}

impl Store {
    /// Opens (creating if need be) the data file in `dir`, checks and migrates it, and returns
    /// it with the snapshot the room goes on from: its last `history` chats, accounts, bans and
    /// mutes, and no members. A new file takes `new_epoch`. Nothing in an existing file is
    /// changed before it has passed every check.
    pub fn open(dir: &Path, history: u32, new_epoch: u64) -> Result<(Store, Snapshot), StoreError> {
        let path = dir.join(FILE_NAME);
        let file = path.display();
        check_access(dir, &path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags)
            .map_err(|e| StoreError(format!("cannot open data file {file}: {e}")))?;
        let damaged = |e: rusqlite::Error| describe(&path, &e);
        // A backup (`sqlite3 FILE .backup`) may hold a lock for a moment.
        conn.busy_timeout(Duration::from_secs(5)).map_err(damaged)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(damaged)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError(format!(
                "data file {file} has schema version {version}, newer than this server's \
                 ({SCHEMA_VERSION}): run the newer chat-server, or restore a backup"
            )));
        }
        check_contents(&conn, &path, version)?;
        let mut store = Store {
            conn,
            path,
            history,
            pos: 0,
            seq: 0,
        };
        if let Err(error) = store.migrate(version, new_epoch) {
            return Err(store.cannot_write(&error));
        }
        let snapshot = store.load().map_err(|e| describe(&store.path, &e))?;
        (store.pos, store.seq) = (snapshot.pos, snapshot.seq);
        Ok((store, snapshot))
    }

    /// WAL mode and full sync, then the schema from `version` up, the first room state for a
    /// new file, and the history trimmed to what the room keeps: one transaction.
    fn migrate(&mut self, version: i64, new_epoch: u64) -> rusqlite::Result<()> {
        let mode: String =
            self.conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(other(format!(
                "cannot turn on WAL mode (journal mode is {mode})"
            )));
        }
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        let tx = self.conn.transaction()?;
        for (from, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(step)?;
            if from == 0 {
                tx.execute(
                    "INSERT INTO meta (id, epoch, pos, seq) VALUES (0, ?1, 0, 0)",
                    params![int(new_epoch)],
                )?;
            }
        }
        if version < SCHEMA_VERSION {
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        let seq: i64 = tx.query_row("SELECT seq FROM meta WHERE id = 0", [], |r| r.get(0))?;
        trim_history(&tx, uint(seq), self.history)?;
        tx.commit()
    }

    /// The room's state as the file has it.
    fn load(&self) -> rusqlite::Result<Snapshot> {
        let (epoch, pos, seq) =
            self.conn
                .query_row("SELECT epoch, pos, seq FROM meta WHERE id = 0", [], |r| {
                    Ok((uint(r.get(0)?), uint(r.get(1)?), uint(r.get(2)?)))
                })?;
        let mut history = self
            .conn
            .prepare(
                "SELECT seq, time, sender, text, kind FROM history ORDER BY seq DESC LIMIT ?1",
            )?
            .query_map([self.history], |r| {
                Ok(HistoryChat {
                    seq: uint(r.get(0)?),
                    time: uint(r.get(1)?),
                    from: r.get::<_, String>(2)?.into(),
                    text: r.get::<_, String>(3)?.into(),
                    kind: kind_of(r.get(4)?),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        history.reverse();
        let accounts = self
            .conn
            .prepare("SELECT key, name, hash FROM accounts ORDER BY key")?
            .query_map([], |r| {
                Ok(Account {
                    key: text(r, 0)?,
                    name: text(r, 1)?,
                    hash: text(r, 2)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let bans = self
            .conn
            .prepare(
                "SELECT kind, target, until, reason, by, since FROM bans ORDER BY kind, target",
            )?
            .query_map([], |r| {
                Ok(Ban {
                    target: ban_target(&r.get::<_, String>(0)?, &r.get::<_, String>(1)?)?,
                    until: r.get::<_, Option<i64>>(2)?.map(uint),
                    reason: r.get::<_, Option<String>>(3)?.map(Arc::from),
                    by: text(r, 4)?,
                    since: uint(r.get(5)?),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mutes = self
            .conn
            .prepare("SELECT key, until, by FROM mutes ORDER BY key")?
            .query_map([], |r| {
                Ok(Mute {
                    key: text(r, 0)?,
                    until: r.get::<_, Option<i64>>(1)?.map(uint),
                    by: text(r, 2)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Snapshot {
            epoch,
            pos,
            seq,
            members: Vec::new(),
            history,
            accounts,
            bans,
            mutes,
        })
    }

    /// Writes the effect of `entries` (applied by the room, in log order) in one transaction.
    pub fn write(&mut self, entries: &[Entry]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        let (mut pos, mut seq) = (self.pos, self.seq);
        for entry in entries {
            write_entry(&tx, entry, self.history)?;
            pos = entry.pos;
            if let Event::Chat { seq: chat, .. } = entry.event {
                seq = chat;
            }
        }
        tx.prepare_cached("UPDATE meta SET pos = ?1, seq = ?2 WHERE id = 0")?
            .execute(params![int(pos), int(seq)])?;
        if seq != self.seq {
            trim_history(&tx, seq, self.history)?;
        }
        tx.commit()?;
        (self.pos, self.seq) = (pos, seq);
        Ok(())
    }

    /// Starts the store's thread, which writes what the returned [`Writer`] hands it.
    pub fn spawn(self) -> io::Result<Writer> {
        let (queue, entries) = async_channel::bounded(QUEUE);
        let (done_tx, done) = async_channel::bounded::<()>(1);
        std::thread::Builder::new()
            .name("chat-store".into())
            .spawn(move || {
                self.run(&entries);
                drop(done_tx); // tells the room task the store is closed
            })?;
        Ok(Writer {
            queue,
            pending: Vec::new(),
            done,
            behind: false,
        })
    }

    /// The store's thread: takes what is queued, up to a batch at a time, and writes it.
    fn run(mut self, entries: &Receiver<Entry>) {
        let mut batch = Vec::with_capacity(BATCH);
        while let Ok(first) = entries.recv_blocking() {
            batch.push(first);
            while batch.len() < BATCH {
                match entries.try_recv() {
                    Ok(entry) => batch.push(entry),
                    Err(_) => break,
                }
            }
            self.write_until_done(&batch);
            batch.clear();
        }
    }

    /// Writes `batch`, trying again (less and less often) until it is written: the store never
    /// skips an entry, so while it cannot write, its queue fills and the room waits.
    fn write_until_done(&mut self, batch: &[Entry]) {
        let mut failures = 0u32;
        let mut pause = Duration::from_millis(100);
        while let Err(error) = self.write(batch) {
            failures += 1;
            if failures.is_power_of_two() {
                log::error!(
                    "{} (attempt {failures}); trying again: the room waits while the store's queue is full",
                    self.cannot_write(&error)
                );
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(5));
        }
        if failures > 0 {
            log::info!("data file {} written again", self.path.display());
        }
    }

    fn cannot_write(&self, error: &rusqlite::Error) -> StoreError {
        StoreError(format!(
            "cannot write data file {}: {error}",
            self.path.display()
        ))
    }
}

/// The directory exists (made if need be) and takes new files (SQLite's WAL beside the data
/// file), and the data file, if there is one, can be written: checked before SQLite opens it,
/// so that the error says which.
fn check_access(dir: &Path, path: &Path) -> Result<(), StoreError> {
    let dir_name = dir.display();
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError(format!("cannot create data directory {dir_name}: {e}")))?;
    let probe = dir.join(format!(".{FILE_NAME}-probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| StoreError(format!("data directory {dir_name} is not writable: {e}")))?;
    let _ = std::fs::remove_file(&probe);
    if path.exists() {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| {
                StoreError(format!("data file {} is not writable: {e}", path.display()))
            })?;
    }
    Ok(())
}

/// A file of version 0 is new (empty) or someone else's; a file of ours passes SQLite's
/// quick check.
fn check_contents(conn: &Connection, path: &Path, version: i64) -> Result<(), StoreError> {
    let file = path.display();
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|e| describe(path, &e))?;
    if version == 0 && tables > 0 {
        return Err(StoreError(format!(
            "data file {file} is a SQLite database but not chat-server's: give --data-dir a \
             directory of its own"
        )));
    }
    let check: String = conn
        .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
        .map_err(|e| describe(path, &e))?;
    if check != "ok" {
        let check = check.split_whitespace().collect::<Vec<_>>().join(" ");
        return Err(StoreError(format!(
            "data file {file} is corrupt ({check}): restore a backup, or move it away to start empty"
        )));
    }
    Ok(())
}

/// An error reading the file at start, as one line that says what to do.
fn describe(path: &Path, error: &rusqlite::Error) -> StoreError {
    let file = path.display();
    StoreError(match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => format!(
            "data file {file} is corrupt or not a database ({error}): restore a backup, or move \
             it away to start empty"
        ),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            format!("data file {file} is locked by another program ({error})")
        }
        _ => format!("cannot read data file {file}: {error}"),
    })
}

/// One entry's effect on the rows: a chat is kept in the history (if any is kept); accounts
/// and moderation change their tables; the rest (joins, leaves, renames, away, kicks) only
/// move the position on.
fn write_entry(tx: &Transaction<'_>, entry: &Entry, history: u32) -> rusqlite::Result<()> {
    match &entry.event {
        Event::Chat { seq, text, kind } if history > 0 => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO history (seq, time, sender, text, kind) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                int(*seq),
                int(entry.time),
                &*entry.name,
                text,
                kind_code(*kind)
            ])?;
        }
        Event::Registered { hash } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO accounts (key, name, hash) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![&*entry.key, &*entry.name, &**hash])?;
        }
        Event::Unregistered => {
            tx.prepare_cached("DELETE FROM accounts WHERE key = ?1")?
                .execute([&*entry.key])?;
        }
        Event::Moderated(action) => write_moderation(tx, action)?,
        _ => {}
    }
    Ok(())
}

fn write_moderation(tx: &Transaction<'_>, action: &Moderation) -> rusqlite::Result<()> {
    match action {
        Moderation::Ban(ban) => {
            let (kind, target) = ban_key(&ban.target);
            tx.prepare_cached(
                "INSERT OR REPLACE INTO bans (kind, target, until, reason, by, since) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                kind,
                target,
                ban.until.map(int),
                ban.reason.as_deref(),
                &*ban.by,
                int(ban.since)
            ])?;
        }
        Moderation::Unban(target) => {
            let (kind, target) = ban_key(target);
            tx.prepare_cached("DELETE FROM bans WHERE kind = ?1 AND target = ?2")?
                .execute(params![kind, target])?;
        }
        Moderation::Mute(mute) => {
            tx.prepare_cached("INSERT OR REPLACE INTO mutes (key, until, by) VALUES (?1, ?2, ?3)")?
                .execute(params![&*mute.key, mute.until.map(int), &*mute.by])?;
        }
        Moderation::Unmute { key } => {
            tx.prepare_cached("DELETE FROM mutes WHERE key = ?1")?
                .execute([&**key])?;
        }
        Moderation::Kick { .. } => {}
    }
    Ok(())
}

/// Keeps the last `history` chats up to `seq`.
fn trim_history(tx: &Transaction<'_>, seq: u64, history: u32) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM history WHERE seq <= ?1")?
        .execute([int(seq.saturating_sub(u64::from(history)))])?;
    Ok(())
}

/// A ban's row key: `('name', KEY)` or `('net', ADDR/PREFIX)`.
fn ban_key(target: &BanTarget) -> (&'static str, String) {
    match target {
        BanTarget::Name(key) => ("name", key.to_string()),
        BanTarget::Net { addr, prefix } => ("net", format!("{addr}/{prefix}")),
    }
}

fn ban_target(kind: &str, target: &str) -> rusqlite::Result<BanTarget> {
    let bad = || other(format!("a ban on '{kind}' '{target}'"));
    match kind {
        "name" => Ok(BanTarget::Name(target.into())),
        "net" => {
            let (addr, prefix) = target.split_once('/').ok_or_else(bad)?;
            let addr: IpAddr = addr.parse().map_err(|_| bad())?;
            let prefix: u8 = prefix.parse().map_err(|_| bad())?;
            let most = if addr.is_ipv4() { 32 } else { 128 };
            (prefix <= most)
                .then_some(BanTarget::Net { addr, prefix })
                .ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

fn kind_code(kind: ChatKind) -> i64 {
    match kind {
        ChatKind::Plain => 0,
        ChatKind::Action => 1,
        ChatKind::Notice => 2,
    }
}

/// A kind this version does not know (a newer one wrote it) shows as plain.
fn kind_of(code: i64) -> ChatKind {
    match code {
        1 => ChatKind::Action,
        2 => ChatKind::Notice,
        _ => ChatKind::Plain,
    }
}

/// An error of the store's own, in rusqlite's type.
fn other(message: String) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(message.into())
}

fn text(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Arc<str>> {
    Ok(row.get::<_, String>(i)?.into())
}

/// The room task's side of the store: entries kept during a step, handed to the store's
/// thread after it.
#[derive(Debug)]
pub struct Writer {
    queue: Sender<Entry>,
    /// What the current step applied (bounded by what one input makes the room do).
    pending: Vec<Entry>,
    /// Closed when the store's thread has written everything and closed the file.
    done: Receiver<()>,
    /// The queue was full at the last flush (logged once per episode).
    behind: bool,
}

impl Writer {
    /// Keeps an entry the room applied, for the next [`Writer::flush`].
    pub fn keep(&mut self, entry: Entry) {
        self.pending.push(entry);
    }

    /// Hands what was kept to the store's thread, waiting for room in its queue if the disk is
    /// behind (the room waits with it: see the module's doc).
    pub async fn flush(&mut self) {
        let Self {
            queue,
            pending,
            behind,
            ..
        } = self;
        for entry in pending.drain(..) {
            let entry = match queue.try_send(entry) {
                Ok(()) => {
                    *behind = false;
                    continue;
                }
                Err(TrySendError::Full(entry)) => entry,
                Err(TrySendError::Closed(_)) => continue, // the store's thread is gone: logged
            };
            if !*behind {
                log::warn!("the store is behind the room (slow disk?): the room waits for it");
                *behind = true;
            }
            let _ = queue.send(entry).await;
        }
    }

    /// Lets the store's thread write what is queued and close the file, waiting at most
    /// `within`. Returns whether it finished.
    pub async fn close(self, within: Duration) -> bool {
        self.queue.close();
        let finished = async {
            let _ = self.done.recv().await;
            true
        };
        let timeout = async {
            smol::Timer::after(within).await;
            false
        };
        finished.or(timeout).await
    }
}

#[cfg(test)]
mod tests;
