//! What `ctl log` shows: the operation log read back as operations, for people and scripts.
//!
//! Records are grouped into operations by `op_id` (a start record and, once it finished,
//! an end record), filtered, and shown newest first. This module only reads; the record
//! type and the files are `audit`'s, and integrity checking is `audit::seal::verify`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Result};
use common::message::Stream;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::audit::kept::{kept_path, sha256_hex, Kept};
use crate::audit::record::{Event, HostRecord, Kind, Record};
use crate::outcome::count_statuses;
use crate::output::controls::{shown, Controls};

/// One operation as the log tells it: its start record and, if written, its end record,
/// each with the raw line it came from.
pub struct OpView {
    pub start: Option<(Record, String)>,
    pub end: Option<(Record, String)>,
}

/// Which operations `ctl log` lists.
#[derive(Debug, Default)]
pub struct Filter {
    pub host: Option<String>,
    pub group: Option<String>,
    pub user: Option<String>,
    pub kind: Option<Kind>,
    pub status: Option<StatusFilter>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub grep: Option<String>,
}

/// `--status`: how an operation ended as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFilter {
    /// Every host ok.
    Ok,
    /// Some host not ok (failed, timeout, cancelled, unreachable, auth_failed, error).
    Failed,
    /// No end record: still running, or `ctl` was killed.
    Incomplete,
}

impl OpView {
    fn any(&self) -> &Record {
        self.start
            .as_ref()
            .or(self.end.as_ref())
            .map(|(r, _)| r)
            .expect("an op has a record")
    }

    pub fn op_id(&self) -> &str {
        &self.any().op_id
    }

    fn results(&self) -> Option<&[HostRecord]> {
        self.end
            .as_ref()
            .and_then(|(end, _)| end.results.as_deref())
    }

