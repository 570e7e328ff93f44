//! Engine.IO v4 and Socket.IO v5 packet encoding and parsing (text packets only).

use serde_json::Value;

/// The record separator between packets of one HTTP long-polling payload.
pub const SEPARATOR: char = '\u{1e}';

/// Why a packet could not be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type")]
    UnknownType,
    #[error("binary packets are not supported")]
    Binary,
    #[error("invalid acknowledgement id")]
    AckId,
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("invalid payload for this packet type")]
    Payload,
}

/// An Engine.IO packet as read from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum EnginePacket<'a> {
    Close,
    Ping(&'a str),
    Pong(&'a str),
    Message(&'a str),
    Upgrade,
    Noop,
    /// Binary data in a text transport (`b` + base64, long-polling's way of carrying an
    /// attachment): this server speaks text packets only.
    Binary,
}

impl<'a> EnginePacket<'a> {
    /// Reads one Engine.IO text packet.
    pub fn parse(text: &'a str) -> Result<Self, ParseError> {
        let mut chars = text.chars();
        let kind = chars.next().ok_or(ParseError::Empty)?;
        let rest = chars.as_str();
        Ok(match kind {
            '1' => Self::Close,
            '2' => Self::Ping(rest),
            '3' => Self::Pong(rest),
            '4' => Self::Message(rest),
            '5' => Self::Upgrade,
            '6' => Self::Noop,
            'b' => Self::Binary,
            _ => return Err(ParseError::UnknownType),
        })
    }
}

/// Socket.IO packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Connect = 0,
    Disconnect = 1,
    Event = 2,
    Ack = 3,
    ConnectError = 4,
}

impl PacketType {
    fn digit(self) -> char {
        match self {
            Self::Connect => '0',
            Self::Disconnect => '1',
            Self::Event => '2',
            Self::Ack => '3',
            Self::ConnectError => '4',
        }
    }
}

/// A Socket.IO packet read from a client.
#[derive(Debug, PartialEq)]
pub enum Packet {
    Connect {
        nsp: String,
        auth: Option<Value>,
    },
    Disconnect {
        nsp: String,
    },
    Event {
        nsp: String,
        id: Option<u64>,
        event: String,
        args: Vec<Value>,
    },
    Ack {
        nsp: String,
        id: u64,
        args: Vec<Value>,
    },
}

/// A packet whose header was readable but whose body was not: the namespace lets the server tell
/// the right socket what was wrong.
#[derive(Debug, PartialEq)]
pub struct BadPacket {
    pub nsp: Option<String>,
    pub error: ParseError,
}

impl Packet {
    /// Reads the Socket.IO packet carried by an Engine.IO message.
    pub fn parse(text: &str) -> Result<Self, BadPacket> {
        let bad = |nsp: Option<&str>, error| BadPacket {
            nsp: nsp.map(str::to_owned),
            error,
        };
        let mut chars = text.chars();
        let kind = chars.next().ok_or(bad(None, ParseError::Empty))?;
        let mut rest = chars.as_str();
        match kind {
            '0'..='4' => {}
            // the namespace is still read, so the client can be told on the right socket
            '5' | '6' => {
                let nsp =
                    header_nsp(rest.trim_start_matches(|c: char| c.is_ascii_digit() || c == '-'));
                return Err(bad(Some(nsp), ParseError::Binary));
            }
            _ => return Err(bad(Some(header_nsp(rest)), ParseError::UnknownType)),
        }
        let nsp = if rest.starts_with('/') {
            match rest.find(',') {
                Some(end) => {
                    let nsp = &rest[..end];
                    rest = &rest[end + 1..];
                    nsp
                }
                None => {
                    let nsp = rest;
                    rest = "";
                    nsp
                }
            }
        } else {
            "/"
        };
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let id = if digits > 0 {
            let id = rest[..digits]
                .parse::<u64>()
                .map_err(|_| bad(Some(nsp), ParseError::AckId))?;
            rest = &rest[digits..];
            Some(id)
        } else {
            None
        };
        let data = if rest.is_empty() {
            None
        } else {
            Some(
                serde_json::from_str::<Value>(rest)
                    .map_err(|e| bad(Some(nsp), ParseError::Json(e.to_string())))?,
            )
        };
        let nsp_owned = nsp.to_owned();
        match kind {
            '0' => match data {
                None | Some(Value::Object(_)) => Ok(Self::Connect {
                    nsp: nsp_owned,
                    auth: data,
                }),
                Some(_) => Err(bad(Some(nsp), ParseError::Payload)),
            },
            '1' => Ok(Self::Disconnect { nsp: nsp_owned }),
            '2' => match data {
                Some(Value::Array(mut items))
                    if matches!(items.first(), Some(Value::String(_))) =>
                {
                    let event = match items.remove(0) {
                        Value::String(event) => event,
                        _ => return Err(bad(Some(nsp), ParseError::Payload)),
                    };
                    Ok(Self::Event {
                        nsp: nsp_owned,
                        id,
                        event,
                        args: items,
                    })
                }
                _ => Err(bad(Some(nsp), ParseError::Payload)),
            },
            '3' => match (id, data) {
                (Some(id), Some(Value::Array(args))) => Ok(Self::Ack {
                    nsp: nsp_owned,
                    id,
                    args,
                }),
                (None, _) => Err(bad(Some(nsp), ParseError::AckId)),
                _ => Err(bad(Some(nsp), ParseError::Payload)),
            },
            // a client never sends CONNECT_ERROR
            _ => Err(bad(Some(nsp), ParseError::UnknownType)),
        }
    }
}

/// The namespace a packet's header names (`/` when it names none).
fn header_nsp(rest: &str) -> &str {
    if rest.starts_with('/') {
        rest.find(',').map_or(rest, |end| &rest[..end])
    } else {
        "/"
    }
}

/// How many binary attachments follow a BINARY_EVENT or BINARY_ACK packet (`51-…`), if `text`
/// is one.
pub fn binary_attachments(text: &str) -> Option<usize> {
    let rest = text.strip_prefix(['5', '6'])?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if rest[digits..].starts_with('-') {
        rest[..digits].parse().ok()
    } else {
        Some(0)
    }
}

/// Encodes a Socket.IO packet inside an Engine.IO message (`4` prefix included).
pub fn encode(kind: PacketType, nsp: &str, id: Option<u64>, data: Option<&Value>) -> String {
    let mut out = String::with_capacity(64);
    out.push('4');
    out.push(kind.digit());
    if nsp != "/" {
        out.push_str(nsp);
        out.push(',');
    }
    if let Some(id) = id {
        out.push_str(&id.to_string());
    }
    if let Some(data) = data {
        out.push_str(&data.to_string());
    }
    out
}

/// Encodes an EVENT packet: `["event", ...args]`.
pub fn encode_event(nsp: &str, event: &str, args: &[Value], id: Option<u64>) -> String {
    // written in place: the arguments are not copied into an array first
    let mut bytes = encode(PacketType::Event, nsp, id, None).into_bytes();
    bytes.reserve(128);
    bytes.push(b'[');
    // writing a str or a Value into memory cannot fail
    let _ = serde_json::to_writer(&mut bytes, event);
    for arg in args {
        bytes.push(b',');
        let _ = serde_json::to_writer(&mut bytes, arg);
    }
    bytes.push(b']');
    // serde_json writes UTF-8 and the header came from a `String`
    String::from_utf8(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_every_client_packet_type() {
        assert_eq!(
            Packet::parse("0/video-call,{\"token\":\"t\"}"),
            Ok(Packet::Connect {
                nsp: "/video-call".into(),
                auth: Some(json!({"token": "t"}))
            })
        );
        assert_eq!(
            Packet::parse("0"),
            Ok(Packet::Connect {
                nsp: "/".into(),
                auth: None
            })
        );
        assert_eq!(
            Packet::parse("1/admin,"),
            Ok(Packet::Disconnect {
                nsp: "/admin".into()
            })
        );
        assert_eq!(
            Packet::parse("1/admin"),
            Ok(Packet::Disconnect {
                nsp: "/admin".into()
            })
        );
        assert_eq!(
            Packet::parse("2/a,12[\"hi\",{\"x\":1},2]"),
            Ok(Packet::Event {
                nsp: "/a".into(),
                id: Some(12),
                event: "hi".into(),
                args: vec![json!({"x": 1}), json!(2)]
            })
        );
        assert_eq!(
            Packet::parse("2[\"hi\"]"),
            Ok(Packet::Event {
                nsp: "/".into(),
                id: None,
                event: "hi".into(),
                args: vec![]
            })
        );
        assert_eq!(
            Packet::parse("3/a,7[\"ok\"]"),
            Ok(Packet::Ack {
                nsp: "/a".into(),
                id: 7,
                args: vec![json!("ok")]
            })
        );
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        assert_eq!(
            Packet::parse("").map_err(|e| e.error),
            Err(ParseError::Empty)
        );
        assert_eq!(
            Packet::parse("9").map_err(|e| e.error),
            Err(ParseError::UnknownType)
        );
        assert_eq!(
            Packet::parse("51-[\"a\",{\"_placeholder\":true,\"num\":0}]").map_err(|e| e.error),
            Err(ParseError::Binary)
        );
        // the namespace of a packet refused for its type is still read
        assert_eq!(
            Packet::parse("52-/video-call,3[\"a\"]"),
            Err(BadPacket {
                nsp: Some("/video-call".into()),
                error: ParseError::Binary
            })
        );
        assert_eq!(
            Packet::parse("7/video-call,[\"a\"]"),
            Err(BadPacket {
                nsp: Some("/video-call".into()),
                error: ParseError::UnknownType
            })
        );
        assert_eq!(
            Packet::parse("9"),
            Err(BadPacket {
                nsp: Some("/".into()),
                error: ParseError::UnknownType
            })
        );
        assert_eq!(binary_attachments("52-/video-call,[\"a\"]"), Some(2));
        assert_eq!(binary_attachments("5/video-call,[\"a\"]"), Some(0));
        assert_eq!(binary_attachments("2[\"a\"]"), None);
        let bad = Packet::parse("2/a,[\"x\",").err();
        assert!(matches!(
            bad,
            Some(BadPacket { nsp: Some(ref n), error: ParseError::Json(_) }) if n == "/a"
        ));
        assert_eq!(
            Packet::parse("2/a,[1]").map_err(|e| e.error),
            Err(ParseError::Payload)
        );
        assert_eq!(
            Packet::parse("2/a,{}").map_err(|e| e.error),
            Err(ParseError::Payload)
        );
        assert_eq!(
            Packet::parse("3/a,[]").map_err(|e| e.error),
            Err(ParseError::AckId)
        );
        assert_eq!(
            Packet::parse("299999999999999999999999[\"a\"]").map_err(|e| e.error),
            Err(ParseError::AckId)
        );
        assert_eq!(
            Packet::parse("0/a,[1]").map_err(|e| e.error),
            Err(ParseError::Payload)
        );
    }

    #[test]
    fn encodes_server_packets() {
        assert_eq!(
            encode(PacketType::Connect, "/", None, Some(&json!({"sid": "s"}))),
            "40{\"sid\":\"s\"}"
        );
        assert_eq!(
            encode(
                PacketType::ConnectError,
                "/v",
                None,
                Some(&json!({"message": "no"}))
            ),
            "44/v,{\"message\":\"no\"}"
        );
        assert_eq!(encode(PacketType::Disconnect, "/v", None, None), "41/v,");
        assert_eq!(
            encode_event("/v", "e", &[json!(1)], Some(3)),
            "42/v,3[\"e\",1]"
        );
        assert_eq!(
            encode(PacketType::Ack, "/", Some(4), Some(&json!([true]))),
            "434[true]"
        );
    }

    #[test]
    fn reads_engine_packets() {
        assert_eq!(
            EnginePacket::parse("2probe"),
            Ok(EnginePacket::Ping("probe"))
        );
        assert_eq!(EnginePacket::parse("3"), Ok(EnginePacket::Pong("")));
        assert_eq!(EnginePacket::parse("40"), Ok(EnginePacket::Message("0")));
        assert_eq!(EnginePacket::parse("5"), Ok(EnginePacket::Upgrade));
        assert_eq!(EnginePacket::parse("6"), Ok(EnginePacket::Noop));
        assert_eq!(EnginePacket::parse("1"), Ok(EnginePacket::Close));
        assert_eq!(EnginePacket::parse("x"), Err(ParseError::UnknownType));
    }
}
