//! Pull from one host: ask for a file or tree and write what comes back below this host's
//! own local folder, each file atomically and checked against the agent's SHA-256.
//!
//! Nothing from the wire is trusted to name a local path: every entry path must be plain
//! names (no `..`, no root, no empty parts), and everything below `DEST/<host>` is made and
//! written on descriptors (`common::folder`): each folder on the way is opened with
//! `O_NOFOLLOW|O_DIRECTORY` from the one above (made with `mkdirat` when missing), folders
//! get their mode with `fchmod` on their own descriptor, files and links are created in
//! their open folder. A link on the way, which an earlier entry of the same pull (or a
//! local user) could have planted, is refused, so a hostile or broken agent cannot make us
//! write outside `DEST/<host>/`. `DEST` itself is the operator's and may be reached
//! through links.
//!
//! A pull ends the host as `error` when the agent makes no progress for `--silence-timeout`:
//! progress is an entry, file data or a file's end; heartbeats (which the agent sends while
//! it lists a tree) keep the connection but not the pull alive.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::atomic_file::{place_symlink, ReceiveError, ReceivedFile, Receiving};
use common::channel::{Channel, RecvError};
use common::folder::{plain_names, Folder, OpenError};
use common::hashing_writer::DiskPath;
use common::message::{EntryKind, Packet, Reply, Request};
use tokio::sync::Semaphore;

use super::{lost, Connector, Failure, Stop, Stream};
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
    let (mut channel, host_key) = match connected.await {
        Ok(connected) => connected,
        Err(outcome) => return outcome,
    };
    let received = tokio::select! {
        _ = stop.cancel.cancelled() => Err(Failure::new(Status::Cancelled, "cancelled; the file being written was discarded")),
        received = receive_all(&mut channel, &local_base, &progress, connector.silence_timeout) => received,
    };
    let outcome = match received {
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
    };
    outcome.with_host_key(host_key)
}

struct Received {
    bytes: u64,
    /// The SHA-256 of the pulled file, when a single file was pulled.
    sha256: Option<String>,
    root: Option<PathBuf>,
}

/// Receives everything the agent sends in answer to the `Get` that went with the handshake.
async fn receive_all(
    channel: &mut Channel<Stream>,
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
    let mut host_folder: Option<Folder> = None;
    let mut replies = Replies::new(silence);
    loop {
        let (path, kind, mode, size, target) = match replies.next(channel).await? {
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
        // Made only once there is something to put in it: a host that fails leaves no
        // empty folder behind.
        let base = match &host_folder {
            Some(base) => base,
            None => host_folder.insert(open_host_folder(local_base)?),
        };
        let parts = plain_names(&path).ok_or_else(|| {
            Failure::broken(format!("the agent sent the unsafe path {path:?}; refused"))
        })?;
        let (folder, name) = folder_of_entry(base, &parts, &path)?;
        let local = folder.path().join(name);
        received.root.get_or_insert_with(|| local.clone());
        match kind {
            EntryKind::Dir => make_dir(&folder, name, &local, mode)?,
            EntryKind::Symlink => make_link(&folder, name, target.as_deref().unwrap_or_default())?,
            EntryKind::File => {
                progress.grow(size);
                let file = EntryFile {
                    folder: &folder,
                    name,
                    local: &local,
                    mode,
                    size,
                };
                let sha256 = receive_file(channel, &mut replies, file, progress).await?;
                received.bytes += size;
                received.sha256 = Some(sha256);
                files += 1;
            }
        }
    }
}

/// Control replies of a pull, with its progress rule: heartbeats are skipped but do not
/// count as progress, so a pull that only gets heartbeats for `silence` is lost.
struct Replies {
    silence: Duration,
    last_progress: Instant,
    /// When anything (a heartbeat included) last arrived.
    last_heard: Instant,
}

impl Replies {
    fn new(silence: Duration) -> Replies {
        Replies {
            silence,
            last_progress: Instant::now(),
            last_heard: Instant::now(),
        }
    }

    /// Notes progress that arrived another way (file data).
    fn progressed(&mut self) {
        self.last_progress = Instant::now();
        self.last_heard = self.last_progress;
    }

    /// The failure once no progress came for `silence`: a silent agent is lost, a busy
    /// one that only sends heartbeats is stuck.
    fn no_progress(&self) -> Failure {
        match self.last_heard.elapsed() < self.silence {
            true => Failure::broken(format!(
                "the agent made no progress for {}s (only heartbeats): host or path stuck",
                self.silence.as_secs()
            )),
            false => lost(RecvError::Idle(self.silence), "mid-transfer"),
        }
    }

    async fn next(&mut self, channel: &mut Channel<Stream>) -> Result<Reply, Failure> {
        loop {
            let left = self.silence.saturating_sub(self.last_progress.elapsed());
            if left.is_zero() {
                return Err(self.no_progress());
            }
            match channel.recv_within::<Reply>(left).await {
                Ok(Packet::Control(Reply::Heartbeat)) => self.last_heard = Instant::now(),
                Ok(Packet::Control(Reply::Error { message })) => {
                    return Err(Failure::refused(message))
                }
                Ok(Packet::Control(Reply::Denied { message })) => {
                    return Err(Failure::denied(message))
                }
                Ok(Packet::Control(reply)) => {
                    self.progressed();
                    return Ok(reply);
                }
                Ok(other) => {
                    let why = format!("unexpected data from the agent: {}", other.summary());
                    return Err(Failure::broken(why));
                }
                // Waited only for what was left of the silence.
                Err(RecvError::Idle(_)) => return Err(self.no_progress()),
                Err(err) => return Err(lost(err, "mid-transfer")),
            }
        }
    }
}

/// Makes and opens `local_base` (`DEST/<host>`): `DEST` is the operator's and may be
/// reached through links; the host's own folder is not followed if it is a link.
fn open_host_folder(local_base: &Path) -> Result<Folder, Failure> {
    let cannot = |err: &dyn std::fmt::Display| {
        Failure::refused(format!("cannot create {}: {err}", local_base.display()))
    };
    let (Some(dest), Some(host)) = (local_base.parent(), local_base.file_name()) else {
        return Err(cannot(&"not a folder path"));
    };
    let dest = match dest.as_os_str().is_empty() {
        true => Path::new("."),
        false => dest,
    };
    std::fs::create_dir_all(dest).map_err(|err| cannot(&err))?;
    let dest = Folder::open_following_links(dest).map_err(|err| cannot(&err))?;
    dest.child_folder_or_create(host)
        .map_err(|err| cannot(&err))
}

/// Opens (making missing ones) the folders of an entry below the host's folder and returns
/// the last one with the entry's name in it.
fn folder_of_entry<'p>(
    base: &Folder,
    parts: &[&'p str],
    wire_path: &str,
) -> Result<(Folder, &'p OsStr), Failure> {
    let Some((name, folders)) = parts.split_last() else {
        return Err(Failure::broken("the agent sent an empty path; refused"));
    };
    let folder = base.descend_or_create(folders).map_err(|err| match err {
        err @ (OpenError::Link { .. } | OpenError::NotAFolder(_)) => Failure::broken(format!(
            "the agent sent the unsafe path {wire_path:?} ({err}); refused"
        )),
        other => Failure::refused(other.to_string()),
    })?;
    let name: &'p str = name;
    Ok((folder, OsStr::new(name)))
}

/// One file entry: where it goes and what the agent announced.
struct EntryFile<'a> {
    folder: &'a Folder,
    name: &'a OsStr,
    local: &'a Path,
    mode: u32,
    size: u64,
}

