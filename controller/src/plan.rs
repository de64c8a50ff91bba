//! From parsed flags to everything an operation needs: the inventory, the de-duplicated
//! targets, the operator's identity and the known host keys. Nothing here touches the network, so every error here means nothing
//! was contacted, and `main` maps it to exit status 2.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::identity::keys::Identity;
use common::tls::Credentials;

use crate::cli::{ConnectArgs, KeyArgs, TargetArgs};
use crate::client::{Connector, HostKeyPolicy};
use crate::inventory::{Host, Inventory, Selection};
use crate::trust::HostTrust;

/// The resolved hosts and how to reach them.
pub struct Plan {
    pub targets: Vec<Host>,
    /// Each target's inventory groups, for the operation log.
    pub groups_of: BTreeMap<String, Vec<String>>,
    pub identity: Arc<Identity>,
    /// The identity as TLS presents it, made once for every host.
    pub credentials: Credentials,
    pub trust: Arc<HostTrust>,
    pub forks: usize,
    pub connect_timeout: Duration,
    pub silence_timeout: Duration,
}

impl Plan {
    /// How every host task connects: with our identity, trusting the agents' recorded keys.
    pub fn connector(&self) -> Connector {
        Connector {
            credentials: self.credentials.clone(),
            trust: Arc::clone(&self.trust),
            host_keys: HostKeyPolicy::KnownHosts,
            connect_timeout: self.connect_timeout,
            silence_timeout: self.silence_timeout,
        }
    }
}

/// Loads the inventory and resolves the selection to hosts, each once, in inventory order.
///
/// # Errors
/// The inventory cannot be read or is invalid, a name is unknown, or nothing is selected.
pub fn resolve_targets(args: &TargetArgs) -> Result<(Inventory, Vec<Host>)> {
    if args.groups.is_empty() && args.hosts.is_empty() {
        bail!("no targets: give -g GROUP (e.g. -g all) or -H HOST");
    }
    let inventory = Inventory::load(&args.inventory)?;
    let selection = Selection {
        groups: args.groups.clone(),
        hosts: args.hosts.clone(),
        exclude: args.exclude.clone(),
    };
    let targets = inventory.select(&selection)?;
    if targets.is_empty() {
        bail!("the selection leaves no hosts (everything was excluded)");
    }
    Ok((inventory, targets))
}

/// Resolves targets and loads the identity and known hosts for an operation that contacts
/// hosts.
///
/// # Errors
/// As [`resolve_targets`], or the identity cannot be used (missing, readable by others,
/// not Ed25519, passphrase-protected and not in ssh-agent, or ssh-agent would not sign its
/// certificate), or known_hosts cannot be read.
pub fn resolve(targets: &TargetArgs, connect: &ConnectArgs) -> Result<Plan> {
    let (inventory, targets) = resolve_targets(targets)?;
    let identity = Arc::new(load_identity(&inventory, &connect.keys)?);
    let credentials = Credentials::new(Arc::clone(&identity))?;
    let trust = HostTrust::load(known_hosts_path(&inventory, &connect.keys))?;
    let groups_of = groups_of(&inventory, &targets);
    Ok(Plan {
        targets,
        groups_of,
        identity,
        credentials,
        trust: Arc::new(trust),
        forks: connect.forks as usize,
        connect_timeout: Duration::from_secs_f64(connect.connect_timeout),
        silence_timeout: Duration::from_secs_f64(connect.silence_timeout),
    })
}

/// The operator's identity: `--identity` (or `$CTL_IDENTITY`), else the inventory's
/// `defaults.identity`, else `~/.ssh/id_ed25519`.
///
/// # Errors
/// No path can be found, or the key cannot be used.
pub fn load_identity(inventory: &Inventory, keys: &KeyArgs) -> Result<Identity> {
    let path = identity_path(keys.identity.as_deref(), inventory)?;
    Identity::load(&path).with_context(|| format!("cannot use the identity {}", path.display()))
}

/// Where the operator's identity is, as [`load_identity`] looks for it: `flag` (from
/// `--identity` or `$CTL_IDENTITY`), else the inventory's `defaults.identity`, else
/// `~/.ssh/id_ed25519`. Nothing is read.
///
/// # Errors
/// None of them is given and HOME is not set.
pub fn identity_path(flag: Option<&Path>, inventory: &Inventory) -> Result<PathBuf> {
    Ok(match (flag, inventory.identity()) {
        (Some(flag), _) => flag.to_owned(),
        (None, Some(from_inventory)) => from_inventory.to_owned(),
        (None, None) => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".ssh/id_ed25519"),
            None => bail!(
                "no identity: pass --identity, set defaults.identity in {}, or set HOME",
                inventory.path().display()
            ),
        },
    })
}

/// Where the agents' host keys are: `--known-hosts` (or `$CTL_KNOWN_HOSTS`), else the
/// inventory's `defaults.known_hosts`, else `known_hosts` beside the inventory.
pub fn known_hosts_path(inventory: &Inventory, keys: &KeyArgs) -> PathBuf {
    keys.known_hosts
        .clone()
        .unwrap_or_else(|| inventory.known_hosts())
}

/// For each target, the groups that hold it, so the log can answer "which operations
/// touched group X" as the inventory was at the time.
fn groups_of(inventory: &Inventory, targets: &[Host]) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = targets
        .iter()
        .map(|host| (host.name.clone(), Vec::new()))
        .collect();
    for group in inventory.group_names() {
        for host in inventory.group_hosts(group).into_iter().flatten() {
            if let Some(list) = groups.get_mut(&host.name) {
                list.push(group.to_owned());
            }
        }
    }
    groups
}
