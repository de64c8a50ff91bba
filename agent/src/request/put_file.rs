//! `put_file`: receiving one pushed file. How the file is written and put in place is
//! `common::atomic_file`'s (shared with `ctl pull`); this module owns the conversation
//! around it and what the agent decides: keeping what it holds, reserving room early,
//! checking the announced SHA-256.
//!
//! A file is announced with its size. If the destination is already a regular file of that
//! size, its SHA-256 goes back in the answer, and a controller whose file hashes the same
//! answers `PutKeep`: nothing is sent and the file is kept. Otherwise the data is written to
//! a temporary file beside the destination while it is hashed, and the controller sends the
//! SHA-256 of the whole file after it (it hashes while sending, so there is no pass over the
//! file before the first byte goes out). Only when all of it has arrived, matched that
//! SHA-256 and been synced is the temporary file renamed over the destination. Any failure
//! before that leaves the old destination as it was and removes the temporary file.
//!
//! The destination's folder is opened once (`paths::destination`, no link followed) and
//! everything happens on descriptors: the file held there is opened with `O_NOFOLLOW`,
//! hashed through that descriptor, and on a `PutKeep` given its mode with `fchmod` on that
//! same descriptor, so a link planted at the destination is never hashed, chmodded or
//! written through (it is replaced like any other entry). A push whose mode has setuid or
//! setgid bits never keeps what the host holds: such a file is always written afresh into
//! a temporary file only the agent can write, so the bits cannot land on content someone
//! changed after it was hashed.

use std::fs::File;
use std::path::Path;

use bytes::Bytes;
use common::atomic_file::{ReceivedFile, Receiving};
use common::channel::RecvError;
use common::folder::{Child, Folder};
use common::hashing_writer::DiskPath;
use common::message::{self, Packet, Reply, Request};

use super::paths::{destination, display, remove_stale, Target};
use super::with_heartbeats;
use crate::config::Config;
use crate::connection::Connection;
use crate::error::{ConnectionError, Refusal, RequestError};

/// Chunks (of up to 256 KiB) queued between receiving and writing a pushed file: enough to
/// keep both busy, little enough to stay a few MiB. An agent receives one file per
/// connection at a time.
const WRITE_QUEUE_CHUNKS: usize = 8;

/// A `put_file` request.
#[derive(Debug)]
pub struct PutFile(pub message::PutFile);

/// Mode bits that make a program run as its owner or group.
pub const SET_ID_BITS: u32 = 0o6000;

/// The regular file at the destination, open, and its SHA-256.
struct Held {
    file: File,
    sha256: String,
}

/// What the controller may send after `PutReady`.
enum PutPacket {
    Data(Bytes),
    End { sha256: String },
    Keep { sha256: String },
}

impl PutFile {
    /// Answers `PutReady`, receives the file (or the request to keep what is there) and
    /// returns the `PutDone`.
    ///
    /// # Errors
    /// A refusal for a failure that only concerns this file; a [`ConnectionError`] when the
    /// controller vanished or broke the protocol.
    pub async fn apply(
        self,
        channel: &mut Connection,
        config: &Config,
    ) -> Result<Reply, RequestError> {
        let req = self.0;
        let target = destination(&config.files_dir, &req.path, &req.name, req.mkdir)?;
        remove_stale(&target);
        let dest = target.path();
        let held = match req.mode & SET_ID_BITS {
            0 => {
                let hashing = held_file(&target.folder, &target.name, req.size);
                with_heartbeats(channel, hashing, config.idle_timeout).await?
            }
            _ => None,
        };
        let held_sha256 = held.as_ref().map(|held| held.sha256.clone());
        // Unless the controller may ask us to keep what we hold, reserve the file's space now:
        // a full disk is then refused before any data is sent.
        let reserved = match held {
            Some(_) => None,
            None => Some(reserve(&target, req.size).await?),
        };
        let ready = Reply::PutReady {
            path: display(&dest),
            held_sha256,
        };
        channel
            .send_within(&Packet::Control(ready), config.idle_timeout)
            .await?;

        match recv_put_packet(channel, config).await? {
            PutPacket::Keep { sha256 } => Ok(keep(&dest, held, &sha256, req.mode)?),
            first => {
                let file = match reserved {
                    Some(file) => Ok(file),
                    None => reserve(&target, req.size).await,
                };
                receive_and_place(channel, file, &dest, &req, first, config).await
            }
        }
    }
}

/// Creates the temporary file with room for `size` bytes already allocated, on a blocking
/// thread (allocating a large file takes a while on some file systems).
async fn reserve(target: &Target, size: u64) -> Result<ReceivedFile, Refusal> {
    let folder = target.folder.try_clone().map_err(|source| Refusal::Open {
        path: target.path(),
        source,
    })?;
    let name = target.name.clone();
    let reserved = tokio::task::spawn_blocking(move || {
        let file = ReceivedFile::create(&folder, &name)?;
        file.reserve(size)?;
        Ok(file)
    });
    reserved
        .await
        .unwrap_or_else(|err| Err(Refusal::AllocatingTask(err)))
}

