//! Handshake, agent side: what an unauthenticated client can send before it has proved
//! anything (ClientHello, ClientProof and whatever follows), through
//! `common::auth::server_handshake`.
//!
//! Input: the raw bytes the client sends (length prefixes included), then it closes.
//!
//! Invariant: no panic, no hang, and the handshake never succeeds: the agent's nonce is
//! fresh each time, so no input can carry a valid client proof.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let got = muster_fuzz::agent_handshake_with(data);
    assert!(
        got.is_err(),
        "an agent accepted a client that never saw its nonce"
    );
});
