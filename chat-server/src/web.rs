//! The room in a browser: the web port's codec, I/O only here.
//!
//! Everything the page's bytes mean, from the HTTP phase (the page, its script and style, the
//! upgrade of `/ws`) to the WebSocket's JSON frames, is [`chat_gateway::web::WebCodec`]'s, fed
//! by the hub on the room task. A connection is opened in the room when it is accepted, so the
//! room's handshake limits and deadline cover its HTTP phase. The writer is the server's own;
//! the accept loop and the reader are the ones every codec's port shares
//! ([`crate::conn::Conns::serve_codec`]).

use std::net::IpAddr;

use chat_gateway::web::{WebCodec, WebPolicy};

use crate::config::ServerConfig;

/// The codec to add to the hub, with the origins and frame limit of `config`, serving the
/// hosts `localhost`, `listen` (the web port's address) and those of `--web-host`, taking the
/// word of `--trusted-proxy` proxies on who the client is.
pub(crate) fn codec(config: &ServerConfig, listen: Option<IpAddr>) -> WebCodec {
    let policy = WebPolicy {
        https: config.tls.is_some(),
        listen,
        hosts: config.web_hosts.clone(),
        allowed: config.web_allow_origin.clone(),
    };
    let mut codec = WebCodec::new(policy, config.room.max_frame_bytes);
    codec.trust_proxies(config.trusted_proxies.clone());
    codec
}
