//! `exec`: one command, `sh -c` in its own process group, its output streamed back as it
//! comes, and its end reported, whether it exits, times out, is cancelled or loses its
//! controller. Signalling the group is [`super::process_group`]'s.
//!
//! The command gets a process group of its own so that a timeout or a cancel can stop
//! everything it started (`sh -c 'a | b'`, background jobs), not just the shell. Output is
//! read in chunks and each chunk is sent before the next read: when the controller reads
//! slowly, the send waits, the pipe fills, and the command blocks in `write`. That is the
//! backpressure; nothing is buffered without bound.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use common::frame::MAX_DATA_CHUNK;
use common::message::{EndReason, Packet, Reply, Request, Stream, HEARTBEAT_INTERVAL};
use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::process_group::ProcessGroup;
use crate::command_env::OP_ID_VAR;
use crate::config::Config;
use crate::connection::Connection;
use crate::error::{ConnectionError, Refusal, RequestError};

/// An `exec` request.
#[derive(Debug)]
pub struct Exec {
    /// The shell command line.
    pub command: String,
    /// Kill the command after this long.
    pub timeout: Option<Duration>,
    /// The controller's operation id, for the logs.
    pub op_id: Option<String>,
    /// Variables set after the agent's own (`ctl run -e`).
    pub env: Vec<(String, String)>,
    /// The folder to start in (`ctl run -C`); relative to the agent's working folder.
    pub cwd: Option<String>,
}

impl Exec {
    /// The `op` span the command runs in; its pid is recorded once it has one.
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "op",
            op_id = self.op_id.as_deref().unwrap_or("-"),
            kind = "exec",
            pid = tracing::field::Empty
        )
    }

    /// Runs the command, streaming its output over `channel`, and returns its
    /// [`Reply::Exit`].
    ///
    /// # Errors
    /// [`Refusal::CannotStart`] when the shell cannot be started; a [`ConnectionError`]
    /// when the controller vanished or stalled, by which time the command's process group
    /// has been stopped.
    pub async fn apply(
        self,
        channel: &mut Connection,
        config: &Config,
        shutdown: &CancellationToken,
    ) -> Result<Reply, RequestError> {
        let limits = Limits {
            timeout: self.timeout,
            kill_grace: config.kill_grace,
            send_timeout: config.idle_timeout,
        };
        if let Some(why) = self
            .env
            .iter()
            .find_map(|(name, value)| common::command_vars::refusal(name, value))
        {
            return Err(Refusal::BadVariable(why).into());
        }
        // Checked first so the refusal names the folder; sh itself would say only that it
        // could not be started. The command runs as the agent's user, so where it starts
        // is no boundary of ours.
        if let Some(cwd) = &self.cwd {
            if let Err(source) = std::fs::read_dir(cwd) {
                let path = cwd.into();
                return Err(Refusal::NoWorkingFolder { path, source }.into());
            }
        }
        let mut child = spawn(&self, &config.command_env).map_err(Refusal::CannotStart)?;
        let pid = child.id().expect("a just-spawned child has a pid");
        let group = ProcessGroup::new(pid, limits.kill_grace);
        tracing::Span::current().record("pid", pid);
        tracing::info!(command = self.command, "command started");
        let started = std::time::Instant::now();
        channel
            .send_within(
                &Packet::Control(Reply::Started { pid }),
                limits.send_timeout,
            )
            .await?;

        let (status, reason) =
            stream_until_exit(channel, &mut child, &group, &limits, shutdown).await?;
        tracing::info!(
            code = status.code(),
            signal = status.signal(),
            ?reason,
            duration_ms = started.elapsed().as_millis() as u64,
            "command finished"
        );
        if reason == EndReason::Exited {
            group.disarm();
        }
        // Otherwise the guard, dropped here, makes sure of the kill: members of the group
        // that ignored SIGTERM get SIGKILL after the grace period even when the shell
        // itself is gone already.
        Ok(Reply::Exit {
            code: status.code(),
            signal: status.signal(),
            reason,
        })
    }
}

/// How long to keep reading output after the shell exits while something it left in the
/// background still holds the pipes open. Background jobs keep running; we just stop waiting.
const LINGER_AFTER_EXIT: Duration = Duration::from_secs(2);

