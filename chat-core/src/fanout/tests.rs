//! The fan-out, in memory: examples with literal bytes, and random sequences of broadcasts,
//! private frames, follows, closes, stalls and short writes against what each connection must
//! receive.
//!
//! Checked per connection: frames in order, none twice, none skipped (only a too-slow or gone
//! connection, or a closing one the feed left behind, may miss the tail), no frame cut by
//! another, the closing frame last, and no lost wakeup: a waiting writer that was not woken has
//! nothing due.

use chat_proto::{CloseReason, ServerMsg};

use super::*;

/// xorshift: reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A frame whose payload starts with its id, so the receiver can tell which it got.
fn frame(id: u64, len: usize) -> Frame {
    let mut bytes = vec![0u8; 4 + 8 + len];
    bytes[..4].copy_from_slice(&((8 + len) as u32).to_le_bytes());
    bytes[4..12].copy_from_slice(&id.to_le_bytes());
    bytes.into()
}

fn closing(reason: CloseReason) -> Frame {
    chat_proto::encode_to_vec(&ServerMsg::Closing(reason))
        .unwrap()
        .into()
}

/// Closes as the hub does: a closing frame unless gone; no backlog for the slow or gone.
fn close(fanout: &mut Fanout, conn: ConnId, reason: CloseReason) {
    let gone = reason == CloseReason::Disconnected;
    let last = (!gone).then(|| closing(reason));
    fanout.close(conn, last, gone || reason == CloseReason::TooSlow);
}

/// Everything due for `conn`, written whole.
fn drain(fanout: &mut Fanout, conn: ConnId) -> Vec<u8> {
    let mut got = Vec::new();
    loop {
        let mut chunk = Vec::new();
        match fanout.due(conn, |f| {
            chunk.extend_from_slice(f);
            true
        }) {
            Due::Write => {
                got.extend_from_slice(&chunk);
                fanout.consumed(conn, chunk.len());
            }
            Due::Wait | Due::Done => return got,
        }
    }
}

fn concat(frames: &[&Frame]) -> Vec<u8> {
    frames.iter().flat_map(|f| f.iter().copied()).collect()
}

#[test]
fn a_broadcast_reaches_every_follower_but_its_sender() {
    let mut f = Fanout::new(1 << 20);
    for c in 1..=3 {
        f.open(ConnId(c));
        f.follow(ConnId(c));
    }
    let a = frame(1, 3);
    f.publish(a.clone(), Some(ConnId(2)));
    assert_eq!(drain(&mut f, ConnId(1)), concat(&[&a]));
    assert_eq!(drain(&mut f, ConnId(2)), Vec::<u8>::new());
    assert_eq!(drain(&mut f, ConnId(3)), concat(&[&a]));
}

#[test]
fn a_private_frame_goes_after_the_broadcasts_published_before_it() {
    let mut f = Fanout::new(1 << 20);
    f.open(ConnId(1));
    f.follow(ConnId(1));
    let (a, b, c) = (frame(1, 0), frame(2, 0), frame(3, 0));
    f.publish(a.clone(), None);
    f.send(ConnId(1), b.clone());
    f.publish(c.clone(), None);
    assert_eq!(drain(&mut f, ConnId(1)), concat(&[&a, &b, &c]));
}

/// A member that parts stays connected: what was broadcast before still reaches it, in order
/// with its own frames, and nothing published after; it may follow again.
#[test]
fn an_unfollowed_connection_gets_what_it_was_owed_and_nothing_later() {
    let mut f = Fanout::new(1 << 20);
    for c in 1..=2 {
        f.open(ConnId(c));
        f.follow(ConnId(c));
    }
    let (a, b, c, d, e) = (
        frame(1, 2),
        frame(2, 0),
        frame(3, 1),
        frame(4, 0),
        frame(5, 0),
    );
    f.publish(a.clone(), None);
    f.send(ConnId(1), b.clone());
    f.publish(c.clone(), Some(ConnId(1)));
    f.unfollow(ConnId(1));
    f.publish(d.clone(), None);
    f.send(ConnId(1), e.clone());
    assert_eq!(drain(&mut f, ConnId(1)), concat(&[&a, &b, &e]));
    assert_eq!(drain(&mut f, ConnId(2)), concat(&[&a, &c, &d]));
    f.follow(ConnId(1));
    let g = frame(6, 0);
    f.publish(g.clone(), None);
    assert_eq!(drain(&mut f, ConnId(1)), concat(&[&g]));
    assert_eq!(f.poll_stalled(), None);
}

