//! `get`: sending back one file, or with `recursive` a directory tree, for `ctl pull`.
//! Writing what arrives is the controller's business; this module lists, reads and sends.
//!
//! Entry paths start with the requested item's own name and use `/` between names. No link
//! is followed, on the way to the item or below it: the item's folder is opened without
//! following links (a link on the way is refused, naming it), the tree is walked on folder
//! descriptors, a link inside a tree is sent as a link, and each file is opened with
//! `O_NOFOLLOW` below the descriptors when its data is sent. An item that is itself a link
//! is sent as a link with `recursive`, and refused without it, naming the link and its
//! target: a pull of one file never reads through a link. Each file's data is
//! hashed while it is read and the hash follows the data, so the controller can check what
//! it received against what was read here.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::chunk_reader::ChunkReader;
use common::folder::{Child, Folder, OpenError};
use common::message::{EntryKind, Packet, Reply};
use rustix::fs::{AtFlags, FileType, OFlags};
use sha2::{Digest, Sha256};

use super::paths::resolve;
use super::with_heartbeats;
use crate::config::Config;
use crate::connection::Connection;
use crate::error::{ConnectionError, Refusal, RequestError};

/// Chunks (of up to 256 KiB) read ahead of the one being sent: enough to keep reading and
/// hashing busy on their own thread while this task encrypts and sends.
const READ_AHEAD_CHUNKS: usize = 4;

/// A `get` request.
#[derive(Debug)]
pub struct Get {
    /// What to send, as the wire names it.
    pub path: String,
    /// Send a folder with everything below it.
    pub recursive: bool,
}

impl Get {
    /// Sends every entry (and every file's data and hash), and returns the `GetDone`.
    ///
    /// # Errors
    /// A refusal when the item is missing or unreadable, or a file could not be read as
    /// announced (the conversation ends there); a [`ConnectionError`] when the controller
    /// vanished or stalled.
    pub async fn apply(
        self,
        channel: &mut Connection,
        config: &Config,
    ) -> Result<Reply, RequestError> {
        let root = resolve(&config.files_dir, &self.path);
        // A large tree takes a while to list: heartbeats tell the controller we are at it.
        let Listing { parent, items } = {
            let (root, recursive) = (root.clone(), self.recursive);
            let task = tokio::task::spawn_blocking(move || list(&root, recursive));
            with_heartbeats(channel, task, config.idle_timeout)
                .await?
                .map_err(ConnectionError::ListingTask)??
        };
        let parent = Arc::new(parent);
        let (mut entries, mut bytes) = (0u64, 0u64);
        for item in &items {
            let entry = Reply::Entry {
                path: item.rel.clone(),
                kind: item.kind,
                mode: item.mode,
                size: item.size,
                target: item.target.clone(),
            };
            send(channel, entry, config).await?;
            entries += 1;
            if item.kind == EntryKind::File {
                let sha256 = send_data(channel, &parent, item, config).await?;
                send(channel, Reply::EntryEnd { sha256 }, config).await?;
                bytes += item.size;
            }
        }
        tracing::info!(path = %root.display(), entries, bytes, "sent");
        Ok(Reply::GetDone { entries, bytes })
    }
}

/// What [`list`] found: the folder the requested item is in, and everything to send.
struct Listing {
    parent: Folder,
    items: Vec<Item>,
}

/// One item to send, found by [`walk`].
struct Item {
    /// Path relative to the requested item's parent, `/`-separated.
    rel: String,
    /// The same path as names below the parent folder, for opening it again.
    names: Vec<OsString>,
    /// For messages only.
    path: PathBuf,
    kind: EntryKind,
    mode: u32,
    size: u64,
    target: Option<String>,
}

/// Everything to send for `root`, parents before children, in name order.
fn list(root: &Path, recursive: bool) -> Result<Listing, Refusal> {
    let Some(name) = root.file_name() else {
        return Err(Refusal::NoName(root.to_owned()));
    };
    let parent_path = root.parent().unwrap_or(Path::new("/"));
    let parent = Folder::open(parent_path).map_err(|err| match err {
        OpenError::Missing(_) | OpenError::NotAFolder(_) => {
            unreadable(root, rustix::io::Errno::NOENT.into())
        }
        other => Refusal::Path(other),
    })?;
    let stat = rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|errno| unreadable(root, errno.into()))?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Directory if !recursive => return Err(Refusal::IsDirectory(root.to_owned())),
        FileType::Symlink if !recursive => {
            return Err(Refusal::IsLink {
                path: root.to_owned(),
                target: parent.link_target(name).unwrap_or_default(),
            })
        }
        _ => {}
    }
    let mut items = Vec::new();
    let rel = name.to_string_lossy().into_owned();
    walk(&parent, name, rel, Vec::new(), &mut items)?;
    Ok(Listing { parent, items })
}

