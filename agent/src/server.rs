//! The accept loop: one task per connection, a bound on how many run at once, and a graceful
//! stop that cancels every session (and so kills every running command).
//!
//! A connection's failure is its own: it is logged in the connection's span by [`session`]
//! and never reaches this loop. Shaped after mini-redis's `Listener::run`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::Config;
use crate::session;

/// Accepts connections until `shutdown` is cancelled, then waits for the sessions to stop
/// their commands and finish.
pub async fn serve(listener: TcpListener, config: Arc<Config>, shutdown: CancellationToken) {
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let sessions = TaskTracker::new();
    let next_conn_id = AtomicU64::new(1);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = limit.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Usually EMFILE or ECONNABORTED: transient, so back off and go on.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let conn_id = next_conn_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("conn", %peer, conn_id);
        let config = config.clone();
        let shutdown = shutdown.clone();
        sessions.spawn(
            async move {
                session::serve(stream, &config, &shutdown).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
    drop(listener);
    sessions.close();
    let bound = config.kill_grace + Duration::from_secs(2);
    if tokio::time::timeout(bound, sessions.wait()).await.is_err() {
        tracing::warn!(
            sessions = sessions.len(),
            "sessions still running at shutdown"
        );
    }
}
