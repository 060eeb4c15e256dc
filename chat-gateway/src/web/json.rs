//! The browser's frames: JSON text messages that mirror `ClientMsg` and `ServerMsg`, carried in
//! WebSocket frames. The codec appends whole frames, so the fan-out shares a broadcast's bytes
//! among every web member as it does for the wire protocol.

use chat_proto::{
    BanInfo, ChatKind, ClientMsg, CloseReason, ErrorKind, Limits, MAGIC, Member, ModAction,
    MuteInfo, PROTOCOL_VERSION, Refusal, ServerMsg,
};
use serde::{Deserialize, Serialize};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

/// A server message as the page reads it: `{"type": "chat", "seq": 7, "from": "bob", ...}`.
/// Refusals, errors and close reasons carry the typed value (to match on) and a sentence.
/// Times are ms since the Unix epoch, stamped by the room's log; kinds are `plain`, `action`
/// or `notice`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WebServerMsg<'a> {
    Welcome {
        name: &'a str,
        online: u32,
        members: Vec<WebMember<'a>>,
        limits: &'a Limits,
        seq: u64,
        /// A string: a JavaScript number cannot hold every u64, and a resume must give it back
        /// exactly.
        epoch: String,
    },
    Refused {
        refusal: &'a Refusal,
        text: String,
    },
    Chat(WebChat<'a>),
    Joined {
        name: &'a str,
        time: u64,
    },
    Left {
        name: &'a str,
        reason: &'a CloseReason,
        text: String,
        message: Option<&'a str>,
        time: u64,
    },
    Members {
        members: Vec<WebMember<'a>>,
    },
    Renamed {
        from: &'a str,
        to: &'a str,
        time: u64,
    },
    Away {
        name: &'a str,
        message: Option<&'a str>,
        time: u64,
    },
    Error {
        error: &'a ErrorKind,
        text: String,
    },
    Registered {
        name: &'a str,
    },
    Unregistered {
        name: &'a str,
    },
    Ping {
        nonce: u64,
    },
    Pong {
        nonce: u64,
    },
    Closing {
        reason: &'a CloseReason,
        text: String,
    },
    History {
        chats: Vec<WebChat<'a>>,
        missed: u64,
    },
    /// An operator acted: `action` is `{"Kicked": {"name": ..., "reason": ...}}` and so on.
    Moderated {
        by: &'a str,
        action: &'a ModAction,
        time: u64,
    },
    Bans {
        bans: &'a [BanInfo],
        mutes: &'a [MuteInfo],
    },
}

/// A member as the page lists it: the name, and the away message while away.
#[derive(Debug, Serialize)]
struct WebMember<'a> {
    name: &'a str,
    away: Option<&'a str>,
}

/// A chat, live or from the history.
#[derive(Debug, Serialize)]
struct WebChat<'a> {
    seq: u64,
    time: u64,
    from: &'a str,
    text: &'a str,
    kind: &'static str,
}

fn kind_name(kind: ChatKind) -> &'static str {
    match kind {
        ChatKind::Plain => "plain",
        ChatKind::Action => "action",
        ChatKind::Notice => "notice",
    }
}

fn members(list: &[Member]) -> Vec<WebMember<'_>> {
    list.iter()
        .map(|m| WebMember {
            name: &m.name,
            away: m.away.as_deref(),
        })
        .collect()
}

