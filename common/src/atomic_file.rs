//! Files that appear whole or not at all: how both sides receive a file (the agent a pushed
//! one, `ctl` a pulled one) and put it in place, and how temporary files that killed
//! processes left behind are cleaned up.
//!
//! A received file is written to a temporary file beside its destination, hashed as it is
//! written ([`crate::hashing_writer`]), and renamed over the destination only once it is
//! complete, checked by the caller and synced. Any failure before that leaves the
//! destination as it was. What the hash is checked against, and what a failure is reported
//! as, is the caller's business; so is finding and creating the destination's folder
//! ([`crate::folder`], which follows no link).
//!
//! Everything works on descriptors: the caller hands in the destination's folder, open;
//! the temporary file is created in it with `openat(O_CREAT|O_EXCL|O_NOFOLLOW)`, its mode is
//! set with `fchmod`, and it is renamed with `renameat` within that same folder descriptor.
//! The agent runs as root: a folder swapped for a link once it is open must not change where
//! a file lands, and no path is looked up twice.
//!
//! The temporary file's *name* is not ours alone: in a folder a local user can write, the
//! name can be swapped for a link or another file between creating it and renaming it, and
//! `renameat` moves whatever sits at the name. So after the rename the destination is
//! checked to be the very file written (device and inode from `fstat` on our descriptor
//! against `fstatat(AT_SYMLINK_NOFOLLOW)` of the destination); on a mismatch what was put
//! there is moved back to the temporary name and removed, and the receive fails with
//! [`ReceiveError::Swapped`]. Nothing is ever done through the swapped-in entry (the mode
//! was set on our descriptor before), so the swap gains its author nothing they could not
//! do to a folder they can write anyway. (An `O_TMPFILE` file linked in with `linkat`
//! would not avoid this: `linkat` cannot replace an existing destination, so a named step
//! and this check would remain.) A link is checked the same way by what it points to.
//!
//! Temporary files are named `.muster-tmp.<pid>.<random>.<final name>` (the pid is for
//! people), and a writer holds an exclusive `flock` on its temporary file from just after
//! creating it until it is in place or removed. A stale one, left by a killed writer, is one
//! nobody holds a lock on ([`remove_stale_temps`]): a pid in a name can be reused by an
//! unrelated process, a lock dies with its holder. The sweep removes a file only while it
//! holds that lock, and a writer that finds its new file locked by a sweep, or gone, starts
//! over with another name, so the moment between creating and locking is safe. Temporary
//! links cannot be locked and live for a moment only: they are stale after [`STALE_AFTER`].

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use nix::errno::Errno;
use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};

use crate::folder::{Child, Folder, OpenError};
use crate::hashing_writer::{DiskPath, HashingWriter, WriteError, Written};

/// Every temporary file starts with this, then `<pid>.<random>.<final name>`.
pub const TEMP_PREFIX: &str = ".muster-tmp.";

