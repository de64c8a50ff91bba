//! `ctl run`'s conversation with one agent: send the command, pass its output on as it
//! arrives, and turn its end (exit, timeout, cancel, a lost agent) into an outcome.
//!
//! Each chunk of output goes two ways: into the host's kept copy for the operation log
//! ([`Capture`], owned by the host's task) and to the printer ([`OutputSink`]), which
//! shows it. This module only hands it on.

use std::time::{Duration, Instant};

use common::channel::{Channel, RecvError};
use common::message::{EndReason, Packet, Reply, Request};

use super::{protocol_error, sleep_until, Connector, Stop, Stream};
use crate::audit::kept::Capture;
use crate::inventory::Host;
use crate::outcome::{HostOutcome, Status};
use crate::output::outdir::HostFiles;
use crate::output::OutputSink;
use crate::stream_pair::StreamPair;

/// How long, after asking an agent to cancel, we wait for its final report. The agent needs
/// its kill grace (5 s by default) to escalate from SIGTERM to SIGKILL.
const CANCEL_REPORT_WAIT: Duration = Duration::from_secs(10);

/// Runs one command on one host, keeping its output in `kept` and handing it to `sink` as
/// it arrives.
pub async fn run(
    connector: &Connector,
    host: &Host,
    exec: Request,
    mut output: HostOutput<'_>,
    stop: &Stop,
) -> HostOutcome {
    let started = Instant::now();
    let connected =
        connector.connect_unless_stopped(host, stop, started, Some(Packet::Control(exec)));
    let (mut channel, host_key) = match connected.await {
        Ok(connected) => connected,
        Err(outcome) => return outcome,
    };
    let silence = connector.silence_timeout;
    let outcome = follow_command(&mut channel, silence, &mut output, stop, started).await;
    // However the command ended, what arrived before it did counts: a host lost
    // mid-command may have printed plenty.
    HostOutcome {
        stdout_bytes: output.kept.stdout.total(),
        stderr_bytes: output.kept.stderr.total(),
        ..outcome
    }
    .with_host_key(host_key)
}

/// Where one host's output goes: its kept copy, the printer, and with `--outdir` its
/// files.
pub struct HostOutput<'a> {
    pub kept: &'a mut StreamPair<Capture>,
    pub sink: &'a OutputSink,
    pub files: Option<&'a mut HostFiles>,
}

/// Reads the agent's replies until the command's `Exit`, passing output on; on Ctrl-C asks
/// the agent to cancel and waits (boundedly) for its report.
async fn follow_command(
    channel: &mut Channel<Stream>,
    silence_timeout: Duration,
    output: &mut HostOutput<'_>,
    stop: &Stop,
    started: Instant,
) -> HostOutcome {
    let mut cancel_sent = false;
    let mut report_deadline = None;
    loop {
        let packet = tokio::select! {
            _ = stop.cancel.cancelled(), if !cancel_sent => {
                cancel_sent = true;
                report_deadline = Some(tokio::time::Instant::now() + CANCEL_REPORT_WAIT);
                let sent = channel.send_within(&Packet::Control(Request::Cancel), silence_timeout).await;
                if sent.is_err() {
                    return HostOutcome::failure(Status::Cancelled, "cancelled; connection lost", started.elapsed());
                }
                continue;
            }
            _ = stop.abandon.cancelled() => {
                return HostOutcome::failure(Status::Cancelled, "cancelled; stopped waiting for the agent's report", started.elapsed());
            }
            _ = sleep_until(report_deadline) => {
                return HostOutcome::failure(Status::Cancelled, "cancelled; the agent did not confirm in time", started.elapsed());
            }
            // Cancel safe: a frame half received stays in the channel for the next turn.
            // Each frame is charged to the printer's byte budget before its payload is read.
            packet = channel.recv_charged_within::<Reply>(silence_timeout, output.sink.budget()) => packet,
        };
        match packet {
            Ok((Packet::Output(stream, bytes), charge)) => {
                output.kept.get_mut(stream).push(&bytes);
                if let Some(files) = output.files.as_deref_mut() {
                    files.write(stream, &bytes);
                }
                output.sink.show(stream, bytes, charge).await;
            }
            Ok((Packet::Control(Reply::Started { .. } | Reply::Heartbeat), _)) => {}
            Ok((
                Packet::Control(Reply::Exit {
                    code,
                    signal,
                    reason,
                }),
                _,
            )) => {
                return command_outcome(code, signal, reason, started.elapsed());
            }
            Ok((Packet::Control(Reply::Error { message }), _)) => {
                return HostOutcome::failure(Status::Error, message, started.elapsed())
            }
            Ok((Packet::Control(Reply::Denied { message }), _)) => {
                return HostOutcome::failure(Status::AuthFailed, message, started.elapsed())
            }
            Ok((other @ (Packet::Control(_) | Packet::FileData(_)), _)) => {
                return protocol_error(format!("unexpected reply {}", other.summary()), started)
            }
            Err(RecvError::Idle(_)) => {
                let why = format!(
                    "the agent sent nothing, not even a heartbeat, for {}s: host or path lost",
                    silence_timeout.as_secs()
                );
                return HostOutcome::failure(Status::Error, why, started.elapsed());
            }
            Err(RecvError::Closed) => {
                return protocol_error(
                    "the agent closed the connection mid-command".into(),
                    started,
                )
            }
            Err(RecvError::Failed(err)) => return protocol_error(err.to_string(), started),
        }
    }
}

fn command_outcome(
    code: Option<i32>,
    signal: Option<i32>,
    reason: EndReason,
    duration: Duration,
) -> HostOutcome {
    let (status, error) = match (reason, code, signal) {
        (EndReason::Timeout, ..) => (
            Status::Timeout,
            Some("timed out; process group killed".to_owned()),
        ),
        (EndReason::Cancelled, ..) => (
            Status::Cancelled,
            Some("cancelled; process group killed".to_owned()),
        ),
        (EndReason::Shutdown, ..) => (
            Status::Error,
            Some("the agent shut down; process group killed".to_owned()),
        ),
        (EndReason::Exited, Some(0), _) => (Status::Ok, None),
        (EndReason::Exited, Some(code), _) => {
            (Status::Failed, Some(format!("exited with code {code}")))
        }
        (EndReason::Exited, None, Some(signal)) => {
            (Status::Failed, Some(format!("killed by signal {signal}")))
        }
        (EndReason::Exited, None, None) => (
            Status::Error,
            Some("the agent reported no exit status".to_owned()),
        ),
    };
    HostOutcome {
        status,
        exit_code: code,
        signal,
        error,
        ..HostOutcome::succeeded(duration)
    }
}
