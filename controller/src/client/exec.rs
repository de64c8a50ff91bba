//! Ping and run: the conversations of `ctl ping` and `ctl run` with one agent.

use std::time::{Duration, Instant};

use common::channel::Channel;
use common::message::{EndReason, Packet, Reply, Request, Stream};
use tokio::net::TcpStream;

use super::{protocol_error, sleep_until, Connector, Stop};
use crate::inventory::Host;
use crate::outcome::{HostOutcome, Status};
use crate::output::OutputSink;

/// How long, after asking an agent to cancel, we wait for its final report. The agent needs
/// its kill grace (5 s by default) to escalate from SIGTERM to SIGKILL.
const CANCEL_REPORT_WAIT: Duration = Duration::from_secs(10);

/// Checks one agent: connect, authenticate, ping. The outcome's duration is the ping's round
/// trip alone, so that connection set-up does not hide a slow agent.
pub async fn ping(connector: &Connector, host: &Host) -> HostOutcome {
    let started = Instant::now();
    // No request goes with the handshake: the round trip is timed on its own.
    let mut channel = match connector.connect(host, started, None).await {
        Ok(channel) => channel,
        Err(outcome) => return outcome,
    };
    let round_trip = Instant::now();
    let exchange = async {
        channel.send(&Packet::Control(Request::Ping)).await?;
        channel.recv::<Reply>().await
    };
    match tokio::time::timeout(connector.connect_timeout, exchange).await {
        Ok(Ok(Some(Packet::Control(Reply::Pong { agent_version })))) => HostOutcome {
            agent_version: Some(agent_version),
            ..HostOutcome::succeeded(round_trip.elapsed())
        },
        Ok(Ok(other)) => protocol_error(
            format!(
                "unexpected answer to ping: {}",
                other
                    .as_ref()
                    .map_or_else(|| "nothing".to_owned(), Packet::summary)
            ),
            started,
        ),
        Ok(Err(err)) => protocol_error(err.to_string(), started),
        Err(_) => protocol_error("no answer to ping in time".into(), started),
    }
}

/// Runs one command on one host, handing its output to `sink` as it arrives.
pub async fn run(
    connector: &Connector,
    host: &Host,
    exec: Request,
    sink: &OutputSink,
    stop: &Stop,
) -> HostOutcome {
    let started = Instant::now();
    let connected =
        connector.connect_unless_stopped(host, stop, started, Some(Packet::Control(exec)));
    let mut channel = match connected.await {
        Ok(channel) => channel,
        Err(outcome) => return outcome,
    };
    follow_command(&mut channel, connector.silence_timeout, sink, stop, started).await
}

/// Reads the agent's replies until the command's `Exit`, passing output on; on Ctrl-C asks
/// the agent to cancel and waits (boundedly) for its report.
async fn follow_command(
    channel: &mut Channel<TcpStream>,
    silence_timeout: Duration,
    sink: &OutputSink,
    stop: &Stop,
    started: Instant,
) -> HostOutcome {
    let (mut stdout_bytes, mut stderr_bytes) = (0u64, 0u64);
    let mut cancel_sent = false;
    let mut report_deadline = None;
    let mut silence_deadline = tokio::time::Instant::now() + silence_timeout;
    loop {
        let packet = tokio::select! {
            _ = stop.cancel.cancelled(), if !cancel_sent => {
                cancel_sent = true;
                report_deadline = Some(tokio::time::Instant::now() + CANCEL_REPORT_WAIT);
                let sent = tokio::time::timeout(silence_timeout, channel.send(&Packet::Control(Request::Cancel))).await;
                if !matches!(sent, Ok(Ok(()))) {
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
            _ = tokio::time::sleep_until(silence_deadline) => {
                let why = format!(
                    "the agent sent nothing, not even a heartbeat, for {}s: host or path lost",
                    silence_timeout.as_secs()
                );
                return HostOutcome::failure(Status::Error, why, started.elapsed());
            }
            packet = channel.recv::<Reply>() => packet,
        };
        silence_deadline = tokio::time::Instant::now() + silence_timeout;
        match packet {
            Ok(Some(Packet::Output(stream, bytes))) => {
                match stream {
                    Stream::Stdout => stdout_bytes += bytes.len() as u64,
                    Stream::Stderr => stderr_bytes += bytes.len() as u64,
                }
                sink.output(stream, bytes).await;
            }
            Ok(Some(Packet::Control(Reply::Started { .. } | Reply::Heartbeat))) => {}
            Ok(Some(Packet::Control(Reply::Exit {
                code,
                signal,
                reason,
            }))) => {
                let mut outcome = command_outcome(code, signal, reason, started.elapsed());
                outcome.stdout_bytes = stdout_bytes;
                outcome.stderr_bytes = stderr_bytes;
                return outcome;
            }
            Ok(Some(Packet::Control(Reply::Error { message }))) => {
                return HostOutcome::failure(Status::Error, message, started.elapsed())
            }
            Ok(Some(other @ (Packet::Control(_) | Packet::FileData(_)))) => {
                return protocol_error(format!("unexpected reply {}", other.summary()), started)
            }
            Ok(None) => {
                return protocol_error(
                    "the agent closed the connection mid-command".into(),
                    started,
                )
            }
            Err(err) => return protocol_error(err.to_string(), started),
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
