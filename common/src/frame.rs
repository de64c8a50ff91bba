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
//! module fixes its settings so that both binaries and the tests frame the same way, and
//! [`write_frame`] writes the same framing without the codec's copy of the payload.
//!
//! A stream that ends inside a frame is an error, never a clean end (docs/PROTOCOL.md,
//! "Framing"). `LengthDelimitedCodec` alone gets one case wrong: it takes a header off its
//! buffer as soon as the header is whole, so a stream that ends right after a header,
//! before any byte of the payload, leaves an empty buffer and looks finished. [`Codec`]
//! remembers that a header was taken and refuses that end too.
//! What goes *inside* a frame is the business of [`crate::auth`] and [`crate::channel`].

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder, Framed, LengthDelimitedCodec};

/// The largest payload a frame may carry, in bytes.
///
/// Output and file data travel in chunks of at most [`MAX_DATA_CHUNK`] bytes, so this leaves
/// ample room for the message header and the 16-byte channel tag while still bounding what one
/// frame can make a receiver buffer.
pub const MAX_FRAME_LEN: usize = 1024 * 1024;

/// The largest bulk-data chunk a sender puts into one frame.
pub const MAX_DATA_CHUNK: usize = 256 * 1024;

/// A byte stream split into frames.
pub type FramedStream<T> = Framed<T, Codec>;

/// The codec every muster peer uses: 4-byte big-endian length, payload only, at most
/// [`MAX_FRAME_LEN`] (or less, see [`Codec::set_max_frame_length`]).
#[derive(Debug)]
pub struct Codec {
    inner: LengthDelimitedCodec,
    /// A header has been taken off the buffer and its payload has not been returned yet.
    in_frame: bool,
}

/// Returns the codec every muster peer uses.
pub fn codec() -> Codec {
    Codec {
        inner: LengthDelimitedCodec::builder()
            .length_field_length(4)
            .big_endian()
            .max_frame_length(MAX_FRAME_LEN)
            .new_codec(),
        in_frame: false,
    }
}

impl Codec {
    /// Changes the largest payload accepted from now on (the handshake lowers it until the
    /// peer has proved the key).
    pub fn set_max_frame_length(&mut self, len: usize) {
        self.inner.set_max_frame_length(len);
    }
}

impl Decoder for Codec {
    type Item = BytesMut;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<BytesMut>> {
        let before = src.len();
        let frame = self.inner.decode(src)?;
        if frame.is_some() {
            self.in_frame = false;
        } else if src.len() < before {
            // The inner codec took a whole header and waits for the payload.
            self.in_frame = true;
        }
        Ok(frame)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> io::Result<Option<BytesMut>> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && !self.in_frame => Ok(None),
            // The same error the codec gives for a stream cut inside a header or payload.
            None => Err(io::Error::other("bytes remaining on stream")),
        }
    }
}

impl Encoder<Bytes> for Codec {
    type Error = io::Error;

    fn encode(&mut self, frame: Bytes, dst: &mut BytesMut) -> io::Result<()> {
        self.inner.encode(frame, dst)
    }
}

/// Wraps a byte stream (a `TcpStream`, or a `tokio::io::duplex` end in tests) into frames.
pub fn framed<T: AsyncRead + AsyncWrite>(io: T) -> FramedStream<T> {
    Framed::new(io, codec())
}

/// Writes one frame straight to `io`: the header and `payload` in one vectored write,
/// where the codec would first copy the payload into its write buffer (and keep that
/// buffer, sized for the largest frame sent, for as long as the connection lives).
///
/// Only for a stream whose `Framed` has nothing buffered to write, or the frames would
/// leave out of order.
///
/// # Errors
/// A payload longer than [`MAX_FRAME_LEN`] (as the codec would refuse it), or the write's
/// own error.
pub async fn write_frame<W: AsyncWrite + Unpin>(io: &mut W, payload: Bytes) -> io::Result<()> {
    let header = header_of(&payload)?;
    let mut frame = header.as_slice().chain(payload);
    io.write_all_buf(&mut frame).await?;
    io.flush().await
}

