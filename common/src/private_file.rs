//! Files and folders that only their owner may read: diagnostics, the operation log and
//! kept output.
//!
//! They hold every command line an agent ran and every host ctl contacted, so files are
//! created with mode 0600 and missing folders with 0700, each with its mode at creation
//! rather than changed afterwards (nothing can open them in between).
//! `tracing_appender::rolling` cannot do that: it creates files with the default mode, which
//! is why [`crate::diagnostics_file`] writes its own. Files and folders that already exist
//! keep their modes: they are the operator's.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// The mode of a private file the process creates.
pub const FILE_MODE: u32 = 0o600;
/// The mode of a private folder the process creates.
pub const FOLDER_MODE: u32 = 0o700;

/// Creates `dir` and any missing folders above it with [`FOLDER_MODE`]; an existing folder
/// is left as it is.
///
/// # Errors
/// A folder cannot be created.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(FOLDER_MODE)
        .create(dir)
}

/// Opens `path` to append, creating it with [`FILE_MODE`] when it does not exist.
///
/// # Errors
/// The file cannot be opened or created.
pub fn open_private_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_folder_and_file_are_the_owners_alone() {
        // Tried: a folder two levels below an existing one, and a file appended to in it.
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("logs/agent");
        create_private_dir(&dir).unwrap();
        let path = dir.join("agent.log.2026-12-03");
        open_private_append(&path)
            .unwrap()
            .write_all(b"a line\n")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a line\n");
        assert_eq!(mode_of(&path), FILE_MODE, "{}", path.display());
        assert_eq!(mode_of(&dir), FOLDER_MODE);
        assert_eq!(mode_of(&root.path().join("logs")), FOLDER_MODE);
    }

    #[test]
    fn an_existing_file_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        open_private_append(&path).unwrap();
        assert_eq!(mode_of(&path), 0o640);
    }
}
