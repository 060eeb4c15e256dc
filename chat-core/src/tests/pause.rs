//! A driver that did not run for a while ([`Input::Paused`]): what members sent at the rate
//! meanwhile arrives at once and is not held against them; a flooder is still limited; the
//! pause is not silence for the deadlines.

use super::*;

/// 5 requests a second, a burst of 5, closed at the third refusal in a row.
fn slow_room() -> Harness {
    let mut h = Harness::with(Config {
        rate_per_sec: 5,
        burst: 5,
        flood_strikes: 2,
        ..config()
    });
    h.join(1, "alice");
    h.join(2, "bob");
    h.now += Duration::from_secs(1); // refill what the hellos took
    h
}

/// The driver stops for `pause`, then tells the room.
fn pause(h: &mut Harness, pause: Duration) -> Vec<Output> {
    let since = h.now;
    h.now += pause;
    h.input(Input::Paused { since })
}

const LIMITED: ServerMsg = ServerMsg::Error(ErrorKind::RateLimited);

#[test]
fn without_word_of_the_pause_what_piled_up_reads_as_a_flood() {
    // What the issue saw: 20 s of chats at 1/s below the rate, read at once, close alice.
    let mut h = slow_room();
    h.now += Duration::from_secs(20);
    let out: Vec<Output> = (0..80).flat_map(|_| h.recv(1, chat("x"))).collect();
    assert!(out.contains(&send(1, LIMITED)));
    assert!(out.contains(&close(1, CloseReason::Flood)));
}

#[test]
fn members_that_kept_to_the_rate_through_a_pause_are_neither_refused_nor_closed() {
    let mut h = slow_room();
    assert_eq!(pause(&mut h, Duration::from_secs(20)), vec![]);
    // 4 a second for 20 s each, read in one go, interleaved as the readers found them.
    for i in 0..80 {
        for id in [1, 2] {
            assert!(chat_passed(&h.recv(id, chat("x"))), "chat {i} of {id}");
        }
    }
    // And on at the rate after it.
    for _ in 0..20 {
        h.now += Duration::from_millis(200);
        assert!(chat_passed(&h.recv(1, chat("on"))));
    }
    assert_eq!(h.room.member_count(), 2);
}

#[test]
fn a_member_that_flooded_during_the_pause_gets_the_rate_times_the_pause_then_is_closed() {
    let mut h = slow_room();
    pause(&mut h, Duration::from_secs(20));
    // 5/s for 20 s lent, and the burst of 5 the bucket refilled to: 105 pass, not one more.
    for i in 0..105 {
        assert!(chat_passed(&h.recv(1, chat("x"))), "chat {i}");
    }
    assert_eq!(h.recv(1, chat("x")), vec![send(1, LIMITED)]);
    assert_eq!(h.recv(1, chat("x")), vec![send(1, LIMITED)]);
    assert_eq!(
        h.recv(1, chat("x")),
        vec![
            close(1, CloseReason::Flood),
            broadcast(None, h.left("alice", CloseReason::Flood)),
        ]
    );
    // Lent to each alone: bob's share is his.
    for _ in 0..105 {
        assert!(chat_passed(&h.recv(2, chat("y"))));
    }
    assert_eq!(h.recv(2, chat("y")), vec![send(2, LIMITED)]);
}

#[test]
fn what_was_lent_for_a_pause_lapses_after_the_grace() {
    let mut h = slow_room();
    pause(&mut h, Duration::from_secs(20));
    assert!(chat_passed(&h.recv(1, chat("read late"))));
    h.now += PAUSE_GRACE + Duration::from_millis(1);
    // The bucket's burst alone is left.
    for _ in 0..5 {
        assert!(chat_passed(&h.recv(1, chat("x"))));
    }
    assert_eq!(h.recv(1, chat("x")), vec![send(1, LIMITED)]);
}

#[test]
fn two_pauses_within_the_grace_lend_for_both() {
    let mut h = slow_room();
    pause(&mut h, Duration::from_secs(4)); // 20 lent
    for _ in 0..10 {
        assert!(chat_passed(&h.recv(1, chat("x"))));
    }
    pause(&mut h, Duration::from_secs(2)); // 10 more: 20 left, and the burst of 5
    for i in 0..25 {
        assert!(chat_passed(&h.recv(1, chat("x"))), "chat {i}");
    }
    assert_eq!(h.recv(1, chat("x")), vec![send(1, LIMITED)]);
}

#[test]
fn a_pause_is_not_silence_for_the_deadlines() {
    // Handshake 5 s, ping after 10 s of silence, closed after 20 s.
    let mut h = Harness::new();
    h.join(1, "alice");
    h.now += Duration::from_secs(4);
    h.open(2); // no hello yet
    h.now += Duration::from_secs(1);
    // 30 s away: past every deadline by the clock, none by the time the room ran.
    assert_eq!(pause(&mut h, Duration::from_secs(30)), vec![]);
    assert_eq!(h.input(Input::Tick), vec![]);
    // 5 s of silence before the pause, so the ping is due 5 s after it, the handshake's end
    // 4 s after it.
    assert_eq!(
        h.advance(Duration::from_secs(4) - Duration::from_millis(1)),
        vec![]
    );
    assert_eq!(
        h.advance(Duration::from_millis(1)),
        vec![close(2, CloseReason::HandshakeTimeout)]
    );
    assert_eq!(h.advance(Duration::from_millis(999)), vec![]);
    let out = h.advance(Duration::from_millis(1));
    assert!(
        matches!(
            out[..],
            [Output::Send {
                to: ConnId(1),
                msg: ServerMsg::Ping { .. }
            }]
        ),
        "{out:?}"
    );
}

#[test]
fn a_pause_that_is_none_changes_nothing() {
    let mut h = slow_room();
    let since = h.now + Duration::from_secs(5); // later than now: a confused driver
    assert_eq!(h.input(Input::Paused { since }), vec![]);
    for _ in 0..5 {
        assert!(chat_passed(&h.recv(1, chat("x"))));
    }
    assert_eq!(h.recv(1, chat("x")), vec![send(1, LIMITED)]);
}
