//! The two ways a request can fail, kept apart in the types.
//!
//! A [`Refusal`] concerns one request only (a missing folder, a full disk, a checksum that
//! does not match): it is answered with `Reply::Error` and the connection goes on. A
//! [`ConnectionError`] means the connection itself is lost (the controller vanished,
//! stalled or broke the protocol): nothing more is sent and the session drops it.
//! [`RequestError`] is either, so that a request's code can use `?` on both and the
//! dispatcher in [`crate::request`] decides once what each means.
//!
//! The messages are what the controller shows (refusals) or what the agent logs (lost
//! connections); tests match some of them, so they change only on purpose.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use common::atomic_file::ReceiveError;
use common::channel::{ChannelError, SendError};
use common::folder::OpenError;
use tokio::task::JoinError;

/// Why a connection must be dropped.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// No request arrived for the idle timeout.
    #[error("idle for {}s", .0.as_secs())]
    Idle(Duration),
    /// The controller took none of our data for the idle timeout.
    #[error("controller took no data for {}s", .0.as_secs())]
    Stalled(Duration),
    /// A push stopped sending data for the idle timeout.
    #[error("no file data for {}s", .0.as_secs())]
    NoFileData(Duration),
    /// The controller closed the connection while its command ran.
    #[error("the controller closed the connection mid-command")]
    ClosedMidCommand,
    /// The controller closed the connection in the middle of a pushed file.
    #[error("the controller closed the connection mid-file")]
    ClosedMidFile,
    /// Something other than a cancel arrived while a command ran.
    #[error("unexpected message while a command runs: {0}")]
    UnexpectedWhileRunning(String),
    /// Output or file data arrived where a request belongs.
    #[error("unexpected data from the controller")]
    UnexpectedData,
    /// A `put_end` or `put_keep` arrived where a request belongs.
    #[error("the end of a file push that was never started")]
    PutEndWithoutPut,
    /// Something other than file data or its end arrived in a push.
    #[error("expected file data, got {0}")]
    ExpectedFileData(String),
    /// A push sent more than the size it announced.
    #[error("the controller sent more than the {size} bytes it announced")]
    TooMuchData {
        /// The announced size.
        size: u64,
    },
    /// A push ended before the size it announced.
    #[error("the controller ended the file after {received} of the {size} bytes it announced")]
    EndedEarly {
        /// Bytes received.
        received: u64,
        /// The announced size.
        size: u64,
    },
    /// A `put_keep` arrived after file data.
    #[error("the controller asked to keep a file it had started to send")]
    KeepAfterData,
    /// Waiting for the command's exit failed.
    #[error("waiting for the command: {0}")]
    WaitForCommand(io::Error),
    /// The thread that lists a pulled tree panicked.
    #[error("listing task failed: {0}")]
    ListingTask(JoinError),
    /// The channel failed (transport, authentication of a frame, a malformed message).
    #[error(transparent)]
    Channel(#[from] ChannelError),
}

impl From<SendError> for ConnectionError {
    fn from(err: SendError) -> ConnectionError {
        match err {
            SendError::Stalled(limit) => ConnectionError::Stalled(limit),
            SendError::Failed(err) => ConnectionError::Channel(err),
        }
    }
}

/// Why one request is refused; the connection stays usable.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The shell could not be started.
    #[error("cannot start sh: {0}")]
    CannotStart(io::Error),
    /// A variable the controller asked for cannot be set (`ctl run -e`).
    #[error("cannot set the variable: {0}")]
    BadVariable(String),
    /// The folder the command was to start in cannot be entered (`ctl run -C`).
    #[error("cannot start the command in {}: {source}", path.display())]
    NoWorkingFolder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A push's folder is missing and `mkdir` was not asked for.
    #[error("the folder {} does not exist (push with --mkdir to create it)", .0.display())]
    NoFolder(PathBuf),
    /// A path from the wire leads through a link, or a folder on it cannot be opened.
    #[error(transparent)]
    Path(OpenError),
    /// A path from the wire that names no entry (`/`, or one ending in `..`).
    #[error("{} names no file or folder", .0.display())]
    NoName(PathBuf),
    /// The entry asked for is a link (and is not sent as one).
    #[error(
        "{} is a symbolic link (to {}); links are not followed: name the real path (or pull with -r to get the link itself)",
        path.display(),
        target.display()
    )]
    IsLink {
        /// The link.
        path: PathBuf,
        /// What it points to.
        target: PathBuf,
    },
    /// An entry could not be opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The entry.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A folder could not be created, or given its mode.
    #[error("cannot create the folder {}: {source}", path.display())]
    CreateFolder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A `put_keep` for content the destination does not hold.
    #[error(
        "cannot keep {}: it does not hold the content {asked}; the destination was left as it was",
        path.display()
    )]
    CannotKeep {
        /// The destination.
        path: PathBuf,
        /// The SHA-256 the controller asked to keep.
        asked: String,
    },
    /// The pushed data does not hash to what the controller announced.
    #[error(
        "checksum mismatch for {}: received data hashes to {received}, the controller announced {announced}; the destination was left as it was",
        path.display()
    )]
    ChecksumMismatch {
        /// The destination.
        path: PathBuf,
        /// SHA-256 of what arrived.
        received: String,
        /// SHA-256 the controller sent.
        announced: String,
    },
    /// Receiving or placing a file or link failed.
    #[error(transparent)]
    File(#[from] ReceiveError),
    /// The thread that makes the temporary file panicked.
    #[error("the allocating task failed: {0}")]
    AllocatingTask(JoinError),
    /// A pulled path cannot be read or listed.
    #[error("{}: {source}", path.display())]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A folder pulled without `recursive`.
    #[error("{} is a directory (pull it with -r)", .0.display())]
    IsDirectory(PathBuf),
    /// A pulled path that is a socket, fifo or device.
    #[error("{} is not a file, folder or link", .0.display())]
    NotAFile(PathBuf),
    /// A pulled file could not be read as announced (it vanished, shrank or is unreadable).
    #[error("{0}")]
    Read(String),
}

/// How a request ended other than with its answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Answered with `Reply::Error`; the connection goes on.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The connection must be dropped.
    #[error(transparent)]
    Dropped(#[from] ConnectionError),
}

impl From<SendError> for RequestError {
    fn from(err: SendError) -> RequestError {
        RequestError::Dropped(err.into())
    }
}

impl From<ReceiveError> for RequestError {
    fn from(err: ReceiveError) -> RequestError {
        RequestError::Refused(err.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stalled_send_is_a_stalled_connection_with_the_old_message() {
        let err = ConnectionError::from(SendError::Stalled(Duration::from_secs(300)));
        assert_eq!(err.to_string(), "controller took no data for 300s");
        let err = RequestError::from(SendError::Stalled(Duration::from_secs(3)));
        assert!(matches!(err, RequestError::Dropped(_)), "{err}");
    }

    #[test]
    fn a_file_that_cannot_be_received_is_a_refusal() {
        let err = RequestError::from(ReceiveError::TooLarge { size: u64::MAX });
        assert!(matches!(err, RequestError::Refused(_)), "{err}");
        assert_eq!(
            err.to_string(),
            format!("{} bytes is more than a file can hold", u64::MAX)
        );
    }
}
