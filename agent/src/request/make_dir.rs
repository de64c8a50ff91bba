//! `make_dir`: a folder of a tree push exists afterwards with the pushed mode, and the answer
//! says whether it was created just now. Its files and links are requests of their own.

use std::os::unix::fs::PermissionsExt;

use common::message::Reply;

use super::paths::{destination, display, prepare_folder};
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
    /// A refusal when its parent is missing or it cannot be created or given its mode.
    pub fn apply(self, config: &Config) -> Result<Reply, RequestError> {
        let dir = destination(&config.files_dir, &self.path, &self.name);
        prepare_folder(&dir, self.mkdir)?;
        let created = match std::fs::create_dir(&dir) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {
                Ok(false)
            }
            Err(err) => Err(err),
        };
        let created = created
            .and_then(|created| {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(self.mode))
                    .map(|()| created)
            })
            .map_err(|source| Refusal::CreateFolder {
                path: dir.clone(),
                source,
            })?;
        Ok(Reply::Made {
            path: display(&dir),
            created,
        })
    }
}
