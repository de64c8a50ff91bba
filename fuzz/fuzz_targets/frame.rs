//! Frame header: the bytes of a connection, before anything else, through the codec both
//! peers use (`common::frame::codec`, 4-byte big-endian length, `MAX_FRAME_LEN`).
//!
//! Input: one byte saying where the stream is cut in two (the codec sees the bytes arrive in
//! two reads), then the stream.
//!
//! Invariant: no panic; every frame is at most `MAX_FRAME_LEN`; the frames decoded, encoded
//! again with the same codec, are exactly the start of the stream (round trip), whatever the
//! cut; a stream that ends inside a frame (even right after a whole header) is an error,
//! never a frame or a clean end.
#![no_main]

use bytes::{Bytes, BytesMut};
use common::frame::{codec, MAX_FRAME_LEN};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(stream.len());
    let mut decoder = codec();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut failed = false;
    for part in [&stream[..cut], &stream[cut..]] {
        buf.extend_from_slice(part);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            break;
        }
    }
    let mut clean_end = false;
    if !failed {
        match decoder.decode_eof(&mut buf) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => clean_end = true,
            Err(_) => {}
        }
    }
    let mut encoded = BytesMut::new();
    let mut encoder = codec();
    for frame in frames {
        assert!(
            frame.len() <= MAX_FRAME_LEN,
            "frame of {} bytes",
            frame.len()
        );
        encoder
            .encode(Bytes::from(frame), &mut encoded)
            .expect("a decoded frame encodes");
    }
    assert_eq!(
        &encoded[..],
        &stream[..encoded.len()],
        "frames do not round trip"
    );
    if clean_end {
        assert_eq!(encoded.len(), stream.len(), "a clean end inside a frame");
    }
});
