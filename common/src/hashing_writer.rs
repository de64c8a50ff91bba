//! Writing a received file: on a blocking thread of its own, hashed as it goes. The agent
//! receives pushed files through this and ctl pulled ones.
//!
//! The receiving task only decrypts frames and queues their data; the SHA-256 pass and the
//! writes happen on the writer's thread, so the two use two cores. The queue is short and
//! bounded (its length is the caller's: it is memory per file being received): a slow disk
//! fills it, the receiver stops reading, and TCP slows the sender down.
//!
//! The data takes one of two ways to the disk ([`DiskPath`]):
//!
//! - **Through the page cache**, for small files and where memory per file must stay
//!   small. Left alone, the kernel keeps the data in the page cache and writes most of it
//!   only when the closing fsync asks, so the sender would wait for the whole file's disk
//!   write after its last byte. Each completed window is therefore handed to writeback at
//!   once (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which does not wait), so the disk
//!   works while the data still arrives.
//! - **Around it (`O_DIRECT`)**, for large files: the kernel copies nothing into the page
//!   cache, and a large transfer does not evict what the host's own services keep cached.
//!   The data is gathered into aligned blocks; a second thread writes one while the next one
//!   fills and is hashed, so hashing and writing overlap. A filesystem that refuses
//!   `O_DIRECT`, or an alignment it does not take, falls back to the page cache: the
//!   file's content must never depend on which way it took.
//!
//! Either way the caller's fsync before its rename makes the file durable and reports
//! write errors.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread;

use bytes::Bytes;
use memmap2::MmapMut;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Bytes written through the page cache between two writeback requests: large enough that
/// the requests cost nothing next to the data, small enough to start the disk early.
const WRITEBACK_WINDOW: u64 = 8 * 1024 * 1024;

/// The size of one direct write. Two blocks exist per file (one filling, one being
/// written), so this is half the memory a file takes: large enough that each write keeps
/// the disk busy, small enough that many files at once stay cheap (BENCHMARKS.md has the
/// sizes tried).
const DIRECT_BLOCK: usize = 1024 * 1024;

/// Direct writes start at offsets and come from addresses aligned to this, and are whole
/// multiples of it; 4 KiB covers disks with 512-byte and with 4 KiB logical blocks.
const DIRECT_ALIGN: usize = 4096;

/// Files of at least this size are worth writing around the page cache: the copy the
/// kernel saves outweighs a second thread and two blocks. Smaller files go through it.
pub const DIRECT_MIN_BYTES: u64 = 8 * 1024 * 1024;

/// How the written data reaches the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskPath {
    /// Through the page cache, writeback started as it goes: a queue and nothing more in
    /// memory per file.
    PageCache,
    /// Around the page cache where the filesystem allows it, in two 1 MiB blocks per file.
    Direct,
}

impl DiskPath {
    /// The better way for a file of `size` bytes, memory aside.
    pub fn for_size(size: u64) -> DiskPath {
        if size >= DIRECT_MIN_BYTES {
            DiskPath::Direct
        } else {
            DiskPath::PageCache
        }
    }
}

/// A file being written by its own blocking thread.
pub struct HashingWriter {
    queue: mpsc::Sender<Bytes>,
    thread: JoinHandle<Result<Written, WriteError>>,
}

/// Why a received file could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// A write failed (a full disk, say).
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The name the writer was started with.
        path: PathBuf,
        /// The first write error.
        source: io::Error,
    },
    /// The writer's thread panicked.
    #[error("the writer task failed: {0}")]
    Task(tokio::task::JoinError),
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
    pub fn start(file: File, name: PathBuf, queue_chunks: usize, disk: DiskPath) -> HashingWriter {
        let (queue, chunks) = mpsc::channel(queue_chunks);
        let thread = tokio::task::spawn_blocking(move || write_queued(file, &name, chunks, disk));
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
    /// [`WriteError::Io`] for the first write that failed (a full disk, say), with the
    /// file's name.
    pub async fn finish(self) -> Result<Written, WriteError> {
        drop(self.queue);
        self.thread
            .await
            .unwrap_or_else(|err| Err(WriteError::Task(err)))
    }
}

