//! Pull from one host: ask for a file or tree and write what comes back below this host's
//! own local folder, each file atomically and checked against the agent's SHA-256.
//!
//! Nothing from the wire is trusted to name a local path: every entry path must be plain
//! names (no `..`, no root, no empty parts), and no folder on the way may be a link, so a
//! hostile or broken agent cannot make us write outside `DEST/<host>/`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::atomic_file::{place_symlink, ReceiveError, ReceivedFile, Receiving};
use common::channel::Channel;
use common::hashing_writer::DiskPath;
use common::message::{EntryKind, Packet, Reply, Request};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::{lost, next_reply, Connector, Failure, Stop};
use crate::inventory::Host;
use crate::outcome::{HostOutcome, Status};
use crate::transfer_progress::TransferProgress;

/// Chunks (of up to 256 KiB) queued per host between receiving and writing a pulled file.
/// ctl receives from every host at once, so this is memory per host (about 1 MiB with the
/// chunk being received and the one being written); the hosts, not a deep queue, keep both
/// cores busy.
const WRITE_QUEUE_CHUNKS: usize = 2;

/// Large pulled files written around the page cache at once ([`DiskPath::Direct`]). That
/// takes two 1 MiB blocks per file, so memory stays within 32 MiB whatever the number of
/// hosts; further files go through the page cache.
const DIRECT_WRITERS: usize = 16;
static DIRECT_WRITE_SLOTS: Semaphore = Semaphore::const_new(DIRECT_WRITERS);

/// Pulls `remote` from one host into `local_base` (that host's own folder).
pub async fn pull(
    connector: &Connector,
    host: &Host,
    remote: &str,
    recursive: bool,
    local_base: PathBuf,
    progress: Arc<TransferProgress>,
    stop: &Stop,
) -> HostOutcome {
    let started = Instant::now();
    let get = Request::Get {
        path: remote.to_owned(),
        recursive,
    };
    let connected =
        connector.connect_unless_stopped(host, stop, started, Some(Packet::Control(get)));
    let mut channel = match connected.await {
        Ok(channel) => channel,
        Err(outcome) => return outcome,
    };
    let received = tokio::select! {
        _ = stop.cancel.cancelled() => Err(Failure::new(Status::Cancelled, "cancelled; the file being written was discarded")),
        received = receive_all(&mut channel, &local_base, &progress, connector.silence_timeout) => received,
    };
    match received {
        Ok(Received {
            bytes,
            sha256,
            root,
        }) => HostOutcome {
            bytes,
            sha256,
            path: root.map(|root| root.display().to_string()),
            ..HostOutcome::succeeded(started.elapsed())
        },
        Err(failure) => HostOutcome::failure(failure.status, failure.error, started.elapsed()),
    }
}

struct Received {
    bytes: u64,
    /// The SHA-256 of the pulled file, when a single file was pulled.
    sha256: Option<String>,
    root: Option<PathBuf>,
}

/// Receives everything the agent sends in answer to the `Get` that went with the handshake.
async fn receive_all(
    channel: &mut Channel<TcpStream>,
    local_base: &Path,
    progress: &TransferProgress,
    silence: Duration,
) -> Result<Received, Failure> {
    let mut received = Received {
        bytes: 0,
        sha256: None,
        root: None,
    };
    let mut files = 0u64;
    loop {
        let (path, kind, mode, size, target) = match next_reply(channel, silence).await? {
            Reply::Entry {
                path,
                kind,
                mode,
                size,
                target,
            } => (path, kind, mode, size, target),
            Reply::GetDone { .. } => {
                if files != 1 {
                    received.sha256 = None;
                }
                return Ok(received);
            }
            other => {
                return Err(Failure::broken(format!(
                    "unexpected reply {}",
                    Packet::Control(other).summary()
                )))
            }
        };
        if received.root.is_none() {
            // Made only once there is something to put in it: a host that fails leaves no
            // empty folder behind.
            std::fs::create_dir_all(local_base).map_err(|err| {
                Failure::refused(format!("cannot create {}: {err}", local_base.display()))
            })?;
        }
        let local = safe_local_path(local_base, &path).ok_or_else(|| {
            Failure::broken(format!("the agent sent the unsafe path {path:?}; refused"))
        })?;
        received.root.get_or_insert_with(|| local.clone());
        match kind {
            EntryKind::Dir => make_dir(&local, mode)?,
            EntryKind::Symlink => make_link(&local, target.as_deref().unwrap_or_default())?,
            EntryKind::File => {
                progress.grow(size);
                let sha256 = receive_file(channel, &local, mode, size, progress, silence).await?;
                received.bytes += size;
                received.sha256 = Some(sha256);
                files += 1;
            }
        }
    }
}

