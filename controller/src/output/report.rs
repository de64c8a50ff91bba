//! What `ctl` prints once a host or the operation is done: the closing summary, the
//! `ctl ping` and `ctl trust` reports, each host's push or pull result, and the helpers every printing
//! command shares. Live command output is [`super::printer`]'s.

use std::io::Write;
use std::time::Duration;

use common::identity::keys::PublicKey;
use serde::Serialize;

use super::controls::{shown, Controls};
use crate::outcome::{count_statuses, HostOutcome, KnownHostsChange, Status};

/// The closing summary on stderr: counts per status, who did not succeed, and wall time.
pub fn print_summary(names: &[String], outcomes: &[HostOutcome], wall: Duration) {
    let counts = count_statuses(outcomes.iter().map(|outcome| outcome.status));
    let mut text = format!(
        "ctl: {} host{} in {:.2}s: {}\n",
        outcomes.len(),
        if outcomes.len() == 1 { "" } else { "s" },
        wall.as_secs_f64(),
        counts
    );
    let not_ok: Vec<&str> = names
        .iter()
        .zip(outcomes)
        .filter(|(_, outcome)| !outcome.is_ok())
        .map(|(name, _)| name.as_str())
        .collect();
    if !not_ok.is_empty() {
        text.push_str(&format!("ctl: not ok: {}\n", not_ok.join(",")));
    }
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// The `ctl ping` report: one aligned line per host in target order, or JSON lines. What
/// the agents said (versions, reasons) is shown escaped on a terminal.
pub fn print_ping(names: &[String], addrs: &[String], outcomes: &[HostOutcome], json: bool) {
    let controls = Controls::for_ctl_output(false).stdout;
    let mut out = Vec::new();
    let name_width = names.iter().map(String::len).max().unwrap_or(0);
    let addr_width = addrs.iter().map(String::len).max().unwrap_or(0);
    for ((name, addr), outcome) in names.iter().zip(addrs).zip(outcomes) {
        let latency_ms = outcome.duration.as_secs_f64() * 1000.0;
        if json {
            let line = serde_json::json!({
                "host": name,
                "address": addr,
                "status": outcome.status,
                "latency_ms": if outcome.is_ok() { Some(latency_ms) } else { None },
                "agent_version": outcome.agent_version,
                "error": outcome.error,
            });
            let _ = writeln!(out, "{line}");
        } else if outcome.is_ok() {
            let version = shown(outcome.agent_version.as_deref().unwrap_or("?"), controls);
            let _ = writeln!(
                out,
                "{name:name_width$}  {addr:addr_width$}  ok  {latency_ms:8.2} ms  agent {version}"
            );
        } else {
            let why = shown(outcome.error.as_deref().unwrap_or(""), controls);
            let status = outcome.status.as_str();
            let _ = writeln!(
                out,
                "{name:name_width$}  {addr:addr_width$}  {status}  {why}"
            );
        }
    }
    let _ = std::io::stdout().lock().write_all(&out);
}

/// The `ctl trust` report: per host in target order, the key it proved and what became of
/// it in known_hosts (or why there is no key), or JSON lines.
pub fn print_trust(
    names: &[String],
    addrs: &[String],
    outcomes: &[HostOutcome],
    keys: &[Option<&PublicKey>],
    json: bool,
) {
    let controls = Controls::for_ctl_output(false).stdout;
    let mut out = Vec::new();
    for (((name, addr), outcome), key) in names.iter().zip(addrs).zip(outcomes).zip(keys) {
        if json {
            let line = serde_json::json!({
                "host": name,
                "address": addr,
                "status": outcome.status,
                "key": key.map(|key| key.to_openssh()),
                "fingerprint": outcome.host_key,
                "known_hosts": outcome.known_hosts,
                "error": outcome.error,
            });
            let _ = writeln!(out, "{line}");
            continue;
        }
        let why = shown(outcome.error.as_deref().unwrap_or(""), controls);
        let (Some(key), Some(change)) = (key, outcome.known_hosts) else {
            let _ = writeln!(out, "{name}: {}: {why}", outcome.status.as_str());
            continue;
        };
        let said = match change {
            KnownHostsChange::Known => "already trusted".to_owned(),
            KnownHostsChange::Added => "added".to_owned(),
            KnownHostsChange::Replaced => {
                "REPLACED (the old line is kept, commented out)".to_owned()
            }
            KnownHostsChange::Removed => "removed".to_owned(),
            KnownHostsChange::Changed | KnownHostsChange::Revoked => why.to_string(),
        };
        let _ = writeln!(out, "{name}: {key} ({addr}): {said}");
    }
    let _ = std::io::stdout().lock().write_all(&out);
}

/// The `ctl bootstrap` report: per host in target order, what changed on it and whether
/// its agent answered with the key read over SSH, or why not; or JSON lines. What a host
/// said (its errors, its agent's version) is shown escaped on a terminal.
pub fn print_bootstrap(names: &[String], ssh: &[String], outcomes: &[HostOutcome], json: bool) {
    let controls = Controls::for_ctl_output(false).stdout;
    let mut out = Vec::new();
    for ((name, ssh), outcome) in names.iter().zip(ssh).zip(outcomes) {
        if json {
            let line = serde_json::json!({
                "host": name,
                "ssh": ssh,
                "status": outcome.status,
                "changes": outcome.changes,
                "agent_sha256": outcome.sha256,
                "agent_version": outcome.agent_version,
                "host_key": outcome.host_key,
                "known_hosts": outcome.known_hosts,
                "duration_ms": millis(outcome.duration),
                "error": outcome.error,
            });
            let _ = writeln!(out, "{line}");
            continue;
        }
        let mut said: Vec<String> = outcome.changes.clone();
        if let Some(error) = &outcome.error {
            said.push(error.clone());
        } else if let Some(key) = &outcome.host_key {
            let version = outcome.agent_version.as_deref().unwrap_or("?");
            said.push(format!("agent {version} answers with host key {key}"));
        }
        if let Some(change) = outcome.known_hosts {
            said.push(format!("known_hosts: {}", change.as_str()));
        }
        let said = said.join("; ");
        let said = shown(&said, controls);
        let _ = writeln!(out, "{name}: {}: {said}", outcome.status.as_str());
    }
    let _ = std::io::stdout().lock().write_all(&out);
}

/// The `--json` object of one host's push or pull.
#[derive(Serialize)]
struct TransferJson<'a> {
    host: &'a str,
    status: Status,
    bytes: u64,
    sha256: Option<&'a str>,
    path: Option<&'a str>,
    duration_ms: u64,
    error: Option<&'a str>,
}

