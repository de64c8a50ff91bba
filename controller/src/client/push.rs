//! Push to one host: create the root (file or folder), then every entry below it, each file
//! announced with its size and its data streamed, followed by its SHA-256, unless the agent
//! holds the same content already.
//!
//! Every host's task reads the source files itself, chunk by chunk, at its own pace: a slow
//! host slows only its own reads, and no chunk is buffered for a host that is behind. The
//! readers share one SHA-256 per file ([`SourceHash`](crate::source_hash::SourceHash)):
//! whichever is furthest ahead hashes, so a file is hashed once per push, while it is sent,
//! whatever the number of hosts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::channel::Channel;
use common::chunk_reader::ChunkReader;
use common::message::{EntryKind, Packet, PutFile, Reply, Request};

use super::{next_reply, Connector, Failure, Stop, Stream};
use crate::inventory::Host;
use crate::local_tree::{LocalEntry, LocalTree};
use crate::outcome::{HostOutcome, Status};
use crate::transfer_progress::TransferProgress;

/// Chunks (of up to 256 KiB) a host's reader may be ahead of its sender.
const READ_AHEAD_CHUNKS: usize = 4;

/// What every host receives.
pub struct PushJob {
    pub tree: LocalTree,
    /// The destination as the operator gave it (or the source's name).
    pub dest: String,
    pub mkdir: bool,
}

/// How one entry went: changed (with bytes sent) or already identical.
enum Sent {
    Changed(u64),
    Unchanged,
}

/// Pushes the whole tree to one host.
pub async fn push(
    connector: &Connector,
    host: &Host,
    job: Arc<PushJob>,
    progress: Arc<TransferProgress>,
    stop: &Stop,
) -> HostOutcome {
    let started = Instant::now();
    // Nothing goes with the handshake: push_entry sends each entry's request and reads its
    // answer together, and one round trip per push is noise next to the data.
    let (mut channel, host_key) = match connector
        .connect_unless_stopped(host, stop, started, None)
        .await
    {
        Ok(connected) => connected,
        Err(outcome) => return outcome,
    };
    push_tree(&mut channel, connector, &job, &progress, stop, started)
        .await
        .with_host_key(host_key)
}

/// Sends every entry of the tree over `channel`, then restores the folders' modes.
async fn push_tree(
    channel: &mut Channel<Stream>,
    connector: &Connector,
    job: &PushJob,
    progress: &TransferProgress,
    stop: &Stop,
    started: Instant,
) -> HostOutcome {
    let mut remote_root = String::new();
    let (mut bytes, mut changed) = (0u64, false);
    for entry in &job.tree.entries {
        let sent = tokio::select! {
            _ = stop.cancel.cancelled() => {
                // Dropping the connection makes the agent discard the temporary file: the
                // destination keeps its old content.
                return HostOutcome::failure(Status::Cancelled, "cancelled; the file being written was discarded", started.elapsed());
            }
            sent = push_entry(channel, job, entry, &mut remote_root, progress, connector.silence_timeout) => sent,
        };
        match sent {
            Ok(Sent::Changed(n)) => {
                bytes += n;
                changed = true;
            }
            Ok(Sent::Unchanged) => {}
            Err(outcome) => return outcome.at(started),
        }
    }
    if let Err(failure) =
        restore_dir_modes(channel, job, &remote_root, connector.silence_timeout).await
    {
        return failure.at(started);
    }
    let status = if changed {
        Status::Ok
    } else {
        Status::Unchanged
    };
    HostOutcome {
        status,
        bytes,
        sha256: job.tree.single_file_sha256(),
        path: Some(remote_root),
        ..HostOutcome::succeeded(started.elapsed())
    }
}

async fn push_entry(
    channel: &mut Channel<Stream>,
    job: &PushJob,
    entry: &LocalEntry,
    remote_root: &mut String,
    progress: &TransferProgress,
    silence: Duration,
) -> Result<Sent, Failure> {
    let is_root = entry.rel.is_empty();
    // The root goes where the operator said (and into it, if it is a directory there);
    // everything else goes below wherever the agent put the root.
    let (path, name, mkdir) = match is_root {
        true => (job.dest.clone(), job.tree.name.clone(), job.mkdir),
        false => (format!("{remote_root}/{}", entry.rel), String::new(), false),
    };
    let request = match entry.kind {
        // The owner keeps full access until everything below is in place (a read-only
        // source folder would otherwise refuse its own contents); see restore_dir_modes.
        EntryKind::Dir => Request::MakeDir {
            path,
            name,
            mode: entry.mode | 0o700,
            mkdir,
        },
        EntryKind::Symlink => Request::MakeSymlink {
            path,
            target: entry.target.clone().unwrap_or_default(),
        },
        EntryKind::File => Request::PutFile(PutFile {
            path,
            name,
            size: entry.size,
            mode: entry.mode,
            mkdir,
        }),
    };
    channel
        .send_within(&Packet::Control(request), silence)
        .await?;
    match next_reply(channel, silence).await? {
        Reply::Made { path, created } => {
            if is_root {
                *remote_root = path;
            }
            Ok(if created {
                Sent::Changed(0)
            } else {
                Sent::Unchanged
            })
        }
        Reply::PutReady { path, held_sha256 } => {
            if is_root {
                *remote_root = path;
            }
            put_data(channel, entry, held_sha256, progress, silence).await
        }
        other => Err(unexpected(other)),
    }
}

