//! `ctl rerun [OP_ID|last] [--all]`: repeat a run, push or pull from the operation log on
//! the hosts of it that were not ok (with `--all`, on all of them). The operation's own
//! command line is parsed again and carried out with the hosts as its only targets; the
//! new operation's records name the one they repeat (`reruns`).

use anyhow::{bail, Context, Result};
use clap::Parser;

use super::Exit;
use crate::audit::record::Record;
use crate::audit::{AuditLog, Kind};
use crate::cli::{Cli, Command, LogOptions, RerunArgs, TargetArgs};
use crate::log_view::{self, OpView};

/// `ctl rerun`.
///
/// # Errors
/// The log cannot be read, the operation is not found or cannot be repeated, or its
/// command line no longer parses (exit 2, nothing contacted).
pub async fn rerun(args: RerunArgs, log_options: &LogOptions) -> Result<Exit> {
    let log = AuditLog::open(&log_options.log_dir)?;
    let ops = log_view::collect_ops(&log.read_lines()?);
    let repeatable = |op: &&OpView| {
        op.start
            .as_ref()
            .is_some_and(|(start, _)| matches!(start.kind, Kind::Run | Kind::Push | Kind::Pull))
    };
    let op = match args.op.as_str() {
        // Newest first.
        "last" => ops
            .iter()
            .find(repeatable)
            .context("the log has no run, push or pull to repeat")?,
        prefix => log_view::find_op(&ops, prefix)?,
    };
    let Some((start, _)) = &op.start else {
        bail!("operation {} has no start record to repeat", op.op_id());
    };
    if !repeatable(&op) {
        bail!(
            "operation {} is a {}: only run, push and pull can be repeated",
            start.op_id,
            start.kind.as_str()
        );
    }
    let hosts = hosts_to_repeat(op, start, args.all);
    if hosts.is_empty() {
        eprintln!(
            "ctl: nothing to rerun: every host of {} was ok (--all repeats it on all)",
            start.op_id
        );
        return Ok(Exit::Success);
    }
    // A rerun of a rerun repeats the same command: the first operation's command line.
    let original = original_of(&ops, start)?;
    let mut cli = Cli::try_parse_from(&original.argv).with_context(|| {
        format!(
            "the command line of {} no longer parses: {}",
            original.op_id,
            original.argv.join(" ")
        )
    })?;
    eprintln!(
        "ctl: rerunning {} on {} host{}: {}",
        start.op_id,
        hosts.len(),
        if hosts.len() == 1 { "" } else { "s" },
        hosts.join(",")
    );
    let options = LogOptions {
        log_dir: log_options.log_dir.clone(),
        reruns: Some(start.op_id.clone()),
    };
    let only = |targets: &mut TargetArgs| {
        targets.groups.clear();
        targets.exclude.clear();
        targets.hosts.clone_from(&hosts);
    };
    match &mut cli.command {
        Command::Run(run) => only(&mut run.targets),
        Command::Push(push) => only(&mut push.targets),
        Command::Pull(pull) => only(&mut pull.targets),
        _ => bail!(
            "operation {} was not started by run, push or pull",
            start.op_id
        ),
    }
    match cli.command {
        Command::Run(run) => super::run(run, &options).await,
        Command::Push(push) => super::push(push, &options).await,
        Command::Pull(pull) => super::pull(pull, &options).await,
        _ => unreachable!("checked above"),
    }
}

/// The hosts of `op` to repeat it on: those whose end result is not a success, and those
/// with no result at all (the operation was interrupted); with `all`, every target.
fn hosts_to_repeat(op: &OpView, start: &Record, all: bool) -> Vec<String> {
    let targets = start.targets.iter().flatten().map(|target| &target.host);
    let results = op.end.as_ref().and_then(|(end, _)| end.results.as_ref());
    targets
        .filter(|host| {
            all || !results.is_some_and(|results| {
                results
                    .iter()
                    .any(|result| &result.host == *host && result.status.is_success())
            })
        })
        .cloned()
        .collect()
}

/// The operation `start` repeats, following `reruns` back to the first one.
fn original_of<'a>(ops: &'a [OpView], start: &'a Record) -> Result<&'a Record> {
    let mut record = start;
    // Each rerun names an older operation, so this ends; the bound is for a log edited
    // into a loop.
    for _ in 0..ops.len() {
        let Some(earlier) = &record.reruns else {
            return Ok(record);
        };
        let op = log_view::find_op(ops, earlier)?;
        record = match &op.start {
            Some((start, _)) => start,
            None => bail!(
                "operation {earlier}, which {} repeats, has no start record",
                record.op_id
            ),
        };
    }
    bail!("the log's reruns form a loop at {}", start.op_id)
}
