//! Frame header: the bytes of a connection, before anything else, through the reader both
//! peers use (`common::frame::Frames`, 4-byte big-endian length, `MAX_FRAME_LEN`).
//!
//! Input: one byte saying where the stream is cut in two (the reader sees the bytes arrive
//! in two parts), then the stream.
//!
//! Invariant: no panic; every frame is at most `MAX_FRAME_LEN`; the frames read, framed
//! again, are exactly the start of the stream (round trip), whatever the cut; a stream that
//! ends inside a frame (even right after a whole header) is an error, never a frame or a
//! clean end.
#![no_main]

use common::frame::{framed, MAX_FRAME_LEN};
use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncReadExt;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(stream.len());
    let (frames, clean_end) = muster_fuzz::runtime().block_on(async {
        let mut reader = framed((&stream[..cut]).chain(&stream[cut..]));
        let mut frames = Vec::new();
        loop {
            match reader.next().await {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => return (frames, true),
                Err(_) => return (frames, false),
            }
        }
    });
    let mut encoded = Vec::new();
    for frame in frames {
        assert!(
            frame.len() <= MAX_FRAME_LEN,
            "frame of {} bytes",
            frame.len()
        );
        encoded.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        encoded.extend_from_slice(&frame);
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
