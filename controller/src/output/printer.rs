//! A running command's output, shown as it arrives: `HOST: line` live, one `--json`
//! object per host as each ends, or `--gather` blocks at the end.
//!
//! All host output goes through one printer thread, so a line from one host can never be
//! cut by another's. Host tasks hand it chunks over a queue with a **byte budget** in
//! front: a task takes as many permits as its chunk has bytes before queueing it, and the
//! printer gives them back once the chunk is written out. So ctl holds at most
//! [`OUTPUT_BUDGET`] bytes of output in flight, however much or fast the hosts print; a
//! slow reader of ctl's stdout stalls the host tasks, which stop reading their sockets,
//! which stalls the agents' sends and then the remote commands' pipes (backpressure end to
//! end). Beyond the budget, each host holds one received chunk, its unfinished lines
//! (at most [`MAX_PARTIAL_LINE`] per stream) and, for `--json` and `--gather`, its
//! [`CappedOutput`]s.
//!
//! On a terminal, control characters in host output are shown escaped (see
//! [`super::controls`]), in live lines, `--gather` blocks and the reasons hosts give.

use std::collections::HashMap;
use std::io::Write;

use bytes::Bytes;
use common::byte_budget::{ByteBudget, Charge};
use common::message::Stream;
use serde::Serialize;
use tokio::sync::mpsc;

use super::capped::{CappedOutput, OutputIdentity};
use super::controls::{escape_controls, may_have_controls, Controls};
use super::report::millis;
use crate::outcome::{HostOutcome, Status};
use crate::stream_pair::StreamPair;

/// Output bytes queued for, or being written by, the printer, across all hosts.
pub const OUTPUT_BUDGET: usize = 1024 * 1024;
/// A partial line longer than this is printed as if it ended, so one host that prints
/// without newlines cannot grow our buffer without bound.
pub const MAX_PARTIAL_LINE: usize = 64 * 1024;
/// Events in flight between the host tasks and the printer. The byte budget is the bound
/// that matters; this one only keeps a flood of tiny chunks from costing a queue slot each.
const QUEUE_DEPTH: usize = 1024;
/// The printer splits chunks into pieces of this size and writes out its buffers once they
/// pass [`WRITE_BATCH`], so that prefixing many short lines cannot blow a chunk up in
/// memory (a chunk of empty lines is mostly prefixes once printed).
const PIECE: usize = 16 * 1024;
const WRITE_BATCH: usize = 256 * 1024;

/// How host output is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `HOST: line`, live, stdout to stdout and stderr to stderr.
    Lines,
    /// One JSON object per host on stdout when that host finishes.
    Json,
    /// stdout collected and shown once per distinct output at the end; stderr live. With
    /// `diff`, the most common output is shown whole and each other one as a unified diff
    /// against it.
    Gather { diff: bool },
}

enum Event {
    Output {
        host: usize,
        stream: Stream,
        bytes: Bytes,
        /// The frame's share of the byte budget, given back once the chunk is written out.
        charge: Charge,
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
    budget: ByteBudget,
}

impl OutputSink {
    /// The byte budget a host's frames of output are charged to before they are read
    /// ([`common::channel::Channel::recv_charged_within`]).
    pub fn budget(&self) -> &ByteBudget {
        &self.budget
    }

