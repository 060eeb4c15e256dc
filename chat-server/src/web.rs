//! The room in a browser: the listener of the web port, I/O only.
//!
//! Everything the page's bytes mean, from the HTTP phase (the page, its script and style, the
//! upgrade of `/ws`) to the WebSocket's JSON frames, is [`chat_gateway::web::WebCodec`]'s, fed
//! by the hub on the room task. A connection is opened in the room when it is accepted, so the
//! room's handshake limits and deadline cover its HTTP phase. The writer is the server's own.

use std::cell::RefCell;
use std::io::Read;
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::Arc;

use async_channel::Sender;
use chat_core::{CodecId, ConnId, Input};
use smol::Async;

use crate::server::{Conns, Event, read_ended};

/// Accepts browser connections until the server stops, each opened in the room at once.
pub(crate) async fn accept_loop(
    conns: &Conns<'_, '_>,
    listener: async_net::TcpListener,
    codec: CodecId,
) {
    loop {
        let (stream, peer) = conns.accept(&listener).await;
        let Some(id) = conns.open(&stream, peer, codec, |_| {}).await else {
            return;
        };
        let reader = read_loop(stream, id, conns.events.clone(), conns.scratch.clone());
        conns.spawn_reader(reader);
    }
}

/// Reads whatever the socket has into the shared scratch buffer and hands a copy of the bytes
/// to the room task, where the codec reads them.
async fn read_loop(
    stream: Arc<Async<TcpStream>>,
    id: ConnId,
    events: Sender<Event>,
    scratch: Rc<RefCell<Vec<u8>>>,
) {
    let end = loop {
        if stream.readable().await.is_err() {
            break Input::Closed(id);
        }
        let (read, bytes) = {
            let mut buf = scratch.borrow_mut();
            let read = stream.get_ref().read(&mut buf[..]);
            let bytes = match read {
                Ok(n) if n > 0 => Some(buf[..n].to_vec()),
                _ => None,
            };
            (read, bytes)
        };
        if let Some(bytes) = bytes
            && events.send(Event::Bytes(id, bytes)).await.is_err()
        {
            return;
        }
        if let Some(end) = read_ended(&read, id) {
            break end;
        }
    };
    let _ = events.send(Event::Input(end)).await;
}
