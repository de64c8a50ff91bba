//! The authenticated channel: what every frame looks like once the handshake is done.
//!
//! ```text
//! +----------------------+------------------------------+----------------------------+
//! | length: u32, BE      | payload (see `message`)      | tag: 32 bytes              |
//! +----------------------+------------------------------+----------------------------+
//!                          tag = HMAC-SHA256(direction key, seq: u64 BE || payload)
//! ```
//!
//! Each direction has its own session key (derived in [`crate::auth`]) and its own sequence
//! number, starting at 0 and counting every frame sent that way. The sequence number is not
//! sent: both sides count, so a dropped, replayed, reordered or reflected frame fails its tag
//! and the connection is closed. This is the one place that knows about tags, so encryption
//! can be added here later without touching the messages above or the framing below.

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::LengthDelimitedCodecError;

use crate::frame::FramedStream;
use crate::message::{MessageError, Packet};

/// Length of the HMAC-SHA256 tag at the end of every channel frame.
pub const TAG_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// An authenticated, ordered, bidirectional stream of [`Packet`]s.
pub struct Channel<T> {
    framed: FramedStream<T>,
    send: Direction,
    recv: Direction,
}

/// One direction's session key and frame counter.
struct Direction {
    mac: HmacSha256,
    seq: u64,
}

/// Why the channel could not send or receive; every one of these ends the connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The peer announced a frame longer than [`crate::frame::MAX_FRAME_LEN`].
    #[error("frame too large")]
    Oversized,
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

impl<T: AsyncRead + AsyncWrite + Unpin> Channel<T> {
    /// Starts the channel over an already-authenticated framed stream with the two session
    /// keys from the handshake.
    pub(crate) fn new(framed: FramedStream<T>, send_key: &[u8], recv_key: &[u8]) -> Channel<T> {
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
        let mut payload = packet.encode(TAG_LEN);
        let tag = self.send.tag(&payload);
        payload.extend_from_slice(&tag);
        self.send.seq += 1;
        self.framed
            .send(payload.freeze())
            .await
            .map_err(ChannelError::Transport)
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
        let Some(frame) = self.framed.next().await else {
            return Ok(None);
        };
        let frame = frame.map_err(classify_read_error)?;
        let payload = self.recv.verify(frame)?;
        let seq = self.recv.seq;
        self.recv.seq += 1;
        Packet::decode(payload)
            .map(Some)
            .map_err(|source| ChannelError::Message { seq, source })
    }
}

impl Direction {
    fn new(key: &[u8]) -> Direction {
        Direction {
            mac: HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length"),
            seq: 0,
        }
    }

    fn tag(&self, payload: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.mac.clone();
        mac.update(&self.seq.to_be_bytes());
        mac.update(payload);
        mac.finalize().into_bytes().into()
    }

    /// Checks the tag at the end of `frame` in constant time and returns the payload before it.
    fn verify(&self, mut frame: BytesMut) -> Result<Bytes, ChannelError> {
        let seq = self.seq;
        if frame.len() < TAG_LEN {
            return Err(ChannelError::Short { seq });
        }
        let tag = frame.split_off(frame.len() - TAG_LEN);
        let mut mac = self.mac.clone();
        mac.update(&seq.to_be_bytes());
        mac.update(&frame);
        mac.verify_slice(&tag)
            .map_err(|_| ChannelError::BadTag { seq })?;
        Ok(frame.freeze())
    }
}

/// Tells an oversized frame from other transport failures: both reach us as `io::Error`.
pub(crate) fn classify_read_error(err: std::io::Error) -> ChannelError {
    let oversized = err
        .get_ref()
        .is_some_and(|inner| inner.is::<LengthDelimitedCodecError>());
    if oversized {
        ChannelError::Oversized
    } else {
        ChannelError::Transport(err)
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
    fn channel_and_raw() -> (Channel<DuplexStream>, FramedStream<DuplexStream>) {
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
        let sender_side = Direction::new(C2S);
        let mut payload = Packet::Control(Request::Ping).encode(TAG_LEN);
        let tag = sender_side.tag(&payload);
        payload.extend_from_slice(&tag);
        payload[3] ^= 1;
        raw.send(payload.freeze()).await.unwrap();
        let err = receiver.recv::<Request>().await.unwrap_err();
        assert!(matches!(err, ChannelError::BadTag { seq: 0 }), "{err}");
    }

    #[tokio::test]
    async fn a_replayed_frame_fails_the_tag() {
        let (mut receiver, mut raw) = channel_and_raw();
        let sender_side = Direction::new(C2S);
        let mut payload = Packet::Control(Request::Ping).encode(TAG_LEN);
        payload.extend_from_slice(&sender_side.tag(&payload));
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
    async fn a_frame_shorter_than_a_tag_is_refused() {
        let (mut receiver, mut raw) = channel_and_raw();
        raw.send(Bytes::from_static(b"short")).await.unwrap();
        let err = receiver.recv::<Request>().await.unwrap_err();
        assert!(matches!(err, ChannelError::Short { seq: 0 }), "{err}");
    }

    #[tokio::test]
    async fn an_oversized_length_prefix_is_reported_as_such() {
        use tokio::io::AsyncWriteExt;
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut receiver: Channel<DuplexStream> = Channel::new(framed(a), S2C, C2S);
        b.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let err = receiver.recv::<Request>().await.unwrap_err();
        assert!(matches!(err, ChannelError::Oversized), "{err}");
    }
}
