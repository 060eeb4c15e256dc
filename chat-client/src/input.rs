//! Where commands come from: a terminal with a line editor, or lines from a script.

use std::io::{self, BufRead, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::AsyncWrite;
use rustyline_async::{Readline, ReadlineEvent, SharedWriter};
use smol::channel::Receiver;

/// What the user did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputEvent {
    /// A whole line, without its line ending.
    Line(String),
    /// End of input: Ctrl-D at the prompt, or the end of a script.
    Eof,
    /// Ctrl-C at the prompt.
    Interrupted,
}

/// The prompt while the user is choosing a name.
pub(crate) const NAME_PROMPT: &str = "name: ";
/// The prompt once joined.
pub(crate) const COMMAND_PROMPT: &str = "> ";

/// A source of commands: either an interactive line editor or a stream of lines.
#[derive(Debug)]
pub struct Input {
    source: Source,
    /// At a terminal, a password is being typed: read key by key, shown as nothing.
    hidden: Option<Hidden>,
}

/// A password being typed at the terminal: what was typed so far (kept across calls to
/// [`Input::next`], which may be cancelled), and the terminal's key events, read here instead
/// of by the line editor, which would show them.
struct Hidden {
    typed: String,
    events: crossterm::event::EventStream,
}

impl std::fmt::Debug for Hidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hidden")
    }
}

/// The longest password kept while it is typed; more is dropped (the server refuses it anyway).
const MAX_HIDDEN_BYTES: usize = 1024;

enum Source {
    Lines(Receiver<String>),
    Terminal(Box<Readline>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Lines(rx) => f.debug_tuple("Lines").field(rx).finish(),
            Source::Terminal(_) => f.write_str("Terminal"),
        }
    }
}

impl Input {
    /// Scripted input from a channel of lines; the channel closing is the end of input.
    pub fn lines(lines: Receiver<String>) -> Self {
        Input {
            source: Source::Lines(lines),
            hidden: None,
        }
    }

    /// Scripted input from stdin, read line by line on a thread of its own so the event loop
    /// never blocks on it. Invalid UTF-8 is replaced; a trailing `\r\n` or `\n` is removed.
    pub fn stdin_lines() -> Self {
        let (tx, rx) = smol::channel::bounded(64);
        // If the thread cannot start, `tx` is dropped with the closure and input simply ends.
        let _ = std::thread::Builder::new()
            .name("chat-client stdin".into())
            .spawn(move || {
                let mut stdin = io::stdin().lock();
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match stdin.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    if buf.ends_with(b"\n") {
                        buf.pop();
                        if buf.ends_with(b"\r") {
                            buf.pop();
                        }
                    }
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    if tx.send_blocking(line).is_err() {
                        break;
                    }
                }
            });
        Input::lines(rx)
    }

    /// Interactive input from the terminal, with a line editor and history. Puts the terminal in
    /// raw mode until the `Input` is dropped. The writer prints lines above the prompt.
    ///
    /// A line entered is erased from the screen, not left above the prompt as typed: the
    /// session shows what it did instead (your chat as the others see it, `who`'s answer), so
    /// that the screen reads as a conversation. Up recalls it.
    pub fn terminal() -> io::Result<(Self, PromptWriter)> {
        let (mut readline, writer) =
            Readline::new(COMMAND_PROMPT.to_owned()).map_err(|e| match e {
                rustyline_async::ReadlineError::IO(e) => e,
                other => io::Error::other(other),
            })?;
        readline.should_print_line_on(false, true);
        let input = Input {
            source: Source::Terminal(Box::new(readline)),
            hidden: None,
        };
        Ok((input, PromptWriter(writer)))
    }

    /// Whether a person is typing at a prompt (as opposed to a script).
    pub fn is_interactive(&self) -> bool {
        matches!(self.source, Source::Terminal(_))
    }

    /// The next thing the user did. Cancel-safe: dropping the future loses no input.
    pub async fn next(&mut self) -> InputEvent {
        if let Some(hidden) = &mut self.hidden {
            return hidden.next().await;
        }
        match &mut self.source {
            Source::Lines(rx) => match rx.recv().await {
                Ok(line) => InputEvent::Line(line),
                Err(_) => InputEvent::Eof,
            },
            Source::Terminal(readline) => match readline.readline().await {
                Ok(ReadlineEvent::Line(line)) => InputEvent::Line(line),
                Ok(ReadlineEvent::Interrupted) => InputEvent::Interrupted,
                // The terminal went away: treat it as the end of input.
                Ok(ReadlineEvent::Eof) | Err(_) => InputEvent::Eof,
            },
        }
    }

    /// Shows `prompt` in front of what the user types (no-op for scripted input).
    pub(crate) fn set_prompt(&mut self, prompt: &str) {
        if let Source::Terminal(readline) = &mut self.source {
            let _ = readline.update_prompt(prompt);
        }
    }

    /// At a terminal, reads the next lines as passwords (`true`): nothing typed is shown or
    /// kept in the history; or as usual again (`false`). No-op for scripts.
    pub(crate) fn set_hidden(&mut self, hidden: bool) {
        let terminal = matches!(self.source, Source::Terminal(_));
        match (hidden && terminal, &self.hidden) {
            (true, None) => {
                self.hidden = Some(Hidden {
                    typed: String::new(),
                    events: crossterm::event::EventStream::new(),
                });
            }
            (false, Some(_)) => self.hidden = None,
            _ => {}
        }
    }

    /// Adds a line to the history reached with the up and down keys (no-op for scripts and
    /// for passwords).
    pub(crate) fn remember(&mut self, line: &str) {
        if let Source::Terminal(readline) = &mut self.source
            && self.hidden.is_none()
            && !line.trim().is_empty()
        {
            readline.add_history_entry(line.to_owned());
        }
    }

    /// Prints whatever is still queued for the terminal and removes the prompt. Call before
    /// exiting; the terminal leaves raw mode when the `Input` is dropped.
    pub fn finish(&mut self, writer: &mut PromptWriter) {
        if let Source::Terminal(readline) = &mut self.source {
            let _ = readline.flush();
            // A line that found the queue full waits in the writer; push it out now.
            let _ = writer.0.write(b"");
            let _ = readline.flush();
        }
    }
}

