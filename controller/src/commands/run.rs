//! `ctl run`: plan, log the start, fan the command out with live output, summarize, keep
//! each host's output, log the end.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use common::message::{Request, Stream};

use super::Exit;
use crate::audit::kept::{write_kept, Capture, Kept};
use crate::audit::{AuditLog, Kind, Operation};
use crate::cli::{LogOptions, RunArgs};
use crate::client::{self, Connector, Stop};
use crate::fanout::fan_out;
use crate::output::{self, Mode, Printer};
use crate::plan;

/// `ctl run`: the command on every target, output streamed, start and end logged.
pub async fn run(args: RunArgs, log_options: &LogOptions) -> Result<Exit> {
    let plan = plan::resolve(&args.targets, &args.connect)?;
    let log_key = plan::log_key(log_options, || Ok(plan.key.clone()))?;
    let command = args.command.join(" ");
    let log = AuditLog::open(&log_options.log_dir)?;
    let op = Operation::new(Kind::Run, Some(command.clone()));
    log.append(&op.start_record(&plan.targets, &plan.groups_of), &log_key)
        .context("cannot write the operation log, so nothing was run")?;
    tracing::info!(op_id = %op.op_id, hosts = plan.targets.len(), "operation started");

    let stop = Stop::default();
    tokio::spawn(stop.clone().on_signals());
    let mode = match (args.json, args.gather) {
        (true, _) => Mode::Json,
        (false, true) => Mode::Gather,
        (false, false) => Mode::Lines,
    };
    let names: Vec<String> = plan.targets.iter().map(|host| host.name.clone()).collect();
    let printer = Printer::start(mode, names.clone(), args.keep_output);
    let connector = Connector {
        key: Arc::new(plan.key),
        connect_timeout: plan.connect_timeout,
        silence_timeout: plan.silence_timeout,
    };
    let exec = Request::Exec {
        command,
        timeout_ms: args.timeout.map(|secs| (secs * 1000.0).ceil() as u64),
        op_id: Some(op.op_id.clone()),
    };

    let started = Instant::now();
    let outcomes = fan_out(&plan.targets, plan.forks, |index, host| {
        let (connector, sink, stop, exec) = (
            connector.clone(),
            printer.sink(index),
            stop.clone(),
            exec.clone(),
        );
        async move {
            let outcome = client::exec::run(&connector, &host, exec, &sink, &stop).await;
            sink.done(&outcome).await;
            outcome
        }
    })
    .await;
    let captures = printer.finish();
    let wall = started.elapsed();
    output::print_summary(&names, &outcomes, wall);

    let kept = keep_output(&log, &op.op_id, &names, captures);
    let interrupted = stop.cancel.is_cancelled();
    let end = op.end_record(&plan.targets, &outcomes, &kept, wall, interrupted);
    if let Err(err) = log.append(&end, &log_key) {
        eprintln!("ctl: the operation ran but its end record was not written: {err:#}");
        return Ok(Exit::SomeHostsFailed);
    }
    tracing::info!(op_id = %op.op_id, "operation ended");
    Ok(match interrupted {
        true => Exit::Interrupted,
        false => Exit::from_outcomes(&outcomes),
    })
}

/// Writes each host's kept output beside the log. A failure here costs the kept copy, not
/// the record: it is reported and the end record says nothing was kept.
fn keep_output(
    log: &AuditLog,
    op_id: &str,
    names: &[String],
    captures: Vec<[Capture; 2]>,
) -> Vec<(Option<Kept>, Option<Kept>)> {
    let mut kept = Vec::with_capacity(names.len());
    for (name, [stdout, stderr]) in names.iter().zip(captures) {
        let write = |stream, capture| {
            write_kept(log.dir(), op_id, name, stream, capture).unwrap_or_else(|err| {
                eprintln!("ctl: warning: {name}'s output was not kept: {err:#}");
                None
            })
        };
        kept.push((write(Stream::Stdout, stdout), write(Stream::Stderr, stderr)));
    }
    kept.resize(names.len(), (None, None));
    kept
}
