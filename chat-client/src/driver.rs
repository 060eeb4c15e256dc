//! The async driver of a [`Session`]: [`run_session`] connects it to a socket, the user's
//! input, the console and a timer.
//!
//! The driver decides nothing: it carries out the session's outputs, reports what happened,
//! and reads the clocks (the session's `now`, and the local time shown in front of lines that
//! have none of their own).

use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_net::TcpStream;
use chat_proto::{ClientMsg, encode};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, future};
use futures_rustls::TlsConnector;
use futures_rustls::client::TlsStream;
use futures_rustls::rustls::pki_types::pem::PemObject;
use futures_rustls::rustls::pki_types::{CertificateDer, ServerName};
use futures_rustls::rustls::{self, ClientConfig, RootCertStore};
use jiff::tz::TimeZone;
use smol::Timer;

use crate::config::Config;
use crate::input::{Input, InputEvent};
use crate::render::{Line, clock, paint};
use crate::session::{Output, Session};

/// Runs one chat session: connects to `config`'s server, joins, and relays commands from `input`
/// and messages from the server until someone leaves. Chat and notices are written to `out`,
/// errors and hints to `err`, one line per write, each followed by a flush.
///
/// Lines show a time in front when `config.timestamps` is on for this input (`HH:MM` in the
/// system's time zone: when the room's log accepted what the line reports, history included,
/// else when it is printed), and names in colour when `config.colour` is set.
///
/// Returns the process exit code ([`EXIT_OK`](crate::EXIT_OK),
/// [`EXIT_FAILURE`](crate::EXIT_FAILURE) or [`EXIT_USAGE`](crate::EXIT_USAGE)).
pub async fn run_session<O, E>(config: &Config, input: &mut Input, out: &mut O, err: &mut E) -> u8
where
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let interactive = input.is_interactive();
    let seed = {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    };
    let mut session = Session::new(Instant::now(), config, interactive).with_jitter_seed(seed);
    let tls = match config.tls.then(|| connector(config)).transpose() {
        Ok(tls) => tls,
        Err(error) => {
            let mut console = Console {
                out,
                err,
                timestamps: false,
                zone: TimeZone::UTC,
                colour: false,
                bell: false,
            };
            console.print(Line::error(error)).await;
            return crate::EXIT_FAILURE;
        }
    };
    let mut driver = Driver {
        console: Console {
            out,
            err,
            timestamps: config.timestamps.is_on(interactive),
            zone: TimeZone::system(),
            colour: config.colour,
            bell: false,
        },
        connecting: None,
        stream: None,
        scratch: Vec::new(),
        tls,
    };
    let code = driver.run(config, input, &mut session).await;
    driver.disconnect();
    code
}

/// What woke the driver up.
enum Wake {
    Connected(io::Result<Conn>),
    Read(io::Result<usize>),
    Input(InputEvent),
    Deadline,
}

/// The I/O half of a session: the socket, the console and the connection attempt.
struct Driver<'a, O, E> {
    console: Console<'a, O, E>,
    connecting: Option<future::Boxed<io::Result<Conn>>>,
    stream: Option<Conn>,
    /// Encoding space for outgoing frames.
    scratch: Vec<u8>,
    /// With `--tls`: what checks the server's certificate.
    tls: Option<TlsConnector>,
}

