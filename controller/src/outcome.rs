//! What happened on one host: the value every per-host task produces and the printer, the
//! summary and the operation log consume. A host's failure is data here, never an `Err`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How an operation ended on one host. The names are part of the `--json` output and of the
/// operation log, so they do not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The command exited 0, the ping was answered, or the file was transferred.
    Ok,
    /// Push only: the destination already held exactly this content; nothing was sent.
    Unchanged,
    /// The command exited non-zero or was killed by a signal nobody on our side sent.
    Failed,
    /// The agent killed the command when `--timeout` expired.
    Timeout,
    /// Stopped by Ctrl-C on `ctl`.
    Cancelled,
    /// Never started: a canary was not ok, or more hosts failed than `--max-fail` allows.
    Skipped,
    /// No TCP connection could be made in time.
    Unreachable,
    /// Connected, but the two sides hold different keys.
    AuthFailed,
    /// Anything else: a broken connection, a protocol error, a command that could not start.
    Error,
}

impl Status {
    /// True for the statuses that count as success: `ok`, and `unchanged` for a push.
    pub fn is_success(self) -> bool {
        matches!(self, Status::Ok | Status::Unchanged)
    }

    /// The name used on the wire-facing outputs, e.g. `auth_failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Unchanged => "unchanged",
            Status::Failed => "failed",
            Status::Timeout => "timeout",
            Status::Cancelled => "cancelled",
            Status::Skipped => "skipped",
            Status::Unreachable => "unreachable",
            Status::AuthFailed => "auth_failed",
            Status::Error => "error",
        }
    }
}

/// What `ctl trust` or `ctl bootstrap` did with the key one host proved. The names are part of the `--json`
/// output and of the operation log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KnownHostsChange {
    /// The key was already recorded for the host; nothing written.
    Known,
    /// The host had no key recorded; this one was added.
    Added,
    /// The host's recorded key differed and `--replace` replaced it (the old line kept,
    /// commented out).
    Replaced,
    /// The host's recorded key differs; left as it was (no `--replace`).
    Changed,
    /// The key is marked `@revoked`; nothing written.
    Revoked,
    /// `ctl bootstrap --remove`: the host's lines were deleted.
    Removed,
}

impl KnownHostsChange {
    /// The name used in `--json` and the log, e.g. `added`.
    pub fn as_str(self) -> &'static str {
        match self {
            KnownHostsChange::Known => "known",
            KnownHostsChange::Added => "added",
            KnownHostsChange::Replaced => "replaced",
            KnownHostsChange::Changed => "changed",
            KnownHostsChange::Revoked => "revoked",
            KnownHostsChange::Removed => "removed",
        }
    }
}

/// The end of one host's part in an operation.
#[derive(Debug, Clone)]
pub struct HostOutcome {
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration: Duration,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// Why the host did not succeed, in words, when there is more to say than the status.
    pub error: Option<String>,
    /// The agent's release (ping only).
    pub agent_version: Option<String>,
    /// Push and pull: file bytes transferred (pull: received; push: sent).
    pub bytes: u64,
    /// Push and pull of one file: the SHA-256 both sides agreed on.
    pub sha256: Option<String>,
    /// Push and pull: where the root landed (push: on the host; pull: locally).
    pub path: Option<String>,
    /// The fingerprint of the host key the agent proved (`SHA256:...`), once connected;
    /// for a refused key, the one it presented.
    pub host_key: Option<String>,
    /// `ctl trust` and `ctl bootstrap`: what became of that key in known_hosts.
    pub known_hosts: Option<KnownHostsChange>,
    /// `ctl bootstrap`: what was changed on the host (or with `--dry-run` would be), in
    /// words.
    pub changes: Vec<String>,
}

impl HostOutcome {
    /// A success with nothing more to say than how long it took.
    pub fn succeeded(duration: Duration) -> HostOutcome {
        HostOutcome {
            status: Status::Ok,
            exit_code: None,
            signal: None,
            duration,
            stdout_bytes: 0,
            stderr_bytes: 0,
            error: None,
            agent_version: None,
            bytes: 0,
            sha256: None,
            path: None,
            host_key: None,
            known_hosts: None,
            changes: Vec::new(),
        }
    }

    /// The same outcome, taking `duration` in all.
    pub fn with_duration(self, duration: Duration) -> HostOutcome {
        HostOutcome { duration, ..self }
    }

    /// The same outcome, from the agent whose host key has `fingerprint`.
    pub fn with_host_key(self, fingerprint: String) -> HostOutcome {
        HostOutcome {
            host_key: Some(fingerprint),
            ..self
        }
    }

    /// An outcome with no command result: the host failed before or outside the command.
    pub fn failure(status: Status, error: impl Into<String>, duration: Duration) -> HostOutcome {
        HostOutcome {
            status,
            error: Some(error.into()),
            ..HostOutcome::succeeded(duration)
        }
    }

    /// True for the statuses that count as success for the exit status.
    pub fn is_ok(&self) -> bool {
        self.status.is_success()
    }
}

/// "3 ok, 1 failed, 1 unreachable": how many hosts ended in each status, in the order of
/// [`Status`], for the summary line and `ctl log`.
pub fn count_statuses(statuses: impl IntoIterator<Item = Status>) -> String {
    let mut counts: std::collections::BTreeMap<Status, usize> = std::collections::BTreeMap::new();
    for status in statuses {
        *counts.entry(status).or_default() += 1;
    }
    counts
        .iter()
        .map(|(status, n)| format!("{n} {}", status.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}
