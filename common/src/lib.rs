//! Everything the muster `agent` and `ctl` must agree on, and nothing that only one of them needs.
//!
//! The wire stack, bottom to top (each layer is one module and knows only the one below):
//!
//! - [`tls`] and [`handshake`]: TLS 1.3 (rustls) around every connection, both sides
//!   proving their Ed25519 keys as raw public keys, each pinning the other's.
//! - [`frame`]: a 4-byte big-endian length prefix around every message inside the TLS
//!   stream, with a maximum checked before anything is allocated.
//! - [`channel`]: packets in frames, and the timeouts on a connection.
//! - [`message`]: what travels inside a frame: JSON control messages, or raw bulk bytes.
//!
//! Beside the wire: [`identity`] reads and makes keys and the `authorized_keys` and
//! `known_hosts` files, [`digest`] is the SHA-256 both sides write, [`folder`] how they
//! open folders by path without following links, [`atomic_file`] how they write files that
//! appear whole or not at all, [`chunk_reader`] how they read the file data they send,
//! [`hashing_writer`] how they write the file data they receive, [`byte_budget`] how many
//! bytes of frames a reader may hold, [`diagnostics_file`] where they keep their
//! diagnostics, and [`private_file`] how they create files only their owner may read. What
//! only one side needs lives in that side's crate (the inventory, for one, is `ctl`'s).
//! `docs/PROTOCOL.md` describes the same protocol for people writing another peer; keep the
//! two in step.
#![warn(missing_docs)]

pub mod atomic_file;
pub mod byte_budget;
pub mod channel;
pub mod chunk_reader;
pub mod command_vars;
pub mod diagnostics_file;
pub mod digest;
pub mod folder;
pub mod frame;
pub mod handshake;
pub mod hashing_writer;
pub mod identity;
pub mod message;
pub mod private_file;
pub mod tls;
pub mod tls_stream;
