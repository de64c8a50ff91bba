//! The inventory model: which hosts exist, where their agents listen, and how they are grouped.
//!
//! This module owns the `inventory.yaml` format, its validation, group resolution and the
//! `--group`/`--host`/`--exclude` selection. It does not read the key file (that is
//! [`common::key`]; we only resolve its path), resolve DNS names, or parse command lines.
//!
//! ```yaml
//! defaults:
//!   port: 7070                 # agent port for hosts that give none (7070 when absent)
//!   key_file: keys/fleet.key   # relative to the inventory file's folder
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
//! `hosts` and `groups` maps are read into ordered entry lists and checked for duplicates here.
//!
//! `all` is a reserved group meaning every host. A group may not share its name with a host,
//! because `--exclude NAME` accepts either and must not have to guess.

pub mod range;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use thiserror::Error;

use range::RangeError;

/// The agent port used when neither the host nor `defaults.port` gives one.
pub const DEFAULT_PORT: u16 = 7070;

/// The reserved group that contains every host, in file order.
pub const ALL_GROUP: &str = "all";

/// A loaded and validated inventory file.
#[derive(Debug, Clone)]
pub struct Inventory {
    path: PathBuf,
    key_file: Option<PathBuf>,
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

/// What kind of name a lookup expected, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A host name.
    Host,
    /// A group name (including `all`).
    Group,
    /// Either a host or a group name.
    HostOrGroup,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Host => "host",
            NameKind::Group => "group",
            NameKind::HostOrGroup => "host or group",
        })
    }
}

/// Why an inventory could not be loaded, or a selection could not be resolved against it.
///
/// Every message starts with the inventory path and names the offending value.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum InventoryError {
    /// The file could not be read.
    #[error("{}: cannot read inventory: {error}", path.display())]
    Read {
        /// The inventory file.
        path: PathBuf,
        /// The underlying I/O error.
        error: io::Error,
    },
    /// The file is not valid YAML or does not have the expected shape.
    #[error("{}{}: {message}", path.display(), Location(*line, *col))]
    Syntax {
        /// The inventory file.
        path: PathBuf,
        /// 1-based line of the problem, when the parser knows it.
        line: Option<usize>,
        /// 1-based column of the problem, when the parser knows it.
        col: Option<usize>,
        /// The parser's description of the problem.
        message: String,
    },
    /// A range in a host name, address, group member or selected name is invalid.
    #[error("{}: {name:?}: {error}", path.display())]
    Range {
        /// The inventory file.
        path: PathBuf,
        /// The host, group or selected name whose entry holds the range.
        name: String,
        /// What is wrong with the range.
        error: RangeError,
    },
    /// A host name contains characters other than letters, digits, `-`, `_` and `.`.
    #[error(
        "{}: bad host name {host:?} (use letters, digits, '-', '_' and '.')",
        path.display()
    )]
    BadHostName {
        /// The inventory file.
        path: PathBuf,
        /// The offending name, after range expansion.
        host: String,
    },
    /// A group name contains characters other than letters, digits, `-`, `_` and `.`.
    #[error(
        "{}: bad group name {group:?} (use letters, digits, '-', '_' and '.')",
        path.display()
    )]
    BadGroupName {
        /// The inventory file.
        path: PathBuf,
        /// The offending name.
        group: String,
    },
    /// A host's address is neither an IP literal nor a valid DNS name.
    #[error("{}: host {host:?} has a bad address {address:?}", path.display())]
    BadAddress {
        /// The inventory file.
        path: PathBuf,
        /// The host, after range expansion.
        host: String,
        /// The address as written (after range expansion).
        address: String,
    },
    /// A host's port is not a number from 1 to 65535.
    #[error("{}: host {host:?} has a bad port {port:?} (expected 1 to 65535)", path.display())]
    BadPort {
        /// The inventory file.
        path: PathBuf,
        /// The host, after range expansion.
        host: String,
        /// The port as written.
        port: String,
    },
    /// `defaults.port` is not a number from 1 to 65535.
    #[error("{}: bad defaults.port {port} (expected 1 to 65535)", path.display())]
    BadDefaultPort {
        /// The inventory file.
        path: PathBuf,
        /// The port as written.
        port: i64,
    },
    /// A host entry's address range expands to a different count than its name range.
    #[error(
        "{}: host {host:?} expands to {n_hosts} name(s) but its address {address:?} expands to {n_addresses}",
        path.display()
    )]
    AddressCountMismatch {
        /// The inventory file.
        path: PathBuf,
        /// The host entry's name pattern.
        host: String,
        /// How many names the pattern gives.
        n_hosts: usize,
        /// The address pattern.
        address: String,
        /// How many addresses the pattern gives.
        n_addresses: usize,
    },
    /// Two host entries define the same host name.
    #[error("{}: host {host:?} is defined twice{}", path.display(), Again(host, entry))]
    DuplicateHost {
        /// The inventory file.
        path: PathBuf,
        /// The repeated host name.
        host: String,
        /// The entry (possibly a range) that defined it the second time.
        entry: String,
    },
    /// Two group entries have the same name.
    #[error("{}: group {group:?} is defined twice", path.display())]
    DuplicateGroup {
        /// The inventory file.
        path: PathBuf,
        /// The repeated group name.
        group: String,
    },
    /// The file defines a group named `all`.
    #[error("{}: group \"{ALL_GROUP}\" is reserved (it always means every host)", path.display())]
    ReservedGroup {
        /// The inventory file.
        path: PathBuf,
    },
    /// A group has the same name as a host.
    #[error(
        "{}: {name:?} is both a host and a group (names must differ so --exclude is unambiguous)",
        path.display()
    )]
    GroupHostClash {
        /// The inventory file.
        path: PathBuf,
        /// The shared name.
        name: String,
    },
    /// A group lists a member that is neither a host nor a group.
    #[error(
        "{}: group {group:?} refers to unknown host or group {member:?}{}",
        path.display(),
        DidYouMean(suggestion.as_deref())
    )]
    UnknownMember {
        /// The inventory file.
        path: PathBuf,
        /// The group that lists the member.
        group: String,
        /// The unknown member, after range expansion.
        member: String,
        /// A similar existing name, if there is one.
        suggestion: Option<String>,
    },
    /// Groups contain each other in a loop.
    #[error("{}: group cycle {}", path.display(), cycle.join(" -> "))]
    GroupCycle {
        /// The inventory file.
        path: PathBuf,
        /// The groups along the loop; the first name is repeated at the end.
        cycle: Vec<String>,
    },
    /// A selection names a host or group the inventory does not have.
    #[error(
        "{}: unknown {kind} {name:?}{}",
        path.display(),
        DidYouMean(suggestion.as_deref())
    )]
    UnknownName {
        /// The inventory file.
        path: PathBuf,
        /// What kind of name was expected.
        kind: NameKind,
        /// The unknown name, after range expansion.
        name: String,
        /// A similar existing name, if there is one.
        suggestion: Option<String>,
    },
}

