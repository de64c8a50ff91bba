//! Files in and out of the agent host: atomic writes for `ctl push` ([`put`]) and reads for
//! `ctl pull` ([`get`]).
//!
//! Relative paths from the controller resolve against the agent's files folder
//! (`--files-dir`); absolute paths are used as given, since whoever holds the fleet key may
//! run any command as the agent's user anyway. A pushed file is written to a temporary file
//! beside its destination and renamed over it only when complete, synced and verified, so
//! an interrupted push never leaves a half-written destination (`common::atomic_file`).

pub mod get;
pub mod put;

use std::path::{Path, PathBuf};

use common::channel::Channel;
use common::message::{Packet, Reply, HEARTBEAT_INTERVAL};
use tokio::net::TcpStream;

use crate::server::Config;
use crate::session::send_within;

pub use common::atomic_file::{remove_stale_temps, TempFile};

/// The agent-side path for a path from the wire.
pub fn resolve(files_dir: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_owned()
    } else {
        files_dir.join(path)
    }
}

/// Runs `work` (hashing a large file, say) while sending heartbeats, so the controller
/// can tell a busy agent from a lost one.
pub async fn with_heartbeats<T>(
    channel: &mut Channel<TcpStream>,
    work: impl std::future::Future<Output = T>,
    config: &Config,
) -> Result<T, String> {
    let start = tokio::time::Instant::now() + HEARTBEAT_INTERVAL;
    let mut heartbeat = tokio::time::interval_at(start, HEARTBEAT_INTERVAL);
    tokio::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return Ok(done),
            _ = heartbeat.tick() => {
                send_within(channel, &Packet::Control(Reply::Heartbeat), config.idle_timeout).await?;
            }
        }
    }
}

/// Permission bits as the wire carries them.
pub fn mode_of(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}
