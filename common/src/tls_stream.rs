//! A TLS stream over rustls's unbuffered connection: records are read from the socket in
//! large pieces into one buffer of ours and decrypted there, in place, and the plaintext is
//! copied once, into the caller's buffer. tokio-rustls's stream, which this replaces under
//! `Channel`, reads 4–18 KiB at a time and copies every byte twice more (rustls's
//! plaintext queue, then the caller). `common/examples/record_cost.rs` measures the
//! difference. The handshake, the record layer, alerts and close_notify are rustls's;
//! this module only moves bytes between the socket, rustls and the caller.
//!
//! Reads and writes go through one object, never at the same time (`Channel` owns it and
//! takes `&mut` for both), as with tokio-rustls.

use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use rustls::client::ClientConnectionData;
use rustls::client::UnbufferedClientConnection;
use rustls::server::ServerConnectionData;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::CommonState;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest TLS record on the wire: 16 KiB of data, 2 KiB of expansion, the header.
/// The receive buffer holds one read plus one such record left over from the last read.
/// It exists only while the connection has bytes in it or is reading: an idle connection
/// holds none, so thousands of them (ctl's hosts, or a flood at the agent) cost nothing.
const MAX_RECORD: usize = 18 * 1024 + 5;
/// How much one read asks for on a side that receives bulk data from one peer at a time
/// (the agent, receiving pushes).
pub const BULK_READ_SIZE: usize = 256 * 1024;
/// How much one read asks for on a side that may receive from hundreds of peers at once
/// (ctl, receiving output).
pub const FAN_IN_READ_SIZE: usize = 16 * 1024;
/// The most encrypted output held for the socket before a write waits for it, and the most
/// plaintext one write takes (rustls's own buffers default to the same).
const OUTGOING_LIMIT: usize = 64 * 1024;

/// `room` bytes of `buf` from `end` on, growing it (zeroing only what is new) if needed.
fn spare(buf: &mut Vec<u8>, end: usize, room: usize) -> &mut [u8] {
    if buf.len() < end + room {
        buf.resize(end + room, 0);
    }
    &mut buf[end..end + room]
}

/// The two kinds of unbuffered connection, as this stream drives them.
pub trait Unbuffered {
    /// The side's connection data.
    type Data;
    /// One pass of the connection's state machine over `incoming`.
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
    /// ALPN, the peer's certificates, whether it is handshaking.
    fn common(&self) -> &CommonState;
}

impl Unbuffered for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
    fn common(&self) -> &CommonState {
        self
    }
}

impl Unbuffered for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
    fn common(&self) -> &CommonState {
        self
    }
}

/// What to do if the connection is writable.
#[derive(Clone, Copy)]
enum Action<'a> {
    Nothing,
    Encrypt(&'a [u8]),
    CloseNotify,
}

/// What one step of the connection's state machine left us with.
enum Step {
    /// Something changed (a record encoded, a record's plaintext found): step again.
    Progress,
    /// Nothing can happen before more bytes arrive from the peer.
    NeedRead,
    /// The handshake is over and the connection may encrypt (what was asked for was done
    /// if `wanted` was given).
    Writable,
    /// The peer sent close_notify.
    PeerClosed,
}

/// A TLS connection over `io`.
pub struct TlsStream<IO, C> {
    io: IO,
    conn: C,
    incoming: Box<[u8]>,
    read_size: usize,
    /// `incoming[begin..used]` is what rustls has not told us to discard yet.
    begin: usize,
    used: usize,
    /// Decrypted application data waiting in `incoming`, and how far `begin` moves once it
    /// has been read.
    plain: Range<usize>,
    discard_after_plain: usize,
    /// Plaintext taken out of `incoming` so that a write could go ahead (rare: a request
    /// arriving while we answer).
    stash: Vec<u8>,
    /// Encrypted bytes for the peer: `outgoing[sent..end]` are not written yet. The vector
    /// only grows (to at most two writes' worth), so it is zeroed once, not per write.
    outgoing: Vec<u8>,
    end: usize,
    sent: usize,
    peer_closed: bool,
    /// close_notify is queued.
    closing: bool,
}

