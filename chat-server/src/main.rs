//! `chat-server`: run the chat server. See `chat-server --help`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use async_signal::{Signal, Signals};
use std::net::TcpListener;

use chat_server::{Args, Certs, ServerConfig, Stats, Tls, listen, resolve, serve_with_gateways};
use futures_lite::StreamExt;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("hash-password") {
        return hash_password();
    }
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

    // The certificate is read before anything listens: a bad one is one line and exit 1.
    let certs = match config.tls.as_ref().map(Certs::load).transpose() {
        Ok(certs) => certs,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(mut listeners) = bind_all(&config) else {
        return ExitCode::FAILURE;
    };
    listeners.certs = certs;
    let mut signals = match Signals::new([Signal::Term, Signal::Int]) {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("error: cannot install signal handlers: {error}");
            return ExitCode::FAILURE;
        }
    };
    let run = serve(listeners, config, &mut signals);
    match smol::block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `chat-server hash-password`: reads a password (the first line of standard input) and prints
/// its Argon2id hash, for a line of `--accounts FILE`. Never from argv, where `ps` shows it.
fn hash_password() -> ExitCode {
    let mut line = String::new();
    if let Err(error) = std::io::stdin().read_line(&mut line) {
        eprintln!("error: cannot read the password from standard input: {error}");
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if !chat_proto::Password::from(password).is_valid() {
        let max = chat_proto::MAX_PASSWORD_BYTES;
        eprintln!("error: a password is 1 to {max} bytes, on the first line of standard input");
        return ExitCode::from(2);
    }
    match chat_server::hash_password(password) {
        Some(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("error: cannot hash: no random salt from the operating system");
            ExitCode::FAILURE
        }
    }
}

/// The native listener, and the IRC, web and metrics ones when asked for.
struct Listeners {
    native: TcpListener,
    irc: Option<TcpListener>,
    web: Option<TcpListener>,
    metrics: Option<TcpListener>,
    /// The certificate, with `--tls-cert`.
    certs: Option<Certs>,
    /// The native protocol and IRC over TLS.
    tls_native: Option<TcpListener>,
    tls_irc: Option<TcpListener>,
}

/// The listeners `config` asks for; an error is printed, one line each.
fn bind_all(config: &ServerConfig) -> Result<Listeners, ()> {
    // Every port the same way: with --reuse-port, several processes share each of them.
    let bind = |port: u16, what: &str| {
        listen(&config.host, port, config.reuse_port).map_err(|error| {
            eprintln!(
                "error: cannot listen{what} on {}:{port}: {error}",
                config.host
            );
        })
    };
    let native = bind(config.port, "")?;
    let irc = config
        .irc_port
        .map(|port| bind(port, " for IRC"))
        .transpose()?;
    let web = config
        .web_port
        .map(|port| bind(port, " for the web page"))
        .transpose()?;
    let metrics = config
        .metrics_addr
        .map(|addr| {
            TcpListener::bind(addr).map_err(|error| {
                eprintln!("error: cannot listen for metrics on {addr}: {error}");
            })
        })
        .transpose()?;
    let tls_native = config
        .tls_port
        .map(|port| bind(port, " for TLS"))
        .transpose()?;
    let tls_irc = config
        .irc_tls_port
        .map(|port| bind(port, " for IRC over TLS"))
        .transpose()?;
    Ok(Listeners {
        native,
        irc,
        web,
        metrics,
        certs: None,
        tls_native,
        tls_irc,
    })
}

/// Says where it listens, serves until a signal, and logs what it served.
async fn serve(
    listeners: Listeners,
    config: ServerConfig,
    signals: &mut Signals,
) -> std::io::Result<()> {
    let Listeners {
        native,
        irc,
        web,
        metrics,
        certs,
        tls_native,
        tls_irc,
    } = listeners;
    let listener = async_net::TcpListener::try_from(native)?;
    println!("listening on {}", listener.local_addr()?);
    let irc = irc.map(async_net::TcpListener::try_from).transpose()?;
    if let Some(irc) = &irc {
        println!("IRC listening on {}", irc.local_addr()?);
    }
    let web = web.map(async_net::TcpListener::try_from).transpose()?;
    if let Some(web) = &web {
        // After the `listening on` line, which scripts and tests read first.
        let scheme = if certs.is_some() { "https" } else { "http" };
        println!("web page at {scheme}://{}/", web.local_addr()?);
    }
    let tls_native = tls_native
        .map(async_net::TcpListener::try_from)
        .transpose()?;
    if let Some(listener) = &tls_native {
        println!("TLS listening on {}", listener.local_addr()?);
    }
    let tls_irc = tls_irc.map(async_net::TcpListener::try_from).transpose()?;
    if let Some(listener) = &tls_irc {
        println!("IRC over TLS listening on {}", listener.local_addr()?);
    }
    let tls = certs.map(|certs| Tls {
        certs,
        native: tls_native,
        irc: tls_irc,
    });
    let metrics = metrics.map(async_net::TcpListener::try_from).transpose()?;
    if let Some(metrics) = &metrics {
        println!("metrics at http://{}/metrics", metrics.local_addr()?);
    }
    let stats = Arc::new(Stats::default());
    let shutdown = async {
        if let Some(Ok(signal)) = signals.next().await {
            log::info!("received {signal:?}");
        }
    };
    let stats2 = stats.clone();
    serve_with_gateways(listener, irc, web, metrics, tls, config, stats2, shutdown).await?;
    log::info!(
        "served {} connections ({} accept errors); {} writes carried {} frames ({:.1} per write); {} closed as too slow",
        stats.accepted.load(Relaxed),
        stats.accept_errors.load(Relaxed),
        stats.writes.load(Relaxed),
        stats.frames_written.load(Relaxed),
        stats.frames_per_write(),
        stats.too_slow.load(Relaxed),
    );
    Ok(())
}