/// The writer thread: hashes and writes every chunk until the queue closes.
fn write_queued(
    file: File,
    name: &Path,
    chunks: mpsc::Receiver<Bytes>,
    disk: DiskPath,
) -> Result<Written, WriteError> {
    let mut hasher = Sha256::new();
    let written = match disk {
        DiskPath::Direct if start_direct(&file) => write_direct(&file, &mut hasher, chunks),
        _ => write_through_page_cache(&file, &mut hasher, chunks),
    };
    written.map_err(|source| WriteError::Io {
        path: name.to_owned(),
        source,
    })?;
    Ok(Written {
        file,
        sha256: hex::encode(hasher.finalize()),
    })
}

fn write_through_page_cache(
    mut file: &File,
    hasher: &mut Sha256,
    mut chunks: mpsc::Receiver<Bytes>,
) -> io::Result<()> {
    let (mut written, mut handed_over) = (0u64, 0u64);
    while let Some(chunk) = chunks.blocking_recv() {
        hasher.update(&chunk);
        file.write_all(&chunk)?;
        written += chunk.len() as u64;
        if written - handed_over >= WRITEBACK_WINDOW {
            start_writeback(file, handed_over, written - handed_over);
            handed_over = written;
        }
    }
    Ok(())
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

/// Turns `O_DIRECT` on for `file` if it is at an aligned offset and its filesystem takes
/// it; `false` means it stays on the page cache.
fn start_direct(mut file: &File) -> bool {
    let aligned = matches!(file.stream_position(), Ok(at) if at % DIRECT_ALIGN as u64 == 0);
    aligned && set_direct(file, true).is_ok()
}

fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(file, FcntlArg::F_GETFL)?);
    let flags = if on {
        flags | OFlag::O_DIRECT
    } else {
        flags - OFlag::O_DIRECT
    };
    fcntl(file, FcntlArg::F_SETFL(flags))?;
    Ok(())
}

