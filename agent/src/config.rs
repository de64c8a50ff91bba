//! The settings every session and every request reads, fixed when the agent starts (but
//! for `authorized_keys`, re-read when the file changes).
//!
//! They sit below both the server (which hands them to each session) and the requests
//! (which read their limits and the files folder), so neither has to import the other for
//! them. Parsing the flags into these is `main`'s business.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::identity::authorized_keys::AuthorizedKeysFile;

use crate::startups::Limits;

/// Settings every session reads.
#[derive(Debug)]
pub struct Config {
    /// TLS with the agent's host key, for every connection.
    pub tls: Arc<rustls::ServerConfig>,
    /// Which operator keys may connect, and for what.
    pub authorized_keys: AuthorizedKeysFile,
    /// How long a new connection has to finish the handshake.
    pub handshake_timeout: Duration,
    /// How long an authenticated connection may be silent, or refuse our output.
    pub idle_timeout: Duration,
    /// Time between SIGTERM and SIGKILL when a command is stopped.
    pub kill_grace: Duration,
    /// Authenticated connections served at once.
    pub max_connections: usize,
    /// Connections in the handshake at once, in all and per source.
    pub startup_limits: Limits,
    /// Where relative paths of pushes and pulls resolve.
    pub files_dir: PathBuf,
    /// The environment every command starts with, but its `MUSTER_OP_ID`
    /// (see [`crate::command_env`]).
    pub command_env: Vec<(OsString, OsString)>,
}
