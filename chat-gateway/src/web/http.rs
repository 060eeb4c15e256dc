//! The HTTP side of the web adapter, without I/O: parse a request, decide the answer (the page,
//! its script and style, the WebSocket upgrade, or an error status), and read the WebSocket
//! frames a page sends. [`super::WebCodec`] keeps them per connection.

use std::io::{self, Read, Write};

use chat_core::Inbound;
use tungstenite::handshake::machine::TryParse;
use tungstenite::handshake::server::{Request, create_response, write_response};
use tungstenite::http::{HeaderName, HeaderValue};
use tungstenite::protocol::{Message, Role, WebSocketConfig, WebSocketContext};

use super::json::decode_client;
use super::request::{Head, Parsed, WebPolicy, parse};

/// The page, its script and its style, compiled into the binary.
const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const APP_CSS: &str = include_str!("page/app.css");
/// The tab's icon.
const FAVICON: &[u8] = include_bytes!("page/favicon.ico");

const TEXT: &str = "text/plain; charset=utf-8";

/// The page may load its own script, style and WebSocket, and nothing else: no inline script,
/// no remote loads, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Headers on every answer of the web port, errors and the upgrade included: the policy above,
/// no guessing of types, no framing.
const SECURITY_HEADERS: [(&str, &str); 3] = [
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
];

/// The longest request head accepted (request line and headers).
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// Requests served on one connection before it is closed.
pub const MAX_REQUESTS: usize = 32;

/// What to do with the bytes read so far on a connection in its HTTP phase.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The request is not complete yet: read more.
    Incomplete,
    /// Write `bytes`; `consumed` bytes of input were the request. Close afterwards if `close`.
    Reply {
        /// The response.
        bytes: Vec<u8>,
        /// Bytes of the request.
        consumed: usize,
        /// Close the connection after the response.
        close: bool,
    },
    /// Write `bytes` (101 Switching Protocols); from `consumed` on, the input is WebSocket
    /// frames.
    Upgrade {
        /// The response.
        bytes: Vec<u8>,
        /// Bytes of the request.
        consumed: usize,
    },
}

/// Decides the answer to the request at the start of `input`. `last` says this is the last
/// request the connection may make.
pub fn answer(input: &[u8], policy: &WebPolicy, last: bool) -> Answer {
    // A request is judged on its first MAX_REQUEST_BYTES alone, so that the answer does not
    // depend on how many bytes past them one read happened to bring.
    let input = &input[..input.len().min(MAX_REQUEST_BYTES)];
    let (consumed, head) = match parse(input) {
        Parsed::Head(consumed, head) => (consumed, head),
        Parsed::Partial if input.len() < MAX_REQUEST_BYTES => return Answer::Incomplete,
        Parsed::Partial => return error(431, "Request Header Fields Too Large", input.len()),
        Parsed::Refused(status, text) => return error(status, text, input.len()),
    };
    // A name this port does not serve (a rebound one, say) gets nothing but this.
    if head.host.is_some_and(|host| !policy.allows_host(host)) {
        return error(421, "Misdirected Request", consumed);
    }
    let close = last || head.close;
    let page = |content_type: &str, body: &[u8]| Answer::Reply {
        bytes: response(200, "OK", content_type, body, close),
        consumed,
        close,
    };
    match head.path {
        "/" | "/index.html" => page("text/html; charset=utf-8", INDEX_HTML.as_bytes()),
        "/app.js" => page("text/javascript; charset=utf-8", APP_JS.as_bytes()),
        "/app.css" => page("text/css; charset=utf-8", APP_CSS.as_bytes()),
        "/favicon.ico" => page("image/x-icon", FAVICON),
        "/ws" => upgrade(&input[..consumed], &head, policy),
        _ => Answer::Reply {
            bytes: response(404, "Not Found", TEXT, b"not found\n", close),
            consumed,
            close,
        },
    }
}

