//! The workstation's side of a push: what to send, listed and hashed once, before any host
//! is contacted.
//!
//! Every file is hashed up front (once per push, not per host) because the agent needs the
//! SHA-256 before the data, to answer `unchanged` when its copy is identical. Reading the
//! file once to hash it also brings it into the page cache, so the per-host senders that
//! follow read it from memory rather than from the disk again.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use common::message::EntryKind;

/// One thing to create on the hosts.
#[derive(Debug, Clone)]
pub struct LocalEntry {
    /// Relative to the pushed root, `/`-separated; empty for the root itself.
    pub rel: String,
    /// Where it is here.
    pub path: PathBuf,
    pub kind: EntryKind,
    pub mode: u32,
    /// Files: their size.
    pub size: u64,
    /// Files: SHA-256 of their content, hex.
    pub sha256: String,
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
    /// Lists and hashes `source`. `mode` replaces the files' own modes when given.
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

    /// The root's SHA-256 when the root is a single file.
    pub fn single_file_sha256(&self) -> Option<&str> {
        match self.entries.as_slice() {
            [only] if only.kind == EntryKind::File => Some(&only.sha256),
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
    let entry = |kind, mode, size, sha256, target| LocalEntry {
        rel: rel.clone(),
        path: path.to_owned(),
        kind,
        mode,
        size,
        sha256,
        target,
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path)
            .with_context(|| format!("cannot read the link {}", path.display()))?;
        entries.push(entry(
            EntryKind::Symlink,
            own_mode,
            0,
            String::new(),
            Some(target.to_string_lossy().into_owned()),
        ));
    } else if meta.is_file() {
        let sha256 = common::digest::sha256_file(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        entries.push(entry(
            EntryKind::File,
            mode.unwrap_or(own_mode),
            meta.size(),
            sha256,
            None,
        ));
    } else if meta.is_dir() {
        entries.push(entry(EntryKind::Dir, own_mode, 0, String::new(), None));
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
        assert_eq!(
            tree.entries[1].sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[test]
    fn a_directory_needs_recursive() {
        let dir = tempfile::tempdir().unwrap();
        let err = LocalTree::scan(dir.path(), false, None).unwrap_err();
        assert!(err.to_string().contains("push it with -r"), "{err}");
    }
}