/// Owed more than the bound when it unfollows: too slow, as a follower would be.
#[test]
fn an_unfollowed_connection_owed_more_than_the_bound_is_stalled() {
    let mut f = Fanout::new(100);
    f.open(ConnId(1));
    f.follow(ConnId(1));
    f.publish(frame(1, 60), None);
    f.publish(frame(2, 60), None);
    f.unfollow(ConnId(1));
    assert_eq!(f.poll_stalled(), Some(ConnId(1)));
}

#[test]
fn a_short_write_resumes_mid_frame() {
    let mut f = Fanout::new(1 << 20);
    f.open(ConnId(1));
    f.follow(ConnId(1));
    let (a, b) = (frame(1, 10), frame(2, 10));
    f.publish(a.clone(), None);
    f.publish(b.clone(), None);
    let mut first = Vec::new();
    f.due(ConnId(1), |s| {
        first.extend_from_slice(s);
        true
    });
    assert_eq!(first, concat(&[&a, &b]));
    assert_eq!(f.consumed(ConnId(1), 5), 0);
    let mut rest = Vec::new();
    f.due(ConnId(1), |s| {
        rest.extend_from_slice(s);
        true
    });
    assert_eq!(rest, first[5..]);
    assert_eq!(f.consumed(ConnId(1), rest.len()), 2);
    assert_eq!(f.due(ConnId(1), |_| true), Due::Wait);
}

#[test]
fn a_waiting_writer_is_woken_by_a_publish_a_send_and_a_close() {
    let mut f = Fanout::new(1 << 20);
    f.open(ConnId(1));
    f.follow(ConnId(1));
    assert_eq!(f.due(ConnId(1), |_| true), Due::Wait);
    assert_eq!(f.poll_wake(), None);
    f.publish(frame(1, 0), None);
    assert_eq!(f.poll_wake(), Some(ConnId(1)));
    drain(&mut f, ConnId(1));
    f.send(ConnId(1), frame(2, 0));
    assert_eq!(f.poll_wake(), Some(ConnId(1)));
    drain(&mut f, ConnId(1));
    close(&mut f, ConnId(1), CloseReason::Left);
    assert_eq!(f.poll_wake(), Some(ConnId(1)));
    assert_eq!(
        drain(&mut f, ConnId(1)),
        closing(CloseReason::Left).to_vec()
    );
    assert_eq!(f.due(ConnId(1), |_| true), Due::Done);
}

#[test]
fn the_feed_is_trimmed_behind_the_slowest_follower() {
    // 100 frames of 112 bytes, a bound of 1,000: the feed never holds more than the bound and a
    // half past what everyone wrote.
    let mut f = Fanout::new(1_000);
    f.open(ConnId(1));
    f.follow(ConnId(1));
    for id in 0..100 {
        f.publish(frame(id, 100), None);
        drain(&mut f, ConnId(1));
    }
    assert!(f.feed_len() <= 14, "feed holds {} entries", f.feed_len());
    assert_eq!(f.poll_stalled(), None);
}

#[test]
fn a_follower_past_the_bound_is_stalled_once_and_gets_nothing_more() {
    let mut f = Fanout::new(1_000);
    for c in 1..=2 {
        f.open(ConnId(c));
        f.follow(ConnId(c));
    }
    for id in 0..20 {
        f.publish(frame(id, 100), None);
        drain(&mut f, ConnId(1));
    }
    assert_eq!(f.poll_stalled(), Some(ConnId(2)));
    assert_eq!(f.poll_stalled(), None);
    assert!(f.is_behind(ConnId(2)));
    close(&mut f, ConnId(2), CloseReason::TooSlow);
    assert_eq!(
        drain(&mut f, ConnId(2)),
        closing(CloseReason::TooSlow).to_vec()
    );
    // The slow one no longer holds the feed back.
    f.publish(frame(99, 100), None);
    drain(&mut f, ConnId(1));
    assert!(f.feed_len() <= 14);
}

/// A fast sender whose writer has one notice and one private frame still to write, behind many
/// times the bound of its own broadcasts, is not slow: it gets the notice and the frame, in
/// order, and lets go of the feed. One that owes more than the bound is still stalled.
#[test]
fn a_senders_own_broadcasts_behind_an_unwritten_frame_are_no_lag() {
    let mut f = Fanout::new(1_000);
    for c in 1..=2 {
        f.open(ConnId(c));
        f.follow(ConnId(c));
    }
    let notice = frame(0, 50);
    f.publish(notice.clone(), None);
    let private = frame(1, 20);
    f.send(ConnId(1), private.clone());
    for id in 2..40 {
        f.publish(frame(id, 100), Some(ConnId(1)));
        drain(&mut f, ConnId(2));
    }
    assert_eq!(f.poll_stalled(), None, "the sender is not slow");
    assert!(f.feed_len() <= 14, "feed holds {} entries", f.feed_len());
    let last = frame(40, 10);
    f.publish(last.clone(), None);
    assert_eq!(
        drain(&mut f, ConnId(1)),
        concat(&[&notice, &private, &last])
    );

    // Owing more than the bound (the other member's broadcasts) is slow, own ones or not.
    for id in 41..60 {
        f.publish(frame(id, 100), Some(ConnId(2)));
        f.publish(frame(id + 100, 100), Some(ConnId(1)));
        drain(&mut f, ConnId(2));
    }
    assert_eq!(f.poll_stalled(), Some(ConnId(1)));
}

