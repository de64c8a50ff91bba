//! Which agents `ctl` trusts: their host keys in `known_hosts`, checked during every
//! handshake, and what the operator is told when a key is unknown, changed or revoked.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use common::identity::keys::PublicKey;
use common::identity::known_hosts::{KnownHosts, Lookup};
use common::tls::HostKeyCheck;

/// `known_hosts` as loaded for one operation.
#[derive(Debug)]
pub struct HostTrust {
    path: PathBuf,
    known: KnownHosts,
}

impl HostTrust {
    /// Reads `path` (a missing file trusts nobody); lines that cannot be used are logged
    /// as warnings with their line numbers, and the others still count.
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn load(path: PathBuf) -> Result<HostTrust> {
        let (known, warnings) = KnownHosts::load(&path)
            .with_context(|| format!("cannot read known_hosts {}", path.display()))?;
        for warning in warnings {
            tracing::warn!(file = %path.display(), "{warning}");
        }
        Ok(HostTrust { path, known })
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The check the handshake with host `name` at `addr` runs on the key it presents:
    /// only a key recorded for that host (and not revoked) passes.
    pub fn check(self: &Arc<Self>, name: &str, addr: SocketAddr) -> HostKeyCheck {
        let (trust, name) = (Arc::clone(self), name.to_owned());
        Arc::new(move |key: &PublicKey| {
            matches!(trust.known.lookup(&name, addr, key), Lookup::Known { .. })
        })
    }

    /// Why `key`, presented by host `name` at `addr`, was refused, and what to do.
    pub fn refusal(&self, name: &str, addr: SocketAddr, key: &PublicKey) -> String {
        let file = self.path.display();
        match self.known.lookup(name, addr, key) {
            Lookup::Known { .. } => format!("host key {key} is trusted, yet the handshake failed"),
            Lookup::Unknown => format!(
                "unknown host key {key}: {name} ({addr}) is not in {file}; nothing was run. \
                 If that is its key, `ctl trust -H {name}` records it"
            ),
            Lookup::Revoked { line } => {
                format!("host key {key} is REVOKED ({file} line {line}); nothing was run")
            }
            Lookup::Changed { recorded } => {
                let was: Vec<String> = recorded
                    .iter()
                    .map(|(line, old)| format!("{old} (line {line})"))
                    .collect();
                format!(
                    "host key CHANGED: {name} ({addr}) presented {key}, but {file} has {}. \
                     This may be an attack (someone between you and the host) or a \
                     reinstalled agent; nothing was run. Once you have checked the new key \
                     on the host, `ctl trust --replace -H {name}` records it",
                    was.join(", ")
                )
            }
        }
    }
}
