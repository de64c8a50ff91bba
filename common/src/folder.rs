//! Folders opened by path without following any symbolic link, and the entries in them
//! worked on through that open folder: how both sides find where a received file goes and
//! how the agent finds what it sends.
//!
//! The agent runs as root, and a folder on the way to a destination may be writable by a
//! local user, who can put a link there at any moment. So a path is looked up once, every
//! component with `O_NOFOLLOW|O_DIRECTORY` (`openat2` with `RESOLVE_NO_SYMLINKS` where the
//! kernel has it, else one `openat` per component), and everything after that is done on
//! the descriptor: `openat`, `mkdirat`, `fstat`, `fchmod`, `renameat`, `unlinkat` with a
//! plain name. A link anywhere on the way is refused, naming the link and where it points,
//! so the operator can name the real path; nothing is stat-ed first and acted on later.
//!
//! What lands in a folder and how is the callers' business ([`crate::atomic_file`]).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, CWD};
use rustix::io::Errno;

/// Mode of the folders [`Folder::open_or_create`] makes (before the umask).
const NEW_FOLDER_MODE: u32 = 0o755;

/// Why a folder could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A component of the path is a symbolic link.
    #[error(
        "{} is a symbolic link (to {}); links are not followed: name the real path",
        link.display(),
        target.display()
    )]
    Link {
        /// The link, as a path.
        link: PathBuf,
        /// What it points to, as stored in the link.
        target: PathBuf,
    },
    /// A component of the path does not exist.
    #[error("the folder {} does not exist", .0.display())]
    Missing(PathBuf),
    /// A component of the path is something other than a folder.
    #[error("{} is not a folder", .0.display())]
    NotAFolder(PathBuf),
    /// The operating system refused otherwise.
    #[error("cannot open the folder {}: {source}", path.display())]
    Io {
        /// The component that failed.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// An open folder and the path it was opened by (for messages only; never looked up again).
#[derive(Debug)]
pub struct Folder {
    fd: OwnedFd,
    path: PathBuf,
}

/// How a child entry turned out when opened without following it.
#[derive(Debug)]
pub enum Child {
    /// The entry, open.
    Open(OwnedFd),
    /// The entry is a symbolic link; this is where it points.
    Link(PathBuf),
}

impl Folder {
    /// Opens the folder at `path`, following no link on the way.
    ///
    /// # Errors
    /// [`OpenError`] naming the first component that is a link, missing, not a folder or
    /// refused.
    pub fn open(path: &Path) -> Result<Folder, OpenError> {
        if let Some(folder) = open_resolving_no_links(path) {
            return Ok(folder);
        }
        walk(path, false)
    }

    /// Opens the folder at `path`, creating missing components (`mkdirat`, mode 0755
    /// before the umask) and following no link on the way.
    ///
    /// # Errors
    /// As [`Folder::open`], except that missing components are made.
    pub fn open_or_create(path: &Path) -> Result<Folder, OpenError> {
        if let Some(folder) = open_resolving_no_links(path) {
            return Ok(folder);
        }
        walk(path, true)
    }

    /// Opens the folder at `path` *following* links: only for a path the local operator
    /// named on the command line (ctl's `--dest`), never for one from the wire.
    ///
    /// # Errors
    /// [`OpenError::Io`].
    pub fn open_following_links(path: &Path) -> Result<Folder, OpenError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|errno| OpenError::Io {
            path: path.to_owned(),
            source: errno.into(),
        })?;
        Ok(Folder {
            fd,
            path: path.to_owned(),
        })
    }

    /// The path it was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A second descriptor of the same open folder.
    ///
    /// # Errors
    /// The operating system's (out of descriptors).
    pub fn try_clone(&self) -> io::Result<Folder> {
        Ok(Folder {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// Opens the child folder `name` (one plain name), not through a link.
    ///
    /// # Errors
    /// As [`Folder::open`], naming the child.
    pub fn child_folder(&self, name: &OsStr) -> Result<Folder, OpenError> {
        step(self, name, false)
    }

    /// Opens the child folder `name` (one plain name), not through a link, creating it
    /// first (`mkdirat`, mode 0755 before the umask) when it is missing.
    ///
    /// # Errors
    /// As [`Folder::open`], naming the child.
    pub fn child_folder_or_create(&self, name: &OsStr) -> Result<Folder, OpenError> {
        step(self, name, true)
    }

    /// Opens the entry `name` in this folder with `flags` and `O_NOFOLLOW`: a link there is
    /// reported as [`Child::Link`] with its target, never followed.
    ///
    /// # Errors
    /// The operating system's.
    pub fn open_child(&self, name: &OsStr, flags: OFlags) -> io::Result<Child> {
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => Ok(Child::Open(fd)),
            Err(errno @ (Errno::LOOP | Errno::NOTDIR)) => match self.link_target(name) {
                Some(target) => Ok(Child::Link(target)),
                None => Err(errno.into()),
            },
            Err(errno) => Err(errno.into()),
        }
    }

    /// What the link `name` in this folder points to, or `None` when `name` is not a link.
    pub fn link_target(&self, name: &OsStr) -> Option<PathBuf> {
        let stat = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::Symlink {
            return None;
        }
        let target = rustix::fs::readlinkat(&self.fd, name, Vec::new()).ok()?;
        Some(PathBuf::from(OsStr::from_bytes(target.as_bytes())))
    }
}

impl AsFd for Folder {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// The fast way: one `openat2` that refuses any link on the way. `None` when it did not
/// succeed for any reason (no `openat2` in this kernel, a link, a missing component): the
/// component walk then finds out which and says so.
fn open_resolving_no_links(path: &Path) -> Option<Folder> {
    let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let fd = rustix::fs::openat2(CWD, path, DIR_FLAGS, Mode::empty(), resolve).ok()?;
    Some(Folder {
        fd,
        path: path.to_owned(),
    })
}

/// Opens `path` one component at a time, each with `O_NOFOLLOW|O_DIRECTORY` relative to
/// the one before, creating missing ones with `create`.
fn walk(path: &Path, create: bool) -> Result<Folder, OpenError> {
    let start = if path.is_absolute() { "/" } else { "." };
    let fd = rustix::fs::openat(CWD, start, DIR_FLAGS, Mode::empty()).map_err(|errno| {
        OpenError::Io {
            path: PathBuf::from(start),
            source: errno.into(),
        }
    })?;
    let mut folder = Folder {
        fd,
        path: PathBuf::from(start),
    };
    for component in path.components() {
        let name: OsString = match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
            Component::ParentDir => "..".into(),
            Component::Normal(name) => name.to_owned(),
        };
        folder = step(&folder, &name, create)?;
    }
    // Messages name the path as given, not as rebuilt from its components.
    folder.path = path.to_owned();
    Ok(folder)
}

/// Opens (or with `create` makes and opens) the folder `name` in `parent`.
fn step(parent: &Folder, name: &OsStr, create: bool) -> Result<Folder, OpenError> {
    let path = parent.path.join(name);
    let mut made = false;
    loop {
        match rustix::fs::openat(&parent.fd, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => return Ok(Folder { fd, path }),
            Err(Errno::NOENT) if create && !made => {
                let mode = Mode::from_raw_mode(NEW_FOLDER_MODE);
                match rustix::fs::mkdirat(&parent.fd, name, mode) {
                    Ok(()) | Err(Errno::EXIST) => made = true,
                    Err(errno) => {
                        return Err(OpenError::Io {
                            path,
                            source: errno.into(),
                        })
                    }
                }
            }
            Err(Errno::NOENT) => return Err(OpenError::Missing(path)),
            Err(Errno::LOOP | Errno::NOTDIR) => {
                return Err(match parent.link_target(name) {
                    Some(target) => OpenError::Link { link: path, target },
                    None => OpenError::NotAFolder(path),
                })
            }
            Err(errno) => {
                return Err(OpenError::Io {
                    path,
                    source: errno.into(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_plain_path_opens_and_missing_folders_are_made() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a").join("b");
        assert!(matches!(Folder::open(&deep), Err(OpenError::Missing(_))));
        let folder = Folder::open_or_create(&deep).unwrap();
        assert_eq!(folder.path(), deep);
        assert!(deep.is_dir());
        Folder::open(&deep).unwrap();
    }

    #[test]
    fn a_link_anywhere_on_the_way_is_refused_and_named() {
        // Tried: a link to a real folder as the last component, and as a middle one,
        // opened and opened-with-create: each is refused naming the link and its target,
        // and nothing is made in the folder it points to.
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        symlink(&real, &link).unwrap();
        for path in [link.clone(), link.join("below")] {
            for create in [false, true] {
                let got = match create {
                    true => Folder::open_or_create(&path),
                    false => Folder::open(&path),
                };
                match got {
                    Err(OpenError::Link {
                        link: named,
                        target,
                    }) => {
                        assert_eq!(named, link);
                        assert_eq!(target, real);
                    }
                    other => panic!("{}: {other:?}", path.display()),
                }
            }
        }
        assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0);
    }

    #[test]
    fn the_component_walk_refuses_links_like_openat2() {
        let dir = tempfile::tempdir().unwrap();
        symlink("/", dir.path().join("link")).unwrap();
        let err = walk(&dir.path().join("link").join("etc"), false).unwrap_err();
        assert!(
            err.to_string().contains("is a symbolic link (to /)"),
            "{err}"
        );
        let ok = walk(dir.path(), false).unwrap();
        assert_eq!(ok.path(), dir.path());
    }

    #[test]
    fn a_child_that_is_a_link_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        symlink("f", dir.path().join("l")).unwrap();
        let folder = Folder::open(dir.path()).unwrap();
        assert!(matches!(
            folder.open_child("f".as_ref(), OFlags::RDONLY).unwrap(),
            Child::Open(_)
        ));
        match folder.open_child("l".as_ref(), OFlags::RDONLY).unwrap() {
            Child::Link(target) => assert_eq!(target, Path::new("f")),
            other => panic!("{other:?}"),
        }
    }
}