/// Writers that wait for a publish and go away, in a room where nothing is published, do not
/// pile up.
#[test]
fn churn_without_publishes_keeps_no_trace_of_those_gone() {
    let mut f = Fanout::new(1_000);
    for c in 0..10_000 {
        f.open(ConnId(c));
        f.follow(ConnId(c));
        assert_eq!(f.due(ConnId(c), |_| true), Due::Wait);
        f.remove(ConnId(c));
    }
    assert!(f.parked.len() <= 64, "{} parked", f.parked.len());
}

#[test]
fn a_connections_own_frames_have_their_own_bound() {
    let mut f = Fanout::new(1_000);
    f.open(ConnId(1));
    // One frame larger than the bound still goes when nothing else is waiting...
    f.send(ConnId(1), frame(1, 5_000));
    assert_eq!(f.poll_stalled(), None);
    // ...but a queue past the bound is too slow.
    f.send(ConnId(1), frame(2, 10));
    assert_eq!(f.poll_stalled(), Some(ConnId(1)));
    let mut f = Fanout::new(1_000);
    f.open(ConnId(1));
    for id in 0..8 {
        f.send(ConnId(1), frame(id, 100));
    }
    assert_eq!(f.poll_stalled(), None, "896 bytes is within 1,000");
    f.send(ConnId(1), frame(9, 100));
    assert_eq!(
        f.poll_stalled(),
        Some(ConnId(1)),
        "1,008 bytes is past 1,000"
    );
}

#[derive(Debug)]
struct Model {
    id: ConnId,
    following: bool,
    closed: Option<CloseReason>,
    /// The feed dropped it while it was closing.
    left_behind: bool,
    waiting: bool,
    woken: bool,
    done: bool,
    expected: Vec<u64>,
    got: Vec<u8>,
}

impl Model {
    fn check(&self, seed: u64) {
        let (mut ids, mut closings, mut at) = (Vec::new(), Vec::new(), 0);
        let got = &self.got;
        while at + 4 <= got.len() {
            let len = u32::from_le_bytes(got[at..at + 4].try_into().unwrap()) as usize;
            if at + 4 + len > got.len() {
                break;
            }
            let payload = &got[at + 4..at + 4 + len];
            if len >= 8 {
                ids.push(u64::from_le_bytes(payload[..8].try_into().unwrap()));
            } else {
                closings.push((ids.len(), got[at..at + 4 + len].to_vec()));
            }
            at += 4 + len;
        }
        let id = self.id;
        let reason = self.closed.expect("closed");
        if reason == CloseReason::Disconnected {
            // Nobody is reading: a frame may stop half-way.
            assert!(
                closings.is_empty(),
                "seed {seed} {id:?}: closing frame after a disconnect"
            );
        } else {
            assert_eq!(
                at,
                got.len(),
                "seed {seed} {id:?}: bytes after the last frame"
            );
            assert_eq!(
                closings,
                vec![(ids.len(), closing(reason).to_vec())],
                "seed {seed} {id:?}: closing frame"
            );
        }
        if matches!(reason, CloseReason::TooSlow | CloseReason::Disconnected) || self.left_behind {
            assert_eq!(
                ids[..],
                self.expected[..ids.len()],
                "seed {seed} {id:?}: order"
            );
        } else {
            assert_eq!(
                ids, self.expected,
                "seed {seed} {id:?}: exactly what was due"
            );
        }
    }
}

