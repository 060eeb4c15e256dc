//! TLS on the server's ports (`--tls-port`, `--irc-tls-port`, and https on the web port), with
//! rustls's own sans-IO connection driven here.
//!
//! Why not an async adapter such as futures-rustls: a connection here is two tasks on one
//! thread, a reader on the reads executor and a writer on the writes executor, each waiting on
//! the one `Async<TcpStream>` they share, and the writer hands the kernel many frames in one
//! vectored write straight from the hub's shared buffers. An adapter's stream is one object
//! that both halves would reach through a lock (`split`), with its own buffering between them.
//! Driven by hand, a [`rustls::ServerConnection`] sits in an `Rc<RefCell<..>>` that the two
//! tasks borrow in turn, never across an await: the reader feeds it ciphertext and takes the
//! plaintext, the writer gives it the due frames (vectored, as for a plain socket) and writes
//! its records out, and both keep waiting on the socket as before. rustls's buffers are
//! bounded: it reads no more ciphertext while plaintext waits to be taken, and takes no more
//! plaintext to send than [`SEND_BUFFER`].
//!
//! The certificate is read at start (a bad one stops the server with one line) and again on
//! SIGHUP ([`Certs::reload`]): new connections get the new one, open ones keep theirs, and a
//! bad new one is logged and the old one kept.

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice, Read};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Poll, Waker};

use chat_core::ConnId;
use futures_lite::future::poll_fn;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};
use smol::Async;

use crate::config::TlsFiles;
use crate::outbox::{self, Outbox, Step};
use crate::stats::Stats;

/// Plaintext taken to send and records not yet written, per connection (rustls's buffer limit).
const SEND_BUFFER: usize = 64 * 1024;

/// Records read from the socket in one go before the reader hands on what it has.
const RECORDS_AT_ONCE: usize = 16;

/// The certificate the TLS ports present: read at start, swapped on SIGHUP.
#[derive(Debug)]
pub struct Certs {
    files: TlsFiles,
    current: RefCell<Arc<ServerConfig>>,
}

impl Certs {
    /// Reads the certificate chain and key of `files`; an error is one line that names the file
    /// and what is wrong with it.
    pub fn load(files: &TlsFiles) -> Result<Self, String> {
        Ok(Self {
            files: files.clone(),
            current: RefCell::new(server_config(files)?),
        })
    }

    /// Reads the files again: new connections get the new certificate, open ones keep theirs.
    /// A certificate or key that cannot be used is logged, and the old one kept.
    pub fn reload(&self) {
        match server_config(&self.files) {
            Ok(config) => {
                *self.current.borrow_mut() = config;
                log::info!(
                    "TLS certificate reloaded from {}",
                    self.files.cert.display()
                );
            }
            Err(error) => log::error!("{error}; keeping the certificate in use"),
        }
    }

    /// The configuration for a new connection.
    fn current(&self) -> Arc<ServerConfig> {
        self.current.borrow().clone()
    }
}

/// A rustls server configuration (ring, TLS 1.2 and 1.3) with the certificate and key of `files`.
fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    let (cert, key) = (files.cert.display(), files.key.display());
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("cannot read --tls-cert {cert}: {error}"))?;
    if chain.is_empty() {
        return Err(format!(
            "cannot use --tls-cert {cert}: no certificate in it"
        ));
    }
    let private = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|error| format!("cannot read --tls-key {key}: {error}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("cannot set up TLS: {error}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|error| format!("cannot use --tls-cert {cert} with --tls-key {key}: {error}"))?;
    Ok(Arc::new(config))
}

/// Reloads `certs` on every SIGHUP, for as long as the server runs.
pub(crate) async fn reload_on_hangup(certs: &Certs) {
    use futures_lite::StreamExt;
    match async_signal::Signals::new([async_signal::Signal::Hup]) {
        Ok(mut signals) => {
            while let Some(Ok(_)) = signals.next().await {
                certs.reload();
            }
        }
        Err(error) => log::warn!("cannot reload the certificate on SIGHUP: {error}"),
    }
    std::future::pending().await
}

/// A connection's byte stream: the socket itself, or TLS over it.
#[derive(Clone)]
pub(crate) enum Stream {
    /// Plaintext.
    Plain(Arc<Async<TcpStream>>),
    /// TLS, shared by the reader and the writer.
    Tls(Rc<TlsConn>),
}

