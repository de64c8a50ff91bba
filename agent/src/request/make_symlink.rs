//! `make_symlink`: a link of a tree push. A new link is made beside the old path and
//! renamed over it (`common::atomic_file::place_symlink`), unless the same link is there
//! already. What the link points to is neither checked nor followed.

use std::path::Path;

use common::atomic_file::place_symlink;
use common::message::Reply;

use super::paths::{display, prepare_folder, resolve};
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
        let link = resolve(&config.files_dir, &self.path);
        let created =
            !std::fs::read_link(&link).is_ok_and(|existing| existing == Path::new(&self.target));
        if created {
            prepare_folder(&link, false)?;
            place_symlink(&link, &self.target).map_err(Refusal::from)?;
        }
        Ok(Reply::Made {
            path: display(&link),
            created,
        })
    }
}