/// After `PutReady`: asks the agent to keep what it holds if that is our content, or sends
/// the data and its SHA-256; then checks the agent's `PutDone`.
async fn put_data(
    channel: &mut Channel<Stream>,
    entry: &LocalEntry,
    held_sha256: Option<String>,
    progress: &TransferProgress,
    silence: Duration,
) -> Result<Sent, Failure> {
    let kept = match held_sha256 {
        Some(held) if whole_hash(entry).await? == held.to_ascii_lowercase() => {
            let keep = Request::PutKeep { sha256: held };
            channel.send_within(&Packet::Control(keep), silence).await?;
            progress.advance(entry.size);
            true
        }
        _ => {
            send_file(channel, entry, progress, silence).await?;
            let sha256 = entry
                .hash
                .result()
                .expect("every byte was read, so every byte was hashed");
            channel
                .send_within(&Packet::Control(Request::PutEnd { sha256 }), silence)
                .await?;
            false
        }
    };
    let ours = entry.hash.result();
    match next_reply(channel, silence).await? {
        Reply::PutDone { sha256, .. } if Some(&sha256) != ours.as_ref() => {
            Err(Failure::refused(format!(
                "the agent holds data hashing to {sha256}, expected {}",
                ours.unwrap_or_default()
            )))
        }
        Reply::PutDone { .. } if kept => Ok(Sent::Unchanged),
        Reply::PutDone { bytes, .. } => Ok(Sent::Changed(bytes)),
        other => Err(unexpected(other)),
    }
}

/// The SHA-256 of the whole file, for comparing with the copy an agent holds: what the
/// senders have not hashed yet is read here, on a blocking thread.
async fn whole_hash(entry: &LocalEntry) -> Result<String, Failure> {
    let (hash, path) = (entry.hash.clone(), entry.path.clone());
    match tokio::task::spawn_blocking(move || hash.complete(&path)).await {
        Ok(Ok(sha256)) => Ok(sha256),
        Ok(Err(err)) => Err(Failure::broken(format!(
            "cannot read {}: {err}",
            entry.path.display()
        ))),
        Err(err) => Err(Failure::broken(format!("the hashing task failed: {err}"))),
    }
}

/// Gives folders whose mode withholds access from their owner that mode, deepest first,
/// now that everything below them is written.
async fn restore_dir_modes(
    channel: &mut Channel<Stream>,
    job: &PushJob,
    remote_root: &str,
    silence: Duration,
) -> Result<(), Failure> {
    let closed = job
        .tree
        .entries
        .iter()
        .rev()
        .filter(|e| e.kind == EntryKind::Dir && e.mode & 0o700 != 0o700);
    for entry in closed {
        let path = match entry.rel.is_empty() {
            true => remote_root.to_owned(),
            false => format!("{remote_root}/{}", entry.rel),
        };
        let request = Request::MakeDir {
            path,
            name: String::new(),
            mode: entry.mode,
            mkdir: false,
        };
        channel
            .send_within(&Packet::Control(request), silence)
            .await?;
        match next_reply(channel, silence).await? {
            Reply::Made { .. } => {}
            other => return Err(unexpected(other)),
        }
    }
    Ok(())
}

/// Streams exactly `entry.size` bytes of the file. If the file shrank since it was listed,
/// the push of this host is abandoned (the agent discards what it got).
///
/// A blocking thread reads (and, when it is the furthest reader, hashes) a few chunks ahead
/// while this task encrypts and sends the previous ones, so reading, hashing and sending
/// overlap.
async fn send_file(
    channel: &mut Channel<Stream>,
    entry: &LocalEntry,
    progress: &TransferProgress,
    silence: Duration,
) -> Result<(), Failure> {
    let hash = entry.hash.clone();
    let observer = move |offset: u64, chunk: &[u8]| hash.observe(offset, chunk);
    let mut reader =
        ChunkReader::start(entry.path.clone(), entry.size, READ_AHEAD_CHUNKS, observer);
    while let Some(chunk) = reader.next().await {
        let n = chunk.len() as u64;
        channel
            .send_within(&Packet::<Request>::FileData(chunk), silence)
            .await?;
        progress.advance(n);
    }
    // The observer has fed the shared hash; nothing more to take from it.
    reader.finish().await.map(drop).map_err(Failure::broken)
}

fn unexpected(reply: Reply) -> Failure {
    Failure::broken(format!(
        "unexpected reply {}",
        Packet::Control(reply).summary()
    ))
}