impl Stream {
    /// `socket` as it is, or with a TLS server connection over it when `certs` is given, and
    /// what of `first` (bytes read before, past a PROXY header) is plaintext: all of it on a
    /// plain socket; none over TLS, where they are the first records, fed to rustls here.
    pub(crate) fn new(
        socket: Arc<Async<TcpStream>>,
        first: Vec<u8>,
        certs: Option<&Certs>,
        stats: &Arc<Stats>,
    ) -> io::Result<(Self, Vec<u8>)> {
        let Some(certs) = certs else {
            return Ok((Self::Plain(socket), first));
        };
        let mut conn = ServerConnection::new(certs.current()).map_err(io::Error::other)?;
        conn.set_buffer_limit(Some(SEND_BUFFER));
        let tls = Rc::new(TlsConn {
            socket,
            conn: RefCell::new(conn),
            writer: RefCell::new(None),
            reader: RefCell::new(None),
            pending: Cell::new(false),
            failed: Cell::new(false),
            counted: Cell::new(false),
            stats: stats.clone(),
        });
        if !first.is_empty() {
            tls.feed(&first)?;
        }
        Ok((Self::Tls(tls), Vec::new()))
    }

    /// The socket under it.
    pub(crate) fn socket(&self) -> &Arc<Async<TcpStream>> {
        match self {
            Self::Plain(socket) => socket,
            Self::Tls(tls) => &tls.socket,
        }
    }

    /// Waits until [`Stream::read`] may have something.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        match self {
            Self::Plain(socket) => socket.readable().await,
            Self::Tls(tls) => tls.readable().await,
        }
    }

    /// Reads what is there without waiting: `WouldBlock` when nothing is, `Ok(0)` at the end.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(socket) => socket.get_ref().read(buf),
            Self::Tls(tls) => tls.read(buf),
        }
    }

    /// One step of the writer: writes what the fan-out has due for `conn`, as
    /// [`outbox::write_step`] does for a plain socket.
    pub(crate) fn poll_write(
        &self,
        outbox: &Outbox,
        conn: ConnId,
        stats: &Stats,
        waker: &Waker,
    ) -> Poll<io::Result<Step>> {
        match self {
            Self::Plain(socket) => {
                let mut write = |slices: &[IoSlice<'_>]| {
                    io::Write::write_vectored(&mut socket.get_ref(), slices)
                };
                outbox::write_step(outbox, conn, &mut write, stats, waker)
            }
            Self::Tls(tls) => tls.poll_write(outbox, conn, stats, waker),
        }
    }

    /// Before the socket is shut down: a TLS connection says goodbye (close_notify), if the
    /// socket takes it at once.
    pub(crate) fn finish(&self) {
        if let Self::Tls(tls) = self {
            let mut conn = tls.conn.borrow_mut();
            if !conn.is_handshaking() && !tls.failed.get() {
                conn.send_close_notify();
                let _ = flush(&mut conn, tls.socket.get_ref());
            }
        }
    }
}

/// One TLS connection, shared by its reader and writer on the server's one thread.
pub(crate) struct TlsConn {
    socket: Arc<Async<TcpStream>>,
    conn: RefCell<ServerConnection>,
    /// The writer, woken when the reader has given rustls something to send.
    writer: RefCell<Option<Waker>>,
    /// The reader, parked while the handshake's answer waits to be written.
    reader: RefCell<Option<Waker>>,
    /// Plaintext, or records, may be waiting: read before waiting on the socket.
    pending: Cell<bool>,
    /// The peer broke the protocol: the writer sends rustls's alert and stops.
    failed: Cell<bool>,
    /// The handshake's outcome was counted.
    counted: Cell<bool>,
    stats: Arc<Stats>,
}

impl TlsConn {
    /// Ready when a read may make progress: plaintext or records are waiting, or the socket
    /// is readable while rustls wants to read (during the handshake it does not until its
    /// answer is written: the reader waits for the writer then).
    async fn readable(&self) -> io::Result<()> {
        poll_fn(|cx| {
            if self.pending.get() || self.conn.borrow().wants_read() {
                return Poll::Ready(());
            }
            *self.reader.borrow_mut() = Some(cx.waker().clone());
            wake(&self.writer);
            Poll::Pending
        })
        .await;
        if self.pending.get() {
            return Ok(());
        }
        self.socket.readable().await
    }

