//! Receiving pushed files: [`put_file`], and the directories and links of a tree push.
//!
//! A file is announced with its size and SHA-256. If the destination already holds exactly
//! that content, the answer is `unchanged` and no data is sent. Otherwise the data is
//! written to a temporary file beside the destination while it is hashed; only when all
//! of it has arrived, been synced and matched the announced SHA-256 is the temporary file
//! renamed over the destination. Any failure before that leaves the old destination as it
//! was and removes the temporary file (see [`super::TempFile`]).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::channel::Channel;
use common::message::{Packet, Reply, Request};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

use super::{remove_stale_temps, resolve, with_heartbeats, TempFile};
use crate::server::Config;
use crate::session::send_within;

/// Chunks (of up to 256 KiB) queued between receiving and writing: enough to keep both
/// sides busy, little enough to stay a few MiB per push.
const WRITE_QUEUE_CHUNKS: usize = 8;

/// What [`put_file`] was asked to write.
pub struct PutRequest {
    pub path: String,
    pub name: String,
    pub size: u64,
    pub mode: u32,
    pub sha256: String,
    pub mkdir: bool,
}

/// Serves one `PutFile`.
///
/// # Errors
/// A reason to drop the connection (the controller vanished or broke the protocol); a
/// failure that only concerns this file is answered with `Reply::Error` instead.
pub async fn put_file(
    channel: &mut Channel<TcpStream>,
    req: PutRequest,
    config: &Config,
) -> Result<(), String> {
    // Hex is hex: another peer may send upper case.
    let announced = req.sha256.to_ascii_lowercase();
    let dest = destination(&config.files_dir, &req.path, &req.name);
    if let Err(message) = prepare_folder(&dest, req.mkdir) {
        return reply(channel, Reply::Error { message }, config).await;
    }
    let unchanged =
        with_heartbeats(channel, holds_already(&dest, req.size, &announced), config).await?;
    if unchanged {
        if let Err(err) = std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(req.mode))
        {
            tracing::warn!(path = %dest.display(), error = %err, "cannot set the mode of an unchanged file");
        }
        tracing::info!(path = %dest.display(), "unchanged");
        let ready = Reply::PutReady {
            path: display(&dest),
            unchanged: true,
        };
        return reply(channel, ready, config).await;
    }
    let ready = Reply::PutReady {
        path: display(&dest),
        unchanged: false,
    };
    reply(channel, ready, config).await?;

    let temp = TempFile::beside(&dest);
    let outcome = match receive_into(channel, temp.path(), req.size, config).await? {
        Err(message) => Reply::Error { message },
        Ok((sha256, _)) if sha256 != announced => Reply::Error {
            message: format!(
                "checksum mismatch for {}: received data hashes to {sha256}, the controller announced {announced}; the destination was left as it was",
                dest.display(),
            ),
        },
        Ok((sha256, file)) => {
            // fsync of a large file can take a while on a slow disk: keep the controller
            // informed that we are alive meanwhile.
            let placed = with_heartbeats(channel, finish(file, temp, &dest, req.mode), config).await?;
            match placed {
                Ok(()) => {
                    tracing::info!(path = %dest.display(), bytes = req.size, "file written");
                    Reply::PutDone { path: display(&dest), bytes: req.size, sha256 }
                }
                Err(err) => Reply::Error { message: format!("cannot put {} in place: {err}", dest.display()) },
            }
        }
    };
    reply(channel, outcome, config).await
}

/// Serves one `MakeDir`: the folder exists afterwards with `mode`, and the answer says
/// whether it was created just now.
pub async fn make_dir(
    channel: &mut Channel<TcpStream>,
    path: &str,
    name: &str,
    mode: u32,
    mkdir: bool,
    config: &Config,
) -> Result<(), String> {
    let dir = destination(&config.files_dir, path, name);
    let made = prepare_folder(&dir, mkdir).and_then(|()| {
        let created = match std::fs::create_dir(&dir) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {
                Ok(false)
            }
            Err(err) => Err(err),
        };
        created
            .and_then(|created| {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
                    .map(|()| created)
            })
            .map_err(|err| format!("cannot create the folder {}: {err}", dir.display()))
    });
    let answer = match made {
        Ok(created) => Reply::Made {
            path: display(&dir),
            created,
        },
        Err(message) => Reply::Error { message },
    };
    reply(channel, answer, config).await
}

/// Serves one `MakeSymlink`: a new link is made beside the old path and renamed over it,
/// unless the same link is there already.
pub async fn make_symlink(
    channel: &mut Channel<TcpStream>,
    path: &str,
    target: &str,
    config: &Config,
) -> Result<(), String> {
    let link = resolve(&config.files_dir, path);
    if std::fs::read_link(&link).is_ok_and(|existing| existing == Path::new(target)) {
        return reply(
            channel,
            Reply::Made {
                path: display(&link),
                created: false,
            },
            config,
        )
        .await;
    }
    let made = prepare_folder(&link, false).and_then(|()| {
        let temp = TempFile::beside(&link);
        std::os::unix::fs::symlink(target, temp.path())
            .and_then(|()| temp.persist(&link))
            .map_err(|err| format!("cannot create the link {}: {err}", link.display()))
    });
    let answer = match made {
        Ok(()) => Reply::Made {
            path: display(&link),
            created: true,
        },
        Err(message) => Reply::Error { message },
    };
    reply(channel, answer, config).await
}

