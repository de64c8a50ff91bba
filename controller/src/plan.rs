//! From parsed flags to everything an operation needs: the inventory, the de-duplicated
//! targets and the key. Nothing here touches the network, so every error here means nothing
//! was contacted, and `main` maps it to exit status 2.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::key::Key;

use crate::audit::seal::LogKey;
use crate::cli::{ConnectArgs, LogOptions, TargetArgs};
use crate::inventory::{Host, Inventory, Selection};

/// The resolved hosts and how to reach them.
pub struct Plan {
    pub targets: Vec<Host>,
    /// Each target's inventory groups, for the operation log.
    pub groups_of: BTreeMap<String, Vec<String>>,
    pub key: Key,
    pub forks: usize,
    pub connect_timeout: Duration,
    pub silence_timeout: Duration,
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

/// Resolves targets and loads the key for an operation that contacts hosts.
///
/// # Errors
/// As [`resolve_targets`], or the key file is missing, unreadable, too open or invalid.
pub fn resolve(targets: &TargetArgs, connect: &ConnectArgs) -> Result<Plan> {
    let (inventory, targets) = resolve_targets(targets)?;
    let key = fleet_key(&inventory, connect.key_file.as_deref())?;
    let groups_of = groups_of(&inventory, &targets);
    Ok(Plan {
        targets,
        groups_of,
        key,
        forks: connect.forks as usize,
        connect_timeout: Duration::from_secs_f64(connect.connect_timeout),
        silence_timeout: Duration::from_secs_f64(connect.silence_timeout),
    })
}

/// Loads the fleet key: `--key-file` if given, else the inventory's `defaults.key_file`.
///
/// # Errors
/// Neither names a key file, or the file is missing, too open or invalid.
pub fn fleet_key(inventory: &Inventory, flag: Option<&Path>) -> Result<Key> {
    let path = match (flag, inventory.key_file()) {
        (Some(flag), _) => flag,
        (None, Some(from_inventory)) => from_inventory,
        (None, None) => bail!(
            "no key file: set defaults.key_file in {} or pass --key-file",
            inventory.path().display()
        ),
    };
    Key::load(path).context("cannot use the fleet key")
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

/// The key that seals the operation log: `--log-key-file` if given, else one derived from
/// the fleet key, which `fleet` is asked for only then.
///
/// # Errors
/// The key file named cannot be used, or `fleet` fails.
pub fn log_key(options: &LogOptions, fleet: impl FnOnce() -> Result<Key>) -> Result<LogKey> {
    match &options.log_key_file {
        Some(path) => {
            let key = Key::load(path).context("cannot use the log key")?;
            Ok(LogKey::dedicated(&key))
        }
        None => Ok(LogKey::derived_from_fleet_key(&fleet()?)),
    }
}