/// How long a temporary link must have been there before it is taken for a stale one
/// (links cannot be locked; a live one is renamed into place at once).
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// Why a file could not be received or put in place. The destination is as it was, and no
/// temporary file is left.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// The temporary file could not be made (its folder refuses us).
    #[error("cannot create {}: {source}", path.display())]
    Create {
        /// The temporary file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The destination's folder could not be opened (missing, or a link on the way).
    #[error(transparent)]
    Folder(#[from] OpenError),
    /// What was renamed into place is not what was written: the temporary name was
    /// swapped for something else in the meantime. It was moved away again.
    #[error(
        "the temporary file for {} was replaced by something else before it was put in place; nothing was put in place",
        path.display()
    )]
    Swapped {
        /// The destination.
        path: PathBuf,
    },
    /// The announced size does not fit in a file offset.
    #[error("{size} bytes is more than a file can hold")]
    TooLarge {
        /// The announced size.
        size: u64,
    },
    /// The file system has no room for the file.
    #[error(
        "not enough space for {size} bytes in {} ({}); the destination was left as it was",
        folder.display(),
        source.desc()
    )]
    NoSpace {
        /// The announced size.
        size: u64,
        /// The destination's folder.
        folder: PathBuf,
        /// ENOSPC, EDQUOT or EFBIG.
        source: Errno,
    },
    /// Reserving the file's room failed otherwise.
    #[error("cannot reserve {size} bytes for {}: {source}", path.display())]
    Reserve {
        /// The announced size.
        size: u64,
        /// The temporary file.
        path: PathBuf,
        /// Why.
        source: Errno,
    },
    /// Writing the data failed (names the temporary file).
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Syncing, setting the mode or renaming failed.
    #[error("cannot put {} in place: {source}", path.display())]
    Place {
        /// The destination.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A symbolic link could not be made or put in place.
    #[error("cannot create the link {}: {source}", path.display())]
    Link {
        /// The link's path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl ReceiveError {
    /// What went wrong without the step or the file's name, for a caller that names the
    /// file its own way.
    pub fn reason(&self) -> String {
        match self {
            ReceiveError::Create { source, .. }
            | ReceiveError::Place { source, .. }
            | ReceiveError::Link { source, .. }
            | ReceiveError::Write(WriteError::Io { source, .. }) => source.to_string(),
            other => other.to_string(),
        }
    }
}

/// A file being received: an empty temporary file, open and locked, in its destination's
/// folder.
pub struct ReceivedFile {
    file: File,
    temp: TempEntry,
}

impl ReceivedFile {
    /// Creates a new temporary file for `name` in `folder`, readable and writable by its
    /// owner only, and locks it (see the module docs).
    ///
    /// # Errors
    /// [`ReceiveError::Create`], naming the temporary file.
    pub fn create(folder: &Folder, name: &OsStr) -> Result<ReceivedFile, ReceiveError> {
        let dest = Destination::new(folder, name)?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match create_locked(&dest)? {
                Some((file, temp_name)) => {
                    let temp = TempEntry {
                        dest,
                        temp_name,
                        placed: false,
                    };
                    return Ok(ReceivedFile { file, temp });
                }
                // A stale-file sweep took the new file before we locked it: try another
                // name (a sweep cannot take one twice: it needs the lock).
                None if attempts < 8 => continue,
                None => {
                    return Err(ReceiveError::Create {
                        path: dest.path(),
                        source: io::Error::other("temporary files kept being removed"),
                    })
                }
            }
        }
    }

    /// Where the temporary file is, for messages.
    pub fn temp_path(&self) -> PathBuf {
        self.temp.path()
    }

    /// Allocates room for `size` bytes (fallocate). A file that cannot fit is then refused
    /// before any data is sent, with a clear message, and writing into allocated blocks
    /// spares the file system from allocating while it writes back. File systems that
    /// cannot preallocate are written to as they are. Blocks; allocating a large file takes
    /// a while on some file systems.
    ///
    /// # Errors
    /// [`ReceiveError::TooLarge`], [`ReceiveError::NoSpace`] or [`ReceiveError::Reserve`].
    pub fn reserve(&self, size: u64) -> Result<(), ReceiveError> {
        let Ok(len) = i64::try_from(size) else {
            return Err(ReceiveError::TooLarge { size });
        };
        if len == 0 {
            return Ok(());
        }
        let flags = nix::fcntl::FallocateFlags::empty();
        match nix::fcntl::fallocate(&self.file, flags, 0, len) {
            Ok(()) | Err(Errno::EOPNOTSUPP | Errno::ENOSYS) => Ok(()),
            Err(source @ (Errno::ENOSPC | Errno::EDQUOT | Errno::EFBIG)) => {
                Err(ReceiveError::NoSpace {
                    size,
                    folder: self.temp.dest.folder.path().to_owned(),
                    source,
                })
            }
            Err(source) => Err(ReceiveError::Reserve {
                size,
                path: self.temp_path(),
                source,
            }),
        }
    }

    /// Starts writing the data on a thread of its own, hashed as written (see
    /// [`HashingWriter::start`]; write errors name the temporary file).
    pub fn start_writing(self, queue_chunks: usize, disk: DiskPath) -> Receiving {
        let writer = HashingWriter::start(self.file, self.temp.path(), queue_chunks, disk);
        Receiving {
            writer,
            temp: self.temp,
        }
    }
}

