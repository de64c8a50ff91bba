//! The encrypted channel: what every frame looks like once the handshake is done.
//!
//! ```text
//! +----------------------+------------------------------+----------------------------+
//! | length: u32, BE      | ciphertext of the payload    | tag: 16 bytes              |
//! +----------------------+------------------------------+----------------------------+
//!   (ciphertext, tag) = AES-256-GCM(frame key, nonce = 0x00000000 || seq: u64 BE,
//!                                   plaintext = payload (see `message`), no associated data)
//!   frame key         = HMAC-SHA256(direction key, "muster frame key" || 0x00 || epoch: u64 BE)
//!   epoch             = seq / 2^20
//! ```
//!
//! Each direction has its own session key (derived in [`crate::auth`]) and its own sequence
//! number, starting at 0 and counting every frame sent that way. The sequence number is not
//! sent: both sides count, so a dropped, replayed, reordered or reflected frame fails its tag
//! and the connection is closed. The sequence number is also the nonce, so no nonce repeats
//! under a key. The key changes every 2^20 frames (at most 2^36 AES blocks, 1 TiB, per key)
//! to stay far inside AES-GCM's safe usage bounds on connections that move terabytes.
//!
//! Why AES-GCM: one pass gives both confidentiality and integrity, and with the CPU's AES
//! and carry-less multiply instructions (ring uses them) it is cheap next to the disk and
//! the network, so sealing every frame must never become what limits a transfer
//! (BENCHMARKS.md has the figures). This is the one place that knows about keys and tags;
//! the messages above and the framing below do not change with it.
//!
//! Timeouts on a connection are written here once: [`Channel::send_within`] and
//! [`Channel::recv_within`] tell a silent or stalled peer, a clean close and a broken
//! channel apart by type ([`SendError`], [`RecvError`]), so callers only choose the limit
//! and what each outcome means to them.

use std::time::Duration;

use crate::byte_budget::{ByteBudget, Charge};
use crate::frame::{self, Frames, ReadError};
use crate::message::{MessageError, Packet};
use bytes::{Bytes, BytesMut};
use hmac::{Hmac, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};

/// Length of the AES-GCM tag at the end of every channel frame.
pub const TAG_LEN: usize = 16;

/// Frames sent under one frame key before the next is derived.
pub const FRAMES_PER_KEY: u64 = 1 << 20;

const FRAME_KEY_LABEL: &[u8] = b"muster frame key";

type HmacSha256 = Hmac<Sha256>;

/// An encrypted, authenticated, ordered, bidirectional stream of [`Packet`]s.
pub struct Channel<T> {
    framed: Frames<T>,
    send: Direction,
    recv: Direction,
}

/// One direction's session key, its current frame key and its frame counter.
struct Direction {
    /// Keyed with the direction's session key; only used to derive frame keys.
    session: HmacSha256,
    frame_key: LessSafeKey,
    seq: u64,
}

/// Why the channel could not send or receive; every one of these ends the connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The peer announced a frame longer than the limit in force
    /// ([`crate::frame::MAX_FRAME_LEN`], less during the handshake).
    #[error("frame too large: {len} bytes, over the maximum of {max}")]
    Oversized {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The connection failed, or closed in the middle of a frame.
    #[error("transport: {0}")]
    Transport(std::io::Error),
    /// A frame too short to hold a tag.
    #[error("frame {seq} is shorter than its tag")]
    Short {
        /// The frame's sequence number.
        seq: u64,
    },
    /// A frame whose tag does not match: forged, altered, replayed or out of order.
    #[error("frame {seq} failed authentication (forged, altered, replayed or reordered)")]
    BadTag {
        /// The sequence number the frame was checked against.
        seq: u64,
    },
    /// An authentic frame whose content is not a valid packet.
    #[error("frame {seq}: {source}")]
    Message {
        /// The frame's sequence number.
        seq: u64,
        /// What was wrong with it.
        source: MessageError,
    },
}

/// Why [`Channel::recv_within`] returned no packet.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// Nothing arrived within the limit. The channel is still usable: no frame was lost.
    #[error("nothing received for {}s", .0.as_secs())]
    Idle(Duration),
    /// The peer closed the connection cleanly, between frames.
    #[error("the peer closed the connection")]
    Closed,
    /// The channel failed; it must be dropped.
    #[error(transparent)]
    Failed(#[from] ChannelError),
}

