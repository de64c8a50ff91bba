//! The daily-rotated files both `agent` and `ctl` write their diagnostics to with
//! `--log-dir`, and the cap on their total size.
//!
//! Files are `DIR/PREFIX.YYYY-MM-DD` (UTC), a new one every day. Their total size is capped
//! (`--log-max-bytes` on the agent, [`DEFAULT_MAX_BYTES`] otherwise): a day's file that grows
//! past an eighth of the cap is continued in `PREFIX.YYYY-MM-DD.1`, `.2` and so on, and
//! whenever a file is started the oldest files of this prefix are removed until the others
//! leave room for it. So the newest lines are always kept, and the files never hold more than
//! the cap plus one line. Only file names of exactly that shape are counted or removed.
//! Several processes writing the same prefix (two `ctl` runs at once) each count on their own,
//! so together they may briefly hold more.
//!
//! `tracing_appender::non_blocking` with its defaults preallocates a queue of 128,000
//! lines: about 4 MiB that every process touched at start (1,000 page faults, the larger
//! part of a one-host `ctl run`'s CPU and a third of its peak RSS). 16,384 lines (512 KiB)
//! still hold a burst of one line per host from several thousand hosts.
//!
//! When the file writer falls that far behind (a stalled log disk), further lines are
//! dropped rather than waited for: diagnostics must never stall the agent's sessions or
//! ctl's fan-out. What must not be lost is elsewhere: ctl's operation log is written and
//! synced by the operation itself, not through this queue. For the same reason a line that
//! cannot be written (a full disk) is dropped.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};

use crate::private_file::{create_private_dir, open_private_append};

/// Lines queued for the writer thread; beyond them, lines are dropped.
const QUEUED_LINES: usize = 16_384;

/// The cap on one prefix's files when the caller names none: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// A day's file is continued in a new part once it holds this fraction of the cap, so that
/// removing the oldest file never removes more than this fraction of what is kept.
const PARTS: u64 = 8;

/// A writer of `DIR/PREFIX.YYYY-MM-DD` files of at most [`DEFAULT_MAX_BYTES`] in all, on its
/// own thread. Keep the guard until the process ends: dropping it flushes what is queued.
/// A folder that cannot be written to loses the lines.
pub fn daily_file_writer(dir: &Path, prefix: &str) -> (NonBlocking, WorkerGuard) {
    non_blocking(CappedDailyFiles::new(dir, prefix, DEFAULT_MAX_BYTES))
}

/// Like [`daily_file_writer`], with at most `max_bytes` in all (at least 1), and the folder
/// created and today's file opened first, so that an unusable folder is reported now.
///
/// # Errors
/// The folder cannot be created, or today's file cannot be opened for appending.
pub fn capped_daily_file_writer(
    dir: &Path,
    prefix: &str,
    max_bytes: u64,
) -> io::Result<(NonBlocking, WorkerGuard)> {
    create_private_dir(dir)?;
    let mut files = CappedDailyFiles::new(dir, prefix, max_bytes);
    files.start_file(&today_utc())?;
    Ok(non_blocking(files))
}

fn non_blocking(files: CappedDailyFiles) -> (NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUED_LINES)
        .lossy(true)
        .finish(files)
}

/// Today's date in UTC as `YYYY-MM-DD`, the part of a file name that changes daily.
fn today_utc() -> String {
    let date = time::OffsetDateTime::now_utc().date();
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// The files of one prefix: the one being written and the older ones, oldest first.
#[derive(Debug)]
struct CappedDailyFiles {
    dir: PathBuf,
    prefix: String,
    max_bytes: u64,
    part_bytes: u64,
    older: VecDeque<(LogName, u64)>,
    current: Option<Current>,
}

#[derive(Debug)]
struct Current {
    name: LogName,
    file: File,
    len: u64,
}

/// A file's place in the order: its day, then its part (0 for the day's first file).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct LogName {
    date: String,
    part: u32,
}

