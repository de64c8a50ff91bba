//! `make_symlink`: a link of a tree push. A new link is made beside the old path and
//! renamed over it (`common::atomic_file::place_symlink`), unless the same link is there
//! already. What the link points to is neither checked nor followed, and neither is any
//! link on the way to it: its folder is opened once, without following links.

use std::path::Path;

use common::atomic_file::place_symlink;
use common::message::Reply;

use super::paths::{display, entry, resolve};
use crate::config::Config;
use crate::error::{Refusal, RequestError};

/// A `make_symlink` request.
#[derive(Debug)]
pub struct MakeSymlink {
    /// The link, as the wire names it.
    pub path: String,
    /// What it points to, as given.
    pub target: String,
}

impl MakeSymlink {
    /// Puts the link in place; the answer says whether anything changed.
    ///
    /// # Errors
    /// A refusal when the link cannot be made.
    pub fn apply(self, config: &Config) -> Result<Reply, RequestError> {
        let link = entry(&resolve(&config.files_dir, &self.path), false)?;
        let same = link.folder.link_target(&link.name).as_deref() == Some(Path::new(&self.target));
        let created = !same;
        if created {
            place_symlink(&link.folder, &link.name, &self.target).map_err(Refusal::from)?;
        }
        Ok(Reply::Made {
            path: display(&link.path()),
            created,
        })
    }
}
