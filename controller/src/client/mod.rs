//! One host, one operation: connect, authenticate both ways, send the request, follow the replies to
//! the end, and say what happened as a [`HostOutcome`]. Every failure becomes an outcome with
//! a status; nothing here returns an `Err` to the fan-out.
//!
//! This module owns the connection (connect, handshake, timeouts); one submodule per kind
//! of operation owns its conversation: [`ping`], [`run`], [`push`], [`pull`].

pub mod ping;
pub mod pull;
pub mod push;
pub mod run;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::channel::{Channel, RecvError, SendError};
use common::handshake::{self, HandshakeError};
use common::identity::keys::PublicKey;
use common::message::{Packet, Reply, Request};
use common::tls::{self, Credentials, HostKeyCheck, PresentedKey};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::inventory::Host;
use crate::outcome::{HostOutcome, Status};
use crate::trust::HostTrust;

/// The byte stream below every channel: TLS over TCP.
pub type Stream = common::handshake::ClientStream<TcpStream>;

/// What a client needs to reach any host; cheap to clone into every host's task.
#[derive(Clone)]
pub struct Connector {
    pub credentials: Credentials,
    pub trust: Arc<HostTrust>,
    /// Which host keys the handshake accepts.
    pub host_keys: HostKeyPolicy,
    pub connect_timeout: Duration,
    /// A running command's agent that sends nothing, not even a heartbeat, for this long
    /// is taken for lost.
    pub silence_timeout: Duration,
}

/// Which host keys a connection accepts.
#[derive(Clone)]
pub enum HostKeyPolicy {
    /// Those `known_hosts` records for the host: every operation but the two below.
    KnownHosts,
    /// Any key the agent proves it holds: `ctl trust`, which then records it.
    Any,
    /// This key alone: `ctl bootstrap`'s check of an agent whose key it read over SSH.
    Pinned(PublicKey),
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

/// An established, authenticated connection and the fingerprint of the host key the agent
/// proved, or the outcome that explains why there is none.
type Connected = Result<(Channel<Stream>, String), HostOutcome>;

impl Connector {
    /// Connects and authenticates within the connect timeout: the TLS handshake, in which
    /// the agent must present a host key `known_hosts` has for it. `first`, the
    /// operation's first request if it is known already, goes out right behind our half of
    /// the handshake (see `common::handshake`).
    pub async fn connect(
        &self,
        host: &Host,
        started: Instant,
        first: Option<Packet<Request>>,
    ) -> Connected {
        let (channel, presented, _) = self.open(host, started, first.as_ref()).await?;
        Ok((channel, fingerprint_of(&presented)))
    }

    /// The key the agent of `host` presents, proved in a full handshake, and the address
    /// it answered on: what `ctl trust` records. The connection is closed at once.
    pub async fn host_key(&self, host: &Host) -> Result<(SocketAddr, PublicKey), HostOutcome> {
        let started = Instant::now();
        let (_, presented, peer) = self.open(host, started, None).await?;
        match presented.get() {
            Some(key) => Ok((peer, key)),
            None => Err(protocol_error(
                "the agent presented no host key".into(),
                started,
            )),
        }
    }

    /// Connects, runs the handshake and sends `first`; returns the channel, the key the
    /// agent presented and the address it answered on.
    async fn open(
        &self,
        host: &Host,
        started: Instant,
        first: Option<&Packet<Request>>,
    ) -> Result<(Channel<Stream>, PresentedKey, SocketAddr), HostOutcome> {
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
        let peer = match stream.peer_addr() {
            Ok(peer) => peer,
            Err(err) => {
                let why = format!("connect to {endpoint}: {err}");
                return Err(HostOutcome::failure(
                    Status::Unreachable,
                    why,
                    started.elapsed(),
                ));
            }
        };
        let check: HostKeyCheck = match &self.host_keys {
            HostKeyPolicy::KnownHosts => self.trust.check(&host.name, peer),
            HostKeyPolicy::Any => Arc::new(|_: &_| true),
            HostKeyPolicy::Pinned(expected) => {
                let expected = expected.clone();
                Arc::new(move |key: &PublicKey| *key == expected)
            }
        };
        let presented = PresentedKey::default();
        let config = match tls::client_config(&self.credentials, check, presented.clone()) {
            Ok(config) => config,
            Err(err) => return Err(protocol_error(format!("cannot set up TLS: {err}"), started)),
        };
        let handshake = handshake::connect(stream, config, peer.ip(), first);
        match tokio::time::timeout_at(deadline, handshake).await {
            Err(_) => Err(HostOutcome::failure(
                Status::Error,
                format!("{endpoint} did not complete the handshake in time"),
                started.elapsed(),
            )),
            Ok(Err(err)) => Err(self.handshake_failure(host, peer, &presented, &err, started)),
            Ok(Ok(channel)) => Ok((channel, presented, peer)),
        }
    }

    /// The outcome of a failed handshake: `auth_failed` when the agent's key was refused
    /// here (unknown, changed, revoked), `error` otherwise.
    fn handshake_failure(
        &self,
        host: &Host,
        peer: SocketAddr,
        presented: &PresentedKey,
        err: &HandshakeError,
        started: Instant,
    ) -> HostOutcome {
        let key_refused = matches!(
            err,
            HandshakeError::Tls(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure
            ))
        );
        match (key_refused, presented.get()) {
            (true, Some(key)) => {
                let why = match &self.host_keys {
                    HostKeyPolicy::Pinned(expected) => format!(
                        "the agent at {peer} presented host key {key}, not {expected}, the \
                         one read over SSH; nothing was run"
                    ),
                    _ => self.trust.refusal(&host.name, peer, &key),
                };
                HostOutcome::failure(Status::AuthFailed, why, started.elapsed())
                    .with_host_key(key.fingerprint())
            }
            _ => HostOutcome::failure(Status::Error, err.to_string(), started.elapsed()),
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

/// The fingerprint of the key an agent presented (empty when it presented none).
fn fingerprint_of(presented: &PresentedKey) -> String {
    presented
        .get()
        .map(|key| key.fingerprint())
        .unwrap_or_default()
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

    /// The agent refused our key, or this kind of request from it: the host is
    /// `auth_failed`.
    pub fn denied(error: impl ToString) -> Failure {
        Failure::new(Status::AuthFailed, error)
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
    channel: &mut Channel<Stream>,
    silence: Duration,
) -> Result<Reply, Failure> {
    loop {
        match channel.recv_within::<Reply>(silence).await {
            Ok(Packet::Control(Reply::Heartbeat)) => continue,
            Ok(Packet::Control(Reply::Error { message })) => return Err(Failure::refused(message)),
            Ok(Packet::Control(Reply::Denied { message })) => return Err(Failure::denied(message)),
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
