//! One host's bootstrap, step by step: probe over SSH, refuse a host that cannot run the
//! agent, install what differs, read the host key the agent made, and check over muster
//! itself that the agent answers with that key. An upgrade whose new agent does not
//! answer is rolled back. Every end is a [`HostOutcome`]; nothing here returns an `Err`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::digest::sha256_hex;
use common::identity::keys::PublicKey;

use super::remote::{self, Facts, Install, Service};
use super::ssh::{SshHost, SshOptions, StepFailure};
use super::Recipe;
use crate::client::{ping, HostKeyPolicy};
use crate::inventory::Host;
use crate::outcome::{HostOutcome, Status};
use crate::trust::Proved;

/// Room left beside the binary, so that installing it does not fill the disk to the
/// last block.
const SPARE_KIB: u64 = 1024;

/// A host's outcome and, when its agent answered with the key read over SSH, that key
/// and the address it answered on (what known_hosts records).
pub struct Bootstrapped {
    pub outcome: HostOutcome,
    pub proved: Option<Proved>,
}

impl Bootstrapped {
    fn failed(status: Status, error: String, started: Instant) -> Bootstrapped {
        Bootstrapped {
            outcome: HostOutcome::failure(status, error, started.elapsed()),
            proved: None,
        }
    }

    fn step_failed(failure: StepFailure, started: Instant) -> Bootstrapped {
        Bootstrapped::failed(failure.status, failure.message, started)
    }
}

/// Installs or upgrades the agent on `host` as `recipe` says, or with `--dry-run` says
/// what it would change.
pub async fn install(recipe: &Recipe, index: usize, host: &Host) -> Bootstrapped {
    let started = Instant::now();
    let ssh = SshHost::new(&recipe.ssh, host.ssh_target(), index);
    if let Err(failure) = ssh.connect().await {
        return Bootstrapped::step_failed(failure, started);
    }
    let result = install_over(recipe, &ssh, host).await;
    ssh.close().await;
    result
}

/// Stops and removes the agent on `host` (or with `--dry-run` says whether there is one).
pub async fn remove(ssh: &SshOptions, dry_run: bool, index: usize, host: &Host) -> HostOutcome {
    let started = Instant::now();
    let ssh = SshHost::new(ssh, host.ssh_target(), index);
    if let Err(failure) = ssh.connect().await {
        return Bootstrapped::step_failed(failure, started).outcome;
    }
    let step = match dry_run {
        true => ssh.run(&remote::probe(), None).await.and_then(|output| {
            let facts = Facts::parse(&output.stdout).map_err(|err| StepFailure {
                status: Status::Error,
                message: err.to_string(),
                stdout: output.stdout.clone(),
            })?;
            let installed = facts.agent_sha256.is_some() || facts.running.is_some();
            Ok(format!("removed={}", if installed { "yes" } else { "no" }))
        }),
        false => ssh.run(&remote::remove(), None).await.map(|out| out.stdout),
    };
    ssh.close().await;
    let stdout = match step {
        Ok(stdout) => stdout,
        Err(failure) => return Bootstrapped::step_failed(failure, started).outcome,
    };
    let verb = if dry_run { "would remove" } else { "removed" };
    match remote::value_of(&stdout, "removed") {
        Some("yes") => HostOutcome {
            changes: vec![format!(
                "{verb} the agent, its service and {}",
                remote::layout::CONFIG_DIR
            )],
            ..HostOutcome::succeeded(started.elapsed())
        },
        _ => HostOutcome {
            status: Status::Unchanged,
            changes: vec!["no agent installed".to_owned()],
            ..HostOutcome::succeeded(started.elapsed())
        },
    }
}

