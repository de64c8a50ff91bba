//! `ctl trust`: learn the targets' host keys over a full handshake and record them in
//! `known_hosts`, as `ssh` asks on first contact, but on purpose and for many hosts at once.
//! A changed key is never replaced without `--replace`. Like every operation that contacts
//! hosts, it is written to the operation log: which key each host proved and what became
//! of it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use common::identity::keys::PublicKey;
use common::identity::known_hosts::{KnownHosts, Lookup};

use super::operation::LoggedOperation;
use super::Exit;
use crate::audit::record::OperationEnd;
use crate::audit::{Kind, Operation};
use crate::cli::{LogOptions, TrustArgs};
use crate::fanout::fan_out;
use crate::outcome::{HostOutcome, KnownHostsChange, Status};
use crate::output;

/// The address an agent answered on and the key it proved.
type Presented = (SocketAddr, PublicKey);

/// `ctl trust`: connect to every target, print its host key's fingerprint, and record the
/// keys not yet known.
pub async fn trust(args: TrustArgs, log_options: &LogOptions) -> Result<Exit> {
    let started = Instant::now();
    let op = Operation::new(Kind::Trust, None);
    let mut logged = LoggedOperation::begin(&args.targets, &args.connect, log_options, op)?;
    logged.connector.learn_keys = true;
    let path = logged.connector.trust.path().to_owned();

    // The fan-out collects outcomes; the keys found go beside them, by target index.
    let found: Arc<Mutex<Vec<Option<Presented>>>> =
        Arc::new(Mutex::new(vec![None; logged.targets.len()]));
    let mut outcomes = fan_out(&logged.targets, logged.forks, |index, host| {
        let (connector, found) = (logged.connector.clone(), Arc::clone(&found));
        let cancel = logged.stop.cancel.clone();
        async move {
            let started = Instant::now();
            tokio::select! {
                got = connector.host_key(&host) => match got {
                    Ok(presented) => {
                        let fingerprint = presented.1.fingerprint();
                        found.lock().expect("never poisoned")[index] = Some(presented);
                        HostOutcome::succeeded(started.elapsed()).with_host_key(fingerprint)
                    }
                    Err(outcome) => outcome,
                },
                () = cancel.cancelled() => HostOutcome::failure(
                    Status::Cancelled,
                    "stopped by Ctrl-C before the key was learned",
                    started.elapsed(),
                ),
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
    for ((host, outcome), presented) in logged.targets.iter().zip(&mut outcomes).zip(&found) {
        let Some((peer, key)) = presented else {
            continue;
        };
        let change = match known.lookup(&host.name, *peer, key) {
            Lookup::Known { .. } => Ok(KnownHostsChange::Known),
            Lookup::Unknown => known
                .add(&host.name, *peer, key)
                .map(|_| KnownHostsChange::Added),
            Lookup::Changed { .. } if args.replace => known
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
    if outcomes.iter().any(recorded) {
        if let Err(err) = known.save(&path) {
            let why = format!("not recorded: cannot write {}: {err}", path.display());
            for outcome in outcomes.iter_mut().filter(|outcome| recorded(outcome)) {
                outcome.status = Status::Error;
                outcome.error = Some(why.clone());
                outcome.known_hosts = None;
            }
        }
    }

    let addrs: Vec<String> = logged.targets.iter().map(|host| host.endpoint()).collect();
    let keys: Vec<Option<&PublicKey>> = found
        .iter()
        .map(|f| f.as_ref().map(|(_, key)| key))
        .collect();
    output::print_trust(&logged.names, &addrs, &outcomes, &keys, args.json);
    if outcomes.iter().any(recorded) {
        eprintln!("ctl: recorded in {}", path.display());
    }
    Ok(logged.end(OperationEnd {
        outcomes: &outcomes,
        kept: &[],
        transfer: None,
        wall: started.elapsed(),
    }))
}
