//! A second driver for the same room: blocking `std::net` sockets and threads, no async.
//!
//! One thread owns the [`Hub`] (room and fan-out) and its timer; each connection has a reader
//! thread that decodes frames and a writer thread that writes what the fan-out has due. It speaks
//! the same protocol, with the same names, limits and notices, as `chat-server`; what it leaves
//! out is the server's polish (signals, config flags, logging, coalescing without a copy).
//!
//! ```text
//! cargo run -p chat-core --example blocking -- 127.0.0.1:7878
//! ```

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc::{RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chat_core::{CodecId, Config, ConnId, Due, Hub, HubEvent, Input, Notice, Room};
use chat_proto::{ClientDecoder, FrameReader};

/// The hub, and one condition variable its writers wait on.
struct Shared {
    hub: Mutex<Hub>,
    wake: Condvar,
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:7878".into());
    let listener = TcpListener::bind(&addr)?;
    println!("listening on {}", listener.local_addr()?);
    let config = Config::default();
    let max_frame = config.max_frame_bytes;
    let room = Room::new(config, new_epoch()).map_err(std::io::Error::other)?;
    let shared = Arc::new(Shared {
        hub: Mutex::new(Hub::new(room, 256 * 1024)),
        wake: Condvar::new(),
    });
    // Readers block when the room falls behind, rather than queueing without bound.
    let (inputs, room_inputs) = sync_channel::<Input>(4096);
    let room_shared = shared.clone();
    std::thread::spawn(move || {
        let mut deadline = None;
        loop {
            let wait = deadline.map_or(Duration::from_secs(3600), |at: Instant| {
                at.saturating_duration_since(Instant::now())
            });
            let input = match room_inputs.recv_timeout(wait) {
                Ok(input) => input,
                Err(RecvTimeoutError::Timeout) => Input::Tick,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            deadline = step(&room_shared, input);
        }
    });
    for (id, stream) in (1..).zip(listener.incoming()) {
        let Ok(stream) = stream else {
            std::thread::sleep(Duration::from_millis(10)); // out of descriptors: try again
            continue;
        };
        let conn = ConnId(id);
        // The writer may look before the room has seen the connection: open its place first.
        shared.hub.lock().unwrap().attach(conn, CodecId::WIRE);
        if inputs.send(Input::Opened(conn)).is_err() {
            break;
        }
        let (reader, writer) = (stream.try_clone()?, stream);
        let inputs = inputs.clone();
        std::thread::spawn(move || read_loop(reader, conn, max_frame, inputs));
        let shared = shared.clone();
        std::thread::spawn(move || write_loop(writer, conn, &shared));
    }
    Ok(())
}

/// A random epoch for a room made now: the room's numbers are not the last run's.
fn new_epoch() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(unix_ms());
    hasher.write_u32(std::process::id());
    hasher.finish().max(1)
}

/// The wall clock, in milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// Feeds one input to the hub, logs what happened, wakes the writers; returns the next deadline.
fn step(shared: &Shared, input: Input) -> Option<Instant> {
    let mut hub = shared.hub.lock().unwrap();
    let now = Instant::now();
    hub.set_clock(now, unix_ms()); // follows the wall clock if it is set
    if let Err(error) = hub.handle_input(now, input) {
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
    shared.wake.notify_all();
    hub.poll_timeout()
}

/// Decodes whole frames (of at most `max_frame` bytes, the room's limit), in the version the
/// client's hello says, and hands them to the room; the end of the stream closes, a bad frame
/// closes as malformed.
fn read_loop(mut stream: TcpStream, conn: ConnId, max_frame: u32, inputs: SyncSender<Input>) {
    let mut reader = FrameReader::new(max_frame);
    let mut client = ClientDecoder::new();
    let end = loop {
        match reader.next_with(|p| client.decode(p)) {
            Ok(Some(msg)) => {
                if inputs.send(Input::Received(conn, msg)).is_err() {
                    return;
                }
            }
            Ok(None) => match reader.read_from(&mut stream) {
                Ok(0) | Err(_) => break Input::Closed(conn),
                Ok(_) => {}
            },
            Err(_) => break Input::Malformed(conn),
        }
    };
    let _ = inputs.send(end);
}

/// Writes what is due. The bytes are copied out under the lock and written outside it, so a
/// peer that does not read blocks only its own writer, never the room.
fn write_loop(mut stream: TcpStream, conn: ConnId, shared: &Shared) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let mut bytes = Vec::new();
    loop {
        let mut hub = shared.hub.lock().unwrap();
        bytes.clear();
        // Asked at every write: a v2 client's hello moves it to the v2 codec's fan-out.
        match hub.fanout_of(conn).due(conn, |frame| {
            bytes.extend_from_slice(frame);
            bytes.len() < 256 * 1024
        }) {
            Due::Done => break,
            Due::Wait => {
                drop(shared.wake.wait(hub).unwrap());
                continue;
            }
            Due::Write => {}
        }
        drop(hub);
        if stream.write_all(&bytes).is_err() {
            break;
        }
        shared
            .hub
            .lock()
            .unwrap()
            .fanout_of(conn)
            .consumed(conn, bytes.len());
    }
    let _ = stream.shutdown(Shutdown::Both);
    shared.hub.lock().unwrap().detach(conn);
}
