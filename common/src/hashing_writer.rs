//! Writing a received file: on a blocking thread of its own, hashed as it goes, with its
//! disk write started while it still arrives. The agent receives pushed files through this
//! and ctl pulled ones.
//!
//! The receiving task only decrypts frames and queues their data; the SHA-256 pass and the
//! writes happen on the writer's thread, so the two use two cores. The queue is short and
//! bounded (its length is the caller's: it is memory per file being received): a slow disk
//! fills it, the receiver stops reading, and TCP slows the sender down.
//!
//! Without an early start, the kernel keeps the data in the page cache and writes most of
//! it only when the closing fsync asks, so the sender would wait for the whole file's disk
//! write after its last byte (0.3 s of a 1.9 s push of 1 GiB on the benchmark machine).
//! Each completed window is therefore handed to writeback at once
//! (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which does not wait). That is advice only: the
//! caller's fsync before its rename still makes the file durable and reports write errors.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Bytes written between two writeback requests: large enough that the requests cost
/// nothing next to the data, small enough to start the disk early.
const WRITEBACK_WINDOW: u64 = 8 * 1024 * 1024;

/// A file being written by its own blocking thread.
pub struct HashingWriter {
    queue: mpsc::Sender<Bytes>,
    thread: JoinHandle<Result<Written, String>>,
}

/// A file written in full, still open for the caller's fsync.
#[derive(Debug)]
pub struct Written {
    /// The file.
    pub file: File,
    /// SHA-256 of everything written, lowercase hex.
    pub sha256: String,
}

impl HashingWriter {
    /// Starts writing to `file` from its current position. `name` is the path that error
    /// messages show; at most `queue_chunks` chunks wait for the writer. Must be called
    /// inside a tokio runtime.
    pub fn start(file: File, name: PathBuf, queue_chunks: usize) -> HashingWriter {
        let (queue, chunks) = mpsc::channel(queue_chunks);
        let thread = tokio::task::spawn_blocking(move || write_queued(file, &name, chunks));
        HashingWriter { queue, thread }
    }

    /// Queues one chunk, waiting while the queue is full. `false` means the writer has
    /// stopped because a write failed; [`HashingWriter::finish`] says why.
    pub async fn write(&self, chunk: Bytes) -> bool {
        self.queue.send(chunk).await.is_ok()
    }

    /// Waits until everything queued is written; returns the file and its SHA-256.
    ///
    /// # Errors
    /// The first write that failed (a full disk, say), with the file's name.
    pub async fn finish(self) -> Result<Written, String> {
        drop(self.queue);
        self.thread
            .await
            .unwrap_or_else(|err| Err(format!("the writer task failed: {err}")))
    }
}

/// The writer thread: hashes and writes every chunk until the queue closes.
fn write_queued(
    mut file: File,
    name: &std::path::Path,
    mut chunks: mpsc::Receiver<Bytes>,
) -> Result<Written, String> {
    let mut hasher = Sha256::new();
    let (mut written, mut handed_over) = (0u64, 0u64);
    while let Some(chunk) = chunks.blocking_recv() {
        hasher.update(&chunk);
        file.write_all(&chunk)
            .map_err(|err| format!("cannot write {}: {err}", name.display()))?;
        written += chunk.len() as u64;
        if written - handed_over >= WRITEBACK_WINDOW {
            start_writeback(&file, handed_over, written - handed_over);
            handed_over = written;
        }
    }
    Ok(Written {
        file,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Asks the kernel to start writing `len` bytes of `file` at `offset` to disk, without
/// waiting. Failure only means no head start (a filesystem that does not support it, say),
/// so it is ignored: the caller's fsync reports real write errors.
fn start_writeback(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is valid
    // and open for as long as `file` is borrowed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[tokio::test]
    async fn writes_every_chunk_in_order_and_hashes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let writer = HashingWriter::start(File::create(&path).unwrap(), path.clone(), 4);
        // More than one writeback window, in uneven chunks.
        let data: Vec<u8> = (0..(WRITEBACK_WINDOW as usize * 2 + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        for chunk in data.chunks(100_003) {
            assert!(writer.write(Bytes::copy_from_slice(chunk)).await);
        }
        let written = writer.finish().await.unwrap();
        assert_eq!(written.sha256, crate::digest::sha256_hex(&data));
        let mut back = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }

    #[tokio::test]
    async fn a_failed_write_stops_the_writer_and_names_the_file() {
        // /dev/full refuses every write with ENOSPC, as a full disk does.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("Linux has /dev/full");
        let writer = HashingWriter::start(full, PathBuf::from("/dest/file"), 4);
        let mut accepted = 0;
        while writer.write(Bytes::from_static(&[1; 4096])).await {
            accepted += 1;
            assert!(accepted < 1000, "the writer never stopped");
        }
        let err = writer.finish().await.unwrap_err();
        assert!(err.starts_with("cannot write /dest/file"), "{err}");
    }
}