impl Host {
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
    /// folder of a relative `defaults.key_file`; nothing is read from it.
    ///
    /// # Errors
    ///
    /// Any [`InventoryError`] except `Read` and `UnknownName`: bad YAML or shape (with line and
    /// column), bad names, addresses, ports or ranges, duplicates, unknown group members and
    /// group cycles.
    pub fn from_yaml_str(text: &str, path: &Path) -> Result<Inventory, InventoryError> {
        let raw: RawInventory = serde_yaml::from_str(text).map_err(|e| syntax_error(path, &e))?;
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
        let key_file = defaults.key_file.map(|file| match path.parent() {
            Some(dir) => dir.join(file),
            None => file,
        });
        Ok(Inventory {
            path: path.to_owned(),
            key_file,
            hosts,
            host_index,
            groups,
        })
    }

    /// The inventory file this was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `defaults.key_file`, resolved against the inventory's folder; `None` if not set.
    pub fn key_file(&self) -> Option<&Path> {
        self.key_file.as_deref()
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

    /// Union of the hosts of `sel.groups` and the `sel.hosts`, minus `sel.exclude` (each name a
    /// host or a group), in inventory file order, each host once.
    ///
    /// Names may contain ranges (`web[1:2]`). A selection with no groups and no hosts gives an
    /// empty list; reporting that is up to the caller.
    ///
    /// # Errors
    ///
    /// [`InventoryError::UnknownName`] (with a suggestion when a similar name exists) for a name
    /// that is not in the inventory, [`InventoryError::Range`] for a bad range.
    pub fn select(&self, sel: &Selection) -> Result<Vec<Host>, InventoryError> {
        if sel.groups.is_empty() && sel.hosts.is_empty() {
            return Ok(Vec::new());
        }
        let mut chosen = vec![false; self.hosts.len()];
        let lists = [
            (&sel.groups, NameKind::Group, true),
            (&sel.hosts, NameKind::Host, true),
            (&sel.exclude, NameKind::HostOrGroup, false),
        ];
        for (patterns, kind, keep) in lists {
            for pattern in patterns {
                for i in self.resolve_selected(pattern, kind)? {
                    chosen[i] = keep;
                }
            }
        }
        let selected = self.hosts.iter().zip(chosen).filter(|(_, keep)| *keep);
        Ok(selected.map(|(host, _)| host.clone()).collect())
    }

    /// Expands one selected name and returns the positions of the hosts it stands for.
    fn resolve_selected(
        &self,
        pattern: &str,
        kind: NameKind,
    ) -> Result<Vec<usize>, InventoryError> {
        let mut found = Vec::new();
        for name in expand_in(&self.path, pattern, pattern)? {
            let as_host = || self.host_index.get(&name).map(|&i| vec![i]);
            let as_group = || match name.as_str() {
                ALL_GROUP => Some((0..self.hosts.len()).collect()),
                _ => self.groups.get(&name).cloned(),
            };
            let hit = match kind {
                NameKind::Host => as_host(),
                NameKind::Group => as_group(),
                NameKind::HostOrGroup => as_host().or_else(as_group),
            };
            let Some(indices) = hit else {
                return Err(self.unknown_name(kind, name));
            };
            found.extend(indices);
        }
        Ok(found)
    }

    fn unknown_name(&self, kind: NameKind, name: String) -> InventoryError {
        let hosts = self.host_index.keys().map(String::as_str);
        let groups = self.group_names().chain([ALL_GROUP]);
        let suggestion = match kind {
            NameKind::Host => suggest(&name, hosts),
            NameKind::Group => suggest(&name, groups),
            NameKind::HostOrGroup => suggest(&name, hosts.chain(groups)),
        };
        InventoryError::UnknownName {
            path: self.path.clone(),
            kind,
            name,
            suggestion,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hosts

fn build_hosts(
    path: &Path,
    default_port: u16,
    entries: &[(String, RawHost)],
) -> Result<(Vec<Host>, BTreeMap<String, usize>), InventoryError> {
    let mut hosts = Vec::new();
    let mut index = BTreeMap::new();
    for (entry, raw) in entries {
        for host in expand_host_entry(path, default_port, entry, raw)? {
            if index.contains_key(&host.name) {
                return Err(InventoryError::DuplicateHost {
                    path: path.to_owned(),
                    host: host.name,
                    entry: entry.clone(),
                });
            }
            index.insert(host.name.clone(), hosts.len());
            hosts.push(host);
        }
    }
    Ok((hosts, index))
}

/// Turns one `hosts:` entry into its hosts, pairing expanded names with expanded addresses.
fn expand_host_entry(
    path: &Path,
    default_port: u16,
    entry: &str,
    raw: &RawHost,
) -> Result<Vec<Host>, InventoryError> {
    let names = expand_in(path, entry, entry)?;
    let address_pattern = match raw {
        RawHost::Text(text) => text,
        RawHost::Map(map) => &map.address,
    };
    let addresses = expand_in(path, entry, address_pattern)?;
    // One address is shared by every name (useful with distinct ports); otherwise pair them up.
    if addresses.len() != 1 && addresses.len() != names.len() {
        return Err(InventoryError::AddressCountMismatch {
            path: path.to_owned(),
            host: entry.to_owned(),
            n_hosts: names.len(),
            address: address_pattern.clone(),
            n_addresses: addresses.len(),
        });
    }
    let mut hosts = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        if !is_valid_name(&name) {
            return Err(InventoryError::BadHostName {
                path: path.to_owned(),
                host: name,
            });
        }
        let text = if addresses.len() == 1 {
            &addresses[0]
        } else {
            &addresses[i]
        };
        let (address, port) = match raw {
            RawHost::Text(_) => parse_endpoint(text, default_port),
            RawHost::Map(map) => parse_map_endpoint(text, map.port, default_port),
        }
        .map_err(|bad| bad.into_error(path, &name, text))?;
        hosts.push(Host {
            name,
            address,
            port,
        });
    }
    Ok(hosts)
}

/// What is wrong with an endpoint, before we know which host it belongs to.
enum BadEndpoint {
    Address,
    Port(String),
}

impl BadEndpoint {
    fn into_error(self, path: &Path, host: &str, text: &str) -> InventoryError {
        match self {
            BadEndpoint::Address => InventoryError::BadAddress {
                path: path.to_owned(),
                host: host.to_owned(),
                address: text.to_owned(),
            },
            BadEndpoint::Port(port) => InventoryError::BadPort {
                path: path.to_owned(),
                host: host.to_owned(),
                port,
            },
        }
    }
}

/// Parses `addr`, `addr:port`, `[v6]`, `[v6]:port` or a bare IPv6 literal.
fn parse_endpoint(text: &str, default_port: u16) -> Result<(String, u16), BadEndpoint> {
    if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or(BadEndpoint::Address)?;
        if inner.parse::<Ipv6Addr>().is_err() {
            return Err(BadEndpoint::Address);
        }
        let port = match after {
            "" => default_port,
            _ => parse_port(after.strip_prefix(':').ok_or(BadEndpoint::Address)?)?,
        };
        return Ok((inner.to_owned(), port));
    }
    // Two or more colons can only be a bare IPv6 literal, which cannot carry a port.
    if text.matches(':').count() >= 2 {
        return Ok((parse_address(text)?, default_port));
    }
    match text.split_once(':') {
        Some((address, port)) => Ok((parse_address(address)?, parse_port(port)?)),
        None => Ok((parse_address(text)?, default_port)),
    }
}

/// Parses the `{ address, port }` form, where the address carries no port.
fn parse_map_endpoint(
    text: &str,
    port: Option<i64>,
    default_port: u16,
) -> Result<(String, u16), BadEndpoint> {
    let bare = text
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .filter(|inner| inner.contains(':'))
        .unwrap_or(text);
    let address = parse_address(bare)?;
    let port = match port {
        None => default_port,
        Some(port) => to_port(port).ok_or_else(|| BadEndpoint::Port(port.to_string()))?,
    };
    Ok((address, port))
}

fn parse_address(text: &str) -> Result<String, BadEndpoint> {
    let ok =
        text.parse::<Ipv4Addr>().is_ok() || text.parse::<Ipv6Addr>().is_ok() || is_dns_name(text);
    if ok {
        Ok(text.to_owned())
    } else {
        Err(BadEndpoint::Address)
    }
}

fn parse_port(text: &str) -> Result<u16, BadEndpoint> {
    let bad = || BadEndpoint::Port(text.to_owned());
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let port = text.parse::<i64>().map_err(|_| bad())?;
    to_port(port).ok_or_else(bad)
}

fn to_port(port: i64) -> Option<u16> {
    u16::try_from(port).ok().filter(|&p| p != 0)
}

/// Letters, digits, `-` and `.`, at most 253 characters, labels of 1 to 63 characters that do
/// not start or end with `-`. A name made only of numeric labels is refused, because it is
/// really a malformed IPv4 address such as `10.0.0.300` (often a range that ran too far).
fn is_dns_name(text: &str) -> bool {
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() || text.len() > 253 {
        return false;
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    let all_numeric = name
        .split('.')
        .all(|label| label.bytes().all(|b| b.is_ascii_digit()));
    labels_ok && !all_numeric
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

// ---------------------------------------------------------------------------------------------
// Groups

/// Flattens group definitions into host positions, depth first, detecting cycles on the way.
struct GroupResolver<'a> {
    path: &'a Path,
    /// Group name → member patterns, as written.
    defs: BTreeMap<&'a str, &'a [String]>,
    /// Group names in file order, so the first problem reported is the first in the file.
    order: Vec<&'a str>,
    host_index: &'a BTreeMap<String, usize>,
    n_hosts: usize,
    resolved: BTreeMap<String, Vec<usize>>,
    /// The groups currently being resolved, outermost first.
    stack: Vec<&'a str>,
}

impl<'a> GroupResolver<'a> {
    /// Checks the group names themselves: valid, not reserved, unique, not a host's name.
    fn new(
        path: &'a Path,
        entries: &'a [(String, Vec<String>)],
        host_index: &'a BTreeMap<String, usize>,
        n_hosts: usize,
    ) -> Result<Self, InventoryError> {
        let mut defs = BTreeMap::new();
        let mut order = Vec::new();
        for (name, members) in entries {
            check_group_name(path, name, host_index)?;
            if defs.insert(name.as_str(), members.as_slice()).is_some() {
                return Err(InventoryError::DuplicateGroup {
                    path: path.to_owned(),
                    group: name.clone(),
                });
            }
            order.push(name.as_str());
        }
        Ok(GroupResolver {
            path,
            defs,
            order,
            host_index,
            n_hosts,
            resolved: BTreeMap::new(),
            stack: Vec::new(),
        })
    }

    fn run(mut self) -> Result<BTreeMap<String, Vec<usize>>, InventoryError> {
        for name in self.order.clone() {
            self.resolve(name)?;
        }
        Ok(self.resolved)
    }

    fn resolve(&mut self, group: &'a str) -> Result<Vec<usize>, InventoryError> {
        if let Some(done) = self.resolved.get(group) {
            return Ok(done.clone());
        }
        if let Some(start) = self.stack.iter().position(|&g| g == group) {
            let mut cycle: Vec<String> = self.stack[start..].iter().map(|&g| g.into()).collect();
            cycle.push(group.to_owned());
            return Err(InventoryError::GroupCycle {
                path: self.path.to_owned(),
                cycle,
            });
        }
        self.stack.push(group);
        let mut hosts = Vec::new();
        let members = self.defs.get(group).copied().unwrap_or_default();
        for pattern in members {
            for member in expand_in(self.path, group, pattern)? {
                hosts.extend(self.resolve_member(group, member)?);
            }
        }
        self.stack.pop();
        hosts.sort_unstable();
        hosts.dedup();
        self.resolved.insert(group.to_owned(), hosts.clone());
        Ok(hosts)
    }

    fn resolve_member(
        &mut self,
        group: &str,
        member: String,
    ) -> Result<Vec<usize>, InventoryError> {
        if let Some(&i) = self.host_index.get(&member) {
            return Ok(vec![i]);
        }
        if member == ALL_GROUP {
            return Ok((0..self.n_hosts).collect());
        }
        if let Some((&name, _)) = self.defs.get_key_value(member.as_str()) {
            return self.resolve(name);
        }
        let hosts = self.host_index.keys().map(String::as_str);
        let groups = self.defs.keys().copied().chain([ALL_GROUP]);
        Err(InventoryError::UnknownMember {
            path: self.path.to_owned(),
            group: group.to_owned(),
            suggestion: suggest(&member, hosts.chain(groups)),
            member,
        })
    }
}

/// A group name must be valid, must not be `all`, and must not also name a host.
fn check_group_name(
    path: &Path,
    name: &str,
    host_index: &BTreeMap<String, usize>,
) -> Result<(), InventoryError> {
    if name == ALL_GROUP {
        return Err(InventoryError::ReservedGroup {
            path: path.to_owned(),
        });
    }
    if !is_valid_name(name) {
        return Err(InventoryError::BadGroupName {
            path: path.to_owned(),
            group: name.to_owned(),
        });
    }
    if host_index.contains_key(name) {
        return Err(InventoryError::GroupHostClash {
            path: path.to_owned(),
            name: name.to_owned(),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

/// Expands `pattern`, blaming `name` (the entry it belongs to) if the range is bad.
fn expand_in(path: &Path, name: &str, pattern: &str) -> Result<Vec<String>, InventoryError> {
    range::expand(pattern).map_err(|error| InventoryError::Range {
        path: path.to_owned(),
        name: name.to_owned(),
        error,
    })
}

/// The candidate closest to `name`, if any is close enough to be a likely typo.
///
/// Candidates are ranked by edit distance counting a swap of neighbours as one edit (so `wbe`
/// is one edit from `web`), then by Jaro-Winkler similarity, which favours a shared prefix.
fn suggest<'c>(name: &str, candidates: impl Iterator<Item = &'c str>) -> Option<String> {
    candidates
        .filter(|c| *c != name)
        .map(|c| {
            (
                strsim::osa_distance(name, c),
                strsim::jaro_winkler(name, c),
                c,
            )
        })
        .filter(|&(distance, score, _)| {
            // A distance of 2 is a typo in "wbe" but a different word in "db" vs "x".
            score >= 0.8 || (distance <= 2 && distance < name.chars().count())
        })
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, _, c)| c.to_owned())
}

fn syntax_error(path: &Path, err: &serde_yaml::Error) -> InventoryError {
    let location = err.location();
    let mut message = err.to_string();
    // serde_yaml appends the location to its message; we show it in our own format instead.
    if let Some(loc) = &location {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_owned();
        }
    }
    InventoryError::Syntax {
        path: path.to_owned(),
        line: location.as_ref().map(|loc| loc.line()),
        col: location.as_ref().map(|loc| loc.column()),
        message,
    }
}

/// Formats `: line L, column C` (or nothing) for [`InventoryError::Syntax`].
struct Location(Option<usize>, Option<usize>);

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(line), Some(col)) => write!(f, ": line {line}, column {col}"),
            (Some(line), None) => write!(f, ": line {line}"),
            _ => Ok(()),
        }
    }
}