/// Receives one file's data into a temporary file, checks it against the agent's hash and
/// puts it in place (`common::atomic_file`).
async fn receive_file(
    channel: &mut Channel<Stream>,
    replies: &mut Replies,
    entry: EntryFile<'_>,
    progress: &TransferProgress,
) -> Result<String, Failure> {
    let EntryFile {
        folder,
        name,
        local,
        mode,
        size,
    } = entry;
    let failed = |err: ReceiveError| {
        Failure::refused(format!(
            "cannot write {}: {}",
            local.display(),
            err.reason()
        ))
    };
    let file = ReceivedFile::create(folder, name).map_err(failed)?;
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
    let received = receive_data(channel, &receiving, size, progress, replies).await;
    let complete = receiving.finish().await.map_err(failed);
    drop(direct_slot);
    received?;
    let complete = complete?;
    let ours = complete.sha256().to_owned();
    match replies.next(channel).await? {
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
    channel: &mut Channel<Stream>,
    writer: &Receiving,
    size: u64,
    progress: &TransferProgress,
    replies: &mut Replies,
) -> Result<(), Failure> {
    let mut left = size;
    while left > 0 {
        let chunk = match channel.recv_within::<Reply>(replies.silence).await {
            Ok(Packet::FileData(chunk)) => chunk,
            Ok(Packet::Control(Reply::Error { message })) => return Err(Failure::refused(message)),
            Ok(Packet::Control(Reply::Denied { message })) => return Err(Failure::denied(message)),
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
        replies.progressed();
        if !writer.write(chunk).await {
            // The writer failed; its error is the one to report.
            return Ok(());
        }
        progress.advance(n);
    }
    Ok(())
}

/// Makes the folder `name` in `folder` (or finds it there) and sets its mode on its own
/// descriptor; a link or file at that name is refused, and not followed.
fn make_dir(folder: &Folder, name: &OsStr, local: &Path, mode: u32) -> Result<(), Failure> {
    let cannot = |what: &str, err: &dyn std::fmt::Display| {
        Failure::refused(format!("cannot {what} {}: {err}", local.display()))
    };
    match rustix::fs::mkdirat(folder, name, rustix::fs::Mode::RWXU) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(errno) => return Err(cannot("create", &errno)),
    }
    let dir = folder.child_folder(name).map_err(|err| match err {
        OpenError::Link { .. } | OpenError::NotAFolder(_) => Failure::broken(format!(
            "the agent sent a folder where {} is a link or file; refused",
            local.display()
        )),
        other => cannot("open", &other),
    })?;
    // Keep the owner's access so the entries below can be written.
    let mode = rustix::fs::Mode::from_raw_mode(local_mode(mode) | 0o700);
    rustix::fs::fchmod(&dir, mode).map_err(|errno| cannot("set the mode of", &errno))
}

fn make_link(folder: &Folder, name: &OsStr, target: &str) -> Result<(), Failure> {
    place_symlink(folder, name, target).map_err(Failure::refused)
}

/// The mode a pulled file or folder gets here: the agent's permission bits, without
/// setuid, setgid or sticky, and never writable by others. An agent host must not be able to
/// plant a setuid program or a world-writable folder on the controller's machine.
fn local_mode(wire_mode: u32) -> u32 {
    wire_mode & 0o775
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_planted_on_the_way_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/tmp", dir.path().join("app")).unwrap();
        let base = Folder::open(dir.path()).unwrap();
        let err = folder_of_entry(&base, &["app", "x"], "app/x").err();
        let message = err.map(|err| err.error).unwrap_or_default();
        assert!(message.contains("unsafe path"), "{message}");
    }
}
