//! Length-prefixed framing: the lowest layer of the wire protocol.
//!
//! ```text
//! +----------------------+---------------------------+
//! | length: u32, BE      | payload: `length` bytes   |
//! +----------------------+---------------------------+
//! ```
//!
//! The length counts only the payload. A length above the limit ([`MAX_FRAME_LEN`], or less
//! during the handshake) is refused as soon as the 4-byte header is read, before any buffer
//! is sized for it, so a peer cannot make us allocate by lying about a length.
//!
//! [`Frames`] reads through a small read-ahead buffer ([`READ_AHEAD`] bytes), so a
//! connection holds little while it waits. A frame's payload gets a buffer of its own, of
//! exactly its length, only once the header is read, and [`Frames::begin_payload`] can first
//! take that length from a [`ByteBudget`]: a reader sharing one budget with many others
//! holds at most the budget in payloads, however many peers send at once. Frames are
//! written straight to the stream, header and payload in one vectored write.
//!
//! A stream that ends inside a frame, even right after a whole header, is an error
//! ([`ReadError::Truncated`]), never a clean end (docs/PROTOCOL.md, "Framing").
//! What goes *inside* a frame is the business of [`crate::auth`] and [`crate::channel`].

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::byte_budget::{ByteBudget, Charge};

/// The largest payload a frame may carry, in bytes.
///
/// Output and file data travel in chunks of at most [`MAX_DATA_CHUNK`] bytes, so this leaves
/// ample room for the message header and the 16-byte channel tag while still bounding what one
/// frame can make a receiver buffer.
pub const MAX_FRAME_LEN: usize = 1024 * 1024;

/// The largest bulk-data chunk a sender puts into one frame.
pub const MAX_DATA_CHUNK: usize = 256 * 1024;

/// What a connection reads ahead of the frame it is decoding: headers, and whole small frames.
pub const READ_AHEAD: usize = 8 * 1024;

const HEADER_LEN: usize = 4;

/// Why no frame could be read; each ends the stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The header announced more than the limit.
    #[error("a frame of {len} bytes is over the maximum of {max}")]
    TooLong {
        /// The announced length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("the stream ended inside a frame")]
    Truncated,
    /// The stream failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A byte stream split into frames.
#[derive(Debug)]
pub struct Frames<T> {
    io: T,
    max_len: usize,
    /// Bytes read past the last frame returned; never shared, so its space is reused.
    ahead: BytesMut,
    /// The frame whose header has been read and whose payload is arriving.
    body: Option<Body>,
}

#[derive(Debug)]
struct Body {
    len: usize,
    payload: BytesMut,
    charge: Option<Charge>,
}

/// Wraps a byte stream (a `TcpStream`, or a `tokio::io::duplex` end in tests) into frames of
/// at most [`MAX_FRAME_LEN`].
pub fn framed<T>(io: T) -> Frames<T> {
    Frames {
        io,
        max_len: MAX_FRAME_LEN,
        ahead: BytesMut::new(),
        body: None,
    }
}

impl<T> Frames<T> {
    /// Changes the largest payload accepted from now on (the handshake lowers it until the
    /// peer has proved its key).
    pub fn set_max_frame_length(&mut self, len: usize) {
        self.max_len = len;
    }

    /// The stream below.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.io
    }
}

impl<T: AsyncRead + Unpin> Frames<T> {
    /// Reads the next frame. `Ok(None)` means the stream ended cleanly, between frames.
    ///
    /// # Errors
    /// [`ReadError`]; after one, the stream must be dropped.
    ///
    /// # Cancel safety
    /// Cancel safe: a partly read frame stays here for the next call.
    pub async fn next(&mut self) -> Result<Option<BytesMut>, ReadError> {
        if self.wait_header().await?.is_none() {
            return Ok(None);
        }
        self.begin_payload(None).await;
        Ok(Some(self.finish_payload().await?.0))
    }

