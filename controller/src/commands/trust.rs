//! `ctl trust`: learn the targets' host keys over a full handshake and record them in
//! `known_hosts`, as `ssh` asks on first contact, but on purpose and for many hosts at once.
//! A changed key is never replaced without `--replace`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use common::identity::keys::PublicKey;
use common::identity::known_hosts::{KnownHosts, Lookup};

use super::Exit;
use crate::cli::TrustArgs;
use crate::fanout::fan_out;
use crate::outcome::HostOutcome;
use crate::plan;

/// The address an agent answered on and the key it proved.
type Presented = (SocketAddr, PublicKey);

/// What became of one host's key.
enum Verdict {
    Known,
    Added,
    Replaced,
    /// Changed, and left as it was (no `--replace`).
    Changed,
    Revoked,
}

/// `ctl trust`: connect to every target, print its host key's fingerprint, and record the
/// keys not yet known.
pub async fn trust(args: TrustArgs) -> Result<Exit> {
    let plan = plan::resolve(&args.targets, &args.connect)?;
    let path = plan.trust.path().to_owned();
    let connector = crate::client::Connector {
        learn_keys: true,
        ..plan.connector()
    };
    // The fan-out collects outcomes; the keys found go beside them, by target index.
    let found: Arc<Mutex<Vec<Option<Presented>>>> =
        Arc::new(Mutex::new(vec![None; plan.targets.len()]));
    let outcomes = fan_out(&plan.targets, plan.forks, |index, host| {
        let (connector, found) = (connector.clone(), Arc::clone(&found));
        async move {
            let started = Instant::now();
            match connector.host_key(&host).await {
                Ok(presented) => {
                    found.lock().expect("never poisoned")[index] = Some(presented);
                    HostOutcome::succeeded(started.elapsed())
                }
                Err(outcome) => outcome,
            }
        }
    })
    .await;
    let found = std::mem::take(&mut *found.lock().expect("never poisoned"));
    // Read again now: another `ctl trust` may have written meanwhile.
    let (mut known, _) = KnownHosts::load(&path)
        .with_context(|| format!("cannot read known_hosts {}", path.display()))?;
    // `YYYY-MM-DD`, for the comment on a replaced line.
    let today = time::OffsetDateTime::now_utc().date().to_string();
    let mut changed_file = false;
    let mut all_ok = true;
    for ((host, outcome), presented) in plan.targets.iter().zip(&outcomes).zip(found) {
        let Some((peer, key)) = presented else {
            all_ok = false;
            let why = outcome.error.as_deref().unwrap_or_default();
            println!("{}: {}: {why}", host.name, outcome.status.as_str());
            continue;
        };
        let verdict = match known.lookup(&host.name, peer, &key) {
            Lookup::Known { .. } => Ok(Verdict::Known),
            Lookup::Unknown => known.add(&host.name, peer, &key).map(|_| Verdict::Added),
            Lookup::Changed { .. } if args.replace => known
                .replace(&host.name, peer, &key, &today)
                .map(|_| Verdict::Replaced),
            Lookup::Changed { .. } => Ok(Verdict::Changed),
            Lookup::Revoked { .. } => Ok(Verdict::Revoked),
        };
        let verdict = match verdict {
            Ok(verdict) => verdict,
            Err(bad) => {
                all_ok = false;
                println!("{}: {key} ({peer}): not recorded: {bad}", host.name);
                continue;
            }
        };
        let said = match verdict {
            Verdict::Known => "already trusted",
            Verdict::Added => "added",
            Verdict::Replaced => "REPLACED (the old line is kept, commented out)",
            Verdict::Changed => {
                "CHANGED: not recorded; check the key on the host, then run again with --replace"
            }
            Verdict::Revoked => "REVOKED in known_hosts: not recorded",
        };
        changed_file |= matches!(verdict, Verdict::Added | Verdict::Replaced);
        all_ok &= !matches!(verdict, Verdict::Changed | Verdict::Revoked);
        println!("{}: {key} ({peer}): {said}", host.name);
    }
    if changed_file {
        known
            .save(&path)
            .with_context(|| format!("cannot write known_hosts {}", path.display()))?;
        eprintln!("ctl: recorded in {}", path.display());
    }
    Ok(match all_ok {
        true => Exit::Success,
        false => Exit::SomeHostsFailed,
    })
}