impl<'a> From<&'a ServerMsg> for WebServerMsg<'a> {
    fn from(msg: &'a ServerMsg) -> Self {
        match msg {
            ServerMsg::Welcome {
                name,
                online,
                members: list,
                limits,
                seq,
                epoch,
            } => Self::Welcome {
                name,
                online: *online,
                members: members(list),
                limits,
                seq: *seq,
                epoch: epoch.to_string(),
            },
            ServerMsg::Refused(refusal) => Self::Refused {
                refusal,
                text: refusal.to_string(),
            },
            ServerMsg::Chat {
                seq,
                time,
                from,
                text,
                kind,
            } => Self::Chat(WebChat {
                seq: *seq,
                time: *time,
                from,
                text,
                kind: kind_name(*kind),
            }),
            ServerMsg::Joined { name, time, .. } => Self::Joined { name, time: *time },
            ServerMsg::Left {
                name,
                reason,
                message,
                time,
            } => Self::Left {
                name,
                reason,
                text: reason.to_string(),
                message: message.as_deref(),
                time: *time,
            },
            ServerMsg::Members { members: list } => Self::Members {
                members: members(list),
            },
            ServerMsg::Renamed { from, to, time } => Self::Renamed {
                from,
                to,
                time: *time,
            },
            ServerMsg::Away {
                name,
                message,
                time,
            } => Self::Away {
                name,
                message: message.as_deref(),
                time: *time,
            },
            ServerMsg::Error(error) => Self::Error {
                error,
                text: error.to_string(),
            },
            ServerMsg::Registered { name } => Self::Registered { name },
            ServerMsg::Unregistered { name } => Self::Unregistered { name },
            ServerMsg::Ping { nonce } => Self::Ping { nonce: *nonce },
            ServerMsg::Pong { nonce } => Self::Pong { nonce: *nonce },
            ServerMsg::Closing(reason) => Self::Closing {
                reason,
                text: reason.to_string(),
            },
            ServerMsg::History { chats, missed } => Self::History {
                chats: chats
                    .iter()
                    .map(|c| WebChat {
                        seq: c.seq,
                        time: c.time,
                        from: &c.from,
                        text: &c.text,
                        kind: kind_name(c.kind),
                    })
                    .collect(),
                missed: *missed,
            },
            ServerMsg::Moderated { by, action, time } => Self::Moderated {
                by,
                action,
                time: *time,
            },
            ServerMsg::Bans { bans, mutes } => Self::Bans { bans, mutes },
        }
    }
}

/// A client message as the page writes it: `{"type": "hello", "name": "alice"}`. The hello
/// carries no magic or version: the adapter speaks for the page and fills them in. Optional
/// fields may be left out or `null`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum WebClientMsg {
    Hello {
        name: String,
    },
    Chat {
        text: String,
        #[serde(default)]
        kind: WebKind,
    },
    Who,
    Leave {
        #[serde(default)]
        message: Option<String>,
    },
    Nick {
        name: String,
    },
    /// Away with a message; without one (or `null`), back.
    Away {
        #[serde(default)]
        message: Option<String>,
    },
    /// `epoch` as the welcome wrote it: a string of digits.
    Resume {
        after: u64,
        epoch: String,
    },
    Ping {
        nonce: u64,
    },
    Pong {
        nonce: u64,
    },
    /// An operator's requests (the page's member menu); `duration_secs` and `reason` may be
    /// left out.
    Kick {
        name: String,
        #[serde(default)]
        reason: Option<String>,
    },
    Ban {
        target: String,
        #[serde(default)]
        duration_secs: Option<u64>,
        #[serde(default)]
        reason: Option<String>,
    },
    Unban {
        target: String,
    },
    Mute {
        name: String,
        #[serde(default)]
        duration_secs: Option<u64>,
    },
    Unmute {
        name: String,
    },
    Bans,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WebKind {
    #[default]
    Plain,
    Action,
    Notice,
}

/// The message in one JSON text frame from the page; `None` if it is not one.
pub fn decode_client(text: &str) -> Option<ClientMsg> {
    Some(match serde_json::from_str::<WebClientMsg>(text).ok()? {
        WebClientMsg::Hello { name } => ClientMsg::Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            name,
            password: None,
            ident: None,
        },
        WebClientMsg::Chat { text, kind } => ClientMsg::Chat {
            text,
            kind: match kind {
                WebKind::Plain => ChatKind::Plain,
                WebKind::Action => ChatKind::Action,
                WebKind::Notice => ChatKind::Notice,
            },
        },
        WebClientMsg::Who => ClientMsg::Who,
        WebClientMsg::Leave { message } => ClientMsg::Leave { message },
        WebClientMsg::Nick { name } => ClientMsg::Nick { name },
        WebClientMsg::Away { message } => ClientMsg::Away { message },
        WebClientMsg::Resume { after, epoch } => ClientMsg::Resume {
            after,
            epoch: epoch
                .parse()
                .ok()
                .filter(|_| epoch.bytes().all(|b| b.is_ascii_digit()))?,
        },
        WebClientMsg::Ping { nonce } => ClientMsg::Ping { nonce },
        WebClientMsg::Pong { nonce } => ClientMsg::Pong { nonce },
        WebClientMsg::Kick { name, reason } => ClientMsg::Kick { name, reason },
        WebClientMsg::Ban {
            target,
            duration_secs,
            reason,
        } => ClientMsg::Ban {
            target,
            duration_secs,
            reason,
        },
        WebClientMsg::Unban { target } => ClientMsg::Unban { target },
        WebClientMsg::Mute {
            name,
            duration_secs,
        } => ClientMsg::Mute {
            name,
            duration_secs,
        },
        WebClientMsg::Unmute { name } => ClientMsg::Unmute { name },
        WebClientMsg::Bans => ClientMsg::Bans,
    })
}

