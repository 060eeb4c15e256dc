//! Accounts: register, log in with the password (look-alikes too), wrong passwords throttled
//! with a growing delay in bounded tables, `--require-account`, and the password work going out
//! as outputs. The tests play the driver's hashing pool with a stand-in hash
//! (`hash:<password>`): the room never looks inside one, it only passes it along.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use chat_proto::{ClientMsg, ErrorKind, MAGIC, PROTOCOL_VERSION, Password, Refusal, ServerMsg};

use super::*;
use crate::accounts::Account;
use crate::room::accounts::MAX_TRACKED;

fn hello_pw(name: &str, password: &str) -> ClientMsg {
    ClientMsg::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        name: name.into(),
        password: Some(password.into()),
        ident: None,
    }
}

fn account(name: &str, password: &str) -> Account {
    Account {
        key: fold_name(name).into(),
        name: name.into(),
        hash: format!("hash:{password}").into(),
    }
}

/// The one password request in `out`, as `(ticket, work)`; panics on anything else.
fn work(out: &[Output]) -> (Ticket, PasswordWork) {
    match out {
        [Output::Password { ticket, work }] => (*ticket, work.clone()),
        _ => panic!("not one password request: {out:?}"),
    }
}

/// What the driver's pool would answer, with the stand-in hash.
fn perform(work: &PasswordWork) -> Verdict {
    let hash = |p: &Password| Arc::from(format!("hash:{}", p.expose()));
    match work {
        PasswordWork::Verify { hash: h, password } if *h == hash(password) => Verdict::Match,
        PasswordWork::Verify { .. } => Verdict::Mismatch,
        PasswordWork::Hash { password } => Verdict::Hashed(hash(password)),
        PasswordWork::Change { hash: h, old, new } if *h == hash(old) => Verdict::Hashed(hash(new)),
        PasswordWork::Change { .. } => Verdict::Mismatch,
    }
}

fn addr(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
}

impl Harness {
    /// Carries out the one password request in `out` and returns what follows.
    fn perform(&mut self, out: &[Output]) -> Vec<Output> {
        let (ticket, work) = work(out);
        let verdict = perform(&work);
        self.input(Input::Password { ticket, verdict })
    }

    /// A room with these accounts already (as a store would give them).
    fn with_accounts(config: Config, accounts: Vec<Account>) -> Self {
        let mut h = Self::with(config.clone());
        let log = Sequencer::new(config.max_clients, EPOCH).with_accounts(accounts);
        h.room = Room::with_log(config, log).unwrap();
        h.room.set_clock(h.now, T0);
        h
    }

    /// `id`, from `from`, says hello as `name` with `password`: what the room answers once the
    /// password was checked, or at once when it is not.
    fn log_in(&mut self, id: u64, from: IpAddr, name: &str, password: &str) -> Vec<Output> {
        assert!(self.input(Input::OpenedFrom(ConnId(id), from)).is_empty());
        let out = self.recv(id, hello_pw(name, password));
        match out.as_slice() {
            [Output::Password { .. }] => self.perform(&out),
            _ => out,
        }
    }
}

#[test]
fn a_member_registers_its_name_and_then_a_hello_for_it_needs_the_password() {
    let mut h = Harness::new();
    h.join(1, "alice");
    assert_eq!(h.room.account_of(ConnId(1)), None);
    let out = h.recv(
        1,
        ClientMsg::Register {
            password: "s3cret".into(),
        },
    );
    assert!(matches!(work(&out).1, PasswordWork::Hash { .. }));
    let registered = ServerMsg::Registered {
        name: "alice".into(),
    };
    assert_eq!(h.perform(&out), vec![send(1, registered)]);
    assert_eq!(h.room.account_of(ConnId(1)), Some("alice"));
    assert_eq!(
        h.room.accounts().map(|a| &*a.name).collect::<Vec<_>>(),
        ["alice"]
    );
    h.recv(1, leave());

    // No password: the name is registered. A wrong one: wrong. The right one: welcome.
    h.open(2);
    let out = h.recv(2, hello("alice"));
    assert_eq!(
        out,
        vec![send(2, ServerMsg::Refused(Refusal::NameRegistered))]
    );
    let out = h.recv(2, hello_pw("alice", "guess"));
    assert_eq!(
        h.perform(&out),
        vec![send(2, ServerMsg::Refused(Refusal::WrongPassword))]
    );
    let out = h.recv(2, hello_pw("alice", "s3cret"));
    let out = h.perform(&out);
    assert_eq!(welcome(&out).0, "alice");
    assert_eq!(h.room.account_of(ConnId(2)), Some("alice"));
    // A name nobody registered ignores a password given with it.
    h.open(3);
    let out = h.recv(3, hello_pw("bob", "anything"));
    assert_eq!(welcome(&out).0, "bob");
    assert_eq!(h.room.account_of(ConnId(3)), None);
}

