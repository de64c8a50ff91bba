//! Everything `ctl` prints about hosts: live `HOST: line` output, `--json` objects,
//! `--gather` blocks, per-host notes and the closing summary.
//!
//! All host output goes through one printer thread. Host tasks hand it chunks over a bounded
//! channel, so a slow terminal slows the agents (backpressure) instead of piling up memory,
//! and since only this thread writes, a line from one host can never be cut by another's.
//! Lines are printed whole; a partial line waits for its end (or the host's end, or a cap).

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use common::message::Stream;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::audit::kept::Capture;
use crate::outcome::{count_statuses, HostOutcome, Status};

/// A partial line longer than this is printed as if it ended, so one host that prints
/// without newlines cannot grow our buffer without bound.
const MAX_PARTIAL_LINE: usize = 64 * 1024;
/// Chunks in flight between the host tasks and the printer.
const QUEUE_DEPTH: usize = 1024;

/// How host output is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `HOST: line`, live, stdout to stdout and stderr to stderr.
    Lines,
    /// One JSON object per host on stdout when that host finishes.
    Json,
    /// stdout collected and shown once per distinct output at the end; stderr live.
    Gather,
}

enum Event {
    Output {
        host: usize,
        stream: Stream,
        bytes: Bytes,
    },
    Done {
        host: usize,
        outcome: HostOutcome,
    },
}

/// Where one host's task sends that host's output and end.
#[derive(Clone)]
pub struct OutputSink {
    host: usize,
    tx: mpsc::Sender<Event>,
}

impl OutputSink {
    /// Hands a chunk of output to the printer, waiting while the printer is behind.
    pub async fn output(&self, stream: Stream, bytes: Bytes) {
        let event = Event::Output {
            host: self.host,
            stream,
            bytes,
        };
        // The printer outlives every sink, so a send can only fail if it panicked.
        let _ = self.tx.send(event).await;
    }

    /// Tells the printer this host is finished.
    pub async fn done(&self, outcome: &HostOutcome) {
        let event = Event::Done {
            host: self.host,
            outcome: outcome.clone(),
        };
        let _ = self.tx.send(event).await;
    }
}

/// The printer thread and the way to reach it.
pub struct Printer {
    tx: mpsc::Sender<Event>,
    thread: std::thread::JoinHandle<Vec<[Capture; 2]>>,
}

impl Printer {
    /// Starts the printer for hosts named `names` (indexed as the targets are). It also
    /// keeps up to `keep_bytes` of each host's stdout and stderr for the operation log.
    pub fn start(mode: Mode, names: Vec<String>, keep_bytes: usize) -> Printer {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("printer".into())
            .spawn(move || print_events(rx, mode, names, keep_bytes))
            .expect("can start the printer thread");
        Printer { tx, thread }
    }

    /// A sink for host number `host`.
    pub fn sink(&self, host: usize) -> OutputSink {
        OutputSink {
            host,
            tx: self.tx.clone(),
        }
    }

    /// Waits until everything sent so far is printed (and, for `--gather`, the blocks), and
    /// returns each host's kept (stdout, stderr). Every sink must be dropped first.
    pub fn finish(self) -> Vec<[Capture; 2]> {
        drop(self.tx);
        self.thread.join().unwrap_or_else(|_| {
            tracing::error!("the printer thread panicked");
            Vec::new()
        })
    }
}

/// One host's state inside the printer.
struct HostBuffers {
    name: String,
    partial: [Vec<u8>; 2],
    captured: [Vec<u8>; 2],
    kept: [Capture; 2],
}

