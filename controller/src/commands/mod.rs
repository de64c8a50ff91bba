//! One module per `ctl` subcommand: the recipe that strings the other modules together.
//!
//! Each returns the process's [`Exit`] status; an `Err` means the operation could not start
//! (usage, inventory, key or log folder), nothing was contacted, and `main` exits 2.

mod bootstrap;
mod hosts;
mod log;
mod operation;
mod ping;
mod reference;
mod rerun;
mod run;
mod transfer;
mod trust;

pub use bootstrap::bootstrap;
pub use hosts::{hosts, keygen};
pub use log::log;
pub use ping::ping;
pub use reference::{completions, man};
pub use rerun::rerun;
pub use run::run;
pub use transfer::{pull, push};
pub use trust::trust;

use crate::outcome::HostOutcome;

/// `ctl`'s exit statuses (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every target succeeded.
    Success = 0,
    /// At least one target failed, timed out, or could not be reached or authenticated.
    SomeHostsFailed = 1,
    /// Usage, inventory, key or log errors: nothing was contacted.
    Usage = 2,
    /// The operator pressed Ctrl-C (128 + SIGINT, as shells report it).
    Interrupted = 130,
}

impl Exit {
    pub(crate) fn from_outcomes(outcomes: &[HostOutcome]) -> Exit {
        if outcomes.iter().all(HostOutcome::is_ok) {
            Exit::Success
        } else {
            Exit::SomeHostsFailed
        }
    }
}
