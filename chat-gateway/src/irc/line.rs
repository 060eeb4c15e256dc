//! IRC lines: a reader that splits bytes into lines with a hard cap (never an unbounded buffer),
//! and a parser for one line (tags, prefix, command, parameters).
//!
//! A small parser rather than the `irc-proto` crate: that crate's default features pull in tokio
//! and tokio-util, its typed `Command` enum turns a wrong argument count into a parse error we
//! would have to map back to numerics, and it needs UTF-8 input. Ours is a few dozen lines over
//! text, with a fuzz target.

/// The longest line a client may send, CR LF included (RFC 1459/2812).
pub const MAX_LINE: usize = 512;

/// The longest line content, without its CR LF.
const MAX_CONTENT: usize = MAX_LINE - 2;

/// What [`LineReader::next`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// A whole line, without its terminator; never empty.
    Text(&'a [u8]),
    /// A line longer than [`MAX_LINE`]: refused once, and skipped up to its end.
    TooLong,
}

/// Splits a byte stream into lines at CR or LF, holding at most one line's worth of bytes.
#[derive(Debug, Default)]
pub struct LineReader {
    buf: Vec<u8>,
    /// Skipping the rest of a line already refused as too long.
    skipping: bool,
    /// `buf` holds the line last handed out: cleared at the next call.
    handed_out: bool,
}

impl LineReader {
    /// A reader with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next whole line, taken from what it holds and the front of `input` (which it
    /// advances past that line); `None` once `input` is used up, its unfinished tail kept.
    /// A caller may stop between lines and hand the rest of `input` back later.
    pub fn next<'s, 'i: 's>(&'s mut self, input: &mut &'i [u8]) -> Option<Line<'s>> {
        if self.handed_out {
            self.buf.clear();
            self.handed_out = false;
            if self.buf.capacity() > MAX_LINE {
                self.buf.shrink_to(MAX_LINE);
            }
        }
        while !input.is_empty() {
            let end = input.iter().position(|&b| b == b'\n' || b == b'\r');
            let (part, ended) = match end {
                Some(i) => (&input[..i], true),
                None => (*input, false),
            };
            // Past the terminator, and the LF of a CR LF: `input` starts at the next line.
            *input = match end {
                Some(i) if input[i..].starts_with(b"\r\n") => &input[i + 2..],
                Some(i) => &input[i + 1..],
                None => &[],
            };
            if self.skipping {
                self.skipping = !ended;
                continue;
            }
            if self.buf.len() + part.len() > MAX_CONTENT {
                self.buf.clear();
                self.skipping = !ended;
                return Some(Line::TooLong);
            }
            if self.buf.is_empty() && ended {
                if !part.is_empty() {
                    return Some(Line::Text(part)); // the common case: no copy
                }
                continue;
            }
            self.buf.extend_from_slice(part);
            if ended {
                self.handed_out = true;
                return Some(Line::Text(&self.buf));
            }
        }
        None
    }

    /// Feeds bytes; calls `on` with each whole line, in order.
    pub fn feed(&mut self, mut input: &[u8], mut on: impl FnMut(Line<'_>)) {
        while let Some(line) = self.next(&mut input) {
            on(line);
        }
    }
}

/// One parsed line: its tags (as sent), the command and its parameters (the trailing one
/// included, without its colon). The prefix a client may send is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// The tags, without the `@` (empty if none).
    pub tags: &'a str,
    /// The command as sent (compare with `eq_ignore_ascii_case`).
    pub command: &'a str,
    /// At most 15 parameters.
    pub params: Vec<&'a str>,
}

