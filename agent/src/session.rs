//! One controller connection: the TLS handshake, the operator's key checked against
//! `authorized_keys`, then each request checked against that key's `permit=` and routed to
//! [`crate::request`] until the controller closes, goes quiet for too long, or the agent
//! shuts down.
//!
//! Every way a connection can go wrong (bad handshake, garbage, an oversized or half frame,
//! a stalled peer) ends here with a closed socket and a log line in the connection's span;
//! for a failed handshake that line may be folded into a summary (see
//! [`crate::failure_report`]), because anyone can cause those. Nothing a peer sends before
//! it authenticates is acted upon. What a request does, and how it answers, is the request's
//! own business. How many connections may be in the handshake, or in a session, is the
//! server's.

use std::net::SocketAddr;
use std::time::Duration;

use common::channel::RecvError;
use common::handshake::{self, HandshakeError as TlsHandshakeError};
use common::identity::authorized_keys::Denied;
use common::message::{Packet, Reply, Request};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::connection::{Connection, Operator};
use crate::error::ConnectionError;
use crate::failure_report::FailureReport;
use crate::request::Action;
use crate::startups::{Eviction, Startup};

/// Why a connection did not get through the handshake.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer did not finish the handshake within the handshake timeout.
    #[error("handshake timed out after {}s", .0.as_secs())]
    TimedOut(Duration),
    /// The peer broke the TLS handshake or did not prove a key.
    #[error(transparent)]
    Tls(#[from] TlsHandshakeError),
    /// The key it proved may not connect (authorized_keys, from=).
    #[error("operator key refused: {0}")]
    Denied(#[from] Denied),
    /// A newer unauthenticated connection took this one's place.
    #[error(transparent)]
    Evicted(#[from] Eviction),
}

/// Runs the handshake on a new connection and checks the key the client proved against
/// `authorized_keys`. `None` when either failed (reported to `failures`; a refused key is
/// told why first). All of it, the refusal included, counts as the connection's startup:
/// anyone can make a key and finish a handshake, so a refused connection must not outlive
/// the handshake timeout or escape the startups' limits. The connection's place among the
/// startups is given up when this returns, before the caller waits for a session slot.
pub async fn authenticate(
    stream: TcpStream,
    peer: SocketAddr,
    config: &Config,
    mut startup: Startup,
    failures: &FailureReport,
) -> Option<(Connection, Operator)> {
    // Output lines are small and latency matters more than packing them.
    let _ = stream.set_nodelay(true);
    let admitted = admit(stream, peer, config);
    let outcome = tokio::select! {
        eviction = startup.evicted() => Err(HandshakeError::Evicted(eviction)),
        done = tokio::time::timeout(config.handshake_timeout, admitted) => match done {
            Err(_) => Err(HandshakeError::TimedOut(config.handshake_timeout)),
            Ok(result) => result,
        },
    };
    drop(startup);
    match outcome {
        Ok((channel, operator)) => {
            tracing::Span::current().record("operator", operator.fingerprint());
            tracing::debug!("authenticated");
            Some((channel, operator))
        }
        Err(err) => {
            failures.record(peer, &err);
            None
        }
    }
}

/// The handshake, then the operator's key checked against `authorized_keys` and the peer's
/// address; a refused key is told why before the connection closes.
async fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    config: &Config,
) -> Result<(Connection, Operator), HandshakeError> {
    let (mut channel, key) = handshake::accept(stream, config.tls.clone()).await?;
    let authorized = config.authorized_keys.current();
    match authorized.authorize(&key, peer.ip()) {
        Ok(entry) => Ok((channel, Operator::new(entry))),
        Err(denied) => {
            let reply = Packet::Control(Reply::Denied {
                message: denied.to_string(),
            });
            if channel.send(&reply).await.is_ok() {
                channel.close_gracefully(config.handshake_timeout).await;
            }
            Err(HandshakeError::Denied(denied))
        }
    }
}

/// Serves an authenticated connection to its end. Never returns an error: there is nobody
/// to return it to, so the reason is logged instead.
pub async fn serve(
    mut channel: Connection,
    operator: &Operator,
    config: &Config,
    shutdown: &CancellationToken,
) {
    match answer_requests(&mut channel, operator, config, shutdown).await {
        Ok(()) => tracing::debug!("connection closed"),
        Err(reason) => tracing::warn!(%reason, "dropping connection"),
    }
}

/// Routes requests until the controller closes the connection or the agent shuts down.
async fn answer_requests(
    channel: &mut Connection,
    operator: &Operator,
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<(), ConnectionError> {
    loop {
        let packet = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            received = channel.recv_within::<Request>(config.idle_timeout) => match received {
                Ok(packet) => packet,
                Err(RecvError::Closed) => return Ok(()),
                Err(RecvError::Idle(limit)) => return Err(ConnectionError::Idle(limit)),
                Err(RecvError::Failed(err)) => return Err(err.into()),
            },
        };
        match Action::from_packet(packet)? {
            Some(action) if !operator.permits(action.permit()) => {
                let message = operator.refusal(action.permit());
                tracing::warn!(%message, "request refused by permit=");
                let reply = Packet::Control(Reply::Denied { message });
                channel.send_within(&reply, config.idle_timeout).await?;
            }
            Some(action) => action.apply(channel, config, shutdown).await?,
            None => tracing::debug!("cancel with nothing running"),
        }
    }
}
