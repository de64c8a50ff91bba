//! Runs one job per target concurrently and collects every host's outcome in target order:
//! all at once (at most `forks` in flight), or as a rollout ([`Rollout`]: canaries first,
//! a sliding window of hosts, a failure budget after which no host starts).
//!
//! A host's job is made and spawned when the host starts, so a host that never starts
//! costs nothing and ends `skipped`. A job that panics becomes that host's `error`
//! outcome: one host can never take the others down.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::Instrument;

use crate::inventory::Host;
use crate::outcome::{HostOutcome, Status};
use crate::rollout::Rollout;

/// Runs `job(index, host)` for every target, at most `forks` at once, and returns the
/// outcomes in target order.
pub async fn fan_out<F, Fut>(targets: &[Host], forks: usize, job: F) -> Vec<HostOutcome>
where
    F: Fn(usize, Host) -> Fut,
    Fut: Future<Output = HostOutcome> + Send + 'static,
{
    fan_out_rolling(targets, forks, &Rollout::default(), job).await
}

/// As [`fan_out`], starting hosts as `rollout` says. Hosts it never starts (a canary
/// failed, or more hosts failed than `--max-fail` allows) end `skipped`.
pub async fn fan_out_rolling<F, Fut>(
    targets: &[Host],
    forks: usize,
    rollout: &Rollout,
    job: F,
) -> Vec<HostOutcome>
where
    F: Fn(usize, Host) -> Fut,
    Fut: Future<Output = HostOutcome> + Send + 'static,
{
    let n = targets.len();
    let order = rollout.order.arrange(n);
    let window = rollout.window(n, forks.max(1));
    let max_fail = rollout.max_fail.map(|limit| limit.of(n));
    let canaries = rollout.canary.min(n);

    let mut outcomes: Vec<Option<HostOutcome>> = vec![None; n];
    let mut tasks = JoinSet::new();
    let mut index_of_task = std::collections::HashMap::new();
    let mut next = 0; // position in `order` of the next host to start
    let mut failed = 0;
    let mut stopped: Option<&'static str> = None;
    let mut canaries_done = canaries == 0;
    loop {
        // Canaries run alone: nobody else starts until every one of them has ended.
        let may_start_until = if canaries_done { n } else { canaries };
        while stopped.is_none() && next < may_start_until && tasks.len() < window {
            let index = order[next];
            let host = &targets[index];
            let span = tracing::info_span!("host", host = %host.name, addr = %host.endpoint());
            let work = job(index, host.clone());
            let handle = tasks.spawn(
                async move {
                    let outcome = work.await;
                    tracing::debug!(status = outcome.status.as_str(), "host done");
                    outcome
                }
                .instrument(span),
            );
            index_of_task.insert(handle.id(), index);
            next += 1;
        }
        let Some(joined) = tasks.join_next_with_id().await else {
            break; // nothing in flight, and nothing more may start
        };
        let (id, outcome) = match joined {
            Ok((id, outcome)) => (id, outcome),
            Err(err) => {
                let why = format!("internal error in this host's task: {err}");
                let outcome = HostOutcome::failure(Status::Error, why, Duration::ZERO);
                (err.id(), outcome)
            }
        };
        if !outcome.is_ok() {
            failed += 1;
        }
        outcomes[index_of_task[&id]] = Some(outcome);
        // Checked after every host, before any other starts.
        if max_fail.is_some_and(|limit| failed > limit) {
            stopped.get_or_insert("more hosts failed than --max-fail allows");
        }
        if !canaries_done && next == canaries && tasks.is_empty() {
            canaries_done = true;
            if failed > 0 {
                stopped.get_or_insert("a canary host was not ok");
            }
        }
        if stopped.is_none() && next < n && !rollout.batch_wait.is_zero() {
            tokio::time::sleep(rollout.batch_wait).await;
        }
    }
    let why = stopped.unwrap_or("not started");
    outcomes
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or_else(|| {
                HostOutcome::failure(
                    Status::Skipped,
                    format!("not started: {why}"),
                    Duration::ZERO,
                )
            })
        })
        .collect()
}
