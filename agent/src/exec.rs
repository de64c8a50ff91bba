//! One command: `sh -c` in its own process group, its output streamed back as it comes, and
//! its end reported, whether it exits, times out, is cancelled or loses its controller.
//!
//! The command gets a process group of its own so that a timeout or a cancel can stop
//! everything it started (`sh -c 'a | b'`, background jobs), not just the shell. Output is
//! read in chunks and each chunk is sent before the next read: when the controller reads
//! slowly, the send waits, the pipe fills, and the command blocks in `write`. That is the
//! backpressure; nothing is buffered without bound. See tokio's `process` module docs for
//! why the group must be killed by hand (`kill_on_drop` only reaches the shell).

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use common::channel::Channel;
use common::frame::MAX_DATA_CHUNK;
use common::message::{EndReason, Packet, Reply, Request, Stream, HEARTBEAT_INTERVAL};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::session::send_within;

/// How long to keep reading output after the shell exits while something it left in the
/// background still holds the pipes open. Background jobs keep running; we just stop waiting.
const LINGER_AFTER_EXIT: Duration = Duration::from_secs(2);

/// The bounds one command runs under.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Kill the command after this long.
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// How long the controller may refuse our output before we give up on it.
    pub send_timeout: Duration,
}

/// Runs `command`, streaming its output over `channel` and finishing with [`Reply::Exit`]
/// (or [`Reply::Error`] when it cannot be started).
///
/// # Errors
/// A reason to drop the connection: the controller vanished or stalled. The command's
/// process group has been killed by then.
pub async fn run(
    channel: &mut Channel<TcpStream>,
    command: &str,
    limits: &Limits,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let mut child = match spawn(command) {
        Ok(child) => child,
        Err(err) => {
            tracing::warn!(error = %err, "cannot start command");
            let reply = Reply::Error {
                message: format!("cannot start sh: {err}"),
            };
            return send_within(channel, &Packet::Control(reply), limits.send_timeout).await;
        }
    };
    let pid = child.id().expect("a just-spawned child has a pid");
    let group = ProcessGroup::new(pid, limits.kill_grace);
    tracing::Span::current().record("pid", pid);
    tracing::info!(command, "command started");
    let started = std::time::Instant::now();
    send_within(
        channel,
        &Packet::Control(Reply::Started { pid }),
        limits.send_timeout,
    )
    .await?;

    let (status, reason) = stream_until_exit(channel, &mut child, &group, limits, shutdown).await?;
    let exit = Reply::Exit {
        code: status.code(),
        signal: status.signal(),
        reason,
    };
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
    // Otherwise the guard, dropped at the end of this function, makes sure of the kill:
    // members of the group that ignored SIGTERM get SIGKILL after the grace period even
    // when the shell itself is gone already.
    send_within(channel, &Packet::Control(exit), limits.send_timeout).await
}

fn spawn(command: &str) -> std::io::Result<Child> {
    Command::new("sh")
        .arg("-c")
        .arg(command)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
}

/// What the loop in [`stream_until_exit`] knows about the command so far.
struct Progress {
    status: Option<ExitStatus>,
    reason: EndReason,
    /// When set, the group gets SIGKILL at this instant (SIGTERM was sent already).
    kill_at: Option<Instant>,
    /// When set, we stop waiting for the pipes to close at this instant.
    stop_reading_at: Option<Instant>,
}

