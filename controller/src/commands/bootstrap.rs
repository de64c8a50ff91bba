//! `ctl bootstrap`: install, upgrade or remove the agent on every target over SSH, then
//! record in known_hosts the host key each agent proved, which is the key read over SSH:
//! trust comes from the SSH access the operator already trusts, never from a first
//! contact over muster's own channel.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::operation::LoggedOperation;
use super::Exit;
use crate::audit::record::{BootstrapRecord, OperationEnd, Operator};
use crate::audit::{Kind, Operation};
use crate::bootstrap::agent_binary::AgentBinary;
use crate::bootstrap::remote::Service;
use crate::bootstrap::ssh::{self, SshHost, SshOptions};
use crate::bootstrap::{self, host, Recipe};
use crate::cli::{AgentAddressArg, BootstrapArgs, ConnectArgs, LogOptions, ServiceArg};
use crate::fanout::fan_out;
use crate::outcome::{HostOutcome, Status};
use crate::output;
use crate::plan;
use crate::transfer_progress::TransferProgress;
use crate::trust::{forget_keys, record_keys, Proved};

/// `ctl bootstrap`: see the module docs and the README.
pub async fn bootstrap(args: BootstrapArgs, log_options: &LogOptions) -> Result<Exit> {
    let started = Instant::now();
    // Removing needs no binary.
    let binary = match (args.remove, &args.agent_bin) {
        (true, _) => None,
        (false, Some(path)) => Some(AgentBinary::read(path)?),
        (false, None) => Some(AgentBinary::read(&agent_beside_ctl()?)?),
    };
    let connect_timeout = Duration::from_secs_f64(args.connect_timeout);
    let connect = ConnectArgs {
        keys: args.keys,
        forks: args.forks,
        connect_timeout: args.connect_timeout,
        silence_timeout: args.connect_timeout,
    };
    let plan = plan::resolve(&args.targets, &connect)?;
    let (authorized_keys, operators) =
        bootstrap::authorized_keys(plan.identity.public_key(), args.operators.as_deref())?;
    let control_dir =
        ssh::control_dir().context("cannot make a folder for ssh's control sockets")?;
    let ssh_options = Arc::new(SshOptions {
        program: PathBuf::from("ssh"),
        user: args.ssh_user,
        options: args.ssh_options,
        sudo: args.sudo,
        connect_timeout,
        control_dir: control_dir.path().to_owned(),
    });

    let mut op = Operation::new(Kind::Bootstrap, None);
    op.bootstrap = Some(BootstrapRecord {
        agent_bin: binary.as_ref().map(|b| b.path.display().to_string()),
        agent_sha256: binary.as_ref().map(|b| b.sha256.clone()),
        agent_bytes: binary.as_ref().map(|b| b.bytes.len() as u64),
        operators: operators.iter().map(Operator::of).collect(),
        service: format!("{:?}", args.service).to_lowercase(),
        agent_address: format!("{:?}", args.agent_address).to_lowercase(),
        sudo: args.sudo,
        dry_run: args.dry_run,
        remove: args.remove,
    });
    let logged = LoggedOperation::begin_planned(plan, log_options, op)?;
    let work = match binary {
        None => Work::Remove,
        Some(binary) => Work::Install(Arc::new(Recipe {
            binary,
            authorized_key_count: operators.len(),
            authorized_keys,
            service: match args.service {
                ServiceArg::Auto => None,
                ServiceArg::Systemd => Some(Service::Systemd),
                ServiceArg::None => Some(Service::None),
            },
            listen_on_inventory_address: args.agent_address == AgentAddressArg::Inventory,
            dry_run: args.dry_run,
            ssh: Arc::clone(&ssh_options),
            connector: logged.connector.clone(),
        })),
    };

    let proved: Arc<Mutex<Vec<Option<Proved>>>> =
        Arc::new(Mutex::new(vec![None; logged.targets.len()]));
    let dry_run = args.dry_run;
    let progress = Arc::new(TransferProgress::hosts_only(
        logged.targets.len(),
        args.json,
    ));
    let mut outcomes = fan_out(&logged.targets, logged.forks, |index, host| {
        let (work, proved, ssh) = (work.clone(), Arc::clone(&proved), Arc::clone(&ssh_options));
        let (cancel, progress) = (logged.stop.cancel.clone(), Arc::clone(&progress));
        async move {
            let started = Instant::now();
            let steps = async {
                match work {
                    Work::Remove => host::remove(&ssh, dry_run, index, &host).await,
                    Work::Install(recipe) => {
                        let done = host::install(&recipe, index, &host).await;
                        proved.lock().expect("never poisoned")[index] = done.proved;
                        done.outcome
                    }
                }
            };
            let outcome = tokio::select! {
                outcome = steps => outcome,
                // Dropping the steps kills their ssh; what a host already placed stays
                // whole (every file is renamed into place), and a run again finishes it.
                () = cancel.cancelled() => HostOutcome::failure(
                    Status::Cancelled,
                    "stopped by Ctrl-C; run again to finish this host",
                    started.elapsed(),
                ),
            };
            progress.host_done(&outcome);
            outcome
        }
    })
    .await;
    progress.finish();
    let proved = std::mem::take(&mut *proved.lock().expect("never poisoned"));

    let path = logged.connector.trust.path().to_owned();
    if !args.dry_run {
        if args.remove {
            forget_keys(&path, &logged.targets, &mut outcomes).await?;
        } else {
            // The keys came over SSH and the agents proved them: a key that differs from
            // the recorded one is the host's new key (a reinstalled agent), so it replaces
            // the old line, which is kept commented out.
            record_keys(&path, &logged.targets, &mut outcomes, &proved, true)?;
        }
    }

    let ssh_names: Vec<String> = logged
        .targets
        .iter()
        .enumerate()
        .map(|(index, host)| SshHost::new(&ssh_options, host.ssh_target(), index).describe())
        .collect();
    output::print_bootstrap(&logged.names, &ssh_names, &outcomes, args.json);
    drop(control_dir);
    Ok(logged.end(OperationEnd {
        outcomes: &outcomes,
        kept: &[],
        transfer: None,
        wall: started.elapsed(),
    }))
}

/// What each host gets.
#[derive(Clone)]
enum Work {
    Install(Arc<Recipe>),
    Remove,
}

/// `agent` in the folder of the running `ctl`: where `cargo build` and a release archive
/// put it.
fn agent_beside_ctl() -> Result<PathBuf> {
    let ctl = std::env::current_exe().context("cannot tell where ctl is")?;
    let agent = ctl.with_file_name("agent");
    if !agent.is_file() {
        anyhow::bail!(
            "no agent binary to install: {} does not exist; pass --agent-bin PATH",
            agent.display()
        );
    }
    Ok(agent)
}