/// Creates a temporary file for `dest` and locks it. `None` when a stale-file sweep
/// locked and removed it between the two steps (then nothing of ours is left).
///
/// The lock and the check after it are what make the sweep safe without guessing from
/// ages or pids: a sweep removes a file only while holding its lock, so once we hold the
/// lock and the name is still our file, no sweep can take it.
fn create_locked(dest: &Destination) -> Result<Option<(File, OsString)>, ReceiveError> {
    let temp_name = temp_name(&dest.name);
    let create_error = |errno: rustix::io::Errno| ReceiveError::Create {
        path: dest.folder.path().join(&temp_name),
        source: errno.into(),
    };
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&dest.folder, &temp_name, flags, Mode::from_raw_mode(0o600))
        .map_err(create_error)?;
    let ours = rustix::fs::fstat(&fd).map_err(create_error)?;
    let locked = rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_ok();
    let named = rustix::fs::statat(&dest.folder, &temp_name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|stat| stat.st_dev == ours.st_dev && stat.st_ino == ours.st_ino);
    // Otherwise a sweep holds the lock and removes the file, or already has: the name is
    // not ours to remove any more.
    Ok((locked && named).then(|| (File::from(fd), temp_name)))
}

/// A file whose data is being written.
pub struct Receiving {
    writer: HashingWriter,
    temp: TempEntry,
}

impl Receiving {
    /// Queues one chunk, waiting while the queue is full. `false` means writing has
    /// stopped because a write failed; [`Receiving::finish`] says why.
    pub async fn write(&self, chunk: Bytes) -> bool {
        self.writer.write(chunk).await
    }

    /// Waits until everything queued is written.
    ///
    /// # Errors
    /// [`ReceiveError::Write`] for the first write that failed; the temporary file is
    /// removed.
    ///
    /// # Cancel safety
    /// Dropping the future removes the temporary file at once; the writer's thread may
    /// still write what was queued into the now nameless file.
    pub async fn finish(self) -> Result<Complete, ReceiveError> {
        let Written { file, sha256 } = self.writer.finish().await?;
        Ok(Complete {
            file,
            sha256,
            temp: self.temp,
        })
    }
}

/// A file received in full, not yet in place.
pub struct Complete {
    file: File,
    sha256: String,
    temp: TempEntry,
}

impl Complete {
    /// SHA-256 of everything written, lowercase hex: the caller checks it before
    /// [`Complete::place`].
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Puts the file in place with `mode`: sets the mode on the open file, syncs it, renames
    /// it over the destination within the folder opened at the start, checks that what is
    /// now at the destination is this file, and syncs that folder so the rename survives a
    /// crash. Runs on a blocking thread (a large file's fsync takes a while on a slow disk).
    ///
    /// # Errors
    /// [`ReceiveError::Swapped`] when the temporary name was swapped; otherwise
    /// [`ReceiveError::Place`], naming the destination. The temporary file is removed.
    ///
    /// # Cancel safety
    /// Dropping the future does not stop the blocking thread: the file may still be put in
    /// place, or its temporary file removed, after the caller has moved on.
    pub async fn place(self, mode: u32) -> Result<(), ReceiveError> {
        let dest = self.temp.dest.path();
        let placed = tokio::task::spawn_blocking(move || self.place_now(mode)).await;
        placed.unwrap_or_else(|err| {
            Err(ReceiveError::Place {
                path: dest,
                source: io::Error::other(err),
            })
        })
    }