/// Formats ` (did you mean "x"?)` or nothing.
struct DidYouMean<'a>(Option<&'a str>);

impl fmt::Display for DidYouMean<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(name) => write!(f, " (did you mean {name:?}?)"),
            None => Ok(()),
        }
    }
}

/// Formats ` (again by "web[01:03]")` when a range entry repeated the host, or nothing.
struct Again<'a>(&'a str, &'a str);

impl fmt::Display for Again<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == self.1 {
            Ok(())
        } else {
            write!(f, " (again by {:?})", self.1)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The file as written, before validation

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    #[serde(default)]
    defaults: Option<RawDefaults>,
    #[serde(default)]
    hosts: Option<Entries<RawHost>>,
    #[serde(default)]
    groups: Option<Entries<Vec<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    // Read wide so that 0 and 70000 get our port message rather than serde's.
    port: Option<i64>,
    key_file: Option<PathBuf>,
}

/// A host's value: `"addr[:port]"` or `{ address, port }`.
enum RawHost {
    Text(String),
    Map(RawHostMap),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHostMap {
    address: String,
    port: Option<i64>,
}

impl<'de> Deserialize<'de> for RawHost {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RawHostVisitor;

        impl<'de> Visitor<'de> for RawHostVisitor {
            type Value = RawHost;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address such as 10.0.0.1:7070, or a map with address and port")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<RawHost, E> {
                Ok(RawHost::Text(text.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawHost, A::Error> {
                let fields = RawHostMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawHost::Map(fields))
            }
        }