/// Hashes the chunks and gathers them into aligned blocks on this thread, while a second
/// one writes the blocks in order. Two blocks go round between the threads.
fn write_direct(
    file: &File,
    hasher: &mut Sha256,
    mut chunks: mpsc::Receiver<Bytes>,
) -> io::Result<()> {
    let mut block = AlignedBlock::new()?;
    let (full_tx, full_rx) = std_mpsc::sync_channel::<AlignedBlock>(1);
    let (empty_tx, empty_rx) = std_mpsc::channel::<AlignedBlock>();
    // The second block starts out empty, as if the disk thread had just written it.
    empty_tx
        .send(AlignedBlock::new()?)
        .expect("the receiving end is still here");
    thread::scope(|scope| {
        let disk = scope.spawn(move || -> io::Result<()> {
            let mut direct = true;
            for mut block in full_rx {
                write_block(file, block.filled(), &mut direct)?;
                block.clear();
                // The filling side is gone only when it stopped early; nothing is lost.
                let _ = empty_tx.send(block);
            }
            Ok(())
        });
        // Stops early only when the disk thread has stopped, and then its error is the
        // one to report.
        'chunks: while let Some(chunk) = chunks.blocking_recv() {
            hasher.update(&chunk);
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                rest = &rest[block.fill_from(rest)..];
                if block.is_full() {
                    let Ok(next) = empty_rx.recv() else {
                        break 'chunks;
                    };
                    if full_tx.send(std::mem::replace(&mut block, next)).is_err() {
                        break 'chunks;
                    }
                }
            }
        }
        // The last block, partly filled; its unaligned tail goes through the page cache.
        if !block.filled().is_empty() {
            let _ = full_tx.send(block);
        }
        drop(full_tx);
        match disk.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Writes `data` at the file's position: its aligned part directly while `direct` holds,
/// the rest (only the last block has any) through the page cache. A direct write the
/// filesystem refuses (EINVAL: an alignment it does not take) turns `direct` off and is
/// retried through the page cache.
fn write_block(mut file: &File, data: &[u8], direct: &mut bool) -> io::Result<()> {
    let mut rest = data;
    while !rest.is_empty() {
        let aligned = rest.len() - rest.len() % DIRECT_ALIGN;
        if *direct && aligned == 0 {
            set_direct(file, false)?;
            *direct = false;
        }
        let take = if *direct { aligned } else { rest.len() };
        match file.write(&rest[..take]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if *direct && err.raw_os_error() == Some(libc::EINVAL) => {
                set_direct(file, false)?;
                *direct = false;
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// [`DIRECT_BLOCK`] bytes of their own pages, and how many of them are filled.
///
/// Mapped rather than allocated: pages are aligned as direct I/O needs, and they go back to
/// the kernel when the file is done. Blocks this size taken from the allocator stay in a
/// thread's arena after they are freed, so a long-lived agent would keep them resident
/// between transfers.
struct AlignedBlock {
    pages: MmapMut,
    len: usize,
}

impl AlignedBlock {
    fn new() -> io::Result<AlignedBlock> {
        Ok(AlignedBlock {
            pages: MmapMut::map_anon(DIRECT_BLOCK)?,
            len: 0,
        })
    }

    /// Copies as much of `data` as fits; returns how much that was.
    fn fill_from(&mut self, data: &[u8]) -> usize {
        let taken = data.len().min(DIRECT_BLOCK - self.len);
        self.pages[self.len..self.len + taken].copy_from_slice(&data[..taken]);
        self.len += taken;
        taken
    }

    fn is_full(&self) -> bool {
        self.len == DIRECT_BLOCK
    }

    fn filled(&self) -> &[u8] {
        &self.pages[..self.len]
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const BOTH: [DiskPath; 2] = [DiskPath::PageCache, DiskPath::Direct];

    /// Writes `data` in uneven chunks through a fresh writer on `file`; returns what the
    /// writer reported and the file's whole content afterwards.
    async fn write_through(
        file: File,
        path: &Path,
        data: &[u8],
        disk: DiskPath,
    ) -> (Written, Vec<u8>) {
        let writer = HashingWriter::start(file, path.to_owned(), 4, disk);
        for chunk in data.chunks(100_003) {
            assert!(writer.write(Bytes::copy_from_slice(chunk)).await);
        }
        let written = writer.finish().await.unwrap();
        let mut back = Vec::new();
        File::open(path).unwrap().read_to_end(&mut back).unwrap();
        (written, back)
    }

    fn patterned(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn writes_every_chunk_in_order_and_hashes_them() {
        // Tried, both ways to the disk: more than one writeback window and several direct
        // blocks, in chunks that straddle block boundaries, ending in an unaligned tail.
        for disk in BOTH {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let data = patterned(WRITEBACK_WINDOW as usize * 2 + 12345);
            let (written, back) =
                write_through(File::create(&path).unwrap(), &path, &data, disk).await;
            assert_eq!(written.sha256, crate::digest::sha256_hex(&data), "{disk:?}");
            assert!(back == data, "{disk:?}: the file holds other bytes");
        }
    }

    #[tokio::test]
    async fn small_and_block_sized_files_arrive_whole() {
        // Tried: sizes around the alignment and the direct block, empty included.
        let sizes = [
            0,
            1,
            DIRECT_ALIGN - 1,
            DIRECT_ALIGN,
            DIRECT_BLOCK - 1,
            DIRECT_BLOCK,
            DIRECT_BLOCK + 1,
            2 * DIRECT_BLOCK,
        ];
        for size in sizes {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let data = patterned(size);
            let (written, back) =
                write_through(File::create(&path).unwrap(), &path, &data, DiskPath::Direct).await;
            assert_eq!(written.sha256, crate::digest::sha256_hex(&data), "{size}");
            assert!(back == data, "{size} bytes: the file holds other bytes");
        }
    }

    #[tokio::test]
    async fn direct_writes_bypass_the_page_cache_where_the_filesystem_allows() {
        // Tried: 3 MiB (whole blocks, no unaligned tail) written directly; the file is
        // still in O_DIRECT mode afterwards, unless this filesystem refuses O_DIRECT at
        // all (checked with a probe file first).
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join("probe");
        File::create(&probe).unwrap();
        let takes_direct = set_direct(&File::open(&probe).unwrap(), true).is_ok();
        let path = dir.path().join("f");
        let data = patterned(3 * DIRECT_BLOCK);
        let (written, back) =
            write_through(File::create(&path).unwrap(), &path, &data, DiskPath::Direct).await;
        assert!(back == data, "the file holds other bytes");
        let flags = OFlag::from_bits_retain(fcntl(&written.file, FcntlArg::F_GETFL).unwrap());
        assert_eq!(flags.contains(OFlag::O_DIRECT), takes_direct);
    }

    #[tokio::test]
    async fn an_unaligned_start_goes_through_the_page_cache_and_keeps_what_is_there() {
        // Tried: a file that already holds 100 bytes, positioned after them.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = File::create(&path).unwrap();
        file.write_all(&[7; 100]).unwrap();
        let data = patterned(DIRECT_BLOCK + 5000);
        let (written, back) = write_through(file, &path, &data, DiskPath::Direct).await;
        assert_eq!(written.sha256, crate::digest::sha256_hex(&data));
        assert_eq!(&back[..100], &[7; 100]);
        assert!(back[100..] == data[..], "the file holds other bytes");
    }

    #[test]
    fn a_direct_write_the_filesystem_refuses_is_written_through_the_page_cache() {
        // Tried: with O_DIRECT on, write from a buffer one byte off alignment, which
        // filesystems with real direct I/O (ext4, xfs) refuse with EINVAL. Where the
        // filesystem has no O_DIRECT at all, the write simply goes through the page cache.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        let mut direct = set_direct(&file, true).is_ok();
        let storage = patterned(3 * DIRECT_ALIGN + 1);
        // The allocator aligns to 16 bytes, so one byte in is never 4 KiB aligned.
        let data = &storage[1..];
        write_block(&file, data, &mut direct).unwrap();
        eprintln!("O_DIRECT still on after the write: {direct}");
        assert!(
            std::fs::read(&path).unwrap() == data,
            "the file holds other bytes"
        );
    }

    #[tokio::test]
    async fn a_failed_direct_write_stops_both_threads_and_names_the_file() {
        // Tried: a file opened read-only, which takes O_DIRECT (on filesystems with direct
        // I/O) but refuses every write (EBADF): the error comes from the second thread,
        // which must stop the filling thread too. (/dev/full, below, refuses O_DIRECT, so
        // it tests the page cache path either way.)
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        File::create(&path).unwrap();
        let read_only = File::open(&path).unwrap();
        let writer = HashingWriter::start(read_only, path.clone(), 4, DiskPath::Direct);
        let mut accepted = 0;
        while writer.write(Bytes::from(vec![1; 256 * 1024])).await {
            accepted += 1;
            assert!(accepted < 1000, "the writer never stopped");
        }
        let err = writer.finish().await.unwrap_err().to_string();
        let want = format!("cannot write {}: ", path.display());
        assert!(
            err.starts_with(&want) && err.contains("Bad file descriptor"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_failed_write_stops_the_writer_and_names_the_file() {
        // /dev/full refuses every write with ENOSPC, as a full disk does. It also refuses
        // O_DIRECT, so with DiskPath::Direct this is the fallback to the page cache.
        for disk in BOTH {
            let full = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .expect("Linux has /dev/full");
            let writer = HashingWriter::start(full, PathBuf::from("/dest/file"), 4, disk);
            let mut accepted = 0;
            while writer.write(Bytes::from_static(&[1; 4096])).await {
                accepted += 1;
                assert!(accepted < 10_000, "{disk:?}: the writer never stopped");
            }
            let err = writer.finish().await.unwrap_err().to_string();
            assert!(
                err.starts_with("cannot write /dest/file"),
                "{disk:?}: {err}"
            );
        }
    }
}
