//! One controller connection: authenticate, then route each request to [`crate::request`]
//! until the controller closes, goes quiet for too long, or the agent shuts down.
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

use common::auth::{self, AuthError};
use common::channel::{Channel, RecvError};
use common::frame;
use common::message::Request;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
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
    /// The peer broke the handshake or did not prove the key.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A newer unauthenticated connection took this one's place.
    #[error(transparent)]
    Evicted(#[from] Eviction),
}

/// Runs the handshake on a new connection. `None` when it failed (reported to `failures`).
/// The connection's place among the startups is given up when this returns, before the
/// caller waits for a session slot.
pub async fn authenticate(
    stream: TcpStream,
    peer: SocketAddr,
    config: &Config,
    mut startup: Startup,
    failures: &FailureReport,
) -> Option<Channel<TcpStream>> {
    // Output lines are small and latency matters more than packing them.
    let _ = stream.set_nodelay(true);
    let handshake = auth::server_handshake(frame::framed(stream), &config.key);
    let outcome = tokio::select! {
        eviction = startup.evicted() => Err(HandshakeError::Evicted(eviction)),
        done = tokio::time::timeout(config.handshake_timeout, handshake) => match done {
            Err(_) => Err(HandshakeError::TimedOut(config.handshake_timeout)),
            Ok(result) => result.map_err(HandshakeError::Auth),
        },
    };
    drop(startup);
    match outcome {
        Ok(channel) => {
            tracing::debug!("authenticated");
            Some(channel)
        }
        Err(err) => {
            failures.record(peer, &err);
            None
        }
    }
}

/// Serves an authenticated connection to its end. Never returns an error: there is nobody
/// to return it to, so the reason is logged instead.
pub async fn serve(mut channel: Channel<TcpStream>, config: &Config, shutdown: &CancellationToken) {
    match answer_requests(&mut channel, config, shutdown).await {
        Ok(()) => tracing::debug!("connection closed"),
        Err(reason) => tracing::warn!(%reason, "dropping connection"),
    }
}

/// Routes requests until the controller closes the connection or the agent shuts down.
async fn answer_requests(
    channel: &mut Channel<TcpStream>,
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
            Some(action) => action.apply(channel, config, shutdown).await?,
            None => tracing::debug!("cancel with nothing running"),
        }
    }
}
