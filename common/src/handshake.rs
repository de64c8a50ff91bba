//! Opening a connection: the TLS 1.3 handshake of [`crate::tls`], then a [`Channel`] over
//! it. `ctl` calls [`connect`], the agent [`accept`].
//!
//! `ctl` sends its first request right behind its side of the handshake, without waiting
//! for anything from the agent: a connection costs one round trip before the agent starts
//! working. The agent reads that request only after it has decided, against its
//! `authorized_keys`, that the key the client proved may make it.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::server::UnbufferedServerConnection;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::channel::{Channel, ChannelError};
use crate::frame::framed;
use crate::identity::keys::PublicKey;
use crate::message::{Packet, Request};
use crate::tls::{peer_key, ALPN};
use crate::tls_stream::{TlsStream, BULK_READ_SIZE, FAN_IN_READ_SIZE};

/// The client's side of a connection.
pub type ClientStream<T> = TlsStream<T, UnbufferedClientConnection>;
/// The agent's side of a connection.
pub type ServerStream<T> = TlsStream<T, UnbufferedServerConnection>;

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The TLS handshake failed: a key was refused, the peer sent something that is not
    /// TLS 1.3, or it refused us (an alert).
    #[error("TLS handshake failed: {0}")]
    Tls(rustls::Error),
    /// The peer speaks TLS but not this protocol (no ALPN `muster/3`).
    #[error(
        "the peer does not speak {} (another muster version, or not muster)",
        String::from_utf8_lossy(ALPN)
    )]
    WrongProtocol,
    /// The connection failed or closed during the handshake.
    #[error("connection lost during the handshake: {0}")]
    Transport(io::Error),
    /// The first request could not be sent.
    #[error("cannot send the first request: {0}")]
    FirstRequest(ChannelError),
}

impl HandshakeError {
    /// Tells the TLS errors the stream wraps in `io::Error` from the transport's own.
    fn from_io(err: io::Error) -> HandshakeError {
        if err
            .get_ref()
            .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            let inner = err.into_inner().expect("checked above");
            let tls = inner.downcast::<rustls::Error>().expect("checked above");
            return HandshakeError::Tls(*tls);
        }
        HandshakeError::Transport(err)
    }
}

/// The client's side: the handshake against the agent at `address` with `config` (our
/// identity and the host keys we accept, see [`crate::tls::client_config`]), then `first`,
/// if given, as the connection's first packet.
///
/// # Errors
/// [`HandshakeError`].
pub async fn connect<T: AsyncRead + AsyncWrite + Unpin>(
    io: T,
    config: Arc<ClientConfig>,
    address: IpAddr,
    first: Option<&Packet<Request>>,
) -> Result<Channel<ClientStream<T>>, HandshakeError> {
    let conn = UnbufferedClientConnection::new(config, ServerName::IpAddress(address.into()))
        .map_err(HandshakeError::Tls)?;
    let mut tls = TlsStream::new(io, conn, FAN_IN_READ_SIZE);
    std::future::poll_fn(|cx| tls.poll_handshake(cx))
        .await
        .map_err(HandshakeError::from_io)?;
    if tls.common().alpn_protocol() != Some(ALPN) {
        return Err(HandshakeError::WrongProtocol);
    }
    let mut channel = Channel::new(framed(tls));
    if let Some(first) = first {
        channel
            .send(first)
            .await
            .map_err(HandshakeError::FirstRequest)?;
    }
    Ok(channel)
}