/// The destination, with scp's rule: an existing directory receives `dir/<name>`.
fn destination(files_dir: &Path, path: &str, name: &str) -> PathBuf {
    let dest = resolve(files_dir, path);
    if !name.is_empty() && dest.is_dir() {
        dest.join(name)
    } else {
        dest
    }
}

/// Makes sure the destination's folder exists (creating it with `mkdir`), and clears it of
/// temporary files that killed agents left behind.
fn prepare_folder(dest: &Path, mkdir: bool) -> Result<(), String> {
    let Some(folder) = dest.parent().filter(|f| !f.as_os_str().is_empty()) else {
        return Ok(());
    };
    if !folder.is_dir() {
        if !mkdir {
            return Err(format!(
                "the folder {} does not exist (push with --mkdir to create it)",
                folder.display()
            ));
        }
        std::fs::create_dir_all(folder)
            .map_err(|err| format!("cannot create the folder {}: {err}", folder.display()))?;
    }
    for path in remove_stale_temps(folder, false) {
        tracing::info!(path = %path.display(), "removed a temporary file of an interrupted push");
    }
    Ok(())
}

/// True when `dest` is a regular file of `size` bytes whose SHA-256 is `sha256`.
async fn holds_already(dest: &Path, size: u64, sha256: &str) -> bool {
    let is_candidate =
        std::fs::symlink_metadata(dest).is_ok_and(|meta| meta.is_file() && meta.len() == size);
    if !is_candidate {
        return false;
    }
    let dest = dest.to_owned();
    let hashed = tokio::task::spawn_blocking(move || common::digest::sha256_file(&dest)).await;
    matches!(hashed, Ok(Ok(existing)) if existing == sha256)
}

/// Receives exactly `size` bytes of file data into `temp`, hashing them.
///
/// Hashing and writing run on a blocking thread of their own, fed through a short bounded
/// queue, while this task receives and authenticates the next frames: the two SHA-256
/// passes every byte needs (the channel's tag, the file's hash) then use two cores, and a
/// slow disk still slows the controller down (the queue fills, we stop reading).
///
/// The outer `Result` is the connection's (the controller broke off); the inner one is the
/// file's. After a write error (a full disk, say) the rest of the data is still read and
/// dropped, so the controller gets a clear error instead of a reset connection.
async fn receive_into(
    channel: &mut Channel<TcpStream>,
    temp: &Path,
    size: u64,
    config: &Config,
) -> Result<Result<(String, std::fs::File), String>, String> {
    let (chunks, mut queue) = tokio::sync::mpsc::channel::<bytes::Bytes>(WRITE_QUEUE_CHUNKS);
    let path = temp.to_owned();
    let writer = tokio::task::spawn_blocking(move || {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|err| format!("cannot create {}: {err}", path.display()))?;
        let mut hasher = Sha256::new();
        while let Some(chunk) = queue.blocking_recv() {
            hasher.update(&chunk);
            file.write_all(&chunk)
                .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
        }
        Ok((hex::encode(hasher.finalize()), file))
    });
    // The writer is always joined before returning, even when the controller broke off:
    // otherwise the caller could remove the temporary file before the writer created it.
    let received = feed_writer(channel, &chunks, size, config).await;
    drop(chunks);
    let written = writer
        .await
        .map_err(|err| format!("the writer task failed: {err}"))
        .and_then(|written| written);
    received.map(|()| written)
}

/// Receives `size` bytes of file data and queues them for the writer. A closed queue means
/// the writer failed; the data is still read to the end, so the connection stays in step.
async fn feed_writer(
    channel: &mut Channel<TcpStream>,
    chunks: &tokio::sync::mpsc::Sender<bytes::Bytes>,
    size: u64,
    config: &Config,
) -> Result<(), String> {
    let mut received = 0u64;
    let mut writing = true;
    while received < size {
        let chunk = recv_data(channel, config).await?;
        received += chunk.len() as u64;
        if received > size {
            return Err(format!(
                "the controller sent more than the {size} bytes it announced"
            ));
        }
        if writing && chunks.send(chunk).await.is_err() {
            writing = false;
        }
    }
    Ok(())
}

async fn recv_data(
    channel: &mut Channel<TcpStream>,
    config: &Config,
) -> Result<bytes::Bytes, String> {
    match tokio::time::timeout(config.idle_timeout, channel.recv::<Request>()).await {
        Err(_) => Err(format!(
            "no file data for {}s",
            config.idle_timeout.as_secs()
        )),
        Ok(Err(err)) => Err(err.to_string()),
        Ok(Ok(None)) => Err("the controller closed the connection mid-file".into()),
        Ok(Ok(Some(Packet::FileData(chunk)))) => Ok(chunk),
        Ok(Ok(Some(other))) => Err(format!("expected file data, got {}", other.summary())),
    }
}

/// Syncs the written data, sets the mode and renames the file into place.
async fn finish(
    file: std::fs::File,
    temp: TempFile,
    dest: &Path,
    mode: u32,
) -> std::io::Result<()> {
    let dest = dest.to_owned();
    tokio::task::spawn_blocking(move || {
        file.sync_all()?;
        drop(file);
        std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(mode))?;
        temp.persist(&dest)
    })
    .await
    .map_err(std::io::Error::other)?
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

async fn reply(
    channel: &mut Channel<TcpStream>,
    reply: Reply,
    config: &Config,
) -> Result<(), String> {
    if let Reply::Error { message } = &reply {
        tracing::warn!(%message, "file request failed");
    }
    send_within(channel, &Packet::Control(reply), config.idle_timeout).await
}
