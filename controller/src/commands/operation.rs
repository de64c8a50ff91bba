//! What every operation that contacts hosts shares, start and end: resolve the plan, log
//! the start (nothing runs if that fails), watch for Ctrl-C, and at the end print the
//! summary, log the end and pick the exit status. `run`, `push` and `pull` differ only in
//! what happens between [`Recorded::begin`] and [`Recorded::end`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use super::Exit;
use crate::audit::kept::Kept;
use crate::audit::seal::LogKey;
use crate::audit::{AuditLog, Operation};
use crate::cli::{ConnectArgs, LogOptions, TargetArgs};
use crate::client::{Connector, Stop};
use crate::inventory::Host;
use crate::outcome::HostOutcome;
use crate::output;
use crate::plan;
use crate::stream_pair::StreamPair;

/// An operation whose start record is written.
pub struct Recorded {
    pub targets: Vec<Host>,
    pub names: Vec<String>,
    pub forks: usize,
    pub connector: Connector,
    pub stop: Stop,
    pub op: Operation,
    log: AuditLog,
    log_key: LogKey,
}

impl Recorded {
    /// Resolves the targets and key, writes `op`'s start record and starts watching for
    /// Ctrl-C.
    ///
    /// # Errors
    /// Anything that stops the operation before any host is contacted (exit 2).
    pub fn begin(
        targets: &TargetArgs,
        connect: &ConnectArgs,
        log_options: &LogOptions,
        op: Operation,
    ) -> Result<Recorded> {
        let plan = plan::resolve(targets, connect)?;
        let log_key = plan::log_key(log_options, || Ok(plan.key.clone()))?;
        let log = AuditLog::open(&log_options.log_dir)?;
        log.append(&op.start_record(&plan.targets, &plan.groups_of), &log_key)
            .context("cannot write the operation log, so nothing was done")?;
        tracing::info!(op_id = %op.op_id, hosts = plan.targets.len(), "operation started");
        let stop = Stop::default();
        tokio::spawn(stop.clone().on_signals());
        let connector = Connector {
            key: Arc::new(plan.key),
            connect_timeout: plan.connect_timeout,
            silence_timeout: plan.silence_timeout,
        };
        Ok(Recorded {
            names: plan.targets.iter().map(|host| host.name.clone()).collect(),
            targets: plan.targets,
            forks: plan.forks,
            connector,
            stop,
            op,
            log,
            log_key,
        })
    }

    /// The log folder (kept output goes beside the log).
    pub fn log_dir(&self) -> &Path {
        self.log.dir()
    }

    /// Prints the summary, writes the end record and returns the exit status. `kept[i]` is
    /// what was kept of target `i`'s output; an empty slice when nothing was kept.
    pub fn end(
        self,
        outcomes: &[HostOutcome],
        kept: &[StreamPair<Option<Kept>>],
        wall: Duration,
    ) -> Exit {
        output::print_summary(&self.names, outcomes, wall);
        let no_kept = vec![StreamPair::default(); outcomes.len()];
        let kept = if kept.is_empty() { &no_kept } else { kept };
        let interrupted = self.stop.cancel.is_cancelled();
        let end = self
            .op
            .end_record(&self.targets, outcomes, kept, wall, interrupted);
        if let Err(err) = self.log.append(&end, &self.log_key) {
            eprintln!("ctl: the operation ran but its end record was not written: {err:#}");
            return Exit::SomeHostsFailed;
        }
        tracing::info!(op_id = %self.op.op_id, "operation ended");
        match interrupted {
            true => Exit::Interrupted,
            false => Exit::from_outcomes(outcomes),
        }
    }
}
