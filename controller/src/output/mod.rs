//! Everything `ctl` prints about hosts.
//!
//! - [`printer`]: a running command's output, live as `HOST: line`, as `--json` objects or
//!   as `--gather` blocks, through one printer thread with a byte budget in front of it.
//! - [`controls`]: control characters in host output, escaped on a terminal unless `--raw`.
//! - [`capped`]: the per-host copy that `--json` and `--gather` hold until a host (or the
//!   operation) ends, capped by `--max-output`.
//! - [`report`]: per-host results of pings and transfers, the closing summary.
//! - [`outdir`]: `--outdir`, each host's output also written to files as it arrives.
//!
//! Showing output is all this module does. Keeping output for the operation log is
//! [`crate::audit::kept`]'s, fed by the host's task before the chunk gets here.

pub mod capped;
pub mod controls;
pub mod outdir;
pub mod printer;
pub mod report;

pub use controls::Controls;
pub use printer::{Mode, OutputSink, Printer};
pub use report::{
    millis, print_bootstrap, print_ping, print_stdout, print_summary, print_trust, transfer_line,
};
