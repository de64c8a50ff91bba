//! The inventory model: which hosts exist, where their agents listen, and how they are grouped.
//!
//! This module owns the `inventory.yaml` format, its validation, group resolution and the
//! `--group`/`--host`/`--exclude` selection. It does not read the operator's identity or
//! `known_hosts` (that is [`common::identity`]; we only resolve their paths), resolve DNS
//! names, or parse command lines.
//!
//! ```yaml
//! defaults:
//!   port: 7070                 # agent port for hosts that give none (7070 when absent)
//!   identity: keys/operator    # the operator's Ed25519 key, relative to this file's folder
//!   known_hosts: known_hosts   # the agents' host keys (default: known_hosts beside this file)
//! hosts:
//!   web1: 127.0.0.1:7001
//!   web2: { address: 127.0.0.1, port: 7002 }
//!   app[01:03]: 127.0.1.[1:3]  # app01 → 127.0.1.1, app02 → 127.0.1.2, ...
//!   v6: "[::1]:7004"
//! groups:
//!   web: [web1, web2]
//!   app: ["app[01:03]"]
//!   prod: [web, app]           # groups may contain groups
//! ```
//!
//! Everything is checked when the file is loaded, so the rest of `ctl` can trust an
//! [`Inventory`]: addresses and ports are valid, names are unique, ranges (see [`range`]) are
//! expanded, and every group is already flattened to a list of hosts with cycles rejected. A
//! mistake in the file therefore fails before any host is contacted, with an error that names
//! the file and the offending value instead of surfacing halfway through a fan-out.
//!
//! Hosts keep the order of the file, and every list we return follows it. Operators write the
//! file in the order they think about their fleet, and a stable order keeps output diffable. For
//! that reason, and because serde's maps silently keep only the last of two equal keys, the
//! `hosts` and `groups` maps are read into ordered entry lists (see [`raw`]) and checked for
//! duplicates by the steps that read them.
//!
//! `all` is a reserved group meaning every host. A group may not share its name with a host,
//! because `--exclude NAME` accepts either and must not have to guess.
//!
//! This file holds the model ([`Inventory`], [`Host`], [`Selection`]) and the recipe that builds
//! an [`Inventory`] from the file; each step has a module of its own:
//!
//! - [`raw`]: the file as written: serde types and YAML parsing, nothing checked yet.
//! - [`hosts`]: the `hosts:` section expanded into hosts, names checked, each defined once.
//! - [`endpoint`]: one address and port as written, parsed and checked.
//! - [`groups`]: the `groups:` section flattened into hosts, cycles and unknown members refused.
//! - [`selection`]: `--group`/`--host`/`--exclude` resolved against a loaded inventory.
//! - [`range`]: `web[01:20]` patterns, for all of the above.
//! - [`error`]: what can go wrong, worded with the file and the value, and the did-you-mean
//!   suggestions.

pub mod range;

mod endpoint;
mod error;
#[cfg(test)]
mod fixtures;
mod groups;
mod hosts;
mod pattern;
mod raw;
mod selection;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use endpoint::is_login_name;
pub use error::{InventoryError, NameKind};

use endpoint::to_port;
use groups::GroupResolver;
use hosts::build_hosts;

/// The agent port used when neither the host nor `defaults.port` gives one.
pub const DEFAULT_PORT: u16 = 7070;

/// The reserved group that contains every host, in file order.
pub const ALL_GROUP: &str = "all";

/// A loaded and validated inventory file.
#[derive(Debug, Clone)]
pub struct Inventory {
    path: PathBuf,
    identity: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    /// Every host, in file order, with ranges expanded.
    hosts: Vec<Host>,
    /// Host name → position in `hosts`.
    host_index: BTreeMap<String, usize>,
    /// Group name → positions in `hosts`, sorted and without repeats (nested groups flattened).
    groups: BTreeMap<String, Vec<usize>>,
}