    fn place_now(self, mode: u32) -> Result<(), ReceiveError> {
        let Complete { file, temp, .. } = self;
        let place_error = |source: io::Error| ReceiveError::Place {
            path: temp.dest.path(),
            source,
        };
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))
            .map_err(|errno| place_error(errno.into()))?;
        file.sync_all().map_err(place_error)?;
        let stat = rustix::fs::fstat(&file).map_err(|errno| place_error(errno.into()))?;
        // The file stays open (and locked) until it is in place, so that it is never
        // taken for a stale one.
        let placed = temp.rename_into_place(&Expected::File {
            dev: stat.st_dev,
            ino: stat.st_ino,
        });
        drop(file);
        placed
    }
}

/// Makes `name` in `folder` a symbolic link to `target`: the link is made under a temporary
/// name and renamed over whatever is at `name`, so there is never a moment without one.
///
/// # Errors
/// [`ReceiveError::Link`], or [`ReceiveError::Swapped`] when what was renamed into place is
/// not the link made; no temporary link is left.
pub fn place_symlink(folder: &Folder, name: &OsStr, target: &str) -> Result<(), ReceiveError> {
    let dest = Destination::new(folder, name)?;
    let link_error = |source: io::Error| ReceiveError::Link {
        path: dest.path(),
        source,
    };
    let temp_name = temp_name(&dest.name);
    rustix::fs::symlinkat(target, &dest.folder, &temp_name)
        .map_err(|errno| link_error(errno.into()))?;
    let path = dest.path();
    let temp = TempEntry {
        dest,
        temp_name,
        placed: false,
    };
    match temp.rename_into_place(&Expected::Link(target)) {
        Err(ReceiveError::Place { source, .. }) => Err(ReceiveError::Link { path, source }),
        other => other,
    }
}

/// A destination: its folder, open, and its name in it.
struct Destination {
    folder: Folder,
    name: OsString,
}

impl Destination {
    fn new(folder: &Folder, name: &OsStr) -> Result<Destination, ReceiveError> {
        let plain = matches!(
            Path::new(name).components().collect::<Vec<_>>().as_slice(),
            [Component::Normal(_)]
        );
        let path = folder.path().join(name);
        if !plain {
            return Err(ReceiveError::Create {
                path,
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a plain file name"),
            });
        }
        let folder = folder
            .try_clone()
            .map_err(|source| ReceiveError::Create { path, source })?;
        Ok(Destination {
            folder,
            name: name.to_owned(),
        })
    }

    fn path(&self) -> PathBuf {
        self.folder.path().join(&self.name)
    }
}

/// What a temporary entry must be once renamed into place.
enum Expected<'a> {
    /// The file with this identity.
    File { dev: u64, ino: u64 },
    /// A link pointing here.
    Link(&'a str),
}

/// A temporary entry (file or link) in a destination's folder. Removed when dropped,
/// unless it was renamed into place.
struct TempEntry {
    dest: Destination,
    temp_name: OsString,
    placed: bool,
}

impl TempEntry {
    fn path(&self) -> PathBuf {
        self.dest.folder.path().join(&self.temp_name)
    }

    /// Renames the entry over the destination, checks that what arrived there is what was
    /// made (undoing the rename when it is not), then syncs the folder so the rename
    /// survives a crash.
    fn rename_into_place(mut self, expected: &Expected) -> Result<(), ReceiveError> {
        let place_error = |source: io::Error| ReceiveError::Place {
            path: self.dest.path(),
            source,
        };
        let folder = &self.dest.folder;
        rustix::fs::renameat(folder, &self.temp_name, folder, &self.dest.name)
            .map_err(|errno| place_error(errno.into()))?;
        if !self.holds(expected) {
            // Moved back under the temporary name, which Drop then removes: only a name in
            // this folder is touched, never what a swapped-in link points to.
            let _ = rustix::fs::renameat(folder, &self.dest.name, folder, &self.temp_name);
            return Err(ReceiveError::Swapped {
                path: self.dest.path(),
            });
        }
        self.placed = true;
        rustix::fs::fsync(folder).map_err(|errno| place_error(errno.into()))
    }

