//! `get`: sending back one file, or with `recursive` a directory tree, for `ctl pull`.
//! Writing what arrives is the controller's business; this module lists, reads and sends.
//!
//! Entry paths start with the requested item's own name and use `/` between names; the
//! tree is walked without following links (a link is sent as a link). Each file's data is
//! hashed while it is read and the hash follows the data, so the controller can check what
//! it received against what was read here.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::channel::Channel;
use common::chunk_reader::ChunkReader;
use common::message::{EntryKind, Packet, Reply};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

use super::paths::resolve;
use super::with_heartbeats;
use crate::config::Config;
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
        channel: &mut Channel<TcpStream>,
        config: &Config,
    ) -> Result<Reply, RequestError> {
        let root = resolve(&config.files_dir, &self.path);
        // A large tree takes a while to list: heartbeats tell the controller we are at it.
        let items = {
            let (root, recursive) = (root.clone(), self.recursive);
            let task = tokio::task::spawn_blocking(move || list(&root, recursive));
            with_heartbeats(channel, task, config.idle_timeout)
                .await?
                .map_err(ConnectionError::ListingTask)??
        };
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
                let sha256 = send_data(channel, item, config).await?;
                send(channel, Reply::EntryEnd { sha256 }, config).await?;
                bytes += item.size;
            }
        }
        tracing::info!(path = %root.display(), entries, bytes, "sent");
        Ok(Reply::GetDone { entries, bytes })
    }
}

/// One item to send, found by [`walk`].
struct Item {
    /// Path relative to the requested item's parent, `/`-separated.
    rel: String,
    path: PathBuf,
    kind: EntryKind,
    mode: u32,
    size: u64,
    target: Option<String>,
}

/// Everything to send for `root`, parents before children, in name order.
fn list(root: &Path, recursive: bool) -> Result<Vec<Item>, Refusal> {
    let meta = std::fs::symlink_metadata(root).map_err(|source| Refusal::Unreadable {
        path: root.to_owned(),
        source,
    })?;
    if meta.is_dir() && !recursive {
        return Err(Refusal::IsDirectory(root.to_owned()));
    }
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".to_owned());
    let mut items = Vec::new();
    walk(root, name, &meta, &mut items)?;
    Ok(items)
}

fn walk(
    path: &Path,
    rel: String,
    meta: &std::fs::Metadata,
    items: &mut Vec<Item>,
) -> Result<(), Refusal> {
    let kind = if meta.is_dir() {
        EntryKind::Dir
    } else if meta.file_type().is_symlink() {
        EntryKind::Symlink
    } else if meta.is_file() {
        EntryKind::File
    } else if rel.contains('/') {
        // Sockets, fifos and devices inside a tree have no content to copy.
        tracing::debug!(path = %path.display(), "skipping a special file");
        return Ok(());
    } else {
        return Err(Refusal::NotAFile(path.to_owned()));
    };
    let target = match kind {
        EntryKind::Symlink => Some(
            std::fs::read_link(path)
                .map_err(|source| unreadable(path, source))?
                .to_string_lossy()
                .into_owned(),
        ),
        _ => None,
    };
    items.push(Item {
        rel: rel.clone(),
        path: path.to_owned(),
        kind,
        mode: mode_of(meta),
        size: if kind == EntryKind::File {
            meta.size()
        } else {
            0
        },
        target,
    });
    if kind == EntryKind::Dir {
        let mut children: Vec<_> = std::fs::read_dir(path)
            .map_err(|source| unreadable(path, source))?
            .filter_map(Result::ok)
            .collect();
        children.sort_by_key(|entry| entry.file_name());
        for child in children {
            // Gone since the folder was read (a rotated log, say): as if it never was.
            let Ok(child_meta) = child.metadata() else {
                continue;
            };
            let child_rel = format!("{rel}/{}", child.file_name().to_string_lossy());
            walk(&child.path(), child_rel, &child_meta, items)?;
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

/// Permission bits as the wire carries them.
fn mode_of(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

/// Streams one file's `size` bytes and returns their SHA-256.
///
/// # Errors
/// [`Refusal::Read`] when the file could not be read as announced (it vanished, shrank or
/// is unreadable); a [`ConnectionError`] when the controller took no data.
async fn send_data(
    channel: &mut Channel<TcpStream>,
    item: &Item,
    config: &Config,
) -> Result<String, RequestError> {
    let mut reader = ChunkReader::start(
        item.path.clone(),
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
    channel: &mut Channel<TcpStream>,
    reply: Reply,
    config: &Config,
) -> Result<(), ConnectionError> {
    channel
        .send_within(&Packet::Control(reply), config.idle_timeout)
        .await?;
    Ok(())
}