/// `own_percent`: the share of broadcasts sent by connection 0, which it never gets back.
fn run(seed: u64, max_bytes: usize, ops: usize, own_percent: u64) {
    let mut rng = Rng(seed | 1);
    let mut f = Fanout::new(max_bytes);
    let mut conns: Vec<Model> = (0..3u64)
        .map(|i| {
            f.open(ConnId(i));
            Model {
                id: ConnId(i),
                following: false,
                closed: None,
                left_behind: false,
                waiting: false,
                woken: false,
                done: false,
                expected: Vec::new(),
                got: Vec::new(),
            }
        })
        .collect();
    let mut next_id = 1u64;
    let close_model = |f: &mut Fanout, c: &mut Model, reason: CloseReason| {
        if c.closed.is_none() {
            c.closed = Some(reason);
            close(f, c.id, reason);
        }
    };
    for _ in 0..ops {
        let k = rng.below(3) as usize;
        let size = if rng.below(4) == 0 {
            rng.below(150_000)
        } else {
            rng.below(300)
        } as usize;
        match rng.below(100) {
            0..=29 => {
                let except = if rng.below(100) < own_percent {
                    Some(ConnId(0))
                } else {
                    match rng.below(4) {
                        3 => None,
                        x => Some(ConnId(x)),
                    }
                };
                let id = next_id;
                next_id += 1;
                for c in conns.iter_mut() {
                    let open = c.closed.is_none() && !f.is_behind(c.id);
                    if c.following && open && except != Some(c.id) {
                        c.expected.push(id);
                    }
                }
                f.publish(frame(id, size), except);
            }
            30..=44 => {
                let id = next_id;
                next_id += 1;
                let c = &mut conns[k];
                if c.closed.is_none() && !f.is_behind(c.id) {
                    f.send(c.id, frame(id, size));
                    if !f.is_behind(c.id) {
                        c.expected.push(id);
                    }
                }
            }
            45..=49 => {
                // Sometimes followed with nothing sent first: the writer must still wake.
                let c = &mut conns[k];
                if c.closed.is_none() && !c.following {
                    c.following = true;
                    f.follow(c.id);
                }
            }
            50..=51 => {
                let reasons = [
                    CloseReason::Left,
                    CloseReason::TooSlow,
                    CloseReason::Disconnected,
                    CloseReason::ServerShutdown,
                ];
                let reason = reasons[rng.below(4) as usize];
                close_model(&mut f, &mut conns[k], reason);
            }
            _ => {
                // A writer step with a write that may be cut short.
                let c = &mut conns[k];
                if c.done || (c.waiting && !c.woken) {
                    continue;
                }
                if own_percent > 0 && k == 0 && rng.below(8) != 0 {
                    continue; // the sender's writer gets fewer turns than its reader
                }
                c.waiting = false;
                c.woken = false;
                let max_slices = 1 + rng.below(8) as usize;
                let mut chunk = Vec::new();
                let mut n = 0;
                match f.due(c.id, |s| {
                    chunk.extend_from_slice(s);
                    n += 1;
                    n < max_slices
                }) {
                    Due::Write => {
                        let written = if rng.below(2) == 0 {
                            chunk.len()
                        } else {
                            1 + rng.below(chunk.len() as u64) as usize
                        };
                        c.got.extend_from_slice(&chunk[..written]);
                        f.consumed(c.id, written);
                    }
                    Due::Wait => c.waiting = true,
                    Due::Done => c.done = true,
                }
            }
        }
        // The room's side: close the stalled as too slow; note who the feed dropped.
        while let Some(id) = f.poll_stalled() {
            assert!(
                max_bytes < 1 << 30,
                "seed {seed}: {id:?} stalled under a bound nobody reaches"
            );
            close_model(&mut f, &mut conns[id.0 as usize], CloseReason::TooSlow);
        }
        while let Some(id) = f.poll_wake() {
            conns[id.0 as usize].woken = true;
        }
        for c in conns.iter_mut() {
            if c.closed.is_some() && c.following && f.lag(c.id).is_none() && !c.done {
                c.left_behind = true;
            }
            if c.waiting && !c.woken {
                assert!(
                    !f.has_due(c.id) && (c.done || !f.is_closing(c.id)),
                    "seed {seed}: lost wakeup on {:?}",
                    c.id
                );
            }
        }
    }
    for c in conns.iter_mut() {
        close_model(&mut f, c, CloseReason::Left);
    }
    for c in conns.iter_mut() {
        c.got.extend(drain(&mut f, c.id));
        assert_eq!(
            f.due(c.id, |_| true),
            Due::Done,
            "seed {seed}: {:?} never finished",
            c.id
        );
        c.check(seed);
        f.remove(c.id);
    }
    assert_eq!(f.conn_count(), 0, "seed {seed}: connections left behind");
}

#[test]
fn random_traffic_with_a_bound_nobody_reaches() {
    for seed in 1..200 {
        run(seed * 7919, 1 << 30, 400, 0);
    }
}

#[test]
fn random_traffic_with_a_small_bound_trims_and_stalls() {
    for seed in 1..600 {
        run(seed * 104_729, 300_000, 600, 0);
    }
}

/// A member that sends most of the traffic: its cursor is often held back by its own broadcasts
/// behind a frame it has yet to write, and what it owes moves to its own queue, in order.
#[test]
fn random_traffic_mostly_from_one_sender() {
    for seed in 1..600 {
        run(seed * 15_485_863, 300_000, 600, 80);
    }
}
