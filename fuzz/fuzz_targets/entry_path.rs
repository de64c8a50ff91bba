//! File entry paths: the `path` of a `Reply::Entry` an agent sends during `ctl pull`, through
//! `safe_local_path` (controller/src/client/pull.rs, built in by fuzz/build.rs).
//!
//! The base folder is a fresh temporary folder holding a link `link` to another folder
//! (`outside`) and a regular file `file`, as an earlier entry of a hostile pull could have
//! planted them. Input: the path, as UTF-8 (it arrives in JSON).
//!
//! Invariant: no panic; a path that is accepted is the base joined with plain names only
//! (no root, `..`, `.` or empty part), the same names the wire path has, and every folder on
//! the way below the base is a real folder, not a link; nothing is ever created in
//! `outside`.
#![no_main]

use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use muster_fuzz::entry_path::safe_local_path;

struct Sandbox {
    base: PathBuf,
    outside: PathBuf,
}

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("muster-fuzz-entry-{}", std::process::id()));
        let (base, outside) = (root.join("base"), root.join("outside"));
        std::fs::create_dir_all(&base).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, base.join("link")).unwrap();
        std::fs::write(base.join("file"), b"x").unwrap();
        Sandbox { base, outside }
    })
}

/// Removes what the last input created, keeping the planted link and file.
fn clean(base: &Path) {
    for entry in std::fs::read_dir(base).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "link" && entry.file_name() != "file" {
            std::fs::remove_dir_all(entry.path()).unwrap();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(wire) = std::str::from_utf8(data) else {
        return;
    };
    let Sandbox { base, outside } = sandbox();
    let got = safe_local_path(base, wire);
    if let Some(local) = &got {
        let rest = local
            .strip_prefix(base)
            .expect("an accepted path is below the base");
        let names: Vec<_> = rest.components().collect();
        assert!(
            names.iter().all(|c| matches!(c, Component::Normal(_))),
            "{wire:?} gave {local:?}"
        );
        let wire_names: Vec<_> = wire.split('/').collect();
        assert_eq!(names.len(), wire_names.len(), "{wire:?} gave {local:?}");
        let mut on_the_way = base.clone();
        for name in &names[..names.len() - 1] {
            on_the_way.push(name);
            let meta = std::fs::symlink_metadata(&on_the_way).expect("folders on the way exist");
            assert!(
                meta.is_dir(),
                "{wire:?} goes through {on_the_way:?}, not a folder"
            );
        }
    }
    let escaped = std::fs::read_dir(outside).unwrap().next().is_some();
    assert!(!escaped, "{wire:?} created something through the link");
    clean(base);
});