/// Why [`Channel::send_within`] did not send its packet. Either way the channel must be
/// dropped: part of the frame may be on the wire.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The peer took nothing for the whole limit.
    #[error("the peer took no data for {}s", .0.as_secs())]
    Stalled(Duration),
    /// The channel failed.
    #[error(transparent)]
    Failed(#[from] ChannelError),
}

impl<T: AsyncRead + AsyncWrite + Unpin> Channel<T> {
    /// Starts the channel over an already-authenticated framed stream with the two session
    /// keys from the handshake.
    pub(crate) fn new(framed: Frames<T>, send_key: &[u8], recv_key: &[u8]) -> Channel<T> {
        Channel {
            framed,
            send: Direction::new(send_key),
            recv: Direction::new(recv_key),
        }
    }

    /// Sends one packet, waiting until the transport has taken it. Because this waits, a
    /// peer that reads slowly slows the sender down: this is where backpressure comes from.
    ///
    /// # Errors
    /// [`ChannelError::Transport`] when the connection fails.
    ///
    /// # Cancel safety
    /// Not cancel safe: a cancelled send may have put part of a frame on the wire, after
    /// which the channel must be dropped.
    pub async fn send<C: Serialize>(&mut self, packet: &Packet<C>) -> Result<(), ChannelError> {
        let frame = self.seal(packet);
        frame::write_frame(self.framed.get_mut(), frame)
            .await
            .map_err(ChannelError::Transport)
    }

    /// Sends `below`, a frame of the layer below (the handshake's last), and then `packet`,
    /// both in one write. Only [`crate::auth`] uses this, for its pipelined first request.
    ///
    /// # Errors
    /// [`ChannelError::Transport`] when the connection fails.
    ///
    /// # Cancel safety
    /// Not cancel safe, as [`Channel::send`] is not.
    pub(crate) async fn send_behind<C: Serialize>(
        &mut self,
        below: Bytes,
        packet: &Packet<C>,
    ) -> Result<(), ChannelError> {
        let frame = self.seal(packet);
        frame::write_two_frames(self.framed.get_mut(), below, frame)
            .await
            .map_err(ChannelError::Transport)
    }

    /// Encodes and encrypts `packet` as the next frame this way; the frame counts as sent.
    fn seal<C: Serialize>(&mut self, packet: &Packet<C>) -> Bytes {
        let mut frame = packet.encode(TAG_LEN);
        self.send.seal(&mut frame);
        frame.freeze()
    }

    /// Receives the next packet. `Ok(None)` means the peer closed the connection cleanly,
    /// between frames.
    ///
    /// # Errors
    /// Any [`ChannelError`]; after one, the channel must be dropped.
    ///
    /// # Cancel safety
    /// Cancel safe: a partly received frame stays buffered in the channel, so this may be
    /// used as a `select!` branch.
    pub async fn recv<C: DeserializeOwned>(&mut self) -> Result<Option<Packet<C>>, ChannelError> {
        let frame = self.framed.next().await.map_err(ChannelError::from)?;
        frame.map(|frame| self.open(frame)).transpose()
    }