/// Answers a `PutKeep`: the destination stays, with the pushed mode, if it is what the
/// controller thinks it is.
fn keep(dest: &Path, held: Option<Held>, asked: &str, mode: u32) -> Result<Reply, Refusal> {
    // Hex is hex: another peer may send upper case.
    let asked = asked.to_ascii_lowercase();
    let Some(Held { file, sha256: held }) = held.filter(|held| held.sha256 == asked) else {
        return Err(Refusal::CannotKeep {
            path: dest.to_owned(),
            asked,
        });
    };
    // The very file that was hashed, through its descriptor: never a path looked up again.
    if let Err(err) = rustix::fs::fchmod(&file, rustix::fs::Mode::from_raw_mode(mode)) {
        tracing::warn!(path = %dest.display(), error = %err, "cannot set the mode of an unchanged file");
    }
    tracing::info!(path = %dest.display(), "unchanged");
    Ok(Reply::PutDone {
        path: display(dest),
        bytes: 0,
        sha256: held,
        unchanged: true,
    })
}

/// Receives the data (starting with `first`) and the closing hash into the temporary
/// file (or, if it could not be made, reads and drops them), and puts it in place if it
/// matches.
async fn receive_and_place(
    channel: &mut Connection,
    file: Result<ReceivedFile, Refusal>,
    dest: &Path,
    req: &message::PutFile,
    first: PutPacket,
    config: &Config,
) -> Result<Reply, RequestError> {
    // Large files go around the page cache: besides the kernel's copy, that keeps a large
    // push from evicting what the host's own services have cached.
    let disk = DiskPath::for_size(req.size);
    let receiving = file.map(|file| file.start_writing(WRITE_QUEUE_CHUNKS, disk));
    // The writer is always finished before returning, even when the controller broke off,
    // so that nothing writes to the temporary file once it is removed.
    let announced = feed_writer(channel, receiving.as_ref().ok(), req.size, first, config).await;
    let complete = match receiving {
        Ok(receiving) => receiving.finish().await.map_err(Refusal::from),
        Err(refusal) => Err(refusal),
    };
    let announced = announced?;
    let complete = complete?;
    if complete.sha256() != announced {
        return Err(Refusal::ChecksumMismatch {
            path: dest.to_owned(),
            received: complete.sha256().to_owned(),
            announced,
        }
        .into());
    }
    let sha256 = complete.sha256().to_owned();
    // fsync of a large file can take a while on a slow disk: keep the controller informed
    // that we are alive meanwhile.
    with_heartbeats(channel, complete.place(req.mode), config.idle_timeout).await??;
    tracing::info!(path = %dest.display(), bytes = req.size, "file written");
    Ok(Reply::PutDone {
        path: display(dest),
        bytes: req.size,
        sha256,
        unchanged: false,
    })
}

/// The file `name` in `folder`, open, with its SHA-256, when it is a regular file of `size`
/// bytes: a candidate for keeping. Anything else (missing, another size, a link, unreadable)
/// is `None`. Opened with `O_NOFOLLOW` and hashed through that descriptor.
async fn held_file(folder: &Folder, name: &std::ffi::OsStr, size: u64) -> Option<Held> {
    let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK;
    let Ok(Child::Open(fd)) = folder.open_child(name, flags) else {
        return None;
    };
    let file = File::from(fd);
    let is_candidate = file
        .metadata()
        .is_ok_and(|meta| meta.is_file() && meta.len() == size);
    if !is_candidate {
        return None;
    }
    tokio::task::spawn_blocking(move || {
        let sha256 = common::digest::sha256_read(&file).ok()?;
        Some(Held { file, sha256 })
    })
    .await
    .ok()
    .flatten()
}

/// Receives `size` bytes of file data and queues them for the writer, then the `PutEnd`;
/// returns the SHA-256 it announced (lower case). Without a writer (the file could not be
/// made) or once it has failed, the data is still read to the end, so the connection stays
/// in step and the controller gets a clear error instead of a reset connection.
async fn feed_writer(
    channel: &mut Connection,
    writer: Option<&Receiving>,
    size: u64,
    first: PutPacket,
    config: &Config,
) -> Result<String, ConnectionError> {
    let mut received = 0u64;
    let mut writing = writer.is_some();
    let mut packet = first;
    loop {
        match packet {
            PutPacket::Data(chunk) => {
                received += chunk.len() as u64;
                if received > size {
                    return Err(ConnectionError::TooMuchData { size });
                }
                if let Some(writer) = writer.filter(|_| writing) {
                    writing = writer.write(chunk).await;
                }
            }
            PutPacket::End { sha256 } if received == size => return Ok(sha256.to_ascii_lowercase()),
            PutPacket::End { .. } => return Err(ConnectionError::EndedEarly { received, size }),
            PutPacket::Keep { .. } => return Err(ConnectionError::KeepAfterData),
        }
        packet = recv_put_packet(channel, config).await?;
    }
}

async fn recv_put_packet(
    channel: &mut Connection,
    config: &Config,
) -> Result<PutPacket, ConnectionError> {
    match channel.recv_within::<Request>(config.idle_timeout).await {
        Ok(Packet::FileData(chunk)) => Ok(PutPacket::Data(chunk)),
        Ok(Packet::Control(Request::PutEnd { sha256 })) => Ok(PutPacket::End { sha256 }),
        Ok(Packet::Control(Request::PutKeep { sha256 })) => Ok(PutPacket::Keep { sha256 }),
        Ok(other) => Err(ConnectionError::ExpectedFileData(other.summary())),
        Err(RecvError::Idle(limit)) => Err(ConnectionError::NoFileData(limit)),
        Err(RecvError::Closed) => Err(ConnectionError::ClosedMidFile),
        Err(RecvError::Failed(err)) => Err(err.into()),
    }
}
