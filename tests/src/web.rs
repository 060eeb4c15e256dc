//! The room in a browser, for tests: a blocking WebSocket client that speaks the page's JSON,
//! and a small WebDriver client that drives a real headless Chromium through chromedriver.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

pub use crate::free_port;
use crate::{RECV_TIMEOUT, RunningServer, ServerConfig, TempDir};

/// Starts an in-process server with the room in a browser, both on free loopback ports.
pub fn start_web_server(config: ServerConfig) -> RunningServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let web = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    RunningServer::start_with_web(listener, Some(web), config).expect("start server")
}

/// What came from the server on a WebSocket.
#[derive(Debug, PartialEq)]
pub enum WebEvent {
    /// A JSON text message.
    Json(Value),
    /// A close frame, with its status code and reason.
    Close(Option<(u16, String)>),
    /// The connection ended without a close frame.
    Ended,
}

/// A blocking WebSocket client that speaks the page's JSON.
#[derive(Debug)]
pub struct WebClient {
    /// The WebSocket.
    pub socket: WebSocket<TcpStream>,
}

impl WebClient {
    /// Opens `ws://addr/ws`, with `origin` as the `Origin` header when given.
    pub fn connect(addr: SocketAddr, origin: Option<&str>) -> Result<Self, tungstenite::Error> {
        Self::over(TcpStream::connect(addr).expect("connect"), addr, origin)
    }

    /// The same over a socket already connected to `addr`.
    pub fn over(
        stream: TcpStream,
        addr: SocketAddr,
        origin: Option<&str>,
    ) -> Result<Self, tungstenite::Error> {
        stream.set_read_timeout(Some(RECV_TIMEOUT)).ok();
        let mut request =
            tungstenite::client::IntoClientRequest::into_client_request(format!("ws://{addr}/ws"))?;
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("Origin", origin.parse().expect("origin header"));
        }
        match tungstenite::client(request, stream) {
            Ok((socket, _)) => Ok(Self { socket }),
            Err(tungstenite::HandshakeError::Failure(error)) => Err(error),
            Err(tungstenite::HandshakeError::Interrupted(_)) => panic!("handshake interrupted"),
        }
    }

    /// Connects and joins as `name`; panics unless welcomed. Returns the welcome.
    pub fn join(addr: SocketAddr, name: &str) -> (Self, Value) {
        let mut client = Self::connect(addr, None).expect("websocket handshake");
        client.send(json!({"type": "hello", "name": name}));
        let welcome = client.recv();
        assert_eq!(
            welcome["type"], "welcome",
            "{name} was not welcomed: {welcome}"
        );
        (client, welcome)
    }

    /// Sends one JSON message.
    pub fn send(&mut self, msg: Value) {
        self.send_text(&msg.to_string());
    }

    /// Sends one text frame as it is.
    pub fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::text(text.to_owned()))
            .expect("send");
    }

    /// The next event from the server.
    pub fn next_event(&mut self) -> WebEvent {
        loop {
            match self.socket.read() {
                Ok(Message::Text(text)) => {
                    return WebEvent::Json(serde_json::from_str(text.as_str()).expect("json"));
                }
                Ok(Message::Close(frame)) => {
                    return WebEvent::Close(
                        frame.map(|CloseFrame { code, reason }| {
                            (u16::from(code), reason.to_string())
                        }),
                    );
                }
                Ok(Message::Binary(_)) => panic!("a binary frame from the server"),
                Ok(_) => {}
                Err(
                    tungstenite::Error::ConnectionClosed
                    | tungstenite::Error::AlreadyClosed
                    | tungstenite::Error::Protocol(_),
                ) => return WebEvent::Ended,
                Err(tungstenite::Error::Io(e)) => match e.kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                        panic!("nothing from the server within {RECV_TIMEOUT:?}")
                    }
                    _ => return WebEvent::Ended,
                },
                Err(other) => panic!("websocket read: {other}"),
            }
        }
    }

    /// The next message but pings (answered), without its log `time` (tests compare messages
    /// whole and check times on their own: [`WebClient::recv_timed`]).
    pub fn recv(&mut self) -> Value {
        let mut msg = self.recv_timed();
        if let Some(fields) = msg.as_object_mut() {
            fields.remove("time");
        }
        msg
    }

    /// The next message but pings (answered), as it came.
    pub fn recv_timed(&mut self) -> Value {
        loop {
            match self.next_event() {
                WebEvent::Json(msg) if msg["type"] == "ping" => {
                    self.send(json!({"type": "pong", "nonce": msg["nonce"]}));
                }
                WebEvent::Json(msg) => return msg,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }
}

/// Sends `request` as it is on a fresh connection and returns everything the server wrote
/// before it closed (or went quiet for a second).
pub fn http_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
    stream.write_all(request).expect("write");
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Where a program is on `PATH`.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| PathBuf::from(dir).join(program))
        .find(|path| path.is_file())
}

