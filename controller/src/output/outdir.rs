//! `--outdir DIR`: each host's stdout and stderr also written to `DIR/<host>.out` and
//! `DIR/<host>.err` as the chunks arrive (the clush and pssh convention). Every chunk is
//! written before the next is read, so nothing is held for the files.
//!
//! The files are made anew for each operation, mode 0600 (they hold what the hosts
//! printed), and never through a link: a link planted at a file's name is refused.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use common::message::Stream;
use common::private_file::FILE_MODE;

use crate::stream_pair::StreamPair;

/// One host's two files. A file that cannot be made or written is reported once on
/// stderr and then left alone; the operation goes on.
pub struct HostFiles {
    host: String,
    files: StreamPair<Option<File>>,
}

impl HostFiles {
    /// Creates (or empties) `dir/<host>.out` and `dir/<host>.err`.
    pub fn create(dir: &Path, host: &str) -> HostFiles {
        let files = StreamPair::from_fn(|stream| {
            let path = dir.join(format!("{host}.{}", extension(stream)));
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(FILE_MODE)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|err| warn(host, &path, &err))
                .ok()
        });
        HostFiles {
            host: host.to_owned(),
            files,
        }
    }

    /// Appends a chunk of `stream`.
    pub fn write(&mut self, stream: Stream, bytes: &[u8]) {
        let slot = self.files.get_mut(stream);
        if let Some(file) = slot {
            if let Err(err) = file.write_all(bytes) {
                let name = format!("{}.{}", self.host, extension(stream));
                warn(&self.host, Path::new(&name), &err);
                *slot = None;
            }
        }
    }
}

fn extension(stream: Stream) -> &'static str {
    match stream {
        Stream::Stdout => "out",
        Stream::Stderr => "err",
    }
}

fn warn(host: &str, path: &Path, err: &io::Error) {
    eprintln!(
        "ctl: warning: {host}: --outdir: cannot write {}: {err}; its output is still shown and kept",
        path.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_land_in_the_hosts_files_and_a_planted_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = HostFiles::create(dir.path(), "web1");
        files.write(Stream::Stdout, b"one\n");
        files.write(Stream::Stderr, b"oops\n");
        files.write(Stream::Stdout, b"two\n");
        drop(files);
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(read("web1.out"), "one\ntwo\n");
        assert_eq!(read("web1.err"), "oops\n");

        // Tried: web2.out is a link to a file elsewhere; it must not be written through.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, "keep").unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("web2.out")).unwrap();
        let mut files = HostFiles::create(dir.path(), "web2");
        files.write(Stream::Stdout, b"through the link?\n");
        assert_eq!(read("elsewhere"), "keep");
    }
}