/// Writes two frames straight to `io` in one vectored write, as [`write_frame`] writes one:
/// for a frame that must not leave in a TCP segment of its own.
///
/// # Errors
/// As [`write_frame`]; nothing is written when either payload is too long.
pub async fn write_two_frames<W: AsyncWrite + Unpin>(
    io: &mut W,
    first: Bytes,
    second: Bytes,
) -> io::Result<()> {
    let (first_header, second_header) = (header_of(&first)?, header_of(&second)?);
    let mut frames = first_header
        .as_slice()
        .chain(first)
        .chain(second_header.as_slice().chain(second));
    io.write_all_buf(&mut frames).await?;
    io.flush().await
}

/// The length prefix of `payload`, refused as the codec would refuse it.
fn header_of(payload: &Bytes) -> io::Result<[u8; 4]> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&len| len as usize <= MAX_FRAME_LEN)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a frame of {} bytes is over the maximum of {MAX_FRAME_LEN}",
                    payload.len()
                ),
            )
        })?;
    Ok(len.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use futures_util::{SinkExt, StreamExt};

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

    #[tokio::test]
    async fn a_directly_written_frame_reads_back_through_the_codec_between_coded_ones() {
        // Tried: a coded frame, a largest-size frame written directly, another coded one;
        // the reader gets all three whole and in order.
        let (a, b) = tokio::io::duplex(1 << 16);
        let (mut tx, mut rx) = (framed(a), framed(b));
        let big = Bytes::from(vec![9u8; MAX_FRAME_LEN]);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(frame) = rx.next().await {
                got.push(frame.unwrap().freeze());
            }
            got
        });
        tx.send(Bytes::from_static(b"first")).await.unwrap();
        write_frame(tx.get_mut(), big.clone()).await.unwrap();
        tx.send(Bytes::from_static(b"last")).await.unwrap();
        drop(tx);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], "first");
        assert!(got[1] == big, "the large frame came back altered");
        assert_eq!(got[2], "last");
    }

    #[tokio::test]
    async fn a_direct_frame_over_the_maximum_is_refused_before_anything_is_written() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let err = write_frame(&mut a, Bytes::from(vec![0u8; MAX_FRAME_LEN + 1]))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        drop(a);
        let mut rest = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut b, &mut rest)
            .await
            .unwrap();
        assert!(rest.is_empty(), "{} bytes were written", rest.len());
    }

    #[tokio::test]
    async fn two_frames_written_together_read_back_as_two() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (mut tx, mut rx) = (a, framed(b));
        write_two_frames(
            &mut tx,
            Bytes::from_static(b"proof"),
            Bytes::from_static(b"req"),
        )
        .await
        .unwrap();
        assert_eq!(rx.next().await.unwrap().unwrap(), "proof");
        assert_eq!(rx.next().await.unwrap().unwrap(), "req");
    }

    /// A transport that takes everything it is given and counts the write calls.
    #[derive(Default)]
    struct CountingWriter {
        writes: usize,
        bytes: Vec<u8>,
    }

    impl AsyncWrite for CountingWriter {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.writes += 1;
            this.bytes.extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }

        fn poll_write_vectored(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> std::task::Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.writes += 1;
            let before = this.bytes.len();
            for buf in bufs {
                this.bytes.extend_from_slice(buf);
            }
            std::task::Poll::Ready(Ok(this.bytes.len() - before))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn two_frames_leave_in_a_single_write() {
        let mut io = CountingWriter::default();
        write_two_frames(
            &mut io,
            Bytes::from_static(b"ab"),
            Bytes::from_static(b"cde"),
        )
        .await
        .unwrap();
        assert_eq!(io.writes, 1);
        assert_eq!(io.bytes, b"\x00\x00\x00\x02ab\x00\x00\x00\x03cde");
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
    async fn a_close_right_after_a_header_is_an_error_not_a_clean_end() {
        // The 4-byte header of a 1-byte frame, then nothing: tokio-util's codec alone
        // takes this for a clean end, as its buffer is empty.
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut rx = framed(a);
        b.write_all(b"\x00\x00\x00\x01").await.unwrap();
        drop(b);
        let got = rx.next().await.unwrap();
        assert!(got.is_err(), "expected an error, got {got:?}");
    }

    #[test]
    fn a_zero_length_frame_then_the_end_is_a_frame_and_a_clean_end() {
        let mut codec = codec();
        let mut buf = BytesMut::from(&b"\x00\x00\x00\x00"[..]);
        assert_eq!(codec.decode_eof(&mut buf).unwrap().unwrap().len(), 0);
        assert!(codec.decode_eof(&mut buf).unwrap().is_none());
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

/// Property tests of the codec as a peer meets it: any bytes, arriving in any pieces (the
/// fuzz target `frame` checks the same on nightly).
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `stream` to a fresh codec in pieces cut at `cuts`, then ends it. Returns the
    /// frames decoded and whether the codec refused the stream (an error ends the stream).
    fn decode_in_pieces(stream: &[u8], cuts: &[usize]) -> (Vec<BytesMut>, bool) {
        let mut decoder = codec();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(stream.len())).collect();
        bounds.sort_unstable();
        bounds.push(stream.len());
        let mut from = 0;
        for to in bounds {
            buf.extend_from_slice(&stream[from..to]);
            from = to;
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => break,
                    Err(_) => return (frames, true),
                }
            }
        }
        match decoder.decode_eof(&mut buf) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => {}
            Err(_) => return (frames, true),
        }
        (frames, false)
    }

    fn encode_all(frames: &[BytesMut]) -> BytesMut {
        let mut out = BytesMut::new();
        for frame in frames {
            codec()
                .encode(Bytes::copy_from_slice(frame), &mut out)
                .expect("a decoded frame encodes");
        }
        out
    }

    proptest! {
        #[test]
        fn any_stream_decodes_to_frames_that_encode_back_to_its_start(
            stream in proptest::collection::vec(any::<u8>(), 0..256),
            cuts in proptest::collection::vec(0usize..256, 0..4),
        ) {
            let (frames, _) = decode_in_pieces(&stream, &cuts);
            let again = encode_all(&frames);
            prop_assert!(frames.iter().all(|f| f.len() <= MAX_FRAME_LEN));
            prop_assert_eq!(&again[..], &stream[..again.len()]);
        }

        #[test]
        fn encoded_frames_decode_whole_however_they_are_cut(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..6),
            cuts in proptest::collection::vec(0usize..300, 0..6),
        ) {
            let frames: Vec<BytesMut> = payloads.iter().map(|p| BytesMut::from(&p[..])).collect();
            let stream = encode_all(&frames);
            let (got, refused) = decode_in_pieces(&stream, &cuts);
            prop_assert!(!refused);
            prop_assert_eq!(got, frames);
        }

        #[test]
        fn a_header_over_the_maximum_is_refused_whatever_follows(
            len in (MAX_FRAME_LEN as u32 + 1)..=u32::MAX,
            rest in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let stream = [&len.to_be_bytes()[..], &rest].concat();
            let (frames, refused) = decode_in_pieces(&stream, &[]);
            prop_assert!(refused && frames.is_empty());
        }

        #[test]
        fn a_stream_cut_short_inside_a_frame_is_never_a_frame(
            payload in proptest::collection::vec(any::<u8>(), 1..64),
            keep in 0usize..64,
        ) {
            let stream = encode_all(&[BytesMut::from(&payload[..])]);
            let cut = keep.min(stream.len() - 1);
            let (frames, refused) = decode_in_pieces(&stream[..cut], &[]);
            prop_assert!(frames.is_empty());
            prop_assert_eq!(refused, cut > 0, "cut at {}", cut);
        }
    }
}
