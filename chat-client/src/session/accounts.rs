//! The session's half of accounts: the password a hello carries, asked for unseen at a
//! terminal when the server says the name is registered, and `register` and `passwd`.

use std::time::Instant;

use chat_proto::{ClientMsg, Password, Refusal};

use super::{Output, Phase, Prompt, Session};
use crate::input::InputEvent;
use crate::render::Line;

/// A password asked for at the terminal, and what it is for.
#[derive(Debug)]
pub(super) enum Asking {
    /// The password of this name, for the hello.
    Hello(String),
    /// A password to register, then the same again.
    Register,
    RegisterAgain(Password),
    /// The password now, then the new one, then the new one again.
    PasswdOld,
    PasswdNew(Password),
    PasswdAgain(Password, Password),
}

impl Session {
    /// A refusal that a password answers: at a terminal, asks for it (unseen) and says hello
    /// again with it. Returns whether it did.
    pub(super) fn ask_login(&mut self, refusal: Refusal) -> bool {
        let asks = matches!(refusal, Refusal::NameRegistered | Refusal::WrongPassword);
        if !asks || !self.interactive || self.rejoining {
            return false;
        }
        // A password that did not match is not given again.
        self.password = None;
        let Some(name) = self.wanted.clone() else {
            return false;
        };
        self.phase = Phase::Naming;
        self.ask(Asking::Hello(name), Prompt::Password);
        true
    }

    fn ask(&mut self, asking: Asking, prompt: Prompt) {
        self.asking = Some(asking);
        self.push(Output::Prompt(prompt));
    }

    /// `register`: with the password given, at once; at a terminal, typed twice, unseen.
    pub(super) fn register(&mut self) {
        if let Some(password) = self.password.clone() {
            self.send_register(password);
        } else if self.interactive {
            self.print(Line::notice("type the password to register, twice"));
            self.ask(Asking::Register, Prompt::NewPassword);
        } else {
            self.print(Line::error(
                "register needs a password: give --password-file FILE or CHAT_PASSWORD",
            ));
        }
    }

    fn send_register(&mut self, password: Password) {
        self.pending = Some(password.clone());
        self.send(ClientMsg::Register { password });
    }

    /// `passwd`: at a terminal, the password now and the new one twice, unseen.
    pub(super) fn passwd(&mut self) {
        if self.interactive {
            self.ask(Asking::PasswdOld, Prompt::Password);
        } else {
            self.print(Line::error("passwd asks for the passwords at a terminal"));
        }
    }

    /// What the user typed at a password prompt. An empty line, Ctrl-C or Ctrl-D gives up:
    /// back to the name prompt (for a hello) or the room.
    pub(super) fn answered(&mut self, now: Instant, asking: Asking, event: InputEvent) {
        let typed = match event {
            InputEvent::Line(line) if !line.is_empty() => Password::from(line),
            _ => return self.gave_up(&asking),
        };
        let (asking, prompt) = match asking {
            Asking::Hello(name) => {
                self.password = Some(typed);
                self.push(Output::Prompt(Prompt::Command));
                return self.hello(now, name);
            }
            Asking::Register => (Asking::RegisterAgain(typed), Prompt::Again),
            Asking::RegisterAgain(first) => return self.confirmed(first, typed, None),
            Asking::PasswdOld => (Asking::PasswdNew(typed), Prompt::NewPassword),
            Asking::PasswdNew(old) => (Asking::PasswdAgain(old, typed), Prompt::Again),
            Asking::PasswdAgain(old, new) => return self.confirmed(new, typed, Some(old)),
        };
        self.ask(asking, prompt);
    }

    /// A new password typed twice: sent if the two match.
    fn confirmed(&mut self, first: Password, again: Password, old: Option<Password>) {
        self.push(Output::Prompt(Prompt::Command));
        if first != again {
            self.print(Line::error("the two passwords differ; nothing was changed"));
            return;
        }
        match old {
            None => self.send_register(first),
            Some(old) => {
                self.pending = Some(first.clone());
                self.send(ClientMsg::Passwd { old, new: first });
            }
        }
    }

    fn gave_up(&mut self, asking: &Asking) {
        if matches!(asking, Asking::Hello(_)) {
            self.push(Output::Prompt(Prompt::Name));
        } else {
            self.print(Line::notice("nothing was changed"));
            self.push(Output::Prompt(Prompt::Command));
        }
    }
}
