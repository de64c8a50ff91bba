//! What the fuzz targets in `fuzz_targets/` share: the controller code they reach (compiled
//! in from its source, since `ctl` has no library) and the drivers that play a peer.
//!
//! Each target's file says which decoder it feeds and the invariant it checks; the list,
//! with how long each ran and what it found, is in docs/SECURITY.md ("Fuzzing and property tests").

use std::sync::OnceLock;

use common::auth::{self, AuthError};
use common::frame::framed;
use common::key::Key;
use common::message::{Packet, Request};
use tokio::io::AsyncWriteExt;

/// `ctl`'s inventory parser and range expansion, as `controller/src/inventory/` has them.
#[allow(dead_code, unused_imports)]
#[path = "../../controller/src/inventory/mod.rs"]
pub mod inventory;

/// The key both sides of a fuzzed handshake would need; the fuzzer never learns the nonce
/// of the other side, so it can never produce a valid proof under it.
fn key() -> &'static Key {
    static KEY: OnceLock<Key> = OnceLock::new();
    KEY.get_or_init(|| Key::from_hex(&"5a".repeat(32)).expect("64 hex digits"))
}

/// The one current-thread runtime the targets drive async code on.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime starts")
    })
}

/// Bytes a peer may send during a handshake before we stop feeding it: more than enough
/// for every handshake frame, and less than the pipe holds, so writing never waits.
pub const MAX_PEER_BYTES: usize = 32 * 1024;

/// Runs the agent's side of the handshake against a client that sends `peer` (raw stream
/// bytes, length prefixes included) and then closes its sending half.
pub fn agent_handshake_with(peer: &[u8]) -> Result<(), AuthError> {
    runtime().block_on(async {
        let (ours, mut theirs) = tokio::io::duplex(2 * MAX_PEER_BYTES);
        theirs
            .write_all(&peer[..peer.len().min(MAX_PEER_BYTES)])
            .await
            .expect("fits the pipe");
        theirs.shutdown().await.expect("a duplex closes");
        let got = auth::server_handshake(framed(ours), key()).await;
        drop(theirs);
        got.map(drop)
    })
}

/// Runs `ctl`'s side of the handshake, with a pipelined first request as `ctl` sends it,
/// against an agent that sends `peer` and then closes its sending half.
pub fn ctl_handshake_with(peer: &[u8]) -> Result<(), AuthError> {
    runtime().block_on(async {
        let (ours, mut theirs) = tokio::io::duplex(2 * MAX_PEER_BYTES);
        theirs
            .write_all(&peer[..peer.len().min(MAX_PEER_BYTES)])
            .await
            .expect("fits the pipe");
        theirs.shutdown().await.expect("a duplex closes");
        let first = Packet::Control(Request::Ping);
        let got = auth::client_handshake(framed(ours), key(), Some(&first)).await;
        drop(theirs);
        got.map(drop)
    })
}
