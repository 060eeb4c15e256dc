//! The hashing pool: the room's password work (Argon2id, tens of MiB and tens of ms each) runs
//! on a few threads of its own, never on the room's, behind a bounded queue. Work that finds the
//! queue full is not queued: it is answered [`Verdict::Busy`] at once, so a login flood costs
//! a bounded amount of memory and time, and the room never waits for a hash.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use chat_core::{Input, PasswordWork, Ticket, Verdict};

use crate::conn::Event;
use crate::stats::Stats;

/// Threads that hash: each holds one Argon2 memory block (19 MiB) while it works.
pub const WORKERS: usize = 2;
/// Work waiting for a thread, at most; past it, work is answered [`Verdict::Busy`].
pub const QUEUE: usize = 8;

/// OWASP's recommendation for Argon2id: 19 MiB, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A PHC string of `password` under a fresh salt from the operating system's CSPRNG.
pub fn hash(password: &str) -> Option<String> {
    argon2()
        .hash_password(password.as_bytes())
        .ok()
        .map(|h| h.to_string())
}

/// Whether `password` matches the PHC string `hash` (with the parameters the hash names).
pub fn verify(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// The accounts of `--accounts FILE`: one `NAME HASH` a line (blank lines and `#` comments
/// aside), each name under the room's rules, each hash an Argon2id PHC string, no two names
/// alike. An error names the file and the line.
pub fn read_accounts(
    path: &std::path::Path,
    max_name_chars: u32,
) -> std::io::Result<Vec<chat_core::accounts::Account>> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot read accounts {shown}: {e}")))?;
    let mut accounts: Vec<chat_core::accounts::Account> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| {
            let n = n + 1;
            std::io::Error::other(format!("accounts {shown}, line {n}: {why}"))
        };
        let mut words = line.split_whitespace();
        let (Some(name), Some(hash), None) = (words.next(), words.next(), words.next()) else {
            return Err(bad("expected NAME HASH"));
        };
        chat_core::check_name(name, max_name_chars).map_err(|rule| bad(&rule.to_string()))?;
        let argon2id = hash.starts_with("$argon2id$") && PasswordHash::new(hash).is_ok();
        if !argon2id {
            return Err(bad(
                "the hash is not an Argon2id PHC string (chat-server hash-password)",
            ));
        }
        let key: Arc<str> = chat_core::fold_name(name).into();
        if let Some(other) = accounts.iter().find(|a| a.key == key) {
            return Err(bad(&format!("{name} looks like {} above", other.name)));
        }
        accounts.push(chat_core::accounts::Account {
            key,
            name: chat_core::display_name(name).into(),
            hash: hash.into(),
        });
    }
    Ok(accounts)
}

/// What `work` comes to.
fn perform(work: &PasswordWork) -> Verdict {
    let hashed = |p: &str| hash(p).map_or(Verdict::Busy, |h| Verdict::Hashed(h.into()));
    match work {
        PasswordWork::Verify { hash, password } if verify(hash, password.expose()) => {
            Verdict::Match
        }
        PasswordWork::Verify { .. } => Verdict::Mismatch,
        PasswordWork::Hash { password } => hashed(password.expose()),
        PasswordWork::Change { hash, old, new } if verify(hash, old.expose()) => {
            hashed(new.expose())
        }
        PasswordWork::Change { .. } => Verdict::Mismatch,
    }
}

/// The pool's queue. Dropping it lets the threads finish what they hold and end.
#[derive(Debug)]
pub(crate) struct Pool {
    jobs: SyncSender<(Ticket, PasswordWork)>,
    stats: Arc<Stats>,
}

impl Pool {
    /// Starts [`WORKERS`] threads that answer the room through `events`.
    pub(crate) fn start(
        events: async_channel::Sender<Event>,
        stats: Arc<Stats>,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = std::sync::mpsc::sync_channel(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..WORKERS {
            let (queue, events, stats) = (queue.clone(), events.clone(), stats.clone());
            std::thread::Builder::new()
                .name(format!("chat-hash-{i}"))
                .spawn(move || work(&queue, &events, &stats))?;
        }
        Ok(Self { jobs, stats })
    }

    /// Queues `work`; the verdict comes back as an [`Input::Password`]. When the queue is full
    /// the verdict is [`Verdict::Busy`], returned here for the room at once.
    pub(crate) fn submit(&self, ticket: Ticket, work: PasswordWork) -> Option<Input> {
        let queued = self.stats.password_queued.fetch_add(1, Relaxed) + 1;
        match self.jobs.try_send((ticket, work)) {
            Ok(()) => {
                self.stats.password_queue_peak.fetch_max(queued, Relaxed);
                None
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.password_queued.fetch_sub(1, Relaxed);
                self.stats.password_busy.fetch_add(1, Relaxed);
                let verdict = Verdict::Busy;
                Some(Input::Password { ticket, verdict })
            }
        }
    }
}

/// One thread's loop: take work, do it, hand the verdict to the room; end when the pool or
/// the room is gone.
fn work(
    queue: &Mutex<Receiver<(Ticket, PasswordWork)>>,
    events: &async_channel::Sender<Event>,
    stats: &Stats,
) {
    loop {
        // A poisoned lock only means another worker panicked holding it: the queue is fine.
        let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((ticket, work)) = job else { return };
        stats.password_queued.fetch_sub(1, Relaxed);
        let verdict = perform(&work);
        stats.password_checks.fetch_add(1, Relaxed);
        let input = Input::Password { ticket, verdict };
        if events.send_blocking(Event::Input(input)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_argon2id_with_owasp_parameters_and_a_fresh_salt_each_time() {
        let a = hash("correct horse").unwrap();
        let b = hash("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify(&a, "correct horse"));
        assert!(!verify(&a, "correct horsf"));
        assert!(!verify("not a hash", "correct horse"));
    }

    #[test]
    fn an_accounts_file_gives_names_and_hashes_and_its_errors_name_the_line() {
        let dir = std::env::temp_dir().join(format!("chat-accounts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("accounts");
        let hash = hash("pw").unwrap();
        let write = |text: &str| std::fs::write(&path, text).unwrap();
        write(&format!("# operators\n\nAlice {hash}\nbob {hash}\n"));
        let accounts = read_accounts(&path, 32).unwrap();
        let names: Vec<_> = accounts.iter().map(|a| (&*a.key, &*a.name)).collect();
        assert_eq!(names, [("alice", "Alice"), ("bob", "bob")]);
        let error = |text: &str| {
            write(text);
            read_accounts(&path, 32).unwrap_err().to_string()
        };
        let shown = path.display();
        assert_eq!(
            error(&format!("alice {hash}\nALICE {hash}\n")),
            format!("accounts {shown}, line 2: ALICE looks like alice above")
        );
        assert_eq!(
            error("alice secret\n"),
            format!(
                "accounts {shown}, line 1: the hash is not an Argon2id PHC string \
                 (chat-server hash-password)"
            )
        );
        assert_eq!(
            error("alice\n"),
            format!("accounts {shown}, line 1: expected NAME HASH")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
