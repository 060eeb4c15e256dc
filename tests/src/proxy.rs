//! A loopback TCP proxy for failure tests: put it between a client and a server, then cut the
//! link (a partition: nothing closes, bytes are held), restore it, or kill every connection.
//!
//! ```no_run
//! # let redis_addr: std::net::SocketAddr = "127.0.0.1:6379".parse().unwrap();
//! use tests::proxy::Proxy;
//! let proxy = Proxy::start(redis_addr);
//! // connect the client to proxy.addr() ...
//! proxy.cut(); // requests now hang: no FIN, no RST
//! proxy.restore(); // held bytes flow again, new connections work
//! proxy.kill_connections(); // every proxied connection is shut down
//! ```

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How long the proxy tries to reach the target for a new connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP proxy on 127.0.0.1 that forwards to one target, with a thread per direction.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when `cut` clears or `stopping` is set.
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    cut: bool,
    stopping: bool,
    next_id: u64,
    /// Both sockets of every live connection (client side, target side), to shut them down.
    conns: HashMap<u64, [TcpStream; 2]>,
    /// Connections `kill_connections` ended: their threads stop waiting for a restore.
    killed: HashSet<u64>,
    /// The opening and forwarding threads, joined on drop.
    threads: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on 127.0.0.1 port 0 and forwards every accepted connection to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("proxy: local address");
        let shared = Arc::new(Shared::default());
        let accept = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("proxy-accept".into())
                .spawn(move || accept_loop(&listener, target, &shared))
                .expect("proxy: spawn accept thread")
        };
        Proxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops forwarding in both directions without closing anything: bytes already read are
    /// held, further bytes wait in the kernel's buffers, new connections are accepted but not
    /// forwarded. Like a network partition, neither end sees a FIN or a RST.
    pub fn cut(&self) {
        self.shared.lock().cut = true;
    }

    /// Resumes forwarding, for the existing connections (held bytes go first) and new ones.
    pub fn restore(&self) {
        self.shared.lock().cut = false;
        self.shared.changed.notify_all();
    }

    /// Shuts down both sockets of every proxied connection (each end sees the connection end;
    /// bytes still unread are discarded). The proxy keeps accepting new connections.
    pub fn kill_connections(&self) {
        let mut state = self.shared.lock();
        let ids: Vec<u64> = state.conns.keys().copied().collect();
        for id in ids {
            shut(&state.conns[&id]);
            state.killed.insert(id);
        }
        drop(state);
        self.shared.changed.notify_all();
    }

    /// How many proxied connections are open.
    pub fn connections(&self) -> usize {
        self.shared.lock().conns.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.stopping = true;
            for pair in state.conns.values() {
                shut(pair);
            }
        }
        self.shared.changed.notify_all();
        // Wake the blocking accept; it sees `stopping` and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let threads = std::mem::take(&mut self.shared.lock().threads);
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits while the link is cut; false when the proxy is stopping or connection `id` was
    /// killed.
    fn wait_open(&self, id: Option<u64>) -> bool {
        let mut state = self.lock();
        loop {
            if state.stopping || id.is_some_and(|id| state.killed.contains(&id)) {
                return false;
            }
            if !state.cut {
                return true;
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

fn accept_loop(listener: &TcpListener, target: SocketAddr, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        let mut state = shared.lock();
        if state.stopping {
            return;
        }
        let Ok(client) = client else { continue };
        // While cut, a new connection is accepted (the kernel completes the handshake anyway)
        // but the target is not even dialled until the link is restored.
        let opener = {
            let shared = Arc::clone(shared);
            thread::spawn(move || open(client, target, &shared))
        };
        state.threads.push(opener);
    }
}

/// Dials the target for one accepted client and starts the two forwarding threads.
fn open(client: TcpStream, target: SocketAddr, shared: &Arc<Shared>) {
    if !shared.wait_open(None) {
        return;
    }
    let Ok(upstream) = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let (Ok(client2), Ok(upstream2), Ok(client3), Ok(upstream3)) = (
        client.try_clone(),
        upstream.try_clone(),
        client.try_clone(),
        upstream.try_clone(),
    ) else {
        return;
    };
    let mut state = shared.lock();
    if state.stopping {
        return;
    }
    let id = state.next_id;
    state.next_id += 1;
    state.conns.insert(id, [client3, upstream3]);
    // The second direction to finish forgets the connection.
    let live = Arc::new(AtomicU8::new(2));
    for (from, to) in [(client, upstream), (upstream2, client2)] {
        let shared = Arc::clone(shared);
        let live = Arc::clone(&live);
        state.threads.push(thread::spawn(move || {
            pump(id, &from, &to, &shared);
            if live.fetch_sub(1, Ordering::AcqRel) == 1 {
                let mut state = shared.lock();
                state.conns.remove(&id);
                state.killed.remove(&id);
            }
        }));
    }
}

/// Copies `from` to `to` until either side ends, holding bytes while the link is cut.
fn pump(id: u64, mut from: &TcpStream, mut to: &TcpStream, shared: &Shared) {
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => {
                // A clean end: pass the half-close on once the link is open.
                if shared.wait_open(Some(id)) {
                    let _ = to.shutdown(Shutdown::Write);
                }
                return;
            }
            Ok(n) => n,
            Err(_) => break,
        };
        if !shared.wait_open(Some(id)) || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    // An error on either side ends the whole connection.
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

fn shut(pair: &[TcpStream; 2]) {
    for stream in pair {
        let _ = stream.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;
    use std::net::TcpListener;
    use std::time::Instant;

    /// An echo server on 127.0.0.1:0; each connection gets a thread. Lives until the test ends.
    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                thread::spawn(move || {
                    let mut buf = [0; 4096];
                    while let Ok(n @ 1..) = (&stream).read(&mut buf) {
                        if (&stream).write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn connect(proxy: &Proxy) -> TcpStream {
        let stream = TcpStream::connect(proxy.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    fn round_trip(stream: &mut TcpStream, text: &[u8]) {
        stream.write_all(text).unwrap();
        let mut got = vec![0; text.len()];
        stream.read_exact(&mut got).unwrap();
        assert_eq!(got, text);
    }

    #[test]
    fn bytes_go_through_in_both_directions() {
        let proxy = Proxy::start(echo_server());
        let mut stream = connect(&proxy);
        round_trip(&mut stream, b"hello");
        round_trip(&mut stream, &[7; 200_000]);
    }

    #[test]
    fn a_cut_link_holds_bytes_without_closing_and_restore_delivers_them() {
        let proxy = Proxy::start(echo_server());
        let mut stream = connect(&proxy);
        round_trip(&mut stream, b"before");

        proxy.cut();
        stream.write_all(b"during").unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0; 16];
        let err = stream
            .read(&mut buf)
            .expect_err("nothing comes back while cut");
        assert!(
            matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "a cut is silent, not a close: {err}"
        );

        // A connection made during the cut is accepted but answered only after restore.
        let mut late = connect(&proxy);
        late.write_all(b"late").unwrap();

        proxy.restore();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = [0; 6];
        stream.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"during");
        let mut got = [0; 4];
        late.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"late");
        round_trip(&mut stream, b"after");
    }

    #[test]
    fn kill_connections_ends_every_connection_and_new_ones_still_work() {
        let proxy = Proxy::start(echo_server());
        let mut a = connect(&proxy);
        let mut b = connect(&proxy);
        round_trip(&mut a, b"a");
        round_trip(&mut b, b"b");
        assert_eq!(proxy.connections(), 2);

        proxy.kill_connections();
        for stream in [&mut a, &mut b] {
            let mut buf = [0; 1];
            // EOF or an error, promptly: never the read timeout.
            match stream.read(&mut buf) {
                Ok(0) => {}
                Ok(n) => panic!("read {n} bytes from a killed connection"),
                Err(err) => assert!(
                    !matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                    "{err}"
                ),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while proxy.connections() > 0 {
            assert!(Instant::now() < deadline, "killed connections linger");
            thread::sleep(Duration::from_millis(10));
        }

        let mut c = connect(&proxy);
        round_trip(&mut c, b"c");
    }

    #[test]
    fn dropping_a_cut_proxy_returns_promptly() {
        let proxy = Proxy::start(echo_server());
        let mut stream = connect(&proxy);
        round_trip(&mut stream, b"x");
        proxy.cut();
        stream.write_all(b"held").unwrap();
        let _pending = connect(&proxy);
        let started = Instant::now();
        drop(proxy);
        assert!(started.elapsed() < Duration::from_secs(3));
        let mut buf = [0; 4];
        assert!(matches!(stream.read(&mut buf), Ok(0) | Err(_)));
    }
}
