//! Files that appear whole or not at all: a temporary file beside the destination,
//! renamed over it once complete and synced. Used by the agent for pushed files and by
//! `ctl` for pulled ones, so both sides leave the same recognisable temporary names.
//!
//! Temporary files carry the writing process's pid in their name
//! (`.muster-tmp.<pid>.<random>.<final name>`), so stale ones, left by a process that was
//! killed, can be told from live ones and removed.

use std::path::{Path, PathBuf};

/// Every temporary file starts with this, then `<agent pid>.<random>.<final name>`.
pub const TEMP_PREFIX: &str = ".muster-tmp.";

/// A temporary file that is removed when dropped, unless it was renamed into place.
pub struct TempFile {
    path: Option<PathBuf>,
}

impl TempFile {
    /// A new name for a temporary file that will become `dest`.
    pub fn beside(dest: &Path) -> TempFile {
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).expect("the operating system random source works");
        let temp = format!(
            "{TEMP_PREFIX}{}.{}.{name}",
            std::process::id(),
            hex::encode(random)
        );
        TempFile {
            path: Some(dest.with_file_name(temp)),
        }
    }

    /// Where the temporary file is, until it is persisted.
    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("set until persisted")
    }

    /// Renames the temporary file over `dest` and syncs the folder, so the rename survives
    /// a crash.
    pub fn persist(mut self, dest: &Path) -> std::io::Result<()> {
        let temp = self.path.take().expect("set until persisted");
        if let Err(err) = std::fs::rename(&temp, dest) {
            let _ = std::fs::remove_file(&temp);
            return Err(err);
        }
        if let Some(folder) = dest.parent() {
            std::fs::File::open(folder)?.sync_all()?;
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Removes temporary files in `folder` (and below it, with `recursive`, not following
/// links) that were left by processes no longer running, and returns their paths. One that
/// cannot be removed now is left for the next call.
pub fn remove_stale_temps(folder: &Path, recursive: bool) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(folder) else {
        return removed;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() && recursive {
            removed.extend(remove_stale_temps(&path, true));
        } else if (kind.is_file() || kind.is_symlink())
            && is_stale_temp(&entry.file_name().to_string_lossy())
            && std::fs::remove_file(&path).is_ok()
        {
            removed.push(path);
        }
    }
    removed
}

/// A temporary file whose writer (the pid in its name) is gone.
fn is_stale_temp(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
        return false;
    };
    let Some(pid) = rest
        .split('.')
        .next()
        .and_then(|pid| pid.parse::<u32>().ok())
    else {
        return false;
    };
    pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temps_of_dead_agents_are_stale_and_ours_are_not() {
        let ours = format!("{TEMP_PREFIX}{}.00.f", std::process::id());
        assert!(!is_stale_temp(&ours));
        // Pid numbers above the kernel's pid_max are never alive.
        assert!(is_stale_temp(&format!("{TEMP_PREFIX}99999999.00.f")));
        assert!(!is_stale_temp("notes.txt"));
        assert!(!is_stale_temp(&format!("{TEMP_PREFIX}garbage")));
    }

    #[test]
    fn stale_temps_are_removed_recursively_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let stale = dir
            .path()
            .join("sub")
            .join(format!("{TEMP_PREFIX}99999999.ab.x"));
        let kept = dir.path().join("x");
        std::fs::write(&stale, "half").unwrap();
        std::fs::write(&kept, "whole").unwrap();
        assert_eq!(
            remove_stale_temps(dir.path(), true),
            std::slice::from_ref(&stale)
        );
        assert!(!stale.exists());
        assert!(kept.exists());
    }

    #[test]
    fn a_dropped_temp_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let temp = TempFile::beside(&dir.path().join("f"));
        std::fs::write(temp.path(), "partial").unwrap();
        let path = temp.path().to_owned();
        drop(temp);
        assert!(!path.exists());
    }
}