        deserializer.deserialize_any(RawHostVisitor)
    }
}

/// A YAML mapping read as entries in file order, keeping repeated keys so we can report them.
struct Entries<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = Entries<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of names")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<V>, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }

        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
defaults:
  port: 7070
  key_file: keys/fleet.key
hosts:
  web1: 127.0.0.1:7001
  web2: { address: 127.0.0.1, port: 7002 }
  db1: 127.0.0.1
  app[01:03]: 127.0.1.[1:3]
  v6: "[::1]:7004"
groups:
  web: [web1, web2]
  db: [db1]
  app: ["app[01:03]"]
  prod: [web, db]
"#;

    fn parse(text: &str) -> Result<Inventory, InventoryError> {
        Inventory::from_yaml_str(text, Path::new("/etc/muster/inventory.yaml"))
    }

    fn load(text: &str) -> Inventory {
        parse(text).unwrap_or_else(|e| panic!("inventory should load, got: {e}"))
    }

    fn names(hosts: &[Host]) -> Vec<&str> {
        hosts.iter().map(|h| h.name.as_str()).collect()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn select(inv: &Inventory, groups: &[&str], hosts: &[&str], exclude: &[&str]) -> Vec<String> {
        let sel = Selection {
            groups: strings(groups),
            hosts: strings(hosts),
            exclude: strings(exclude),
        };
        match inv.select(&sel) {
            Ok(hosts) => hosts.into_iter().map(|h| h.name).collect(),
            Err(e) => panic!("selection should succeed, got: {e}"),
        }
    }

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
        assert_eq!(
            inv.key_file(),
            Some(Path::new("/etc/muster/keys/fleet.key"))
        );
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
            inv.key_file(),
            Some(dir.path().join("keys/fleet.key").as_path())
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
        assert_eq!(inv.key_file(), None);
        let inv = load("defaults:\n  port: 9000\nhosts:\n  a: example.com\n");
        assert_eq!(inv.hosts[0].endpoint(), "example.com:9000");
    }