    fn host_names(&self) -> Vec<&str> {
        match (&self.start, self.results()) {
            (Some((start, _)), _) if start.targets.is_some() => start
                .targets
                .iter()
                .flatten()
                .map(|t| t.host.as_str())
                .collect(),
            (_, Some(results)) => results.iter().map(|r| r.host.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    fn is_ok(&self) -> Option<bool> {
        self.results()
            .map(|results| results.iter().all(|r| r.status.is_success()))
    }

    /// The raw lines, start first, for `--json`.
    pub fn raw_lines(&self) -> impl Iterator<Item = &str> {
        self.start
            .iter()
            .chain(self.end.iter())
            .map(|(_, raw)| raw.as_str())
    }
}

/// Groups parsed records into operations, newest first (op ids sort by time).
pub fn collect_ops(lines: &[(crate::audit::seal::Location, String)]) -> Vec<OpView> {
    let mut ops: Vec<OpView> = Vec::new();
    let mut index_of: HashMap<String, usize> = HashMap::new();
    for (_, raw) in lines {
        // Lines that are not records are `ctl log verify`'s business, not the listing's.
        let Ok(record) = serde_json::from_str::<Record>(raw) else {
            continue;
        };
        let index = *index_of.entry(record.op_id.clone()).or_insert_with(|| {
            ops.push(OpView {
                start: None,
                end: None,
            });
            ops.len() - 1
        });
        let slot = match record.event {
            Event::Start => &mut ops[index].start,
            Event::End => &mut ops[index].end,
        };
        *slot = Some((record, raw.clone()));
    }
    ops.sort_by(|a, b| b.op_id().cmp(a.op_id()));
    ops
}

impl Filter {
    pub fn matches(&self, op: &OpView) -> bool {
        let record = op.any();
        let time = OffsetDateTime::parse(&record.time, &Rfc3339).ok();
        let hosts = op.host_names();
        let in_group = |group: &str| {
            op.start
                .iter()
                .flat_map(|(s, _)| s.targets.iter().flatten())
                .any(|t| t.groups.iter().any(|g| g == group))
        };
        let status_ok = |wanted: StatusFilter| {
            matches!(
                (wanted, op.is_ok()),
                (StatusFilter::Incomplete, None)
                    | (StatusFilter::Ok, Some(true))
                    | (StatusFilter::Failed, Some(false))
            )
        };
        let text = format!(
            "{} {}",
            record.command.as_deref().unwrap_or(""),
            record.argv.join(" ")
        );
        self.host
            .as_deref()
            .is_none_or(|host| hosts.contains(&host))
            && self.group.as_deref().is_none_or(in_group)
            && self.user.as_deref().is_none_or(|user| record.user == user)
            && self.kind.is_none_or(|kind| record.kind == kind)
            && self.status.is_none_or(status_ok)
            && self
                .since
                .is_none_or(|since| time.is_some_and(|t| t >= since))
            && self
                .until
                .is_none_or(|until| time.is_some_and(|t| t <= until))
            && self
                .grep
                .as_deref()
                .is_none_or(|needle| text.contains(needle))
    }
}

/// Parses `--since`/`--until`: RFC 3339 (`2026-11-22T03:00:00Z`) or an age like `90s`,
/// `30m`, `2h`, `3d`, `1w` before now.
pub fn parse_when(text: &str) -> Result<OffsetDateTime, String> {
    if let Ok(time) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(time);
    }
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => 0,
    };
    match number.parse::<i64>() {
        Ok(n) if seconds > 0 => {
            let age = time::Duration::seconds(n.saturating_mul(seconds));
            OffsetDateTime::now_utc()
                .checked_sub(age)
                .ok_or_else(|| format!("{text:?} reaches back before the calendar starts"))
        }
        _ => Err(format!(
            "{text:?} is neither RFC 3339 (2026-11-22T03:00:00Z) nor an age like 2h, 3d"
        )),
    }
}

/// Finds the one operation whose id starts with `prefix`.
///
/// # Errors
/// No operation, or more than one, matches.
pub fn find_op<'a>(ops: &'a [OpView], prefix: &str) -> Result<&'a OpView> {
    let wanted = prefix.to_ascii_uppercase();
    let found: Vec<&OpView> = ops
        .iter()
        .filter(|op| op.op_id().starts_with(&wanted))
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => bail!("no operation with an id starting with {prefix:?}"),
        many => bail!(
            "{} operations have ids starting with {prefix:?} ({}, ...): give more of the id",
            many.len(),
            many.iter()
                .take(3)
                .map(|op| op.op_id())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Colour only on a terminal, and never when NO_COLOR is set (no-color.org).
pub fn use_colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn paint(text: &str, colour: Option<&str>, enabled: bool) -> String {
    match (colour, enabled) {
        (Some(code), true) => format!("\x1b[{code}m{text}\x1b[0m"),
        _ => text.to_owned(),
    }
}

/// The one-line-per-operation table, newest first.
pub fn render_list(ops: &[&OpView], colour: bool) -> String {
    let header = [
        "ID",
        "TIME (UTC)",
        "USER",
        "OPERATOR",
        "KIND",
        "TARGETS",
        "RESULT",
        "DURATION",
        "COMMAND",
    ];
    let rows: Vec<([String; 9], Option<&str>)> = ops.iter().map(|op| list_row(op)).collect();
    let mut widths = header.map(str::len);
    for (row, _) in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    push_row(&mut out, &header, &widths, None, colour);
    for (row, result_colour) in &rows {
        push_row(&mut out, row, &widths, *result_colour, colour);
    }
    out
}

fn push_row(
    out: &mut String,
    cells: &[String],
    widths: &[usize],
    result_colour: Option<&str>,
    colour: bool,
) {
    let last = cells.len() - 1;
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        let pad = width.saturating_sub(cell.chars().count());
        let shown = if i == RESULT_COLUMN {
            paint(cell, result_colour, colour)
        } else {
            cell.clone()
        };
        if i == last {
            out.push_str(&shown);
        } else {
            let _ = write!(out, "{shown}{}  ", " ".repeat(pad));
        }
    }
    out.push('\n');
}

