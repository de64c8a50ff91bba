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

use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::atomic_file::{set_file_mode, ReceivedFile, Receiving};
use common::channel::{Channel, RecvError};
use common::hashing_writer::DiskPath;
use common::message::{self, Packet, Reply, Request};
use tokio::net::TcpStream;

use super::paths::{destination, display, prepare_folder};
use super::with_heartbeats;
use crate::config::Config;
use crate::error::{ConnectionError, Refusal, RequestError};

/// Chunks (of up to 256 KiB) queued between receiving and writing a pushed file: enough to
/// keep both busy, little enough to stay a few MiB. An agent receives one file per
/// connection at a time.
const WRITE_QUEUE_CHUNKS: usize = 8;

/// A `put_file` request.
#[derive(Debug)]
pub struct PutFile(pub message::PutFile);

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
        channel: &mut Channel<TcpStream>,
        config: &Config,
    ) -> Result<Reply, RequestError> {
        let req = self.0;
        let dest = destination(&config.files_dir, &req.path, &req.name);
        prepare_folder(&dest, req.mkdir)?;
        let held_sha256 =
            with_heartbeats(channel, held_hash(&dest, req.size), config.idle_timeout).await?;
        // Unless the controller may ask us to keep what we hold, reserve the file's space now:
        // a full disk is then refused before any data is sent.
        let reserved = match held_sha256 {
            Some(_) => None,
            None => Some(reserve(&dest, req.size).await?),
        };
        let ready = Reply::PutReady {
            path: display(&dest),
            held_sha256: held_sha256.clone(),
        };
        channel
            .send_within(&Packet::Control(ready), config.idle_timeout)
            .await?;

        match recv_put_packet(channel, config).await? {
            PutPacket::Keep { sha256 } => Ok(keep(&dest, held_sha256, &sha256, req.mode)?),
            first => {
                let file = match reserved {
                    Some(file) => Ok(file),
                    None => reserve(&dest, req.size).await,
                };
                receive_and_place(channel, file, &dest, &req, first, config).await
            }
        }
    }
}

/// Creates the temporary file with room for `size` bytes already allocated, on a blocking
/// thread (allocating a large file takes a while on some file systems).
async fn reserve(dest: &Path, size: u64) -> Result<ReceivedFile, Refusal> {
    let dest = dest.to_owned();
    let reserved = tokio::task::spawn_blocking(move || {
        let file = ReceivedFile::create(&dest)?;
        file.reserve(size)?;
        Ok(file)
    });
    reserved
        .await
        .unwrap_or_else(|err| Err(Refusal::AllocatingTask(err)))
}

/// Answers a `PutKeep`: the destination stays, with the pushed mode, if it is what the
/// controller thinks it is.
fn keep(
    dest: &Path,
    held_sha256: Option<String>,
    asked: &str,
    mode: u32,
) -> Result<Reply, Refusal> {
    // Hex is hex: another peer may send upper case.
    let asked = asked.to_ascii_lowercase();
    let Some(held) = held_sha256.filter(|held| *held == asked) else {
        return Err(Refusal::CannotKeep {
            path: dest.to_owned(),
            asked,
        });
    };
    if let Err(err) = set_file_mode(dest, mode) {
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
    channel: &mut Channel<TcpStream>,
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

/// The SHA-256 of `dest` when it is a regular file of `size` bytes: a candidate for
/// keeping. Anything else (missing, another size, a link, unreadable) is `None`.
async fn held_hash(dest: &Path, size: u64) -> Option<String> {
    let is_candidate =
        std::fs::symlink_metadata(dest).is_ok_and(|meta| meta.is_file() && meta.len() == size);
    if !is_candidate {
        return None;
    }
    let dest: PathBuf = dest.to_owned();
    match tokio::task::spawn_blocking(move || common::digest::sha256_file(&dest)).await {
        Ok(Ok(held)) => Some(held),
        _ => None,
    }
}

/// Receives `size` bytes of file data and queues them for the writer, then the `PutEnd`;
/// returns the SHA-256 it announced (lower case). Without a writer (the file could not be
/// made) or once it has failed, the data is still read to the end, so the connection stays
/// in step and the controller gets a clear error instead of a reset connection.
async fn feed_writer(
    channel: &mut Channel<TcpStream>,
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
    channel: &mut Channel<TcpStream>,
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