impl CappedDailyFiles {
    /// Counts the files of `prefix` already in `dir` (none if it cannot be listed).
    fn new(dir: &Path, prefix: &str, max_bytes: u64) -> CappedDailyFiles {
        let max_bytes = max_bytes.max(1);
        let mut older: Vec<(LogName, u64)> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = LogName::parse(prefix, entry.file_name().to_str()?)?;
                let meta = entry.metadata().ok().filter(fs::Metadata::is_file)?;
                Some((name, meta.len()))
            })
            .collect();
        older.sort();
        CappedDailyFiles {
            dir: dir.to_owned(),
            prefix: prefix.to_owned(),
            max_bytes,
            part_bytes: (max_bytes / PARTS).max(1),
            older: older.into(),
            current: None,
        }
    }

    /// Writes one line, first starting a new file if the day changed or the current file
    /// is full. Lines are never split across files.
    fn write_line(&mut self, today: &str, line: &[u8]) -> io::Result<()> {
        let fits = |current: &Current| {
            current.name.date == today
                && (current.len == 0 || current.len + line.len() as u64 <= self.part_bytes)
        };
        if !self.current.as_ref().is_some_and(fits) {
            self.start_file(today)?;
        }
        let current = self.current.as_mut().expect("start_file sets it");
        current.file.write_all(line)?;
        current.len += line.len() as u64;
        Ok(())
    }

    /// Makes room for a new file, then opens it: today's newest part if it has room left
    /// (a restart on the same day), else the next part.
    fn start_file(&mut self, today: &str) -> io::Result<()> {
        if let Some(done) = self.current.take() {
            self.older.push_back((done.name, done.len));
        }
        let newest_today = self.older.back().filter(|(name, _)| name.date == today);
        let name = match newest_today {
            Some((name, len)) if *len < self.part_bytes => {
                let name = name.clone();
                self.older.pop_back();
                name
            }
            Some((name, _)) => LogName {
                date: today.to_owned(),
                part: name.part + 1,
            },
            None => LogName {
                date: today.to_owned(),
                part: 0,
            },
        };
        self.remove_oldest_beyond(self.max_bytes.saturating_sub(self.part_bytes));
        let path = self.dir.join(name.file_name(&self.prefix));
        let file = open_private_append(&path)?;
        let len = file.metadata()?.len();
        self.current = Some(Current { name, file, len });
        Ok(())
    }

    /// Removes the oldest files until the others hold at most `keep` bytes.
    fn remove_oldest_beyond(&mut self, keep: u64) {
        let mut held: u64 = self.older.iter().map(|(_, len)| len).sum();
        while held > keep {
            let Some((name, len)) = self.older.pop_front() else {
                return;
            };
            // Already gone (removed by hand, or by another process) is as good as removed.
            let _ = fs::remove_file(self.dir.join(name.file_name(&self.prefix)));
            held -= len;
        }
    }
}

impl Write for CappedDailyFiles {
    /// The non-blocking worker hands over one whole line per call.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_line(&today_utc(), buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.current {
            Some(current) => current.file.flush(),
            None => Ok(()),
        }
    }
}

