//! Receiving pushed files: [`put_file`], and the directories and links of a tree push.
//!
//! A file is announced with its size. If the destination is already a regular file of that
//! size, its SHA-256 goes back in the answer, and a controller whose file hashes the same
//! answers `PutKeep`: nothing is sent and the file is kept. Otherwise the data is written to
//! a temporary file beside the destination while it is hashed, and the controller sends the
//! SHA-256 of the whole file after it (it hashes while sending, so there is no pass over the
//! file before the first byte goes out). Only when all of it has arrived, been synced and
//! matched that SHA-256 is the temporary file renamed over the destination. Any failure
//! before that leaves the old destination as it was and removes the temporary file (see
//! [`super::TempFile`]).

use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::channel::Channel;
use common::hashing_writer::{DiskPath, HashingWriter, Written};
use common::message::{Packet, PutFile, Reply, Request};
use tokio::net::TcpStream;

use super::{remove_stale_temps, resolve, with_heartbeats, TempFile};
use crate::server::Config;
use crate::session::send_within;

/// Chunks (of up to 256 KiB) queued between receiving and writing a pushed file: enough to
/// keep both busy, little enough to stay a few MiB. An agent receives one file per
/// connection at a time.
const WRITE_QUEUE_CHUNKS: usize = 8;

/// What the controller may send after `PutReady`.
enum PutPacket {
    Data(Bytes),
    End { sha256: String },
    Keep { sha256: String },
}

/// Serves one `PutFile`.
///
/// # Errors
/// A reason to drop the connection (the controller vanished or broke the protocol); a
/// failure that only concerns this file is answered with `Reply::Error` instead.
pub async fn put_file(
    channel: &mut Channel<TcpStream>,
    req: PutFile,
    config: &Config,
) -> Result<(), String> {
    let dest = destination(&config.files_dir, &req.path, &req.name);
    if let Err(message) = prepare_folder(&dest, req.mkdir) {
        return reply(channel, Reply::Error { message }, config).await;
    }
    let held_sha256 = with_heartbeats(channel, held_hash(&dest, req.size), config).await?;
    // Unless the controller may ask us to keep what we hold, reserve the file's space now:
    // a full disk is then refused before any data is sent (see `create_reserved`).
    let temp = TempFile::beside(&dest);
    let reserved = match held_sha256 {
        Some(_) => None,
        None => match reserve(temp.path(), req.size).await {
            Ok(file) => Some(file),
            Err(message) => return reply(channel, Reply::Error { message }, config).await,
        },
    };
    let ready = Reply::PutReady {
        path: display(&dest),
        held_sha256: held_sha256.clone(),
    };
    reply(channel, ready, config).await?;

    let outcome = match recv_put_packet(channel, config).await? {
        PutPacket::Keep { sha256 } => keep(&dest, held_sha256, &sha256, req.mode),
        first => {
            let file = match reserved {
                Some(file) => Ok(file),
                None => reserve(temp.path(), req.size).await,
            };
            receive_and_place(channel, temp, file, &dest, &req, first, config).await?
        }
    };
    reply(channel, outcome, config).await
}

/// Creates the temporary file with room for `size` bytes already allocated, on a blocking
/// thread (allocating a large file takes a while on some filesystems). Always awaited to
/// the end, so the file never appears after its `TempFile` guard has gone.
async fn reserve(path: &Path, size: u64) -> Result<std::fs::File, String> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || create_reserved(&path, size))
        .await
        .unwrap_or_else(|err| Err(format!("the allocating task failed: {err}")))
}

