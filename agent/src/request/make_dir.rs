//! `make_dir`: a folder of a tree push exists afterwards with the pushed mode, and the answer
//! says whether it was created just now. Its files and links are requests of their own.
//!
//! The folder is made with `mkdirat` in its parent, opened (never through a link) and
//! given its mode with `fchmod` on that descriptor: a link planted at the folder's name is
//! refused, naming it, and neither it nor what it points to is touched.

use common::folder::OpenError;
use common::message::Reply;
use rustix::fs::Mode;
use rustix::io::Errno;

use super::paths::{destination, display, remove_stale};
use crate::config::Config;
use crate::error::{Refusal, RequestError};

/// A `make_dir` request.
#[derive(Debug)]
pub struct MakeDir {
    /// The folder, as the wire names it.
    pub path: String,
    /// Appended when `path` is an existing folder (scp's rule); empty for never.
    pub name: String,
    /// Permission bits.
    pub mode: u32,
    /// Create missing parent folders.
    pub mkdir: bool,
}

impl MakeDir {
    /// Creates the folder (or finds it there) and gives it its mode.
    ///
    /// # Errors
    /// A refusal when its parent is missing, it or a folder above it is a link, or it
    /// cannot be created or given its mode.
    pub fn apply(self, config: &Config) -> Result<Reply, RequestError> {
        let target = destination(&config.files_dir, &self.path, &self.name, self.mkdir)?;
        remove_stale(&target);
        let dir = target.path();
        let create_error = |source: std::io::Error| Refusal::CreateFolder {
            path: dir.clone(),
            source,
        };
        // Only the owner may enter it until its mode is set on the open folder.
        let created = match rustix::fs::mkdirat(&target.folder, &target.name, Mode::RWXU) {
            Ok(()) => true,
            Err(Errno::EXIST) => false,
            Err(errno) => return Err(create_error(errno.into()).into()),
        };
        let folder = target
            .folder
            .child_folder(&target.name)
            .map_err(|err| match err {
                err @ OpenError::Link { .. } => Refusal::Path(err),
                other => create_error(std::io::Error::other(other.to_string())),
            })?;
        rustix::fs::fchmod(&folder, Mode::from_raw_mode(self.mode))
            .map_err(|errno| create_error(errno.into()))?;
        Ok(Reply::Made {
            path: display(&dir),
            created,
        })
    }
}
