//! Property tests of [`pull::safe_local_path`](super::pull::safe_local_path), the check
//! every entry path an agent sends during `ctl pull` goes through before anything is
//! written. The fuzz target `entry_path` checks the same on nightly.
//!
//! Each case runs in a fresh folder that holds a link `link` to a folder outside it and a
//! regular file `file`, as an earlier entry of a hostile pull could have planted them.

use std::path::{Component, Path};

use proptest::prelude::*;

use super::pull::safe_local_path;

/// One `/`-separated part of a wire path: mostly plain names, often one that must be
/// refused or that leads into what is planted.
fn part() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-c]{1,3}",
        1 => Just("..".to_owned()),
        1 => Just(".".to_owned()),
        1 => Just(String::new()),
        1 => Just("link".to_owned()),
        1 => Just("file".to_owned()),
        1 => Just("a\0b".to_owned()),
        1 => "(?s).{1,4}",
    ]
}

fn wire_path() -> impl Strategy<Value = String> {
    (any::<bool>(), proptest::collection::vec(part(), 1..5)).prop_map(|(absolute, parts)| {
        format!("{}{}", if absolute { "/" } else { "" }, parts.join("/"))
    })
}

/// Checks what `safe_local_path` promises for `wire` below `base`.
fn check(base: &Path, outside: &Path, wire: &str) -> Result<(), TestCaseError> {
    let got = safe_local_path(base, wire);
    if let Some(local) = &got {
        let rest = local.strip_prefix(base);
        prop_assert!(rest.is_ok(), "{:?} gave {:?}", wire, local);
        let names: Vec<_> = rest.expect("checked").components().collect();
        prop_assert!(
            names.iter().all(|c| matches!(c, Component::Normal(_))),
            "{:?}",
            local
        );
        prop_assert_eq!(
            names.len(),
            wire.split('/').count(),
            "{:?} gave {:?}",
            wire,
            local
        );
        let mut on_the_way = base.to_owned();
        for name in &names[..names.len() - 1] {
            on_the_way.push(name);
            let is_dir = std::fs::symlink_metadata(&on_the_way).is_ok_and(|m| m.is_dir());
            prop_assert!(is_dir, "{:?} goes through {:?}", wire, on_the_way);
        }
    }
    let plain = !wire.is_empty()
        && !wire.contains('\0')
        && wire.split('/').all(|p| !matches!(p, "" | "." | ".."));
    // Only the first part can name what is planted: deeper folders are made by the call.
    let parts: Vec<&str> = wire.split('/').collect();
    let through_planted = parts.len() > 1 && matches!(parts[0], "link" | "file");
    prop_assert_eq!(got.is_some(), plain && !through_planted, "{:?}", wire);
    let escaped = std::fs::read_dir(outside)
        .expect("outside exists")
        .next()
        .is_some();
    prop_assert!(!escaped, "{:?} created something through the link", wire);
    Ok(())
}

proptest! {
    #[test]
    fn an_accepted_entry_path_is_plain_names_below_the_base(wire in wire_path()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (base, outside) = (dir.path().join("base"), dir.path().join("outside"));
        std::fs::create_dir_all(&base).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, base.join("link")).unwrap();
        std::fs::write(base.join("file"), b"x").unwrap();
        check(&base, &outside, &wire)?;
    }
}
