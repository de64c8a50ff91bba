//! Files that appear whole or not at all: how both sides receive a file (the agent a pushed
//! one, `ctl` a pulled one) and put it in place, and how temporary files that killed
//! processes left behind are cleaned up.
//!
//! A received file is written to a temporary file beside its destination, hashed as it is
//! written ([`crate::hashing_writer`]), and renamed over the destination only once it is
//! complete, checked by the caller and synced. Any failure before that leaves the
//! destination as it was. What the hash is checked against, and what a failure is reported
//! as, is the caller's business; so is finding and creating the destination's folder.
//!
//! From the moment the destination's folder is opened, everything works on descriptors:
//! the folder is opened once (`O_DIRECTORY|O_NOFOLLOW`), the temporary file is created in it
//! with `openat(O_CREAT|O_EXCL|O_NOFOLLOW)`, its mode is set with `fchmod`, and it is renamed
//! with `renameat` within that same folder descriptor. The agent runs as root: a folder
//! swapped for a link once it is open must not change where a file lands, and no path is
//! looked up twice. The temporary file never outlives a failure: whatever holds it removes
//! it (`unlinkat` in the same folder) when dropped before the file is in place.
//!
//! Temporary files carry the writing process's pid in their name
//! (`.muster-tmp.<pid>.<random>.<final name>`), so stale ones, left by a process that was
//! killed, can be told from live ones and removed ([`remove_stale_temps`]).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use nix::errno::Errno;
use rustix::fs::{AtFlags, Mode, OFlags};

use crate::hashing_writer::{DiskPath, HashingWriter, WriteError, Written};

/// Every temporary file starts with this, then `<pid>.<random>.<final name>`.
pub const TEMP_PREFIX: &str = ".muster-tmp.";