/// The column of `render_list`'s table that is coloured by how the operation ended.
const RESULT_COLUMN: usize = 6;

fn list_row(op: &OpView) -> ([String; 9], Option<&'static str>) {
    let record = op.any();
    let hosts = op.host_names();
    let targets = summarize_hosts(&hosts, 32);
    let (result, colour) = match (op.results(), &op.end) {
        (Some(results), Some((end, _))) => {
            let mut text = status_counts(results);
            if end.interrupted {
                text.push_str(" (interrupted)");
            }
            let colour = if results.iter().all(|r| r.status.is_success()) {
                "32"
            } else {
                "31"
            };
            (text, Some(colour))
        }
        _ => ("no end record".to_owned(), Some("33")),
    };
    let duration = op
        .end
        .as_ref()
        .and_then(|(end, _)| end.duration_ms)
        .map_or_else(|| "-".to_owned(), format_ms);
    let command = record.command.as_deref().unwrap_or("");
    let row = [
        record.op_id.clone(),
        short_time(&record.time),
        record.user.clone(),
        record.operator.name().to_owned(),
        record.kind.as_str().to_owned(),
        targets,
        result,
        duration,
        truncate(command, 60),
    ];
    (row, colour)
}

/// Shows one operation in full: who, what, when, each host's end, and each host's output,
/// with what hosts and agents said (kept output, reasons) shown as `controls` says.
pub fn render_show(op: &OpView, log_dir: &Path, colour: bool, controls: Controls) -> String {
    let record = op.any();
    let mut out = String::new();
    let _ = writeln!(out, "operation  {}", record.op_id);
    let _ = writeln!(out, "kind       {}", record.kind.as_str());
    if let Some(command) = &record.command {
        let _ = writeln!(out, "command    {command}");
    }
    let _ = writeln!(out, "user       {} on {}", record.user, record.origin);
    // Backed by the record's signature, unlike the user and machine above.
    let operator = format!(
        "{} {}",
        record.operator.fingerprint,
        shown(&record.operator.comment, controls)
    );
    let _ = writeln!(out, "operator   {}", operator.trim_end());
    let _ = writeln!(out, "argv       {}", record.argv.join(" "));
    if let Some((start, _)) = &op.start {
        let _ = writeln!(out, "started    {}", start.time);
    }
    match &op.end {
        Some((end, _)) => {
            let took = end
                .duration_ms
                .map_or_else(String::new, |ms| format!(" (took {})", format_ms(ms)));
            let interrupted = if end.interrupted {
                ", interrupted by the operator"
            } else {
                ""
            };
            let _ = writeln!(out, "ended      {}{took}{interrupted}", end.time);
        }
        None => {
            let _ = writeln!(
                out,
                "ended      no end record: still running, or ctl was killed"
            );
        }
    }
    let Some(results) = op.results() else {
        let _ = writeln!(out, "targets    {}", op.host_names().join(","));
        return out;
    };
    let _ = writeln!(out, "result     {}\n", status_counts(results));
    out.push_str(&host_table(results, colour, controls));
    for result in results {
        for (stream, kept) in [
            (Stream::Stdout, &result.kept_stdout),
            (Stream::Stderr, &result.kept_stderr),
        ] {
            if let Some(kept) = kept {
                out.push_str(&kept_section(
                    log_dir,
                    &record.op_id,
                    &result.host,
                    stream,
                    kept,
                    controls,
                ));
            }
        }
    }
    out
}

