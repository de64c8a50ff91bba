//! What travels inside an authenticated channel frame.
//!
//! ```text
//! +-----------+------------------------------------------------+
//! | type: u8  | body                                           |
//! +-----------+------------------------------------------------+
//!   0x00        a control message: one JSON object (Request or Reply)
//!   0x01        stdout bytes of the running command, raw
//!   0x02        stderr bytes of the running command, raw
//!   0x03        file data, raw (push: controller to agent; pull: agent to controller)
//! ```
//!
//! Control messages are JSON because they are small, rare and worth reading in a capture;
//! bulk bytes are raw because escaping or base64-encoding a command's output would cost time
//! and up to a third more bytes for nothing. A controller sends [`Request`]s, an agent answers
//! with [`Reply`]s; both are wrapped in a [`Packet`]. See docs/PROTOCOL.md, "Messages".

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// While a command runs, the agent sends [`Reply::Heartbeat`] this often, so a controller
/// can tell a silent command from a lost agent.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

const TYPE_CONTROL: u8 = 0x00;
const TYPE_STDOUT: u8 = 0x01;
const TYPE_STDERR: u8 = 0x02;
const TYPE_FILE_DATA: u8 = 0x03;

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
        /// More variables for the command (`ctl run -e`), set after the agent's own; see
        /// [`crate::command_vars`] for what a name may be.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        env: Vec<(String, String)>,
        /// The folder the command starts in (`ctl run -C`); the agent's own without it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cwd: Option<String>,
    },
    /// Stop the running command: its process group gets SIGTERM, then SIGKILL after a grace
    /// period. The agent still answers the pending `Exec` with [`Reply::Exit`].
    Cancel,
    /// Write one file atomically. The agent answers [`Reply::PutReady`]. Then either exactly
    /// `size` bytes of file data follow and a [`Request::PutEnd`], or, when the agent said it
    /// holds a file with the same content already, a [`Request::PutKeep`]. The agent answers
    /// [`Reply::PutDone`] once the file is verified and in place (or [`Reply::Error`]).
    PutFile(PutFile),
    /// All data of the file being pushed has been sent. The agent compares `sha256` with
    /// the SHA-256 of what it received; only if they match is the file put in place.
    PutEnd {
        /// SHA-256 of the whole file (hex), computed by the controller while sending.
        sha256: String,
    },
    /// Instead of data: the file being pushed has the content the agent holds already
    /// ([`Reply::PutReady`]'s `held_sha256`), so the agent keeps it and only sets its mode.
    PutKeep {
        /// SHA-256 of the controller's file (hex); must equal `held_sha256`.
        sha256: String,
    },
    /// Create a directory (existing is fine). Answered with [`Reply::Made`].
    MakeDir {
        /// The directory; relative paths are inside the agent's files folder.
        path: String,
        /// Appended to `path` when `path` is an existing directory; empty for never.
        name: String,
        /// Permission bits for the directory.
        mode: u32,
        /// Create missing parent folders.
        mkdir: bool,
    },
    /// Create a symbolic link at `path` pointing to `target`, replacing what is there.
    /// Answered with [`Reply::Made`].
    MakeSymlink {
        /// Where the link goes.
        path: String,
        /// What it points to, stored as given.
        target: String,
    },
    /// Send a file back, or with `recursive` a directory tree: answered with
    /// [`Reply::Entry`]s (each file's followed by its data and [`Reply::EntryEnd`]) and
    /// finally [`Reply::GetDone`], or [`Reply::Error`].
    Get {
        /// The file or directory; relative paths are inside the agent's files folder.
        path: String,
        /// Allow a directory, and send everything below it.
        recursive: bool,
    },
}

