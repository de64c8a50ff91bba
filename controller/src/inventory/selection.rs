//! Resolving a [`Selection`] (`--group`, `--host`, `--exclude`) against a loaded inventory:
//! which hosts an operation targets, each once, in file order.
//!
//! Names may carry ranges, and each is looked up as its flag says: `-g` takes a target
//! expression ([`super::pattern`]), `-H` a host, `--exclude` a host or a group (which is why
//! a group may not share a host's name).
//! An unknown name is an error with a suggestion, never silently skipped.

use super::error::suggest;
use super::{expand_in, Host, Inventory, InventoryError, NameKind, Selection, ALL_GROUP};

impl Inventory {
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
        for expression in &sel.groups {
            for (chosen, picked) in chosen.iter_mut().zip(self.evaluate(expression)?) {
                *chosen |= picked;
            }
        }
        let lists = [
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
                NameKind::HostOrGroup => as_host().or_else(as_group),
            };
            let Some(indices) = hit else {
                return Err(self.unknown_name(kind, name));
            };
            found.extend(indices);
        }
        Ok(found)
    }

    pub(super) fn unknown_name(&self, kind: NameKind, name: String) -> InventoryError {
        let hosts = self.host_index.keys().map(String::as_str);
        let groups = self.group_names().chain([ALL_GROUP]);
        let suggestion = match kind {
            NameKind::Host => suggest(&name, hosts),
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

#[cfg(test)]
mod tests {
    use crate::inventory::fixtures::{load, names, select, strings, EXAMPLE};
    use crate::inventory::{InventoryError, NameKind, Selection};

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
            "target expression \"wbe\": /etc/muster/inventory.yaml: unknown host or group \"wbe\" \
             (did you mean \"web\"?)"
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
    fn a_host_name_is_a_term_of_a_target_expression() {
        let inv = load(EXAMPLE);
        assert_eq!(select(&inv, &["web1"], &[], &[]), ["web1"]);
    }
}
