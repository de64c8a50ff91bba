//! Handshake, `ctl` side: what a fake or broken agent can send to `ctl` (ServerHello,
//! Verdict), through `common::auth::client_handshake` with a pipelined first request.
//!
//! Input: the raw bytes the agent sends (length prefixes included), then it closes.
//!
//! Invariant: no panic, no hang, and the handshake never succeeds: `ctl`'s nonce is fresh
//! each time, so no input can carry a valid server proof.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let got = muster_fuzz::ctl_handshake_with(data);
    assert!(
        got.is_err(),
        "ctl accepted an agent that never saw its nonce"
    );
});
