//! The process group a command runs in, as a guard: dropped before it is disarmed, it stops
//! everything in the group. Starting the command and following its output is
//! [`super::exec`]'s business; this module only signals.
//!
//! The group is killed by hand because `kill_on_drop` only reaches the shell, not what the
//! shell started (`sh -c 'a | b'`, background jobs); see tokio's `process` module docs.

use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// The command's process group. Dropping it before [`ProcessGroup::disarm`] stops the
/// whole group: SIGTERM at once and SIGKILL after the grace period, so no early return,
/// lost controller or panic leaves a command running for nobody.
pub struct ProcessGroup {
    pgid: Pid,
    kill_grace: Duration,
    armed: bool,
}

impl ProcessGroup {
    /// The group led by `pid` (started with `process_group(0)`).
    pub fn new(pid: u32, kill_grace: Duration) -> ProcessGroup {
        ProcessGroup {
            pgid: Pid::from_raw(pid as i32),
            kill_grace,
            armed: true,
        }
    }

    /// Sends `signal` to every process in the group.
    pub fn signal(&self, signal: Signal) {
        signal_group(self.pgid, signal);
    }

    /// The command ended by itself: leave whatever it put in the background alone.
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

fn signal_group(pgid: Pid, signal: Signal) {
    // ESRCH only means everyone in the group is gone already.
    if let Err(err) = killpg(pgid, signal) {
        if err != nix::errno::Errno::ESRCH {
            tracing::warn!(error = %err, ?signal, "cannot signal the process group");
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        signal_group(self.pgid, Signal::SIGTERM);
        let (pgid, grace) = (self.pgid, self.kill_grace);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    tokio::time::sleep(grace).await;
                    signal_group(pgid, Signal::SIGKILL);
                });
            }
            Err(_) => signal_group(pgid, Signal::SIGKILL),
        }
    }
}