/// The body of [`Request::PutFile`]: which file to write, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutFile {
    /// Where to write; relative paths are inside the agent's files folder.
    pub path: String,
    /// Appended to `path` when `path` is an existing directory (scp's rule); empty for
    /// never.
    pub name: String,
    /// Exact length of the data that follows.
    pub size: u64,
    /// Permission bits for the file.
    pub mode: u32,
    /// Create missing parent folders.
    pub mkdir: bool,
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
    /// Sent every [`HEARTBEAT_INTERVAL`] while a command runs: the agent is still there.
    Heartbeat,
    /// The command is over; always the last packet of an `Exec`.
    Exit {
        /// The exit code, when the shell exited by itself.
        code: Option<i32>,
        /// The signal that ended the shell, when one did.
        signal: Option<i32>,
        /// Why it ended.
        reason: EndReason,
    },
    /// The answer to [`Request::PutFile`]: the agent is ready for the data.
    PutReady {
        /// Where the file will land, resolved on the agent.
        path: String,
        /// When the destination is already a regular file of the announced size: its
        /// SHA-256 (hex), so the controller can answer [`Request::PutKeep`] instead of
        /// sending the same bytes again.
        #[serde(default)]
        held_sha256: Option<String>,
    },
    /// The pushed file is written, synced, verified and renamed into place, or was kept.
    PutDone {
        /// Where it landed.
        path: String,
        /// Bytes written (0 when kept).
        bytes: u64,
        /// SHA-256 of the file now in place (hex).
        sha256: String,
        /// True when the file was kept as it was ([`Request::PutKeep`]).
        #[serde(default)]
        unchanged: bool,
    },
    /// The directory or link exists now.
    Made {
        /// Where, resolved on the agent.
        path: String,
        /// False when it was there already, as asked.
        #[serde(default)]
        created: bool,
    },
    /// One file, directory or link of a [`Request::Get`].
    Entry {
        /// Relative, `/`-separated path: the requested item's own name, then for a tree the
        /// names below it. Receivers must not trust it to stay inside their folder.
        path: String,
        /// What it is.
        kind: EntryKind,
        /// Permission bits.
        mode: u32,
        /// For a file, the exact length of the data that follows.
        size: u64,
        /// For a link, what it points to.
        target: Option<String>,
    },
    /// All data of the file entry just announced has been sent.
    EntryEnd {
        /// SHA-256 of the data sent (hex).
        sha256: String,
    },
    /// The [`Request::Get`] is complete.
    GetDone {
        /// Entries sent.
        entries: u64,
        /// File bytes sent.
        bytes: u64,
    },
    /// The request could not be carried out (e.g. the command could not be started).
    Error {
        /// What went wrong, for the operator.
        message: String,
    },
    /// The operator's key may not make this request: it is not in the agent's
    /// `authorized_keys`, not from this address (`from=`), or not for this kind of request
    /// (`permit=`). Nothing was done. After a refusal of the key itself, the agent closes
    /// the connection.
    Denied {
        /// Why, for the operator: the key's fingerprint and the rule that refused it.
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
    /// The agent killed it on a [`Request::Cancel`].
    Cancelled,
    /// The agent killed it because the agent itself is shutting down.
    Shutdown,
}

/// What a [`Reply::Entry`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A regular file; its data follows.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
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
    /// Raw bytes of a file being pushed or pulled.
    FileData(Bytes),
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

impl<C: std::fmt::Debug> Packet<C> {
    /// A short description for error messages and logs: the control message (cut at 200
    /// characters), or the size of the data, never the data itself.
    pub fn summary(&self) -> String {
        match self {
            Packet::Control(msg) => {
                let text = format!("{msg:?}");
                match text.char_indices().nth(200) {
                    Some((cut, _)) => format!("{}…", &text[..cut]),
                    None => text,
                }
            }
            Packet::Output(stream, bytes) => format!("{} bytes of {stream:?}", bytes.len()),
            Packet::FileData(bytes) => format!("{} bytes of file data", bytes.len()),
        }
    }
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
                let kind = match stream {
                    Stream::Stdout => TYPE_STDOUT,
                    Stream::Stderr => TYPE_STDERR,
                };
                raw(kind, bytes, spare)
            }
            Packet::FileData(bytes) => raw(TYPE_FILE_DATA, bytes, spare),
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
            TYPE_FILE_DATA => Ok(Packet::FileData(body)),
            other => Err(MessageError::UnknownType(other)),
        }
    }
}

