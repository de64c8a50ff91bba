//! The operation-log record: the one type every writer and reader of the log shares.
//!
//! An operation writes a `start` record before it contacts any host and an `end` record
//! after the last host is done; both carry the same `op_id`. The chain fields (`seq`,
//! `prev`) and the `operator` are filled in by [`super::store`] under the log's lock, from
//! the identity that signs the record, and the signature is added by [`super::seal`] as the
//! line's last member.

use std::collections::BTreeMap;
use std::time::Duration;

use common::identity::keys::PublicKey;
use serde::{Deserialize, Serialize};

use super::kept::Kept;
use crate::inventory::Host;
use crate::outcome::{HostOutcome, KnownHostsChange, Status};
use crate::output::millis;
use crate::stream_pair::StreamPair;

/// One line of the operation log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the chain, from 1, continuing across rotated files.
    #[serde(default)]
    pub seq: u64,
    /// The SHA-256 (hex) of the line before this one, its exact bytes without the line
    /// break; 64 zeros for the first record.
    #[serde(default)]
    pub prev: String,
    /// Unique per operation, sortable by time (a ULID); shared by its start and end records.
    pub op_id: String,
    pub event: Event,
    /// When the record was written, UTC, RFC 3339.
    pub time: String,
    /// Whose key signed the record. Unlike `user` and `origin`, which are what the
    /// workstation says, this is backed by the signature: `ctl log verify` checks that the
    /// line was signed by this key.
    #[serde(default)]
    pub operator: Operator,
    /// The local user who ran `ctl`, as the workstation says.
    pub user: String,
    /// The machine `ctl` ran on, as the workstation says.
    pub origin: String,
    pub kind: Kind,
    /// The shell command line sent to the hosts (`run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// `ctl`'s own command line, as typed.
    pub argv: Vec<String>,
    /// `ctl rerun`: the operation this one repeats (on its hosts that were not ok).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reruns: Option<String>,
    /// Push and pull: what was transferred where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<TransferRecord>,
    /// `ctl bootstrap`: what was to be installed, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapRecord>,
    /// `start`: every resolved target, with the groups it belonged to at that time.
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

/// The operator's key, as a record names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    /// The public key's fingerprint, `SHA256:...` as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// The public key's comment (often `user@host`); empty if it has none.
    pub comment: String,
}

impl Operator {
    /// The operator whose public key is `key`.
    pub fn of(key: &PublicKey) -> Operator {
        Operator {
            fingerprint: key.fingerprint(),
            comment: key.comment().to_owned(),
        }
    }

    /// How a person tells operators apart: the comment, or the fingerprint without one.
    pub fn name(&self) -> &str {
        match self.comment.is_empty() {
            true => &self.fingerprint,
            false => &self.comment,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Start,
    End,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `ctl run`.
    Run,
    /// `ctl push`.
    Push,
    /// `ctl pull`.
    Pull,
    /// `ctl trust`.
    Trust,
    /// `ctl bootstrap`.
    Bootstrap,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Run => "run",
            Kind::Push => "push",
            Kind::Pull => "pull",
            Kind::Trust => "trust",
            Kind::Bootstrap => "bootstrap",
        }
    }
}

/// The transfer of a push or pull: source, destination, and for a push what was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferRecord {
    /// Push: the local path; pull: the path on the hosts.
    pub source: String,
    /// Push: the path on the hosts as given; pull: the local folder.
    pub destination: String,
    pub recursive: bool,
    /// Push: bytes of file content in what was sent (per host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Push of one file, in the end record: its SHA-256 (hashed while it was sent, so the
    /// start record cannot have it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Push: the files sent with setuid or setgid bits, relative to the pushed root (the
    /// root itself by its name). The agent applies them as sent; the log says so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setid: Vec<String>,
}

/// What `ctl bootstrap` set out to install (or, with `remove`, to remove).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapRecord {
    /// The local agent binary (none for `--remove`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_bin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_bytes: Option<u64>,
    /// The keys written to the hosts' authorized_keys: fingerprint and comment.
    pub operators: Vec<Operator>,
    /// `auto`, `systemd` or `none`.
    pub service: String,
    /// `any` or `inventory`.
    pub agent_address: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sudo: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remove: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetRecord {
    pub host: String,
    pub address: String,
    /// The inventory groups the host was in when the operation started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Push and pull: file bytes transferred with this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Push and pull of one file: the SHA-256 both sides checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Push and pull: where it landed (push: on the host; pull: locally).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The kept copy of the host's stdout (see [`super::kept`]), when it printed any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_stdout: Option<Kept>,
    /// The kept copy of the host's stderr, when it printed any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_stderr: Option<Kept>,
    /// The fingerprint of the host key the agent proved (or, refused, presented).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    /// `ctl trust` and `ctl bootstrap`: what became of the host's key in known_hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<KnownHostsChange>,
    /// `ctl bootstrap`: what was changed on the host, in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
}