impl Hidden {
    /// The password typed, once Enter is pressed; Ctrl-C interrupts, Ctrl-D on nothing ends.
    /// Cancel-safe: what was typed stays in `typed`.
    async fn next(&mut self) -> InputEvent {
        use crossterm::event::{Event, KeyCode, KeyEventKind, KeyModifiers};
        use futures_lite::StreamExt;
        loop {
            let key = match self.events.next().await {
                Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => key,
                Some(Ok(Event::Paste(text))) => {
                    self.push(&text);
                    continue;
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return InputEvent::Eof,
            };
            let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
            match key.code {
                KeyCode::Char('c') if ctrl => {
                    self.typed.clear();
                    return InputEvent::Interrupted;
                }
                KeyCode::Char('d') if ctrl && self.typed.is_empty() => return InputEvent::Eof,
                KeyCode::Char('u') if ctrl => self.typed.clear(),
                KeyCode::Char(c) if !ctrl => self.push(c.encode_utf8(&mut [0; 4])),
                KeyCode::Backspace => {
                    self.typed.pop();
                }
                KeyCode::Enter => return InputEvent::Line(std::mem::take(&mut self.typed)),
                _ => {}
            }
        }
    }

    fn push(&mut self, text: &str) {
        for c in text.chars().filter(|c| !c.is_control()) {
            if self.typed.len() + c.len_utf8() > MAX_HIDDEN_BYTES {
                return;
            }
            self.typed.push(c);
        }
    }
}

/// Prints whole lines above the prompt without garbling what the user is typing.
///
/// Each write must be one or more whole lines. Flushing does nothing: lines reach the terminal
/// whenever the [`Input`] is polled, and at [`Input::finish`].
#[derive(Clone)]
pub struct PromptWriter(SharedWriter);

impl std::fmt::Debug for PromptWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PromptWriter")
    }
}

impl AsyncWrite for PromptWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // `SharedWriter`'s async write appends before it may return `Pending`, so a retry would
        // duplicate the line. Its blocking write keeps the bytes when the queue is full and
        // sends them with the next line instead, which is what we want.
        match self.get_mut().0.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Ready(Ok(buf.len())),
            other => Poll::Ready(other),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
