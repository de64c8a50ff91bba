//! `ctl trust`: learn the targets' host keys over a full handshake and record them in
//! `known_hosts`, as `ssh` asks on first contact, but on purpose and for many hosts at once.
//! A changed key is never replaced without `--replace`. Like every operation that contacts
//! hosts, it is written to the operation log: which key each host proved and what became
//! of it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;
use common::identity::keys::PublicKey;

use super::operation::LoggedOperation;
use super::Exit;
use crate::audit::record::OperationEnd;
use crate::audit::{Kind, Operation};
use crate::cli::{LogOptions, TrustArgs};
use crate::client::HostKeyPolicy;
use crate::fanout::fan_out;
use crate::outcome::{HostOutcome, Status};
use crate::output;
use crate::trust::{record_keys, Proved};

/// `ctl trust`: connect to every target, print its host key's fingerprint, and record the
/// keys not yet known.
pub async fn trust(args: TrustArgs, log_options: &LogOptions) -> Result<Exit> {
    let started = Instant::now();
    let op = Operation::new(Kind::Trust, None);
    let mut logged = LoggedOperation::begin(&args.targets, &args.connect, log_options, op)?;
    logged.connector.host_keys = HostKeyPolicy::Any;
    let path = logged.connector.trust.path().to_owned();

    // The fan-out collects outcomes; the keys found go beside them, by target index.
    let found: Arc<Mutex<Vec<Option<Proved>>>> =
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

    let recorded = record_keys(&path, &logged.targets, &mut outcomes, &found, args.replace)?;
    let addrs: Vec<String> = logged.targets.iter().map(|host| host.endpoint()).collect();
    let keys: Vec<Option<&PublicKey>> = found
        .iter()
        .map(|f| f.as_ref().map(|(_, key)| key))
        .collect();
    output::print_trust(&logged.names, &addrs, &outcomes, &keys, args.json);
    if recorded {
        eprintln!("ctl: recorded in {}", path.display());
    }
    Ok(logged.end(OperationEnd {
        outcomes: &outcomes,
        kept: &[],
        transfer: None,
        wall: started.elapsed(),
    }))
}