fn host_table(results: &[HostRecord], colour: bool, controls: Controls) -> String {
    let width = results
        .iter()
        .map(|r| r.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!(
        "{:width$}  {:11}  {:>4}  {:>9}  {:>9}  {:>9}  ERROR\n",
        "HOST", "STATUS", "EXIT", "DURATION", "STDOUT", "STDERR"
    );
    for r in results {
        let status = r.status.as_str();
        let painted = paint(
            &format!("{status:11}"),
            Some(if r.status.is_success() { "32" } else { "31" }),
            colour,
        );
        let exit = r
            .exit_code
            .map_or_else(|| "-".to_owned(), |c| c.to_string());
        // Trust and bootstrap say what they did with each host where others have no
        // error.
        let mut notes: Vec<String> = r.error.iter().cloned().collect();
        notes.extend(r.changes.iter().cloned());
        if let (None, Some(change)) = (&r.error, r.known_hosts) {
            notes.push(format!(
                "known_hosts: {} {}",
                change.as_str(),
                r.host_key.as_deref().unwrap_or("")
            ));
        }
        let note = notes.join("; ");
        let _ = writeln!(
            out,
            "{:width$}  {painted}  {exit:>4}  {:>9}  {:>9}  {:>9}  {}",
            r.host,
            format_ms(r.duration_ms),
            format_bytes(r.stdout_bytes),
            format_bytes(r.stderr_bytes),
            shown(&note, controls)
        );
    }
    out
}

fn kept_section(
    log_dir: &Path,
    op_id: &str,
    host: &str,
    stream: Stream,
    kept: &Kept,
    controls: Controls,
) -> String {
    let name = match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    let path = kept_path(log_dir, op_id, host, stream);
    let body = match std::fs::read(&path) {
        Err(err) => format!("[kept output unavailable: {}: {err}]\n", path.display()),
        Ok(bytes) if sha256_hex(&bytes) != kept.sha256 => {
            format!(
                "[kept output at {} does not match its record: altered]\n",
                path.display()
            )
        }
        Ok(bytes) => {
            let mut text = shown(&String::from_utf8_lossy(&bytes), controls).into_owned();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text
        }
    };
    format!("\n--- {host} {name} ---\n{body}")
}

fn status_counts(results: &[HostRecord]) -> String {
    count_statuses(results.iter().map(|result| result.status))
}

fn summarize_hosts(hosts: &[&str], max: usize) -> String {
    let list = hosts.join(",");
    let count = format!(
        "{} host{}",
        hosts.len(),
        if hosts.len() == 1 { "" } else { "s" }
    );
    if list.chars().count() + count.len() + 2 <= max {
        format!("{count}: {list}")
    } else {
        format!(
            "{count}: {}",
            truncate(&list, max.saturating_sub(count.len() + 2))
        )
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}

fn short_time(rfc3339: &str) -> String {
    // 2026-11-22T03:32:50.874593615Z -> 2026-11-22 03:32:50
    rfc3339
        .get(..19)
        .map_or_else(|| rfc3339.to_owned(), |t| t.replace('T', " "))
}

fn format_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.2}s", ms as f64 / 1000.0)
    }
}

fn format_bytes(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_timestamps_parse() {
        let now = OffsetDateTime::now_utc();
        let two_hours = parse_when("2h").unwrap();
        assert!((now - two_hours - time::Duration::hours(2)).abs() < time::Duration::seconds(5));
        assert_eq!(parse_when("2026-11-22T03:00:00Z").unwrap().hour(), 3);
        assert!(parse_when("yesterday").is_err());
        assert!(parse_when("5").is_err());
        // Tried: an age so large it leaves the calendar; an error, not a panic.
        assert!(parse_when("99999999999999w").is_err());
    }

    #[test]
    fn long_host_lists_are_summarized_with_the_count() {
        assert_eq!(summarize_hosts(&["web1", "web2"], 32), "2 hosts: web1,web2");
        let many: Vec<String> = (0..50).map(|i| format!("node{i:02}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let shown = summarize_hosts(&refs, 32);
        assert!(shown.starts_with("50 hosts: node00,"), "{shown}");
        assert!(shown.chars().count() <= 32, "{shown}");
    }
}