/// The shell every command runs in, `-c COMMAND`.
const SHELL: &str = "/bin/sh";

/// The bounds one command runs under.
#[derive(Debug, Clone)]
struct Limits {
    /// Kill the command after this long.
    timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL.
    kill_grace: Duration,
    /// How long the controller may refuse our output before we give up on it.
    send_timeout: Duration,
}

/// Starts `/bin/sh -c COMMAND` with `env`, then the request's own variables, and nothing
/// else of the agent's environment (see [`crate::command_env`]), in the request's folder. Descriptors are not handled here: every one the agent holds is
/// close-on-exec (see [`crate::descriptors`]).
///
/// The shell is named by its path: with a bare `sh` and a `PATH` of the command's own,
/// the standard library cannot use `posix_spawn` (which would search the agent's `PATH`)
/// and forks the whole agent instead, copying its page tables for every command.
fn spawn(exec: &Exec, env: &[(OsString, OsString)]) -> std::io::Result<Child> {
    let mut sh = Command::new(SHELL);
    sh.env_clear()
        .envs(env.iter().cloned())
        .envs(exec.env.iter().map(|(name, value)| (name, value)));
    if let Some(op_id) = &exec.op_id {
        sh.env(OP_ID_VAR, op_id);
    }
    if let Some(cwd) = &exec.cwd {
        sh.current_dir(cwd);
    }
    sh.arg("-c")
        .arg(&exec.command)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
}

/// What the loop in [`stream_until_exit`] knows about the command so far: its exit status
/// once it has one, why it is ending, and the deadlines still ahead.
struct CommandState {
    status: Option<ExitStatus>,
    reason: EndReason,
    /// When set, the group gets SIGKILL at this instant (SIGTERM was sent already).
    kill_at: Option<Instant>,
    /// When set, we stop waiting for the pipes to close at this instant.
    stop_reading_at: Option<Instant>,
}

async fn stream_until_exit(
    channel: &mut Connection,
    child: &mut Child,
    group: &ProcessGroup,
    limits: &Limits,
    shutdown: &CancellationToken,
) -> Result<(ExitStatus, EndReason), ConnectionError> {
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut out_buf = BytesMut::with_capacity(MAX_DATA_CHUNK);
    let mut err_buf = BytesMut::with_capacity(MAX_DATA_CHUNK);
    let timeout_at = limits.timeout.map(|t| Instant::now() + t);
    let mut heartbeat =
        tokio::time::interval_at(Instant::now() + HEARTBEAT_INTERVAL, HEARTBEAT_INTERVAL);
    let mut state = CommandState {
        status: None,
        reason: EndReason::Exited,
        kill_at: None,
        stop_reading_at: None,
    };
    loop {
        let reading = stdout.is_some() || stderr.is_some();
        if let Some(status) = state.status {
            if !reading {
                return Ok((status, state.reason));
            }
        }
        tokio::select! {
            read = read_chunk(&mut stdout, &mut out_buf), if stdout.is_some() => {
                forward(channel, Stream::Stdout, read, &mut stdout, &mut out_buf, limits).await?;
            }
            read = read_chunk(&mut stderr, &mut err_buf), if stderr.is_some() => {
                forward(channel, Stream::Stderr, read, &mut stderr, &mut err_buf, limits).await?;
            }
            status = child.wait(), if state.status.is_none() => {
                let status = status.map_err(ConnectionError::WaitForCommand)?;
                state.status = Some(status);
                let linger = state.kill_at.map_or(LINGER_AFTER_EXIT, |_| limits.kill_grace);
                state.stop_reading_at = Some(Instant::now() + linger);
            }
            // Only while nothing has stopped the command yet: once it is being stopped, an
            // expired deadline must not fire again on every turn of the loop.
            _ = sleep_until(timeout_at), if state.reason == EndReason::Exited && state.status.is_none() => {
                tracing::info!("timeout expired, stopping the command");
                stop(group, &mut state, EndReason::Timeout, limits);
            }
            _ = sleep_until(state.kill_at), if state.kill_at.is_some() => {
                group.signal(Signal::SIGKILL);
                state.kill_at = None;
            }
            _ = sleep_until(state.stop_reading_at), if state.stop_reading_at.is_some() => {
                // Something in the background still holds the pipes; stop listening to it.
                stdout = None;
                stderr = None;
            }
            request = channel.recv::<Request>() => match request {
                Ok(Some(Packet::Control(Request::Cancel))) => {
                    tracing::info!("cancelled by the controller");
                    stop(group, &mut state, EndReason::Cancelled, limits);
                }
                // Whatever else arrives, the controller is gone or broken: the connection
                // ends here, and dropping the group's guard stops the command.
                Ok(Some(other)) => {
                    return Err(ConnectionError::UnexpectedWhileRunning(other.summary()));
                }
                Ok(None) => return Err(ConnectionError::ClosedMidCommand),
                Err(err) => return Err(err.into()),
            },
            _ = shutdown.cancelled(), if state.reason == EndReason::Exited && state.status.is_none() => {
                stop(group, &mut state, EndReason::Shutdown, limits);
            }
            _ = heartbeat.tick() => {
                channel.send_within(&Packet::Control(Reply::Heartbeat), limits.send_timeout).await?;
            }
        }
    }
}

