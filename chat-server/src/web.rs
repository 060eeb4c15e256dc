//! The room in a browser: an HTTP listener that serves one page (`/`, with `/app.js` and
//! `/app.css`) and upgrades `/ws` to a WebSocket whose text frames are JSON messages.
//!
//! A third thin adapter over the same hub: the room decides names, limits, deadlines and
//! notices exactly as for native clients. What is this adapter's own: the HTTP phase (bounded
//! in bytes, requests and time, answered by [`http::answer`]), the `Origin` check, and the
//! translation of frames both ways ([`WsReader`] in, [`WebCodec`] out). Writers are the
//! native ones: the codec's bytes are whole WebSocket frames.

use std::cell::Cell;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use chat_core::{AddrKey, CodecId, Input};
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use smol::{Async, Timer};

use chat_gateway::web::{
    Answer, Incoming, MAX_REQUESTS, OriginPolicy, WsReader, answer, max_ws_message,
};

use crate::config::ServerConfig;
use crate::conn::{Conns, Event};

/// Accepts browser connections until the server stops. Connections still in their HTTP phase
/// are capped at the room's handshake limit; more are closed at once.
pub(crate) async fn accept_loop(
    conns: &Conns<'_, '_>,
    config: &ServerConfig,
    listener: async_net::TcpListener,
    codec: CodecId,
) {
    let origins = Rc::new(OriginPolicy {
        allowed: config.web_allow_origin.clone(),
    });
    let in_http = Rc::new(Cell::new(0u32));
    // Connections in their HTTP phase per address: one address cannot take every slot.
    // Counted as the room counts addresses: an IPv6 host by its /64.
    let per_addr: Rc<std::cell::RefCell<std::collections::HashMap<AddrKey, u32>>> = Rc::default();
    // Connections whose HTTP phase ended in an upgrade, with the bytes read past it.
    // Unbounded in type, bounded in fact: at most `max_handshakes` connections are in their HTTP
    // phase, and each sends here at most once.
    let (upgraded_tx, upgraded) =
        async_channel::unbounded::<(Arc<Async<TcpStream>>, IpAddr, Vec<u8>)>();
    let max_message = max_ws_message(config.room.max_frame_bytes);
    loop {
        let accepted = async { Ok(conns.accept(&listener).await) };
        let next = accepted
            .or(async {
                match upgraded.recv().await {
                    Ok(pair) => Err(pair),
                    Err(_) => std::future::pending().await,
                }
            })
            .await;
        let (stream, peer, part) = match next {
            Ok((stream, peer)) => {
                let key = AddrKey::from(peer);
                let from_addr = per_addr.borrow().get(&key).copied().unwrap_or(0);
                if in_http.get() >= config.room.max_handshakes
                    || from_addr >= config.room.max_handshakes_per_ip
                {
                    log::debug!("web: too many connections in their HTTP phase; closing one");
                    let _ = stream.get_ref().shutdown(Shutdown::Both);
                    conns.stats.connections.fetch_sub(1, Relaxed);
                    continue;
                }
                in_http.set(in_http.get() + 1);
                *per_addr.borrow_mut().entry(key).or_default() += 1;
                let http = http_phase(
                    stream.clone(),
                    origins.clone(),
                    config.room.handshake_timeout,
                );
                let (in_http, upgraded_tx) = (in_http.clone(), upgraded_tx.clone());
                let per_addr = per_addr.clone();
                let stats = conns.stats.clone();
                // The HTTP phase runs on its own; an upgraded connection comes back here.
                let phase = async move {
                    let part = http.await;
                    in_http.set(in_http.get() - 1);
                    {
                        let mut per_addr = per_addr.borrow_mut();
                        if let Some(count) = per_addr.get_mut(&key) {
                            *count -= 1;
                            if *count == 0 {
                                per_addr.remove(&key);
                            }
                        }
                    }
                    match part {
                        Some(part) => {
                            let _ = upgraded_tx.send((stream, peer, part)).await;
                        }
                        // Served its pages and went: it never was a member's connection.
                        None => {
                            stats.connections.fetch_sub(1, Relaxed);
                        }
                    }
                };
                conns.spawn_reader(phase);
                continue;
            }
            Err(triple) => triple,
        };
        let Some(id) = conns.open(&stream, peer, codec).await else {
            return;
        };
        let reader = ws_read_loop(
            stream,
            id,
            WsReader::new(&part, max_message),
            conns.events.clone(),
        );
        conns.spawn_reader(reader);
    }
}

/// Serves requests on one connection until it upgrades (returns the bytes read past the
/// upgrade request), closes, breaks a limit, or waits `timeout` for a request.
async fn http_phase(
    stream: Arc<Async<TcpStream>>,
    origins: Rc<OriginPolicy>,
    timeout: Duration,
) -> Option<Vec<u8>> {
    let mut input = Vec::new();
    let mut chunk = [0u8; 2048];
    let serve = async {
        for served in 1..=MAX_REQUESTS {
            let (bytes, consumed, upgrade, close) = loop {
                match answer(&input, &origins, served == MAX_REQUESTS) {
                    Answer::Incomplete => {}
                    Answer::Reply {
                        bytes,
                        consumed,
                        close,
                    } => break (bytes, consumed, false, close),
                    Answer::Upgrade { bytes, consumed } => break (bytes, consumed, true, false),
                }
                let n = (&*stream).read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                input.extend_from_slice(&chunk[..n]);
            };
            (&*stream).write_all(&bytes).await.ok()?;
            input.drain(..consumed.min(input.len()));
            if upgrade {
                return Some(std::mem::take(&mut input));
            }
            if close {
                return None;
            }
        }
        None
    };
    let deadline = async {
        Timer::after(timeout).await;
        None
    };
    let upgraded = serve.or(deadline).await;
    if upgraded.is_none() {
        let _ = stream.get_ref().shutdown(Shutdown::Both);
    }
    upgraded
}

/// Reads what the page sends and hands it to the room: messages as inputs, the WebSocket's own
/// answers (pongs) as raw bytes in order with the room's, a bad frame as malformed.
async fn ws_read_loop(
    stream: Arc<Async<TcpStream>>,
    id: chat_core::ConnId,
    mut reader: WsReader,
    events: async_channel::Sender<Event>,
) {
    let mut chunk = vec![0u8; 4096];
    let mut left = false;
    let end = 'read: loop {
        while let Some(incoming) = reader.poll_incoming() {
            let event = match incoming {
                Incoming::Msg(msg) => Event::Input(Input::Received(id, msg)),
                Incoming::Reply(bytes) => Event::Raw(id, bytes),
                Incoming::Leave => {
                    left = true;
                    Event::Input(Input::Received(id, chat_proto::ClientMsg::Leave))
                }
                Incoming::Malformed => break 'read Input::Malformed(id),
            };
            if events.send(event).await.is_err() {
                return;
            }
        }
        // After a goodbye, the rest is drained and ignored until the socket closes.
        match (&*stream).read(&mut chunk).await {
            Ok(0) | Err(_) => break Input::Closed(id),
            Ok(n) if !left => reader.feed(&chunk[..n]),
            Ok(_) => {}
        }
    };
    let _ = events.send(Event::Input(end)).await;
}
