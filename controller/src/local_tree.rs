//! The workstation's side of a push: what to send, listed once before any host is
//! contacted.
//!
//! Listing only stats: nothing is read or hashed here. Each file's SHA-256 is computed while
//! it is being sent, once for all hosts (see [`crate::source_hash`]), so the first byte goes
//! out without a pass over the file first.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use common::message::EntryKind;

use crate::source_hash::SourceHash;

/// One thing to create on the hosts.
#[derive(Debug)]
pub struct LocalEntry {
    /// Relative to the pushed root, `/`-separated; empty for the root itself.
    pub rel: String,
    /// Where it is here.
    pub path: PathBuf,
    pub kind: EntryKind,
    pub mode: u32,
    /// Files: their size.
    pub size: u64,
    /// Files: the SHA-256 of their content, shared by every host's sender; for other
    /// kinds an unused hash of nothing.
    pub hash: Arc<SourceHash>,
    /// Links: what they point to.
    pub target: Option<String>,
}

/// What a push sends: the root (a file, or with `recursive` a directory) and everything
/// below it, parents first.
#[derive(Debug)]
pub struct LocalTree {
    /// The root's own file name, which lands in a destination that is a directory.
    pub name: String,
    pub entries: Vec<LocalEntry>,
}

impl LocalTree {
    /// Lists `source`. `mode` replaces the files' own modes when given.
    ///
    /// # Errors
    /// The source is missing or unreadable, or is a directory without `recursive`.
    pub fn scan(source: &Path, recursive: bool, mode: Option<u32>) -> Result<LocalTree> {
        let meta = std::fs::metadata(source)
            .with_context(|| format!("cannot read {}", source.display()))?;
        if meta.is_dir() && !recursive {
            bail!("{} is a directory: push it with -r", source.display());
        }
        let Some(name) = source.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            bail!("{} has no file name to push it under", source.display());
        };
        let mut entries = Vec::new();
        collect(source, String::new(), &meta, mode, &mut entries)?;
        Ok(LocalTree { name, entries })
    }

    /// Bytes of file content in the tree.
    pub fn total_bytes(&self) -> u64 {
        self.entries.iter().map(|entry| entry.size).sum()
    }

    /// The files whose mode has setuid or setgid bits, by their path relative to the root
    /// (the root itself by its name), for the operation log.
    pub fn setid_files(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|entry| entry.kind == EntryKind::File && entry.mode & 0o6000 != 0)
            .map(|entry| match entry.rel.is_empty() {
                true => self.name.clone(),
                false => entry.rel.clone(),
            })
            .collect()
    }

    /// The root's SHA-256 when the root is a single file and its hash is known (every byte
    /// of it has been read by some host's sender).
    pub fn single_file_sha256(&self) -> Option<String> {
        match self.entries.as_slice() {
            [only] if only.kind == EntryKind::File => only.hash.result(),
            _ => None,
        }
    }
}

fn collect(
    path: &Path,
    rel: String,
    meta: &std::fs::Metadata,
    mode: Option<u32>,
    entries: &mut Vec<LocalEntry>,
) -> Result<()> {
    let own_mode = meta.permissions().mode() & 0o7777;
    let entry = |kind, mode, size, target| LocalEntry {
        rel: rel.clone(),
        path: path.to_owned(),
        kind,
        mode,
        size,
        hash: Arc::new(SourceHash::new(size)),
        target,
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path)
            .with_context(|| format!("cannot read the link {}", path.display()))?;
        entries.push(entry(
            EntryKind::Symlink,
            own_mode,
            0,
            Some(target.to_string_lossy().into_owned()),
        ));
    } else if meta.is_file() {
        entries.push(entry(
            EntryKind::File,
            mode.unwrap_or(own_mode),
            meta.size(),
            None,
        ));
    } else if meta.is_dir() {
        entries.push(entry(EntryKind::Dir, own_mode, 0, None));
        let mut children: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("cannot list {}", path.display()))?;
        children.sort_by_key(|child| child.file_name());
        for child in children {
            let name = child.file_name().to_string_lossy().into_owned();
            let child_rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            // Inside a tree, links stay links: symlink_metadata does not follow them.
            let child_meta = std::fs::symlink_metadata(child.path())
                .with_context(|| format!("cannot read {}", child.path().display()))?;
            collect(&child.path(), child_rel, &child_meta, mode, entries)?;
        }
    } else {
        tracing::warn!(path = %path.display(), "skipping a special file (socket, fifo or device)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_listed_parents_first_in_name_order_with_links_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("site");
        std::fs::create_dir_all(root.join("b")).unwrap();
        std::fs::write(root.join("b").join("x"), "x").unwrap();
        std::fs::write(root.join("a"), "hello").unwrap();
        std::os::unix::fs::symlink("a", root.join("c")).unwrap();
        let tree = LocalTree::scan(&root, true, None).unwrap();
        let rels: Vec<&str> = tree.entries.iter().map(|e| e.rel.as_str()).collect();
        assert_eq!(rels, ["", "a", "b", "b/x", "c"]);
        assert_eq!(tree.name, "site");
        assert_eq!(tree.total_bytes(), 6);
        assert_eq!(tree.entries[4].kind, EntryKind::Symlink);
        assert_eq!(tree.entries[4].target.as_deref(), Some("a"));
        assert_eq!(tree.entries[1].size, 5);
        assert_eq!(
            tree.entries[1].hash.result(),
            None,
            "nothing is read up front"
        );
    }

    #[test]
    fn a_directory_needs_recursive() {
        let dir = tempfile::tempdir().unwrap();
        let err = LocalTree::scan(dir.path(), false, None).unwrap_err();
        assert!(err.to_string().contains("push it with -r"), "{err}");
    }
}
