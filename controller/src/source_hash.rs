//! The SHA-256 of one pushed file, computed once per push however many hosts it goes to,
//! while the data is being sent rather than in a pass before it.
//!
//! Every host's sender reads the file itself, at its own pace (a slow host slows only its own
//! reads). Each reader hands what it read to [`SourceHash::observe`]; only bytes past the
//! prefix hashed so far are fed to the hasher, so the fastest reader does the hashing and the
//! others skip it. Readers read sequentially from offset 0, so the hashed prefix always
//! reaches exactly as far as the furthest reader: there is never a gap to fill.
//!
//! The hash is of the bytes the *furthest* reader saw. If the file changes during the push,
//! a host whose reader saw other bytes gets data that does not match the hash sent after it,
//! and its agent refuses the file (keeping the old one): a file changed while it was being
//! pushed fails loudly instead of landing in two versions.
//!
//! When an agent already holds a file of the same size, the push needs the whole hash before
//! it sends anything; [`SourceHash::complete`] then reads and hashes the rest of the file,
//! continuing from the shared prefix.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// The shared, incremental SHA-256 of one source file of a known size.
#[derive(Debug)]
pub struct SourceHash {
    size: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    hasher: Sha256,
    /// Bytes `0..hashed` of the file have been fed to `hasher`.
    hashed: u64,
    /// Lowercase hex, once `hashed == size`.
    result: Option<String>,
}

impl SourceHash {
    /// A hash of a file that is `size` bytes long, nothing of it hashed yet.
    pub fn new(size: u64) -> SourceHash {
        SourceHash {
            size,
            state: Mutex::new(State {
                hasher: Sha256::new(),
                hashed: 0,
                result: None,
            }),
        }
    }

    /// Takes note of `chunk`, which a reader read at `offset`. Bytes beyond `size` are
    /// ignored (the file grew; only `size` bytes are pushed).
    pub fn observe(&self, offset: u64, chunk: &[u8]) {
        let mut state = self.state.lock().expect("no reader panics while hashing");
        state.feed(offset, chunk, self.size);
    }

    /// The hash, once every byte of the file has been observed.
    pub fn result(&self) -> Option<String> {
        let mut state = self.state.lock().expect("no reader panics while hashing");
        state.finish(self.size)
    }

    /// The whole hash: what the readers have not reached yet is read from `path` here.
    /// Readers that observe meanwhile wait, and find their bytes hashed already.
    ///
    /// # Errors
    /// The file cannot be read, or is shorter than `size` now.
    pub fn complete(&self, path: &Path) -> std::io::Result<String> {
        let mut state = self.state.lock().expect("no reader panics while hashing");
        if let Some(done) = state.finish(self.size) {
            return Ok(done);
        }
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::Start(state.hashed))?;
        let mut buf = vec![0u8; 1 << 20];
        while state.hashed < self.size {
            let want = (self.size - state.hashed).min(buf.len() as u64) as usize;
            let n = file.read(&mut buf[..want])?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "it shrank while it was being pushed",
                ));
            }
            let offset = state.hashed;
            state.feed(offset, &buf[..n], self.size);
        }
        Ok(state.finish(self.size).expect("every byte has been hashed"))
    }
}

impl State {
    fn feed(&mut self, offset: u64, chunk: &[u8], size: u64) {
        let end = (offset + chunk.len() as u64).min(size);
        if offset > self.hashed || end <= self.hashed {
            // Behind the hashed prefix (another reader hashed these bytes), or (never, as
            // readers read in order) a gap that cannot be hashed yet.
            return;
        }
        let from = (self.hashed - offset) as usize;
        let to = (end - offset) as usize;
        self.hasher.update(&chunk[from..to]);
        self.hashed = end;
    }

    fn finish(&mut self, size: u64) -> Option<String> {
        if self.result.is_none() && self.hashed == size {
            self.result = Some(hex::encode(std::mem::take(&mut self.hasher).finalize()));
        }
        self.result.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO_WORLD: &str = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";

    #[test]
    fn readers_at_different_paces_hash_the_file_once_in_order() {
        let hash = SourceHash::new(11);
        hash.observe(0, b"hello");
        hash.observe(0, b"hel"); // a slower reader, behind
        assert_eq!(hash.result(), None);
        hash.observe(3, b"lo wo"); // overlaps the hashed prefix
        hash.observe(5, b" world");
        assert_eq!(hash.result().as_deref(), Some(HELLO_WORLD));
        hash.observe(8, b"rld"); // late readers change nothing
        assert_eq!(hash.result().as_deref(), Some(HELLO_WORLD));
    }

    #[test]
    fn bytes_past_the_announced_size_are_not_hashed() {
        let hash = SourceHash::new(11);
        hash.observe(0, b"hello world and more");
        assert_eq!(hash.result().as_deref(), Some(HELLO_WORLD));
    }

    /// A file holding `text`, in a folder that lives as long as the returned guard.
    fn file_holding(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn complete_reads_what_the_readers_have_not_reached() {
        let (_dir, path) = file_holding("hello world");
        let hash = SourceHash::new(11);
        hash.observe(0, b"hello");
        assert_eq!(hash.complete(&path).unwrap(), HELLO_WORLD);
        assert_eq!(hash.result().as_deref(), Some(HELLO_WORLD));
    }

    #[test]
    fn complete_reports_a_file_that_shrank() {
        let (_dir, path) = file_holding("hello");
        let err = SourceHash::new(11).complete(&path).unwrap_err();
        assert!(err.to_string().contains("shrank"), "{err}");
    }

    #[test]
    fn an_empty_file_hashes_without_being_read() {
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(SourceHash::new(0).result().as_deref(), Some(empty));
    }
}