#[test]
fn a_look_alike_of_a_registered_name_needs_its_password_and_a_rename_cannot_take_it() {
    let mut h = Harness::with_accounts(config(), vec![account("alice", "pw")]);
    for (id, name) in [(1, "ALICE"), (2, "a1ice"), (3, "ａｌｉｃｅ")] {
        h.open(id);
        let out = h.recv(id, hello(name));
        assert_eq!(
            out,
            vec![send(id, ServerMsg::Refused(Refusal::NameRegistered))],
            "{name}"
        );
    }
    let out = h.recv(1, hello_pw("ALICE", "pw"));
    assert_eq!(welcome(&h.perform(&out)).0, "ALICE");
    h.join(4, "bob");
    let out = h.recv(
        4,
        ClientMsg::Nick {
            name: "Alice".into(),
        },
    );
    // Held by ALICE now: taken; once ALICE leaves, still registered.
    assert_eq!(out, vec![send(4, ServerMsg::Error(ErrorKind::NameTaken))]);
    h.recv(1, leave());
    let out = h.recv(
        4,
        ClientMsg::Nick {
            name: "Alice".into(),
        },
    );
    assert_eq!(
        out,
        vec![send(4, ServerMsg::Error(ErrorKind::NameRegistered))]
    );
}

#[test]
fn wrong_passwords_are_refused_without_a_check_for_a_delay_that_grows() {
    let config = Config {
        handshake_timeout: Duration::from_secs(600),
        ..config()
    };
    let mut h = Harness::with_accounts(config, vec![account("alice", "pw")]);
    let from = addr(1);
    let wrong = vec![send(1, ServerMsg::Refused(Refusal::WrongPassword))];
    h.input(Input::OpenedFrom(ConnId(1), from));
    let try_once = |h: &mut Harness| {
        let out = h.recv(1, hello_pw("alice", "guess"));
        let checked = matches!(out.as_slice(), [Output::Password { .. }]);
        let out = if checked { h.perform(&out) } else { out };
        assert_eq!(out, wrong);
        checked
    };
    // Three free failures, each checked.
    for _ in 0..3 {
        assert!(try_once(&mut h));
    }
    // Then 1 s, 2 s, 4 s: refused at once (no hashing) until the delay is over.
    for delay in [1, 2, 4] {
        assert!(!try_once(&mut h), "refused at once while delayed");
        h.advance(Duration::from_millis(delay * 1000 - 1));
        assert!(!try_once(&mut h), "still delayed just before {delay} s");
        h.advance(Duration::from_millis(1));
        assert!(try_once(&mut h), "checked after {delay} s");
    }
    // The right password is refused too while delayed: the delay says nothing of it.
    let out = h.recv(1, hello_pw("alice", "pw"));
    assert_eq!(out, wrong);
    // From another address, the account's own delay (at most a minute) still applies...
    h.input(Input::OpenedFrom(ConnId(2), addr(2)));
    let out = h.recv(2, hello_pw("alice", "pw"));
    assert_eq!(
        out,
        vec![send(2, ServerMsg::Refused(Refusal::WrongPassword))]
    );
    // ...and then the owner gets in, which forgets the account's failures.
    h.advance(Duration::from_secs(60));
    let out = h.recv(2, hello_pw("alice", "pw"));
    assert_eq!(welcome(&h.perform(&out)).0, "alice");
}

#[test]
fn the_tables_of_failures_stay_bounded_under_many_addresses_and_accounts() {
    let n = MAX_TRACKED as u32 + 100;
    let accounts = (0..n).map(|i| account(&format!("user{i}"), "pw")).collect();
    let config = Config {
        max_handshakes: 4,
        ..config()
    };
    let mut h = Harness::with_accounts(config, accounts);
    for i in 0..n {
        let out = h.log_in(u64::from(i), addr(i), &format!("user{i}"), "guess");
        assert_eq!(
            out,
            vec![send(
                u64::from(i),
                ServerMsg::Refused(Refusal::WrongPassword)
            )]
        );
        h.input(Input::Closed(ConnId(u64::from(i))));
        let (addrs, keys) = h.room.throttle_tracked();
        assert!(
            addrs <= MAX_TRACKED && keys <= MAX_TRACKED,
            "{addrs} {keys}"
        );
    }
    assert_eq!(h.room.throttle_tracked(), (MAX_TRACKED, MAX_TRACKED));
}

