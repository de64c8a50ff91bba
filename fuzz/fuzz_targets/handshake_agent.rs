//! Handshake, agent side: what an unauthenticated client can send before it has proved
//! anything (a ClientHello, its second flight and whatever follows), through
//! `common::handshake::accept` (rustls underneath).
//!
//! Input: the raw bytes the client sends, then it closes.
//!
//! Invariant: no panic, no hang, and the handshake never succeeds: the agent's random and
//! ephemeral key are fresh each time, so no input can finish the handshake.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let got = muster_fuzz::agent_handshake_with(data);
    assert!(
        got.is_err(),
        "an agent accepted a client that never saw its nonce"
    );
});