/// A chromedriver child process on a free loopback port, and one headless Chromium session.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    profile: TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile; panics with the
    /// command to install them when they are missing.
    pub fn start() -> Self {
        let (Some(chromedriver), Some(chromium)) = (on_path("chromedriver"), on_path("chromium"))
        else {
            panic!(
                "the browser tests need chromium and chromedriver; install with: apt-get install chromium chromium-driver (cargo xtask ci does)"
            );
        };
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let profile = TempDir::new("chat-web-test");
        let mut browser = Self {
            driver,
            port,
            session: String::new(),
            profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while browser.call("GET", "/status", None).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1000,640",
            &format!("--user-data-dir={}", browser.profile.0.display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let session = browser
            .call("POST", "/session", Some(capabilities))
            .expect("start a chromium session");
        browser.session = session["sessionId"]
            .as_str()
            .expect("session id")
            .to_owned();
        browser
    }

    /// One WebDriver command: its `value`, or the error it answered with.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(60))).ok();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let body = read_response(&mut stream).map_err(|e| e.to_string())?;
        let value: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        let value = value["value"].clone();
        if value.get("error").is_some() {
            return Err(value.to_string());
        }
        Ok(value)
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.call(method, &path, body)
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"))
    }

    /// Opens `url` in the current tab.
    pub fn open(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({"url": url})));
    }

    /// Opens a new tab and switches to it; returns its handle.
    pub fn new_tab(&self) -> String {
        let tab = self.session_call("POST", "/window/new", Some(json!({"type": "tab"})));
        let handle = tab["handle"].as_str().expect("tab handle").to_owned();
        self.switch_to(&handle);
        handle
    }

    /// The current tab's handle.
    pub fn tab(&self) -> String {
        self.session_call("GET", "/window", None)
            .as_str()
            .expect("tab handle")
            .to_owned()
    }

    /// Switches to the tab `handle`.
    pub fn switch_to(&self, handle: &str) {
        self.session_call("POST", "/window", Some(json!({"handle": handle})));
    }

    fn element(&self, css: &str) -> String {
        let found = self.session_call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .expect("element id")
            .to_owned()
    }

    /// Types `text` into the element `css` (`\n` presses Enter).
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        let text = text.replace('\n', "\u{E007}");
        self.session_call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        );
    }

    /// The rendered text of the element `css`.
    pub fn text(&self, css: &str) -> String {
        let id = self.element(css);
        self.session_call("GET", &format!("/element/{id}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `script` in the page and returns its value.
    pub fn eval(&self, script: &str) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Waits until `check` holds for the text of `css`; panics with what it was after `within`.
    pub fn wait_text(&self, css: &str, within: Duration, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = self.text(css);
            if check(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never matched within {within:?}; it shows: {text:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A PNG of the current tab.
    pub fn screenshot(&self) -> Vec<u8> {
        let base64 = self.session_call("GET", "/screenshot", None);
        data_encoding::BASE64
            .decode(base64.as_str().expect("base64").as_bytes())
            .expect("screenshot base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = self.call("DELETE", &path, None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The body of one HTTP response, read by its `Content-Length`, its chunks or to the end
/// (chromedriver may keep the connection open whatever the request asked). httparse reads the
/// head and the chunk sizes.
fn read_response(stream: &mut TcpStream) -> io::Result<String> {
    let mut data = Vec::new();
    let (head, framing) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&data).map_err(io::Error::other)? {
            httparse::Status::Complete(head) => break (head, Framing::of(response.headers)?),
            httparse::Status::Partial => read_more(stream, &mut data)?,
        }
    };
    let body = match framing {
        Framing::Length(length) => {
            while data.len() < head + length {
                read_more(stream, &mut data)?;
            }
            data[head..head + length].to_vec()
        }
        Framing::Chunked => read_chunks(stream, &mut data, head)?,
        Framing::ToEnd => {
            stream.read_to_end(&mut data)?;
            data.split_off(head)
        }
    };
    String::from_utf8(body).map_err(io::Error::other)
}

/// How a response's body ends.
enum Framing {
    Length(usize),
    Chunked,
    ToEnd,
}

impl Framing {
    fn of(headers: &[httparse::Header<'_>]) -> io::Result<Self> {
        let value = |name: &str| {
            headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
        };
        if value("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
            return Ok(Framing::Chunked);
        }
        match value("content-length") {
            Some(length) => length
                .parse()
                .map(Framing::Length)
                .map_err(io::Error::other),
            None => Ok(Framing::ToEnd),
        }
    }
}

/// The chunks of a chunked body that starts at `at` in `data`, joined; trailers are skipped.
fn read_chunks(stream: &mut TcpStream, data: &mut Vec<u8>, mut at: usize) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let (size_line, size) = match httparse::parse_chunk_size(&data[at..]) {
            Ok(httparse::Status::Complete(parsed)) => parsed,
            Ok(httparse::Status::Partial) => {
                read_more(stream, data)?;
                continue;
            }
            Err(error) => return Err(io::Error::other(format!("chunk size: {error:?}"))),
        };
        if size == 0 {
            return Ok(body);
        }
        let size = usize::try_from(size).map_err(io::Error::other)?;
        // The chunk, then its CRLF.
        let end = at + size_line + size + 2;
        while data.len() < end {
            read_more(stream, data)?;
        }
        body.extend_from_slice(&data[at + size_line..end - 2]);
        at = end;
    }
}

/// Reads what the peer sent next onto `data`; the end of the stream here is an error.
fn read_more(stream: &mut TcpStream, data: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk)? {
        0 => Err(io::ErrorKind::UnexpectedEof.into()),
        n => {
            data.extend_from_slice(&chunk[..n]);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `read_response` makes of `response`, written a few bytes at a time.
    fn read(response: &'static [u8]) -> io::Result<String> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = std::thread::spawn(move || {
            let (mut peer, _) = listener.accept().unwrap();
            for piece in response.chunks(5) {
                peer.write_all(piece).unwrap();
                peer.flush().unwrap();
            }
        });
        let mut stream = TcpStream::connect(addr).unwrap();
        let body = read_response(&mut stream);
        writer.join().unwrap();
        body
    }

    #[test]
    fn a_response_body_is_read_by_its_length_its_chunks_or_to_the_end() {
        let by_length = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello, and more";
        assert_eq!(read(by_length).unwrap(), "hello");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n";
        assert_eq!(read(chunked).unwrap(), "hello, world");
        let to_end = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"value\":1}";
        assert_eq!(read(to_end).unwrap(), "{\"value\":1}");
        let cut = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort";
        assert_eq!(read(cut).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