impl<O: AsyncWrite + Unpin, E: AsyncWrite + Unpin> Driver<'_, O, E> {
    /// Carries out the session's outputs and feeds it what happens, until it exits.
    async fn run(&mut self, config: &Config, input: &mut Input, session: &mut Session) -> u8 {
        loop {
            while let Some(output) = session.poll_output() {
                match output {
                    Output::Connect => {
                        self.disconnect();
                        let (host, port) = (config.host.clone(), config.port);
                        let tls = self.tls.clone();
                        self.connecting = Some(Box::pin(async move {
                            let tcp = TcpStream::connect((host.as_str(), port)).await?;
                            match tls {
                                Some(tls) => handshake(&tls, &host, tcp).await,
                                None => Ok(Conn::Plain(tcp)),
                            }
                        }));
                    }
                    Output::Disconnect => self.disconnect(),
                    Output::Send(msg) => {
                        if self.send(&msg).await.is_err() {
                            session.handle_send_failed(Instant::now());
                        }
                    }
                    Output::Print(line) => self.console.print(line).await,
                    Output::Bell => self.console.bell = true,
                    Output::Prompt(prompt) => {
                        input.set_prompt(prompt.text());
                        input.set_hidden(prompt.is_hidden());
                    }
                    Output::Exit(code) => return code,
                }
            }
            let wake = self.wait(input, session).await;
            let now = Instant::now();
            match wake {
                Wake::Connected(Ok(stream)) => {
                    self.connecting = None;
                    self.stream = Some(stream);
                    session.handle_connected(now);
                }
                Wake::Connected(Err(e)) if is_certificate_error(&e) => {
                    // Not a passing trouble: trying again would only fail again.
                    let addr = format!("{}:{}", config.host, config.port);
                    let line = Line::error(format_args!("cannot connect to {addr}: {e}"));
                    self.console.print(line).await;
                    return crate::EXIT_FAILURE;
                }
                Wake::Connected(Err(e)) => {
                    self.connecting = None;
                    session.handle_connect_failed(now, e);
                }
                Wake::Read(Ok(n)) => session.handle_read(now, n),
                Wake::Read(Err(_)) => session.handle_closed(now),
                Wake::Input(event) => {
                    if let InputEvent::Line(line) = &event {
                        input.remember(line);
                    }
                    session.handle_input(now, event);
                }
                Wake::Deadline => session.handle_timeout(now),
            }
        }
    }

    /// Closes the connection (or abandons the attempt), if there is one.
    fn disconnect(&mut self) {
        self.connecting = None;
        if let Some(stream) = self.stream.take() {
            let _ = stream.tcp().shutdown(Shutdown::Both);
        }
    }

    /// Waits for the connection attempt, the server, the user or the session's deadline.
    ///
    /// At a prompt the line editor is polled first, so lines queued for the terminal are printed
    /// on every turn; a script is read fairly against the server.
    async fn wait(&mut self, input: &mut Input, session: &mut Session) -> Wake {
        let interactive = input.is_interactive();
        let read_input = session.wants_input();
        let deadline = session.poll_timeout();
        let (connecting, stream) = (&mut self.connecting, &mut self.stream);
        let server = async {
            if let Some(attempt) = connecting {
                Wake::Connected(attempt.await)
            } else if let Some(stream) = stream.as_mut() {
                Wake::Read(stream.read(session.read_buf()).await)
            } else {
                future::pending().await
            }
        };
        let user = async {
            if read_input {
                Wake::Input(input.next().await)
            } else {
                future::pending().await
            }
        };
        let timer = async {
            match deadline {
                Some(at) => {
                    Timer::at(at).await;
                    Wake::Deadline
                }
                None => future::pending().await,
            }
        };
        if interactive {
            future::or(user, future::or(server, timer)).await
        } else {
            future::or(timer, future::race(server, user)).await
        }
    }

    /// Encodes and writes one message; it is on its way to the server when this returns.
    async fn send(&mut self, msg: &ClientMsg) -> io::Result<()> {
        let Some(stream) = &mut self.stream else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        self.scratch.clear();
        encode(msg, &mut self.scratch).map_err(io::Error::other)?;
        stream.write_all(&self.scratch).await?;
        stream.flush().await
    }
}

/// A connection to the server: plain TCP, or TLS over it.
enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    /// The TCP stream under it.
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(tcp) => tcp,
            Conn::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_close(cx),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_close(cx),
        }
    }
}

/// What checks the server's certificate with `--tls`: the system's trusted roots, and those of
/// `--tls-ca`. An unreadable or empty `--tls-ca` file is an error, one line.
fn connector(config: &Config) -> Result<TlsConnector, String> {
    let mut roots = RootCertStore::empty();
    // Certificates the system has that rustls cannot use are skipped: --tls-ca may be enough.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = &config.tls_ca {
        let file = path.display();
        let cas = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|error| format!("cannot read --tls-ca {file}: {error}"))?;
        let (added, _) = roots.add_parsable_certificates(cas);
        if added == 0 {
            return Err(format!("cannot use --tls-ca {file}: no certificate in it"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("cannot set up TLS: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(tls)))
}

/// The TLS handshake with `host` over `tcp`, its certificate checked.
async fn handshake(tls: &TlsConnector, host: &str, tcp: TcpStream) -> io::Result<Conn> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| io::Error::other(format!("'{host}' is not a name TLS can check")))?;
    let stream = tls.connect(name, tcp).await?;
    Ok(Conn::Tls(Box::new(stream)))
}

/// Whether `error` says the server's certificate did not verify.
fn is_certificate_error(error: &io::Error) -> bool {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_)))
}

/// The two output streams, and how lines look on them.
struct Console<'a, O, E> {
    out: &'a mut O,
    err: &'a mut E,
    /// The time (HH:MM) in front of each line.
    timestamps: bool,
    /// The time zone times are shown in.
    zone: TimeZone,
    /// Names in colour.
    colour: bool,
    /// Ring the bell with the next line.
    bell: bool,
}

