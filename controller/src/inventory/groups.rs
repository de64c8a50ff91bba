//! The `groups:` section, flattened: each group becomes the sorted positions of the hosts it
//! holds, nested groups included, so nothing after loading has to walk groups again.
//!
//! Group names are checked here too: valid, not the reserved `all`, defined once, and not also
//! a host's name. Resolution is depth first with a stack of the groups being resolved, so a
//! cycle is reported with its whole path (`a -> b -> c -> a`), and groups are visited in file
//! order, so the first problem reported is the first in the file.

use std::collections::BTreeMap;
use std::path::Path;

use super::error::suggest;
use super::{expand_in, is_valid_name, InventoryError, ALL_GROUP};

/// Flattens group definitions into host positions, depth first, detecting cycles on the way.
pub(super) struct GroupResolver<'a> {
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
    pub(super) fn new(
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

    /// Resolves every group, in file order.
    pub(super) fn run(mut self) -> Result<BTreeMap<String, Vec<usize>>, InventoryError> {
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

#[cfg(test)]
mod tests {
    use crate::inventory::fixtures::{load, parse, select, EXAMPLE};
    use crate::inventory::InventoryError;

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
}
