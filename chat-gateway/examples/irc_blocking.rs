//! A second driver for the IRC entrance: blocking `std::net` sockets and threads, no async.
//!
//! IRC clients and native clients share one room, as with `chat-server --irc-port`. One thread
//! owns the hub (the room, its fan-outs, and the IRC codec) and its timer, fed through one
//! channel; each connection has a reader thread that only moves bytes to it and a writer thread
//! that writes what its fan-out has due. Lines, registration and numerics are the codec's.
//!
//! ```text
//! cargo run -p chat-gateway --example irc_blocking -- 6667 7878
//! ```
//!
//! The arguments are the IRC port and the chat port (0: any free one); it prints
//! `listening on ADDR` for the chat port, then `irc on ADDR`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use chat_core::{CodecId, Config, ConnId, Due, Hub, HubEvent, Input, Notice, Room};
use chat_gateway::irc::{Identity, IrcCodec};

/// What the hub's thread is told, in the order the readers sent it.
enum Event {
    Opened(ConnId),
    Bytes(ConnId, Vec<u8>),
    Closed(ConnId),
}

/// The hub, and one condition variable its writers wait on.
struct Outbox {
    hub: Mutex<Hub>,
    wake: Condvar,
}

fn main() -> io::Result<()> {
    let mut ports = std::env::args().skip(1).map(|p| p.parse::<u16>());
    let irc_port = ports.next().unwrap_or(Ok(6667)).map_err(io::Error::other)?;
    let chat_port = ports.next().unwrap_or(Ok(7878)).map_err(io::Error::other)?;
    let chat = TcpListener::bind(("127.0.0.1", chat_port))?;
    let irc = TcpListener::bind(("127.0.0.1", irc_port))?;
    println!("listening on {}", chat.local_addr()?);
    println!("irc on {}", irc.local_addr()?);
    let room = Room::new(Config::default(), 1).map_err(io::Error::other)?;
    let mut hub = Hub::new(room, 256 * 1024);
    let irc_codec = IrcCodec::new(Identity {
        server: "irc.example".into(),
        channel: "#chat".into(),
    })
    .add_to(&mut hub);
    let outbox = Arc::new(Outbox {
        hub: Mutex::new(hub),
        wake: Condvar::new(),
    });
    // Readers block when the room falls behind, rather than queueing without bound.
    let (events, room_events) = sync_channel::<Event>(4096);
    let room_outbox = outbox.clone();
    std::thread::spawn(move || run_room(&room_outbox, &room_events));
    let next_id = Arc::new(AtomicU64::new(1));
    let (irc_outbox, irc_events, irc_ids) = (outbox.clone(), events.clone(), next_id.clone());
    std::thread::spawn(move || serve(irc, irc_codec, &irc_outbox, &irc_events, &irc_ids));
    serve(chat, CodecId::WIRE, &outbox, &events, &next_id);
    Ok(())
}

/// Accepts connections that speak `codec`'s protocol; each gets a reader and a writer thread.
fn serve(
    listener: TcpListener,
    codec: CodecId,
    outbox: &Arc<Outbox>,
    events: &SyncSender<Event>,
    next_id: &AtomicU64,
) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            std::thread::sleep(Duration::from_millis(10)); // out of descriptors: try again
            continue;
        };
        let Ok(reader) = stream.try_clone() else {
            continue;
        };
        let conn = ConnId(next_id.fetch_add(1, Relaxed));
        // The writer may look before the room has seen the connection: open its place first.
        outbox.hub.lock().unwrap().attach(conn, codec);
        if events.send(Event::Opened(conn)).is_err() {
            return;
        }
        let events = events.clone();
        std::thread::spawn(move || read_loop(reader, conn, &events));
        let outbox = outbox.clone();
        std::thread::spawn(move || write_loop(stream, conn, &outbox));
    }
}

