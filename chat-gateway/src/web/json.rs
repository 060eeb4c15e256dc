//! The browser's frames: JSON text messages that mirror `ClientMsg` and `ServerMsg`, carried in
//! WebSocket frames. The codec appends whole frames, so the fan-out shares a broadcast's bytes
//! among every web member as it does for the wire protocol.

use std::sync::Arc;

use chat_proto::{
    ClientMsg, CloseReason, ErrorKind, Limits, MAGIC, PROTOCOL_VERSION, Refusal, ServerMsg,
};
use serde::{Deserialize, Serialize};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

/// A server message as the page reads it: `{"type": "chat", "seq": 7, "from": "bob", ...}`.
/// Refusals, errors and close reasons carry the typed value (to match on) and a sentence.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WebServerMsg<'a> {
    Welcome {
        name: &'a str,
        online: u32,
        members: &'a [Arc<str>],
        limits: &'a Limits,
        seq: u64,
    },
    Refused {
        refusal: &'a Refusal,
        text: String,
    },
    Chat {
        seq: u64,
        from: &'a str,
        text: &'a str,
    },
    Joined {
        name: &'a str,
    },
    Left {
        name: &'a str,
        reason: &'a CloseReason,
        text: String,
    },
    Members {
        names: &'a [Arc<str>],
    },
    Error {
        error: &'a ErrorKind,
        text: String,
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
        chats: &'a [chat_proto::HistoryChat],
        missed: u64,
    },
}

impl<'a> From<&'a ServerMsg> for WebServerMsg<'a> {
    fn from(msg: &'a ServerMsg) -> Self {
        match msg {
            ServerMsg::Welcome {
                name,
                online,
                members,
                limits,
                seq,
            } => Self::Welcome {
                name,
                online: *online,
                members,
                limits,
                seq: *seq,
            },
            ServerMsg::Refused(refusal) => Self::Refused {
                refusal,
                text: refusal.to_string(),
            },
            ServerMsg::Chat { seq, from, text } => Self::Chat {
                seq: *seq,
                from,
                text,
            },
            ServerMsg::Joined { name } => Self::Joined { name },
            ServerMsg::Left { name, reason } => Self::Left {
                name,
                reason,
                text: reason.to_string(),
            },
            ServerMsg::Members { names } => Self::Members { names },
            ServerMsg::Error(error) => Self::Error {
                error,
                text: error.to_string(),
            },
            ServerMsg::Ping { nonce } => Self::Ping { nonce: *nonce },
            ServerMsg::Pong { nonce } => Self::Pong { nonce: *nonce },
            ServerMsg::Closing(reason) => Self::Closing {
                reason,
                text: reason.to_string(),
            },
            ServerMsg::History { chats, missed } => Self::History {
                chats,
                missed: *missed,
            },
        }
    }
}

/// A client message as the page writes it: `{"type": "hello", "name": "alice"}`. The hello
/// carries no magic or version: the adapter speaks for the page and fills them in.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum WebClientMsg {
    Hello { name: String },
    Chat { text: String },
    Who,
    Leave,
    Ping { nonce: u64 },
    Pong { nonce: u64 },
}

/// The message in one JSON text frame from the page; `None` if it is not one.
pub fn decode_client(text: &str) -> Option<ClientMsg> {
    Some(match serde_json::from_str::<WebClientMsg>(text).ok()? {
        WebClientMsg::Hello { name } => ClientMsg::Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            name,
        },
        WebClientMsg::Chat { text } => ClientMsg::Chat { text },
        WebClientMsg::Who => ClientMsg::Who,
        WebClientMsg::Leave => ClientMsg::Leave,
        WebClientMsg::Ping { nonce } => ClientMsg::Ping { nonce },
        WebClientMsg::Pong { nonce } => ClientMsg::Pong { nonce },
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
        | CloseReason::Flood => CloseCode::Policy,
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
            from: "bob".into(),
            text: "<b>hi</b>".into(),
        };
        let mut out = Vec::new();
        assert!(json_frame(&mut Vec::new(), &msg, &mut out));
        let json = r#"{"type":"chat","seq":3,"from":"bob","text":"<b>hi</b>"}"#;
        assert_eq!(out[0], 0x81);
        assert_eq!(out[1] as usize, json.len());
        assert_eq!(&out[2..], json.as_bytes());
    }

    #[test]
    fn a_long_payload_gets_an_extended_length() {
        let msg = ServerMsg::Chat {
            seq: 1,
            from: "a".into(),
            text: "x".repeat(300),
        };
        let mut out = Vec::new();
        json_frame(&mut Vec::new(), &msg, &mut out);
        assert_eq!(out[1], 126);
        let len = u16::from_be_bytes([out[2], out[3]]) as usize;
        assert_eq!(len, out.len() - 4);
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
                name: "ann".into()
            })
        );
        assert_eq!(
            decode_client(r#"{"type":"chat","text":"hi"}"#),
            Some(ClientMsg::Chat { text: "hi".into() })
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
}