/// Why a file could not be received or put in place. The destination is as it was, and no
/// temporary file is left.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// The temporary file could not be made (its folder is missing, is a link, or refuses
    /// us).
    #[error("cannot create {}: {source}", path.display())]
    Create {
        /// The temporary file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The destination's folder is a symbolic link. Nothing is written through one: a link
    /// planted there would otherwise redirect the write (and its mode) anywhere.
    #[error(
        "the folder {} is a symbolic link; nothing is written through links (name the folder it points to)",
        folder.display()
    )]
    FolderIsLink {
        /// The destination's folder, as named.
        folder: PathBuf,
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

/// A file being received: an empty temporary file, open, in its destination's folder.
pub struct ReceivedFile {
    file: File,
    temp: TempEntry,
}

impl ReceivedFile {
    /// Opens `dest`'s folder (not through a link) and creates a new temporary file in it,
    /// readable and writable by its owner only.
    ///
    /// # Errors
    /// [`ReceiveError::Create`], naming the temporary file.
    pub fn create(dest: &Path) -> Result<ReceivedFile, ReceiveError> {
        let dest = Destination::open(dest).map_err(|source| folder_error(dest, source))?;
        let temp_name = temp_name(&dest.name);
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&dest.folder, &temp_name, flags, Mode::from_raw_mode(0o600))
            .map_err(|errno| ReceiveError::Create {
                path: dest.folder_path.join(&temp_name),
                source: errno.into(),
            })?;
        let temp = TempEntry {
            dest,
            temp_name,
            placed: false,
        };
        Ok(ReceivedFile {
            file: File::from(fd),
            temp,
        })
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
                    folder: self.temp.dest.folder_path.clone(),
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
    /// it over the destination within the folder opened at the start, and syncs that folder
    /// so the rename survives a crash. Runs on a blocking thread (a large file's fsync takes
    /// a while on a slow disk).
    ///
    /// # Errors
    /// [`ReceiveError::Place`], naming the destination; the temporary file is removed.
    ///
    /// # Cancel safety
    /// Dropping the future does not stop the blocking thread: the file may still be put in
    /// place, or its temporary file removed, after the caller has moved on.
    pub async fn place(self, mode: u32) -> Result<(), ReceiveError> {
        let dest = self.temp.dest.path();
        let placed = tokio::task::spawn_blocking(move || self.place_now(mode)).await;
        placed
            .unwrap_or_else(|err| Err(io::Error::other(err)))
            .map_err(|source| ReceiveError::Place { path: dest, source })
    }

    fn place_now(self, mode: u32) -> io::Result<()> {
        let Complete { file, temp, .. } = self;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?;
        file.sync_all()?;
        drop(file);
        temp.rename_into_place()
    }
}

/// Makes `link` a symbolic link to `target`: the link is made under a temporary name in
/// `link`'s folder and renamed over whatever is at `link`, so there is never a moment
/// without one.
///
/// # Errors
/// [`ReceiveError::FolderIsLink`] or [`ReceiveError::Link`]; no temporary link is left.
pub fn place_symlink(link: &Path, target: &str) -> Result<(), ReceiveError> {
    let dest = match Destination::open(link) {
        Err(err) if is_link_refused(link, &err) => {
            return Err(ReceiveError::FolderIsLink {
                folder: folder_of(link),
            })
        }
        dest => dest,
    };
    let made = dest.and_then(|dest| {
        let temp_name = temp_name(&dest.name);
        rustix::fs::symlinkat(target, &dest.folder, &temp_name)?;
        let temp = TempEntry {
            dest,
            temp_name,
            placed: false,
        };
        temp.rename_into_place()
    });
    made.map_err(|source| ReceiveError::Link {
        path: link.to_owned(),
        source,
    })
}

/// Sets the mode of the regular file at `path` through a descriptor, following no link
/// (neither at `path` nor at its folder).
///
/// # Errors
/// The operating system's, from opening the folder or the file or from `fchmod`.
pub fn set_file_mode(path: &Path, mode: u32) -> io::Result<()> {
    let dest = Destination::open(path)?;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = rustix::fs::openat(&dest.folder, &dest.name, flags, Mode::empty())?;
    Ok(rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?)
}

/// A destination: its folder, open, and its name in it.
struct Destination {
    folder: OwnedFd,
    /// For messages only; never opened again.
    folder_path: PathBuf,
    name: OsString,
}

/// Why a destination's folder could not be opened, telling a link from the rest.
fn folder_error(dest: &Path, source: io::Error) -> ReceiveError {
    match is_link_refused(dest, &source) {
        true => ReceiveError::FolderIsLink {
            folder: folder_of(dest),
        },
        false => ReceiveError::Create {
            path: temp_path_for(dest),
            source,
        },
    }
}

/// True when opening `dest`'s folder failed because it is a link. `O_NOFOLLOW` with
/// `O_DIRECTORY` fails with ENOTDIR (or ELOOP) at a link; a look at the folder tells that
/// from a plain file in the way. The look only picks the message: nothing acts on it.
fn is_link_refused(dest: &Path, err: &io::Error) -> bool {
    let refused = [rustix::io::Errno::NOTDIR, rustix::io::Errno::LOOP]
        .iter()
        .any(|errno| err.raw_os_error() == Some(errno.raw_os_error()));
    refused && std::fs::symlink_metadata(folder_of(dest)).is_ok_and(|meta| meta.is_symlink())
}

impl Destination {
    fn open(dest: &Path) -> io::Result<Destination> {
        let Some(name) = dest.file_name() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the destination has no file name",
            ));
        };
        let folder_path = folder_of(dest);
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let folder = rustix::fs::open(&folder_path, flags, Mode::empty())?;
        Ok(Destination {
            folder,
            folder_path,
            name: name.to_owned(),
        })
    }

    fn path(&self) -> PathBuf {
        self.folder_path.join(&self.name)
    }
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
        self.dest.folder_path.join(&self.temp_name)
    }

    /// Renames the entry over the destination, then syncs the folder so the rename
    /// survives a crash.
    fn rename_into_place(mut self) -> io::Result<()> {
        let folder = &self.dest.folder;
        rustix::fs::renameat(folder, &self.temp_name, folder, &self.dest.name)?;
        self.placed = true;
        Ok(rustix::fs::fsync(folder)?)
    }
}

