//! Where a path from the wire lands on this host, and the folder a pushed entry goes into,
//! opened once and not through any link (see `docs/PROTOCOL.md` §6.5).
//!
//! Relative paths from the controller resolve against the agent's files folder
//! (`--files-dir`); absolute paths are used as given, since whoever holds the fleet key may
//! run any command as the agent's user anyway. What *is* guarded is the way there: the agent
//! runs as root and a local user may plant a link in any folder they can write, so no link
//! is followed anywhere on a path from the wire (`common::folder`), and what happens in the
//! destination's folder happens on its descriptor. Writing the entries themselves is up to
//! the requests ([`super::put_file`], [`super::make_dir`], [`super::make_symlink`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use common::atomic_file::remove_stale_temps;
use common::folder::{Folder, OpenError};

use crate::error::Refusal;

/// Where an entry goes: its folder, open, and its name in it.
#[derive(Debug)]
pub struct Target {
    /// The destination's folder, opened without following links.
    pub folder: Folder,
    /// The destination's name in `folder`: one plain name.
    pub name: OsString,
}

impl Target {
    /// The destination as a path, for messages and answers.
    pub fn path(&self) -> PathBuf {
        self.folder.path().join(&self.name)
    }
}

/// The agent-side path for a path from the wire.
pub fn resolve(files_dir: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_owned()
    } else {
        files_dir.join(path)
    }
}

/// The destination of a push, with scp's rule (an existing folder receives `dir/<name>`),
/// its folder open. With `mkdir`, missing folders above it are created (each one with
/// `mkdirat` and opened without following links).
///
/// # Errors
/// [`Refusal::Path`] for a link anywhere on the way (the destination itself included when
/// scp's rule applies), [`Refusal::NoFolder`] for a missing folder without `mkdir`.
pub fn destination(
    files_dir: &Path,
    path: &str,
    name: &str,
    mkdir: bool,
) -> Result<Target, Refusal> {
    let dest = resolve(files_dir, path);
    if !name.is_empty() {
        match Folder::open(&dest) {
            Ok(folder) => {
                return Ok(Target {
                    folder,
                    name: name.into(),
                })
            }
            // A link named as the destination is refused rather than replaced: the
            // operator most likely meant the folder it points to.
            Err(err @ (OpenError::Link { .. } | OpenError::Io { .. })) => {
                return Err(Refusal::Path(err))
            }
            // Missing or not a folder: the destination is the path itself.
            Err(_) => {}
        }
    }
    entry(&dest, mkdir)
}

/// The entry at `path` (no scp's rule), its folder open; with `mkdir`, missing folders
/// above it are created.
///
/// # Errors
/// As [`destination`].
pub fn entry(path: &Path, mkdir: bool) -> Result<Target, Refusal> {
    let Some(name) = path.file_name() else {
        return Err(Refusal::NoName(path.to_owned()));
    };
    let folder_path = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    let opened = match mkdir {
        true => Folder::open_or_create(folder_path),
        false => Folder::open(folder_path),
    };
    let folder = opened.map_err(|err| match err {
        OpenError::Missing(_) => Refusal::NoFolder(folder_path.to_owned()),
        other => Refusal::Path(other),
    })?;
    Ok(Target {
        folder,
        name: name.to_owned(),
    })
}

/// Clears the destination's folder of temporary files that killed agents left behind.
pub fn remove_stale(target: &Target) {
    for path in remove_stale_temps(&target.folder, false) {
        tracing::info!(path = %path.display(), "removed a temporary file of an interrupted push");
    }
}

/// A path as the wire carries it back.
pub fn display(path: &Path) -> String {
    path.display().to_string()
}