async fn stream_until_exit(
    channel: &mut Channel<TcpStream>,
    child: &mut Child,
    group: &ProcessGroup,
    limits: &Limits,
    shutdown: &CancellationToken,
) -> Result<(ExitStatus, EndReason), String> {
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut out_buf = BytesMut::with_capacity(MAX_DATA_CHUNK);
    let mut err_buf = BytesMut::with_capacity(MAX_DATA_CHUNK);
    let timeout_at = limits.timeout.map(|t| Instant::now() + t);
    let mut heartbeat =
        tokio::time::interval_at(Instant::now() + HEARTBEAT_INTERVAL, HEARTBEAT_INTERVAL);
    let mut progress = Progress {
        status: None,
        reason: EndReason::Exited,
        kill_at: None,
        stop_reading_at: None,
    };
    loop {
        let reading = stdout.is_some() || stderr.is_some();
        if let Some(status) = progress.status {
            if !reading {
                return Ok((status, progress.reason));
            }
        }
        tokio::select! {
            read = read_chunk(&mut stdout, &mut out_buf), if stdout.is_some() => {
                forward(channel, Stream::Stdout, read, &mut stdout, &mut out_buf, limits).await?;
            }
            read = read_chunk(&mut stderr, &mut err_buf), if stderr.is_some() => {
                forward(channel, Stream::Stderr, read, &mut stderr, &mut err_buf, limits).await?;
            }
            status = child.wait(), if progress.status.is_none() => {
                let status = status.map_err(|err| format!("waiting for the command: {err}"))?;
                progress.status = Some(status);
                let linger = progress.kill_at.map_or(LINGER_AFTER_EXIT, |_| limits.kill_grace);
                progress.stop_reading_at = Some(Instant::now() + linger);
            }
            // Only while nothing has stopped the command yet: once it is being stopped, an
            // expired deadline must not fire again on every turn of the loop.
            _ = sleep_until(timeout_at), if progress.reason == EndReason::Exited && progress.status.is_none() => {
                tracing::info!("timeout expired, stopping the command");
                stop(group, &mut progress, EndReason::Timeout, limits);
            }
            _ = sleep_until(progress.kill_at), if progress.kill_at.is_some() => {
                group.signal(Signal::SIGKILL);
                progress.kill_at = None;
            }
            _ = sleep_until(progress.stop_reading_at), if progress.stop_reading_at.is_some() => {
                // Something in the background still holds the pipes; stop listening to it.
                stdout = None;
                stderr = None;
            }
            request = channel.recv::<Request>() => match request {
                Ok(Some(Packet::Control(Request::Cancel))) => {
                    tracing::info!("cancelled by the controller");
                    stop(group, &mut progress, EndReason::Cancelled, limits);
                }
                // Whatever else arrives, the controller is gone or broken: the connection
                // ends here, and dropping the group's guard stops the command.
                Ok(Some(other)) => {
                    return Err(format!("unexpected message while a command runs: {}", other.summary()));
                }
                Ok(None) => return Err("the controller closed the connection mid-command".into()),
                Err(err) => return Err(err.to_string()),
            },
            _ = shutdown.cancelled(), if progress.reason == EndReason::Exited && progress.status.is_none() => {
                stop(group, &mut progress, EndReason::Shutdown, limits);
            }
            _ = heartbeat.tick() => {
                send_within(channel, &Packet::Control(Reply::Heartbeat), limits.send_timeout).await?;
            }
        }
    }
}

/// Sends SIGTERM to the group now and schedules SIGKILL after the grace period.
fn stop(group: &ProcessGroup, progress: &mut Progress, reason: EndReason, limits: &Limits) {
    // Once the shell has exited by itself, the command's result stands: a cancel or
    // shutdown during the linger does not turn it into `cancelled`.
    if progress.reason != EndReason::Exited || progress.status.is_some() {
        return;
    }
    progress.reason = reason;
    group.signal(Signal::SIGTERM);
    progress.kill_at = Some(Instant::now() + limits.kill_grace);
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
    channel: &mut Channel<TcpStream>,
    stream: Stream,
    read: std::io::Result<usize>,
    pipe: &mut Option<R>,
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<(), String> {
    match read {
        Ok(0) => *pipe = None,
        Ok(_) => {
            let chunk = Packet::Output(stream, buf.split().freeze());
            send_within(channel, &chunk, limits.send_timeout).await?;
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

/// The command's process group. Dropping it before [`ProcessGroup::disarm`] stops the
/// whole group: SIGTERM at once and SIGKILL after the grace period, so no early return,
/// lost controller or panic leaves a command running for nobody.
struct ProcessGroup {
    pgid: Pid,
    kill_grace: Duration,
    armed: bool,
}

impl ProcessGroup {
    fn new(pid: u32, kill_grace: Duration) -> ProcessGroup {
        ProcessGroup {
            pgid: Pid::from_raw(pid as i32),
            kill_grace,
            armed: true,
        }
    }

    fn signal(&self, signal: Signal) {
        signal_group(self.pgid, signal);
    }

    /// The command ended by itself: leave whatever it put in the background alone.
    fn disarm(mut self) {
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
