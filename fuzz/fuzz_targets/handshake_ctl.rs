//! Handshake, `ctl` side: what a fake or broken agent can send to `ctl` (its TLS flight),
//! through `common::handshake::connect` with a first request, trusting any host key.
//!
//! Input: the raw bytes the agent sends, then it closes.
//!
//! Invariant: no panic, no hang, and the handshake never succeeds: `ctl`'s random and
//! ephemeral key are fresh each time, so no input can finish the handshake.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let got = muster_fuzz::ctl_handshake_with(data);
    assert!(
        got.is_err(),
        "ctl accepted an agent that never saw its nonce"
    );
});
