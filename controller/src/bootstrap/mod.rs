//! `ctl bootstrap`: getting agents onto hosts over the SSH access the operator already has,
//! and trusting them through it.
//!
//! - [`agent_binary`]: the binary to install, and what a host needs to run it.
//! - [`remote`]: the `sh` scripts run on a host (probe, install, roll back, remove) and
//!   the parser of what the probe prints.
//! - [`ssh`]: running a script on a host through the system `ssh` client.
//! - [`host`]: one host's steps, from probe to the muster ping that proves the agent
//!   answers with the host key read over SSH.
//!
//! `commands::bootstrap` fans this out, records the proved keys in known_hosts, prints and
//! logs.

pub mod agent_binary;
pub mod host;
pub mod remote;
pub mod ssh;

use std::path::Path;

use anyhow::{bail, Context, Result};
use common::identity::authorized_keys::AuthorizedKeys;
use common::identity::keys::PublicKey;

use self::agent_binary::AgentBinary;
use self::remote::Service;
use self::ssh::SshOptions;
use crate::client::Connector;

/// What every host of one bootstrap gets, and how it is reached.
pub struct Recipe {
    pub binary: AgentBinary,
    /// The text of `/etc/muster/authorized_keys`.
    pub authorized_keys: String,
    pub authorized_key_count: usize,
    /// `None`: systemd where it runs, else none.
    pub service: Option<Service>,
    /// Listen on the host's inventory address rather than on every address.
    pub listen_on_inventory_address: bool,
    pub dry_run: bool,
    pub ssh: std::sync::Arc<SshOptions>,
    /// For the muster ping that ends each host's bootstrap.
    pub connector: Connector,
}

/// The agents' `authorized_keys`: the operator's own key, then every line of `operators`
/// (options kept), the operator's key left out of the first place when the file has it.
///
/// # Errors
/// The operators file cannot be read, or a line of it cannot be used (the line is named):
/// a fleet must not get a file the agent would half obey.
pub fn authorized_keys(
    own: &PublicKey,
    operators: Option<&Path>,
) -> Result<(String, Vec<PublicKey>)> {
    let text = match operators {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the operators file {}", path.display()))?,
        None => String::new(),
    };
    let (parsed, warnings) = AuthorizedKeys::parse(&text);
    if let Some(warning) = warnings.first() {
        let path = operators.map(Path::display);
        bail!(
            "{}: {warning}; fix the file (every line goes to every host)",
            path.map(|path| path.to_string()).unwrap_or_default()
        );
    }
    let mut keys: Vec<PublicKey> = Vec::new();
    let mut lines = Vec::new();
    if !parsed.entries().iter().any(|entry| entry.key() == own) {
        keys.push(own.clone());
        lines.push(openssh_line(own));
    }
    for entry in parsed.entries() {
        keys.push(entry.key().clone());
    }
    lines.extend(
        text.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_owned),
    );
    Ok((lines.join("\n") + "\n", keys))
}

/// `ssh-ed25519 AAAA... comment`.
fn openssh_line(key: &PublicKey) -> String {
    match key.comment() {
        "" => key.to_openssh(),
        comment => format!("{} {comment}", key.to_openssh()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::identity::keys::Identity;

    #[test]
    fn the_operators_keys_follow_ours_and_a_bad_line_is_refused() {
        let own = Identity::generate("me@ws").public_key().clone();
        let other = Identity::generate("other@ws").public_key().clone();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("operators");
        let other_line = format!("from=\"10.0.0.0/8\" {}", openssh_line(&other));
        std::fs::write(&file, format!("# team\n{other_line}\n")).unwrap();
        let (text, keys) = authorized_keys(&own, Some(&file)).unwrap();
        assert_eq!(text, format!("{}\n{other_line}\n", openssh_line(&own)));
        assert_eq!(keys, [own.clone(), other.clone()]);

        // Our own key in the file: its line (with its options) is the one kept.
        let own_line = format!("permit=\"ping\" {}", openssh_line(&own));
        std::fs::write(&file, format!("{own_line}\n")).unwrap();
        let (text, keys) = authorized_keys(&own, Some(&file)).unwrap();
        assert_eq!(text, format!("{own_line}\n"));
        assert_eq!(keys.len(), 1);

        std::fs::write(&file, "ssh-rsa AAAAB3NzaC1yc2E= rsa\n").unwrap();
        let err = authorized_keys(&own, Some(&file)).unwrap_err();
        assert!(format!("{err:#}").contains("line 1"), "{err:#}");
    }
}
