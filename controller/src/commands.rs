//! One function per `ctl` subcommand: the recipe that strings the other modules together.
//!
//! Each returns the process's [`Exit`] status; an `Err` means the operation could not start
//! (usage, inventory, key or log folder), nothing was contacted, and `main` exits 2.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use common::key::Key;
use common::message::Request;

use crate::audit::{AuditLog, Kind, Operation};
use crate::cli::{HostsArgs, KeygenArgs, PingArgs, RunArgs};
use crate::client::{self, Connector, Stop};
use crate::fanout::fan_out;
use crate::outcome::HostOutcome;
use crate::output::{self, Mode, Printer};
use crate::plan;

/// `ctl`'s exit statuses (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every target succeeded.
    Success = 0,
    /// At least one target failed, timed out, or could not be reached or authenticated.
    SomeHostsFailed = 1,
    /// Usage, inventory, key or log errors: nothing was contacted.
    Usage = 2,
    /// The operator pressed Ctrl-C (128 + SIGINT, as shells report it).
    Interrupted = 130,
}

impl Exit {
    fn from_outcomes(outcomes: &[HostOutcome]) -> Exit {
        if outcomes.iter().all(HostOutcome::is_ok) {
            Exit::Success
        } else {
            Exit::SomeHostsFailed
        }
    }
}

/// `ctl run`: the command on every target, output streamed, start and end logged.
pub async fn run(args: RunArgs) -> Result<Exit> {
    let plan = plan::resolve(&args.targets, &args.connect)?;
    let command = args.command.join(" ");
    let log = AuditLog::open(&args.log_dir)?;
    let op = Operation::new(Kind::Run, Some(command.clone()));
    log.append(&op.start_record(&plan.targets))
        .context("cannot write the operation log, so nothing was run")?;
    tracing::info!(op_id = %op.op_id, hosts = plan.targets.len(), "operation started");

    let stop = Stop::default();
    tokio::spawn(stop_on_signals(stop.clone()));
    let mode = match (args.json, args.gather) {
        (true, _) => Mode::Json,
        (false, true) => Mode::Gather,
        (false, false) => Mode::Lines,
    };
    let names: Vec<String> = plan.targets.iter().map(|host| host.name.clone()).collect();
    let printer = Printer::start(mode, names.clone());
    let connector = Connector {
        key: Arc::new(plan.key),
        connect_timeout: plan.connect_timeout,
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
            let outcome = client::run(&connector, &host, exec, &sink, &stop).await;
            sink.done(&outcome).await;
            outcome
        }
    })
    .await;
    printer.finish();
    let wall = started.elapsed();
    output::print_summary(&names, &outcomes, wall);

    let interrupted = stop.cancel.is_cancelled();
    let end = op.end_record(&plan.targets, &outcomes, wall, interrupted);
    if let Err(err) = log.append(&end) {
        eprintln!("ctl: the operation ran but its end record was not written: {err:#}");
        return Ok(Exit::SomeHostsFailed);
    }
    tracing::info!(op_id = %op.op_id, "operation ended");
    Ok(match interrupted {
        true => Exit::Interrupted,
        false => Exit::from_outcomes(&outcomes),
    })
}

/// `ctl ping`: connect, authenticate and round-trip to every target.
pub async fn ping(args: PingArgs) -> Result<Exit> {
    let plan = plan::resolve(&args.targets, &args.connect)?;
    let connector = Connector {
        key: Arc::new(plan.key),
        connect_timeout: plan.connect_timeout,
    };
    let outcomes = fan_out(&plan.targets, plan.forks, |_, host| {
        let connector = connector.clone();
        async move { client::ping(&connector, &host).await }
    })
    .await;
    let names: Vec<String> = plan.targets.iter().map(|host| host.name.clone()).collect();
    let addrs: Vec<String> = plan.targets.iter().map(|host| host.endpoint()).collect();
    output::print_ping(&names, &addrs, &outcomes, args.json);
    Ok(Exit::from_outcomes(&outcomes))
}

/// `ctl hosts`: the resolved targets, without contacting them.
pub fn hosts(args: HostsArgs) -> Result<Exit> {
    let (_, targets) = plan::resolve_targets(&args.targets)?;
    let width = targets
        .iter()
        .map(|host| host.name.len())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for host in &targets {
        text.push_str(&format!("{:width$}  {}\n", host.name, host.endpoint()));
    }
    print!("{text}");
    Ok(Exit::Success)
}

/// `ctl keygen PATH`: a new random key in a new file with mode 0600.
pub fn keygen(args: KeygenArgs) -> Result<Exit> {
    if let Some(parent) = args.path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    Key::generate().write_new(&args.path)?;
    eprintln!(
        "ctl: wrote a new key to {} (mode 0600); copy it to every agent host",
        args.path.display()
    );
    Ok(Exit::Success)
}

/// First SIGINT or SIGTERM: cancel every remote command and wait for the agents' reports.
/// Second: stop waiting. The operation's end record is written either way.
async fn stop_on_signals(stop: Stop) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers; Ctrl-C will kill ctl outright");
        return;
    };
    tokio::select! {
        _ = int.recv() => {},
        _ = term.recv() => {},
    }
    eprintln!("ctl: interrupted: cancelling the remote commands (again to stop waiting for them)");
    stop.cancel.cancel();
    tokio::select! {
        _ = int.recv() => {},
        _ = term.recv() => {},
    }
    eprintln!("ctl: interrupted again: not waiting for the agents' reports");
    stop.abandon.cancel();
}
