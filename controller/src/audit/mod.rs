//! The operation log: who ran what, where, when, and what came of it, in a form that cannot
//! be quietly rewritten.
//!
//! - [`record`]: the record type (one JSON object per line) and how an operation makes its
//!   `start` and `end` records. The only definition of what a record holds.
//! - [`seal`]: the signed hash chain. Each line carries the operator's OpenSSH signature
//!   over its content, and the content holds the previous line's SHA-256 and a sequence
//!   number, so an edit, a deletion, a reordering, an insertion or a record in another
//!   operator's name breaks the chain at a line `ctl log verify` can name, with public keys
//!   only.
//! - [`store`]: the files: a lock file around read-last-line + sign + append + fsync,
//!   rotation by size into `audit-<first seq>.jsonl`, and reading every file back in order.
//! - [`kept`]: each host's output kept beside the log, capped, with its SHA-256 in the
//!   `end` record so it is covered by the chain too.
//!
//! This is a record of operations, not diagnostics, so none of it goes through tracing.

pub mod kept;
pub mod record;
pub mod seal;
pub mod store;

pub use record::{Kind, Operation, Record};
pub use store::AuditLog;
