//! What a transfer shows while it runs: on a terminal, one bar for the bytes moved across
//! all hosts (throughput and ETA) with the hosts' states beside it; elsewhere, or with
//! `--json`, nothing until each host's result line. `ctl bootstrap`, whose bytes go
//! through ssh, shows the same bar counting hosts instead.
//!
//! Host tasks report bytes through an atomic counter (no lock on the data path); the bar
//! reads it on its own schedule.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::outcome::HostOutcome;

/// The live display of one transfer.
pub struct TransferProgress {
    bar: Option<ProgressBar>,
    /// The bar counts hosts done, not bytes.
    counts_hosts: bool,
    hosts: usize,
    done: AtomicUsize,
    not_ok: AtomicUsize,
}

impl TransferProgress {
    /// A display for `hosts` hosts moving `total_bytes` in all (0 when not known up front,
    /// as for a pull: the total then grows as hosts announce their files). The bar is shown
    /// only when stderr is a terminal and `quiet_bar` is false.
    pub fn start(hosts: usize, total_bytes: u64, quiet_bar: bool) -> TransferProgress {
        let bar = (!quiet_bar && std::io::stderr().is_terminal()).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
            )
            .expect("the template is valid");
            bar.set_style(style);
            bar
        });
        let progress = TransferProgress {
            bar,
            counts_hosts: false,
            hosts,
            done: AtomicUsize::new(0),
            not_ok: AtomicUsize::new(0),
        };
        progress.update_message();
        progress
    }

    /// A display that counts `hosts` hosts done, for work whose bytes ctl does not see.
    pub fn hosts_only(hosts: usize, quiet_bar: bool) -> TransferProgress {
        let bar = (!quiet_bar && std::io::stderr().is_terminal()).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(hosts as u64), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{bar:30} {elapsed} {msg}")
                .expect("the template is valid");
            bar.set_style(style);
            bar.enable_steady_tick(std::time::Duration::from_millis(500));
            bar
        });
        let progress = TransferProgress {
            bar,
            counts_hosts: true,
            hosts,
            done: AtomicUsize::new(0),
            not_ok: AtomicUsize::new(0),
        };
        progress.update_message();
        progress
    }

    /// Counts bytes moved (by any host).
    pub fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    /// Adds to the total, for transfers whose size is learnt on the way.
    pub fn grow(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc_length(bytes);
        }
    }

    /// Records a host's end and prints `line` for it above the bar (or plainly).
    pub fn host_finished(&self, outcome: &HostOutcome, line: &str, to_stdout: bool) {
        self.host_done(outcome);
        let print = || {
            if to_stdout {
                crate::output::print_stdout(&format!("{line}\n"));
            } else {
                eprintln!("{line}");
            }
        };
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    /// Records a host's end, printing nothing.
    pub fn host_done(&self, outcome: &HostOutcome) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if !outcome.is_ok() {
            self.not_ok.fetch_add(1, Ordering::Relaxed);
        }
        if let (true, Some(bar)) = (self.counts_hosts, &self.bar) {
            bar.inc(1);
        }
        self.update_message();
    }

    /// Removes the bar, leaving the result lines.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn update_message(&self) {
        if let Some(bar) = &self.bar {
            let done = self.done.load(Ordering::Relaxed);
            let not_ok = self.not_ok.load(Ordering::Relaxed);
            let running = self.hosts - done;
            bar.set_message(format!(
                "{done}/{} hosts done ({not_ok} not ok), {running} to go",
                self.hosts
            ));
        }
    }
}