    /// Feeds rustls records read before the connection was opened (at most a PROXY header's
    /// read past it: a bounded few bytes); the reader takes what they hold first.
    fn feed(&self, mut records: &[u8]) -> io::Result<()> {
        let mut conn = self.conn.borrow_mut();
        while !records.is_empty() {
            if conn.read_tls(&mut records)? == 0 {
                break;
            }
            if let Err(error) = conn.process_new_packets() {
                return Err(self.fail(&conn, error));
            }
        }
        self.pending.set(true);
        Ok(())
    }

    /// Feeds rustls the records the socket has (a few at most), and takes the plaintext.
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut conn = self.conn.borrow_mut();
        self.pending.set(false);
        let (mut records, mut eof) = (0, false);
        while conn.wants_read() && records < RECORDS_AT_ONCE {
            match conn.read_tls(&mut self.socket.get_ref()) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(_) => {
                    records += 1;
                    if let Err(error) = conn.process_new_packets() {
                        return Err(self.fail(&conn, error));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if !self.counted.get() && !conn.is_handshaking() {
            self.counted.set(true);
            self.stats.tls_handshakes.fetch_add(1, Relaxed);
            wake(&self.writer);
        }
        if conn.wants_write() {
            wake(&self.writer);
        }
        match conn.reader().read(buf) {
            Ok(n) => {
                let more = conn
                    .process_new_packets()
                    .is_ok_and(|state| state.plaintext_bytes_to_read() > 0);
                self.pending
                    .set(n > 0 && (more || records == RECORDS_AT_ONCE));
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && eof => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// The peer broke the protocol: counted, logged, and the writer woken to send the alert.
    fn fail(&self, conn: &ServerConnection, error: rustls::Error) -> io::Error {
        if !self.counted.get() && conn.is_handshaking() {
            self.counted.set(true);
            self.stats.tls_failures.fetch_add(1, Relaxed);
        }
        log::debug!("TLS: {error}");
        self.failed.set(true);
        wake(&self.writer);
        io::Error::new(io::ErrorKind::InvalidData, error)
    }

    /// Writes rustls's records out, then (once the handshake is done) gives it what is due.
    fn poll_write(
        &self,
        outbox: &Outbox,
        id: ConnId,
        stats: &Stats,
        waker: &Waker,
    ) -> Poll<io::Result<Step>> {
        let mut conn = self.conn.borrow_mut();
        match flush(&mut conn, self.socket.get_ref()) {
            Ok(()) => wake(&self.reader),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Poll::Ready(Ok(Step::Blocked));
            }
            Err(e) => return Poll::Ready(Err(e)),
        }
        if self.failed.get() {
            return Poll::Ready(Err(io::ErrorKind::InvalidData.into()));
        }
        *self.writer.borrow_mut() = Some(waker.clone());
        if conn.is_handshaking() {
            // Nothing can be sent before the handshake ends: a connection the room closed
            // meanwhile (its handshake deadline, a per-address limit) ends here.
            let closing = outbox.hub.borrow_mut().fanout_of(id).is_closing(id);
            return if closing {
                Poll::Ready(Ok(Step::Done))
            } else {
                Poll::Pending
            };
        }
        let mut write =
            |slices: &[IoSlice<'_>]| match io::Write::write_vectored(&mut conn.writer(), slices) {
                // rustls's buffer is full: what it holds must be written out first.
                Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
                other => other,
            };
        outbox::write_step(outbox, id, &mut write, stats, waker)
    }
}

impl Drop for TlsConn {
    /// A connection that ends before its handshake does (closed, timed out) counts as failed.
    fn drop(&mut self) {
        if !self.counted.get() {
            self.stats.tls_failures.fetch_add(1, Relaxed);
        }
    }
}

/// Writes rustls's records to `socket` until none are left; `WouldBlock` when it is full.
fn flush(conn: &mut ServerConnection, socket: &TcpStream) -> io::Result<()> {
    while conn.wants_write() {
        match conn.write_tls(&mut &*socket) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Wakes the task parked in `slot`, if any.
fn wake(slot: &RefCell<Option<Waker>>) {
    if let Some(waker) = slot.borrow_mut().take() {
        waker.wake();
    }
}

/// The TLS side of a server: its certificate, and the listeners of the TLS ports.
#[derive(Debug)]
pub struct Tls {
    /// The certificate every TLS port presents, the web port's too.
    pub certs: Certs,
    /// The native protocol over TLS (`--tls-port`).
    pub native: Option<async_net::TcpListener>,
    /// IRC over TLS (`--irc-tls-port`).
    pub irc: Option<async_net::TcpListener>,
}