/// What an operation learned by running, for its end record.
pub struct OperationEnd<'a> {
    /// Every target's outcome, in target order.
    pub outcomes: &'a [HostOutcome],
    /// What was kept of each target's output, in target order; empty when nothing was.
    pub kept: &'a [StreamPair<Option<Kept>>],
    /// A push's or pull's facts as the end record shows them: the start's, completed with
    /// what only the run could learn (a pushed file's SHA-256).
    pub transfer: Option<TransferRecord>,
    /// The operation's wall time.
    pub wall: Duration,
}

/// The facts shared by an operation's start and end records.
pub struct Operation {
    pub op_id: String,
    pub kind: Kind,
    pub command: Option<String>,
    pub transfer: Option<TransferRecord>,
    pub bootstrap: Option<BootstrapRecord>,
    pub argv: Vec<String>,
    /// `ctl rerun`: the operation this one repeats.
    pub reruns: Option<String>,
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
            transfer: None,
            bootstrap: None,
            argv: std::env::args().collect(),
            reruns: None,
            user: current_user(),
            origin: nix::unistd::gethostname()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "unknown".into()),
        }
    }

    /// A new push or pull, with `transfer` as it is known before any host is contacted.
    pub fn new_transfer(kind: Kind, transfer: TransferRecord) -> Operation {
        Operation {
            transfer: Some(transfer),
            ..Operation::new(kind, None)
        }
    }

    /// The `start` record; `groups_of` gives each target's groups at this moment.
    pub fn start_record(
        &self,
        targets: &[Host],
        groups_of: &BTreeMap<String, Vec<String>>,
    ) -> Record {
        let targets = targets
            .iter()
            .map(|host| TargetRecord {
                host: host.name.clone(),
                address: host.endpoint(),
                groups: groups_of.get(&host.name).cloned().unwrap_or_default(),
            })
            .collect();
        Record {
            targets: Some(targets),
            ..self.record(Event::Start, self.transfer.clone())
        }
    }

    /// The `end` record.
    pub fn end_record(&self, targets: &[Host], end: &OperationEnd, interrupted: bool) -> Record {
        let nothing_kept = vec![StreamPair::default(); targets.len()];
        let kept = match end.kept.is_empty() {
            true => &nothing_kept,
            false => end.kept,
        };
        let results = targets
            .iter()
            .zip(end.outcomes)
            .zip(kept)
            .map(|((host, outcome), kept)| HostRecord {
                host: host.name.clone(),
                status: outcome.status,
                exit_code: outcome.exit_code,
                signal: outcome.signal,
                duration_ms: millis(outcome.duration),
                stdout_bytes: outcome.stdout_bytes,
                stderr_bytes: outcome.stderr_bytes,
                error: outcome.error.clone(),
                host_key: outcome.host_key.clone(),
                known_hosts: outcome.known_hosts,
                changes: outcome.changes.clone(),
                kept_stdout: kept.stdout.clone(),
                kept_stderr: kept.stderr.clone(),
                bytes: matches!(self.kind, Kind::Push | Kind::Pull).then_some(outcome.bytes),
                sha256: outcome.sha256.clone(),
                path: outcome.path.clone(),
            })
            .collect();
        Record {
            results: Some(results),
            duration_ms: Some(millis(end.wall)),
            interrupted,
            ..self.record(Event::End, end.transfer.clone())
        }
    }

    fn record(&self, event: Event, transfer: Option<TransferRecord>) -> Record {
        Record {
            seq: 0,
            prev: String::new(),
            op_id: self.op_id.clone(),
            event,
            time: now_rfc3339(),
            operator: Operator::default(),
            user: self.user.clone(),
            origin: self.origin.clone(),
            kind: self.kind,
            command: self.command.clone(),
            argv: self.argv.clone(),
            reruns: self.reruns.clone(),
            transfer,
            bootstrap: self.bootstrap.clone(),
            targets: None,
            results: None,
            duration_ms: None,
            interrupted: false,
        }
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