/// The answer to a request for `/ws` (its head is `request`): the upgrade, if it is one from
/// an allowed origin.
fn upgrade(request: &[u8], head: &Head<'_>, policy: &WebPolicy) -> Answer {
    let consumed = request.len();
    if !head.websocket {
        let body = b"this is the chat's WebSocket; open / in a browser\n";
        return Answer::Reply {
            bytes: response(426, "Upgrade Required", TEXT, body, true),
            consumed,
            close: true,
        };
    }
    if !policy.allows_origin(head.origin, head.host) {
        return error(403, "Forbidden", consumed);
    }
    // The head passed the strict checks; tungstenite checks the WebSocket's own headers.
    let Ok(Some((_, request))) = Request::try_parse(request) else {
        return error(400, "Bad Request", consumed);
    };
    let Ok(mut reply) = create_response(&request) else {
        return error(400, "Bad Request", consumed);
    };
    for (name, value) in SECURITY_HEADERS {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            return error(500, "Internal Server Error", consumed);
        };
        reply.headers_mut().insert(name, value);
    }
    let mut bytes = Vec::new();
    if write_response(&mut bytes, &reply).is_err() {
        return error(400, "Bad Request", consumed);
    }
    Answer::Upgrade { bytes, consumed }
}

/// An error status, after which the connection is closed.
fn error(status: u16, text: &str, consumed: usize) -> Answer {
    Answer::Reply {
        bytes: response(
            status,
            text,
            TEXT,
            format!("{status} {text}\n").as_bytes(),
            true,
        ),
        consumed,
        close: true,
    }
}

/// The answer to a request the room's rate limit refused, after which the connection is closed.
pub(crate) fn too_many_requests() -> Vec<u8> {
    response(
        429,
        "Too Many Requests",
        TEXT,
        b"429 Too Many Requests\n",
        true,
    )
}

fn response(status: u16, text: &str, content_type: &str, body: &[u8], close: bool) -> Vec<u8> {
    let connection = if close { "close" } else { "keep-alive" };
    let mut out = format!(
        "HTTP/1.1 {status} {text}\r\n\
         Content-Type: {content_type}\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (name, value) in SECURITY_HEADERS {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "Referrer-Policy: no-referrer\r\n\
         Cache-Control: no-store\r\n\
         Connection: {connection}\r\n\r\n"
    ));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The largest WebSocket message (and frame) accepted from a page: a frame the room accepts,
/// written as JSON, whose escaping may double it.
pub fn max_ws_message(max_frame_bytes: u32) -> usize {
    2 * max_frame_bytes as usize + 256
}