#[test]
fn with_require_account_only_registered_names_join() {
    let config = Config {
        require_account: true,
        ..config()
    };
    let mut h = Harness::with_accounts(config, vec![account("alice", "pw")]);
    h.open(1);
    let out = h.recv(1, hello("bob"));
    assert_eq!(
        out,
        vec![send(1, ServerMsg::Refused(Refusal::AccountRequired))]
    );
    let out = h.log_in(2, addr(2), "alice", "pw");
    assert_eq!(welcome(&out).0, "alice");
}

#[test]
fn passwd_needs_the_old_password_and_unregister_frees_the_name() {
    let mut h = Harness::with_accounts(config(), vec![account("alice", "old")]);
    let out = h.log_in(1, addr(1), "alice", "old");
    welcome(&out);
    let passwd = |old: &str, new: &str| ClientMsg::Passwd {
        old: old.into(),
        new: new.into(),
    };
    let out = h.recv(1, passwd("nope", "new"));
    assert_eq!(
        h.perform(&out),
        vec![send(1, ServerMsg::Error(ErrorKind::WrongPassword))]
    );
    let out = h.recv(1, passwd("old", ""));
    let invalid = ErrorKind::PasswordInvalid { max_bytes: 256 };
    assert_eq!(out, vec![send(1, ServerMsg::Error(invalid))]);
    // One change at a time.
    let out = h.recv(1, passwd("old", "new"));
    let busy = h.recv(1, ClientMsg::Unregister);
    assert_eq!(busy, vec![send(1, ServerMsg::Error(ErrorKind::Busy))]);
    let registered = ServerMsg::Registered {
        name: "alice".into(),
    };
    assert_eq!(h.perform(&out), vec![send(1, registered)]);
    assert_eq!(&*h.room.accounts().next().unwrap().hash, "hash:new");
    let out = h.recv(1, ClientMsg::Unregister);
    let unregistered = ServerMsg::Unregistered {
        name: "alice".into(),
    };
    assert_eq!(out, vec![send(1, unregistered)]);
    assert_eq!(h.room.account_of(ConnId(1)), None);
    let out = h.recv(1, ClientMsg::Unregister);
    assert_eq!(
        out,
        vec![send(1, ServerMsg::Error(ErrorKind::NotRegistered))]
    );
    h.recv(1, leave());
    h.open(2);
    assert_eq!(welcome(&h.recv(2, hello("alice"))).0, "alice");
}

#[test]
fn a_hello_waiting_for_its_check_still_has_its_deadline_and_a_busy_pool_is_unavailable() {
    let mut h = Harness::with_accounts(config(), vec![account("alice", "pw")]);
    h.open(1);
    let out = h.recv(1, hello_pw("alice", "pw"));
    let (ticket, _) = work(&out);
    // A second hello while the first is checked is not another check.
    let again = h.recv(1, hello_pw("alice", "pw"));
    assert_eq!(
        again,
        vec![send(1, ServerMsg::Refused(Refusal::AlreadyJoined))]
    );
    let out = h.advance(Duration::from_secs(5));
    assert_eq!(out, vec![close(1, CloseReason::HandshakeTimeout)]);
    // The verdict that comes too late finds nobody.
    let late = h.input(Input::Password {
        ticket,
        verdict: Verdict::Match,
    });
    assert!(late.is_empty());
    assert_eq!(h.room.member_count(), 0);

    h.open(2);
    let out = h.recv(2, hello_pw("alice", "pw"));
    let (ticket, _) = work(&out);
    let out = h.input(Input::Password {
        ticket,
        verdict: Verdict::Busy,
    });
    assert_eq!(out, vec![send(2, ServerMsg::Refused(Refusal::Unavailable))]);
}

#[test]
fn a_room_started_from_a_snapshot_knows_its_accounts_and_a_too_long_password_is_never_hashed() {
    let snapshot = Snapshot {
        epoch: EPOCH,
        accounts: vec![account("alice", "pw")],
        ..Snapshot::default()
    };
    let mut room = Room::shared(config(), NodeId(1), snapshot).unwrap();
    let now = Instant::now();
    room.handle_input(now, Input::Opened(ConnId(1))).unwrap();
    let long = "x".repeat(chat_proto::MAX_PASSWORD_BYTES + 1);
    room.handle_input(now, Input::Received(ConnId(1), hello_pw("alice", &long)))
        .unwrap();
    let out: Vec<Output> = std::iter::from_fn(|| room.poll_output()).collect();
    assert_eq!(
        out,
        vec![send(1, ServerMsg::Refused(Refusal::WrongPassword))]
    );
    room.handle_input(now, Input::Received(ConnId(1), hello_pw("alice", "pw")))
        .unwrap();
    let out: Vec<Output> = std::iter::from_fn(|| room.poll_output()).collect();
    assert!(matches!(work(&out).1, PasswordWork::Verify { .. }));
}