impl LogName {
    /// `PREFIX.YYYY-MM-DD` is part 0, `PREFIX.YYYY-MM-DD.N` part N; anything else is not ours.
    fn parse(prefix: &str, file_name: &str) -> Option<LogName> {
        let rest = file_name.strip_prefix(prefix)?.strip_prefix('.')?;
        let (date, part) = match rest.split_once('.') {
            None => (rest, 0),
            Some((date, part)) if part.bytes().all(|b| b.is_ascii_digit()) => {
                (date, part.parse().ok().filter(|&n| n > 0)?)
            }
            Some(_) => return None,
        };
        let is_date = date.len() == 10
            && date.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                _ => b.is_ascii_digit(),
            });
        is_date.then(|| LogName {
            date: date.to_owned(),
            part,
        })
    }

    fn file_name(&self, prefix: &str) -> String {
        match self.part {
            0 => format!("{prefix}.{}", self.date),
            part => format!("{prefix}.{}.{part}", self.date),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names and sizes of the files in `dir`, sorted.
    fn files_in(dir: &Path) -> Vec<(String, u64)> {
        let mut files: Vec<(String, u64)> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let name = entry.file_name().into_string().unwrap();
                (name, entry.metadata().unwrap().len())
            })
            .collect();
        files.sort();
        files
    }

    fn total(files: &[(String, u64)]) -> u64 {
        files.iter().map(|(_, len)| len).sum()
    }

    #[test]
    fn only_names_of_our_shape_are_ours() {
        let name = |date: &str, part| LogName {
            date: date.to_owned(),
            part,
        };
        assert_eq!(
            LogName::parse("agent.log", "agent.log.2026-12-03"),
            Some(name("2026-12-03", 0))
        );
        assert_eq!(
            LogName::parse("agent.log", "agent.log.2026-12-03.12"),
            Some(name("2026-12-03", 12))
        );
        for other in [
            "agent.log",
            "agent.log.2026-12-03.0",
            "agent.log.2026-12-03.x",
            "agent.log.2026-12-3",
            "agent.log.2026-12-03.1.gz",
            "ctl.log.2026-12-03",
            "audit.jsonl",
        ] {
            assert_eq!(LogName::parse("agent.log", other), None, "{other}");
        }
        assert!(name("2026-12-03", 2) < name("2026-12-03", 10));
        assert!(name("2026-12-03", 10) < name("2026-12-04", 0));
    }

    #[test]
    fn the_oldest_days_are_removed_to_keep_the_total_under_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("audit.jsonl"), "not ours\n").unwrap();
        let mut files = CappedDailyFiles::new(dir.path(), "agent.log", 8_000);
        let line = [b'x'; 99].iter().chain(b"\n").copied().collect::<Vec<u8>>();
        for day in 1..=20 {
            for _ in 0..5 {
                files
                    .write_line(&format!("2026-11-{day:02}"), &line)
                    .unwrap();
            }
        }
        let held = files_in(dir.path());
        let ours: Vec<_> = held
            .iter()
            .filter(|(name, _)| name != "audit.jsonl")
            .cloned()
            .collect();
        assert!(total(&ours) <= 8_000, "{ours:?}");
        assert_eq!(
            ours.last().unwrap(),
            &("agent.log.2026-11-20".to_owned(), 500)
        );
        // 7,000 bytes of older days (a part of 1,000 kept free) and today's 500.
        assert_eq!(ours.first().unwrap().0, "agent.log.2026-11-06", "{ours:?}");
        assert!(held.iter().any(|(name, _)| name == "audit.jsonl"));
    }

    #[test]
    fn a_day_past_an_eighth_of_the_cap_goes_on_in_parts_and_keeps_its_newest_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = CappedDailyFiles::new(dir.path(), "agent.log", 8_000);
        for i in 0..1_000 {
            let line = format!("{i:09}\n");
            files.write_line("2026-12-03", line.as_bytes()).unwrap();
        }
        let held = files_in(dir.path());
        assert!(total(&held) <= 8_000, "{held:?}");
        assert!(held.iter().all(|(_, len)| *len <= 1_000), "{held:?}");
        let newest = held
            .iter()
            .max_by_key(|(name, _)| LogName::parse("agent.log", name))
            .unwrap();
        let text = fs::read_to_string(dir.path().join(&newest.0)).unwrap();
        assert!(text.ends_with("000000999\n"), "{newest:?}: {text:?}");
    }

    #[test]
    fn a_restart_on_the_same_day_appends_and_counts_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("agent.log.2026-12-01"), vec![b'o'; 3_600]).unwrap();
        fs::write(dir.path().join("agent.log.2026-12-03"), "earlier\n").unwrap();
        let mut files = CappedDailyFiles::new(dir.path(), "agent.log", 4_000);
        files.write_line("2026-12-03", b"later\n").unwrap();
        assert_eq!(
            files_in(dir.path()),
            vec![("agent.log.2026-12-03".to_owned(), 14)],
            "3,600 older bytes leave no room for a part of 500 under 4,000"
        );
        let text = fs::read_to_string(dir.path().join("agent.log.2026-12-03")).unwrap();
        assert_eq!(text, "earlier\nlater\n");
    }
}