/// Bytes fed in, and bytes the context wrote, for a [`WebSocketContext`] that never touches a
/// socket.
#[derive(Debug, Default)]
struct Pipe {
    input: Vec<u8>,
    read: usize,
    output: Vec<u8>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.input[self.read..];
        if rest.is_empty() {
            self.input.clear();
            self.read = 0;
            if self.input.capacity() > 64 * 1024 {
                self.input = Vec::new();
            }
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.read += n;
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The reading half of a server-side WebSocket, fed bytes: tungstenite's frame parser
/// (masking, fragments, control frames, UTF-8, size limits) with the JSON on top.
#[derive(Debug)]
pub struct WsReader {
    context: WebSocketContext,
    pipe: Pipe,
    done: bool,
}

impl WsReader {
    /// A reader whose input starts with `part` (bytes that came after the upgrade request),
    /// refusing messages over `max_message` bytes.
    pub fn new(part: &[u8], max_message: usize) -> Self {
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_write_buffer_size(64 * 1024)
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        Self {
            context: WebSocketContext::new(Role::Server, Some(config)),
            pipe: Pipe {
                input: part.to_vec(),
                ..Pipe::default()
            },
            done: false,
        }
    }

    /// Adds bytes read from the socket.
    pub fn feed(&mut self, bytes: &[u8]) {
        if !self.done {
            self.pipe.input.extend_from_slice(bytes);
        }
    }

    /// The next thing the page sent, or `None` until more bytes are fed: a message, the
    /// WebSocket's own answer (a pong), the page's goodbye (a close frame: `End`), or a bad
    /// frame. After `End` or `Malformed`, always `None`.
    pub fn poll_inbound(&mut self) -> Option<Inbound> {
        if self.done {
            return None;
        }
        let inbound = loop {
            if !self.pipe.output.is_empty() {
                return Some(Inbound::Reply(std::mem::take(&mut self.pipe.output)));
            }
            match self.context.read(&mut self.pipe) {
                Ok(Message::Text(text)) => match decode_client(text.as_str()) {
                    Some(msg) => return Some(Inbound::Msg(msg)),
                    None => break Inbound::Malformed,
                },
                // The context queued a pong: flush it into the pipe now, so that it comes
                // before whatever follows the ping however the bytes were cut.
                Ok(Message::Ping(_)) => {
                    let _ = self.context.flush(&mut self.pipe);
                }
                Ok(Message::Pong(_) | Message::Frame(_)) => {}
                Ok(Message::Binary(_)) => break Inbound::Malformed,
                // The room says goodbye with its own closing message and close frame.
                Ok(Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed) => {
                    break Inbound::End;
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return (!self.pipe.output.is_empty())
                        .then(|| Inbound::Reply(std::mem::take(&mut self.pipe.output)));
                }
                Err(_) => break Inbound::Malformed,
            }
        };
        self.done = true;
        self.pipe = Pipe::default();
        Some(inbound)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use chat_proto::ClientMsg;

    use super::*;

    /// What a reader makes of `bytes` fed in pieces of the given sizes (cycled), with adjacent
    /// replies joined (how they are cut depends on the reads).
    fn read_all(bytes: &[u8], sizes: &[usize]) -> Vec<Inbound> {
        let mut reader = WsReader::new(&[], max_ws_message(2048));
        let mut out: Vec<Inbound> = Vec::new();
        let mut rest = bytes;
        let mut size = sizes.iter().cycle();
        loop {
            let mut steps = 0;
            while let Some(inbound) = reader.poll_inbound() {
                steps += 1;
                assert!(steps <= bytes.len() + 2, "the reader loops");
                match (out.last_mut(), inbound) {
                    (Some(Inbound::Reply(last)), Inbound::Reply(more)) => last.extend(more),
                    (_, inbound) => out.push(inbound),
                }
            }
            if rest.is_empty() {
                return out;
            }
            let n = size.next().copied().unwrap_or(1).clamp(1, rest.len());
            let (piece, tail) = rest.split_at(n);
            reader.feed(piece);
            rest = tail;
        }
    }

    /// A masked client frame, as a browser sends it.
    pub(in crate::web) fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut out = vec![0x80 | opcode];
        assert!(payload.len() < 126);
        out.push(0x80 | payload.len() as u8);
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn frames_read_the_same_however_the_bytes_are_cut() {
        let mut bytes = masked(0x1, br#"{"type":"hello","name":"ann"}"#);
        bytes.extend(masked(0x9, b"ping"));
        bytes.extend(masked(0x1, br#"{"type":"who"}"#));
        bytes.extend(masked(0x2, b"binary"));
        let whole = read_all(&bytes, &[bytes.len()]);
        assert_eq!(whole.len(), 4, "{whole:?}");
        assert!(matches!(&whole[0], Inbound::Msg(ClientMsg::Hello { name, .. }) if name == "ann"));
        // The pong: unmasked, the ping's payload.
        assert_eq!(
            whole[1],
            Inbound::Reply(vec![0x8a, 4, b'p', b'i', b'n', b'g'])
        );
        assert_eq!(whole[2], Inbound::Msg(ClientMsg::Who));
        assert_eq!(whole[3], Inbound::Malformed);
        assert_eq!(read_all(&bytes, &[1]), whole);
        assert_eq!(read_all(&bytes, &[7, 3]), whole);
    }

    #[test]
    fn an_unmasked_or_oversized_client_frame_is_malformed() {
        let unmasked = [0x81, 2, b'{', b'}'];
        assert_eq!(read_all(&unmasked, &[4]), vec![Inbound::Malformed]);
        // A header announcing 1 MiB is refused before any of it arrives.
        let big = [0x81, 0x80 | 127, 0, 0, 0, 0, 0, 16, 0, 0, 1, 2, 3, 4];
        assert_eq!(read_all(&big, &[big.len()]), vec![Inbound::Malformed]);
    }

    #[test]
    fn a_close_from_the_page_is_a_leave_and_nothing_after_it_counts() {
        let mut bytes = masked(0x8, &[0x03, 0xe9]);
        bytes.extend(masked(0x1, br#"{"type":"who"}"#));
        assert_eq!(read_all(&bytes, &[bytes.len()]), vec![Inbound::End]);
    }
}