/// Sends SIGTERM to the group now and schedules SIGKILL after the grace period.
fn stop(group: &ProcessGroup, state: &mut CommandState, reason: EndReason, limits: &Limits) {
    // Once the shell has exited by itself, the command's result stands: a cancel or
    // shutdown during the linger does not turn it into `cancelled`.
    if state.reason != EndReason::Exited || state.status.is_some() {
        return;
    }
    state.reason = reason;
    group.signal(Signal::SIGTERM);
    state.kill_at = Some(Instant::now() + limits.kill_grace);
}

/// Reads what the pipe has, up to one chunk. Returns 0 at end of file.
///
/// # Cancel safety
/// Cancel safe: `read_buf` either read into `buf` or did nothing.
async fn read_chunk<R: AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    let pipe = pipe.as_mut().expect("guarded by the select precondition");
    buf.reserve(MAX_DATA_CHUNK);
    let room = MAX_DATA_CHUNK.saturating_sub(buf.len());
    let mut limited = (&mut *pipe).take(room as u64);
    limited.read_buf(buf).await
}

/// Sends what was read, or closes the pipe at end of file or on a read error.
async fn forward<R>(
    channel: &mut Connection,
    stream: Stream,
    read: std::io::Result<usize>,
    pipe: &mut Option<R>,
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<(), ConnectionError> {
    match read {
        Ok(0) => *pipe = None,
        Ok(_) => {
            let chunk = Packet::<Reply>::Output(stream, buf.split().freeze());
            channel.send_within(&chunk, limits.send_timeout).await?;
        }
        Err(err) => {
            tracing::warn!(error = %err, ?stream, "reading the command's output failed");
            *pipe = None;
        }
    }
    Ok(())
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(command: &str, op_id: Option<&str>) -> Exec {
        Exec {
            command: command.into(),
            timeout: None,
            op_id: op_id.map(str::to_owned),
            env: Vec::new(),
            cwd: None,
        }
    }

    #[tokio::test]
    async fn an_op_id_with_a_nul_is_refused_not_a_panic() {
        let err =
            spawn(&exec("true", Some("op\0id")), &[]).expect_err("a NUL cannot reach the env");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    }

    #[tokio::test]
    async fn the_command_gets_only_the_given_environment() {
        let env = [(OsString::from("PATH"), OsString::from("/usr/bin:/bin"))];
        let mut request = exec("env", Some("01OPID"));
        request.env = vec![("DEPLOY".into(), "blue".into())];
        let child = spawn(&request, &env).expect("can start sh");
        let out = child.wait_with_output().await.expect("sh runs");
        let text = String::from_utf8(out.stdout).unwrap();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|line| line.split_once('=').map(|(name, _)| name))
            .collect();
        // PWD, SHLVL and _ are the shell's own, depending on which shell `sh` is.
        let shells_own = ["PWD", "SHLVL", "_"];
        let mut others: Vec<&&str> = names.iter().filter(|n| !shells_own.contains(n)).collect();
        others.sort_unstable();
        assert_eq!(others, [&"DEPLOY", &"MUSTER_OP_ID", &"PATH"], "{text}");
        assert!(text.contains("MUSTER_OP_ID=01OPID\n"), "{text}");
        assert!(text.contains("DEPLOY=blue\n"), "{text}");
    }
}
