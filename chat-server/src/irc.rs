//! The IRC entrance's I/O: accepts IRC clients (irssi, WeeChat, ii, ...) and moves their bytes
//! to the room task, whose hub reads them with the [`IrcCodec`]. What IRC means (lines,
//! registration, numerics) is in [`chat_gateway::irc`]; the accept loop, reader and writer are the
//! ones every codec's port shares ([`crate::conn::Conns::serve_codec`]).

use chat_gateway::irc::{Identity, IrcCodec};

use crate::config::ServerConfig;

/// The codec to add to the hub, with the channel and server name of `config`.
pub(crate) fn codec(config: &ServerConfig) -> IrcCodec {
    IrcCodec::new(Identity {
        server: config.irc_server_name.clone().unwrap_or_else(host_name),
        channel: config.irc_channel.clone(),
    })
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
