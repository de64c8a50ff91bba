//! Where a path from the wire lands on this host, and the folder a pushed entry goes into.
//!
//! Relative paths from the controller resolve against the agent's files folder
//! (`--files-dir`); absolute paths are used as given, since whoever holds the fleet key may
//! run any command as the agent's user anyway. Writing the entries themselves is up to the
//! requests ([`super::put_file`], [`super::make_dir`], [`super::make_symlink`]).

use std::path::{Path, PathBuf};

use common::atomic_file::remove_stale_temps;

use crate::error::Refusal;

/// The agent-side path for a path from the wire.
pub fn resolve(files_dir: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_owned()
    } else {
        files_dir.join(path)
    }
}

/// The destination, with scp's rule: an existing directory receives `dir/<name>`.
pub fn destination(files_dir: &Path, path: &str, name: &str) -> PathBuf {
    let dest = resolve(files_dir, path);
    if !name.is_empty() && dest.is_dir() {
        dest.join(name)
    } else {
        dest
    }
}

/// Makes sure the destination's folder exists (creating it with `mkdir`), and clears it of
/// temporary files that killed agents left behind.
///
/// # Errors
/// [`Refusal::NoFolder`] without `mkdir`, [`Refusal::CreateFolder`] when it cannot be made.
pub fn prepare_folder(dest: &Path, mkdir: bool) -> Result<(), Refusal> {
    let Some(folder) = dest.parent().filter(|f| !f.as_os_str().is_empty()) else {
        return Ok(());
    };
    if !folder.is_dir() {
        if !mkdir {
            return Err(Refusal::NoFolder(folder.to_owned()));
        }
        std::fs::create_dir_all(folder).map_err(|source| Refusal::CreateFolder {
            path: folder.to_owned(),
            source,
        })?;
    }
    for path in remove_stale_temps(folder, false) {
        tracing::info!(path = %path.display(), "removed a temporary file of an interrupted push");
    }
    Ok(())
}

/// A path as the wire carries it back.
pub fn display(path: &Path) -> String {
    path.display().to_string()
}
