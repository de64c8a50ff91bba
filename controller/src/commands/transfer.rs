//! `ctl push` and `ctl pull`: the same recipe around a different per-host job. Plan, log
//! the start, fan out with a progress display, print each host's result as it ends, the
//! summary, log the end.
//!
//! Facts flow one way. What is known before any host is contacted (a [`TransferPlan`])
//! makes the start record. Then the hosts' jobs run. Then what only that run could learn,
//! the SHA-256 of a pushed file (hashed while it was sent, see `source_hash`), is read by
//! the command that owns the file and handed to [`Transfer::end`] as a value.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use super::operation::LoggedOperation;
use super::Exit;
use crate::audit::record::{OperationEnd, TransferRecord};
use crate::audit::{Kind, Operation};
use crate::cli::{ConnectArgs, LogOptions, PullArgs, PushArgs, TargetArgs};
use crate::client::push::PushJob;
use crate::client::{self, Connector, Stop};
use crate::fanout::fan_out_rolling;
use crate::inventory::Host;
use crate::local_tree::LocalTree;
use crate::outcome::{HostOutcome, Status};
use crate::output;
use crate::rollout::Rollout;
use crate::transfer_progress::TransferProgress;

/// `ctl push`.
pub async fn push(args: PushArgs, log_options: &LogOptions) -> Result<Exit> {
    let tree = LocalTree::scan(&args.source, args.recursive, args.mode)?;
    let plan = TransferPlan {
        kind: Kind::Push,
        record: TransferRecord {
            source: args.source.display().to_string(),
            destination: args.dest.clone().unwrap_or_else(|| tree.name.clone()),
            recursive: args.recursive,
            bytes: Some(tree.total_bytes()),
            // Hashed while it is sent, so only the end record can have it.
            sha256: None,
            setid: tree.setid_files(),
        },
        json: args.json,
        bytes_per_host: tree.total_bytes(),
        rollout: args.rollout.rollout(),
    };
    let job = Arc::new(PushJob {
        dest: plan.record.destination.clone(),
        tree,
        mkdir: args.mkdir,
    });
    let transfer = Transfer::begin(&args.targets, &args.connect, log_options, plan)?;
    let outcomes = transfer
        .fan_out(|connector, host, progress, stop| {
            let job = job.clone();
            async move { client::push::push(&connector, &host, job, progress, &stop).await }
        })
        .await;
    // Every host's sender is done with the file, so its hash is as complete as it will get.
    let sent_sha256 = job.tree.single_file_sha256();
    Ok(transfer.end(&outcomes, sent_sha256))
}

/// `ctl pull`.
pub async fn pull(args: PullArgs, log_options: &LogOptions) -> Result<Exit> {
    let plan = TransferPlan {
        kind: Kind::Pull,
        record: TransferRecord {
            source: args.remote.clone(),
            destination: args.dest.display().to_string(),
            recursive: args.recursive,
            bytes: None,
            sha256: None,
            setid: Vec::new(),
        },
        json: args.json,
        bytes_per_host: 0,
        rollout: args.rollout.rollout(),
    };
    let transfer = Transfer::begin(&args.targets, &args.connect, log_options, plan)?;
    let (remote, recursive, dest) = (Arc::new(args.remote), args.recursive, args.dest);
    let outcomes = transfer
        .fan_out(move |connector, host, progress, stop| {
            let (remote, local_base) = (remote.clone(), dest.join(&host.name));
            async move {
                client::pull::pull(
                    &connector, &host, &remote, recursive, local_base, progress, &stop,
                )
                .await
            }
        })
        .await;
    // Each host's files are checked on their own; the transfer as a whole has no hash.
    Ok(transfer.end(&outcomes, None))
}

/// A push or pull as known before any host is contacted: what the start record and the
/// progress display need.
struct TransferPlan {
    kind: Kind,
    /// The transfer as the start record shows it.
    record: TransferRecord,
    json: bool,
    /// Known up front for a push; 0 for a pull, whose sizes arrive with the data.
    bytes_per_host: u64,
    rollout: Rollout,
}

/// A push or pull whose start record is written: its targets, its progress display, and
/// the transfer as the start record showed it, for the end record to complete.
struct Transfer {
    logged: LoggedOperation,
    record: TransferRecord,
    progress: Arc<TransferProgress>,
    json: bool,
    rollout: Rollout,
    started: Instant,
}

impl Transfer {
    /// Resolves the targets, writes the start record and starts the progress display.
    ///
    /// # Errors
    /// Anything that stops the transfer before any host is contacted (exit 2).
    fn begin(
        targets: &TargetArgs,
        connect: &ConnectArgs,
        log_options: &LogOptions,
        plan: TransferPlan,
    ) -> Result<Transfer> {
        let op = Operation::new_transfer(plan.kind, plan.record.clone());
        let logged = LoggedOperation::begin(targets, connect, log_options, op)?;
        let n_hosts = logged.targets.len();
        let total = plan.bytes_per_host * n_hosts as u64;
        let progress = Arc::new(TransferProgress::start(n_hosts, total, plan.json));
        Ok(Transfer {
            logged,
            record: plan.record,
            progress,
            json: plan.json,
            rollout: plan.rollout,
            started: Instant::now(),
        })
    }

    /// Runs `job` for every target, at most `--forks` at a time, printing each host's
    /// result as it ends; returns the outcomes in target order.
    async fn fan_out<F, Fut>(&self, job: F) -> Vec<HostOutcome>
    where
        F: Fn(Connector, Host, Arc<TransferProgress>, Stop) -> Fut,
        Fut: Future<Output = HostOutcome> + Send + 'static,
    {
        let logged = &self.logged;
        let json = self.json;
        let outcomes = fan_out_rolling(&logged.targets, logged.forks, &self.rollout, |_, host| {
            let name = host.name.clone();
            let work = job(
                logged.connector.clone(),
                host,
                self.progress.clone(),
                logged.stop.clone(),
            );
            let progress = self.progress.clone();
            async move {
                let outcome = work.await;
                let (line, to_stdout) = output::transfer_line(&name, &outcome, json);
                progress.host_finished(&outcome, &line, to_stdout);
                outcome
            }
        })
        .await;
        // Hosts never started get their line too.
        for (host, outcome) in logged.targets.iter().zip(&outcomes) {
            if outcome.status == Status::Skipped {
                let (line, to_stdout) = output::transfer_line(&host.name, outcome, json);
                self.progress.host_finished(outcome, &line, to_stdout);
            }
        }
        self.progress.finish();
        outcomes
    }

    /// Prints the summary, writes the end record and returns the exit status.
    /// `sent_sha256` is the SHA-256 of a pushed file, once every byte of it has been read.
    fn end(self, outcomes: &[HostOutcome], sent_sha256: Option<String>) -> Exit {
        let Transfer {
            logged,
            record,
            started,
            ..
        } = self;
        logged.end(OperationEnd {
            outcomes,
            kept: &[],
            // As the start record showed it, plus what the run learned.
            transfer: Some(TransferRecord {
                sha256: sent_sha256,
                ..record
            }),
            wall: started.elapsed(),
        })
    }
}
