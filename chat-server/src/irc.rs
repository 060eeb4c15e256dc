//! The IRC entrance's I/O: accepts IRC clients (irssi, WeeChat, ii, ...) and moves their bytes
//! to the room task, whose hub reads them with the [`IrcCodec`]. What IRC means (lines,
//! registration, numerics) is in [`chat_gateway::irc`]; the accept loop, reader and writer are the
//! ones every codec's port shares ([`crate::conn::Conns::serve_codec`]).

use chat_gateway::irc::{Identity, IrcCodec};

use crate::config::ServerConfig;

/// The codec to add to the hub, with the channel, server name and MOTD of `config`; an error
/// if the MOTD file cannot be read.
pub(crate) fn codec(config: &ServerConfig) -> std::io::Result<IrcCodec> {
    let mut codec = IrcCodec::new(Identity {
        server: config.irc_server_name.clone().unwrap_or_else(host_name),
        channel: config.irc_channel.clone(),
    });
    if let Some(path) = &config.irc_motd {
        let text = std::fs::read_to_string(path).map_err(|error| {
            std::io::Error::other(format!(
                "cannot read --irc-motd {}: {error}",
                path.display()
            ))
        })?;
        codec.set_motd(&text);
    }
    Ok(codec)
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
