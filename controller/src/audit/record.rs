//! The operation log: one JSON object per line in `<log dir>/audit.jsonl`, a `start` record
//! before any host is contacted and an `end` record after the last host is done.
//!
//! This is a record of what operators did, not a diagnostic log, so it does not go through
//! tracing. Every append takes an exclusive lock on the file, writes one whole line and
//! syncs it before unlocking, so concurrent `ctl` processes never interleave or lose records,
//! and a record that was reported written survives a crash. The record type lives here
//! alone; `ctl log` (issue 4) will read the same type.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use common::inventory::Host;
use serde::{Deserialize, Serialize};

use crate::outcome::{HostOutcome, Status};
use crate::output::millis;

/// The file name of the operation log inside the log folder.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// One line of the operation log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Unique per operation, sortable by time (a ULID); shared by its start and end records.
    pub op_id: String,
    pub event: Event,
    /// When the record was written, UTC, RFC 3339.
    pub time: String,
    /// The local user who ran `ctl`.
    pub user: String,
    /// The machine `ctl` ran on.
    pub origin: String,
    pub kind: Kind,
    /// The shell command line sent to the hosts (`run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// `ctl`'s own command line, as typed.
    pub argv: Vec<String>,
    /// `start`: every resolved target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<TargetRecord>>,
    /// `end`: what happened on each target, in target order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<HostRecord>>,
    /// `end`: wall time of the whole operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// `end`: true when the operator interrupted the operation (Ctrl-C).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Start,
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Run,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetRecord {
    pub host: String,
    pub address: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostRecord {
    pub host: String,
    pub status: Status,
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    pub duration_ms: u64,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub error: Option<String>,
}

/// The facts shared by an operation's start and end records.
pub struct Operation {
    pub op_id: String,
    pub kind: Kind,
    pub command: Option<String>,
    pub argv: Vec<String>,
    user: String,
    origin: String,
}

impl Operation {
    /// A new operation with a fresh id, by the current user on this machine.
    pub fn new(kind: Kind, command: Option<String>) -> Operation {
        Operation {
            op_id: ulid::Ulid::new().to_string(),
            kind,
            command,
            argv: std::env::args().collect(),
            user: current_user(),
            origin: nix::unistd::gethostname()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "unknown".into()),
        }
    }

    pub fn start_record(&self, targets: &[Host]) -> Record {
        let targets = targets
            .iter()
            .map(|host| TargetRecord {
                host: host.name.clone(),
                address: host.endpoint(),
            })
            .collect();
        Record {
            targets: Some(targets),
            ..self.record(Event::Start)
        }
    }

    pub fn end_record(
        &self,
        targets: &[Host],
        outcomes: &[HostOutcome],
        wall: Duration,
        interrupted: bool,
    ) -> Record {
        let results = targets
            .iter()
            .zip(outcomes)
            .map(|(host, outcome)| HostRecord {
                host: host.name.clone(),
                status: outcome.status,
                exit_code: outcome.exit_code,
                signal: outcome.signal,
                duration_ms: millis(outcome.duration),
                stdout_bytes: outcome.stdout_bytes,
                stderr_bytes: outcome.stderr_bytes,
                error: outcome.error.clone(),
            })
            .collect();
        Record {
            results: Some(results),
            duration_ms: Some(millis(wall)),
            interrupted,
            ..self.record(Event::End)
        }
    }

    fn record(&self, event: Event) -> Record {
        Record {
            op_id: self.op_id.clone(),
            event,
            time: now_rfc3339(),
            user: self.user.clone(),
            origin: self.origin.clone(),
            kind: self.kind,
            command: self.command.clone(),
            argv: self.argv.clone(),
            targets: None,
            results: None,
            duration_ms: None,
            interrupted: false,
        }
    }
}

/// The operation log file of one log folder.
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    /// Uses `dir` (created if missing) for the operation log.
    ///
    /// # Errors
    /// The folder cannot be created.
    pub fn open(dir: &Path) -> Result<AuditLog> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the log folder {}", dir.display()))?;
        Ok(AuditLog {
            path: dir.join(AUDIT_FILE),
        })
    }

    /// Appends one record as one line, under an exclusive lock, and syncs it to disk.
    ///
    /// # Errors
    /// The file cannot be opened, locked, written or synced.
    pub fn append(&self, record: &Record) -> Result<()> {
        let mut line = serde_json::to_vec(record).expect("records always serialize");
        line.push(b'\n');
        let mut file = self.open_for_append()?;
        file.lock()
            .with_context(|| format!("cannot lock {}", self.path.display()))?;
        // One write_all of a whole line while holding the lock: no reader or other writer
        // sees half a record.
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("cannot write to {}", self.path.display()))?;
        Ok(())
    }

    fn open_for_append(&self) -> Result<File> {
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .open(&self.path)
            .with_context(|| format!("cannot open the operation log {}", self.path.display()))
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("the current time formats as RFC 3339")
}

fn current_user() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => std::env::var("USER").unwrap_or_else(|_| format!("uid:{uid}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_appended_as_whole_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("new-folder")).unwrap();
        let op = Operation::new(Kind::Run, Some("uptime".into()));
        let hosts = [Host {
            name: "web1".into(),
            address: "127.0.0.1".into(),
            port: 7001,
        }];
        log.append(&op.start_record(&hosts)).unwrap();
        let outcome = HostOutcome::succeeded(Duration::from_millis(12));
        log.append(&op.end_record(&hosts, &[outcome], Duration::from_millis(20), false))
            .unwrap();
        let text = fs::read_to_string(dir.path().join("new-folder").join(AUDIT_FILE)).unwrap();
        let records: Vec<Record> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].event, Event::Start);
        assert_eq!(records[1].op_id, records[0].op_id);
        let results = records[1].results.as_ref().unwrap();
        assert_eq!(results[0].status, Status::Ok);
        assert_eq!(results[0].duration_ms, 12);
    }
}
