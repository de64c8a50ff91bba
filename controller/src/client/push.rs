//! Push to one host: create the root (file or folder), then every entry below it, each file
//! announced with its size and SHA-256 and its data streamed only when the agent does not
//! hold it already.
//!
//! Every host's task reads the source files itself, chunk by chunk, at its own pace: a slow
//! host slows only its own reads, and no chunk is buffered for a host that is behind. The
//! files were hashed just before (see `local_tree`), so these reads come from the page cache.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::channel::Channel;
use common::frame::MAX_DATA_CHUNK;
use common::inventory::Host;
use common::message::{EntryKind, Packet, Reply, Request};
use tokio::net::TcpStream;

use super::{next_reply, Connector, Failure, Stop};
use crate::local_tree::{LocalEntry, LocalTree};
use crate::outcome::{HostOutcome, Status};
use crate::progress::Progress;

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
    progress: Arc<Progress>,
    stop: &Stop,
) -> HostOutcome {
    let started = Instant::now();
    let mut channel = match connector.connect_unless_stopped(host, stop, started).await {
        Ok(channel) => channel,
        Err(outcome) => return outcome,
    };
    let mut remote_root = String::new();
    let (mut bytes, mut changed) = (0u64, false);
    for entry in &job.tree.entries {
        let sent = tokio::select! {
            _ = stop.cancel.cancelled() => {
                // Dropping the connection makes the agent discard the temporary file: the
                // destination keeps its old content.
                return HostOutcome::failure(Status::Cancelled, "cancelled; the file being written was discarded", started.elapsed());
            }
            sent = push_entry(&mut channel, &job, entry, &mut remote_root, &progress, connector.silence_timeout) => sent,
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
        restore_dir_modes(&mut channel, &job, &remote_root, connector.silence_timeout).await
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
        sha256: job.tree.single_file_sha256().map(str::to_owned),
        path: Some(remote_root),
        ..HostOutcome::succeeded(started.elapsed())
    }
}

async fn push_entry(
    channel: &mut Channel<TcpStream>,
    job: &PushJob,
    entry: &LocalEntry,
    remote_root: &mut String,
    progress: &Progress,
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
        EntryKind::File => Request::PutFile {
            path,
            name,
            size: entry.size,
            mode: entry.mode,
            sha256: entry.sha256.clone(),
            mkdir,
        },
    };
    send_within(channel, &Packet::Control(request), silence).await?;
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
        Reply::PutReady { path, unchanged } => {
            if is_root {
                *remote_root = path;
            }
            if unchanged {
                progress.advance(entry.size);
                return Ok(Sent::Unchanged);
            }
            send_file(channel, entry, progress, silence).await?;
            match next_reply(channel, silence).await? {
                Reply::PutDone { sha256, bytes, .. } if sha256 == entry.sha256 => {
                    Ok(Sent::Changed(bytes))
                }
                Reply::PutDone { sha256, .. } => Err(Failure::refused(format!(
                    "the agent wrote data hashing to {sha256}, expected {}",
                    entry.sha256
                ))),
                other => Err(unexpected(other)),
            }
        }
        other => Err(unexpected(other)),
    }
}

/// Gives folders whose mode withholds access from their owner that mode, deepest first,
/// now that everything below them is written.
async fn restore_dir_modes(
    channel: &mut Channel<TcpStream>,
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
        send_within(channel, &Packet::Control(request), silence).await?;
        match next_reply(channel, silence).await? {
            Reply::Made { .. } => {}
            other => return Err(unexpected(other)),
        }
    }
    Ok(())
}

/// Streams exactly `entry.size` bytes of the file. If the file changed size since it was
/// hashed, the push of this host is abandoned (the agent discards what it got).
///
/// A blocking thread reads ahead a few chunks while this task tags and sends the previous
/// ones, so disk (or page cache) reads and the channel's HMAC overlap.
async fn send_file(
    channel: &mut Channel<TcpStream>,
    entry: &LocalEntry,
    progress: &Progress,
    silence: Duration,
) -> Result<(), Failure> {
    let (chunks, mut queue) = tokio::sync::mpsc::channel(READ_AHEAD_CHUNKS);
    let (path, size) = (entry.path.clone(), entry.size);
    let reader = tokio::task::spawn_blocking(move || read_chunks(&path, size, &chunks));
    while let Some(chunk) = queue.recv().await {
        let n = chunk.len() as u64;
        send_within(channel, &Packet::FileData(chunk), silence).await?;
        progress.advance(n);
    }
    match reader.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(Failure::broken(why)),
        Err(err) => Err(Failure::broken(format!("the reader task failed: {err}"))),
    }
}

/// Reads `size` bytes of `path` in chunks into `chunks`; stops early, with the reason, if
/// the file cannot be read or is shorter than it was.
fn read_chunks(
    path: &Path,
    size: u64,
    chunks: &tokio::sync::mpsc::Sender<bytes::Bytes>,
) -> Result<(), String> {
    let cannot_read = |err: std::io::Error| format!("cannot read {}: {err}", path.display());
    let mut file = std::fs::File::open(path).map_err(cannot_read)?;
    let mut left = size;
    while left > 0 {
        let want = left.min(MAX_DATA_CHUNK as u64) as usize;
        let mut buf = BytesMut::zeroed(want);
        let n = file.read(&mut buf).map_err(cannot_read)?;
        if n == 0 {
            return Err(format!(
                "{} shrank while it was being pushed",
                path.display()
            ));
        }
        buf.truncate(n);
        left -= n as u64;
        if chunks.blocking_send(buf.freeze()).is_err() {
            // The sender gave up (the connection failed); it reports why.
            return Ok(());
        }
    }
    Ok(())
}

/// Sends one packet, giving up when the agent has taken nothing for `silence`.
async fn send_within(
    channel: &mut Channel<TcpStream>,
    packet: &Packet<Request>,
    silence: Duration,
) -> Result<(), Failure> {
    match tokio::time::timeout(silence, channel.send(packet)).await {
        Err(_) => Err(Failure::broken(format!(
            "the agent took no data for {}s: host or path lost",
            silence.as_secs()
        ))),
        Ok(result) => result.map_err(Failure::broken),
    }
}

fn unexpected(reply: Reply) -> Failure {
    Failure::broken(format!(
        "unexpected reply {}",
        Packet::Control(reply).summary()
    ))
}
