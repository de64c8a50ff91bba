//! The inventory parser: `Inventory::from_yaml_str` (controller/src/inventory/, compiled in
//! from its source), the whole of `inventory.yaml` as an operator or a tool writes it, with
//! range expansion, groups and selection.
//!
//! Input: the file, as UTF-8.
//!
//! Invariant: no panic (the result is an `Inventory` or an `InventoryError`); a loaded
//! inventory keeps its promises: every host has a valid name and a port other than 0, is
//! defined once, every group resolves to hosts of the inventory, and selecting `all` gives
//! every host once.
#![no_main]

use std::collections::BTreeSet;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use muster_fuzz::inventory::{Inventory, Selection, ALL_GROUP};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(inventory) = Inventory::from_yaml_str(text, Path::new("/etc/muster/inventory.yaml"))
    else {
        return;
    };
    let all = inventory
        .group_hosts(ALL_GROUP)
        .expect("`all` always exists");
    let mut names = BTreeSet::new();
    for host in &all {
        assert_ne!(host.port, 0, "{host:?}");
        assert!(
            !host.name.is_empty() && !host.name.starts_with('.'),
            "{host:?}"
        );
        assert!(
            names.insert(host.name.clone()),
            "{} defined twice",
            host.name
        );
    }
    for group in inventory.group_names() {
        let members = inventory.group_hosts(group).expect("a listed group exists");
        assert!(members.iter().all(|h| names.contains(&h.name)), "{group}");
    }
    let everyone = Selection {
        groups: vec![ALL_GROUP.to_owned()],
        ..Selection::default()
    };
    let selected = inventory.select(&everyone).expect("`all` selects");
    assert_eq!(selected.len(), all.len());
});