impl<IO, C: Unbuffered> TlsStream<IO, C> {
    /// A stream over `io` for `conn`, reading up to `read_size` bytes at a time.
    pub fn new(io: IO, conn: C, read_size: usize) -> Self {
        TlsStream {
            io,
            conn,
            incoming: Box::default(),
            read_size,
            begin: 0,
            used: 0,
            plain: 0..0,
            discard_after_plain: 0,
            stash: Vec::new(),
            outgoing: Vec::new(),
            end: 0,
            sent: 0,
            peer_closed: false,
            closing: false,
        }
    }

    /// The connection's state: ALPN, the peer's certificates, whether it is handshaking.
    pub fn common(&self) -> &CommonState {
        self.conn.common()
    }

    /// One call into rustls; `action` is carried out if the connection is writable.
    fn step(&mut self, action: Action<'_>) -> io::Result<Step> {
        debug_assert!(
            self.plain.is_empty(),
            "plaintext must be read before stepping"
        );
        // Where the buffer starts, to turn a record's payload back into a range of it.
        let base = self.incoming.as_ptr() as usize;
        let UnbufferedStatus { discard, state } =
            self.conn.process(&mut self.incoming[self.begin..self.used]);
        let state = match state {
            Ok(state) => state,
            Err(err) => {
                self.begin += discard;
                self.encode_alert();
                return Err(io::Error::new(io::ErrorKind::InvalidData, err));
            }
        };
        let step = match state {
            ConnectionState::ReadTraffic(mut traffic) => match traffic.next_record() {
                Some(record) => {
                    let record =
                        record.map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
                    let at = (record.payload.as_ptr() as usize).wrapping_sub(base);
                    let in_place = at < self.used && at + record.payload.len() <= self.used;
                    if !in_place || record.payload.is_empty() {
                        // Plaintext rustls held on its own (data that came with the
                        // handshake): copied out, the rare way.
                        self.stash.extend_from_slice(record.payload);
                        self.begin += discard + record.discard;
                        return Ok(Step::Progress);
                    }
                    self.plain = at..at + record.payload.len();
                    self.discard_after_plain = discard + record.discard;
                    return Ok(Step::Progress);
                }
                None => Step::Progress,
            },
            ConnectionState::EncodeTlsData(mut encode) => {
                let mut room = 16 * 1024;
                loop {
                    match encode.encode(spare(&mut self.outgoing, self.end, room)) {
                        Ok(n) => {
                            self.end += n;
                            break;
                        }
                        Err(EncodeError::InsufficientSize(InsufficientSizeError {
                            required_size,
                        })) => room = required_size,
                        Err(EncodeError::AlreadyEncoded) => break,
                    }
                }
                Step::Progress
            }
            // Queued in `outgoing`, which every poll flushes before it reads.
            ConnectionState::TransmitTlsData(transmit) => {
                transmit.done();
                Step::Progress
            }
            ConnectionState::BlockedHandshake => Step::NeedRead,
            ConnectionState::WriteTraffic(mut traffic) => {
                let mut room = match action {
                    Action::Encrypt(data) => data.len() + data.len() / 64 + 1024,
                    _ => 64,
                };
                loop {
                    let out = spare(&mut self.outgoing, self.end, room);
                    let done = match action {
                        Action::Nothing => Ok(0),
                        Action::Encrypt(data) => traffic.encrypt(data, out),
                        Action::CloseNotify => traffic.queue_close_notify(out),
                    };
                    match done {
                        Ok(n) => {
                            self.end += n;
                            break;
                        }
                        Err(EncryptError::InsufficientSize(InsufficientSizeError {
                            required_size,
                        })) => room = required_size,
                        Err(EncryptError::EncryptExhausted) => {
                            return Err(io::Error::other("TLS encryption exhausted"));
                        }
                    }
                }
                Step::Writable
            }
            ConnectionState::PeerClosed | ConnectionState::Closed => Step::PeerClosed,
            // No early data is accepted, and the state is non-exhaustive.
            _ => Step::NeedRead,
        };
        self.begin += discard;
        Ok(step)
    }
}

