//! The daily-rotated file both `agent` and `ctl` write their diagnostics to with
//! `--log-dir`.
//!
//! `tracing_appender::non_blocking` with its defaults preallocates a queue of 128,000
//! lines: about 4 MiB that every process touched at start (1,000 page faults, the larger
//! part of a one-host `ctl run`'s CPU and a third of its peak RSS). 16,384 lines (512 KiB)
//! still hold a burst of one line per host from several thousand hosts.
//!
//! When the file writer falls that far behind (a stalled log disk), further lines are
//! dropped rather than waited for: diagnostics must never stall the agent's sessions or
//! ctl's fan-out. What must not be lost is elsewhere: ctl's operation log is written and
//! synced by the operation itself, not through this queue.

use std::path::Path;

use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};

/// Lines queued for the writer thread; beyond them, lines are dropped.
const QUEUED_LINES: usize = 16_384;

/// A writer of `DIR/PREFIX.YYYY-MM-DD` files, rotated daily, on its own thread. Keep the
/// guard until the process ends: dropping it flushes what is queued.
pub fn daily_file_writer(dir: &Path, prefix: &str) -> (NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUED_LINES)
        .lossy(true)
        .finish(crate::daily_file::DailyFile::new(dir, prefix))
}
