//! `ctl ping`'s conversation with one agent: connect, authenticate, one round trip.

use std::net::SocketAddr;
use std::time::Instant;

use common::channel::RecvError;
use common::message::{Packet, Reply, Request};

use common::channel::Channel;

use super::{protocol_error, Connector, Stream};
use crate::inventory::Host;
use crate::outcome::{HostOutcome, Status};

/// Checks one agent: connect, authenticate, ping. The outcome's duration is the ping's round
/// trip alone, so that connection set-up does not hide a slow agent.
pub async fn ping(connector: &Connector, host: &Host) -> HostOutcome {
    ping_at(connector, host).await.0
}

/// As [`ping`], and the address the agent answered on, once connected (what a
/// known_hosts line records).
pub async fn ping_at(connector: &Connector, host: &Host) -> (HostOutcome, Option<SocketAddr>) {
    let started = Instant::now();
    // No request goes with the handshake: the round trip is timed on its own.
    let (mut channel, presented, peer) = match connector.open(host, started, None).await {
        Ok(opened) => opened,
        Err(outcome) => return (outcome, None),
    };
    let outcome = round_trip(&mut channel, connector, started)
        .await
        .with_host_key(super::fingerprint_of(&presented));
    (outcome, Some(peer))
}

/// One ping and its answer, timed.
async fn round_trip(
    channel: &mut Channel<Stream>,
    connector: &Connector,
    started: Instant,
) -> HostOutcome {
    let round_trip = Instant::now();
    let limit = connector.connect_timeout;
    if let Err(err) = channel
        .send_within(&Packet::Control(Request::Ping), limit)
        .await
    {
        return protocol_error(err.to_string(), started);
    }
    match channel.recv_within::<Reply>(limit).await {
        Ok(Packet::Control(Reply::Pong { agent_version })) => HostOutcome {
            agent_version: Some(agent_version),
            ..HostOutcome::succeeded(round_trip.elapsed())
        },
        Ok(Packet::Control(Reply::Denied { message })) => {
            HostOutcome::failure(Status::AuthFailed, message, started.elapsed())
        }
        Ok(other) => protocol_error(
            format!("unexpected answer to ping: {}", other.summary()),
            started,
        ),
        Err(RecvError::Idle(_)) => protocol_error("no answer to ping in time".into(), started),
        Err(RecvError::Closed) => {
            protocol_error("unexpected answer to ping: nothing".into(), started)
        }
        Err(RecvError::Failed(err)) => protocol_error(err.to_string(), started),
    }
}
