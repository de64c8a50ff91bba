//! The daily-rotated file both `agent` and `ctl` write their diagnostics to with
//! `--log-dir`.
//!
//! `tracing_appender::non_blocking` with its defaults preallocates a queue of 128,000
//! lines: about 4 MiB that every process touches at start (1,000 page faults, the larger
//! part of a one-host `ctl run`'s CPU and a third of its peak RSS). A few thousand lines
//! cover the bursts either side produces, such as one line per host of a large fan-out.
//! When a burst overruns the queue, the logging thread waits for the file writer rather
//! than dropping lines: writing to the page cache is quick, and an operator reading the
//! log after an incident needs every line.

use std::path::Path;

use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};

/// Lines queued for the writer thread before a logging call waits for it.
const QUEUED_LINES: usize = 4096;

/// A writer of `DIR/PREFIX.YYYY-MM-DD` files, rotated daily, on its own thread. Keep the
/// guard until the process ends: dropping it flushes what is queued.
pub fn daily_file_writer(dir: &Path, prefix: &str) -> (NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUED_LINES)
        .lossy(false)
        .finish(tracing_appender::rolling::daily(dir, prefix))
}