/// Creates the temporary file with room for `size` bytes already allocated.
///
/// Allocating up front (fallocate) refuses a push that cannot fit at once, with a clear
/// message, before any data is sent; and writing into allocated blocks spares the
/// filesystem from allocating while it writes back. Filesystems that cannot preallocate
/// are written to as they are.
fn create_reserved(path: &Path, size: u64) -> Result<std::fs::File, String> {
    use nix::errno::Errno;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| format!("cannot create {}: {err}", path.display()))?;
    let Ok(len) = i64::try_from(size) else {
        return Err(format!("{size} bytes is more than a file can hold"));
    };
    if len == 0 {
        return Ok(file);
    }
    let flags = nix::fcntl::FallocateFlags::empty();
    match nix::fcntl::fallocate(&file, flags, 0, len) {
        Ok(()) | Err(Errno::EOPNOTSUPP | Errno::ENOSYS) => Ok(file),
        Err(err @ (Errno::ENOSPC | Errno::EDQUOT | Errno::EFBIG)) => Err(format!(
            "not enough space for {size} bytes in {} ({}); the destination was left as it was",
            path.parent().unwrap_or(path).display(),
            err.desc(),
        )),
        Err(err) => Err(format!(
            "cannot reserve {size} bytes for {}: {err}",
            path.display()
        )),
    }
}

/// Answers a `PutKeep`: the destination stays, with the pushed mode, if it is what the
/// controller thinks it is.
fn keep(dest: &Path, held_sha256: Option<String>, asked: &str, mode: u32) -> Reply {
    // Hex is hex: another peer may send upper case.
    let asked = asked.to_ascii_lowercase();
    let Some(held) = held_sha256.filter(|held| *held == asked) else {
        return Reply::Error {
            message: format!(
                "cannot keep {}: it does not hold the content {asked}; the destination was left as it was",
                dest.display()
            ),
        };
    };
    if let Err(err) = std::fs::set_permissions(dest, std::fs::Permissions::from_mode(mode)) {
        tracing::warn!(path = %dest.display(), error = %err, "cannot set the mode of an unchanged file");
    }
    tracing::info!(path = %dest.display(), "unchanged");
    Reply::PutDone {
        path: display(dest),
        bytes: 0,
        sha256: held,
        unchanged: true,
    }
}

