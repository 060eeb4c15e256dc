//! Random sequences of broadcasts, private frames, subscribes, closes, writer steps and partial
//! reads over real loopback sockets, against what each connection must receive.
//!
//! Checked per connection: frames in order, none twice, none skipped (only a too-slow or gone
//! connection may miss the tail), no frame cut by another, the closing frame last, and no lost
//! wakeup: a parked writer that was not woken has nothing due.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Wake};

use super::*;

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

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

struct Conn {
    id: ConnId,
    outbox: Outbox,
    drain: Drain,
    server: TcpStream,
    client: TcpStream,
    flag: Arc<Flag>,
    waker: Waker,
    parked: bool,
    done: bool,
    subscribed: bool,
    /// The reason the connection was told, once closed.
    closed: Option<CloseReason>,
    /// Ids of the frames it must receive, in order.
    expected: Vec<u64>,
    got: Vec<u8>,
}

impl Conn {
    fn close(&mut self, reason: CloseReason) {
        if self.closed.is_none() {
            self.closed = Some(self.outbox.close(reason));
        }
    }

    fn step_writer(&mut self, stats: &Stats) {
        if self.done || (self.parked && !self.flag.0.load(Ordering::SeqCst)) {
            return;
        }
        self.parked = false;
        self.flag.0.store(false, Ordering::SeqCst);
        let mut cx = Context::from_waker(&self.waker);
        let mut ready = std::pin::pin!(self.drain.ready());
        match ready.as_mut().poll(&mut cx) {
            Poll::Ready(true) => {
                self.drain.write_due(&self.server, stats).unwrap();
            }
            Poll::Ready(false) => self.done = true,
            Poll::Pending => self.parked = true,
        }
    }

    fn read_some(&mut self, rng: &mut Rng, all: bool) {
        let mut buf = vec![
            0u8;
            if all {
                1 << 20
            } else {
                1 + rng.below(200_000) as usize
            }
        ];
        loop {
            match self.client.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    self.got.extend_from_slice(&buf[..n]);
                    if !all {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// What arrived, against what was expected.
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
        let left_behind = self.drain.state.borrow().stalled;
        if reason == CloseReason::Disconnected {
            assert!(
                closings.is_empty(),
                "seed {seed} {id:?}: closing frame after a disconnect"
            );
        } else {
            let closing = chat_proto::encode_to_vec(&ServerMsg::Closing(reason)).unwrap();
            assert_eq!(
                at,
                got.len(),
                "seed {seed} {id:?}: bytes after the last whole frame"
            );
            assert_eq!(
                closings,
                vec![(ids.len(), closing)],
                "seed {seed} {id:?}: closing frame"
            );
        }
        if matches!(reason, CloseReason::TooSlow | CloseReason::Disconnected) || left_behind {
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

fn frame(id: u64, len: usize) -> Frame {
    let mut bytes = vec![0u8; 4 + 8 + len];
    bytes[..4].copy_from_slice(&((8 + len) as u32).to_le_bytes());
    bytes[4..12].copy_from_slice(&id.to_le_bytes());
    bytes.into()
}

fn run(seed: u64, max_bytes: usize, ops: usize) {
    let mut rng = Rng(seed | 1);
    let stats = Stats::default();
    let feed = Feed::new(max_bytes);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut conns: Vec<Conn> = (0..3u64)
        .map(|i| {
            let (outbox, drain) = outbox(ConnId(i), &feed);
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().unwrap();
            server.set_nonblocking(true).unwrap();
            client.set_nonblocking(true).unwrap();
            let flag = Arc::new(Flag(AtomicBool::new(false)));
            Conn {
                id: ConnId(i),
                outbox,
                drain,
                server,
                client,
                waker: Waker::from(flag.clone()),
                flag,
                parked: false,
                done: false,
                subscribed: false,
                closed: None,
                expected: Vec::new(),
                got: Vec::new(),
            }
        })
        .collect();
    let mut next_id = 1u64;
    for _ in 0..ops {
        let k = rng.below(3) as usize;
        let size = if rng.below(4) == 0 {
            rng.below(150_000)
        } else {
            rng.below(300)
        } as usize;
        match rng.below(100) {
            0..=29 => {
                let except = match rng.below(4) {
                    3 => None,
                    x => Some(ConnId(x)),
                };
                let id = next_id;
                next_id += 1;
                for c in conns.iter_mut() {
                    if c.subscribed && c.closed.is_none() && except != Some(c.id) {
                        c.expected.push(id);
                    }
                }
                for stalled in feed.append(frame(id, size), except, &stats) {
                    conns[stalled.0 as usize].close(CloseReason::TooSlow);
                }
            }
            30..=44 => {
                let c = &mut conns[k];
                let id = next_id;
                next_id += 1;
                if c.closed.is_none() {
                    match c.outbox.send(frame(id, size), &stats) {
                        Ok(()) => c.expected.push(id),
                        Err(Overflow) => c.close(CloseReason::TooSlow),
                    }
                }
            }
            45..=49 => {
                // Sometimes subscribed with nothing sent first: the writer must still wake.
                let c = &mut conns[k];
                if c.closed.is_none() && !c.subscribed {
                    c.subscribed = true;
                    c.outbox.subscribe();
                }
            }
            50..=51 => {
                let reasons = [
                    CloseReason::Left,
                    CloseReason::TooSlow,
                    CloseReason::Disconnected,
                    CloseReason::ServerShutdown,
                ];
                conns[k].close(reasons[rng.below(4) as usize]);
            }
            52..=79 => conns[k].step_writer(&stats),
            _ => {
                let c = &mut conns[k];
                if rng.below(3) > 0 || c.closed.is_some() {
                    c.read_some(&mut rng, false);
                }
            }
        }
        for c in &conns {
            if c.parked && !c.flag.0.load(Ordering::SeqCst) {
                let feed = feed.state.borrow();
                let state = c.drain.state.borrow();
                assert!(
                    !state.has_due(&feed) && !state.closing,
                    "seed {seed}: lost wakeup on {:?}",
                    c.id
                );
            }
        }
    }
    for c in conns.iter_mut() {
        c.close(CloseReason::Left);
    }
    for _ in 0..100_000 {
        let mut all = true;
        for c in conns.iter_mut() {
            c.step_writer(&stats);
            c.read_some(&mut rng, true);
            all &= c.done;
        }
        if all {
            break;
        }
    }
    for c in &conns {
        assert!(c.done, "seed {seed}: writer {:?} never finished", c.id);
        c.check(seed);
    }
    drop(conns);
    assert!(
        feed.state.borrow().subscribers.is_empty(),
        "seed {seed}: subscribers left behind"
    );
}

#[test]
fn random_traffic_with_a_bound_nobody_reaches() {
    for seed in 1..60 {
        run(seed * 7919, 1 << 30, 400);
    }
}

#[test]
fn random_traffic_with_a_small_bound_trims_and_stalls() {
    for seed in 1..300 {
        run(seed * 104_729, 300_000, 600);
    }
}
