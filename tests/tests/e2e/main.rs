//! End-to-end tests: the real server (in-process or the binary) over loopback sockets.
//! One test binary with modules builds faster than many.

mod client;
mod hostile;
mod irc;
mod metrics;
mod pause;
mod proxied;
mod redis;
mod redis_infra;
mod redis_scripts;
mod server;
mod versions;
mod web;
mod web_page;
