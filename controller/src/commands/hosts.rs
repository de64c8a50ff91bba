//! The commands that contact no host: `ctl hosts` and `ctl keygen`.

use anyhow::{Context, Result};
use common::identity::keys::Identity;

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

/// `ctl keygen PATH`: a new Ed25519 identity in OpenSSH format, PATH (0600) and PATH.pub.
pub fn keygen(args: KeygenArgs) -> Result<Exit> {
    if let Some(parent) = args.path.parent().filter(|p| !p.as_os_str().is_empty()) {
        common::private_file::create_private_dir(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let comment = args.comment.unwrap_or_else(default_comment);
    let identity = Identity::write_new(&args.path, &comment)
        .with_context(|| format!("cannot write a new identity to {}", args.path.display()))?;
    let public = identity.public_key();
    eprintln!(
        "ctl: wrote a new identity to {} (mode 0600) and {}.pub\n\
         ctl: its fingerprint is {public}; add this line to the agents' authorized_keys:\n\
         {} {}",
        args.path.display(),
        args.path.display(),
        public.to_openssh(),
        comment
    );
    Ok(Exit::Success)
}

/// `USER@HOSTNAME`, as ssh-keygen comments a new key.
fn default_comment() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "operator".to_owned());
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{user}@{host}")
}