impl<'a> Message<'a> {
    /// Parses one line; `None` if it holds no command.
    pub fn parse(line: &'a str) -> Option<Self> {
        let mut rest = line.trim_start_matches(' ');
        let mut tags = "";
        if let Some(tagged) = rest.strip_prefix('@') {
            let (t, r) = tagged.split_once(' ').unwrap_or((tagged, ""));
            tags = t;
            rest = r.trim_start_matches(' ');
        }
        if rest.starts_with(':') {
            rest = rest
                .split_once(' ')
                .map_or("", |(_, r)| r)
                .trim_start_matches(' ');
        }
        let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if command.is_empty() {
            return None;
        }
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches(' ');
            if rest.is_empty() {
                break;
            }
            if let Some(trailing) = rest.strip_prefix(':') {
                params.push(trailing);
                break;
            }
            if params.len() == 14 {
                params.push(rest); // the fifteenth takes the rest, spaces and all
                break;
            }
            let (param, next) = rest.split_once(' ').unwrap_or((rest, ""));
            params.push(param);
            rest = next;
        }
        Some(Self {
            tags,
            command,
            params,
        })
    }

    /// The value of tag `key` as sent (escapes kept; empty for a tag without a value).
    pub fn tag(&self, key: &str) -> Option<&'a str> {
        self.tags
            .split(';')
            .map(|t| t.split_once('=').unwrap_or((t, "")))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// Parameter `i`, if given.
    pub fn param(&self, i: usize) -> Option<&'a str> {
        self.params.get(i).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<Result<String, ()>> {
        let mut reader = LineReader::new();
        let mut out = Vec::new();
        for chunk in chunks {
            reader.feed(chunk, |line| {
                out.push(match line {
                    Line::Text(t) => Ok(String::from_utf8_lossy(t).into_owned()),
                    Line::TooLong => Err(()),
                });
            });
        }
        out
    }

    #[test]
    fn lines_split_at_cr_or_lf_across_chunks() {
        assert_eq!(
            lines(&[b"NICK a\r\nUS", b"ER a 0 * :A\r", b"\n\nPING x\n"]),
            vec![
                Ok("NICK a".into()),
                Ok("USER a 0 * :A".into()),
                Ok("PING x".into())
            ]
        );
    }

    #[test]
    fn a_line_of_512_bytes_passes_and_one_more_is_refused_once() {
        let max = format!("{}\r\n", "a".repeat(510));
        assert_eq!(lines(&[max.as_bytes()]), vec![Ok("a".repeat(510))]);
        let long = format!("{}\r\nPING x\r\n", "a".repeat(5000));
        let chunks: Vec<&[u8]> = long.as_bytes().chunks(7).collect();
        assert_eq!(lines(&chunks), vec![Err(()), Ok("PING x".into())]);
    }

    #[test]
    fn a_reader_stops_between_lines_and_goes_on_with_the_rest_later() {
        let mut reader = LineReader::new();
        let mut input: &[u8] = b"NICK a\r\nUSER a 0 * :A\r\nPI";
        assert_eq!(reader.next(&mut input), Some(Line::Text(b"NICK a")));
        assert_eq!(input, b"USER a 0 * :A\r\nPI");
        let kept = input.to_vec();
        let mut input = &kept[..];
        assert_eq!(reader.next(&mut input), Some(Line::Text(b"USER a 0 * :A")));
        assert_eq!(reader.next(&mut input), None);
        let mut input: &[u8] = b"NG x\n";
        assert_eq!(reader.next(&mut input), Some(Line::Text(b"PING x")));
        assert_eq!((reader.next(&mut input), input), (None, &b""[..]));
    }

    #[test]
    fn messages_parse_with_tags_prefix_and_trailing() {
        let m = Message::parse("@a=b :n!u@h PRIVMSG #chat :hello  there").unwrap();
        assert_eq!(m.command, "PRIVMSG");
        assert_eq!((m.tag("a"), m.tag("b")), (Some("b"), None));
        assert_eq!(m.params, vec!["#chat", "hello  there"]);
        let m = Message::parse("USER u 0 *   :Real Name").unwrap();
        assert_eq!(m.params, vec!["u", "0", "*", "Real Name"]);
        assert_eq!(Message::parse(":only-a-prefix"), None);
        assert_eq!(Message::parse("   "), None);
        let m = Message::parse("PONG :").unwrap();
        assert_eq!(m.params, vec![""]);
        let many = format!("X {}", "p ".repeat(20));
        assert_eq!(Message::parse(&many).unwrap().params.len(), 15);
    }
}
