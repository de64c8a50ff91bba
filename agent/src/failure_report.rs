//! Warnings about connections that failed their handshake, limited so that a flood of them
//! cannot flood the log: in each interval the first failure is logged as it happens (with
//! its connection's span), and the others only as one summary line at the end of the
//! interval, with their count and the last one's peer and reason.
//!
//! So there are at most two lines per interval, however many peers fail. What happens to a
//! failed connection is not decided here (see [`crate::session`]); this only reports it.
//! The counting ([`Tally`]) is kept apart from the logging so it can be tested without a
//! subscriber.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often the summary of suppressed warnings is written.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// The handshake failures of the current interval, shared by all connections.
#[derive(Debug, Default)]
pub struct FailureReport {
    tally: Mutex<Tally>,
}

impl FailureReport {
    /// Reports that the handshake with `peer` failed for `reason`; logs it at once if it is
    /// the first failure of the interval. Call it inside the connection's span.
    pub fn record(&self, peer: SocketAddr, reason: &dyn Display) {
        let first = self
            .tally
            .lock()
            .expect("no panics while locked")
            .record(peer, reason);
        if first {
            // The peer is also in the connection's span, but that span is info level and
            // so absent from a `-q` log.
            tracing::warn!(%peer, %reason, "handshake failed, dropping connection");
        }
    }

    /// Writes the summary of the failures not logged one by one since the last call, if any.
    pub fn flush(&self) {
        let summary = self.tally.lock().expect("no panics while locked").close();
        if let Some(Summary {
            failed,
            last_peer,
            last_reason,
        }) = summary
        {
            tracing::warn!(
                failed,
                interval_s = INTERVAL.as_secs(),
                last_peer = %last_peer,
                last_reason = %last_reason,
                "more handshakes failed in the last interval"
            );
        }
    }

    /// Writes the summary every [`INTERVAL`] until `shutdown`; the caller flushes once more
    /// after the last connection has ended.
    pub async fn flush_every_interval(&self, shutdown: &CancellationToken) {
        let first = tokio::time::Instant::now() + INTERVAL;
        let mut ticks = tokio::time::interval_at(first, INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => self.flush(),
            }
        }
    }
}

/// What happened in one interval.
#[derive(Debug, Default)]
struct Tally {
    logged_one: bool,
    suppressed: u64,
    last: Option<(SocketAddr, String)>,
}

/// The failures of an interval that were not logged one by one.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    failed: u64,
    last_peer: SocketAddr,
    last_reason: String,
}

impl Tally {
    /// Counts a failure; true when it is the first of the interval and should be logged.
    fn record(&mut self, peer: SocketAddr, reason: &dyn Display) -> bool {
        if !self.logged_one {
            self.logged_one = true;
            return true;
        }
        self.suppressed += 1;
        self.last = Some((peer, reason.to_string()));
        false
    }

    /// Ends the interval: the summary of what was suppressed in it, if anything was.
    fn close(&mut self) -> Option<Summary> {
        let tally = std::mem::take(self);
        let (last_peer, last_reason) = tally.last?;
        Some(Summary {
            failed: tally.suppressed,
            last_peer,
            last_reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn the_first_failure_of_an_interval_is_logged_and_the_rest_summed_up() {
        let mut tally = Tally::default();
        assert!(tally.record(peer(1), &"garbage"));
        for port in 2..=1000 {
            assert!(!tally.record(peer(port), &"timed out"));
        }
        assert_eq!(
            tally.close(),
            Some(Summary {
                failed: 999,
                last_peer: peer(1000),
                last_reason: "timed out".into()
            })
        );
        assert!(tally.record(peer(1001), &"again"), "a new interval");
    }

    #[test]
    fn an_interval_with_one_failure_or_none_has_no_summary() {
        let mut tally = Tally::default();
        assert_eq!(tally.close(), None);
        assert!(tally.record(peer(1), &"garbage"));
        assert_eq!(tally.close(), None);
    }
}