impl Drop for TempEntry {
    fn drop(&mut self) {
        if !self.placed {
            let _ = rustix::fs::unlinkat(&self.dest.folder, &self.temp_name, AtFlags::empty());
        }
    }
}

/// The folder `dest` is in (`.` for a bare name).
fn folder_of(dest: &Path) -> PathBuf {
    match dest.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder.to_owned(),
        _ => PathBuf::from("."),
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

/// The temporary file's path for messages when the folder could not even be opened.
fn temp_path_for(dest: &Path) -> PathBuf {
    folder_of(dest).join(temp_name(dest.file_name().unwrap_or_default()))
}

/// Removes temporary files in `folder` (and below it, with `recursive`, not following
/// links) that were left by processes no longer running, and returns their paths. One that
/// cannot be removed now is left for the next call.
pub fn remove_stale_temps(folder: &Path, recursive: bool) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(folder) else {
        return removed;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() && recursive {
            removed.extend(remove_stale_temps(&path, true));
        } else if (kind.is_file() || kind.is_symlink())
            && is_stale_temp(&entry.file_name().to_string_lossy())
            && std::fs::remove_file(&path).is_ok()
        {
            removed.push(path);
        }
    }
    removed
}

/// A temporary file whose writer (the pid in its name) is gone.
fn is_stale_temp(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
        return false;
    };
    let Some(pid) = rest
        .split('.')
        .next()
        .and_then(|pid| pid.parse::<u32>().ok())
    else {
        return false;
    };
    pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temps_of_dead_agents_are_stale_and_ours_are_not() {
        let ours = format!("{TEMP_PREFIX}{}.00.f", std::process::id());
        assert!(!is_stale_temp(&ours));
        // Pid numbers above the kernel's pid_max are never alive.
        assert!(is_stale_temp(&format!("{TEMP_PREFIX}99999999.00.f")));
        assert!(!is_stale_temp("notes.txt"));
        assert!(!is_stale_temp(&format!("{TEMP_PREFIX}garbage")));
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
            remove_stale_temps(dir.path(), true),
            std::slice::from_ref(&stale)
        );
        assert!(!stale.exists());
        assert!(kept.exists());
    }

    /// Receives `data` into `dest` through the whole recipe; returns the SHA-256 reported.
    async fn receive(dest: &Path, data: &[u8], mode: u32) -> Result<String, ReceiveError> {
        let file = ReceivedFile::create(dest)?;
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
        let file = ReceivedFile::create(&folder.join("f")).unwrap();
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

    #[test]
    fn a_folder_that_is_a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
        let err = ReceivedFile::create(&dir.path().join("link").join("f")).err();
        assert!(
            matches!(err, Some(ReceiveError::FolderIsLink { .. })),
            "{err:?}"
        );
        let message = err.map(|err| err.to_string()).unwrap_or_default();
        assert!(message.contains("is a symbolic link"), "{message}");
        assert!(names_in(&dir.path().join("real")).is_empty());
    }

    #[tokio::test]
    async fn a_temp_file_never_outlives_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        // A size no file can have: refused after the temporary file was made.
        let file = ReceivedFile::create(&dir.path().join("huge")).unwrap();
        let err = file.reserve(u64::MAX).unwrap_err();
        assert!(matches!(err, ReceiveError::TooLarge { .. }), "{err}");
        drop(file);
        assert!(
            names_in(dir.path()).is_empty(),
            "{:?}",
            names_in(dir.path())
        );

        // Given up while being written.
        let receiving = ReceivedFile::create(&dir.path().join("half"))
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
    fn a_link_replaces_what_was_there_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("l");
        std::fs::write(&link, "a file before").unwrap();
        place_symlink(&link, "target/elsewhere").unwrap();
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("target/elsewhere")
        );
        assert_eq!(names_in(dir.path()), ["l"]);
    }

    #[test]
    fn a_mode_is_set_through_a_descriptor_and_not_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        set_file_mode(&file, 0o600).unwrap();
        assert_eq!(mode_of(&file), 0o600);
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(set_file_mode(&link, 0o644).is_err());
        assert_eq!(mode_of(&file), 0o600);
    }
}