    /// Decrypts and decodes one received frame.
    fn open<C: DeserializeOwned>(&mut self, frame: BytesMut) -> Result<Packet<C>, ChannelError> {
        let seq = self.recv.seq;
        let payload = self.recv.open(frame)?;
        Packet::decode(payload).map_err(|source| ChannelError::Message { seq, source })
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Channel<T> {
    /// Sends one packet as [`Channel::send`] does, giving up when the peer has not taken it
    /// within `limit`: a peer that stops reading must not hold us (and whatever we are
    /// streaming to it) forever.
    ///
    /// # Errors
    /// [`SendError::Stalled`] after `limit`, [`SendError::Failed`] when the connection
    /// fails. After either, the channel must be dropped.
    ///
    /// # Cancel safety
    /// Not cancel safe, for the reason [`Channel::send`] is not.
    pub async fn send_within<C: Serialize>(
        &mut self,
        packet: &Packet<C>,
        limit: Duration,
    ) -> Result<(), SendError> {
        match tokio::time::timeout(limit, self.send(packet)).await {
            Err(_) => Err(SendError::Stalled(limit)),
            Ok(sent) => Ok(sent?),
        }
    }

    /// Receives the next packet as [`Channel::recv`] does, waiting at most `limit` for it.
    ///
    /// # Errors
    /// [`RecvError::Idle`] when nothing arrived within `limit` (the channel stays usable),
    /// [`RecvError::Closed`] when the peer closed the connection cleanly between frames,
    /// [`RecvError::Failed`] for any [`ChannelError`] (the channel must be dropped).
    ///
    /// # Cancel safety
    /// Cancel safe, as [`Channel::recv`] is: a partly received frame stays buffered.
    pub async fn recv_within<C: DeserializeOwned>(
        &mut self,
        limit: Duration,
    ) -> Result<Packet<C>, RecvError> {
        within(limit, self.recv()).await
    }

    /// Receives the next packet as [`Channel::recv_within`] does, and first takes the
    /// frame's length from `budget`: nothing of the frame but its header is read until the
    /// budget has room, and the returned [`Charge`] holds those bytes until it is dropped.
    /// `limit` is the peer's: it bounds the wait for the header and then for the payload,
    /// never the wait for the budget (a full budget is ours, not a silent peer).
    ///
    /// # Errors
    /// As [`Channel::recv_within`].
    ///
    /// # Cancel safety
    /// Cancel safe, as [`Channel::recv_within`] is; a cancelled wait for the budget takes
    /// nothing.
    pub async fn recv_charged_within<C: DeserializeOwned>(
        &mut self,
        limit: Duration,
        budget: &ByteBudget,
    ) -> Result<(Packet<C>, Charge), RecvError> {
        let header = async { Ok(self.framed.wait_header().await?) };
        within(limit, header).await?;
        self.framed.begin_payload(Some(budget)).await;
        let payload = async { Ok(Some(self.framed.finish_payload().await?)) };
        let (frame, charge) = within(limit, payload).await?;
        let packet = self.open(frame).map_err(RecvError::Failed)?;
        Ok((packet, charge.expect("charged to the budget")))
    }
}

/// What [`Channel::recv_within`] and [`Channel::recv_charged_within`] make of a receive that
/// may take at most `limit`.
async fn within<P>(
    limit: Duration,
    received: impl std::future::Future<Output = Result<Option<P>, ChannelError>>,
) -> Result<P, RecvError> {
    match tokio::time::timeout(limit, received).await {
        Err(_) => Err(RecvError::Idle(limit)),
        Ok(Ok(Some(packet))) => Ok(packet),
        Ok(Ok(None)) => Err(RecvError::Closed),
        Ok(Err(err)) => Err(RecvError::Failed(err)),
    }
}

impl<T> Channel<T> {
    /// The framed stream below, for the handshake's last unencrypted frames.
    pub(crate) fn framed_mut(&mut self) -> &mut Frames<T> {
        &mut self.framed
    }
}

impl Direction {
    fn new(session_key: &[u8]) -> Direction {
        let session =
            HmacSha256::new_from_slice(session_key).expect("HMAC takes keys of any length");
        let frame_key = frame_key(&session, 0);
        Direction {
            session,
            frame_key,
            seq: 0,
        }
    }

    /// Encrypts `payload` in place and appends its tag, as frame `seq`; then counts it.
    fn seal(&mut self, payload: &mut BytesMut) {
        let tag = self
            .frame_key
            .seal_in_place_separate_tag(nonce(self.seq), Aad::empty(), payload)
            .expect("a frame is far below AES-GCM's 64 GiB message limit");
        payload.extend_from_slice(tag.as_ref());
        self.advance();
    }

    /// Checks the tag at the end of `frame` (in constant time), decrypts the payload before
    /// it in place and returns it; then counts the frame. A frame that fails is not counted.
    fn open(&mut self, mut frame: BytesMut) -> Result<Bytes, ChannelError> {
        let seq = self.seq;
        let Some(payload_len) = frame.len().checked_sub(TAG_LEN) else {
            return Err(ChannelError::Short { seq });
        };
        self.frame_key
            .open_in_place(nonce(seq), Aad::empty(), &mut frame)
            .map_err(|_| ChannelError::BadTag { seq })?;
        frame.truncate(payload_len);
        self.advance();
        Ok(frame.freeze())
    }

    /// A direction whose counter is already at `seq`, as after sending that many frames.
    #[cfg(test)]
    fn at(session_key: &[u8], seq: u64) -> Direction {
        let mut direction = Direction::new(session_key);
        direction.seq = seq;
        direction.frame_key = frame_key(&direction.session, seq / FRAMES_PER_KEY);
        direction
    }

    fn advance(&mut self) {
        self.seq += 1;
        if self.seq.is_multiple_of(FRAMES_PER_KEY) {
            self.frame_key = frame_key(&self.session, self.seq / FRAMES_PER_KEY);
        }
    }
}

/// The AES-256-GCM key for frames `epoch * FRAMES_PER_KEY ..` of one direction.
fn frame_key(session: &HmacSha256, epoch: u64) -> LessSafeKey {
    let mut mac = session.clone();
    mac.update(FRAME_KEY_LABEL);
    mac.update(&[0x00]);
    mac.update(&epoch.to_be_bytes());
    let key = mac.finalize().into_bytes();
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("32 bytes is an AES-256 key"))
}

/// The 96-bit GCM nonce of frame `seq`: four zero bytes, then the sequence number.
fn nonce(seq: u64) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&seq.to_be_bytes());
    Nonce::assume_unique_for_key(nonce)
}