async fn install_over(recipe: &Recipe, ssh: &SshHost<'_>, host: &Host) -> Bootstrapped {
    let started = Instant::now();
    let facts = match ssh.run(&remote::probe(), None).await {
        Err(failure) => return Bootstrapped::step_failed(failure, started),
        Ok(output) => match Facts::parse(&output.stdout) {
            Ok(facts) => facts,
            Err(err) => return Bootstrapped::failed(Status::Error, err.to_string(), started),
        },
    };
    let service = match recipe.service.unwrap_or(match facts.systemd {
        true => Service::Systemd,
        false => Service::None,
    }) {
        Service::Systemd if !facts.systemd => {
            let why = "--service systemd, but systemd does not run there (--service none \
                       starts the agent without it); nothing changed";
            return Bootstrapped::failed(Status::Failed, why.to_owned(), started);
        }
        service => service,
    };
    let env = agent_env(recipe, host);
    let wanted = Wanted::new(recipe, &facts, &env, service);
    if let Some(why) = refusal(recipe, &facts, &wanted, service) {
        return Bootstrapped::failed(Status::Failed, format!("{why}; nothing changed"), started);
    }
    let changes = wanted.describe(recipe, &facts, host, service);
    if recipe.dry_run {
        return Bootstrapped {
            outcome: HostOutcome {
                status: match changes.is_empty() {
                    true => Status::Unchanged,
                    false => Status::Ok,
                },
                changes: changes
                    .iter()
                    .map(|change| format!("would {change}"))
                    .collect(),
                ..HostOutcome::succeeded(started.elapsed())
            },
            proved: None,
        };
    }

    // Nothing to change: the agent there only has to answer with the key it has.
    let (key_line, replaced_binary) = match changes.is_empty() {
        true => (facts.host_key.clone().unwrap_or_default(), false),
        false => {
            let install = wanted.install();
            let stdin = install
                .binary_sha256
                .map(|_| recipe.binary.bytes.as_slice());
            match ssh.run(&remote::install(&install, service), stdin).await {
                Ok(output) => (
                    remote::value_of(&output.stdout, "host_key")
                        .unwrap_or_default()
                        .to_owned(),
                    replaced(&output.stdout),
                ),
                Err(failure) => {
                    if replaced(&failure.stdout) && facts.agent_sha256.is_some() {
                        let why = format!("the new agent did not start: {}", failure.message);
                        return roll_back(recipe, ssh, host, service, why, started).await;
                    }
                    return Bootstrapped::step_failed(failure, started);
                }
            }
        }
    };
    let key = match PublicKey::from_openssh(&key_line) {
        Ok(key) => key,
        Err(err) => {
            let why = format!(
                "cannot read the agent's host key {}: {err}",
                remote::layout::HOST_KEY_PUB
            );
            return Bootstrapped::failed(Status::Error, why, started);
        }
    };
    let (answer, peer) = ping_pinned(recipe, host, &key).await;
    if !answer.is_ok() {
        let why = answer.error.unwrap_or_default();
        if replaced_binary && facts.agent_sha256.is_some() {
            let why = format!("the new agent did not answer: {why}");
            return roll_back(recipe, ssh, host, service, why, started).await;
        }
        let why = match changes.is_empty() {
            true => format!("the agent is up to date but does not answer: {why}"),
            false => format!("installed, but the agent does not answer: {why}"),
        };
        return Bootstrapped::failed(answer.status, why, started);
    }
    if replaced_binary {
        if let Err(failure) = ssh.run(&remote::commit(), None).await {
            tracing::warn!(error = %failure.message, "cannot remove the previous agent binary");
        }
    }
    Bootstrapped {
        outcome: HostOutcome {
            status: match changes.is_empty() {
                true => Status::Unchanged,
                false => Status::Ok,
            },
            changes,
            sha256: Some(recipe.binary.sha256.clone()),
            ..answer
        }
        .with_duration(started.elapsed()),
        proved: peer.map(|peer| (peer, key)),
    }
}

/// After a new binary failed: the previous one back, restarted, and asked to answer.
async fn roll_back(
    recipe: &Recipe,
    ssh: &SshHost<'_>,
    host: &Host,
    service: Service,
    why: String,
    started: Instant,
) -> Bootstrapped {
    let output = match ssh.run(&remote::roll_back(service), None).await {
        Ok(output) => output,
        Err(failure) => {
            let why = format!("{why}; rolling back failed too: {}", failure.message);
            return Bootstrapped::failed(Status::Error, why, started);
        }
    };
    let line = remote::value_of(&output.stdout, "host_key").unwrap_or_default();
    let Ok(key) = PublicKey::from_openssh(line) else {
        let why = format!("{why}; rolled back, but the previous agent shows no host key");
        return Bootstrapped::failed(Status::Error, why, started);
    };
    let (answer, peer) = ping_pinned(recipe, host, &key).await;
    match answer.is_ok() {
        true => Bootstrapped {
            outcome: HostOutcome {
                status: Status::Failed,
                error: Some(format!(
                    "{why}; rolled back to the previous agent, which answers"
                )),
                changes: vec!["rolled back to the previous agent".to_owned()],
                ..answer
            }
            .with_duration(started.elapsed()),
            proved: peer.map(|peer| (peer, key)),
        },
        false => Bootstrapped::failed(
            Status::Error,
            format!(
                "{why}; rolled back, but the previous agent does not answer either: {}",
                answer.error.unwrap_or_default()
            ),
            started,
        ),
    }
}

/// Whether the install step, by what it printed, put a new binary in place (also when it
/// failed later).
fn replaced(stdout: &str) -> bool {
    stdout.lines().any(|line| line == "binary=replaced")
}