/// Receives the data (starting with `first`) and the closing hash into the temporary
/// file (or, if it could not be made, reads and drops them), and puts it in place if it
/// matches.
async fn receive_and_place(
    channel: &mut Channel<TcpStream>,
    temp: TempFile,
    file: Result<std::fs::File, String>,
    dest: &Path,
    req: &PutFile,
    first: PutPacket,
    config: &Config,
) -> Result<Reply, String> {
    let received = receive_into(channel, file, temp.path(), req.size, first, config).await?;
    let Received {
        file,
        sha256,
        announced,
    } = match received {
        Err(message) => return Ok(Reply::Error { message }),
        Ok(received) => received,
    };
    if sha256 != announced {
        return Ok(Reply::Error {
            message: format!(
                "checksum mismatch for {}: received data hashes to {sha256}, the controller announced {announced}; the destination was left as it was",
                dest.display(),
            ),
        });
    }
    // fsync of a large file can take a while on a slow disk: keep the controller informed
    // that we are alive meanwhile.
    let placed = with_heartbeats(channel, finish(file, temp, dest, req.mode), config).await?;
    Ok(match placed {
        Ok(()) => {
            tracing::info!(path = %dest.display(), bytes = req.size, "file written");
            Reply::PutDone {
                path: display(dest),
                bytes: req.size,
                sha256,
                unchanged: false,
            }
        }
        Err(err) => Reply::Error {
            message: format!("cannot put {} in place: {err}", dest.display()),
        },
    })
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

/// The SHA-256 of `dest` when it is a regular file of `size` bytes: a candidate for
/// keeping. Anything else (missing, another size, a link, unreadable) is `None`.
async fn held_hash(dest: &Path, size: u64) -> Option<String> {
    let is_candidate =
        std::fs::symlink_metadata(dest).is_ok_and(|meta| meta.is_file() && meta.len() == size);
    if !is_candidate {
        return None;
    }
    let dest = dest.to_owned();
    match tokio::task::spawn_blocking(move || common::digest::sha256_file(&dest)).await {
        Ok(Ok(held)) => Some(held),
        _ => None,
    }
}

/// A file received in full: the temporary file, still open for its fsync.
struct Received {
    file: std::fs::File,
    /// SHA-256 of what was written (hex).
    sha256: String,
    /// SHA-256 the controller sent after the data (hex, lower case).
    announced: String,
}

/// Receives exactly `size` bytes of file data into `file` (the temporary file at `temp`),
/// hashing them, then the controller's `PutEnd`.
///
/// The outer `Result` is the connection's (the controller broke off); the inner one is the
/// file's. After a write error (a full disk, say) the rest of the data is still read and
/// dropped, so the controller gets a clear error instead of a reset connection.
async fn receive_into(
    channel: &mut Channel<TcpStream>,
    file: Result<std::fs::File, String>,
    temp: &Path,
    size: u64,
    first: PutPacket,
    config: &Config,
) -> Result<Result<Received, String>, String> {
    // Large files go around the page cache: besides the kernel's copy, that keeps a large
    // push from evicting what the host's own services have cached.
    let disk = DiskPath::for_size(size);
    let writer =
        file.map(|file| HashingWriter::start(file, temp.to_owned(), WRITE_QUEUE_CHUNKS, disk));
    // The writer is always finished before returning, even when the controller broke off,
    // so that nothing writes to the temporary file once the caller removes it.
    let received = feed_writer(channel, writer.as_ref().ok(), size, first, config).await;
    let written = match writer {
        Ok(writer) => writer.finish().await.map_err(|err| err.to_string()),
        Err(why) => Err(why),
    };
    received.map(|announced| {
        written.map(|Written { file, sha256 }| Received {
            file,
            sha256,
            announced,
        })
    })
}

/// Receives `size` bytes of file data and queues them for the writer, then the `PutEnd`;
/// returns the SHA-256 it announced (lower case). Without a writer (the file could not be
/// made) or once it has failed, the data is still read to the end, so the connection stays
/// in step.
async fn feed_writer(
    channel: &mut Channel<TcpStream>,
    writer: Option<&HashingWriter>,
    size: u64,
    first: PutPacket,
    config: &Config,
) -> Result<String, String> {
    let mut received = 0u64;
    let mut writing = writer.is_some();
    let mut packet = first;
    loop {
        match packet {
            PutPacket::Data(chunk) => {
                received += chunk.len() as u64;
                if received > size {
                    return Err(format!(
                        "the controller sent more than the {size} bytes it announced"
                    ));
                }
                if let Some(writer) = writer.filter(|_| writing) {
                    writing = writer.write(chunk).await;
                }
            }
            PutPacket::End { sha256 } if received == size => return Ok(sha256.to_ascii_lowercase()),
            PutPacket::End { .. } => {
                return Err(format!(
                "the controller ended the file after {received} of the {size} bytes it announced"
            ))
            }
            PutPacket::Keep { .. } => {
                return Err("the controller asked to keep a file it had started to send".into())
            }
        }
        packet = recv_put_packet(channel, config).await?;
    }
}

async fn recv_put_packet(
    channel: &mut Channel<TcpStream>,
    config: &Config,
) -> Result<PutPacket, String> {
    match tokio::time::timeout(config.idle_timeout, channel.recv::<Request>()).await {
        Err(_) => Err(format!(
            "no file data for {}s",
            config.idle_timeout.as_secs()
        )),
        Ok(Err(err)) => Err(err.to_string()),
        Ok(Ok(None)) => Err("the controller closed the connection mid-file".into()),
        Ok(Ok(Some(Packet::FileData(chunk)))) => Ok(PutPacket::Data(chunk)),
        Ok(Ok(Some(Packet::Control(Request::PutEnd { sha256 })))) => Ok(PutPacket::End { sha256 }),
        Ok(Ok(Some(Packet::Control(Request::PutKeep { sha256 })))) => {
            Ok(PutPacket::Keep { sha256 })
        }
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
