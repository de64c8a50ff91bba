//! One controller connection: authenticate, then route each request to [`crate::request`]
//! until the controller closes, goes quiet for too long, or the agent shuts down.
//!
//! Every way a connection can go wrong (bad handshake, garbage, an oversized or half frame,
//! a stalled peer) ends here with one log line in the connection's span and a closed socket.
//! Nothing a peer sends before it authenticates is acted upon. What a request does, and how
//! it answers, is the request's own business.

use common::auth;
use common::channel::{Channel, RecvError};
use common::frame;
use common::message::Request;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::ConnectionError;
use crate::request::Action;

/// Serves one connection to its end. Never returns an error: there is nobody to return it
/// to, so the reason is logged instead.
pub async fn serve(stream: TcpStream, config: &Config, shutdown: &CancellationToken) {
    // Output lines are small and latency matters more than packing them.
    let _ = stream.set_nodelay(true);
    let handshake = auth::server_handshake(frame::framed(stream), &config.key);
    let mut channel = match tokio::time::timeout(config.handshake_timeout, handshake).await {
        Err(_) => {
            tracing::warn!(
                timeout_s = config.handshake_timeout.as_secs(),
                "handshake timed out, dropping connection"
            );
            return;
        }
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "handshake failed, dropping connection");
            return;
        }
        Ok(Ok(channel)) => channel,
    };
    tracing::debug!("authenticated");
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