/// Pings the agent of `host`, accepting only `key`. A just-started agent may not listen
/// yet: a refused connection is tried again until the connect timeout.
async fn ping_pinned(
    recipe: &Recipe,
    host: &Host,
    key: &PublicKey,
) -> (HostOutcome, Option<SocketAddr>) {
    let mut connector = recipe.connector.clone();
    connector.host_keys = HostKeyPolicy::Pinned(key.clone());
    let deadline = Instant::now() + connector.connect_timeout;
    loop {
        let (outcome, peer) = ping::ping_at(&connector, host).await;
        if outcome.status != Status::Unreachable || Instant::now() >= deadline {
            return (outcome, peer);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `/etc/muster/agent.env`: where the agent listens.
fn agent_env(recipe: &Recipe, host: &Host) -> String {
    let address = match recipe.listen_on_inventory_address {
        true => host.endpoint(),
        false => format!("0.0.0.0:{}", host.port),
    };
    format!("MUSTER_LISTEN={address}\n")
}

/// What differs between the host and what it should have.
struct Wanted<'a> {
    binary: Option<&'a str>,
    authorized_keys: Option<&'a str>,
    agent_env: Option<&'a str>,
    unit: bool,
    restart: bool,
}

impl<'a> Wanted<'a> {
    fn new(recipe: &'a Recipe, facts: &Facts, env: &'a str, service: Service) -> Wanted<'a> {
        let differs = |has: &Option<String>, wants: &str| has.as_deref() != Some(wants);
        let binary = differs(&facts.agent_sha256, &recipe.binary.sha256)
            .then_some(recipe.binary.sha256.as_str());
        let authorized_keys = differs(
            &facts.keys_sha256,
            &sha256_hex(recipe.authorized_keys.as_bytes()),
        )
        .then_some(recipe.authorized_keys.as_str());
        let agent_env = differs(&facts.env_sha256, &sha256_hex(env.as_bytes())).then_some(env);
        let unit = service == Service::Systemd
            && differs(
                &facts.unit_sha256,
                &sha256_hex(remote::UNIT_TEXT.as_bytes()),
            );
        let restart =
            binary.is_some() || agent_env.is_some() || unit || facts.running != Some(service);
        Wanted {
            binary,
            authorized_keys,
            agent_env,
            unit,
            restart,
        }
    }

    fn install(&self) -> Install<'a> {
        Install {
            binary_sha256: self.binary,
            authorized_keys: self.authorized_keys,
            agent_env: self.agent_env,
            unit: self.unit,
            restart: self.restart,
        }
    }

    /// The changes in words, as the output and the log give them ("install agent ...").
    fn describe(
        &self,
        recipe: &Recipe,
        facts: &Facts,
        host: &Host,
        service: Service,
    ) -> Vec<String> {
        let short = |sha: &str| sha.chars().take(12).collect::<String>();
        let mut changes = Vec::new();
        if let Some(sha) = self.binary {
            changes.push(match &facts.agent_sha256 {
                None => format!("install agent sha256:{}", short(sha)),
                Some(old) => format!(
                    "upgrade agent sha256:{} to sha256:{}",
                    short(old),
                    short(sha)
                ),
            });
        }
        if self.authorized_keys.is_some() {
            changes.push(format!(
                "write authorized_keys ({} keys)",
                recipe.authorized_key_count
            ));
        }
        if self.agent_env.is_some() {
            changes.push(format!(
                "listen on {}",
                agent_env(recipe, host)
                    .trim_start_matches("MUSTER_LISTEN=")
                    .trim_end()
            ));
        }
        if self.unit {
            changes.push(format!("install the unit {}", remote::layout::UNIT));
        }
        if self.restart {
            let verb = match facts.running {
                Some(_) => "restart",
                None => "start",
            };
            changes.push(format!("{verb} the agent (service {})", service.as_str()));
        }
        changes
    }
}

/// Why the host cannot take the agent, checked before anything changes.
fn refusal(recipe: &Recipe, facts: &Facts, wanted: &Wanted, service: Service) -> Option<String> {
    if facts.kernel != "Linux" {
        return Some(format!(
            "the host runs {:?}; the agent needs Linux",
            facts.kernel
        ));
    }
    if facts.uid != Some(0) {
        let uid = facts
            .uid
            .map_or("unknown".to_owned(), |uid| uid.to_string());
        return Some(format!(
            "the remote steps need root, and the SSH login is uid {uid}: log in as root \
             (--ssh-user root) or pass --sudo"
        ));
    }
    let needed: Vec<&str> = facts
        .missing
        .iter()
        .map(String::as_str)
        .filter(|tool| *tool != "setsid" || service == Service::None)
        .collect();
    if !needed.is_empty() {
        return Some(format!("the host lacks {}", needed.join(", ")));
    }
    if let Some(why) = recipe.binary.refusal(&facts.arch, &facts.libc) {
        return Some(why);
    }
    if wanted.binary.is_some() {
        let needed_kib = (recipe.binary.bytes.len() as u64).div_ceil(1024) + SPARE_KIB;
        match facts.free_kib {
            Some(free) if free >= needed_kib => {}
            Some(free) => {
                return Some(format!(
                    "not enough space for the agent in /usr/local/bin: {free} KiB free, \
                     {needed_kib} KiB needed"
                ))
            }
            None => return Some("cannot tell the free space in /usr/local/bin".to_owned()),
        }
    }
    None
}