impl<IO, C: Unbuffered> TlsStream<IO, C> {
    /// After an error, the alert rustls queued for the peer (a refused certificate, say),
    /// encoded into `outgoing` so that the caller can still send it.
    fn encode_alert(&mut self) {
        // One call: it hands out the alert rustls queued, before it would look at any
        // input again (which, after an error, it must not).
        let status = self.conn.process(&mut self.incoming[self.begin..self.used]);
        if let Ok(ConnectionState::EncodeTlsData(mut encode)) = status.state {
            let out = spare(&mut self.outgoing, self.end, 64);
            self.end += encode.encode(out).unwrap_or(0);
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin, C: Unbuffered + Unpin> TlsStream<IO, C> {
    /// Writes `outgoing` to the socket; ready once all of it is written.
    fn poll_flush_outgoing(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.end {
            let pending = &self.outgoing[self.sent..self.end];
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.sent = 0;
        self.end = 0;
        Poll::Ready(Ok(()))
    }

    /// Reads more of the peer's bytes into `incoming`; `Ok(false)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if self.begin > 0 {
            self.incoming.copy_within(self.begin..self.used, 0);
            self.used -= self.begin;
            self.begin = 0;
        }
        if self.incoming.is_empty() {
            self.incoming = vec![0; self.read_size + MAX_RECORD].into_boxed_slice();
        }
        let room = (self.incoming.len() - self.used).min(self.read_size);
        if room == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a TLS record larger than the receive buffer",
            )));
        }
        let mut buf = ReadBuf::new(&mut self.incoming[self.used..self.used + room]);
        let polled = Pin::new(&mut self.io).poll_read(cx, &mut buf);
        let n = buf.filled().len();
        if polled.is_pending() && self.used == 0 {
            // Idle: give the buffer back until bytes arrive.
            self.incoming = Box::default();
        }
        ready!(polled)?;
        self.used += n;
        Poll::Ready(Ok(n > 0))
    }

    /// Moves pending plaintext out of `incoming` into `stash`, so that rustls may be stepped.
    fn stash_plain(&mut self) {
        if !self.plain.is_empty() {
            self.stash
                .extend_from_slice(&self.incoming[self.plain.clone()]);
            self.plain = 0..0;
            self.begin += self.discard_after_plain;
        }
    }

    /// Drives the handshake to its end (both flights sent).
    pub fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_flush_outgoing(cx))?;
            if !self.conn.common().is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            self.stash_plain();
            let step = match self.step(Action::Nothing) {
                Ok(step) => step,
                Err(err) => {
                    // Best effort: the alert goes if the socket takes it now.
                    let _ = self.poll_flush_outgoing(cx);
                    return Poll::Ready(Err(err));
                }
            };
            match step {
                Step::Progress => {}
                Step::Writable => {
                    if !self.conn.common().is_handshaking() {
                        continue;
                    }
                    if !ready!(self.poll_fill(cx))? {
                        return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                    }
                }
                Step::NeedRead => {
                    if !ready!(self.poll_fill(cx))? {
                        return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                    }
                }
                Step::PeerClosed => {
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin, C: Unbuffered + Unpin> AsyncRead for TlsStream<IO, C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.stash.is_empty() {
                let n = buf.remaining().min(this.stash.len());
                buf.put_slice(&this.stash[..n]);
                this.stash.drain(..n);
                return Poll::Ready(Ok(()));
            }
            if !this.plain.is_empty() {
                let n = buf.remaining().min(this.plain.len());
                buf.put_slice(&this.incoming[this.plain.start..this.plain.start + n]);
                this.plain.start += n;
                if this.plain.is_empty() {
                    this.plain = 0..0;
                    this.begin += this.discard_after_plain;
                }
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            // What rustls wants sent (a key update, an alert, our own output not yet
            // taken by the socket) goes out as far as the socket takes it; reading does not
            // wait for it, or two peers that both write could wait for each other.
            let _ = this.poll_flush_outgoing(cx)?;
            match this.step(Action::Nothing)? {
                Step::Progress => {}
                Step::PeerClosed => this.peer_closed = true,
                Step::NeedRead | Step::Writable => {
                    if !ready!(this.poll_fill(cx))? {
                        // The peer closed the socket without close_notify.
                        return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                    }
                }
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin, C: Unbuffered + Unpin> AsyncWrite for TlsStream<IO, C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Bound what waits for the socket: one record batch at a time.
        if this.end - this.sent >= OUTGOING_LIMIT {
            ready!(this.poll_flush_outgoing(cx))?;
        }
        let data = &data[..data.len().min(OUTGOING_LIMIT)];
        loop {
            this.stash_plain();
            match this.step(Action::Encrypt(data))? {
                Step::Writable => break,
                Step::Progress => {}
                Step::PeerClosed => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                Step::NeedRead => {
                    ready!(this.poll_flush_outgoing(cx))?;
                    if !ready!(this.poll_fill(cx))? {
                        return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                    }
                }
            }
        }
        // Start sending; what the socket does not take now goes with the next flush.
        let _ = this.poll_flush_outgoing(cx)?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_flush_outgoing(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closing {
            loop {
                this.stash_plain();
                match this.step(Action::CloseNotify)? {
                    Step::Writable => break,
                    Step::Progress => {}
                    // Nothing to close cleanly: the peer is gone or never finished.
                    Step::PeerClosed | Step::NeedRead => break,
                }
            }
            this.closing = true;
        }
        ready!(this.poll_flush_outgoing(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::keys::Identity;
    use crate::tls::{client_config, server_config, Credentials, PresentedKey};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Both sides' settings, each with a fresh key, the client trusting any host key.
    fn configs() -> (Arc<rustls::ClientConfig>, Arc<rustls::ServerConfig>) {
        let operator = Credentials::new(Arc::new(Identity::generate("op"))).unwrap();
        let host = Credentials::new(Arc::new(Identity::generate("host"))).unwrap();
        let client =
            client_config(&operator, Arc::new(|_: &_| true), PresentedKey::default()).unwrap();
        (client, server_config(&host).unwrap())
    }

    #[tokio::test]
    async fn serves_a_tokio_rustls_client_and_sends_close_notify() {
        // Tried: our server against tokio-rustls's client: 3 MiB each way, then our side
        // shuts down, and the client sees a clean end (close_notify), not a cut.
        let (client_cfg, server_cfg) = configs();
        let (a, b) = tokio::io::duplex(1 << 16);
        let data: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 253) as u8).collect();
        let expect = data.clone();
        let client = tokio::spawn(async move {
            let name =
                rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
            let mut tls = tokio_rustls::TlsConnector::from(client_cfg)
                .connect(name, a)
                .await
                .unwrap();
            tls.write_all(&expect).await.unwrap();
            tls.flush().await.unwrap();
            let mut back = Vec::new();
            tls.read_to_end(&mut back).await.unwrap();
            assert!(back == expect);
        });
        let conn = UnbufferedServerConnection::new(server_cfg).unwrap();
        let mut tls = TlsStream::new(b, conn, BULK_READ_SIZE);
        std::future::poll_fn(|cx| tls.poll_handshake(cx))
            .await
            .unwrap();
        let mut got = vec![0u8; data.len()];
        tls.read_exact(&mut got).await.unwrap();
        assert!(got == data);
        tls.write_all(&got).await.unwrap();
        tls.shutdown().await.unwrap();
        client.await.unwrap();
    }

    #[tokio::test]
    async fn talks_to_tokio_rustls_both_ways_and_moves_bulk_data() {
        // Tried: our client against tokio-rustls's server, 8 MiB each way in odd-sized
        // writes, checked byte for byte.
        let (client_cfg, server_cfg) = configs();
        let (a, b) = tokio::io::duplex(1 << 16);
        let data: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
        let expect = data.clone();
        let server = tokio::spawn(async move {
            let mut tls = tokio_rustls::TlsAcceptor::from(server_cfg)
                .accept(b)
                .await
                .unwrap();
            let mut got = vec![0u8; expect.len()];
            tls.read_exact(&mut got).await.unwrap();
            assert!(got == expect);
            tls.write_all(&got).await.unwrap();
            tls.flush().await.unwrap();
        });
        let name = rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let conn = UnbufferedClientConnection::new(client_cfg, name).unwrap();
        let mut tls = TlsStream::new(a, conn, BULK_READ_SIZE);
        std::future::poll_fn(|cx| tls.poll_handshake(cx))
            .await
            .unwrap();
        for chunk in data.chunks(77_777) {
            tls.write_all(chunk).await.unwrap();
        }
        tls.flush().await.unwrap();
        let mut back = vec![0u8; data.len()];
        tls.read_exact(&mut back).await.unwrap();
        assert!(back == data);
        server.await.unwrap();
    }
}
