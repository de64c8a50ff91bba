//! One controller connection: authenticate, then answer requests until the controller
//! closes, goes quiet for too long, or the agent shuts down.
//!
//! Every way a connection can go wrong (bad handshake, garbage, an oversized or half frame,
//! a stalled peer) ends here with one log line in the connection's span and a closed socket.
//! Nothing a peer sends before it authenticates is acted upon.

use std::time::Duration;

use common::auth;
use common::channel::Channel;
use common::frame;
use common::message::{Packet, Reply, Request};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::server::Config;
use crate::{exec, files};

/// Serves one connection to its end. Never returns an error: there is nobody to return it
/// to, so the reason is logged instead.
pub async fn serve(stream: TcpStream, config: &Config, shutdown: &CancellationToken) {
    // Output lines are small and latency matters more than packing them.
    let _ = stream.set_nodelay(true);
    let handshake = auth::server_handshake(frame::framed(stream), &config.key);
    let mut channel = match tokio::time::timeout(config.handshake_timeout, handshake).await {
        Err(_) => {
            tracing::warn!(
                timeout_s = config.handshake_timeout.as_secs(),
                "handshake timed out, dropping connection"
            );
            return;
        }
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "handshake failed, dropping connection");
            return;
        }
        Ok(Ok(channel)) => channel,
    };
    tracing::debug!("authenticated");
    match answer_requests(&mut channel, config, shutdown).await {
        Ok(()) => tracing::debug!("connection closed"),
        Err(reason) => tracing::warn!(%reason, "dropping connection"),
    }
}

async fn answer_requests(
    channel: &mut Channel<TcpStream>,
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    loop {
        let packet = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            received = tokio::time::timeout(config.idle_timeout, channel.recv::<Request>()) => {
                match received {
                    Err(_) => return Err(idle_reason(config.idle_timeout)),
                    Ok(Err(err)) => return Err(err.to_string()),
                    Ok(Ok(None)) => return Ok(()),
                    Ok(Ok(Some(packet))) => packet,
                }
            }
        };
        match packet {
            Packet::Control(Request::Ping) => {
                tracing::debug!("ping");
                let pong = Reply::Pong {
                    agent_version: env!("CARGO_PKG_VERSION").to_owned(),
                };
                send_within(channel, &Packet::Control(pong), config.idle_timeout).await?;
            }
            Packet::Control(Request::Exec {
                command,
                timeout_ms,
                op_id,
            }) => {
                let limits = exec::Limits {
                    timeout: timeout_ms.map(Duration::from_millis),
                    kill_grace: config.kill_grace,
                    send_timeout: config.idle_timeout,
                };
                let span = tracing::info_span!(
                    "op",
                    op_id = op_id.as_deref().unwrap_or("-"),
                    kind = "exec",
                    pid = tracing::field::Empty
                );
                exec::run(channel, &command, &limits, shutdown)
                    .instrument(span)
                    .await?;
            }
            // A cancel that crossed the command's end on the wire: nothing left to cancel.
            Packet::Control(Request::Cancel) => tracing::debug!("cancel with nothing running"),
            Packet::Control(Request::PutFile(request)) => {
                let span = tracing::info_span!("op", kind = "put", path = %request.path);
                files::put::put_file(channel, request, config)
                    .instrument(span)
                    .await?;
            }
            Packet::Control(Request::PutEnd { .. } | Request::PutKeep { .. }) => {
                return Err("the end of a file push that was never started".into())
            }
            Packet::Control(Request::MakeDir {
                path,
                name,
                mode,
                mkdir,
            }) => {
                files::put::make_dir(channel, &path, &name, mode, mkdir, config).await?;
            }
            Packet::Control(Request::MakeSymlink { path, target }) => {
                files::put::make_symlink(channel, &path, &target, config).await?;
            }
            Packet::Control(Request::Get { path, recursive }) => {
                let span = tracing::info_span!("op", kind = "get", %path);
                files::get::get(channel, &path, recursive, config)
                    .instrument(span)
                    .await?;
            }
            Packet::Output(..) | Packet::FileData(_) => {
                return Err("unexpected data from the controller".into())
            }
        }
    }
}

fn idle_reason(limit: Duration) -> String {
    format!("idle for {}s", limit.as_secs())
}

/// Sends one reply, giving up when the controller has not taken it within `limit`: a
/// controller that stops reading must not hold a command (and its pipes) forever.
pub(crate) async fn send_within(
    channel: &mut Channel<TcpStream>,
    packet: &Packet<Reply>,
    limit: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(limit, channel.send(packet)).await {
        Err(_) => Err(format!("controller took no data for {}s", limit.as_secs())),
        Ok(Err(err)) => Err(err.to_string()),
        Ok(Ok(())) => Ok(()),
    }
}
