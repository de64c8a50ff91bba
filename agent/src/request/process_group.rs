//! The process group a command runs in, as a guard: dropped before it is disarmed, it stops
//! everything in the group. Starting the command and following its output is
//! [`super::exec`]'s business; this module only signals.
//!
//! The group is killed by hand because `kill_on_drop` only reaches the shell, not what the
//! shell started (`sh -c 'a | b'`, background jobs); see tokio's `process` module docs.
//!
//! Every group that may still hold processes of a command nobody waits for any more is
//! also listed in one registry for the whole agent, so that the agent's last act, however
//! it ends (a signal, an error out of the accept loop, a panic that unwinds `main`), is
//! [`stop_all`]: the guards alone cannot be relied on then, because the SIGKILL they
//! schedule needs a runtime that is being torn down.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

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

/// Groups that are armed, or whose SIGKILL is still to come: what [`stop_all`] stops.
static LIVE_GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// The registry, even after a panic elsewhere poisoned its lock: a set of numbers cannot be
/// left half-changed, and stopping commands matters most after a panic.
fn live_groups() -> MutexGuard<'static, BTreeSet<i32>> {
    LIVE_GROUPS.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ProcessGroup {
    /// The group led by `pid` (started with `process_group(0)`).
    pub fn new(pid: u32, kill_grace: Duration) -> ProcessGroup {
        let pgid = Pid::from_raw(pid as i32);
        live_groups().insert(pgid.as_raw());
        ProcessGroup {
            pgid,
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
        live_groups().remove(&self.pgid.as_raw());
    }
}

/// Stops every command group the agent still answers for: SIGTERM to each, then SIGKILL
/// to those with a process still running after `grace`. Returns how many groups had one
/// at the start. Blocks the calling thread, so it is for the agent's last moments, after
/// the runtime is gone.
pub fn stop_all(grace: Duration) -> usize {
    let groups: Vec<Pid> = std::mem::take(&mut *live_groups())
        .into_iter()
        .map(Pid::from_raw)
        .filter(|&pgid| has_running_member(pgid))
        .collect();
    if groups.is_empty() {
        return 0;
    }
    for &pgid in &groups {
        signal_group(pgid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && groups.iter().any(|&pgid| has_running_member(pgid)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for &pgid in &groups {
        signal_group(pgid, Signal::SIGKILL);
    }
    groups.len()
}

/// True while a process of the group runs. Zombies do not count: they run no code, and
/// one the slow reaper of a container has not collected yet would otherwise hold the
/// agent's exit for the whole grace period.
fn has_running_member(pgid: Pid) -> bool {
    if killpg(pgid, None).is_err() {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|field| field.parse::<i32>().ok());
        pgrp == Some(pgid.as_raw()) && !matches!(state, Some("Z" | "X"))
    })
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
        let kill = move || {
            signal_group(pgid, Signal::SIGKILL);
            live_groups().remove(&pgid.as_raw());
        };
        // When the runtime is shutting down, this task may never run; the group stays in
        // the registry and `stop_all` sends the SIGKILL instead.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    tokio::time::sleep(grace).await;
                    kill();
                });
            }
            Err(_) => kill(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::Command;

    /// Starts `script` in a group of its own and waits until it prints its first line.
    fn start_group(script: &str) -> std::process::Child {
        let mut child = Command::new("sh")
            .args(["-c", script])
            .process_group(0)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("can start sh");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("can read the script's first line");
        child
    }

    #[tokio::test]
    async fn a_panic_in_a_session_stops_its_command() {
        // Tried: a task holding the guard of a running `sleep` panics, as a session would.
        let mut child = start_group("echo ready; exec sleep 300");
        let pid = child.id();
        let session = tokio::spawn(async move {
            let _group = ProcessGroup::new(pid, Duration::from_secs(1));
            panic!("a bug in a session");
        });
        assert!(session.await.expect_err("the task panicked").is_panic());
        let status = child.wait().expect("can wait for sleep");
        assert_eq!(status.signal(), Some(Signal::SIGTERM as i32), "{status:?}");
    }

    #[test]
    fn stop_all_kills_a_group_that_ignores_sigterm() {
        // Tried: a registered group whose shell ignores SIGTERM, left over when the agent
        // ends: it must get SIGKILL after the grace period.
        let mut child = start_group("trap '' TERM; echo ready; while :; do sleep 1; done");
        let group = ProcessGroup::new(child.id(), Duration::from_secs(1));
        std::mem::forget(group);
        assert!(stop_all(Duration::from_millis(200)) >= 1);
        let status = child.wait().expect("can wait for sh");
        assert_eq!(status.signal(), Some(Signal::SIGKILL as i32), "{status:?}");
    }
}
