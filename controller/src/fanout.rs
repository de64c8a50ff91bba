//! Runs one job per target concurrently, at most `forks` in flight, and collects every
//! host's outcome in target order.
//!
//! Tasks are cheap (a few KiB each), so all of them are spawned at once and each waits for a
//! permit; with 5,000 hosts that is 5,000 parked tasks, not 5,000 threads. A job that panics
//! becomes that host's `error` outcome: one host can never take the others down.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::inventory::Host;
use crate::outcome::{HostOutcome, Status};

/// Runs `job(index, host)` for every target and returns the outcomes in target order.
pub async fn fan_out<F, Fut>(targets: &[Host], forks: usize, job: F) -> Vec<HostOutcome>
where
    F: Fn(usize, Host) -> Fut,
    Fut: Future<Output = HostOutcome> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(forks.max(1)));
    let mut tasks = JoinSet::new();
    let mut index_of_task = std::collections::HashMap::with_capacity(targets.len());
    for (index, host) in targets.iter().enumerate() {
        let span = tracing::info_span!("host", host = %host.name, addr = %host.endpoint());
        let work = job(index, host.clone());
        let permits = permits.clone();
        let handle = tasks.spawn(
            async move {
                let _permit = permits.acquire_owned().await.expect("never closed");
                let outcome = work.await;
                tracing::debug!(status = outcome.status.as_str(), "host done");
                outcome
            }
            .instrument(span),
        );
        index_of_task.insert(handle.id(), index);
    }

    let mut outcomes: Vec<Option<HostOutcome>> = vec![None; targets.len()];
    while let Some(joined) = tasks.join_next_with_id().await {
        let (id, outcome) = match joined {
            Ok((id, outcome)) => (id, outcome),
            Err(err) => {
                let why = format!("internal error in this host's task: {err}");
                (
                    err.id(),
                    HostOutcome::failure(Status::Error, why, Duration::ZERO),
                )
            }
        };
        outcomes[index_of_task[&id]] = Some(outcome);
    }
    outcomes
        .into_iter()
        .map(|outcome| outcome.expect("every task reported"))
        .collect()
}