fn slot(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

fn print_events(
    mut rx: mpsc::Receiver<Event>,
    mode: Mode,
    names: Vec<String>,
    keep_bytes: usize,
) -> Vec<[Capture; 2]> {
    let mut hosts: Vec<HostBuffers> = names
        .into_iter()
        .map(|name| HostBuffers::new(name, keep_bytes))
        .collect();
    let mut out = Vec::new();
    let mut err = Vec::new();
    while let Some(event) = rx.blocking_recv() {
        handle(event, mode, &mut hosts, &mut out, &mut err);
        // Take whatever else is queued, then write it all with one flush per stream.
        while let Ok(event) = rx.try_recv() {
            handle(event, mode, &mut hosts, &mut out, &mut err);
        }
        write_out(&mut out, &mut err);
    }
    if mode == Mode::Gather {
        print_gathered(&hosts, &mut out);
        write_out(&mut out, &mut err);
    }
    hosts.into_iter().map(|host| host.kept).collect()
}

fn handle(
    event: Event,
    mode: Mode,
    hosts: &mut [HostBuffers],
    out: &mut Vec<u8>,
    err: &mut Vec<u8>,
) {
    match event {
        Event::Output {
            host,
            stream,
            bytes,
        } => {
            let buffers = &mut hosts[host];
            buffers.kept[slot(stream)].push(&bytes);
            let captured = match (mode, stream) {
                (Mode::Json, _) | (Mode::Gather, Stream::Stdout) => true,
                (Mode::Lines, _) | (Mode::Gather, Stream::Stderr) => false,
            };
            if captured {
                buffers.captured[slot(stream)].extend_from_slice(&bytes);
            } else {
                let dst = if stream == Stream::Stdout {
                    &mut *out
                } else {
                    &mut *err
                };
                buffers.push_lines(stream, &bytes, dst);
            }
        }
        Event::Done { host, outcome } => {
            let buffers = &mut hosts[host];
            buffers.flush_partial(Stream::Stdout, out);
            buffers.flush_partial(Stream::Stderr, err);
            match mode {
                Mode::Json => json_line(buffers, &outcome, out),
                Mode::Lines | Mode::Gather => host_note(&buffers.name, &outcome, err),
            }
        }
    }
}

impl HostBuffers {
    fn new(name: String, keep_bytes: usize) -> HostBuffers {
        HostBuffers {
            name,
            partial: Default::default(),
            captured: Default::default(),
            kept: [Capture::new(keep_bytes), Capture::new(keep_bytes)],
        }
    }

    /// Appends `bytes` to the partial line and moves every complete line to `dst`.
    fn push_lines(&mut self, stream: Stream, bytes: &[u8], dst: &mut Vec<u8>) {
        let partial = &mut self.partial[slot(stream)];
        partial.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(end) = partial[start..].iter().position(|&b| b == b'\n') {
            prefixed_line(&self.name, &partial[start..start + end], dst);
            start += end + 1;
        }
        partial.drain(..start);
        if partial.len() > MAX_PARTIAL_LINE {
            prefixed_line(&self.name, partial, dst);
            partial.clear();
        }
    }

    /// Prints an unfinished last line as a line of its own.
    fn flush_partial(&mut self, stream: Stream, dst: &mut Vec<u8>) {
        let partial = &mut self.partial[slot(stream)];
        if !partial.is_empty() {
            prefixed_line(&self.name, partial, dst);
            partial.clear();
        }
    }
}

fn prefixed_line(host: &str, line: &[u8], dst: &mut Vec<u8>) {
    dst.extend_from_slice(host.as_bytes());
    dst.extend_from_slice(b": ");
    // Output is shown as text: invalid UTF-8 becomes U+FFFD rather than garbage or a crash.
    dst.extend_from_slice(String::from_utf8_lossy(line).as_bytes());
    dst.push(b'\n');
}

fn write_out(out: &mut Vec<u8>, err: &mut Vec<u8>) {
    // A closed stdout (e.g. `ctl run ... | head`) must not stop the operation: every host
    // still finishes and is logged, so write errors are ignored here.
    if !out.is_empty() {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out).and_then(|()| stdout.flush());
        out.clear();
    }
    if !err.is_empty() {
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(err).and_then(|()| stderr.flush());
        err.clear();
    }
}

/// The `--json` object of one host: exactly these keys, in this order.
#[derive(Serialize)]
struct JsonResult<'a> {
    host: &'a str,
    status: Status,
    exit_code: Option<i32>,
    stdout: String,
    stderr: String,
    duration_ms: u64,
    error: Option<&'a str>,
}

fn json_line(buffers: &HostBuffers, outcome: &HostOutcome, out: &mut Vec<u8>) {
    let result = JsonResult {
        host: &buffers.name,
        status: outcome.status,
        exit_code: outcome.exit_code,
        stdout: String::from_utf8_lossy(&buffers.captured[0]).into_owned(),
        stderr: String::from_utf8_lossy(&buffers.captured[1]).into_owned(),
        duration_ms: millis(outcome.duration),
        error: outcome.error.as_deref(),
    };
    serde_json::to_writer(&mut *out, &result).expect("serializing to memory cannot fail");
    out.push(b'\n');
}

