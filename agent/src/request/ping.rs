//! `ping`: the agent answers with its version. Nothing else is checked or touched; the
//! round trip is what `ctl ping` measures.

use common::message::Reply;

use crate::error::RequestError;

/// A ping.
#[derive(Debug)]
pub struct Ping;

impl Ping {
    /// Answers with the agent's version.
    pub fn apply(self) -> Result<Reply, RequestError> {
        tracing::debug!("ping");
        Ok(Reply::Pong {
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        })
    }
}
