//! Files in and out of the agent host: atomic writes for `ctl push` ([`put`]) and reads for
//! `ctl pull` ([`get`]).
//!
//! Relative paths from the controller resolve against the agent's files folder
//! (`--files-dir`); absolute paths are used as given, since whoever holds the fleet key may
//! run any command as the agent's user anyway. A pushed file is written to a temporary file
//! beside its destination and renamed over it only when complete, synced and verified, so
//! an interrupted push never leaves a half-written destination (`common::atomic_file`).

pub mod get;
pub mod put;

use std::path::{Path, PathBuf};

pub use common::atomic_file::{remove_stale_temps, TempFile};

/// The agent-side path for a path from the wire.
pub fn resolve(files_dir: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_owned()
    } else {
        files_dir.join(path)
    }
}

/// Permission bits as the wire carries them.
pub fn mode_of(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}