impl From<ReadError> for ChannelError {
    fn from(err: ReadError) -> ChannelError {
        match err {
            ReadError::TooLong { len, max } => ChannelError::Oversized { len, max },
            ReadError::Truncated => ChannelError::Transport(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the connection closed inside a frame",
            )),
            ReadError::Io(err) => ChannelError::Transport(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::framed;
    use crate::message::{Reply, Request, Stream};
    use tokio::io::DuplexStream;

    const C2S: &[u8] = b"client to server key, 32 bytes.";
    const S2C: &[u8] = b"server to client key, 32 bytes.";

    fn pair() -> (Channel<DuplexStream>, Channel<DuplexStream>) {
        let (a, b) = tokio::io::duplex(1 << 20);
        (
            Channel::new(framed(a), C2S, S2C),
            Channel::new(framed(b), S2C, C2S),
        )
    }

    /// A channel on one end and the raw framed stream on the other, to play the attacker.
    fn channel_and_raw() -> (Channel<DuplexStream>, crate::frame::Frames<DuplexStream>) {
        let (a, b) = tokio::io::duplex(1 << 20);
        (Channel::new(framed(a), S2C, C2S), framed(b))
    }

    #[tokio::test]
    async fn packets_round_trip_in_order() {
        let (mut client, mut server) = pair();
        client.send(&Packet::Control(Request::Ping)).await.unwrap();
        client
            .send(&Packet::<Request>::Output(
                Stream::Stdout,
                Bytes::from_static(b"x"),
            ))
            .await
            .unwrap();
        let first: Packet<Request> = server.recv().await.unwrap().unwrap();
        assert_eq!(first, Packet::Control(Request::Ping));
        let second: Packet<Request> = server.recv().await.unwrap().unwrap();
        assert_eq!(
            second,
            Packet::Output(Stream::Stdout, Bytes::from_static(b"x"))
        );
        drop(client);
        assert!(server.recv::<Request>().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_altered_byte_fails_the_tag() {
        let (mut receiver, mut raw) = channel_and_raw();
        let mut sender_side = Direction::new(C2S);
        let mut payload = Packet::Control(Request::Ping).encode(TAG_LEN);
        sender_side.seal(&mut payload);
        payload[3] ^= 1;
        raw.send(payload.freeze()).await.unwrap();
        let err = receiver.recv::<Request>().await.unwrap_err();
        assert!(matches!(err, ChannelError::BadTag { seq: 0 }), "{err}");
    }

    #[tokio::test]
    async fn a_replayed_frame_fails_the_tag() {
        let (mut receiver, mut raw) = channel_and_raw();
        let mut sender_side = Direction::new(C2S);
        let mut payload = Packet::Control(Request::Ping).encode(TAG_LEN);
        sender_side.seal(&mut payload);
        let frame = payload.freeze();
        raw.send(frame.clone()).await.unwrap();
        raw.send(frame).await.unwrap();
        assert!(receiver.recv::<Request>().await.unwrap().is_some());
        let err = receiver.recv::<Request>().await.unwrap_err();
        assert!(matches!(err, ChannelError::BadTag { seq: 1 }), "{err}");
    }

    #[tokio::test]
    async fn a_frame_reflected_back_to_its_sender_fails_the_tag() {
        let (mut client, mut server) = pair();
        // The server's own reply, fed back to it as if the client had sent it.
        server
            .send(&Packet::Control(Reply::Pong {
                agent_version: "x".into(),
            }))
            .await
            .unwrap();
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut victim: Channel<DuplexStream> = Channel::new(framed(a), S2C, C2S);
        let mut raw = framed(b);
        let reflected = client.framed.next().await.unwrap().unwrap();
        raw.send(reflected.freeze()).await.unwrap();
        let err = victim.recv::<Request>().await.unwrap_err();
        assert!(matches!(err, ChannelError::BadTag { .. }), "{err}");
    }

    #[tokio::test]
    async fn payloads_travel_encrypted() {
        let (mut client, mut server) = pair();
        let secret = Bytes::from_static(b"password=hunter2 do not print me");
        client
            .send(&Packet::<Request>::Output(Stream::Stdout, secret.clone()))
            .await
            .unwrap();
        let frame = server.framed.next().await.unwrap().unwrap();
        assert_eq!(frame.len(), 1 + secret.len() + TAG_LEN);
        let leaked = frame.windows(6).any(|w| secret.windows(6).any(|s| s == w));
        assert!(!leaked, "plaintext visible on the wire: {frame:?}");
    }

    #[tokio::test]
    async fn both_sides_change_keys_at_the_same_frame() {
        let (mut client, mut server) = pair();
        // Start just before the first key change rather than sending a million frames.
        let near_change = FRAMES_PER_KEY - 2;
        client.send = Direction::at(C2S, near_change);
        server.recv = Direction::at(C2S, near_change);
        for n in 0..4u8 {
            let packet = Packet::<Request>::Output(Stream::Stdout, Bytes::from(vec![n; 3]));
            client.send(&packet).await.unwrap();
            let got: Packet<Request> = server.recv().await.unwrap().unwrap();
            assert_eq!(got, packet, "frame {}", near_change + u64::from(n));
        }
        assert_eq!(server.recv.seq, FRAMES_PER_KEY + 2);
    }

    #[tokio::test]
    async fn a_frame_sealed_with_the_previous_key_after_a_key_change_fails() {
        let (mut receiver, mut raw) = channel_and_raw();
        receiver.recv = Direction::at(C2S, FRAMES_PER_KEY);
        // The right nonce, but the first epoch's key.
        let mut stale = Direction::new(C2S);
        stale.seq = FRAMES_PER_KEY;
        let mut payload = Packet::Control(Request::Ping).encode(TAG_LEN);
        stale.seal(&mut payload);
        raw.send(payload.freeze()).await.unwrap();
        let err = receiver.recv::<Request>().await.unwrap_err();
        assert!(matches!(err, ChannelError::BadTag { .. }), "{err}");
    }

    #[test]
    fn the_wire_format_matches_the_published_test_vector() {
        // docs/PROTOCOL.md, section 4, lists this vector for people writing another peer.
        let mut direction = Direction::new(&[0x11; 32]);
        direction.seq = 1;
        let mut frame = Packet::Control(Request::Ping).encode(TAG_LEN);
        direction.seal(&mut frame);
        assert_eq!(
            hex::encode(&frame),
            "d724c2d42d76afd0631a6faa4514d2da1bf841822cf3860bea663176c038f485"
        );
    }

    #[tokio::test]
    async fn a_frame_shorter_than_a_tag_is_refused() {
        let (mut receiver, mut raw) = channel_and_raw();
        raw.send(Bytes::from_static(b"short")).await.unwrap();
        let err = receiver.recv::<Request>().await.unwrap_err();
        assert!(matches!(err, ChannelError::Short { seq: 0 }), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_is_not_the_peers_silence() {
        // Tried: a frame that is there at once while the budget is spent for three times
        // the limit: it is received with its charge once the budget frees, not reported
        // idle; then a peer that sends nothing is idle after the limit.
        let (mut client, mut server) = pair();
        let output = Packet::<Request>::Output(Stream::Stdout, Bytes::from_static(b"xyz"));
        client.send(&output).await.unwrap();
        let budget = ByteBudget::new(64);
        let spent = budget.charge(64).await;
        let limit = Duration::from_secs(1);
        let receiver = tokio::spawn({
            let budget = budget.clone();
            async move {
                let got = server
                    .recv_charged_within::<Request>(limit, &budget)
                    .await
                    .map(|(packet, _charge)| packet);
                (got, server)
            }
        });
        tokio::time::sleep(3 * limit).await;
        assert!(!receiver.is_finished());
        drop(spent);
        let (got, mut server) = receiver.await.unwrap();
        assert_eq!(got.unwrap(), output);
        let idle = server.recv_charged_within::<Request>(limit, &budget).await;
        assert!(matches!(idle, Err(RecvError::Idle(_))), "{idle:?}");
        assert_eq!(budget.available(), 64);
    }

    #[tokio::test(start_paused = true)]
    async fn recv_within_tells_silence_from_a_packet_and_stays_usable() {
        let (mut client, mut server) = pair();
        let limit = Duration::from_secs(5);
        let err = server.recv_within::<Request>(limit).await.unwrap_err();
        assert!(matches!(err, RecvError::Idle(l) if l == limit), "{err}");
        client.send(&Packet::Control(Request::Ping)).await.unwrap();
        let got = server.recv_within::<Request>(limit).await.unwrap();
        assert_eq!(got, Packet::Control(Request::Ping));
    }

    #[tokio::test]
    async fn recv_within_reports_a_clean_close_as_closed() {
        let (client, mut server) = pair();
        drop(client);
        let err = server
            .recv_within::<Request>(Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, RecvError::Closed), "{err}");
    }

    #[tokio::test]
    async fn recv_within_reports_a_broken_frame_as_failed() {
        let (mut receiver, mut raw) = channel_and_raw();
        raw.send(Bytes::from_static(b"short")).await.unwrap();
        let err = receiver
            .recv_within::<Request>(Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(err, RecvError::Failed(ChannelError::Short { seq: 0 })),
            "{err}"
        );
    }

    #[tokio::test]
    async fn recv_within_keeps_a_frame_that_arrives_in_parts_across_timeouts() {
        use tokio::io::AsyncWriteExt;
        // Tried: half a frame, a timeout, then the rest: the half must not be lost.
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut receiver: Channel<DuplexStream> = Channel::new(framed(a), S2C, C2S);
        let mut payload = Packet::Control(Request::Ping).encode(TAG_LEN);
        Direction::new(C2S).seal(&mut payload);
        let mut wire = (payload.len() as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(&payload);
        let (head, tail) = wire.split_at(wire.len() / 2);
        b.write_all(head).await.unwrap();
        let short = Duration::from_millis(20);
        let err = receiver.recv_within::<Request>(short).await.unwrap_err();
        assert!(matches!(err, RecvError::Idle(_)), "{err}");
        b.write_all(tail).await.unwrap();
        let got = receiver.recv_within::<Request>(short * 50).await.unwrap();
        assert_eq!(got, Packet::Control(Request::Ping));
    }

    #[tokio::test(start_paused = true)]
    async fn send_within_gives_up_on_a_peer_that_takes_nothing() {
        // A 64-byte pipe nobody reads: the first frame cannot be written whole.
        let (a, _b) = tokio::io::duplex(64);
        let mut sender: Channel<DuplexStream> = Channel::new(framed(a), C2S, S2C);
        let limit = Duration::from_secs(5);
        let big = Packet::<Request>::Output(Stream::Stdout, Bytes::from(vec![0; 4096]));
        let err = sender.send_within(&big, limit).await.unwrap_err();
        assert!(matches!(err, SendError::Stalled(l) if l == limit), "{err}");
    }

    #[tokio::test]
    async fn send_within_delivers_and_reports_a_broken_connection_as_failed() {
        let (mut client, mut server) = pair();
        let limit = Duration::from_secs(5);
        client
            .send_within(&Packet::Control(Request::Ping), limit)
            .await
            .unwrap();
        let got: Packet<Request> = server.recv().await.unwrap().unwrap();
        assert_eq!(got, Packet::Control(Request::Ping));
        drop(server);
        let err = client
            .send_within(&Packet::Control(Request::Ping), limit)
            .await
            .unwrap_err();
        assert!(
            matches!(err, SendError::Failed(ChannelError::Transport(_))),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_oversized_length_prefix_is_reported_as_such() {
        use tokio::io::AsyncWriteExt;
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut receiver: Channel<DuplexStream> = Channel::new(framed(a), S2C, C2S);
        b.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let err = receiver.recv::<Request>().await.unwrap_err();
        assert!(matches!(err, ChannelError::Oversized { .. }), "{err}");
    }
}
