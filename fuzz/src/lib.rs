//! What the fuzz targets in `fuzz_targets/` share: the controller code they reach (compiled
//! in from its source, since `ctl` has no library) and the drivers that play a peer.
//!
//! Each target's file says which decoder it feeds and the invariant it checks; the list,
//! with how long each ran and what it found, is in docs/SECURITY.md ("Fuzzing and property tests").

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};

use common::handshake::{self, HandshakeError};
use common::identity::keys::Identity;
use common::message::{Packet, Request};
use common::tls::{self, PresentedKey};
use tokio::io::{AsyncWriteExt, DuplexStream};

/// `ctl`'s inventory parser and range expansion, as `controller/src/inventory/` has them.
#[allow(dead_code, unused_imports)]
#[path = "../../controller/src/inventory/mod.rs"]
pub mod inventory;

/// The keys of both sides of a fuzzed handshake. The fuzzer never learns the fresh
/// randoms and ephemeral keys of the side we run, so it can never complete a handshake.
fn credentials() -> &'static tls::Credentials {
    static CREDENTIALS: OnceLock<tls::Credentials> = OnceLock::new();
    CREDENTIALS.get_or_init(|| {
        tls::Credentials::new(Arc::new(Identity::generate("fuzz"))).expect("a key file signs")
    })
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

/// A pipe whose far end has sent `peer` (at most [`MAX_PEER_BYTES`]) and closed its
/// sending half; keep the far end until the handshake is over.
async fn peer_that_sent(peer: &[u8]) -> (DuplexStream, DuplexStream) {
    let (ours, mut theirs) = tokio::io::duplex(2 * MAX_PEER_BYTES);
    theirs
        .write_all(&peer[..peer.len().min(MAX_PEER_BYTES)])
        .await
        .expect("fits the pipe");
    theirs.shutdown().await.expect("a duplex closes");
    (ours, theirs)
}

/// Runs the agent's side of the handshake against a client that sends `peer` (raw TLS
/// bytes) and then closes its sending half.
pub fn agent_handshake_with(peer: &[u8]) -> Result<(), HandshakeError> {
    runtime().block_on(async {
        let (ours, theirs) = peer_that_sent(peer).await;
        let config = tls::server_config(credentials()).expect("TLS");
        let got = handshake::accept(ours, config).await;
        drop(theirs);
        got.map(drop)
    })
}

/// Runs `ctl`'s side of the handshake, with a first request as `ctl` sends it and trusting
/// any host key, against an agent that sends `peer` and then closes its sending half.
pub fn ctl_handshake_with(peer: &[u8]) -> Result<(), HandshakeError> {
    runtime().block_on(async {
        let (ours, theirs) = peer_that_sent(peer).await;
        let config = tls::client_config(
            credentials(),
            Arc::new(|_: &_| true),
            PresentedKey::default(),
        )
        .expect("TLS");
        let first = Packet::Control(Request::Ping);
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let got = handshake::connect(ours, config, localhost, Some(&first)).await;
        drop(theirs);
        got.map(drop)
    })
}
