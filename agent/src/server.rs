//! The accept loop: one task per connection, bounds on how many are in the handshake and how
//! many are served at once, and a graceful stop that cancels every session (and so kills
//! every running command).
//!
//! The two bounds are separate pools, so unauthenticated peers can never take a slot an
//! authenticated session needs. A new connection is always accepted and enters the
//! handshake pool ([`crate::startups`], which drops an older startup if that pool is full);
//! only after it has authenticated does it wait for one of the `--max-connections` session
//! slots. Accepting never waits for either pool, so a flood of idle connections costs the
//! agent at most `--max-startups` sockets and cannot hold up a controller's connect.
//!
//! A connection's failure is its own: it is logged in the connection's span by [`session`]
//! and never reaches this loop. Shaped after mini-redis's `Listener::run`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::Config;
use crate::failure_report::FailureReport;
use crate::session;
use crate::startups::{Startup, Startups};

/// Accepts connections until `shutdown` is cancelled, then waits for the sessions to stop
/// their commands and finish.
pub async fn serve(listener: TcpListener, config: Arc<Config>, shutdown: CancellationToken) {
    let shared = Arc::new(Shared {
        sessions: Semaphore::new(config.max_connections),
        failures: FailureReport::default(),
        config,
        shutdown,
    });
    let startups = Startups::new(shared.config.startup_limits);
    let tasks = TaskTracker::new();
    let reporter = shared.clone();
    tasks.spawn(async move {
        reporter
            .failures
            .flush_every_interval(&reporter.shutdown)
            .await
    });
    let next_conn_id = AtomicU64::new(1);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
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
        let startup = startups.admit(peer.ip(), conn_id);
        let span = tracing::info_span!("conn", %peer, conn_id, operator = tracing::field::Empty);
        tasks.spawn(
            shared
                .clone()
                .run_connection(stream, peer, startup)
                .instrument(span),
        );
    }
    drop(listener);
    tasks.close();
    let bound = shared.config.kill_grace + Duration::from_secs(2);
    if tokio::time::timeout(bound, tasks.wait()).await.is_err() {
        tracing::warn!(tasks = tasks.len(), "sessions still running at shutdown");
    }
    shared.failures.flush();
}

/// What every connection task reads.
struct Shared {
    config: Arc<Config>,
    /// One permit per authenticated session (`--max-connections`).
    sessions: Semaphore,
    failures: FailureReport,
    shutdown: CancellationToken,
}

impl Shared {
    /// One connection: the handshake, then a session slot, then the session.
    async fn run_connection(
        self: Arc<Shared>,
        stream: TcpStream,
        peer: SocketAddr,
        startup: Startup,
    ) {
        let authenticate =
            session::authenticate(stream, peer, &self.config, startup, &self.failures);
        let (channel, operator) = tokio::select! {
            // A connection still in its handshake has been asked nothing: just close it.
            _ = self.shutdown.cancelled() => return,
            authenticated = authenticate => match authenticated {
                Some(authenticated) => authenticated,
                None => return,
            },
        };
        // Only key holders get here, so waiting (instead of dropping) is safe; the
        // controller's first request waits unread in the socket meanwhile.
        let _permit = tokio::select! {
            _ = self.shutdown.cancelled() => return,
            permit = self.sessions.acquire() => permit.expect("the semaphore is never closed"),
        };
        session::serve(channel, &operator, &self.config, &self.shutdown).await;
    }
}