    #[test]
    fn absolute_key_file_is_kept() {
        let inv = load("defaults:\n  key_file: /keys/k\n");
        assert_eq!(inv.key_file(), Some(Path::new("/keys/k")));
    }

    #[test]
    fn empty_file_has_no_hosts() {
        let inv = load("");
        assert!(inv.hosts.is_empty());
        assert_eq!(select(&inv, &["all"], &[], &[]), Vec::<String>::new());
    }

    #[test]
    fn ipv6_forms_format_with_brackets() {
        let inv = load(
            "hosts:\n  a: \"[::1]:7004\"\n  b: \"::1\"\n  c: \"[fe80::2]\"\n  d: { address: \"::1\", port: 9 }\n",
        );
        let got: Vec<String> = inv.hosts.iter().map(Host::endpoint).collect();
        assert_eq!(
            got,
            ["[::1]:7004", "[::1]:7070", "[fe80::2]:7070", "[::1]:9"]
        );
        assert_eq!(inv.hosts[0].address, "::1");
    }

    #[test]
    fn name_range_pairs_with_address_range_and_shares_a_plain_address() {
        let inv =
            load("hosts:\n  n[8:10]: 10.0.0.[1:3]\n  s[1:2]: { address: db.local, port: 5 }\n");
        let got: Vec<String> = inv
            .hosts
            .iter()
            .map(|h| format!("{}={}", h.name, h.endpoint()))
            .collect();
        assert_eq!(
            got,
            [
                "n8=10.0.0.1:7070",
                "n9=10.0.0.2:7070",
                "n10=10.0.0.3:7070",
                "s1=db.local:5",
                "s2=db.local:5"
            ]
        );
    }

