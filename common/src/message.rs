//! What travels inside an authenticated channel frame.
//!
//! ```text
//! +-----------+------------------------------------------------+
//! | type: u8  | body                                           |
//! +-----------+------------------------------------------------+
//!   0x00        a control message: one JSON object (Request or Reply)
//!   0x01        stdout bytes of the running command, raw
//!   0x02        stderr bytes of the running command, raw
//! ```
//!
//! Control messages are JSON because they are small, rare and worth reading in a capture;
//! bulk bytes are raw because escaping or base64-encoding a command's output would cost time
//! and up to a third more bytes for nothing. A controller sends [`Request`]s, an agent answers
//! with [`Reply`]s; both are wrapped in a [`Packet`]. See docs/PROTOCOL.md, "Messages".

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const TYPE_CONTROL: u8 = 0x00;
const TYPE_STDOUT: u8 = 0x01;
const TYPE_STDERR: u8 = 0x02;

/// What a controller asks of an agent. One connection may carry several requests in turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Round trip: the agent answers [`Reply::Pong`].
    Ping,
    /// Run `command` with `sh -c`; the agent answers [`Reply::Started`], then output packets,
    /// then [`Reply::Exit`].
    Exec {
        /// The shell command line.
        command: String,
        /// Kill the command's process group after this many milliseconds.
        timeout_ms: Option<u64>,
        /// The controller's operation id, so the agent's log lines can be matched with the
        /// controller's operation log.
        #[serde(default)]
        op_id: Option<String>,
    },
    /// Stop the running command: its process group gets SIGTERM, then SIGKILL after a grace
    /// period. The agent still answers the pending `Exec` with [`Reply::Exit`].
    Cancel,
}

/// What an agent answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// The answer to [`Request::Ping`].
    Pong {
        /// The agent's release, e.g. `0.1.0`.
        agent_version: String,
    },
    /// The command is running as process (and process group) `pid`.
    Started {
        /// The shell's pid on the agent host.
        pid: u32,
    },
    /// The command is over; always the last packet of an `Exec`.
    Exit {
        /// The exit code, when the shell exited by itself.
        code: Option<i32>,
        /// The signal that ended the shell, when one did.
        signal: Option<i32>,
        /// Why it ended.
        reason: EndReason,
    },
    /// The request could not be carried out (e.g. the command could not be started).
    Error {
        /// What went wrong, for the operator.
        message: String,
    },
}

/// Why a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// It ended by itself (or by a signal nobody on our side sent).
    Exited,
    /// The agent killed it when its timeout expired.
    Timeout,
    /// The agent killed it on a [`Request::Cancel`] or because the controller went away.
    Cancelled,
}

/// Which output stream bulk bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One channel payload: a control message or a chunk of raw output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<C> {
    /// A [`Request`] or [`Reply`], as JSON on the wire.
    Control(C),
    /// Raw output bytes of a running command.
    Output(Stream, Bytes),
}

/// A payload that is not a valid packet.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The payload had no type byte.
    #[error("empty message")]
    Empty,
    /// The type byte is not one this version knows.
    #[error("unknown message type 0x{0:02x}")]
    UnknownType(u8),
    /// A control message that is not the JSON we expect.
    #[error("malformed control message: {0}")]
    Json(#[from] serde_json::Error),
}

impl<C: Serialize> Packet<C> {
    /// Encodes the packet into a payload, leaving `spare` bytes of capacity at its end (the
    /// channel appends its tag there without reallocating).
    pub fn encode(&self, spare: usize) -> BytesMut {
        match self {
            Packet::Control(msg) => {
                let json = serde_json::to_vec(msg).expect("control messages always serialize");
                let mut buf = BytesMut::with_capacity(1 + json.len() + spare);
                buf.put_u8(TYPE_CONTROL);
                buf.put_slice(&json);
                buf
            }
            Packet::Output(stream, bytes) => {
                let mut buf = BytesMut::with_capacity(1 + bytes.len() + spare);
                buf.put_u8(match stream {
                    Stream::Stdout => TYPE_STDOUT,
                    Stream::Stderr => TYPE_STDERR,
                });
                buf.put_slice(bytes);
                buf
            }
        }
    }
}

impl<C: DeserializeOwned> Packet<C> {
    /// Decodes a payload received from the peer.
    ///
    /// # Errors
    /// [`MessageError`] when the type byte is missing or unknown or the JSON does not parse.
    pub fn decode(mut payload: Bytes) -> Result<Packet<C>, MessageError> {
        let Some(&kind) = payload.first() else {
            return Err(MessageError::Empty);
        };
        let body = payload.split_off(1);
        match kind {
            TYPE_CONTROL => Ok(Packet::Control(serde_json::from_slice(&body)?)),
            TYPE_STDOUT => Ok(Packet::Output(Stream::Stdout, body)),
            TYPE_STDERR => Ok(Packet::Output(Stream::Stderr, body)),
            other => Err(MessageError::UnknownType(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<C: Serialize + DeserializeOwned>(packet: &Packet<C>) -> Packet<C> {
        Packet::decode(packet.encode(0).freeze()).unwrap()
    }

    #[test]
    fn requests_and_replies_round_trip() {
        let exec = Packet::Control(Request::Exec {
            command: "uptime".into(),
            timeout_ms: Some(5000),
            op_id: Some("01J0000000000000000000000".into()),
        });
        assert_eq!(round_trip(&exec), exec);
        let exit = Packet::Control(Reply::Exit {
            code: None,
            signal: Some(9),
            reason: EndReason::Timeout,
        });
        assert_eq!(round_trip(&exit), exit);
    }

    #[test]
    fn output_travels_raw_including_invalid_utf8() {
        let out: Packet<Reply> =
            Packet::Output(Stream::Stderr, Bytes::from_static(b"\xff\x00ok\n"));
        let encoded = out.encode(0);
        assert_eq!(&encoded[..], b"\x02\xff\x00ok\n");
        assert_eq!(round_trip(&out), out);
    }

    #[test]
    fn the_wire_json_is_the_documented_one() {
        let ping = Packet::<Request>::Control(Request::Ping).encode(0);
        assert_eq!(&ping[..], b"\x00{\"type\":\"ping\"}");
    }

    #[test]
    fn bad_payloads_are_errors() {
        assert!(matches!(
            Packet::<Request>::decode(Bytes::new()),
            Err(MessageError::Empty)
        ));
        assert!(matches!(
            Packet::<Request>::decode(Bytes::from_static(b"\x09x")),
            Err(MessageError::UnknownType(9))
        ));
        assert!(matches!(
            Packet::<Request>::decode(Bytes::from_static(b"\x00{\"type\":\"rm -rf\"}")),
            Err(MessageError::Json(_))
        ));
    }
}