/// One host of the inventory and the endpoint of its agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The host's name in the inventory, after range expansion (`app01`).
    pub name: String,
    /// An IPv4 or IPv6 literal (IPv6 without brackets) or a DNS name.
    pub address: String,
    /// The agent's TCP port, never 0.
    pub port: u16,
    /// Where `ctl bootstrap` reaches the host over SSH, when the inventory says
    /// (`ssh: user@host:port`); else the host's address, with ssh's own defaults.
    pub ssh: Option<SshTarget>,
}

/// A host's SSH login as the inventory gives it: `[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub user: Option<String>,
    /// An IPv4 or IPv6 literal (IPv6 without brackets) or a DNS name.
    pub host: String,
    pub port: Option<u16>,
}

/// Which hosts an operation targets, as given on the command line.
///
/// Each entry is one name, which may contain ranges (`web[1:2]`).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Groups whose hosts are selected (`-g`); `all` means every host.
    pub groups: Vec<String>,
    /// Hosts selected by name (`-H`).
    pub hosts: Vec<String>,
    /// Hosts or groups removed from the selection (`--exclude`).
    pub exclude: Vec<String>,
}

impl Host {
    /// Where ssh reaches the host: the inventory's `ssh:`, else its address.
    pub fn ssh_target(&self) -> SshTarget {
        self.ssh.clone().unwrap_or_else(|| SshTarget {
            user: None,
            host: self.address.clone(),
            port: None,
        })
    }

    /// The `address:port` string to connect to, with IPv6 addresses in brackets
    /// (`127.0.0.1:7001`, `[::1]:7004`).
    pub fn endpoint(&self) -> String {
        if self.address.contains(':') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }
}

impl Inventory {
    /// Reads and validates the inventory file at `path`.
    ///
    /// # Errors
    ///
    /// [`InventoryError::Read`] if the file cannot be read, otherwise as
    /// [`Inventory::from_yaml_str`].
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|error| InventoryError::Read {
            path: path.to_owned(),
            error,
        })?;
        Inventory::from_yaml_str(&text, path)
    }

    /// Parses and validates inventory YAML. `path` is used in error messages and as the base
    /// folder of relative `defaults.identity` and `defaults.known_hosts`; nothing is read
    /// from it.
    ///
    /// # Errors
    ///
    /// Any [`InventoryError`] except `Read` and `UnknownName`: bad YAML or shape (with line and
    /// column), bad names, addresses, ports or ranges, duplicates, unknown group members and
    /// group cycles.
    pub fn from_yaml_str(text: &str, path: &Path) -> Result<Inventory, InventoryError> {
        let raw = raw::parse(text, path)?;
        let defaults = raw.defaults.unwrap_or_default();
        let default_port = match defaults.port {
            None => DEFAULT_PORT,
            Some(port) => to_port(port).ok_or_else(|| InventoryError::BadDefaultPort {
                path: path.to_owned(),
                port,
            })?,
        };
        let host_entries = raw.hosts.map_or_else(Vec::new, |entries| entries.0);
        let (hosts, host_index) = build_hosts(path, default_port, &host_entries)?;
        let group_entries = raw.groups.map_or_else(Vec::new, |entries| entries.0);
        let groups = GroupResolver::new(path, &group_entries, &host_index, hosts.len())?.run()?;
        let beside = |file: PathBuf| match path.parent() {
            Some(dir) => dir.join(file),
            None => file,
        };
        Ok(Inventory {
            path: path.to_owned(),
            identity: defaults.identity.map(beside),
            known_hosts: defaults.known_hosts.map(beside),
            hosts,
            host_index,
            groups,
        })
    }

    /// The inventory file this was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `defaults.identity`, resolved against the inventory's folder; `None` if not set.
    pub fn identity(&self) -> Option<&Path> {
        self.identity.as_deref()
    }

    /// `defaults.known_hosts`, resolved against the inventory's folder; else `known_hosts`
    /// beside the inventory.
    pub fn known_hosts(&self) -> PathBuf {
        match (&self.known_hosts, self.path.parent()) {
            (Some(file), _) => file.clone(),
            (None, Some(dir)) => dir.join("known_hosts"),
            (None, None) => PathBuf::from("known_hosts"),
        }
    }

    /// The names of the groups defined in the file, sorted; the reserved `all` is not included.
    pub fn group_names(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    /// The hosts of group `name` (nested groups flattened) in file order, or `None` if there is
    /// no such group. `all` gives every host.
    pub fn group_hosts(&self, name: &str) -> Option<Vec<&Host>> {
        if name == ALL_GROUP {
            return Some(self.hosts.iter().collect());
        }
        let members = self.groups.get(name)?;
        Some(members.iter().map(|&i| &self.hosts[i]).collect())
    }
}

