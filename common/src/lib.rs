//! Everything the muster `agent` and `ctl` must agree on, and nothing that only one of them needs.
//!
//! The wire stack, bottom to top (each layer is one module and knows only the one below):
//!
//! - [`frame`]: a 4-byte big-endian length prefix around every message, with a maximum checked
//!   before anything is allocated.
//! - [`auth`]: the mutual HMAC-SHA256 challenge-response that opens every connection and
//!   derives the per-connection session keys.
//! - [`channel`]: after authentication, every frame is encrypted and authenticated with
//!   AES-256-GCM under per-direction keys, its implicit sequence number as the nonce, so
//!   frames cannot be read, forged, replayed or reordered.
//! - [`message`]: what travels inside a channel frame: JSON control messages, or raw bulk bytes.
//!
//! Beside the wire: [`key`] reads and writes the shared key file, [`digest`] is the SHA-256
//! both sides write, [`folder`] how they open folders by path without following links,
//! [`atomic_file`] how they write files that appear whole or not at all, [`chunk_reader`]
//! how they read the file data they send, [`hashing_writer`] how they write the file data
//! they receive, [`diagnostics_file`] where they keep their diagnostics, and
//! [`private_file`] how they create files only their owner may read. What only one side needs lives in that side's
//! crate (the inventory, for one, is `ctl`'s). `docs/PROTOCOL.md` describes the same protocol for people writing
//! another peer; keep the two in step.
#![warn(missing_docs)]

pub mod atomic_file;
pub mod auth;
pub mod byte_budget;
pub mod channel;
pub mod chunk_reader;
pub mod diagnostics_file;
pub mod digest;
pub mod folder;
pub mod frame;
pub mod hashing_writer;
pub mod identity;
pub mod key;
pub mod message;
pub mod private_file;

/// The protocol version both sides put into the handshake. A peer speaking another version is
/// refused during the handshake, before any request is read.
pub const PROTOCOL_VERSION: u8 = 2;