/// One stderr line for a host that did not succeed, so the reason is seen where it happened.
fn host_note(host: &str, outcome: &HostOutcome, err: &mut Vec<u8>) {
    if outcome.is_ok() {
        return;
    }
    let why = outcome.error.as_deref().unwrap_or("");
    let _ = writeln!(err, "ctl: {host}: {}: {why}", outcome.status.as_str());
}

/// Prints each distinct stdout once, under the hosts that printed it, clush -b style.
fn print_gathered(hosts: &[HostBuffers], out: &mut Vec<u8>) {
    let mut groups: Vec<(&[u8], Vec<&str>)> = Vec::new();
    let mut group_of: HashMap<&[u8], usize> = HashMap::new();
    for host in hosts {
        let text = host.captured[0].as_slice();
        if text.is_empty() {
            continue;
        }
        let index = *group_of.entry(text).or_insert_with(|| {
            groups.push((text, Vec::new()));
            groups.len() - 1
        });
        groups[index].1.push(&host.name);
    }
    for (text, names) in groups {
        let header = format!("{} ({})", names.join(","), names.len());
        let rule = "-".repeat(header.len().clamp(15, 79));
        let _ = writeln!(out, "{rule}\n{header}\n{rule}");
        out.extend_from_slice(String::from_utf8_lossy(text).as_bytes());
        if !text.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
}

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

/// The `ctl ping` report: one aligned line per host in target order, or JSON lines.
pub fn print_ping(names: &[String], addrs: &[String], outcomes: &[HostOutcome], json: bool) {
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
            let version = outcome.agent_version.as_deref().unwrap_or("?");
            let _ = writeln!(
                out,
                "{name:name_width$}  {addr:addr_width$}  ok  {latency_ms:8.2} ms  agent {version}"
            );
        } else {
            let why = outcome.error.as_deref().unwrap_or("");
            let status = outcome.status.as_str();
            let _ = writeln!(
                out,
                "{name:name_width$}  {addr:addr_width$}  {status}  {why}"
            );
        }
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
/// a host that did not succeed.
pub fn transfer_line(host: &str, outcome: &HostOutcome, json: bool) -> (String, bool) {
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
        let why = outcome.error.as_deref().unwrap_or("");
        return (
            format!("ctl: {host}: {}: {why}", outcome.status.as_str()),
            false,
        );
    }
    let path = outcome.path.as_deref().unwrap_or("?");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str) -> HostBuffers {
        HostBuffers::new(name.into(), 0)
    }

    #[test]
    fn only_whole_lines_are_printed_and_the_rest_waits() {
        let mut web1 = host("web1");
        let mut dst = Vec::new();
        web1.push_lines(Stream::Stdout, b"one\ntw", &mut dst);
        assert_eq!(dst, b"web1: one\n");
        web1.push_lines(Stream::Stdout, b"o\nthree", &mut dst);
        assert_eq!(dst, b"web1: one\nweb1: two\n");
        web1.flush_partial(Stream::Stdout, &mut dst);
        assert_eq!(dst, b"web1: one\nweb1: two\nweb1: three\n");
    }

    #[test]
    fn invalid_utf8_is_shown_lossily() {
        let mut web1 = host("web1");
        let mut dst = Vec::new();
        web1.push_lines(Stream::Stderr, b"a\xffb\n", &mut dst);
        assert_eq!(String::from_utf8(dst).unwrap(), "web1: a\u{fffd}b\n");
    }

    #[test]
    fn an_endless_line_is_cut_at_the_cap() {
        let mut web1 = host("web1");
        let mut dst = Vec::new();
        web1.push_lines(Stream::Stdout, &vec![b'x'; MAX_PARTIAL_LINE + 1], &mut dst);
        assert_eq!(dst.len(), "web1: ".len() + MAX_PARTIAL_LINE + 1 + 1);
        assert!(web1.partial[0].is_empty());
    }

    #[test]
    fn gather_groups_identical_outputs_in_host_order() {
        let mut hosts = vec![host("a"), host("b"), host("c"), host("d")];
        hosts[0].captured[0] = b"same\n".to_vec();
        hosts[1].captured[0] = b"other\n".to_vec();
        hosts[2].captured[0] = b"same\n".to_vec();
        let mut out = Vec::new();
        print_gathered(&hosts, &mut out);
        let text = String::from_utf8(out).unwrap();
        let rule = "-".repeat(15);
        assert_eq!(
            text,
            format!("{rule}\na,c (2)\n{rule}\nsame\n{rule}\nb (1)\n{rule}\nother\n")
        );
    }
}