/// One host's push or pull result as a line, and whether it belongs on stdout: a JSON
/// object, `web1: ok 100.0 MiB in 0.41s (243.9 MiB/s) -> /srv/f`, or a note on stderr for
/// a host that did not succeed. The path and reason come from the agent: they are shown
/// escaped when the line's stream is a terminal.
pub fn transfer_line(host: &str, outcome: &HostOutcome, json: bool) -> (String, bool) {
    let controls = Controls::for_ctl_output(false);
    if json {
        let result = TransferJson {
            host,
            status: outcome.status,
            bytes: outcome.bytes,
            sha256: outcome.sha256.as_deref(),
            path: outcome.path.as_deref(),
            duration_ms: millis(outcome.duration),
            error: outcome.error.as_deref(),
        };
        let line = serde_json::to_string(&result).expect("serializing to memory cannot fail");
        return (line, true);
    }
    if !outcome.is_ok() {
        let why = shown(outcome.error.as_deref().unwrap_or(""), controls.stderr);
        return (
            format!("ctl: {host}: {}: {why}", outcome.status.as_str()),
            false,
        );
    }
    let path = shown(outcome.path.as_deref().unwrap_or("?"), controls.stdout);
    let secs = outcome.duration.as_secs_f64();
    let mib = outcome.bytes as f64 / (1024.0 * 1024.0);
    let line = match outcome.status {
        Status::Unchanged => format!("{host}: unchanged -> {path}"),
        _ => format!(
            "{host}: {} {mib:.1} MiB in {secs:.2}s ({:.1} MiB/s) -> {path}",
            outcome.status.as_str(),
            mib / secs.max(1e-6)
        ),
    };
    (line, true)
}

/// Writes results to stdout. A reader that went away (`ctl log | head`) is not an error
/// worth a panic, which is what `print!` would do: the rest is dropped quietly.
pub fn print_stdout(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
