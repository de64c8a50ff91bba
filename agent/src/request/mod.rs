//! The requests the agent serves: one type per kind, each of which knows how to carry itself
//! out, after mini-redis's `cmd` module (`Command::from_frame`, `Command::apply`).
//!
//! [`Action::from_packet`] turns what the session received into one of [`ping`], [`exec`],
//! [`put_file`], [`make_dir`], [`make_symlink`] or [`get`]; [`Action::apply`] runs it in
//! its `op` span and sends its last answer: the reply it returned, or `Reply::Error` when it
//! was refused. Each kind sends what comes before that answer itself (output, file data,
//! `put_ready`, entries). Reading the connection between requests, and what to do when it
//! is lost, belongs to [`crate::session`]; where a path from the wire lands, to [`paths`].

pub mod exec;
pub mod get;
pub mod make_dir;
pub mod make_symlink;
pub mod paths;
pub mod ping;
pub mod process_group;
pub mod put_file;

use std::future::Future;
use std::time::Duration;

use common::identity::authorized_keys::Action as Permit;
use common::message::{Packet, Reply, Request, HEARTBEAT_INTERVAL};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Config;
use crate::connection::Connection;
use crate::error::{ConnectionError, RequestError};

/// One request, ready to be carried out.
#[derive(Debug)]
pub enum Action {
    /// See [`ping::Ping`].
    Ping(ping::Ping),
    /// See [`exec::Exec`].
    Exec(exec::Exec),
    /// See [`put_file::PutFile`].
    PutFile(put_file::PutFile),
    /// See [`make_dir::MakeDir`].
    MakeDir(make_dir::MakeDir),
    /// See [`make_symlink::MakeSymlink`].
    MakeSymlink(make_symlink::MakeSymlink),
    /// See [`get::Get`].
    Get(get::Get),
}

impl Action {
    /// The action a packet asks for. `None` is a cancel that crossed its command's end on the
    /// wire: there is nothing left to cancel and nothing to answer.
    ///
    /// # Errors
    /// A packet that cannot start a request: the connection must be dropped.
    pub fn from_packet(packet: Packet<Request>) -> Result<Option<Action>, ConnectionError> {
        let action = match packet {
            Packet::Control(Request::Ping) => Action::Ping(ping::Ping),
            Packet::Control(Request::Exec {
                command,
                timeout_ms,
                op_id,
                env,
                cwd,
            }) => Action::Exec(exec::Exec {
                command,
                timeout: timeout_ms.map(Duration::from_millis),
                op_id,
                env,
                cwd,
            }),
            Packet::Control(Request::Cancel) => return Ok(None),
            Packet::Control(Request::PutFile(request)) => {
                Action::PutFile(put_file::PutFile(request))
            }
            Packet::Control(Request::PutEnd { .. } | Request::PutKeep { .. }) => {
                return Err(ConnectionError::PutEndWithoutPut)
            }
            Packet::Control(Request::MakeDir {
                path,
                name,
                mode,
                mkdir,
            }) => Action::MakeDir(make_dir::MakeDir {
                path,
                name,
                mode,
                mkdir,
            }),
            Packet::Control(Request::MakeSymlink { path, target }) => {
                Action::MakeSymlink(make_symlink::MakeSymlink { path, target })
            }
            Packet::Control(Request::Get { path, recursive }) => {
                Action::Get(get::Get { path, recursive })
            }
            Packet::Output(..) | Packet::FileData(_) => {
                return Err(ConnectionError::UnexpectedData)
            }
        };
        Ok(Some(action))
    }

