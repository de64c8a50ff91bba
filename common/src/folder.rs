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

    /// Opens the folders `names` below this one in turn, creating the missing ones, not
    /// through any link: where an entry whose wire path is `names` plus one last name goes.
    ///
    /// # Errors
    /// As [`Folder::child_folder_or_create`], naming the first folder that failed.
    pub fn descend_or_create(&self, names: &[&str]) -> Result<Folder, OpenError> {
        let mut folder = self.try_clone().map_err(|source| OpenError::Io {
            path: self.path.clone(),
            source,
        })?;
        for name in names {
            folder = folder.child_folder_or_create(OsStr::new(name))?;
        }
        Ok(folder)
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

/// The names of a `/`-separated relative path from the wire, or `None` when that path
/// could leave the folder it is taken in: an absolute path, `..`, `.`, an empty part, a NUL.
pub fn plain_names(wire_path: &str) -> Option<Vec<&str>> {
    if wire_path.is_empty() || wire_path.contains('\0') {
        return None;
    }
    let names: Vec<&str> = wire_path.split('/').collect();
    let all_plain = names.iter().all(|name| {
        !name.is_empty()
            && matches!(
                Path::new(name).components().collect::<Vec<_>>().as_slice(),
                [Component::Normal(_)]
            )
    });
    all_plain.then_some(names)
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
    fn plain_relative_paths_are_split_into_names() {
        assert_eq!(
            plain_names("app/logs/x.log"),
            Some(vec!["app", "logs", "x.log"])
        );
    }

    #[test]
    fn paths_that_could_escape_are_refused() {
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
            assert_eq!(plain_names(bad), None, "{bad:?}");
        }
    }

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

/// Property tests of what `ctl pull` does with an entry path from an agent: [`plain_names`],
/// then [`Folder::descend_or_create`] for the folders on the way. The fuzz target
/// `entry_path` checks the same on nightly.
///
/// Each case runs in a fresh folder that holds a link `link` to a folder outside it and a
/// regular file `file`, as an earlier entry of a hostile pull could have planted them.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// One `/`-separated part of a wire path: mostly plain names, often one that must be
    /// refused or that leads into what is planted.
    fn part() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-c]{1,3}",
            1 => Just("..".to_owned()),
            1 => Just(".".to_owned()),
            1 => Just(String::new()),
            1 => Just("link".to_owned()),
            1 => Just("file".to_owned()),
            1 => Just("a\0b".to_owned()),
            1 => "(?s).{1,4}",
        ]
    }

    fn wire_path() -> impl Strategy<Value = String> {
        (any::<bool>(), proptest::collection::vec(part(), 1..5)).prop_map(|(absolute, parts)| {
            format!("{}{}", if absolute { "/" } else { "" }, parts.join("/"))
        })
    }

    /// Checks what the two steps promise for `wire` below `base`.
    fn check(base: &Path, outside: &Path, wire: &str) -> Result<(), TestCaseError> {
        let names = plain_names(wire);
        let plain = !wire.is_empty()
            && !wire.contains('\0')
            && wire.split('/').all(|p| !matches!(p, "" | "." | ".."));
        prop_assert_eq!(names.is_some(), plain, "{:?}", wire);
        if let Some(names) = names {
            prop_assert_eq!(names.len(), wire.split('/').count());
            let (_, folders) = names.split_last().expect("at least one name");
            let got = Folder::open(base)
                .expect("base opens")
                .descend_or_create(folders);
            // Only the first name can be what is planted: deeper folders are made here.
            let through_planted = names.len() > 1 && matches!(names[0], "link" | "file");
            prop_assert_eq!(got.is_ok(), !through_planted, "{:?}: {:?}", wire, got);
            if let Ok(folder) = got {
                let mut expected = base.to_owned();
                expected.extend(folders);
                prop_assert_eq!(folder.path(), expected.as_path());
                let mut on_the_way = base.to_owned();
                for name in folders {
                    on_the_way.push(name);
                    let is_dir = std::fs::symlink_metadata(&on_the_way).is_ok_and(|m| m.is_dir());
                    prop_assert!(is_dir, "{:?} goes through {:?}", wire, on_the_way);
                }
            }
        }
        let escaped = std::fs::read_dir(outside)
            .expect("outside exists")
            .next()
            .is_some();
        prop_assert!(!escaped, "{:?} created something through the link", wire);
        Ok(())
    }

    proptest! {
        #[test]
        fn an_accepted_entry_path_is_plain_names_below_the_base(wire in wire_path()) {
            let dir = tempfile::tempdir().expect("tempdir");
            let (base, outside) = (dir.path().join("base"), dir.path().join("outside"));
            std::fs::create_dir_all(&base).unwrap();
            std::fs::create_dir_all(&outside).unwrap();
            std::os::unix::fs::symlink(&outside, base.join("link")).unwrap();
            std::fs::write(base.join("file"), b"x").unwrap();
            check(&base, &outside, &wire)?;
        }
    }
}