/// Host and group names end up in output prefixes, logs, command lines and file names (kept
/// output, pulled files), so keep them plain: no leading dot, so never `.` or `..`.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Expands `pattern`, blaming `name` (the entry it belongs to) if the range is bad.
fn expand_in(path: &Path, name: &str, pattern: &str) -> Result<Vec<String>, InventoryError> {
    range::expand(pattern).map_err(|error| InventoryError::Range {
        path: path.to_owned(),
        name: name.to_owned(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::inventory::fixtures::{load, select, EXAMPLE};

    #[test]
    fn example_file_loads() {
        let inv = load(EXAMPLE);
        let endpoints: Vec<(&str, String)> = inv
            .hosts
            .iter()
            .map(|h| (h.name.as_str(), h.endpoint()))
            .collect();
        let expected = [
            ("web1", "127.0.0.1:7001"),
            ("web2", "127.0.0.1:7002"),
            ("db1", "127.0.0.1:7070"),
            ("app01", "127.0.1.1:7070"),
            ("app02", "127.0.1.2:7070"),
            ("app03", "127.0.1.3:7070"),
            ("v6", "[::1]:7004"),
        ];
        let expected: Vec<(&str, String)> =
            expected.iter().map(|(n, e)| (*n, e.to_string())).collect();
        assert_eq!(endpoints, expected);
        assert_eq!(
            inv.group_names().collect::<Vec<_>>(),
            ["app", "db", "prod", "web"]
        );
        assert_eq!(inv.identity(), Some(Path::new("/etc/muster/keys/operator")));
        assert_eq!(inv.known_hosts(), Path::new("/etc/muster/known_hosts"));
        assert_eq!(inv.path(), Path::new("/etc/muster/inventory.yaml"));
    }

    #[test]
    fn load_reads_the_file_and_reports_a_missing_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("inventory.yaml");
        std::fs::write(&path, EXAMPLE).expect("write inventory");
        let inv = Inventory::load(&path).unwrap_or_else(|e| panic!("load failed: {e}"));
        assert_eq!(inv.hosts.len(), 7);
        assert_eq!(
            inv.identity(),
            Some(dir.path().join("keys/operator").as_path())
        );

        let missing = dir.path().join("nope.yaml");
        let err = Inventory::load(&missing).unwrap_err();
        assert!(
            matches!(&err, InventoryError::Read { path, .. } if *path == missing),
            "got {err:?}"
        );
        assert!(err.to_string().contains("nope.yaml"), "got {err}");
    }

    #[test]
    fn defaults_are_optional() {
        let inv = load("hosts:\n  a: example.com\n");
        assert_eq!(inv.hosts[0].port, DEFAULT_PORT);
        assert_eq!(inv.identity(), None);
        let inv = load("defaults:\n  port: 9000\nhosts:\n  a: example.com\n");
        assert_eq!(inv.hosts[0].endpoint(), "example.com:9000");
    }

    #[test]
    fn absolute_key_paths_are_kept() {
        let inv = load("defaults:\n  identity: /keys/k\n  known_hosts: /etc/kh\n");
        assert_eq!(inv.identity(), Some(Path::new("/keys/k")));
        assert_eq!(inv.known_hosts(), Path::new("/etc/kh"));
    }

    #[test]
    fn empty_file_has_no_hosts() {
        let inv = load("");
        assert!(inv.hosts.is_empty());
        assert_eq!(select(&inv, &["all"], &[], &[]), Vec::<String>::new());
    }
}

/// Property tests: any text, and files built from the inventory's own grammar, load or fail
/// without panicking, and what loads keeps the promises the rest of `ctl` relies on (the
/// fuzz target `inventory` checks the same on nightly).
#[cfg(test)]
mod properties {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::inventory::fixtures::parse;

    /// A name, sometimes with a range, sometimes one the inventory must refuse.
    fn name() -> impl Strategy<Value = String> {
        "[a-c]{1,2}(\\[[0-2]:[0-3]\\])?|all|\\.x|[a-c] b"
    }

    fn host_line() -> impl Strategy<Value = String> {
        let endpoint = prop_oneof![
            "127\\.0\\.[0-1]\\.[0-9](:[0-9]{1,5})?",
            "127\\.0\\.0\\.\\[[0-2]:[0-3]\\]",
            "\"\\[::1\\]:[0-9]{1,5}\"",
            "\\{ address: [a-z]{1,3}, port: [0-9]{1,6} \\}",
            "[a-z]{1,3}:",
        ];
        (name(), endpoint).prop_map(|(name, endpoint)| format!("  \"{name}\": {endpoint}\n"))
    }

    fn group_line() -> impl Strategy<Value = String> {
        (name(), proptest::collection::vec(name(), 0..4)).prop_map(|(name, members)| {
            let members: Vec<String> = members.iter().map(|m| format!("\"{m}\"")).collect();
            format!("  \"{name}\": [{}]\n", members.join(", "))
        })
    }

    fn file() -> impl Strategy<Value = String> {
        (
            proptest::option::of(0u32..70000),
            proptest::collection::vec(host_line(), 0..5),
            proptest::collection::vec(group_line(), 0..4),
        )
            .prop_map(|(port, hosts, groups)| {
                let mut text = String::new();
                if let Some(port) = port {
                    text += &format!("defaults:\n  port: {port}\n");
                }
                text += &format!("hosts:\n{}", hosts.concat());
                text += &format!("groups:\n{}", groups.concat());
                text
            })
    }

    /// What a loaded inventory promises: valid names, ports other than 0, each host once,
    /// groups made of hosts of the inventory, and `all` selecting every host.
    fn check_promises(inv: &Inventory) -> Result<(), TestCaseError> {
        let mut names = BTreeSet::new();
        for host in &inv.hosts {
            prop_assert!(is_valid_name(&host.name), "{:?}", host);
            prop_assert_ne!(host.port, 0);
            prop_assert!(names.insert(host.name.as_str()), "{} twice", host.name);
        }
        for group in inv.group_names() {
            let members = inv.group_hosts(group).expect("a listed group exists");
            prop_assert!(members.iter().all(|h| names.contains(h.name.as_str())));
        }
        let everyone = Selection {
            groups: vec![ALL_GROUP.to_owned()],
            ..Selection::default()
        };
        prop_assert_eq!(
            inv.select(&everyone).map(|h| h.len()).ok(),
            Some(inv.hosts.len())
        );
        Ok(())
    }

    proptest! {
        #[test]
        fn files_of_the_grammar_load_or_fail_and_keep_their_promises(text in file()) {
            if let Ok(inv) = parse(&text) {
                check_promises(&inv)?;
            }
        }

        #[test]
        fn any_text_loads_or_fails_without_panicking(text in "(?s).{0,64}|[a-z:\\[\\]{}, \n\"-]{0,64}") {
            if let Ok(inv) = parse(&text) {
                check_promises(&inv)?;
            }
        }
    }
}