    /// Waits for the next frame's header and returns the frame's length, or `None` when the
    /// stream ended cleanly instead. With a frame begun, returns its length at once. The
    /// three steps of a read are public so that a caller can time the peer's part (this and
    /// [`Frames::finish_payload`]) apart from its own wait for a budget.
    ///
    /// # Errors
    /// As [`Frames::next`].
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait_header(&mut self) -> Result<Option<usize>, ReadError> {
        if let Some(body) = &self.body {
            return Ok(Some(body.len));
        }
        loop {
            if let Some(header) = self.ahead.get(..HEADER_LEN) {
                let len = u32::from_be_bytes(header.try_into().expect("four bytes")) as usize;
                if len > self.max_len {
                    return Err(ReadError::TooLong {
                        len,
                        max: self.max_len,
                    });
                }
                return Ok(Some(len));
            }
            // Unshared, so this moves what is left to the front instead of allocating more.
            self.ahead.reserve(READ_AHEAD - self.ahead.len());
            let room = READ_AHEAD - self.ahead.len();
            let read = match read_at_most(&mut self.io, room, &mut self.ahead).await {
                // TLS reports a close without `close_notify` as an unexpected end. Between
                // frames nothing can have been cut short, so that is a clean end too.
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => 0,
                other => other?,
            };
            if read == 0 {
                return match self.ahead.is_empty() {
                    true => Ok(None),
                    false => Err(ReadError::Truncated),
                };
            }
        }
    }

    /// After [`Frames::wait_header`] found a header: takes the frame's length from `budget`
    /// (waiting for room) and gives the payload a buffer of exactly its length. Does nothing
    /// when the frame is already begun.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled wait for the budget takes nothing and changes nothing.
    ///
    /// # Panics
    /// When no header has been read.
    pub async fn begin_payload(&mut self, budget: Option<&ByteBudget>) {
        if self.body.is_some() {
            return;
        }
        let header = self
            .ahead
            .get(..HEADER_LEN)
            .expect("wait_header read a header");
        let len = u32::from_be_bytes(header.try_into().expect("four bytes")) as usize;
        let charge = match budget {
            Some(budget) => Some(budget.charge(len).await),
            None => None,
        };
        self.ahead.advance(HEADER_LEN);
        // A copy, not a split: a split would keep the read-ahead buffer alive for as long as
        // the payload lives, and let it grow past its size.
        let from_ahead = len.min(self.ahead.len());
        let mut payload = BytesMut::with_capacity(len);
        payload.extend_from_slice(&self.ahead[..from_ahead]);
        self.ahead.advance(from_ahead);
        self.body = Some(Body {
            len,
            payload,
            charge,
        });
    }

    /// Reads the rest of the frame [`Frames::begin_payload`] began, and returns it with its
    /// charge.
    ///
    /// # Errors
    /// [`ReadError::Truncated`] or [`ReadError::Io`].
    ///
    /// # Cancel safety
    /// Cancel safe: what was read stays with the frame.
    ///
    /// # Panics
    /// When no frame was begun.
    pub async fn finish_payload(&mut self) -> Result<(BytesMut, Option<Charge>), ReadError> {
        loop {
            let body = self.body.as_mut().expect("begin_payload began a frame");
            let missing = body.len - body.payload.len();
            if missing == 0 {
                let body = self.body.take().expect("checked above");
                return Ok((body.payload, body.charge));
            }
            if read_at_most(&mut self.io, missing, &mut body.payload).await? == 0 {
                return Err(ReadError::Truncated);
            }
        }
    }
}

/// One read of at most `limit` bytes into `buf`; 0 at the end of the stream.
///
/// Cancel safe: either it read into `buf` or it did nothing.
async fn read_at_most<R: AsyncRead + Unpin>(
    io: &mut R,
    limit: usize,
    buf: &mut BytesMut,
) -> io::Result<usize> {
    let mut limited = tokio::io::AsyncReadExt::take(io, limit as u64);
    tokio::io::AsyncReadExt::read_buf(&mut limited, buf).await
}

impl<T: AsyncWrite + Unpin> Frames<T> {
    /// Writes one frame, as [`write_frame`].
    ///
    /// # Errors
    /// As [`write_frame`].
    pub async fn send(&mut self, payload: Bytes) -> io::Result<()> {
        write_frame(&mut self.io, payload).await
    }
}

/// Writes one frame straight to `io`: the header and `payload` in one vectored write,
/// without copying the payload.
///
/// # Errors
/// A payload longer than [`MAX_FRAME_LEN`], or the write's own error.
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

