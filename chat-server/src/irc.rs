//! The IRC entrance's I/O: accepts IRC clients (irssi, WeeChat, ii, ...) and moves their bytes
//! to the room task, whose hub reads them with the [`IrcCodec`]. What IRC means (lines,
//! registration, numerics) is in [`chat_gateway::irc`]; the writers are the server's own.

use chat_core::CodecId;
use chat_gateway::irc::{Identity, IrcCodec};

use crate::config::ServerConfig;
use crate::conn::Conns;

/// The codec to add to the hub, with the channel and server name of `config`.
pub(crate) fn codec(config: &ServerConfig) -> IrcCodec {
    IrcCodec::new(Identity {
        server: config.irc_server_name.clone().unwrap_or_else(host_name),
        channel: config.irc_channel.clone(),
    })
}

/// Accepts IRC clients until the server stops; each gets the codec `codec` and a reader that
/// only moves bytes.
pub(crate) async fn accept_loop(
    conns: &Conns<'_, '_>,
    listener: async_net::TcpListener,
    codec: CodecId,
) {
    loop {
        let (stream, peer) = conns.accept(&listener).await;
        let Some(id) = conns.open(&stream, peer, codec).await else {
            return;
        };
        conns.spawn_bytes_reader(stream, id);
    }
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
