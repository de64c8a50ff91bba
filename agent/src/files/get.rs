//! Sending files back for `ctl pull`: one file, or with `recursive` a directory tree.
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

use super::{mode_of, resolve, with_heartbeats};
use crate::server::Config;
use crate::session::send_within;

/// Chunks (of up to 256 KiB) read ahead of the one being sent: enough to keep reading and
/// hashing busy on their own thread while this task encrypts and sends.
const READ_AHEAD_CHUNKS: usize = 4;

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

/// Serves one `Get`.
///
/// # Errors
/// A reason to drop the connection; a missing or unreadable file is answered with
/// `Reply::Error` and the connection stays usable.
pub async fn get(
    channel: &mut Channel<TcpStream>,
    path: &str,
    recursive: bool,
    config: &Config,
) -> Result<(), String> {
    let root = resolve(&config.files_dir, path);
    // A large tree takes a while to list: heartbeats tell the controller we are at it.
    let listing = {
        let root = root.clone();
        let task = tokio::task::spawn_blocking(move || list(&root, recursive));
        with_heartbeats(channel, task, config)
            .await?
            .map_err(|err| format!("listing task failed: {err}"))?
    };
    let items = match listing {
        Ok(items) => items,
        Err(message) => return send(channel, Reply::Error { message }, config).await,
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
            match send_data(channel, item, config).await? {
                Ok(sha256) => send(channel, Reply::EntryEnd { sha256 }, config).await?,
                Err(message) => return send(channel, Reply::Error { message }, config).await,
            }
            bytes += item.size;
        }
    }
    tracing::info!(path = %root.display(), entries, bytes, "sent");
    send(channel, Reply::GetDone { entries, bytes }, config).await
}

/// Everything to send for `root`, parents before children, in name order.
fn list(root: &Path, recursive: bool) -> Result<Vec<Item>, String> {
    let meta =
        std::fs::symlink_metadata(root).map_err(|err| format!("{}: {err}", root.display()))?;
    if meta.is_dir() && !recursive {
        return Err(format!(
            "{} is a directory (pull it with -r)",
            root.display()
        ));
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
) -> Result<(), String> {
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
        return Err(format!("{} is not a file, folder or link", path.display()));
    };
    let target = match kind {
        EntryKind::Symlink => Some(
            std::fs::read_link(path)
                .map_err(|err| format!("{}: {err}", path.display()))?
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
            .map_err(|err| format!("{}: {err}", path.display()))?
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

/// Streams one file's `size` bytes; the inner `Err` means the file could not be read as
/// announced (it vanished, shrank or is unreadable).
async fn send_data(
    channel: &mut Channel<TcpStream>,
    item: &Item,
    config: &Config,
) -> Result<Result<String, String>, String> {
    let mut reader = ChunkReader::start(
        item.path.clone(),
        item.size,
        READ_AHEAD_CHUNKS,
        Sha256::new(),
    );
    while let Some(chunk) = reader.next().await {
        send_within(
            channel,
            &Packet::<Reply>::FileData(chunk),
            config.idle_timeout,
        )
        .await?;
    }
    Ok(reader
        .finish()
        .await
        .map(|hash| hex::encode(hash.finalize())))
}

async fn send(
    channel: &mut Channel<TcpStream>,
    reply: Reply,
    config: &Config,
) -> Result<(), String> {
    if let Reply::Error { message } = &reply {
        tracing::warn!(%message, "get failed");
    }
    send_within(channel, &Packet::Control(reply), config.idle_timeout).await
}