/// The length prefix of `payload`, refused when it is over [`MAX_FRAME_LEN`].
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

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
    async fn small_and_largest_frames_read_back_whole_and_in_order() {
        // Tried: a small frame, a largest-size frame, another small one, then the end;
        // the reader gets all three whole and in order, then a clean end.
        let (a, b) = tokio::io::duplex(1 << 16);
        let (mut tx, mut rx) = (framed(a), framed(b));
        let big = Bytes::from(vec![9u8; MAX_FRAME_LEN]);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(frame) = rx.next().await.unwrap() {
                got.push(frame.freeze());
            }
            got
        });
        tx.send(Bytes::from_static(b"first")).await.unwrap();
        tx.send(big.clone()).await.unwrap();
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

    /// A reader that counts the bytes taken from it.
    struct CountingReader<R> {
        inner: R,
        taken: Arc<AtomicUsize>,
    }

    impl<R: AsyncRead + Unpin> AsyncRead for CountingReader<R> {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            let this = self.get_mut();
            let before = buf.filled().len();
            let polled = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
            this.taken
                .fetch_add(buf.filled().len() - before, Ordering::SeqCst);
            polled
        }
    }

    #[tokio::test]
    async fn a_payload_is_not_read_until_its_length_is_charged() {
        // Tried: a 64 KiB frame sent whole while the shared budget is spent by another
        // charge; the reader takes no more than its read-ahead off the stream and holds no
        // payload until the budget frees, then gets the frame with its charge.
        let (mut a, b) = tokio::io::duplex(1 << 20);
        let taken = Arc::new(AtomicUsize::new(0));
        let mut rx = framed(CountingReader {
            inner: b,
            taken: Arc::clone(&taken),
        });
        let payload = Bytes::from(vec![5u8; 64 * 1024]);
        write_frame(&mut a, payload.clone()).await.unwrap();
        let budget = ByteBudget::new(128 * 1024);
        let other = budget.charge(128 * 1024).await;
        let reader = tokio::spawn({
            let budget = budget.clone();
            async move {
                // The three steps `Channel::recv_charged_within` takes.
                rx.wait_header().await.unwrap().unwrap();
                rx.begin_payload(Some(&budget)).await;
                let got = rx.finish_payload().await;
                (got, rx)
            }
        });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!reader.is_finished());
        assert!(taken.load(Ordering::SeqCst) <= READ_AHEAD);
        drop(other);
        let (got, _rx) = reader.await.unwrap();
        let (frame, charge) = got.unwrap();
        let charge = charge.expect("charged");
        assert!(frame == payload);
        assert_eq!(budget.available(), 64 * 1024);
        drop(charge);
        assert_eq!(budget.available(), 128 * 1024);
    }

    #[tokio::test]
    async fn a_length_above_the_maximum_is_refused_from_the_header_alone() {
        let mut stream = BytesMut::new();
        stream.put_u32(MAX_FRAME_LEN as u32 + 1);
        let mut rx = framed(&stream[..]);
        let err = rx.next().await.unwrap_err();
        assert!(
            matches!(err, ReadError::TooLong { len, max } if len == MAX_FRAME_LEN + 1 && max == MAX_FRAME_LEN),
            "{err:?}"
        );
        // Nothing was sized for the announced payload.
        assert!(rx.body.is_none());
        assert!(rx.ahead.capacity() <= READ_AHEAD, "{}", rx.ahead.capacity());
    }

    #[tokio::test]
    async fn a_lowered_limit_refuses_what_the_full_one_accepts() {
        let stream = [&300u32.to_be_bytes()[..], &[1u8; 300]].concat();
        let mut rx = framed(&stream[..]);
        rx.set_max_frame_length(128);
        assert!(matches!(
            rx.next().await,
            Err(ReadError::TooLong { len: 300, max: 128 })
        ));
        assert_eq!(
            framed(&stream[..]).next().await.unwrap().unwrap().len(),
            300
        );
    }

    #[tokio::test]
    async fn a_frame_of_exactly_the_maximum_is_accepted() {
        let mut stream = BytesMut::new();
        stream.put_u32(MAX_FRAME_LEN as u32);
        stream.put_bytes(7, MAX_FRAME_LEN);
        let frame = framed(&stream[..]).next().await.unwrap().unwrap();
        assert_eq!(frame.len(), MAX_FRAME_LEN);
    }

    #[tokio::test]
    async fn a_close_right_after_a_header_is_an_error_not_a_clean_end() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut rx = framed(a);
        b.write_all(b"\x00\x00\x00\x01").await.unwrap();
        drop(b);
        let got = rx.next().await;
        assert!(matches!(got, Err(ReadError::Truncated)), "{got:?}");
    }

    /// A stream that ends with an "unexpected end" error, as TLS reports a peer that closes
    /// without `close_notify`.
    struct EndsUnexpectedly(&'static [u8]);

    impl AsyncRead for EndsUnexpectedly {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            let this = self.get_mut();
            if this.0.is_empty() {
                return std::task::Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            let n = this.0.len().min(buf.remaining());
            buf.put_slice(&this.0[..n]);
            this.0 = &this.0[n..];
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn an_unexpected_end_between_frames_is_clean_and_inside_one_is_not() {
        // Tried: a whole frame, then the stream's "unexpected end"; and half a frame, then
        // the same.
        let mut rx = framed(EndsUnexpectedly(b"\x00\x00\x00\x02hi"));
        assert_eq!(rx.next().await.unwrap().unwrap(), "hi");
        assert!(rx.next().await.unwrap().is_none());
        let mut rx = framed(EndsUnexpectedly(b"\x00\x00\x00\x05hi"));
        assert!(rx.next().await.is_err());
    }

    #[tokio::test]
    async fn a_zero_length_frame_then_the_end_is_a_frame_and_a_clean_end() {
        let mut rx = framed(&b"\x00\x00\x00\x00"[..]);
        assert_eq!(rx.next().await.unwrap().unwrap().len(), 0);
        assert!(rx.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_half_frame_then_close_is_an_error_not_a_clean_end() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut rx = framed(a);
        b.write_all(b"\x00\x00\x00\x10only-ten").await.unwrap();
        drop(b);
        let got = rx.next().await;
        assert!(matches!(got, Err(ReadError::Truncated)), "{got:?}");
    }
}

/// Property tests of the reader as a peer meets it: any bytes, arriving in any pieces (the
/// fuzz target `frame` checks the same on nightly).
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    /// A stream that hands out its pieces one read at a time, then ends.
    struct Pieces(VecDeque<Vec<u8>>);

    impl AsyncRead for Pieces {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let pieces = &mut self.get_mut().0;
            if let Some(piece) = pieces.front_mut() {
                let n = piece.len().min(buf.remaining());
                buf.put_slice(&piece[..n]);
                piece.drain(..n);
                if piece.is_empty() {
                    pieces.pop_front();
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    /// Reads `stream`, cut into pieces at `cuts`, until it ends or is refused. Returns the
    /// frames read and whether the reader refused the stream.
    fn decode_in_pieces(stream: &[u8], cuts: &[usize]) -> (Vec<BytesMut>, bool) {
        let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(stream.len())).collect();
        bounds.sort_unstable();
        bounds.push(stream.len());
        let mut from = 0;
        let mut pieces = VecDeque::new();
        for to in bounds {
            pieces.push_back(stream[from..to].to_vec());
            from = to;
        }
        pieces.retain(|piece| !piece.is_empty());
        let mut rx = framed(Pieces(pieces));
        let mut frames = Vec::new();
        loop {
            // `Pieces` never waits, so every read completes on its first poll.
            let mut next = std::pin::pin!(rx.next());
            let Poll::Ready(got) = next.as_mut().poll(&mut Context::from_waker(Waker::noop()))
            else {
                panic!("a read of Pieces waited");
            };
            match got {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => return (frames, false),
                Err(_) => return (frames, true),
            }
        }
    }

    fn encode_all(frames: &[BytesMut]) -> BytesMut {
        let mut out = BytesMut::new();
        for frame in frames {
            out.extend_from_slice(&(frame.len() as u32).to_be_bytes());
            out.extend_from_slice(frame);
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
