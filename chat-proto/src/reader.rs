//! A read buffer and a [`FrameDecoder`] in one: the driver reads bytes into the space it is
//! given, says how many arrived, and takes decoded messages until there are none.

use std::io;

use serde::de::DeserializeOwned;

use crate::frame::{DecodeError, FrameDecoder, decode_payload};

/// The read space offered to a fresh or quiet stream.
pub const MIN_READ_CHUNK: usize = 4 * 1024;

/// The most read space offered at once, reached by doubling while reads keep filling it.
pub const MAX_READ_CHUNK: usize = 64 * 1024;

/// Sans-IO reading of frames: owns a read buffer and a [`FrameDecoder`].
///
/// The driver reads into [`buf`](Self::buf), reports the count with [`filled`](Self::filled),
/// then calls [`next`](Self::next) until it returns `None`. Nothing here touches a socket;
/// [`read_from`](Self::read_from) is a convenience for blocking [`io::Read`] sources.
///
/// Memory: the space offered starts at [`MIN_READ_CHUNK`], doubles (up to [`MAX_READ_CHUNK`])
/// each time a read fills it, and halves when a read uses less than a quarter of it, so the
/// cost of a read follows its size. Once every byte read has been decoded the buffer is
/// released, so a connection waiting between reads holds no read buffer, only the decoder's
/// partial frame (which the decoder itself keeps small). An announced length over the limit is
/// refused by the decoder before anything is allocated for it.
///
/// After an error the stream is out of step: `next` keeps returning that error.
///
/// ```
/// use chat_proto::{ClientMsg, FrameReader, encode_to_vec};
/// let bytes = encode_to_vec(&ClientMsg::Who).unwrap();
/// let mut reader = FrameReader::new(1024);
/// let space = reader.buf();
/// space[..bytes.len()].copy_from_slice(&bytes); // a read from the socket, here
/// reader.filled(bytes.len());
/// assert_eq!(reader.next::<ClientMsg>(), Ok(Some(ClientMsg::Who)));
/// assert_eq!(reader.next::<ClientMsg>(), Ok(None));
/// ```
#[derive(Debug)]
pub struct FrameReader {
    decoder: FrameDecoder,
    /// Read space; bytes `start..end` were read but not yet handed to the decoder.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// How much space the next [`buf`](Self::buf) offers.
    chunk: usize,
    /// The error that put the stream out of step, repeated by every later `next`.
    failed: Option<DecodeError>,
}

impl FrameReader {
    /// A reader that refuses frames with payloads longer than `max_frame` bytes.
    pub fn new(max_frame: u32) -> Self {
        Self {
            decoder: FrameDecoder::new(max_frame),
            buf: Vec::new(),
            start: 0,
            end: 0,
            chunk: MIN_READ_CHUNK,
            failed: None,
        }
    }

    /// The largest payload accepted.
    pub fn max_frame(&self) -> u32 {
        self.decoder.max_frame()
    }

    /// The space to read into next: between [`MIN_READ_CHUNK`] and [`MAX_READ_CHUNK`] bytes,
    /// allocated now if need be. Report how many bytes were read with [`filled`](Self::filled).
    ///
    /// Bytes read earlier and not yet taken with [`next`](Self::next) are kept in front of it.
    pub fn buf(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let want = self.end + self.chunk;
        if self.buf.len() != want {
            self.buf.resize(want, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Says that `n` bytes were read into the space [`buf`](Self::buf) gave. A count larger
    /// than that space is cut down to it. `0` (the end of the stream) changes nothing.
    pub fn filled(&mut self, n: usize) {
        let offered = self.buf.len() - self.end;
        let n = n.min(offered);
        self.end += n;
        if n == 0 {
            return;
        }
        if n == offered {
            self.chunk = (self.chunk * 2).min(MAX_READ_CHUNK);
        } else if n < offered / 4 {
            self.chunk = (self.chunk / 2).max(MIN_READ_CHUNK);
        }
    }

    /// The next whole message among the bytes read so far, or `None` once they are all used
    /// (a partial frame is kept for the next read). Each call decodes a message, fails, or
    /// uses up the bytes, so `while let Some(m) = reader.next()?` always ends.
    // Named like `Iterator::next` on purpose: it is the same loop, but generic and fallible.
    #[allow(clippy::should_implement_trait)]
    pub fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, DecodeError> {
        self.next_with(decode_payload)
    }

    /// [`FrameReader::next`], with each whole payload read by `payload` (a
    /// [`crate::ClientDecoder`], say, which reads a client's frames by its version).
    pub fn next_with<T>(
        &mut self,
        payload: impl FnOnce(&[u8]) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let mut input = &self.buf[self.start..self.end];
        let result = self.decoder.decode_with(&mut input, payload);
        self.start = self.end - input.len();
        match result {
            Ok(Some(msg)) => Ok(Some(msg)),
            Ok(None) => {
                // Everything read was decoded or went into the decoder's partial frame.
                self.release();
                Ok(None)
            }
            Err(error) => {
                self.failed = Some(error.clone());
                self.release();
                Err(error)
            }
        }
    }

    /// Bytes received that do not yet make a whole message: undecoded bytes and a partial
    /// frame. Once `next` returned `None`, this is the part of a frame that was cut short, so
    /// a non-zero value at the end of the stream means the peer stopped in the middle of one.
    pub fn buffered(&self) -> usize {
        self.end - self.start + self.decoder.buffered()
    }

    /// Bytes of read buffer held right now (not counting the decoder's partial frame).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Reads once from `source` into [`buf`](Self::buf) and records it with
    /// [`filled`](Self::filled). `Ok(0)` is the end of the stream.
    pub fn read_from<R: io::Read + ?Sized>(&mut self, source: &mut R) -> io::Result<usize> {
        let n = source.read(self.buf())?;
        self.filled(n);
        Ok(n)
    }

    /// Drops the read buffer; nothing in it is waiting to be decoded.
    fn release(&mut self) {
        self.buf = Vec::new();
        self.start = 0;
        self.end = 0;
    }
}