/// The agent's side: the handshake with `config` (see [`crate::tls::server_config`]).
/// Returns the channel and the key the client proved, which the caller must authorize
/// before it reads a request.
///
/// # Errors
/// [`HandshakeError`].
pub async fn accept<T: AsyncRead + AsyncWrite + Unpin>(
    io: T,
    config: Arc<ServerConfig>,
) -> Result<(Channel<ServerStream<T>>, PublicKey), HandshakeError> {
    let conn = UnbufferedServerConnection::new(config).map_err(HandshakeError::Tls)?;
    let mut tls = TlsStream::new(io, conn, BULK_READ_SIZE);
    std::future::poll_fn(|cx| tls.poll_handshake(cx))
        .await
        .map_err(HandshakeError::from_io)?;
    let connection = tls.common();
    if connection.alpn_protocol() != Some(ALPN) {
        return Err(HandshakeError::WrongProtocol);
    }
    // The verifier makes a client key mandatory, so a finished handshake has one.
    let key =
        peer_key(connection).ok_or(HandshakeError::Tls(rustls::Error::NoCertificatesPresented))?;
    Ok((Channel::new(framed(tls)), key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::keys::Identity;
    use crate::message::Reply;
    use crate::tls::{client_config, server_config, Credentials, HostKeyCheck, PresentedKey};
    use std::net::Ipv4Addr;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn trusting(key: PublicKey) -> HostKeyCheck {
        Arc::new(move |presented: &PublicKey| *presented == key)
    }

    #[tokio::test]
    async fn both_keys_are_proved_and_the_first_request_arrives() {
        // Tried: an operator who trusts the agent's key connects with a pipelined ping;
        // the agent learns the operator's key, reads the ping, and its answer comes back.
        let (operator, host) = (
            Arc::new(Identity::generate("alice@ws1")),
            Arc::new(Identity::generate("agent@web1")),
        );
        let presented = PresentedKey::default();
        let client = client_config(
            &Credentials::new(Arc::clone(&operator)).unwrap(),
            trusting(host.public_key().clone()),
            presented.clone(),
        )
        .unwrap();
        let server = server_config(&Credentials::new(Arc::clone(&host)).unwrap()).unwrap();
        let (a, b) = tokio::io::duplex(1 << 16);
        let agent = tokio::spawn(async move {
            let (mut channel, key) = accept(b, server).await.unwrap();
            let first = channel.recv::<Request>().await.unwrap().unwrap();
            assert_eq!(first, Packet::Control(Request::Ping));
            let pong = Packet::Control(Reply::Pong {
                agent_version: "test".into(),
            });
            channel.send(&pong).await.unwrap();
            key
        });
        let ping = Packet::Control(Request::Ping);
        let mut channel = connect(a, client, LOCALHOST, Some(&ping)).await.unwrap();
        let answer = channel.recv::<Reply>().await.unwrap().unwrap();
        assert!(matches!(answer, Packet::Control(Reply::Pong { .. })));
        assert_eq!(&agent.await.unwrap(), operator.public_key());
        assert_eq!(presented.get().as_ref(), Some(host.public_key()));
    }

    #[tokio::test]
    async fn an_agent_whose_key_is_not_trusted_gets_nothing() {
        // Tried: a relay in the middle with a key of its own (the operator trusts another
        // key): the handshake fails on our side before the request is sent, and the key it
        // presented is kept for the message.
        let operator = Arc::new(Identity::generate("alice@ws1"));
        let (real, relay) = (
            Identity::generate("agent@web1"),
            Arc::new(Identity::generate("mallory")),
        );
        let presented = PresentedKey::default();
        let client = client_config(
            &Credentials::new(operator).unwrap(),
            trusting(real.public_key().clone()),
            presented.clone(),
        )
        .unwrap();
        let server = server_config(&Credentials::new(Arc::clone(&relay)).unwrap()).unwrap();
        let (a, b) = tokio::io::duplex(1 << 16);
        let agent = tokio::spawn(async move { accept(b, server).await.map(|(_, key)| key) });
        let ping = Packet::Control(Request::Ping);
        let err = connect(a, client, LOCALHOST, Some(&ping))
            .await
            .err()
            .expect("refused");
        assert!(
            matches!(
                err,
                HandshakeError::Tls(rustls::Error::InvalidCertificate(_))
            ),
            "{err:?}"
        );
        assert_eq!(presented.get().as_ref(), Some(relay.public_key()));
        assert!(
            agent.await.unwrap().is_err(),
            "the relay never gets a session"
        );
    }
}