    /// Carries the request out and sends its last answer.
    ///
    /// # Errors
    /// A reason to drop the connection; a refused request has been answered with
    /// `Reply::Error` instead.
    pub async fn apply(
        self,
        channel: &mut Connection,
        config: &Config,
        shutdown: &CancellationToken,
    ) -> Result<(), ConnectionError> {
        let span = self.span();
        async move {
            let answer = match self {
                Action::Ping(ping) => ping.apply(),
                Action::Exec(exec) => exec.apply(channel, config, shutdown).await,
                Action::PutFile(put) => put.apply(channel, config).await,
                Action::MakeDir(make_dir) => make_dir.apply(config),
                Action::MakeSymlink(make_symlink) => make_symlink.apply(config),
                Action::Get(get) => get.apply(channel, config).await,
            };
            let reply = match answer {
                Ok(reply) => reply,
                Err(RequestError::Refused(refusal)) => {
                    tracing::warn!(message = %refusal, "request refused");
                    Reply::Error {
                        message: refusal.to_string(),
                    }
                }
                Err(RequestError::Dropped(err)) => return Err(err),
            };
            channel
                .send_within(&Packet::Control(reply), config.idle_timeout)
                .await?;
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// The kind of request an `authorized_keys` line's `permit=` must allow for this one.
    /// Making folders and links is part of a push.
    pub fn permit(&self) -> Permit {
        match self {
            Action::Ping(_) => Permit::Ping,
            Action::Exec(_) => Permit::Run,
            Action::PutFile(_) | Action::MakeDir(_) | Action::MakeSymlink(_) => Permit::Push,
            Action::Get(_) => Permit::Pull,
        }
    }

    /// The `op` span the request runs in.
    fn span(&self) -> tracing::Span {
        match self {
            Action::Ping(_) => tracing::debug_span!("op", kind = "ping"),
            Action::Exec(exec) => exec.span(),
            Action::PutFile(put) => tracing::info_span!("op", kind = "put", path = %put.0.path),
            Action::MakeDir(make_dir) => {
                tracing::info_span!("op", kind = "mkdir", path = %make_dir.path)
            }
            Action::MakeSymlink(link) => {
                tracing::info_span!("op", kind = "symlink", path = %link.path)
            }
            Action::Get(get) => tracing::info_span!("op", kind = "get", path = %get.path),
        }
    }
}

/// Runs `work` (hashing a large file, say) while sending heartbeats, so the controller
/// can tell a busy agent from a lost one.
///
/// # Errors
/// The controller took no heartbeat within `send_timeout`, or the channel failed.
pub async fn with_heartbeats<T>(
    channel: &mut Connection,
    work: impl Future<Output = T>,
    send_timeout: Duration,
) -> Result<T, ConnectionError> {
    let start = tokio::time::Instant::now() + HEARTBEAT_INTERVAL;
    let mut heartbeat = tokio::time::interval_at(start, HEARTBEAT_INTERVAL);
    tokio::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return Ok(done),
            _ = heartbeat.tick() => {
                channel
                    .send_within(&Packet::Control(Reply::Heartbeat), send_timeout)
                    .await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use common::message::Stream;

    #[test]
    fn each_request_kind_becomes_its_own_action() {
        let exec = Packet::Control(Request::Exec {
            command: "true".into(),
            timeout_ms: Some(1500),
            op_id: None,
            env: Vec::new(),
            cwd: None,
        });
        let Ok(Some(Action::Exec(exec))) = Action::from_packet(exec) else {
            panic!("an exec request is an exec action");
        };
        assert_eq!(exec.timeout, Some(Duration::from_millis(1500)));
        let get = Packet::Control(Request::Get {
            path: "x".into(),
            recursive: true,
        });
        assert!(matches!(
            Action::from_packet(get),
            Ok(Some(Action::Get(get::Get {
                recursive: true,
                ..
            })))
        ));
        let ping = Action::from_packet(Packet::Control(Request::Ping));
        assert!(matches!(ping, Ok(Some(Action::Ping(_)))));
    }

    #[test]
    fn a_stray_cancel_is_nothing_to_do() {
        let cancel = Action::from_packet(Packet::Control(Request::Cancel));
        assert!(matches!(cancel, Ok(None)));
    }

    #[test]
    fn what_cannot_start_a_request_drops_the_connection() {
        let end = Packet::Control(Request::PutEnd {
            sha256: "00".into(),
        });
        let err = Action::from_packet(end).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the end of a file push that was never started"
        );
        let data = Packet::<Request>::Output(Stream::Stdout, Bytes::from_static(b"x"));
        let err = Action::from_packet(data).unwrap_err();
        assert_eq!(err.to_string(), "unexpected data from the controller");
    }
}
