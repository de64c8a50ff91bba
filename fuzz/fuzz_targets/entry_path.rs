//! File entry paths: the `path` of a `Reply::Entry` an agent sends during `ctl pull`, through
//! what `ctl pull` does with it (controller/src/client/pull.rs): `common::folder::plain_names`,
//! then `Folder::descend_or_create` for the folders on the way.
//!
//! The base folder is a fresh temporary folder holding a link `link` to another folder
//! (`outside`) and a regular file `file`, as an earlier entry of a hostile pull could have
//! planted them. Input: the path, as UTF-8 (it arrives in JSON).
//!
//! Invariant: no panic; a path that is accepted is plain names only (no root, `..`, `.` or
//! empty part), the same names the wire path has; the folder reached is the base joined
//! with them, and every folder on the way below the base is a real folder, not a link;
//! nothing is ever created in `outside`.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::folder::{plain_names, Folder};
use libfuzzer_sys::fuzz_target;

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
    if let Some(names) = plain_names(wire) {
        assert_eq!(names.len(), wire.split('/').count(), "{wire:?}");
        assert!(
            names
                .iter()
                .all(|name| !matches!(*name, "" | "." | "..") && !name.contains('\0')),
            "{wire:?} gave {names:?}"
        );
        let (_, folders) = names.split_last().expect("at least one name");
        let base_folder = Folder::open(base).expect("the base opens");
        if let Ok(folder) = base_folder.descend_or_create(folders) {
            let mut expected = base.clone();
            expected.extend(folders);
            assert_eq!(folder.path(), expected, "{wire:?}");
            let mut on_the_way = base.clone();
            for name in folders {
                on_the_way.push(name);
                let meta =
                    std::fs::symlink_metadata(&on_the_way).expect("folders on the way exist");
                assert!(meta.is_dir(), "{wire:?} goes through {on_the_way:?}, not a folder");
            }
        }
    }
    let escaped = std::fs::read_dir(outside).unwrap().next().is_some();
    assert!(!escaped, "{wire:?} created something through the link");
    clean(base);
});
