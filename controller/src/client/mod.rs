//! One host, one operation: connect, authenticate, send the request, follow the replies to
//! the end, and say what happened as a [`HostOutcome`]. Every failure becomes an outcome with
//! a status; nothing here returns an `Err` to the fan-out.
//!
//! This module owns the connection (connect, handshake, timeouts); one submodule per kind
//! of operation owns its conversation: [`ping`], [`run`], [`push`], [`pull`].

pub mod ping;
pub mod pull;
pub mod push;
pub mod run;

#[cfg(test)]
mod entry_path_properties;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::auth::{self, AuthError};
use common::channel::{Channel, RecvError, SendError};
use common::frame;
use common::key::Key;
use common::message::{Packet, Reply, Request};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::inventory::Host;
use crate::outcome::{HostOutcome, Status};

/// What a client needs to reach any host; cheap to clone into every host's task.
#[derive(Clone)]
pub struct Connector {
    pub key: Arc<Key>,
    pub connect_timeout: Duration,
    /// A running command's agent that sends nothing, not even a heartbeat, for this long
    /// is taken for lost.
    pub silence_timeout: Duration,
}

/// The two ways an operator stops an operation: the first Ctrl-C asks agents to cancel and
/// waits for their reports; the second stops waiting.
#[derive(Clone, Default)]
pub struct Stop {
    pub cancel: CancellationToken,
    pub abandon: CancellationToken,
}

impl Stop {
    /// Watches SIGINT and SIGTERM for the whole operation. First: cancel every remote
    /// command and wait for the agents' reports. Second: stop waiting (the end record is
    /// still written). Third: exit at once with 130, for when even that is stuck (a
    /// terminal that takes no output, say).
    pub async fn on_signals(self) {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::error!("cannot install signal handlers; Ctrl-C will kill ctl outright");
            return;
        };
        let mut next_signal = async || {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
        };
        next_signal().await;
        eprintln!(
            "ctl: interrupted: cancelling the remote commands (again to stop waiting for them)"
        );
        self.cancel.cancel();
        next_signal().await;
        eprintln!(
            "ctl: interrupted again: not waiting for the agents' reports (again to quit at once)"
        );
        self.abandon.cancel();
        next_signal().await;
        eprintln!("ctl: interrupted a third time: quitting without the operation's end record");
        std::process::exit(130);
    }
}

/// An established, authenticated connection, or the outcome that explains why there is none.
type Connected = Result<Channel<TcpStream>, HostOutcome>;

impl Connector {
    /// Connects and authenticates within the connect timeout. `first`, the operation's
    /// first request if it is known already, goes out with our half of the handshake
    /// (see `auth::client_handshake`).
    pub async fn connect(
        &self,
        host: &Host,
        started: Instant,
        first: Option<Packet<Request>>,
    ) -> Connected {
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let endpoint = host.endpoint();
        let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(&endpoint)).await {
            Err(_) => {
                let why = format!(
                    "connect to {endpoint} timed out after {:?}",
                    self.connect_timeout
                );
                return Err(HostOutcome::failure(
                    Status::Unreachable,
                    why,
                    started.elapsed(),
                ));
            }
            Ok(Err(err)) => {
                let why = format!("connect to {endpoint}: {err}");
                return Err(HostOutcome::failure(
                    Status::Unreachable,
                    why,
                    started.elapsed(),
                ));
            }
            Ok(Ok(stream)) => stream,
        };
        let _ = stream.set_nodelay(true);
        let handshake = auth::client_handshake(frame::framed(stream), &self.key, first.as_ref());
        match tokio::time::timeout_at(deadline, handshake).await {
            Err(_) => Err(HostOutcome::failure(
                Status::Error,
                format!("{endpoint} did not complete the handshake in time"),
                started.elapsed(),
            )),
            Ok(Err(err)) => Err(handshake_failure(&err, started)),
            Ok(Ok(channel)) => Ok(channel),
        }
    }

    /// Connects as [`Connector::connect`] does, unless the operator stops the operation
    /// first (the host is then `cancelled` without being contacted further).
    pub async fn connect_unless_stopped(
        &self,
        host: &Host,
        stop: &Stop,
        started: Instant,
        first: Option<Packet<Request>>,
    ) -> Connected {
        tokio::select! {
            _ = stop.cancel.cancelled() => Err(cancelled_before_start(started)),
            connected = self.connect(host, started, first) => connected,
        }
    }
}

/// Why a transfer with one host stopped, before its duration is known.
pub(crate) struct Failure {
    pub status: Status,
    pub error: String,
}

impl Failure {
    pub fn new(status: Status, error: impl ToString) -> Failure {
        Failure {
            status,
            error: error.to_string(),
        }
    }

    /// The agent refused or could not do what was asked: the host is `failed`.
    pub fn refused(error: impl ToString) -> Failure {
        Failure::new(Status::Failed, error)
    }

    /// The conversation itself broke (connection, protocol, silence): the host is `error`.
    pub fn broken(error: impl ToString) -> Failure {
        Failure::new(Status::Error, error)
    }

    pub fn at(self, started: Instant) -> HostOutcome {
        HostOutcome::failure(self.status, self.error, started.elapsed())
    }
}

/// A send the agent did not take: the conversation is broken either way.
impl From<SendError> for Failure {
    fn from(err: SendError) -> Failure {
        match err {
            SendError::Stalled(limit) => Failure::broken(format!(
                "the agent took no data for {}s: host or path lost",
                limit.as_secs()
            )),
            SendError::Failed(err) => Failure::broken(err),
        }
    }
}

/// The agent's next answer in a file transfer, heartbeats skipped; an `error` reply is a
/// refusal, and nothing at all for `silence` means the host or the path is lost.
pub(crate) async fn next_reply(
    channel: &mut Channel<TcpStream>,
    silence: Duration,
) -> Result<Reply, Failure> {
    loop {
        match channel.recv_within::<Reply>(silence).await {
            Ok(Packet::Control(Reply::Heartbeat)) => continue,
            Ok(Packet::Control(Reply::Error { message })) => return Err(Failure::refused(message)),
            Ok(Packet::Control(reply)) => return Ok(reply),
            Ok(other) => {
                let why = format!("unexpected data from the agent: {}", other.summary());
                return Err(Failure::broken(why));
            }
            Err(err) => return Err(lost(err, "mid-transfer")),
        }
    }
}

/// A receive that brought nothing, as a failure; `during` says where the agent closed.
pub(crate) fn lost(err: RecvError, during: &str) -> Failure {
    match err {
        RecvError::Idle(limit) => Failure::broken(format!(
            "the agent sent nothing for {}s: host or path lost",
            limit.as_secs()
        )),
        RecvError::Closed => Failure::broken(format!("the agent closed the connection {during}")),
        RecvError::Failed(err) => Failure::broken(err),
    }
}

fn handshake_failure(err: &AuthError, started: Instant) -> HostOutcome {
    let status = if err.is_key_mismatch() {
        Status::AuthFailed
    } else {
        Status::Error
    };
    HostOutcome::failure(status, err.to_string(), started.elapsed())
}

fn cancelled_before_start(started: Instant) -> HostOutcome {
    HostOutcome::failure(
        Status::Cancelled,
        "cancelled before it started",
        started.elapsed(),
    )
}

pub(crate) fn protocol_error(error: String, started: Instant) -> HostOutcome {
    HostOutcome::failure(Status::Error, error, started.elapsed())
}

pub(crate) async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
