//! `ctl run`: plan, log the start, fan the command out with live output, summarize, keep
//! each host's output, log the end.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use common::message::Request;

use super::operation::Recorded;
use super::Exit;
use crate::audit::kept::{write_all_kept, Capture, Kept};
use crate::audit::{Kind, Operation};
use crate::cli::{LogOptions, RunArgs};
use crate::client;
use crate::fanout::fan_out;
use crate::output::{Mode, Printer};

/// `ctl run`: the command on every target, output streamed, start and end logged.
pub async fn run(args: RunArgs, log_options: &LogOptions) -> Result<Exit> {
    let command = args.command.join(" ");
    let op = Operation::new(Kind::Run, Some(command.clone()));
    let recorded = Recorded::begin(&args.targets, &args.connect, log_options, op)?;
    let mode = match (args.json, args.gather) {
        (true, _) => Mode::Json,
        (false, true) => Mode::Gather,
        (false, false) => Mode::Lines,
    };
    let printer = Printer::start(mode, recorded.names.clone(), args.keep_output);
    let exec = Request::Exec {
        command,
        timeout_ms: args.timeout.map(|secs| (secs * 1000.0).ceil() as u64),
        op_id: Some(recorded.op.op_id.clone()),
    };

    let started = Instant::now();
    let outcomes = fan_out(&recorded.targets, recorded.forks, |index, host| {
        let (connector, sink, stop, exec) = (
            recorded.connector.clone(),
            printer.sink(index),
            recorded.stop.clone(),
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
    let kept = keep_output(
        recorded.log_dir(),
        &recorded.op.op_id,
        &recorded.names,
        captures,
    );
    Ok(recorded.end(&outcomes, &kept, wall))
}

/// Writes each host's kept output beside the log. A failure here costs the kept copy, not
/// the record: it is reported and the end record says nothing was kept.
fn keep_output(
    log_dir: &Path,
    op_id: &str,
    names: &[String],
    captures: Vec<[Capture; 2]>,
) -> Vec<(Option<Kept>, Option<Kept>)> {
    let hosts = names.iter().map(String::as_str).zip(captures).collect();
    let mut kept: Vec<_> = write_all_kept(log_dir, op_id, hosts)
        .into_iter()
        .zip(names)
        .map(|([stdout, stderr], name)| {
            let report = |kept: Result<Option<Kept>>| {
                kept.unwrap_or_else(|err| {
                    eprintln!("ctl: warning: {name}'s output was not kept: {err:#}");
                    None
                })
            };
            (report(stdout), report(stderr))
        })
        .collect();
    kept.resize(names.len(), (None, None));
    kept
}