/// The JSON of a server message, as the page receives it (without the frame).
pub fn encode_server_json(msg: &ServerMsg) -> String {
    serde_json::to_string(&WebServerMsg::from(msg)).unwrap_or_default()
}

/// Appends `msg` as one unmasked text frame of JSON, written through `json` (a buffer kept
/// between calls). Returns false if there is nothing to send.
pub(super) fn json_frame(json: &mut Vec<u8>, msg: &ServerMsg, out: &mut Vec<u8>) -> bool {
    json.clear();
    if serde_json::to_writer(&mut *json, &WebServerMsg::from(msg)).is_err() {
        return false;
    }
    let sent = frame(OpCode::Data(Data::Text), json, out);
    if json.capacity() > 1 << 20 {
        *json = Vec::new(); // do not keep a buffer sized by a rare huge welcome
    }
    sent
}

/// Appends one unmasked, final frame (server to client frames are never masked).
fn frame(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) -> bool {
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    // Writing into a Vec cannot fail.
    let ok = header.format(payload.len() as u64, out).is_ok();
    out.extend_from_slice(payload);
    ok
}

/// The close status for a close reason: what a browser's `CloseEvent.code` shows.
pub fn close_code(reason: CloseReason) -> CloseCode {
    match reason {
        CloseReason::Left | CloseReason::Disconnected => CloseCode::Normal,
        CloseReason::ServerShutdown => CloseCode::Away,
        CloseReason::ProtocolError => CloseCode::Protocol,
        CloseReason::HandshakeTimeout
        | CloseReason::IdleTimeout
        | CloseReason::TooSlow
        | CloseReason::Flood
        | CloseReason::Kicked
        | CloseReason::Banned => CloseCode::Policy,
        CloseReason::ServerFull | CloseReason::TooManyConnections => CloseCode::Again,
        CloseReason::ServerLost | CloseReason::RoomReset => CloseCode::Restart,
    }
}