    #[test]
    fn address_range_of_other_length_is_rejected() {
        let err = parse("hosts:\n  app[1:3]: 10.0.0.[1:2]\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/muster/inventory.yaml: host \"app[1:3]\" expands to 3 name(s) but its address \"10.0.0.[1:2]\" expands to 2"
        );
    }

    #[test]
    fn bad_range_names_the_entry() {
        let err = parse("hosts:\n  web[3:1]: 10.0.0.1\n").unwrap_err();
        assert!(matches!(err, InventoryError::Range { .. }), "got {err:?}");
        assert!(err.to_string().contains("\"web[3:1]\""), "got {err}");
        let err = parse("hosts:\n  h[1:200000]: 10.0.0.1\n").unwrap_err();
        assert!(err.to_string().contains("more than 100000"), "got {err}");
    }

    #[test]
    fn bad_address_is_rejected_with_host_and_value() {
        for address in [
            "foo bar",
            "-bad.example",
            "10.0.0.300",
            "a..b",
            "[10.0.0.1]:7000",
            "",
            "[::1",
        ] {
            let text = format!("hosts:\n  h1: {address:?}\n");
            let err = parse(&text).unwrap_err();
            assert!(
                matches!(err, InventoryError::BadAddress { .. }),
                "{address:?}: got {err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains("\"h1\"") && msg.contains(&format!("{address:?}")),
                "got {msg}"
            );
        }
        let err = parse("hosts:\n  a[1:2]: 10.0.0.[255:256]\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/muster/inventory.yaml: host \"a2\" has a bad address \"10.0.0.256\""
        );
    }

    #[test]
    fn bad_port_is_rejected_with_host_and_value() {
        for text in [
            "hosts:\n  h1: 10.0.0.1:0\n",
            "hosts:\n  h1: 10.0.0.1:70000\n",
            "hosts:\n  h1: 10.0.0.1:http\n",
            "hosts:\n  h1: \"10.0.0.1:\"\n",
            "hosts:\n  h1: { address: 10.0.0.1, port: 0 }\n",
            "hosts:\n  h1: \"[::1]:-1\"\n",
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                matches!(err, InventoryError::BadPort { .. }),
                "{text:?}: got {err:?}"
            );
            assert!(err.to_string().contains("\"h1\""), "got {err}");
        }
        let err = parse("defaults:\n  port: 70000\n").unwrap_err();
        assert!(
            matches!(err, InventoryError::BadDefaultPort { port: 70000, .. }),
            "got {err:?}"
        );
    }

    #[test]
    fn bad_host_name_is_rejected() {
        let err = parse("hosts:\n  web[1-3]: 10.0.0.1\n").unwrap_err();
        assert!(
            matches!(err, InventoryError::BadHostName { .. }),
            "got {err:?}"
        );
        assert!(err.to_string().contains("\"web[1-3]\""), "got {err}");
    }

    #[test]
    fn a_host_name_that_could_climb_out_of_a_folder_is_rejected() {
        // Host names become file names (kept output, pulled files).
        for name in ["..", ".", ".hidden"] {
            let err = parse(&format!("hosts:\n  \"{name}\": 10.0.0.1\n")).unwrap_err();
            assert!(
                matches!(err, InventoryError::BadHostName { .. }),
                "{name}: got {err:?}"
            );
        }
    }

    #[test]
    fn yaml_syntax_error_shows_line_and_column() {
        let err = parse("hosts:\n  web1: 10.0.0.1\n  web2: [oops\n").unwrap_err();
        let InventoryError::Syntax { line, col, .. } = &err else {
            panic!("expected a syntax error, got {err:?}");
        };
        assert!(line.is_some() && col.is_some(), "got {err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("/etc/muster/inventory.yaml: line "),
            "got {msg}"
        );
        assert!(!msg.contains(" at line "), "location shown twice: {msg}");
    }

    #[test]
    fn wrong_shape_shows_where() {
        let err = parse("hosts:\n  web1: 10.0.0.1\n  web2: 42\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/muster/inventory.yaml: line 3, column 9: hosts.web2: invalid type: integer `42`, \
             expected an address such as 10.0.0.1:7070, or a map with address and port"
        );
        let err = parse("hosts:\n  web1: { address: a.b, prot: 1 }\n").unwrap_err();
        assert!(
            matches!(err, InventoryError::Syntax { line: Some(2), .. }),
            "got {err:?}"
        );
        assert!(err.to_string().contains("prot"), "got {err}");
        let err = parse("hots:\n  web1: 10.0.0.1\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `hots`"),
            "got {err}"
        );
    }

    #[test]
    fn duplicate_literal_host_is_reported_by_name() {
        let err = parse("hosts:\n  web1: 10.0.0.1\n  web1: 10.0.0.2\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/muster/inventory.yaml: host \"web1\" is defined twice"
        );
    }

    #[test]
    fn range_overlapping_a_plain_host_is_a_duplicate() {
        let err = parse("hosts:\n  web02: 10.0.0.1\n  web[01:03]: 10.0.0.[1:3]\n").unwrap_err();
        assert!(
            matches!(err, InventoryError::DuplicateHost { .. }),
            "got {err:?}"
        );
        assert_eq!(
            err.to_string(),
            "/etc/muster/inventory.yaml: host \"web02\" is defined twice (again by \"web[01:03]\")"
        );
    }

    #[test]
    fn duplicate_group_is_reported() {
        let err = parse("hosts:\n  a: x.y\ngroups:\n  g: [a]\n  g: [a]\n").unwrap_err();
        assert!(
            matches!(err, InventoryError::DuplicateGroup { .. }),
            "got {err:?}"
        );
    }

    #[test]
    fn nested_groups_are_flattened_in_file_order() {
        let inv = load(EXAMPLE);
        let prod: Vec<&str> = inv
            .group_hosts("prod")
            .unwrap_or_default()
            .into_iter()
            .map(|h| h.name.as_str())
            .collect();
        assert_eq!(prod, ["web1", "web2", "db1"]);
        assert_eq!(
            select(&inv, &["app"], &[], &[]),
            ["app01", "app02", "app03"]
        );
        let deep = load(
            "hosts:\n  a: x.y\n  b: x.z\ngroups:\n  top: [mid, a]\n  mid: [low]\n  low: [b]\n",
        );
        assert_eq!(select(&deep, &["top"], &[], &[]), ["a", "b"]);
    }

    #[test]
    fn group_cycle_shows_the_path() {
        let err =
            parse("hosts:\n  h: x.y\ngroups:\n  a: [b]\n  b: [c, h]\n  c: [a]\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/muster/inventory.yaml: group cycle a -> b -> c -> a"
        );
        let err = parse("groups:\n  a: [a]\n").unwrap_err();
        assert!(
            matches!(&err, InventoryError::GroupCycle { cycle, .. } if cycle == &["a", "a"]),
            "got {err:?}"
        );
    }

    #[test]
    fn unknown_group_member_suggests_a_close_name() {
        let err =
            parse("hosts:\n  web1: x.y\ngroups:\n  web: [web1]\n  prod: [wbe]\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/muster/inventory.yaml: group \"prod\" refers to unknown host or group \"wbe\" (did you mean \"web\"?)"
        );
        let err = parse("hosts:\n  web1: x.y\ngroups:\n  prod: [zzzzzz]\n").unwrap_err();
        assert!(
            matches!(
                err,
                InventoryError::UnknownMember {
                    suggestion: None,
                    ..
                }
            ),
            "got {err:?}"
        );
    }

    #[test]
    fn all_is_reserved_and_groups_may_not_shadow_hosts() {
        let err = parse("hosts:\n  a: x.y\ngroups:\n  all: [a]\n").unwrap_err();
        assert!(
            matches!(err, InventoryError::ReservedGroup { .. }),
            "got {err:?}"
        );
        assert!(err.to_string().contains("\"all\""), "got {err}");
        let err = parse("hosts:\n  a: x.y\ngroups:\n  a: [a]\n").unwrap_err();
        assert!(
            matches!(err, InventoryError::GroupHostClash { .. }),
            "got {err:?}"
        );
        assert!(err.to_string().contains("\"a\""), "got {err}");
    }

    #[test]
    fn all_selects_every_host_in_file_order() {
        let inv = load(EXAMPLE);
        let got = select(&inv, &["all"], &[], &[]);
        assert_eq!(got, names(&inv.hosts));
    }

    #[test]
    fn host_in_two_selected_groups_is_listed_once() {
        let inv = load(EXAMPLE);
        assert_eq!(
            select(&inv, &["prod", "web"], &["web1"], &[]),
            ["web1", "web2", "db1"]
        );
    }

    #[test]
    fn selection_follows_file_order_not_argument_order() {
        let inv = load(EXAMPLE);
        assert_eq!(
            select(&inv, &[], &["v6", "app02", "web1"], &[]),
            ["web1", "app02", "v6"]
        );
    }

    #[test]
    fn exclude_by_host_and_by_group() {
        let inv = load(EXAMPLE);
        assert_eq!(select(&inv, &["prod"], &[], &["web2"]), ["web1", "db1"]);
        assert_eq!(select(&inv, &["all"], &[], &["web", "app"]), ["db1", "v6"]);
        assert_eq!(
            select(&inv, &["all"], &[], &["app[01:02]"]),
            ["web1", "web2", "db1", "app03", "v6"]
        );
    }

    #[test]
    fn selection_names_may_use_ranges() {
        let inv = load(EXAMPLE);
        assert_eq!(select(&inv, &[], &["web[1:2]"], &[]), ["web1", "web2"]);
    }

    #[test]
    fn empty_selection_selects_nothing() {
        let inv = load(EXAMPLE);
        assert!(select(&inv, &[], &[], &["web"]).is_empty());
    }

    #[test]
    fn unknown_selected_group_suggests_a_close_name() {
        let inv = load(EXAMPLE);
        let sel = Selection {
            groups: strings(&["wbe"]),
            ..Selection::default()
        };
        let err = inv.select(&sel).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/muster/inventory.yaml: unknown group \"wbe\" (did you mean \"web\"?)"
        );
        let sel = Selection {
            hosts: strings(&["web3"]),
            ..Selection::default()
        };
        let err = inv.select(&sel).unwrap_err();
        assert!(
            matches!(&err, InventoryError::UnknownName { kind: NameKind::Host, suggestion: Some(s), .. } if s == "web1" || s == "web2"),
            "got {err:?}"
        );
        let sel = Selection {
            groups: strings(&["all"]),
            exclude: strings(&["nothing-like-it"]),
            ..Selection::default()
        };
        let err = inv.select(&sel).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/muster/inventory.yaml: unknown host or group \"nothing-like-it\""
        );
    }

    #[test]
    fn a_host_is_not_a_group_in_selection() {
        let inv = load(EXAMPLE);
        let sel = Selection {
            groups: strings(&["web1"]),
            ..Selection::default()
        };
        let err = inv.select(&sel).unwrap_err();
        assert!(
            matches!(
                err,
                InventoryError::UnknownName {
                    kind: NameKind::Group,
                    ..
                }
            ),
            "got {err:?}"
        );
    }

    #[test]
    fn dns_names_are_checked() {
        assert!(is_dns_name("db-1.example.com"));
        assert!(is_dns_name("localhost"));
        assert!(is_dns_name("example.com."));
        assert!(!is_dns_name("ex_ample.com"));
        assert!(!is_dns_name(&"a".repeat(64)));
        assert!(!is_dns_name(&["abc"; 64].join(".")));
        assert!(!is_dns_name("1.2.3"));
    }
}
