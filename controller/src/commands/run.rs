//! `ctl run`: plan, log the start, fan the command out with live output, summarize, keep
//! each host's output, log the end.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use anyhow::{Context, Result};
use common::message::Request;

use super::operation::LoggedOperation;
use super::Exit;
use crate::audit::kept::{write_all_kept, Capture, Kept};
use crate::audit::record::OperationEnd;
use crate::audit::{Kind, Operation};
use crate::cli::{LogOptions, RunArgs};
use crate::client;
use crate::client::run::HostOutput;
use crate::fanout::fan_out_rolling;
use crate::outcome::Status;
use crate::output::outdir::HostFiles;
use crate::output::{Controls, Mode, Printer};
use crate::stream_pair::StreamPair;

/// `ctl run`: the command on every target, output streamed, start and end logged.
pub async fn run(args: RunArgs, log_options: &LogOptions) -> Result<Exit> {
    let command = args.command.join(" ");
    if let Some(dir) = &args.outdir {
        // Before the start record: a folder that cannot be made stops the run (exit 2).
        common::private_file::create_private_dir(dir)
            .with_context(|| format!("cannot make the --outdir folder {}", dir.display()))?;
    }
    let outdir = args.outdir.clone().map(Arc::new);
    let op = Operation::new(Kind::Run, Some(command.clone()));
    let logged = LoggedOperation::begin(&args.targets, &args.connect, log_options, op)?;
    let mode = match (args.json, args.gather) {
        (true, _) => Mode::Json,
        (false, true) => Mode::Gather { diff: args.diff },
        (false, false) => Mode::Lines,
    };
    let printer = Printer::start(
        mode,
        logged.names.clone(),
        args.max_output,
        Controls::for_ctl_output(args.raw),
    );
    // Each host's task fills its own slot with what it kept of its output.
    let kept_slots: Arc<Vec<OnceLock<StreamPair<Capture>>>> =
        Arc::new(logged.targets.iter().map(|_| OnceLock::new()).collect());
    let exec = Request::Exec {
        command,
        timeout_ms: args.timeout.map(|secs| (secs * 1000.0).ceil() as u64),
        op_id: Some(logged.op.op_id.clone()),
        env: args.env.clone(),
        cwd: args.chdir.clone(),
    };

    let keep_bytes = args.keep_output;
    let started = Instant::now();
    let rollout = args.rollout.rollout();
    let outcomes = fan_out_rolling(&logged.targets, logged.forks, &rollout, |index, host| {
        let (connector, sink, stop, exec, kept_slots, outdir) = (
            logged.connector.clone(),
            printer.sink(index),
            logged.stop.clone(),
            exec.clone(),
            kept_slots.clone(),
            outdir.clone(),
        );
        async move {
            let mut kept = StreamPair::from_fn(|_| Capture::new(keep_bytes));
            let mut files = outdir.map(|dir| HostFiles::create(&dir, &host.name));
            let output = HostOutput {
                kept: &mut kept,
                sink: &sink,
                files: files.as_mut(),
            };
            let outcome = client::run::run(&connector, &host, exec, output, &stop).await;
            sink.done(&outcome).await;
            let _ = kept_slots[index].set(kept);
            outcome
        }
    })
    .await;
    // Hosts never started still end in the output (--json, --gather).
    for (index, outcome) in outcomes.iter().enumerate() {
        if outcome.status == Status::Skipped {
            printer.sink(index).done(outcome).await;
        }
    }
    printer.finish();
    let wall = started.elapsed();
    // A host whose task panicked kept nothing.
    let captures = Arc::into_inner(kept_slots)
        .expect("every host's task has ended")
        .into_iter()
        .map(|slot| slot.into_inner().unwrap_or_default())
        .collect();
    let kept = keep_output(logged.log_dir(), &logged.op.op_id, &logged.names, captures);
    Ok(logged.end(OperationEnd {
        outcomes: &outcomes,
        kept: &kept,
        transfer: None,
        wall,
    }))
}

/// Writes each host's kept output beside the log. A failure here costs the kept copy, not
/// the record: it is reported and the end record says nothing was kept.
fn keep_output(
    log_dir: &Path,
    op_id: &str,
    names: &[String],
    captures: Vec<StreamPair<Capture>>,
) -> Vec<StreamPair<Option<Kept>>> {
    let hosts = names.iter().map(String::as_str).zip(captures).collect();
    let mut kept: Vec<_> = write_all_kept(log_dir, op_id, hosts)
        .into_iter()
        .zip(names)
        .map(|(streams, name)| {
            streams.map(|_, kept| {
                kept.unwrap_or_else(|err| {
                    eprintln!("ctl: warning: {name}'s output was not kept: {err:#}");
                    None
                })
            })
        })
        .collect();
    kept.resize(names.len(), StreamPair::default());
    kept
}
