//! A connection's packets, once the TLS handshake is done ([`crate::handshake`]): each
//! [`Packet`] is one frame ([`crate::frame`]) inside the TLS stream, which encrypts,
//! authenticates and orders them. This layer only frames and decodes.
//!
//! Timeouts on a connection are written here once: [`Channel::send_within`] and
//! [`Channel::recv_within`] tell a silent or stalled peer, a clean close and a broken
//! channel apart by type ([`SendError`], [`RecvError`]), so callers only choose the limit
//! and what each outcome means to them.

use std::time::Duration;

use bytes::BytesMut;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::byte_budget::{ByteBudget, Charge};
use crate::frame::{Frames, ReadError};
use crate::message::{MessageError, Packet};

/// An ordered, bidirectional stream of [`Packet`]s over a secured byte stream.
pub struct Channel<T> {
    framed: Frames<T>,
    /// Frames received so far, to name a bad one.
    received: u64,
}

/// Why the channel could not send or receive; every one of these ends the connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The peer announced a frame longer than the limit.
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
    /// A frame whose content is not a valid packet.
    #[error("frame {index}: {source}")]
    Message {
        /// The frame's place among those received (0 for the first).
        index: u64,
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
    /// Packets over `framed`, a stream the handshake has secured.
    pub fn new(framed: Frames<T>) -> Channel<T> {
        Channel {
            framed,
            received: 0,
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
        self.framed
            .send(packet.encode(0).freeze())
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
        let frame = self.framed.next().await.map_err(ChannelError::from)?;
        frame.map(|frame| self.decode(frame)).transpose()
    }

    /// Closes our side (for TLS, `close_notify`, then FIN) and reads whatever the peer
    /// still sends until it closes too, for at most `limit`. Closing a socket that holds
    /// unread data resets the connection, and a reset can destroy the last packet we sent
    /// before the peer reads it: after a refusal, the peer must get to read why.
    pub async fn close_gracefully(mut self, limit: Duration) {
        let drain = async {
            if tokio::io::AsyncWriteExt::shutdown(self.framed.get_mut())
                .await
                .is_err()
            {
                return;
            }
            while let Ok(Some(_)) = self.framed.next().await {}
        };
        let _ = tokio::time::timeout(limit, drain).await;
    }

    /// Decodes one received frame.
    fn decode<C: DeserializeOwned>(&mut self, frame: BytesMut) -> Result<Packet<C>, ChannelError> {
        let index = self.received;
        self.received += 1;
        Packet::decode(frame.freeze()).map_err(|source| ChannelError::Message { index, source })
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
        let packet = self.decode(frame).map_err(RecvError::Failed)?;
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
    use crate::message::{Request, Stream};
    use bytes::Bytes;
    use tokio::io::DuplexStream;

    fn pair() -> (Channel<DuplexStream>, Channel<DuplexStream>) {
        let (a, b) = tokio::io::duplex(1 << 20);
        (Channel::new(framed(a)), Channel::new(framed(b)))
    }

    /// A channel on one end and the raw framed stream on the other, to play a broken peer.
    fn channel_and_raw() -> (Channel<DuplexStream>, Frames<DuplexStream>) {
        let (a, b) = tokio::io::duplex(1 << 20);
        (Channel::new(framed(a)), framed(b))
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
    async fn a_frame_that_is_not_a_packet_is_named_by_its_place() {
        // Tried: a good packet, then a frame with an unknown type byte.
        let (mut victim, mut raw) = channel_and_raw();
        raw.send(Packet::<Request>::Control(Request::Ping).encode(0).freeze())
            .await
            .unwrap();
        raw.send(Bytes::from_static(b"\x7fjunk")).await.unwrap();
        assert!(victim.recv::<Request>().await.unwrap().is_some());
        let err = victim.recv::<Request>().await.unwrap_err();
        assert!(
            matches!(err, ChannelError::Message { index: 1, .. }),
            "{err}"
        );
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
        raw.send(Bytes::from_static(b"\x09not a packet"))
            .await
            .unwrap();
        let err = receiver
            .recv_within::<Request>(Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                RecvError::Failed(ChannelError::Message { index: 0, .. })
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn recv_within_keeps_a_frame_that_arrives_in_parts_across_timeouts() {
        use tokio::io::AsyncWriteExt;
        // Tried: half a frame, a timeout, then the rest: the half must not be lost.
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut receiver: Channel<DuplexStream> = Channel::new(framed(a));
        let payload = Packet::Control(Request::Ping).encode(0);
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
        let mut sender: Channel<DuplexStream> = Channel::new(framed(a));
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
        let mut receiver: Channel<DuplexStream> = Channel::new(framed(a));
        b.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let err = receiver.recv::<Request>().await.unwrap_err();
        assert!(matches!(err, ChannelError::Oversized { .. }), "{err}");
    }
}