/// The one owner of the hub's inputs: what the readers sent, and the room's timer.
fn run_room(outbox: &Outbox, events: &Receiver<Event>) {
    let mut deadline = None;
    loop {
        let wait = deadline.map_or(Duration::from_secs(3600), |at: Instant| {
            at.saturating_duration_since(Instant::now())
        });
        let event = match events.recv_timeout(wait) {
            Ok(event) => Some(event),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        deadline = step(outbox, event);
    }
}

/// Feeds one event (or the timer, for `None`) to the hub, logs what happened, wakes the
/// writers; returns the next deadline.
fn step(outbox: &Outbox, event: Option<Event>) -> Option<Instant> {
    let mut hub = outbox.hub.lock().unwrap();
    let now = Instant::now();
    let result = match event {
        Some(Event::Opened(conn)) => hub.handle_input(now, Input::Opened(conn)),
        // Bytes of a connection the room closed mean nothing now (and once its writer is done
        // it is no longer attached: they would read as the wire protocol).
        Some(Event::Bytes(conn, bytes)) if hub.room().is_open(conn) => {
            hub.handle_bytes(now, conn, &bytes)
        }
        Some(Event::Bytes(..)) => Ok(()),
        Some(Event::Closed(conn)) => hub.handle_input(now, Input::Closed(conn)),
        None => hub.handle_input(now, Input::Tick),
    };
    if let Err(error) = result {
        eprintln!("driver bug: {error}");
    }
    while let Some(event) = hub.poll_event() {
        match event {
            HubEvent::Notice(Notice::Joined { name, .. }) => eprintln!("{name} joined"),
            HubEvent::Notice(Notice::Left { name, reason }) => eprintln!("{name} left ({reason})"),
            HubEvent::Notice(Notice::Renamed { from, to }) => eprintln!("{from} is now {to}"),
            HubEvent::Notice(Notice::Moderated { by, action }) => eprintln!("{by}: {action:?}"),
            HubEvent::Closed { .. }
            | HubEvent::Refused { .. }
            | HubEvent::Propose(_)
            | HubEvent::Applied(_) => {}
            // This example hashes no passwords: registering is refused as unavailable.
            HubEvent::Password { ticket, .. } => {
                let verdict = chat_core::Verdict::Busy;
                if let Err(error) = hub.handle_input(now, Input::Password { ticket, verdict }) {
                    eprintln!("driver bug: {error}");
                }
            }
        }
    }
    // One condition variable for every writer: each checks its own connection.
    while hub.poll_wake().is_some() {}
    outbox.wake.notify_all();
    hub.poll_timeout()
}

/// Moves what the peer sends to the hub's thread, whatever the protocol; the end of the
/// stream closes.
fn read_loop(mut stream: TcpStream, conn: ConnId, events: &SyncSender<Event>) {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if events.send(Event::Bytes(conn, buf[..n].to_vec())).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = events.send(Event::Closed(conn));
}

/// Writes what is due. The bytes are copied out under the lock and written outside it, so a
/// peer that does not read blocks only its own writer, never the room.
fn write_loop(mut stream: TcpStream, conn: ConnId, outbox: &Outbox) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let mut bytes = Vec::new();
    loop {
        let mut hub = outbox.hub.lock().unwrap();
        bytes.clear();
        match hub.fanout_of(conn).due(conn, |frame| {
            bytes.extend_from_slice(frame);
            bytes.len() < 256 * 1024
        }) {
            Due::Done => break,
            Due::Wait => {
                drop(outbox.wake.wait(hub).unwrap());
                continue;
            }
            Due::Write => {}
        }
        drop(hub);
        if stream.write_all(&bytes).is_err() {
            break;
        }
        let mut hub = outbox.hub.lock().unwrap();
        hub.fanout_of(conn).consumed(conn, bytes.len());
    }
    let _ = stream.shutdown(Shutdown::Both);
    outbox.hub.lock().unwrap().detach(conn);
}
