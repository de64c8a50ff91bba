//! The commands that contact no host: `ctl hosts` and `ctl keygen`.

use anyhow::{Context, Result};
use common::key::Key;

use super::Exit;
use crate::cli::{HostsArgs, KeygenArgs};
use crate::output;
use crate::plan;

/// `ctl hosts`: the resolved targets, without contacting them.
pub fn hosts(args: HostsArgs) -> Result<Exit> {
    let (_, targets) = plan::resolve_targets(&args.targets)?;
    let width = targets
        .iter()
        .map(|host| host.name.len())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for host in &targets {
        text.push_str(&format!("{:width$}  {}\n", host.name, host.endpoint()));
    }
    output::print_stdout(&text);
    Ok(Exit::Success)
}

/// `ctl keygen PATH`: a new random key in a new file with mode 0600.
pub fn keygen(args: KeygenArgs) -> Result<Exit> {
    if let Some(parent) = args.path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    Key::generate().write_new(&args.path)?;
    eprintln!(
        "ctl: wrote a new key to {} (mode 0600); copy it to every agent host",
        args.path.display()
    );
    Ok(Exit::Success)
}