    /// True when the destination is `expected`, looked at without following a link.
    fn holds(&self, expected: &Expected) -> bool {
        let folder = &self.dest.folder;
        match expected {
            Expected::File { dev, ino } => {
                rustix::fs::statat(folder, &self.dest.name, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|stat| stat.st_dev == *dev && stat.st_ino == *ino)
            }
            Expected::Link(target) => folder
                .link_target(&self.dest.name)
                .is_some_and(|found| found.as_os_str() == OsStr::new(target)),
        }
    }
}

impl Drop for TempEntry {
    fn drop(&mut self) {
        if !self.placed {
            let _ = rustix::fs::unlinkat(&self.dest.folder, &self.temp_name, AtFlags::empty());
        }
    }
}

/// A fresh temporary name for a file that will be called `name`.
fn temp_name(name: &OsStr) -> OsString {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("the operating system random source works");
    let mut temp = OsString::from(format!(
        "{TEMP_PREFIX}{}.{}.",
        std::process::id(),
        hex::encode(random)
    ));
    temp.push(name);
    temp
}

/// Removes temporary files in `folder` (and below it, with `recursive`, not following
/// links) that were left by writers no longer running (see the module docs), and returns
/// their paths. One that cannot be removed now is left for the next call.
pub fn remove_stale_temps(folder: &Folder, recursive: bool) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = rustix::fs::Dir::read_from(folder) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = OsStr::from_bytes(entry.file_name().to_bytes()).to_owned();
        if name == "." || name == ".." {
            continue;
        }
        let is_temp = name.as_bytes().starts_with(TEMP_PREFIX.as_bytes());
        match entry.file_type() {
            FileType::Directory if recursive && !is_temp => {
                if let Ok(child) = folder.child_folder(&name) {
                    removed.extend(remove_stale_temps(&child, true));
                }
            }
            FileType::RegularFile | FileType::Symlink
                if is_temp && remove_if_stale(folder, &name) =>
            {
                removed.push(folder.path().join(&name));
            }
            _ => {}
        }
    }
    removed
}