/// Appends a close frame with the status for `reason` and its sentence.
pub(super) fn close_frame(reason: CloseReason, out: &mut Vec<u8>) {
    let close = CloseFrame {
        code: close_code(reason),
        reason: reason.to_string().into(),
    };
    let mut payload = u16::from(close.code).to_be_bytes().to_vec();
    payload.extend_from_slice(close.reason.as_bytes());
    frame(OpCode::Control(Control::Close), &payload, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_is_one_text_frame_of_json() {
        let msg = ServerMsg::Chat {
            seq: 3,
            time: 5,
            from: "bob".into(),
            text: "<b>hi</b>".into(),
            kind: ChatKind::Plain,
        };
        let mut out = Vec::new();
        assert!(json_frame(&mut Vec::new(), &msg, &mut out));
        let json =
            r#"{"type":"chat","seq":3,"time":5,"from":"bob","text":"<b>hi</b>","kind":"plain"}"#;
        assert_eq!(out[0], 0x81);
        assert_eq!(out[1] as usize, json.len());
        assert_eq!(&out[2..], json.as_bytes());
    }

    #[test]
    fn a_long_payload_gets_an_extended_length() {
        let msg = ServerMsg::Chat {
            seq: 1,
            time: 0,
            from: "a".into(),
            text: "x".repeat(300),
            kind: ChatKind::Plain,
        };
        let mut out = Vec::new();
        json_frame(&mut Vec::new(), &msg, &mut out);
        assert_eq!(out[1], 126);
        let len = u16::from_be_bytes([out[2], out[3]]) as usize;
        assert_eq!(len, out.len() - 4);
    }

    #[test]
    fn an_operator_s_requests_decode_and_notices_encode() {
        assert_eq!(
            decode_client(r#"{"type":"kick","name":"bob"}"#),
            Some(ClientMsg::Kick {
                name: "bob".into(),
                reason: None
            })
        );
        assert_eq!(
            decode_client(r#"{"type":"ban","target":"192.0.2.0/24","duration_secs":60}"#),
            Some(ClientMsg::Ban {
                target: "192.0.2.0/24".into(),
                duration_secs: Some(60),
                reason: None
            })
        );
        assert_eq!(decode_client(r#"{"type":"bans"}"#), Some(ClientMsg::Bans));
        let notice = ServerMsg::Moderated {
            by: "alice".into(),
            action: ModAction::Muted {
                name: "bob".into(),
                until: None,
            },
            time: 5,
        };
        assert_eq!(
            encode_server_json(&notice),
            r#"{"type":"moderated","by":"alice","action":{"Muted":{"name":"bob","until":null}},"time":5}"#
        );
        assert_eq!(close_code(CloseReason::Kicked), CloseCode::Policy);
    }

    #[test]
    fn refusals_and_errors_carry_the_value_and_a_sentence() {
        let refused = ServerMsg::Refused(Refusal::NameTaken);
        assert_eq!(
            encode_server_json(&refused),
            r#"{"type":"refused","refusal":"NameTaken","text":"name is taken; choose another"}"#
        );
        let error = ServerMsg::Error(ErrorKind::TextTooLong { max_bytes: 10 });
        assert_eq!(
            encode_server_json(&error),
            r#"{"type":"error","error":{"TextTooLong":{"max_bytes":10}},"text":"message is longer than 10 bytes; not sent"}"#
        );
    }

    #[test]
    fn the_page_messages_decode_and_anything_else_does_not() {
        assert_eq!(
            decode_client(r#"{"type":"hello","name":"ann"}"#),
            Some(ClientMsg::Hello {
                magic: MAGIC,
                version: PROTOCOL_VERSION,
                name: "ann".into(),
                password: None,
                ident: None,
            })
        );
        assert_eq!(
            decode_client(r#"{"type":"chat","text":"hi"}"#),
            Some(ClientMsg::Chat {
                text: "hi".into(),
                kind: ChatKind::Plain
            })
        );
        assert_eq!(decode_client(r#"{"type":"who"}"#), Some(ClientMsg::Who));
        assert_eq!(
            decode_client(r#"{"type":"pong","nonce":4}"#),
            Some(ClientMsg::Pong { nonce: 4 })
        );
        for bad in [
            "",
            "{",
            "null",
            r#"{"type":"shout","text":"x"}"#,
            r#"{"type":"chat"}"#,
            r#"{"type":"chat","text":"x","as":"admin"}"#,
            r#"{"type":"ping","nonce":-1}"#,
        ] {
            assert_eq!(decode_client(bad), None, "{bad}");
        }
    }

    #[test]
    fn v3_messages_carry_times_kinds_away_and_parting_words() {
        let mut away = chat_proto::Member::named("bob");
        away.away = Some("lunch".into());
        let members = ServerMsg::Members {
            members: vec![chat_proto::Member::named("ann"), away],
        };
        assert_eq!(
            encode_server_json(&members),
            r#"{"type":"members","members":[{"name":"ann","away":null},{"name":"bob","away":"lunch"}]}"#
        );
        let history = ServerMsg::History {
            chats: vec![chat_proto::HistoryChat {
                seq: 4,
                time: 1_700_000_000_000,
                from: "bob".into(),
                text: "waves".into(),
                kind: ChatKind::Action,
            }],
            missed: 0,
        };
        assert_eq!(
            encode_server_json(&history),
            r#"{"type":"history","chats":[{"seq":4,"time":1700000000000,"from":"bob","text":"waves","kind":"action"}],"missed":0}"#
        );
        let left = ServerMsg::Left {
            name: "bob".into(),
            reason: CloseReason::Left,
            message: Some("gone for lunch".into()),
            time: 9,
        };
        assert_eq!(
            encode_server_json(&left),
            r#"{"type":"left","name":"bob","reason":"Left","text":"left","message":"gone for lunch","time":9}"#
        );
        let renamed = ServerMsg::Renamed {
            from: "alice".into(),
            to: "alicia".into(),
            time: 9,
        };
        assert_eq!(
            encode_server_json(&renamed),
            r#"{"type":"renamed","from":"alice","to":"alicia","time":9}"#
        );
        let back = ServerMsg::Away {
            name: "bob".into(),
            message: None,
            time: 9,
        };
        assert_eq!(
            encode_server_json(&back),
            r#"{"type":"away","name":"bob","message":null,"time":9}"#
        );
    }

    #[test]
    fn the_epoch_is_a_string_so_that_a_page_gives_it_back_exactly() {
        let welcome = ServerMsg::Welcome {
            name: "ann".into(),
            online: 1,
            members: vec![chat_proto::Member::named("ann")],
            limits: chat_core::Config::default().limits(),
            seq: 3,
            epoch: u64::MAX,
        };
        let json: serde_json::Value = serde_json::from_str(&encode_server_json(&welcome)).unwrap();
        assert_eq!(json["epoch"], "18446744073709551615");
        assert_eq!(json["seq"], 3);
        let resume = format!(r#"{{"type":"resume","after":3,"epoch":{}}}"#, json["epoch"]);
        assert_eq!(
            decode_client(&resume),
            Some(ClientMsg::Resume {
                after: 3,
                epoch: u64::MAX
            })
        );
    }

    #[test]
    fn the_page_sends_actions_parting_words_renames_away_and_resumes() {
        let cases = [
            (
                r#"{"type":"chat","text":"waves","kind":"action"}"#,
                ClientMsg::Chat {
                    text: "waves".into(),
                    kind: ChatKind::Action,
                },
            ),
            (
                r#"{"type":"chat","text":"fyi","kind":"notice"}"#,
                ClientMsg::Chat {
                    text: "fyi".into(),
                    kind: ChatKind::Notice,
                },
            ),
            (r#"{"type":"leave"}"#, ClientMsg::Leave { message: None }),
            (
                r#"{"type":"leave","message":"gone for lunch"}"#,
                ClientMsg::Leave {
                    message: Some("gone for lunch".into()),
                },
            ),
            (
                r#"{"type":"nick","name":"alicia"}"#,
                ClientMsg::Nick {
                    name: "alicia".into(),
                },
            ),
            (
                r#"{"type":"away","message":"lunch"}"#,
                ClientMsg::Away {
                    message: Some("lunch".into()),
                },
            ),
            (r#"{"type":"away"}"#, ClientMsg::Away { message: None }),
            (
                r#"{"type":"away","message":null}"#,
                ClientMsg::Away { message: None },
            ),
            (
                r#"{"type":"resume","after":12,"epoch":"18446744073709551615"}"#,
                ClientMsg::Resume {
                    after: 12,
                    epoch: u64::MAX,
                },
            ),
        ];
        for (json, msg) in cases {
            assert_eq!(decode_client(json), Some(msg), "{json}");
        }
        for bad in [
            r#"{"type":"chat","text":"x","kind":"Shout"}"#,
            r#"{"type":"resume","after":1}"#,
            r#"{"type":"resume","after":1,"epoch":7}"#,
            r#"{"type":"resume","after":1,"epoch":"+7"}"#,
            r#"{"type":"resume","after":1,"epoch":"18446744073709551616"}"#,
            r#"{"type":"nick"}"#,
            r#"{"type":"away","message":5}"#,
            r#"{"type":"leave","message":"x","as":"y"}"#,
        ] {
            assert_eq!(decode_client(bad), None, "{bad}");
        }
    }
}
