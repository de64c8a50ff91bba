//! Every request: the payload of an authenticated channel frame, as the agent decodes it
//! (`Packet::<Request>::decode`: type byte, then JSON or raw bytes).
//!
//! Invariant: no panic; a payload that decodes encodes to one that decodes to the same
//! packet, and encoding that again gives the same bytes (round trip); the packet's summary
//! for logs never panics (it cuts at a character boundary).
#![no_main]

use bytes::Bytes;
use common::message::{Packet, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::<Request>::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    let _ = packet.summary();
    let encoded = packet.encode(0).freeze();
    let again = Packet::<Request>::decode(encoded.clone()).expect("what we encode decodes");
    assert_eq!(again, packet, "decode(encode(p)) != p");
    assert_eq!(again.encode(0).freeze(), encoded, "encoding is not stable");
});