/// A temporary entry that is stale: a regular file nobody holds a lock on, or a link
/// older than [`STALE_AFTER`]. A stale file is removed while its lock is held, and only if
/// its name still holds the file that was locked.
fn remove_if_stale(folder: &Folder, name: &OsStr) -> bool {
    let Ok(stat) = rustix::fs::statat(folder, name, AtFlags::SYMLINK_NOFOLLOW) else {
        return false;
    };
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Symlink => {
            let modified = std::time::UNIX_EPOCH + Duration::from_secs(stat.st_mtime.max(0) as u64);
            modified.elapsed().is_ok_and(|age| age >= STALE_AFTER)
                && rustix::fs::unlinkat(folder, name, AtFlags::empty()).is_ok()
        }
        FileType::RegularFile => {
            let flags = OFlags::RDONLY | OFlags::NONBLOCK;
            let Ok(Child::Open(fd)) = folder.open_child(name, flags) else {
                return false;
            };
            if rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err() {
                return false;
            }
            let same = |a: &rustix::fs::Stat, b: &rustix::fs::Stat| {
                a.st_dev == b.st_dev && a.st_ino == b.st_ino
            };
            let locked = rustix::fs::fstat(&fd);
            let named = rustix::fs::statat(folder, name, AtFlags::SYMLINK_NOFOLLOW);
            matches!((&locked, &named), (Ok(a), Ok(b)) if same(a, b))
                && rustix::fs::unlinkat(folder, name, AtFlags::empty()).is_ok()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets `path`'s times an hour back (not following a link).
    fn age(path: &Path) {
        let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        let secs = an_hour_ago.duration_since(std::time::UNIX_EPOCH).unwrap();
        let time = rustix::fs::Timespec {
            tv_sec: secs.as_secs() as i64,
            tv_nsec: 0,
        };
        let times = rustix::fs::Timestamps {
            last_access: time,
            last_modification: time,
        };
        rustix::fs::utimensat(rustix::fs::CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
    }

    fn open(path: &Path) -> Folder {
        Folder::open(path).unwrap()
    }

    #[test]
    fn a_temp_is_stale_when_unlocked_whatever_pid_its_name_carries() {
        // Tried: temporary files named with a live pid (our own, as a reused pid would
        // be) and with a dead one, unlocked; one being written (locked); temporary links
        // fresh and an hour old. Only the unlocked files and the old link are removed.
        let dir = tempfile::tempdir().unwrap();
        let folder = open(dir.path());
        let reused = format!("{TEMP_PREFIX}{}.00.reused", std::process::id());
        let dead = format!("{TEMP_PREFIX}99999999.00.dead");
        for name in [&reused, &dead] {
            std::fs::write(dir.path().join(name), "half").unwrap();
        }
        let writing = ReceivedFile::create(&folder, "live".as_ref()).unwrap();
        let (old_link, new_link) = (
            format!("{TEMP_PREFIX}1.00.l"),
            format!("{TEMP_PREFIX}1.01.l"),
        );
        for name in [&old_link, &new_link] {
            std::os::unix::fs::symlink("x", dir.path().join(name)).unwrap();
        }
        age(&dir.path().join(&old_link));

        let mut removed = remove_stale_temps(&folder, false);
        removed.sort();
        let mut expected: Vec<PathBuf> = [&old_link, &reused, &dead]
            .iter()
            .map(|name| dir.path().join(name))
            .collect();
        expected.sort();
        assert_eq!(removed, expected);
        assert!(writing.temp_path().exists(), "a locked temp is live");
        assert!(
            dir.path().join(&new_link).symlink_metadata().is_ok(),
            "a new link may be live"
        );
    }

    #[test]
    fn stale_temps_are_removed_recursively_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let stale = dir
            .path()
            .join("sub")
            .join(format!("{TEMP_PREFIX}99999999.ab.x"));
        let kept = dir.path().join("x");
        std::fs::write(&stale, "half").unwrap();
        std::fs::write(&kept, "whole").unwrap();
        assert_eq!(
            remove_stale_temps(&open(dir.path()), true),
            std::slice::from_ref(&stale)
        );
        assert!(!stale.exists());
        assert!(kept.exists());
    }

    /// Receives `data` into `dest` through the whole recipe; returns the SHA-256 reported.
    async fn receive(dest: &Path, data: &[u8], mode: u32) -> Result<String, ReceiveError> {
        let folder = open(dest.parent().unwrap());
        let file = ReceivedFile::create(&folder, dest.file_name().unwrap())?;
        file.reserve(data.len() as u64)?;
        let receiving = file.start_writing(2, DiskPath::PageCache);
        for chunk in data.chunks(1000) {
            assert!(receiving.write(Bytes::copy_from_slice(chunk)).await);
        }
        let complete = receiving.finish().await?;
        let sha256 = complete.sha256().to_owned();
        complete.place(mode).await?;
        Ok(sha256)
    }

    fn names_in(folder: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(folder)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[tokio::test]
    async fn a_received_file_replaces_the_destination_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        std::fs::write(&dest, "old").unwrap();
        let data = vec![7u8; 2500];
        let sha256 = receive(&dest, &data, 0o640).await.unwrap();
        assert_eq!(sha256, crate::digest::sha256_hex(&data));
        assert!(std::fs::read(&dest).unwrap() == data);
        assert_eq!(mode_of(&dest), 0o640);
        assert_eq!(names_in(dir.path()), ["f"]);
    }

    #[tokio::test]
    async fn a_folder_swapped_for_a_link_after_opening_still_receives_the_file() {
        // Tried: open the folder, then move it away and put a link to another folder at
        // its path before writing and placing: the file lands in the folder first opened.
        let dir = tempfile::tempdir().unwrap();
        let (folder, moved, elsewhere) = (
            dir.path().join("folder"),
            dir.path().join("moved"),
            dir.path().join("elsewhere"),
        );
        std::fs::create_dir(&folder).unwrap();
        std::fs::create_dir(&elsewhere).unwrap();
        let file = ReceivedFile::create(&open(&folder), "f".as_ref()).unwrap();
        std::fs::rename(&folder, &moved).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &folder).unwrap();
        let receiving = file.start_writing(2, DiskPath::PageCache);
        assert!(receiving.write(Bytes::from_static(b"data")).await);
        receiving
            .finish()
            .await
            .unwrap()
            .place(0o600)
            .await
            .unwrap();
        assert_eq!(std::fs::read(moved.join("f")).unwrap(), b"data");
        assert!(
            names_in(&elsewhere).is_empty(),
            "{:?}",
            names_in(&elsewhere)
        );
    }

    #[tokio::test]
    async fn a_temp_name_swapped_for_a_link_is_not_left_in_place() {
        // Tried: once the file is written, replace its temporary name with a link to a
        // file elsewhere (as a user who can write the folder could), then place it. The
        // rename moves the link, the check sees it is not our file, the link is moved back
        // and removed; the file it points to keeps its content and mode.
        let dir = tempfile::tempdir().unwrap();
        let (folder, secret) = (dir.path().join("folder"), dir.path().join("secret"));
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(&secret, "secret").unwrap();
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let file = ReceivedFile::create(&open(&folder), "f".as_ref()).unwrap();
        let temp = file.temp_path();
        let receiving = file.start_writing(2, DiskPath::PageCache);
        assert!(receiving.write(Bytes::from_static(b"data")).await);
        let complete = receiving.finish().await.unwrap();
        let swap = folder.join("swap");
        std::os::unix::fs::symlink(&secret, &swap).unwrap();
        std::fs::rename(&swap, &temp).unwrap();
        let err = complete.place(0o4755).await.unwrap_err();
        assert!(matches!(err, ReceiveError::Swapped { .. }), "{err}");
        assert_eq!(std::fs::read(&secret).unwrap(), b"secret");
        assert_eq!(mode_of(&secret), 0o600);
        assert!(names_in(&folder).is_empty(), "{:?}", names_in(&folder));
    }

    #[tokio::test]
    async fn a_temp_file_never_outlives_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let folder = open(dir.path());
        // A size no file can have: refused after the temporary file was made.
        let file = ReceivedFile::create(&folder, "huge".as_ref()).unwrap();
        let err = file.reserve(u64::MAX).unwrap_err();
        assert!(matches!(err, ReceiveError::TooLarge { .. }), "{err}");
        drop(file);
        assert!(
            names_in(dir.path()).is_empty(),
            "{:?}",
            names_in(dir.path())
        );

        // Given up while being written.
        let receiving = ReceivedFile::create(&folder, "half".as_ref())
            .unwrap()
            .start_writing(2, DiskPath::PageCache);
        assert!(receiving.write(Bytes::from_static(b"part")).await);
        drop(receiving);
        assert!(
            names_in(dir.path()).is_empty(),
            "{:?}",
            names_in(dir.path())
        );

        // Complete, but the rename fails: a folder that is not empty is in the way.
        std::fs::create_dir(dir.path().join("taken")).unwrap();
        std::fs::write(dir.path().join("taken").join("x"), "x").unwrap();
        let err = receive(&dir.path().join("taken"), b"data", 0o644)
            .await
            .unwrap_err();
        assert!(matches!(err, ReceiveError::Place { .. }), "{err}");
        assert_eq!(names_in(dir.path()), ["taken"]);
    }

    #[test]
    fn a_name_that_is_not_plain_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["", "..", "a/b", "."] {
            let err = ReceivedFile::create(&open(dir.path()), name.as_ref()).err();
            assert!(matches!(err, Some(ReceiveError::Create { .. })), "{name:?}");
        }
    }

    #[test]
    fn a_link_replaces_what_was_there_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("l");
        std::fs::write(&link, "a file before").unwrap();
        place_symlink(&open(dir.path()), "l".as_ref(), "target/elsewhere").unwrap();
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("target/elsewhere")
        );
        assert_eq!(names_in(dir.path()), ["l"]);
    }
}
