//! `chat-server`: run the chat server. See `chat-server --help`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use async_signal::{Signal, Signals};
use chat_server::{Args, Stats, resolve, serve_with_gateways};
use futures_lite::StreamExt;

/// Binds the listening socket; with `reuse_port`, other processes may bind the same port
/// (SO_REUSEPORT) and the kernel spreads connections among them.
fn listen(host: &str, port: u16, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs;
    if !reuse_port {
        return std::net::TcpListener::bind((host, port));
    }
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    let config = match resolve(&args, |k| std::env::var(k).ok()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();

    let listener = match listen(&config.host, config.port, config.reuse_port) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "error: cannot listen on {}:{}: {error}",
                config.host, config.port
            );
            return ExitCode::FAILURE;
        }
    };
    let irc = match config.irc_port {
        None => None,
        Some(port) => match std::net::TcpListener::bind((config.host.as_str(), port)) {
            Ok(listener) => Some(listener),
            Err(error) => {
                eprintln!(
                    "error: cannot listen for IRC on {}:{port}: {error}",
                    config.host
                );
                return ExitCode::FAILURE;
            }
        },
    };
    let web = match config.web_port {
        None => None,
        Some(port) => match std::net::TcpListener::bind((config.host.as_str(), port)) {
            Ok(listener) => Some(listener),
            Err(error) => {
                eprintln!(
                    "error: cannot listen for the web page on {}:{port}: {error}",
                    config.host
                );
                return ExitCode::FAILURE;
            }
        },
    };
    let mut signals = match Signals::new([Signal::Term, Signal::Int]) {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("error: cannot install signal handlers: {error}");
            return ExitCode::FAILURE;
        }
    };
    let run = async {
        let listener = async_net::TcpListener::try_from(listener)?;
        println!("listening on {}", listener.local_addr()?);
        let irc = match irc {
            Some(irc) => {
                let irc = async_net::TcpListener::try_from(irc)?;
                println!("IRC listening on {}", irc.local_addr()?);
                Some(irc)
            }
            None => None,
        };
        let web = web.map(async_net::TcpListener::try_from).transpose()?;
        if let Some(web) = &web {
            // After the `listening on` line, which scripts and tests read first.
            println!("web page at http://{}/", web.local_addr()?);
        }
        let stats = Arc::new(Stats::default());
        let shutdown = async {
            if let Some(Ok(signal)) = signals.next().await {
                log::info!("received {signal:?}");
            }
        };
        serve_with_gateways(listener, irc, web, config, stats.clone(), shutdown).await?;
        log::info!(
            "served {} connections ({} accept errors); {} writes carried {} frames ({:.1} per write); {} closed as too slow",
            stats.accepted.load(Relaxed),
            stats.accept_errors.load(Relaxed),
            stats.writes.load(Relaxed),
            stats.frames_written.load(Relaxed),
            stats.frames_per_write(),
            stats.too_slow.load(Relaxed),
        );
        std::io::Result::Ok(())
    };
    match smol::block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