/// Receives one file's data into a temporary file, checks it against the agent's hash and
/// puts it in place (`common::atomic_file`).
async fn receive_file(
    channel: &mut Channel<TcpStream>,
    local: &Path,
    mode: u32,
    size: u64,
    progress: &TransferProgress,
    silence: Duration,
) -> Result<String, Failure> {
    let failed = |err: ReceiveError| {
        Failure::refused(format!(
            "cannot write {}: {}",
            local.display(),
            err.reason()
        ))
    };
    let file = ReceivedFile::create(local).map_err(failed)?;
    // Held until the writer has finished.
    let direct_slot = (DiskPath::for_size(size) == DiskPath::Direct)
        .then(|| DIRECT_WRITE_SLOTS.try_acquire().ok())
        .flatten();
    let disk = if direct_slot.is_some() {
        DiskPath::Direct
    } else {
        DiskPath::PageCache
    };
    let receiving = file.start_writing(WRITE_QUEUE_CHUNKS, disk);
    // The writer is finished even when the transfer broke off, so that nothing writes to
    // the temporary file once it is removed.
    let received = receive_data(channel, &receiving, size, progress, silence).await;
    let complete = receiving.finish().await.map_err(failed);
    drop(direct_slot);
    received?;
    let complete = complete?;
    let ours = complete.sha256().to_owned();
    match next_reply(channel, silence).await? {
        Reply::EntryEnd { sha256 } if sha256 == ours => {}
        Reply::EntryEnd { sha256 } => {
            return Err(Failure::broken(format!(
                "checksum mismatch for {}: received {ours}, the agent read {sha256}",
                local.display()
            )))
        }
        other => {
            return Err(Failure::broken(format!(
                "unexpected reply {}",
                Packet::Control(other).summary()
            )))
        }
    }
    complete.place(local_mode(mode)).await.map_err(failed)?;
    Ok(ours)
}

/// Receives `size` bytes of file data and queues them for `writer`; stops at the first
/// write that fails (the writer's `finish` says why).
async fn receive_data(
    channel: &mut Channel<TcpStream>,
    writer: &Receiving,
    size: u64,
    progress: &TransferProgress,
    silence: Duration,
) -> Result<(), Failure> {
    let mut left = size;
    while left > 0 {
        let chunk = match channel.recv_within::<Reply>(silence).await {
            Ok(Packet::FileData(chunk)) => chunk,
            Ok(Packet::Control(Reply::Error { message })) => return Err(Failure::refused(message)),
            Ok(other) => {
                return Err(Failure::broken(format!(
                    "expected file data, got {}",
                    other.summary()
                )))
            }
            Err(err) => return Err(lost(err, "mid-file")),
        };
        let n = chunk.len() as u64;
        if n > left {
            return Err(Failure::broken(
                "the agent sent more data than it announced",
            ));
        }
        left -= n;
        if !writer.write(chunk).await {
            // The writer failed; its error is the one to report.
            return Ok(());
        }
        progress.advance(n);
    }
    Ok(())
}

fn make_dir(local: &Path, mode: u32) -> Result<(), Failure> {
    // A link (or file) at this very path, planted by an earlier entry, must not be
    // followed: creating or chmod-ing "through" it would touch something outside DEST.
    match std::fs::symlink_metadata(local) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            let why = format!(
                "the agent sent a folder where {} is a link or file; refused",
                local.display()
            );
            return Err(Failure::broken(why));
        }
        Err(_) => std::fs::create_dir(local)
            .map_err(|err| Failure::refused(format!("cannot create {}: {err}", local.display())))?,
    }
    // Keep the owner's access so the entries below can be written.
    std::fs::set_permissions(
        local,
        std::fs::Permissions::from_mode(local_mode(mode) | 0o700),
    )
    .map_err(|err| Failure::refused(format!("cannot set the mode of {}: {err}", local.display())))
}

fn make_link(local: &Path, target: &str) -> Result<(), Failure> {
    place_symlink(local, target).map_err(Failure::refused)
}

/// The mode a pulled file or folder gets here: the agent's permission bits, without
/// setuid, setgid or sticky, and never writable by others. An agent host must not be able to
/// plant a setuid program or a world-writable folder on the controller's machine.
fn local_mode(wire_mode: u32) -> u32 {
    wire_mode & 0o775
}

/// `base` joined with a `/`-separated path from the wire, or `None` when that path could
/// leave `base`: an absolute path, `..`, `.`, an empty part, a NUL, or a folder on the way
/// that is a link (which a previous entry of the same pull could have planted). The folders
/// on the way are created.
pub fn safe_local_path(base: &Path, wire_path: &str) -> Option<PathBuf> {
    if wire_path.is_empty() || wire_path.contains('\0') {
        return None;
    }
    let mut path = base.to_owned();
    let parts: Vec<&str> = wire_path.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let plain = matches!(
            Path::new(part).components().collect::<Vec<_>>().as_slice(),
            [Component::Normal(_)]
        );
        if !plain || part.is_empty() {
            return None;
        }
        if i + 1 < parts.len() {
            path.push(part);
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return None,
                Err(_) => std::fs::create_dir_all(&path).ok()?,
            }
        } else {
            path.push(part);
        }
    }
    // The base itself must not be a link either, once it exists.
    match std::fs::symlink_metadata(base) {
        Ok(meta) if !meta.is_dir() => None,
        _ => Some(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_relative_paths_stay_below_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let got = safe_local_path(dir.path(), "app/logs/x.log").unwrap();
        assert_eq!(got, dir.path().join("app").join("logs").join("x.log"));
        assert!(dir.path().join("app").join("logs").is_dir());
    }

    #[test]
    fn paths_that_could_escape_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./x",
            "a/.",
            "x\0y",
            "..",
        ] {
            assert_eq!(safe_local_path(dir.path(), bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_link_planted_on_the_way_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/tmp", dir.path().join("app")).unwrap();
        assert_eq!(safe_local_path(dir.path(), "app/x"), None);
    }
}