/// Adds `name` in `folder` (and with a folder, everything below it) to `items`. `names`
/// leads from the requested item's parent to `folder`.
fn walk(
    folder: &Folder,
    name: &OsStr,
    rel: String,
    mut names: Vec<OsString>,
    items: &mut Vec<Item>,
) -> Result<(), Refusal> {
    let path = folder.path().join(name);
    names.push(name.to_owned());
    let Ok(stat) = rustix::fs::statat(folder, name, AtFlags::SYMLINK_NOFOLLOW) else {
        // Gone since the folder was read (a rotated log, say): as if it never was.
        return Ok(());
    };
    let kind = match FileType::from_raw_mode(stat.st_mode) {
        FileType::Directory => EntryKind::Dir,
        FileType::Symlink => EntryKind::Symlink,
        FileType::RegularFile => EntryKind::File,
        // Sockets, fifos and devices inside a tree have no content to copy.
        _ if rel.contains('/') => {
            tracing::debug!(path = %path.display(), "skipping a special file");
            return Ok(());
        }
        _ => return Err(Refusal::NotAFile(path)),
    };
    let target = match kind {
        EntryKind::Symlink => Some(
            folder
                .link_target(name)
                .ok_or_else(|| unreadable(&path, std::io::Error::other("not a link any more")))?
                .to_string_lossy()
                .into_owned(),
        ),
        _ => None,
    };
    let is_dir = kind == EntryKind::Dir;
    items.push(Item {
        rel: rel.clone(),
        names: names.clone(),
        path: path.clone(),
        kind,
        mode: stat.st_mode & 0o7777,
        size: match kind {
            EntryKind::File => stat.st_size.max(0) as u64,
            _ => 0,
        },
        target,
    });
    if is_dir {
        let child = folder.child_folder(name).map_err(Refusal::Path)?;
        let mut children: Vec<OsString> = rustix::fs::Dir::read_from(&child)
            .map_err(|errno| unreadable(&path, errno.into()))?
            .filter_map(Result::ok)
            .map(|entry| OsStr::from_bytes(entry.file_name().to_bytes()).to_owned())
            .filter(|name| name != "." && name != "..")
            .collect();
        children.sort();
        for child_name in children {
            let child_rel = format!("{rel}/{}", child_name.to_string_lossy());
            walk(&child, &child_name, child_rel, names.clone(), items)?;
        }
    }
    Ok(())
}

fn unreadable(path: &Path, source: std::io::Error) -> Refusal {
    Refusal::Unreadable {
        path: path.to_owned(),
        source,
    }
}

/// Opens the file `names` leads to below `parent`, following no link on the way or at it.
fn open_item(parent: &Folder, names: &[OsString]) -> std::io::Result<File> {
    let Some((last, folders)) = names.split_last() else {
        return Err(std::io::Error::other("empty entry path"));
    };
    let mut held: Option<Folder> = None;
    for name in folders {
        let next = held
            .as_ref()
            .unwrap_or(parent)
            .child_folder(name)
            .map_err(|err| std::io::Error::other(err.to_string()))?;
        held = Some(next);
    }
    let folder = held.as_ref().unwrap_or(parent);
    match folder.open_child(last, OFlags::RDONLY | OFlags::NONBLOCK)? {
        Child::Open(fd) => {
            let file = File::from(fd);
            match file.metadata()?.is_file() {
                true => Ok(file),
                false => Err(std::io::Error::other("not a regular file any more")),
            }
        }
        Child::Link(target) => Err(std::io::Error::other(format!(
            "now a symbolic link (to {}); not followed",
            target.display()
        ))),
    }
}

/// Streams one file's `size` bytes and returns their SHA-256.
///
/// # Errors
/// [`Refusal::Read`] when the file could not be read as announced (it vanished, shrank or
/// is unreadable); a [`ConnectionError`] when the controller took no data.
async fn send_data(
    channel: &mut Connection,
    parent: &Arc<Folder>,
    item: &Item,
    config: &Config,
) -> Result<String, RequestError> {
    let open = {
        let (parent, names) = (Arc::clone(parent), item.names.clone());
        move || open_item(&parent, &names)
    };
    let mut reader = ChunkReader::start_with(
        item.path.clone(),
        open,
        item.size,
        READ_AHEAD_CHUNKS,
        Sha256::new(),
    );
    while let Some(chunk) = reader.next().await {
        channel
            .send_within(&Packet::<Reply>::FileData(chunk), config.idle_timeout)
            .await?;
    }
    let hash = reader.finish().await.map_err(Refusal::Read)?;
    Ok(hex::encode(hash.finalize()))
}

async fn send(
    channel: &mut Connection,
    reply: Reply,
    config: &Config,
) -> Result<(), ConnectionError> {
    channel
        .send_within(&Packet::Control(reply), config.idle_timeout)
        .await?;
    Ok(())
}