impl<O: AsyncWrite + Unpin, E: AsyncWrite + Unpin> Console<'_, O, E> {
    /// Writes one line and flushes it. A closed stdout or stderr is not a reason to stop chatting.
    async fn print(&mut self, line: Line) {
        let mut text = String::new();
        if std::mem::take(&mut self.bell) {
            text.push('\x07');
        }
        if self.timestamps {
            text.push_str(&self.stamp(line.time()));
            text.push(' ');
        }
        text.push_str(&paint(&line, self.colour));
        text.push('\n');
        let sink: &mut (dyn AsyncWrite + Unpin) = match line {
            Line::Out(_) | Line::Room { .. } => &mut *self.out,
            Line::Err(_) => &mut *self.err,
        };
        if sink.write_all(text.as_bytes()).await.is_ok() {
            let _ = sink.flush().await;
        }
    }
}

impl<O, E> Console<'_, O, E> {
    /// `HH:MM` in the console's zone for `time` (ms since the Unix epoch), or for now when the
    /// line has no time of its own. The clock is read here, in the driver: the session never
    /// reads one.
    fn stamp(&self, time: Option<u64>) -> String {
        let now = || {
            let since = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            u64::try_from(since.as_millis()).unwrap_or(0)
        };
        clock(time.unwrap_or_else(now), &self.zone)
            .or_else(|| clock(now(), &self.zone))
            .unwrap_or_else(|| "--:--".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_proto::ChatKind;

    /// 2026-12-10 14:05:30.250 UTC, in ms since the Unix epoch.
    const T: u64 = 1_796_911_530_250;

    /// What a console in `zone` prints for `lines`: (stdout, stderr).
    fn printed(timestamps: bool, zone: TimeZone, lines: Vec<Line>) -> (String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut console = Console {
            out: &mut out,
            err: &mut err,
            timestamps,
            zone,
            colour: false,
            bell: false,
        };
        smol::block_on(async {
            for line in lines {
                console.print(line).await;
            }
        });
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn a_room_line_shows_its_own_time_history_included() {
        let lines = vec![
            Line::chat(false, "bob", "hi", ChatKind::Plain, Some(T)),
            Line::chat(true, "bob", "waves", ChatKind::Action, Some(T - 3_600_000)),
            Line::event(T + 60_000, "carol joined"),
        ];
        let (out, err) = printed(true, TimeZone::UTC, lines.clone());
        assert_eq!(
            out,
            "14:05 bob: hi\n13:05 [earlier] * bob waves\n14:06 * carol joined\n"
        );
        assert_eq!(err, "");
        let zone = TimeZone::fixed(jiff::tz::offset(-8));
        let (out, _) = printed(true, zone, lines);
        assert_eq!(
            out,
            "06:05 bob: hi\n05:05 [earlier] * bob waves\n06:06 * carol joined\n"
        );
    }

    #[test]
    fn a_line_without_a_time_of_its_own_shows_the_time_it_is_printed() {
        let now = |zone: &TimeZone| {
            let ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis();
            clock(ms as u64, zone).unwrap()
        };
        let before = now(&TimeZone::UTC);
        let lines = vec![
            Line::notice("online: alice"),
            Line::error("oops"),
            Line::chat(false, "alice", "mine", ChatKind::Plain, None),
        ];
        let (out, err) = printed(true, TimeZone::UTC, lines);
        let after = now(&TimeZone::UTC);
        // Read on either side of a minute boundary, the time is one of the two.
        let stamped = |text: &str, line: &str| {
            [&before, &after]
                .iter()
                .any(|time| text == format!("{time} {line}\n"))
        };
        let out_lines: Vec<&str> = out.split_inclusive('\n').collect();
        assert!(stamped(out_lines[0], "* online: alice"), "{out:?}");
        assert!(stamped(out_lines[1], "alice: mine"), "{out:?}");
        assert!(stamped(&err, "error: oops"), "{err:?}");
    }

    #[test]
    fn without_timestamps_lines_are_as_scripts_read_them() {
        let lines = vec![
            Line::chat(false, "bob", "hi", ChatKind::Plain, Some(T)),
            Line::chat(true, "bob", "old", ChatKind::Plain, Some(T)),
            Line::event(T, "bob is away: lunch"),
            Line::notice("online: alice, bob"),
            Line::error("oops"),
        ];
        let (out, err) = printed(false, TimeZone::UTC, lines);
        assert_eq!(
            out,
            "bob: hi\n[earlier] bob: old\n* bob is away: lunch\n* online: alice, bob\n"
        );
        assert_eq!(err, "error: oops\n");
    }
}
