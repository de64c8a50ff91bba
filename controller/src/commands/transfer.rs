//! `ctl push` and `ctl pull`: the same recipe around a different per-host job. Plan, log
//! the start, fan out with a progress display, print each host's result as it ends, the
//! summary, log the end.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use super::operation::Recorded;
use super::Exit;
use crate::audit::record::TransferRecord;
use crate::audit::{Kind, Operation};
use crate::cli::{ConnectArgs, LogOptions, PullArgs, PushArgs, TargetArgs};
use crate::client::push::PushJob;
use crate::client::{self, Connector, Stop};
use crate::fanout::fan_out;
use crate::inventory::Host;
use crate::local_tree::LocalTree;
use crate::outcome::HostOutcome;
use crate::output;
use crate::progress::Progress;

/// `ctl push`.
pub async fn push(args: PushArgs, log_options: &LogOptions) -> Result<Exit> {
    let recursive = args.recursive;
    let tree = LocalTree::scan(&args.source, recursive, args.mode)?;
    let transfer = TransferRecord {
        source: args.source.display().to_string(),
        destination: args.dest.clone().unwrap_or_else(|| tree.name.clone()),
        recursive,
        bytes: Some(tree.total_bytes()),
        // Known once the file has been read, which is after the start record.
        sha256: None,
    };
    let total = tree.total_bytes();
    let job = Arc::new(PushJob {
        dest: transfer.destination.clone(),
        tree,
        mkdir: args.mkdir,
    });
    let sent_sha256 = {
        let job = job.clone();
        Box::new(move || job.tree.single_file_sha256())
    };
    let shape = Shape {
        kind: Kind::Push,
        transfer,
        json: args.json,
        bytes_per_host: total,
        sent_sha256,
    };
    transfer_flow(
        &args.targets,
        &args.connect,
        log_options,
        shape,
        move |connector, host, progress, stop| {
            let job = job.clone();
            async move { client::push::push(&connector, &host, job, progress, &stop).await }
        },
    )
    .await
}

/// `ctl pull`.
pub async fn pull(args: PullArgs, log_options: &LogOptions) -> Result<Exit> {
    let transfer = TransferRecord {
        source: args.remote.clone(),
        destination: args.dest.display().to_string(),
        recursive: args.recursive,
        bytes: None,
        sha256: None,
    };
    let shape = Shape {
        kind: Kind::Pull,
        transfer,
        json: args.json,
        bytes_per_host: 0,
        sent_sha256: Box::new(|| None),
    };
    let (remote, recursive, dest) = (Arc::new(args.remote), args.recursive, args.dest);
    transfer_flow(
        &args.targets,
        &args.connect,
        log_options,
        shape,
        move |connector, host, progress, stop| {
            let (remote, local_base) = (remote.clone(), dest.join(&host.name));
            async move {
                client::pull::pull(
                    &connector, &host, &remote, recursive, local_base, progress, &stop,
                )
                .await
            }
        },
    )
    .await
}

/// What differs between a push and a pull, for the shared recipe.
struct Shape {
    kind: Kind,
    transfer: TransferRecord,
    json: bool,
    /// Known up front for a push; 0 for a pull, whose sizes arrive with the data.
    bytes_per_host: u64,
    /// For the end record: the SHA-256 of what a push of one file sent (known only once it
    /// has been read).
    sent_sha256: Box<dyn Fn() -> Option<String>>,
}

async fn transfer_flow<F, Fut>(
    targets: &TargetArgs,
    connect: &ConnectArgs,
    log_options: &LogOptions,
    shape: Shape,
    job: F,
) -> Result<Exit>
where
    F: Fn(Connector, Host, Arc<Progress>, Stop) -> Fut,
    Fut: Future<Output = HostOutcome> + Send + 'static,
{
    let mut op = Operation::new(shape.kind, None);
    op.transfer = Some(shape.transfer);
    let mut recorded = Recorded::begin(targets, connect, log_options, op)?;
    let total = shape.bytes_per_host * recorded.targets.len() as u64;
    let progress = Arc::new(Progress::start(recorded.targets.len(), total, shape.json));
    let started = Instant::now();
    let json = shape.json;
    let outcomes = fan_out(&recorded.targets, recorded.forks, |_, host| {
        let name = host.name.clone();
        let work = job(
            recorded.connector.clone(),
            host,
            progress.clone(),
            recorded.stop.clone(),
        );
        let progress = progress.clone();
        async move {
            let outcome = work.await;
            let (line, to_stdout) = output::transfer_line(&name, &outcome, json);
            progress.host_finished(&outcome, &line, to_stdout);
            outcome
        }
    })
    .await;
    progress.finish();
    if let Some(transfer) = recorded.op.transfer.as_mut() {
        transfer.sha256 = (shape.sent_sha256)();
    }
    Ok(recorded.end(&outcomes, &[], started.elapsed()))
}