    /// Hands a chunk of output to the printer, with the charge its frame took from
    /// [`OutputSink::budget`]; the printer drops the charge once the chunk is written out.
    pub async fn show(&self, stream: Stream, bytes: Bytes, charge: Charge) {
        let event = Event::Output {
            host: self.host,
            stream,
            bytes,
            charge,
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
    budget: ByteBudget,
    thread: std::thread::JoinHandle<()>,
}

impl Printer {
    /// Starts the printer for hosts named `names` (indexed as the targets are).
    /// `max_output` caps what `--json` and `--gather` hold per host and stream; `controls`
    /// says how control characters are shown on ctl's stdout and stderr.
    pub fn start(
        mode: Mode,
        names: Vec<String>,
        max_output: usize,
        controls: StreamPair<Controls>,
    ) -> Printer {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("printer".into())
            .spawn(move || print_events(rx, mode, names, max_output, controls))
            .expect("can start the printer thread");
        Printer {
            tx,
            budget: ByteBudget::new(OUTPUT_BUDGET),
            thread,
        }
    }

    /// A sink for host number `host`.
    pub fn sink(&self, host: usize) -> OutputSink {
        OutputSink {
            host,
            tx: self.tx.clone(),
            budget: self.budget.clone(),
        }
    }

    /// Waits until everything sent so far is printed (and, for `--gather`, the blocks).
    /// Every sink must be dropped first.
    pub fn finish(self) {
        drop(self.tx);
        if self.thread.join().is_err() {
            tracing::error!("the printer thread panicked");
        }
    }
}

/// One host's state inside the printer.
struct HostBuffers {
    name: String,
    /// The unfinished last line of each stream (live lines).
    partial: StreamPair<Vec<u8>>,
    /// What `--json` (both streams) or `--gather` (stdout) holds until it can show it.
    held: StreamPair<CappedOutput>,
}

/// The printer's output, written out in batches.
#[derive(Default)]
struct Pending {
    out: Vec<u8>,
    err: Vec<u8>,
    /// Charges of the chunks in `out` and `err`, given back when they are written.
    charges: Vec<Charge>,
    /// How host output's control characters are shown in `out` and in `err`.
    controls: StreamPair<Controls>,
}

fn print_events(
    mut rx: mpsc::Receiver<Event>,
    mode: Mode,
    names: Vec<String>,
    max_output: usize,
    controls: StreamPair<Controls>,
) {
    let mut hosts: Vec<HostBuffers> = names
        .into_iter()
        .map(|name| HostBuffers::new(name, mode, max_output))
        .collect();
    let mut pending = Pending {
        controls,
        ..Pending::default()
    };
    while let Some(event) = rx.blocking_recv() {
        handle(event, mode, &mut hosts, &mut pending);
        // Take whatever else is queued, then write it all with one flush per stream.
        while let Ok(event) = rx.try_recv() {
            handle(event, mode, &mut hosts, &mut pending);
        }
        pending.write_out();
    }
    if let Mode::Gather { diff } = mode {
        print_gathered(&hosts, pending.controls.stdout, diff, &mut pending.out);
        pending.write_out();
    }
}

fn handle(event: Event, mode: Mode, hosts: &mut [HostBuffers], pending: &mut Pending) {
    match event {
        Event::Output {
            host,
            stream,
            bytes,
            charge,
        } => {
            let buffers = &mut hosts[host];
            let held = match (mode, stream) {
                (Mode::Json, _) | (Mode::Gather { .. }, Stream::Stdout) => true,
                (Mode::Lines, _) | (Mode::Gather { .. }, Stream::Stderr) => false,
            };
            if held {
                buffers.held.get_mut(stream).push(&bytes);
            } else {
                let controls = *pending.controls.get(stream);
                for piece in bytes.chunks(PIECE) {
                    buffers.push_lines(stream, controls, piece, pending.for_stream(stream));
                    pending.write_out_if_large();
                }
            }
            pending.charges.push(charge);
        }
        Event::Done { host, outcome } => {
            let buffers = &mut hosts[host];
            let controls = pending.controls;
            buffers.flush_partial(Stream::Stdout, controls.stdout, &mut pending.out);
            buffers.flush_partial(Stream::Stderr, controls.stderr, &mut pending.err);
            match mode {
                Mode::Json => json_line(buffers, &outcome, &mut pending.out),
                Mode::Lines | Mode::Gather { .. } => {
                    host_note(&buffers.name, &outcome, controls.stderr, &mut pending.err);
                }
            }
            // --json's copies are shown now; nothing needs them any more.
            if mode == Mode::Json {
                buffers.held = StreamPair::default();
            }
            pending.write_out_if_large();
        }
    }
}

impl Pending {
    fn for_stream(&mut self, stream: Stream) -> &mut Vec<u8> {
        match stream {
            Stream::Stdout => &mut self.out,
            Stream::Stderr => &mut self.err,
        }
    }

    fn write_out_if_large(&mut self) {
        if self.out.len() + self.err.len() > WRITE_BATCH {
            self.write_out();
        }
    }

    fn write_out(&mut self) {
        // A closed stdout (e.g. `ctl run ... | head`) must not stop the operation: every
        // host still finishes and is logged, so write errors are ignored here.
        if !self.out.is_empty() {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(&self.out).and_then(|()| stdout.flush());
            self.out.clear();
        }
        if !self.err.is_empty() {
            let mut stderr = std::io::stderr().lock();
            let _ = stderr.write_all(&self.err).and_then(|()| stderr.flush());
            self.err.clear();
        }
        shrink(&mut self.out, WRITE_BATCH);
        shrink(&mut self.err, WRITE_BATCH);
        self.charges.clear();
    }
}

impl HostBuffers {
    fn new(name: String, mode: Mode, max_output: usize) -> HostBuffers {
        let held = match mode {
            Mode::Gather { .. } => StreamPair {
                stdout: CappedOutput::with_digest(max_output),
                stderr: CappedOutput::new(0),
            },
            Mode::Json | Mode::Lines => StreamPair::from_fn(|_| CappedOutput::new(max_output)),
        };
        HostBuffers {
            name,
            partial: StreamPair::default(),
            held,
        }
    }

    /// Prints every line that `bytes` completes to `dst`; keeps the unfinished rest.
    fn push_lines(
        &mut self,
        stream: Stream,
        controls: Controls,
        mut bytes: &[u8],
        dst: &mut Vec<u8>,
    ) {
        let partial = self.partial.get_mut(stream);
        while let Some(end) = memchr::memchr(b'\n', bytes) {
            prefixed_line(&self.name, partial, &bytes[..end], controls, dst);
            clear_partial(partial);
            bytes = &bytes[end + 1..];
        }
        while partial.len() + bytes.len() > MAX_PARTIAL_LINE {
            let room = MAX_PARTIAL_LINE - partial.len();
            prefixed_line(&self.name, partial, &bytes[..room], controls, dst);
            clear_partial(partial);
            bytes = &bytes[room..];
        }
        partial.extend_from_slice(bytes);
    }

    /// Prints an unfinished last line as a line of its own.
    fn flush_partial(&mut self, stream: Stream, controls: Controls, dst: &mut Vec<u8>) {
        let partial = self.partial.get_mut(stream);
        if !partial.is_empty() {
            prefixed_line(&self.name, partial, &[], controls, dst);
            clear_partial(partial);
        }
    }
}

/// Empties a partial line, and gives back the room of an unusually long one.
fn clear_partial(partial: &mut Vec<u8>) {
    partial.clear();
    shrink(partial, 4096);
}

fn shrink(buf: &mut Vec<u8>, keep: usize) {
    if buf.capacity() > keep {
        buf.shrink_to(keep);
    }
}

/// `HOST: ` and the line made of `start` and `rest`, shown as text: invalid UTF-8 becomes
/// U+FFFD rather than garbage or a crash (checked across the two parts, so a character
/// split between two chunks survives), and with [`Controls::Escaped`] control characters
/// are shown escaped.
fn prefixed_line(host: &str, start: &[u8], rest: &[u8], controls: Controls, dst: &mut Vec<u8>) {
    dst.extend_from_slice(host.as_bytes());
    dst.extend_from_slice(b": ");
    let line_at = dst.len();
    dst.extend_from_slice(start);
    dst.extend_from_slice(rest);
    let line = &dst[line_at..];
    let escape = controls == Controls::Escaped && may_have_controls(line);
    if escape || std::str::from_utf8(line).is_err() {
        let text = String::from_utf8_lossy(line).into_owned();
        dst.truncate(line_at);
        show_text(&text, controls, dst);
    }
    dst.push(b'\n');
}

/// Appends `text` with its control characters shown as `controls` says.
fn show_text(text: &str, controls: Controls, dst: &mut Vec<u8>) {
    match controls {
        Controls::Raw => dst.extend_from_slice(text.as_bytes()),
        Controls::Escaped => escape_controls(text, dst),
    }
}

/// The `--json` object of one host: these keys, in this order.
#[derive(Serialize)]
struct JsonResult<'a> {
    host: &'a str,
    status: Status,
    exit_code: Option<i32>,
    stdout: String,
    stderr: String,
    duration_ms: u64,
    error: Option<&'a str>,
    stdout_cut: bool,
    stderr_cut: bool,
}

fn json_line(buffers: &HostBuffers, outcome: &HostOutcome, out: &mut Vec<u8>) {
    let result = JsonResult {
        host: &buffers.name,
        status: outcome.status,
        exit_code: outcome.exit_code,
        stdout: buffers.held.stdout.to_text(),
        stderr: buffers.held.stderr.to_text(),
        duration_ms: millis(outcome.duration),
        error: outcome.error.as_deref(),
        stdout_cut: buffers.held.stdout.is_cut(),
        stderr_cut: buffers.held.stderr.is_cut(),
    };
    serde_json::to_writer(&mut *out, &result).expect("serializing to memory cannot fail");
    out.push(b'\n');
}

/// One stderr line for a host that did not succeed, so the reason is seen where it happened.
/// The reason may quote the agent, so its control characters are shown as `controls` says.
fn host_note(host: &str, outcome: &HostOutcome, controls: Controls, err: &mut Vec<u8>) {
    if outcome.is_ok() {
        return;
    }
    let _ = write!(err, "ctl: {host}: {}: ", outcome.status.as_str());
    show_text(outcome.error.as_deref().unwrap_or(""), controls, err);
    err.push(b'\n');
}

/// Prints each distinct stdout once, under the hosts that printed it, clush -b style, with
/// its control characters shown as `controls` says. With `diff`, the output most hosts
/// printed comes first, whole, and each other one as a unified diff against it (clush
/// `--diff`).
fn print_gathered(hosts: &[HostBuffers], controls: Controls, diff: bool, out: &mut Vec<u8>) {
    let mut groups: Vec<(&CappedOutput, Vec<&str>)> = Vec::new();
    let mut group_of: HashMap<OutputIdentity<'_>, usize> = HashMap::new();
    for host in hosts {
        let stdout = &host.held.stdout;
        if stdout.is_empty() {
            continue;
        }
        let index = *group_of.entry(stdout.identity()).or_insert_with(|| {
            groups.push((stdout, Vec::new()));
            groups.len() - 1
        });
        groups[index].1.push(&host.name);
    }
    if diff {
        // Most hosts first; among equals, the order they were first seen in.
        groups.sort_by_key(|(_, names)| std::cmp::Reverse(names.len()));
    }
    let reference = groups
        .first()
        .map(|(stdout, names)| (stdout.to_text(), names.join(",")));
    for (position, (stdout, names)) in groups.iter().enumerate() {
        let header = format!("{} ({})", names.join(","), names.len());
        let rule = "-".repeat(header.len().clamp(15, 79));
        let _ = writeln!(out, "{rule}\n{header}\n{rule}");
        let text = stdout.to_text();
        let shown_text = match (&reference, diff && position > 0) {
            (Some((common, common_hosts)), true) => similar::TextDiff::from_lines(common, &text)
                .unified_diff()
                .header(common_hosts, &names.join(","))
                .to_string(),
            _ => text,
        };
        show_text(&shown_text, controls, out);
        if !shown_text.ends_with('\n') {
            out.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str) -> HostBuffers {
        HostBuffers::new(name.into(), Mode::Lines, 0)
    }

    fn gathering(name: &str, stdout: &str) -> HostBuffers {
        let mut host = HostBuffers::new(name.into(), Mode::Gather { diff: false }, 1024);
        host.held.stdout.push(stdout.as_bytes());
        host
    }

    #[test]
    fn only_whole_lines_are_printed_and_the_rest_waits() {
        let mut web1 = host("web1");
        let mut dst = Vec::new();
        web1.push_lines(Stream::Stdout, Controls::Raw, b"one\ntw", &mut dst);
        assert_eq!(dst, b"web1: one\n");
        web1.push_lines(Stream::Stdout, Controls::Raw, b"o\nthree", &mut dst);
        assert_eq!(dst, b"web1: one\nweb1: two\n");
        web1.flush_partial(Stream::Stdout, Controls::Raw, &mut dst);
        assert_eq!(dst, b"web1: one\nweb1: two\nweb1: three\n");
    }

    #[test]
    fn invalid_utf8_is_shown_lossily() {
        let mut web1 = host("web1");
        let mut dst = Vec::new();
        web1.push_lines(Stream::Stderr, Controls::Raw, b"a\xffb\n", &mut dst);
        assert_eq!(String::from_utf8(dst).unwrap(), "web1: a\u{fffd}b\n");
    }

    #[test]
    fn a_character_split_between_two_chunks_survives() {
        let mut web1 = host("web1");
        let mut dst = Vec::new();
        let e_acute = "\u{e9}".as_bytes();
        web1.push_lines(Stream::Stdout, Controls::Raw, &e_acute[..1], &mut dst);
        web1.push_lines(
            Stream::Stdout,
            Controls::Raw,
            &[&e_acute[1..], b"\n"].concat(),
            &mut dst,
        );
        assert_eq!(String::from_utf8(dst).unwrap(), "web1: \u{e9}\n");
    }

    #[test]
    fn a_partial_line_never_holds_more_than_the_cap() {
        let mut web1 = host("web1");
        let mut dst = Vec::new();
        for _ in 0..5 {
            web1.push_lines(
                Stream::Stdout,
                Controls::Raw,
                &vec![b'x'; MAX_PARTIAL_LINE / 2 + 7],
                &mut dst,
            );
            assert!(web1.partial.stdout.len() <= MAX_PARTIAL_LINE);
        }
        web1.flush_partial(Stream::Stdout, Controls::Raw, &mut dst);
        let lines: Vec<&[u8]> = dst
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 3, "two full partial lines and the rest");
        let shown: usize = lines.iter().map(|l| l.len() - "web1: ".len()).sum();
        assert_eq!(shown, 5 * (MAX_PARTIAL_LINE / 2 + 7));
    }

    #[test]
    fn an_endless_line_is_cut_at_the_cap() {
        let mut web1 = host("web1");
        let mut dst = Vec::new();
        web1.push_lines(
            Stream::Stdout,
            Controls::Raw,
            &vec![b'x'; MAX_PARTIAL_LINE + 1],
            &mut dst,
        );
        assert_eq!(dst.len(), "web1: ".len() + MAX_PARTIAL_LINE + 1);
        assert_eq!(web1.partial.stdout.len(), 1);
    }

    #[test]
    fn gather_groups_identical_outputs_in_host_order() {
        let hosts = vec![
            gathering("a", "same\n"),
            gathering("b", "other\n"),
            gathering("c", "same\n"),
            gathering("d", ""),
        ];
        let mut out = Vec::new();
        print_gathered(&hosts, Controls::Raw, false, &mut out);
        let text = String::from_utf8(out).unwrap();
        let rule = "-".repeat(15);
        assert_eq!(
            text,
            format!("{rule}\na,c (2)\n{rule}\nsame\n{rule}\nb (1)\n{rule}\nother\n")
        );
    }

    #[test]
    fn gather_diff_shows_the_common_output_whole_and_the_others_as_diffs() {
        let hosts = vec![
            gathering("a", "x=1\ny=2\n"),
            gathering("b", "x=1\ny=3\n"),
            gathering("c", "x=1\ny=2\n"),
        ];
        let mut out = Vec::new();
        print_gathered(&hosts, Controls::Raw, true, &mut out);
        let text = String::from_utf8(out).unwrap();
        let rule = "-".repeat(15);
        assert_eq!(
            text,
            format!(
                "{rule}\na,c (2)\n{rule}\nx=1\ny=2\n{rule}\nb (1)\n{rule}\n\
                 --- a,c\n+++ b\n@@ -1,2 +1,2 @@\n x=1\n-y=2\n+y=3\n"
            )
        );
    }

    #[test]
    fn on_a_terminal_a_host_cannot_forge_lines_or_retitle_it() {
        // Tried: a line that retitles the terminal, then returns to the line's start to
        // print a fake line of another host, cut across two chunks; then an unfinished
        // last line with a bell and invalid UTF-8.
        let mut web1 = host("web1");
        let mut dst = Vec::new();
        web1.push_lines(Stream::Stdout, Controls::Escaped, b"up\x1b]0;pw", &mut dst);
        web1.push_lines(
            Stream::Stdout,
            Controls::Escaped,
            b"ned\x07\rweb2: ok\n",
            &mut dst,
        );
        web1.push_lines(
            Stream::Stdout,
            Controls::Escaped,
            b"\x07\xff\ttab",
            &mut dst,
        );
        web1.flush_partial(Stream::Stdout, Controls::Escaped, &mut dst);
        assert_eq!(
            String::from_utf8(dst).unwrap(),
            "web1: up\\x1b]0;pwned\\x07\\rweb2: ok\nweb1: \\x07\u{fffd}\ttab\n"
        );
    }

    #[test]
    fn off_a_terminal_the_bytes_are_kept() {
        let mut web1 = host("web1");
        let mut dst = Vec::new();
        web1.push_lines(Stream::Stdout, Controls::Raw, b"a\x1b[31mred\r\n", &mut dst);
        assert_eq!(dst, b"web1: a\x1b[31mred\r\n");
    }

    #[test]
    fn gathered_blocks_and_host_notes_are_escaped_on_a_terminal() {
        let hosts = vec![gathering("a", "x\x1b[2Jy\nz\n")];
        let mut out = Vec::new();
        print_gathered(&hosts, Controls::Escaped, false, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("\nx\\x1b[2Jy\nz\n"), "{text:?}");

        let outcome = HostOutcome::failure(
            Status::Failed,
            "refused: \x1b[1Agone",
            std::time::Duration::ZERO,
        );
        let mut err = Vec::new();
        host_note("web1", &outcome, Controls::Escaped, &mut err);
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "ctl: web1: failed: refused: \\x1b[1Agone\n"
        );
    }
}
