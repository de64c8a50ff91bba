//! Which agents `ctl` trusts: their host keys in `known_hosts`, checked during every
//! handshake, and what the operator is told when a key is unknown, changed or revoked.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::inventory::Host;
use crate::outcome::{HostOutcome, KnownHostsChange, Status};
use common::identity::keys::PublicKey;
use common::identity::known_hosts::{KnownHosts, Lookup};
use common::tls::HostKeyCheck;

/// The address an agent answered on and the host key it proved: what a known_hosts line
/// records.
pub type Proved = (SocketAddr, PublicKey);

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

/// Records in the known_hosts at `path` the keys the targets proved (`proved`, by target
/// index), as `ctl trust` and `ctl bootstrap` do, and sets each outcome's `known_hosts`.
/// A key that differs from the recorded one replaces it only with `replace` (the old line
/// is kept, commented out with the date); otherwise, and for a revoked key, the host is
/// `auth_failed`. When the file cannot be written, the hosts it would have recorded are
/// `error`. Returns whether anything was recorded.
///
/// # Errors
/// The file cannot be read.
pub fn record_keys(
    path: &Path,
    targets: &[Host],
    outcomes: &mut [HostOutcome],
    proved: &[Option<Proved>],
    replace: bool,
) -> Result<bool> {
    // Read again now: another ctl may have written meanwhile.
    let (mut known, _) = KnownHosts::load(path)
        .with_context(|| format!("cannot read known_hosts {}", path.display()))?;
    // `YYYY-MM-DD`, for the comment on a replaced line.
    let today = time::OffsetDateTime::now_utc().date().to_string();
    for ((host, outcome), presented) in targets.iter().zip(outcomes.iter_mut()).zip(proved) {
        let Some((peer, key)) = presented else {
            continue;
        };
        let change = match known.lookup(&host.name, *peer, key) {
            Lookup::Known { .. } => Ok(KnownHostsChange::Known),
            Lookup::Unknown => known
                .add(&host.name, *peer, key)
                .map(|_| KnownHostsChange::Added),
            Lookup::Changed { .. } if replace => known
                .replace(&host.name, *peer, key, &today)
                .map(|_| KnownHostsChange::Replaced),
            Lookup::Changed { recorded } => {
                let recorded: Vec<String> =
                    recorded.iter().map(|(_, key)| key.fingerprint()).collect();
                outcome.status = Status::AuthFailed;
                outcome.error = Some(format!(
                    "host key CHANGED: known_hosts has {}, the host proved {}; not recorded \
                     (check the key on the host, then run again with --replace)",
                    recorded.join(", "),
                    key.fingerprint()
                ));
                Ok(KnownHostsChange::Changed)
            }
            Lookup::Revoked { line } => {
                outcome.status = Status::AuthFailed;
                outcome.error = Some(format!(
                    "host key {} is @revoked in {} line {line}; not recorded",
                    key.fingerprint(),
                    path.display()
                ));
                Ok(KnownHostsChange::Revoked)
            }
        };
        match change {
            Ok(change) => outcome.known_hosts = Some(change),
            Err(bad) => {
                outcome.status = Status::Error;
                outcome.error = Some(format!("not recorded: {bad}"));
            }
        }
    }
    let recorded = |outcome: &HostOutcome| {
        matches!(
            outcome.known_hosts,
            Some(KnownHostsChange::Added | KnownHostsChange::Replaced)
        )
    };
    if !outcomes.iter().any(recorded) {
        return Ok(false);
    }
    if let Err(err) = known.save(path) {
        let why = format!("not recorded: cannot write {}: {err}", path.display());
        for outcome in outcomes.iter_mut().filter(|outcome| recorded(outcome)) {
            outcome.status = Status::Error;
            outcome.error = Some(why.clone());
            outcome.known_hosts = None;
        }
        return Ok(false);
    }
    Ok(true)
}

/// Deletes the known_hosts lines of the targets whose outcome is a success (`ctl bootstrap
/// --remove`), each at the address its agent port resolves to, and sets their outcome's
/// `known_hosts` to `removed` where there were lines.
///
/// # Errors
/// The file cannot be read or written.
pub async fn forget_keys(
    path: &Path,
    targets: &[Host],
    outcomes: &mut [HostOutcome],
) -> Result<()> {
    let (mut known, _) = KnownHosts::load(path)
        .with_context(|| format!("cannot read known_hosts {}", path.display()))?;
    let mut removed_any = false;
    for (host, outcome) in targets.iter().zip(outcomes.iter_mut()) {
        if !outcome.is_ok() {
            continue;
        }
        // No agent answers any more: the lines are found by name, and by the address as
        // the resolver gives it now.
        let addr = tokio::net::lookup_host(host.endpoint())
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], host.port)));
        if !known.remove(&host.name, addr).is_empty() {
            outcome.known_hosts = Some(KnownHostsChange::Removed);
            removed_any = true;
        }
    }
    if removed_any {
        known
            .save(path)
            .with_context(|| format!("cannot write known_hosts {}", path.display()))?;
    }
    Ok(())
}