fn raw(kind: u8, bytes: &[u8], spare: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(1 + bytes.len() + spare);
    buf.put_u8(kind);
    buf.put_slice(bytes);
    buf
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
            env: vec![("DEPLOY".into(), "blue".into())],
            cwd: Some("/srv/app".into()),
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
    fn file_data_travels_raw() {
        let data: Packet<Request> = Packet::FileData(Bytes::from_static(b"\x00\x01"));
        assert_eq!(&data.encode(0)[..], b"\x03\x00\x01");
        assert_eq!(round_trip(&data), data);
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

/// Property tests: every request and reply a peer could send, and any bytes at all, through
/// [`Packet::decode`] (the fuzz targets `request` and `reply` check the same on nightly).
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        // Any Unicode, control characters and quotes included: all of it must survive JSON.
        proptest::string::string_regex("(?s).{0,40}").expect("a valid regex")
    }

    fn put_file() -> impl Strategy<Value = PutFile> {
        (text(), text(), any::<u64>(), any::<u32>(), any::<bool>()).prop_map(
            |(path, name, size, mode, mkdir)| PutFile {
                path,
                name,
                size,
                mode,
                mkdir,
            },
        )
    }

    fn request() -> impl Strategy<Value = Request> {
        prop_oneof![
            Just(Request::Ping),
            (
                text(),
                any::<Option<u64>>(),
                proptest::option::of(text()),
                proptest::collection::vec((text(), text()), 0..3),
                proptest::option::of(text())
            )
                .prop_map(|(command, timeout_ms, op_id, env, cwd)| Request::Exec {
                    command,
                    timeout_ms,
                    op_id,
                    env,
                    cwd,
                }),
            Just(Request::Cancel),
            put_file().prop_map(Request::PutFile),
            text().prop_map(|sha256| Request::PutEnd { sha256 }),
            text().prop_map(|sha256| Request::PutKeep { sha256 }),
            (text(), text(), any::<u32>(), any::<bool>()).prop_map(|(path, name, mode, mkdir)| {
                Request::MakeDir {
                    path,
                    name,
                    mode,
                    mkdir,
                }
            }),
            (text(), text()).prop_map(|(path, target)| Request::MakeSymlink { path, target }),
            (text(), any::<bool>()).prop_map(|(path, recursive)| Request::Get { path, recursive }),
        ]
    }

    fn end_reason() -> impl Strategy<Value = EndReason> {
        prop_oneof![
            Just(EndReason::Exited),
            Just(EndReason::Timeout),
            Just(EndReason::Cancelled),
            Just(EndReason::Shutdown),
        ]
    }

    fn entry_kind() -> impl Strategy<Value = EntryKind> {
        prop_oneof![
            Just(EntryKind::File),
            Just(EntryKind::Dir),
            Just(EntryKind::Symlink)
        ]
    }

    fn reply() -> impl Strategy<Value = Reply> {
        prop_oneof![
            text().prop_map(|agent_version| Reply::Pong { agent_version }),
            any::<u32>().prop_map(|pid| Reply::Started { pid }),
            Just(Reply::Heartbeat),
            (any::<Option<i32>>(), any::<Option<i32>>(), end_reason()).prop_map(
                |(code, signal, reason)| Reply::Exit {
                    code,
                    signal,
                    reason
                }
            ),
            (text(), proptest::option::of(text()))
                .prop_map(|(path, held_sha256)| Reply::PutReady { path, held_sha256 }),
            (text(), any::<u64>(), text(), any::<bool>()).prop_map(
                |(path, bytes, sha256, unchanged)| Reply::PutDone {
                    path,
                    bytes,
                    sha256,
                    unchanged
                }
            ),
            (text(), any::<bool>()).prop_map(|(path, created)| Reply::Made { path, created }),
            (
                text(),
                entry_kind(),
                any::<u32>(),
                any::<u64>(),
                proptest::option::of(text())
            )
                .prop_map(|(path, kind, mode, size, target)| Reply::Entry {
                    path,
                    kind,
                    mode,
                    size,
                    target
                }),
            text().prop_map(|sha256| Reply::EntryEnd { sha256 }),
            (any::<u64>(), any::<u64>())
                .prop_map(|(entries, bytes)| Reply::GetDone { entries, bytes }),
            text().prop_map(|message| Reply::Error { message }),
            text().prop_map(|message| Reply::Denied { message }),
        ]
    }

    fn packet<C: std::fmt::Debug>(
        control: impl Strategy<Value = C>,
    ) -> impl Strategy<Value = Packet<C>> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from);
        prop_oneof![
            3 => control.prop_map(Packet::Control),
            1 => bytes().prop_map(|b| Packet::Output(Stream::Stdout, b)),
            1 => bytes().prop_map(|b| Packet::Output(Stream::Stderr, b)),
            1 => bytes().prop_map(Packet::FileData),
        ]
    }

    /// What a decoder must hold for any payload: no panic, and a payload that decodes
    /// encodes back to one that decodes to the same packet, with stable bytes.
    fn check_decode<C>(payload: &[u8]) -> Result<(), TestCaseError>
    where
        C: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let Ok(packet) = Packet::<C>::decode(Bytes::copy_from_slice(payload)) else {
            return Ok(());
        };
        let _ = packet.summary();
        let encoded = packet.encode(0).freeze();
        let again = Packet::<C>::decode(encoded.clone());
        prop_assert!(again.is_ok(), "{packet:?} encodes to what does not decode");
        let again = again.expect("checked");
        prop_assert_eq!(&again, &packet);
        prop_assert_eq!(again.encode(0).freeze(), encoded);
        Ok(())
    }

    /// Bytes that look like a control message: a type byte of 0..=4, then JSON-ish text.
    fn payload() -> impl Strategy<Value = Vec<u8>> {
        let json = proptest::string::string_regex(
            r#"\{("type":"[a-z_]{0,12}"|"[a-z_]{1,12}":("[^"]{0,8}"|-?[0-9]{1,21}|null|true|\[\]|\{\})|,){0,6}\}"#,
        )
        .expect("a valid regex");
        (0u8..5, json).prop_map(|(kind, json)| [vec![kind], json.into_bytes()].concat())
    }

    proptest! {
        #[test]
        fn every_request_round_trips(packet in packet(request())) {
            prop_assert_eq!(&Packet::decode(packet.encode(0).freeze()).unwrap(), &packet);
        }

        #[test]
        fn every_reply_round_trips(packet in packet(reply())) {
            prop_assert_eq!(&Packet::decode(packet.encode(0).freeze()).unwrap(), &packet);
        }

        #[test]
        fn any_bytes_decode_without_panic_and_round_trip(
            bytes in proptest::collection::vec(any::<u8>(), 0..128)
        ) {
            check_decode::<Request>(&bytes)?;
            check_decode::<Reply>(&bytes)?;
        }

        #[test]
        fn json_like_payloads_decode_without_panic_and_round_trip(bytes in payload()) {
            check_decode::<Request>(&bytes)?;
            check_decode::<Reply>(&bytes)?;
        }

        #[test]
        fn a_summary_cuts_any_text_at_a_character_boundary(message in "(?s).{190,230}") {
            let summary = Packet::Control(Reply::Error { message }).summary();
            prop_assert!(summary.chars().count() <= 201, "{summary}");
        }
    }
}
