//! Reading a file to send it: on a blocking thread of its own, a few chunks ahead of the
//! task that encrypts and sends them, each chunk shown to an [`Observer`] (a hash) as it is
//! read. ctl reads pushed files through this and the agent pulled ones, so on either side
//! reading and hashing overlap with encrypting and sending, on two cores.
//!
//! The thread lives as long as the file: one blocking thread per file, not a hand-off per
//! chunk, so a long transfer does not make the runtime start a thread after another
//! (each of which would keep an allocator arena of its own).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::frame::MAX_DATA_CHUNK;

/// What sees every chunk on the reading thread, with the offset it was read at.
pub trait Observer: Send + 'static {
    /// Takes note of `chunk`, read at `offset`.
    fn observe(&mut self, offset: u64, chunk: &[u8]);
}

impl Observer for Sha256 {
    fn observe(&mut self, _offset: u64, chunk: &[u8]) {
        self.update(chunk);
    }
}

impl<F: FnMut(u64, &[u8]) + Send + 'static> Observer for F {
    fn observe(&mut self, offset: u64, chunk: &[u8]) {
        self(offset, chunk)
    }
}

/// A file being read, in chunks of up to [`MAX_DATA_CHUNK`] bytes, by its own thread.
pub struct ChunkReader<O> {
    chunks: mpsc::Receiver<Bytes>,
    thread: JoinHandle<Result<O, String>>,
}

impl<O: Observer> ChunkReader<O> {
    /// Starts reading the first `size` bytes of `path` (bytes beyond them, if the file has
    /// grown, are not read); at most `read_ahead` chunks wait to be taken. Must be called
    /// inside a tokio runtime.
    pub fn start(path: PathBuf, size: u64, read_ahead: usize, observer: O) -> ChunkReader<O> {
        let open = {
            let path = path.clone();
            move || File::open(path)
        };
        ChunkReader::start_with(path, open, size, read_ahead, observer)
    }

    /// As [`ChunkReader::start`], with the file opened by `open` on the reading thread
    /// (the agent opens what it sends through a folder descriptor, without following
    /// links); `path` names it in messages.
    pub fn start_with(
        path: PathBuf,
        open: impl FnOnce() -> std::io::Result<File> + Send + 'static,
        size: u64,
        read_ahead: usize,
        observer: O,
    ) -> ChunkReader<O> {
        let (queue, chunks) = mpsc::channel(read_ahead);
        let thread =
            tokio::task::spawn_blocking(move || read_chunks(&path, open, size, observer, &queue));
        ChunkReader { chunks, thread }
    }

    /// The next chunk, in order; `None` once all `size` bytes were taken, or the reader
    /// stopped early ([`ChunkReader::finish`] says why).
    pub async fn next(&mut self) -> Option<Bytes> {
        self.chunks.recv().await
    }

    /// Stops reading, if it has not ended, and returns the observer, which has seen every
    /// chunk read.
    ///
    /// # Errors
    /// Why the file could not be read in full: it could not be opened or read, or it ended
    /// before `size` bytes (it shrank). Each message names the file.
    pub async fn finish(self) -> Result<O, String> {
        drop(self.chunks);
        self.thread
            .await
            .unwrap_or_else(|err| Err(format!("the reader task failed: {err}")))
    }
}

/// The reading thread: reads `size` bytes of `path` into `queue`, chunk by chunk, until
/// they are read or the queue's receiver is gone.
fn read_chunks<O: Observer>(
    path: &Path,
    open: impl FnOnce() -> std::io::Result<File>,
    size: u64,
    mut observer: O,
    queue: &mpsc::Sender<Bytes>,
) -> Result<O, String> {
    let cannot_read = |err: std::io::Error| format!("cannot read {}: {err}", path.display());
    let mut file = open().map_err(cannot_read)?;
    let mut offset = 0;
    while offset < size {
        let want = (size - offset).min(MAX_DATA_CHUNK as u64) as usize;
        let mut buf = BytesMut::zeroed(want);
        let n = file.read(&mut buf).map_err(cannot_read)?;
        if n == 0 {
            return Err(format!(
                "{} shrank while it was being read: {offset} of {size} bytes",
                path.display()
            ));
        }
        buf.truncate(n);
        observer.observe(offset, &buf);
        offset += n as u64;
        if queue.blocking_send(buf.freeze()).is_err() {
            // The taker stopped early; it knows why.
            break;
        }
    }
    Ok(observer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_holding(data: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, data).unwrap();
        (dir, path)
    }

    #[tokio::test]
    async fn reads_the_announced_bytes_in_order_and_shows_each_chunk_at_its_offset() {
        // Tried: a file of 2.5 chunks, with one byte more than announced (it grew).
        let size = MAX_DATA_CHUNK * 5 / 2;
        let data: Vec<u8> = (0..=size).map(|i| (i % 251) as u8).collect();
        let (_dir, path) = file_holding(&data);
        let mut offsets = Vec::new();
        let mut reader = ChunkReader::start(path, size as u64, 2, Sha256::new());
        let mut read = Vec::new();
        while let Some(chunk) = reader.next().await {
            offsets.push(read.len());
            read.extend_from_slice(&chunk);
        }
        let hash = reader.finish().await.unwrap().finalize();
        assert!(read == data[..size], "other bytes were read");
        assert_eq!(hex::encode(hash), crate::digest::sha256_hex(&data[..size]));
        assert_eq!(offsets, [0, MAX_DATA_CHUNK, 2 * MAX_DATA_CHUNK]);
    }

    #[tokio::test]
    async fn a_file_shorter_than_announced_is_an_error_that_names_it() {
        let (_dir, path) = file_holding(&[1; 1000]);
        let mut reader = ChunkReader::start(path.clone(), 5000, 2, Sha256::new());
        while reader.next().await.is_some() {}
        let err = reader.finish().await.unwrap_err();
        assert_eq!(
            err,
            format!(
                "{} shrank while it was being read: 1000 of 5000 bytes",
                path.display()
            )
        );
    }

    #[tokio::test]
    async fn a_missing_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone");
        let mut reader = ChunkReader::start(path.clone(), 10, 2, Sha256::new());
        assert!(reader.next().await.is_none());
        let err = reader.finish().await.unwrap_err();
        assert!(
            err.starts_with(&format!("cannot read {}: ", path.display())),
            "{err}"
        );
        assert!(err.contains("No such file"), "{err}");
    }

    #[tokio::test]
    async fn a_taker_that_stops_early_stops_the_reader() {
        // Tried: take one chunk of a 4-chunk file, then finish: the thread must end (not
        // wait on a full queue) and the observer has seen only what was read.
        let data = vec![3u8; MAX_DATA_CHUNK * 4];
        let (_dir, path) = file_holding(&data);
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = seen.clone();
        let observer = move |_offset: u64, chunk: &[u8]| {
            counter.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
        };
        let mut reader = ChunkReader::start(path, data.len() as u64, 1, observer);
        assert!(reader.next().await.is_some());
        drop(reader.finish().await.unwrap());
        let seen = seen.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            seen < data.len() as u64,
            "read {seen} bytes after the taker stopped"
        );
    }
}
