//! What the unit tests of the inventory's files share: an example file that uses every
//! feature, and short ways to load text and to select from it.

use std::path::Path;

use super::{Host, Inventory, InventoryError, Selection};

/// An inventory with every form of host entry, a range, nested groups and defaults.
pub const EXAMPLE: &str = r#"
defaults:
  port: 7070
  identity: keys/operator
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

/// Parses `text` as if it were `/etc/muster/inventory.yaml`.
pub fn parse(text: &str) -> Result<Inventory, InventoryError> {
    Inventory::from_yaml_str(text, Path::new("/etc/muster/inventory.yaml"))
}

/// Parses `text`, which must be valid.
pub fn load(text: &str) -> Inventory {
    parse(text).unwrap_or_else(|e| panic!("inventory should load, got: {e}"))
}

/// The hosts' names.
pub fn names(hosts: &[Host]) -> Vec<&str> {
    hosts.iter().map(|h| h.name.as_str()).collect()
}

/// Owned copies, for [`Selection`]'s fields.
pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The names `inv` selects with these flags, which must resolve.
pub fn select(inv: &Inventory, groups: &[&str], hosts: &[&str], exclude: &[&str]) -> Vec<String> {
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
