//! The IRC gateway: IRC clients (irssi, WeeChat, ii, ...) join the same room as native clients.
//!
//! A thin adapter over the hub, like the native reader and writer:
//! - [`line`] splits the socket's bytes into lines of at most 512 bytes and parses them;
//! - [`Session`] (sans-IO) turns each line into room messages (NICK+USER is the hello, PRIVMSG
//!   is chat, QUIT/PART leave, WHO/NAMES ask for the members) or replies it makes itself
//!   (CAP, MODE, TOPIC, PING, numerics for errors);
//! - [`IrcCodec`] turns what the room sends into IRC lines (welcome numerics, JOIN, PRIVMSG,
//!   QUIT, 352/353, 433/432, ERROR on close), each broadcast encoded once for every IRC member;
//! - the reader task sends room inputs and raw replies through the room task's one queue, in the
//!   order it read them, so that everything relayed to a connection reaches it before the reply
//!   to its next command. The writer is the server's own.
//!
//! Names, limits, rate limits, deadlines and too-slow closes are the room's, as for everyone.

use std::io::Read;
use std::net::TcpStream;
use std::sync::Arc;

use async_channel::Sender;
use chat_core::{CodecId, ConnId, Input};
use chat_proto::ClientMsg;
use smol::Async;

use chat_gateway::irc::{Action, Identity, IrcCodec, Line, LineReader, Session, Sessions, hello};

use crate::config::ServerConfig;
use crate::server::{Conns, Event};

/// The gateway's settings and the state its codec shares with its readers.
#[derive(Debug, Clone)]
pub struct Gateway {
    id: Identity,
    sessions: Sessions,
}

impl Gateway {
    /// A gateway with the channel and server name of `config`.
    pub fn new(config: &ServerConfig) -> Self {
        Self {
            id: Identity {
                server: config.irc_server_name.clone().unwrap_or_else(host_name),
                channel: config.irc_channel.clone(),
            },
            sessions: Sessions::default(),
        }
    }

    /// The codec to add to the hub.
    pub fn codec(&self) -> IrcCodec {
        IrcCodec::new(self.id.clone(), self.sessions.clone())
    }

    pub(crate) async fn accept_loop(
        &self,
        conns: &Conns<'_, '_>,
        listener: async_net::TcpListener,
        codec: CodecId,
    ) {
        loop {
            let (stream, peer) = conns.accept(&listener).await;
            let sessions = &self.sessions;
            let Some(id) = conns
                .open(&stream, peer, codec, |id| sessions.open(id))
                .await
            else {
                return;
            };
            let reader = read_loop(
                stream,
                id,
                Session::new(self.id.clone()),
                self.sessions.clone(),
                conns.events.clone(),
                conns.scratch.clone(),
            );
            conns.spawn_reader(reader);
        }
    }
}

/// Reads lines, translates them, and forwards the results to the room task in order; waits for
/// the outcome of a hello before it reads on.
async fn read_loop(
    stream: Arc<Async<TcpStream>>,
    id: ConnId,
    mut session: Session,
    sessions: Sessions,
    events: Sender<Event>,
    scratch: std::rc::Rc<std::cell::RefCell<Vec<u8>>>,
) {
    let mut lines = LineReader::new();
    // The lines of one read, copied out of the shared buffer (`None`: a line too long).
    let mut pending: Vec<Option<Vec<u8>>> = Vec::new();
    let mut actions: Vec<Action> = Vec::new();
    let end = 'read: loop {
        if stream.readable().await.is_err() {
            break Input::Closed(id);
        }
        let read = {
            let mut buf = scratch.borrow_mut();
            let read = stream.get_ref().read(&mut buf[..]);
            if let Ok(n) = read {
                lines.feed(&buf[..n], |line| {
                    pending.push(match line {
                        Line::Text(text) => Some(text.to_vec()),
                        Line::TooLong => None,
                    });
                });
            }
            read
        };
        // One line at a time: a line after a hello is read once the hello's outcome is known.
        for line in pending.drain(..) {
            let line = line.as_deref().map_or(Line::TooLong, Line::Text);
            session.handle(line, &mut actions);
            coalesce_replies(&mut actions);
            for action in actions.drain(..) {
                let event = match action {
                    Action::Room(msg) => Event::Input(Input::Received(id, msg)),
                    Action::Reply(bytes) => Event::Raw(id, bytes),
                    Action::Who(listing) => {
                        let sessions = sessions.clone();
                        let set = move || {
                            if let Some(state) = sessions.lock().get_mut(&id) {
                                state.listing = Some(listing);
                            }
                        };
                        if events.send(Event::Call(Box::new(set))).await.is_err() {
                            return;
                        }
                        Event::Input(Input::Received(id, ClientMsg::Who))
                    }
                    Action::Register(nick) => {
                        let (tx, rx) = async_channel::bounded(1);
                        match sessions.lock().get_mut(&id) {
                            Some(state) => {
                                state.wanted = nick.clone();
                                state.outcome = Some(tx);
                            }
                            None => break 'read Input::Closed(id), // already forgotten
                        }
                        let hello = Event::Input(Input::Received(id, hello(&nick)));
                        if events.send(hello).await.is_err() {
                            return;
                        }
                        match rx.recv().await {
                            // The nick as the room registered it (composed), not as typed.
                            Ok(Some(nick)) => session.welcomed(nick),
                            Ok(None) => session.refused(),
                            // The connection was closed and forgotten meanwhile.
                            Err(_) => break 'read Input::Closed(id),
                        }
                        continue;
                    }
                };
                if events.send(event).await.is_err() {
                    return;
                }
            }
        }
        if pending.capacity() > 64 {
            pending = Vec::new();
        }
        if let Some(end) = crate::server::read_ended(&read, id) {
            break end;
        }
    };
    let _ = events.send(Event::Input(end)).await;
}

/// This machine's host name, for the server name in IRC lines; `chat-server` if it cannot be
/// read or cannot be used there.
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| {
            !name.is_empty()
                && name.len() <= crate::config::MAX_IRC_SERVER_NAME
                && !name.starts_with(':')
                && !name.chars().any(|c| c.is_whitespace() || c.is_control())
        })
        .unwrap_or_else(|| "chat-server".into())
}

/// Joins the replies one command made that follow each other into one: the room charges each
/// reply from the rate limit ([`chat_core::Hub::send_raw`]), and a command is one request.
fn coalesce_replies(actions: &mut Vec<Action>) {
    let mut merged: Vec<Action> = Vec::with_capacity(actions.len());
    for action in actions.drain(..) {
        match (merged.last_mut(), action) {
            (Some(Action::Reply(last)), Action::Reply(more)) => last.extend_from_slice(&more),
            (_, action) => merged.push(action),
        }
    }
    *actions = merged;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replies_of_one_command_that_follow_each_other_are_one() {
        let mut actions = vec![
            Action::Reply(b"a\r\n".to_vec()),
            Action::Reply(b"b\r\n".to_vec()),
            Action::Room(ClientMsg::Leave),
            Action::Reply(b"c\r\n".to_vec()),
        ];
        coalesce_replies(&mut actions);
        assert_eq!(
            actions,
            [
                Action::Reply(b"a\r\nb\r\n".to_vec()),
                Action::Room(ClientMsg::Leave),
                Action::Reply(b"c\r\n".to_vec()),
            ]
        );
    }
}
