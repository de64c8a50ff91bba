//! Length-prefixed framing: the lowest layer of the wire protocol.
//!
//! ```text
//! +----------------------+---------------------------+
//! | length: u32, BE      | payload: `length` bytes   |
//! +----------------------+---------------------------+
//! ```
//!
//! The length counts only the payload. A length above [`MAX_FRAME_LEN`] is refused as soon as
//! the 4-byte header is read, before any buffer is sized for it, so a peer cannot make us
//! allocate by lying about a length. The codec is tokio-util's `LengthDelimitedCodec`; this
//! module only fixes its settings so that both binaries and the tests frame the same way.
//! What goes *inside* a frame is the business of [`crate::auth`] and [`crate::channel`].

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// The largest payload a frame may carry, in bytes.
///
/// Output and file data travel in chunks of at most [`MAX_DATA_CHUNK`] bytes, so this leaves
/// ample room for the message header and the 32-byte channel tag while still bounding what one
/// frame can make a receiver buffer.
pub const MAX_FRAME_LEN: usize = 1024 * 1024;

/// The largest bulk-data chunk a sender puts into one frame.
pub const MAX_DATA_CHUNK: usize = 256 * 1024;

/// A byte stream split into frames.
pub type FramedStream<T> = Framed<T, LengthDelimitedCodec>;

/// Returns the codec every muster peer uses: 4-byte big-endian length, payload only.
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .big_endian()
        .max_frame_length(MAX_FRAME_LEN)
        .new_codec()
}

/// Wraps a byte stream (a `TcpStream`, or a `tokio::io::duplex` end in tests) into frames.
pub fn framed<T: AsyncRead + AsyncWrite>(io: T) -> FramedStream<T> {
    Framed::new(io, codec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, Bytes, BytesMut};
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::Decoder;

    #[tokio::test]
    async fn frames_round_trip_with_a_big_endian_length() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut tx = framed(a);
        let mut raw = b;
        tx.send(Bytes::from_static(b"hello")).await.unwrap();
        let mut buf = [0u8; 9];
        tokio::io::AsyncReadExt::read_exact(&mut raw, &mut buf)
            .await
            .unwrap();
        assert_eq!(&buf, b"\x00\x00\x00\x05hello");
    }

    #[test]
    fn a_length_above_the_maximum_is_refused_from_the_header_alone() {
        let mut codec = codec();
        let mut buf = BytesMut::new();
        buf.put_u32(MAX_FRAME_LEN as u32 + 1);
        let err = codec.decode(&mut buf).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        // Nothing was reserved for the announced payload.
        assert!(buf.capacity() < 1024, "capacity {}", buf.capacity());
    }

    #[test]
    fn a_frame_of_exactly_the_maximum_is_accepted() {
        let mut codec = codec();
        let mut buf = BytesMut::new();
        buf.put_u32(MAX_FRAME_LEN as u32);
        buf.put_bytes(7, MAX_FRAME_LEN);
        let frame = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.len(), MAX_FRAME_LEN);
    }

    #[tokio::test]
    async fn a_half_frame_then_close_is_an_error_not_a_clean_end() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut rx = framed(a);
        b.write_all(b"\x00\x00\x00\x10only-ten").await.unwrap();
        drop(b);
        let got = rx.next().await.unwrap();
        assert!(got.is_err(), "expected an error, got {got:?}");
    }
}
