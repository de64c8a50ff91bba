//! From parsed flags to everything an operation needs: the inventory, the de-duplicated
//! targets and the key. Nothing here touches the network, so every error here means nothing
//! was contacted, and `main` maps it to exit status 2.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::inventory::{Host, Inventory, Selection};
use common::key::Key;

use crate::cli::{ConnectArgs, TargetArgs};

/// The resolved hosts and how to reach them.
pub struct Plan {
    pub targets: Vec<Host>,
    pub key: Key,
    pub forks: usize,
    pub connect_timeout: Duration,
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
    let key_path: PathBuf = match (&connect.key_file, inventory.key_file()) {
        (Some(flag), _) => flag.clone(),
        (None, Some(from_inventory)) => from_inventory.to_owned(),
        (None, None) => bail!(
            "no key file: set defaults.key_file in {} or pass --key-file",
            inventory.path().display()
        ),
    };
    let key = Key::load(&key_path).context("cannot use the fleet key")?;
    Ok(Plan {
        targets,
        key,
        forks: connect.forks as usize,
        connect_timeout: Duration::from_secs_f64(connect.connect_timeout),
    })
}
