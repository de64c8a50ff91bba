//! What every operation that contacts hosts shares, start and end: resolve the plan, log
//! the start (nothing runs if that fails), watch for Ctrl-C, and at the end print the
//! summary, log the end and pick the exit status. `run`, `push` and `pull` differ only in
//! what happens between [`LoggedOperation::begin`] and [`LoggedOperation::end`].

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use common::identity::keys::Identity;

use super::Exit;
use crate::audit::record::OperationEnd;
use crate::audit::{AuditLog, Kind, Operation};
use crate::cli::{ConnectArgs, LogOptions, TargetArgs};
use crate::client::{Connector, Stop};
use crate::inventory::Host;
use crate::outcome::HostOutcome;
use crate::output;
use crate::plan::{self, Plan};

/// An operation whose start record is written.
pub struct LoggedOperation {
    pub targets: Vec<Host>,
    pub names: Vec<String>,
    pub forks: usize,
    pub connector: Connector,
    pub stop: Stop,
    pub op: Operation,
    log: AuditLog,
    /// Signs the log records: the operator's identity.
    signer: Arc<Identity>,
}

impl LoggedOperation {
    /// Resolves the targets, the identity and the known hosts, writes `op`'s start record
    /// (signed with the identity) and starts watching for Ctrl-C.
    ///
    /// # Errors
    /// Anything that stops the operation before any host is contacted (exit 2).
    pub fn begin(
        targets: &TargetArgs,
        connect: &ConnectArgs,
        log_options: &LogOptions,
        op: Operation,
    ) -> Result<LoggedOperation> {
        let plan = plan::resolve(targets, connect)?;
        LoggedOperation::begin_planned(plan, log_options, op)
    }

    /// As [`LoggedOperation::begin`], for an operation that needed its plan (the
    /// identity, say) to describe itself.
    ///
    /// # Errors
    /// The log cannot be opened or written (exit 2; nothing was contacted).
    pub fn begin_planned(
        plan: Plan,
        log_options: &LogOptions,
        mut op: Operation,
    ) -> Result<LoggedOperation> {
        op.reruns.clone_from(&log_options.reruns);
        let log = AuditLog::open(&log_options.log_dir)?;
        log.append(
            &op.start_record(&plan.targets, &plan.groups_of),
            &plan.identity,
        )
        .context("cannot write the operation log, so nothing was done")?;
        tracing::info!(op_id = %op.op_id, hosts = plan.targets.len(), "operation started");
        let stop = Stop::default();
        tokio::spawn(stop.clone().on_signals());
        let connector = plan.connector();
        Ok(LoggedOperation {
            names: plan.targets.iter().map(|host| host.name.clone()).collect(),
            targets: plan.targets,
            forks: plan.forks,
            connector,
            stop,
            op,
            log,
            signer: plan.identity,
        })
    }

    /// The log folder (kept output goes beside the log).
    pub fn log_dir(&self) -> &Path {
        self.log.dir()
    }

    /// Prints the summary, writes the end record and returns the exit status.
    pub fn end(self, end: OperationEnd) -> Exit {
        output::print_summary(&self.names, end.outcomes, end.wall);
        let repeatable = matches!(self.op.kind, Kind::Run | Kind::Push | Kind::Pull);
        if repeatable && !end.outcomes.iter().all(HostOutcome::is_ok) {
            eprintln!(
                "ctl: to retry the hosts not ok: ctl rerun {}",
                self.op.op_id
            );
        }
        let interrupted = self.stop.cancel.is_cancelled();
        let record = self.op.end_record(&self.targets, &end, interrupted);
        if let Err(err) = self.log.append(&record, &self.signer) {
            eprintln!("ctl: the operation ran but its end record was not written: {err:#}");
            return Exit::SomeHostsFailed;
        }
        tracing::info!(op_id = %self.op.op_id, "operation ended");
        match interrupted {
            true => Exit::Interrupted,
            false => Exit::from_outcomes(end.outcomes),
        }
    }
}
