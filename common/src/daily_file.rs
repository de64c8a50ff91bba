//! A file per day, `DIR/PREFIX.YYYY-MM-DD` (UTC), that only its owner may read: what
//! [`crate::diagnostics_file`] writes diagnostics into.
//!
//! The files hold every command line an agent ran and every host ctl contacted, so they are
//! created with mode 0600 and their folder, when it is missing, with 0700, each with its
//! mode at creation rather than changed afterwards (nothing can open them in between).
//! `tracing_appender::rolling` cannot do that: it creates files with the default mode, so
//! this small writer takes its place. Files and folders that already exist keep their
//! modes: they are the operator's.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use time::{Date, OffsetDateTime};

/// The mode of a log file the process creates.
pub const FILE_MODE: u32 = 0o600;
/// The mode of a log folder the process creates.
pub const FOLDER_MODE: u32 = 0o700;

/// Creates `dir` and any missing folders above it with [`FOLDER_MODE`]; an existing folder
/// is left as it is.
///
/// # Errors
/// A folder cannot be created.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(FOLDER_MODE)
        .create(dir)
}

/// Opens `path` to append, creating it with [`FILE_MODE`] when it does not exist.
///
/// # Errors
/// The file cannot be opened or created.
pub fn open_private_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Appends to today's `DIR/PREFIX.YYYY-MM-DD`, moving to the next file when the UTC date
/// changes.
#[derive(Debug)]
pub struct DailyFile {
    dir: PathBuf,
    prefix: String,
    current: Option<(Date, File)>,
}

impl DailyFile {
    /// Files named `PREFIX.YYYY-MM-DD` in `dir`; nothing is opened until the first write.
    pub fn new(dir: &Path, prefix: &str) -> DailyFile {
        DailyFile {
            dir: dir.to_owned(),
            prefix: prefix.to_owned(),
            current: None,
        }
    }

    /// The path of the file for `date`.
    pub fn path_for(&self, date: Date) -> PathBuf {
        let (year, month, day) = (date.year(), u8::from(date.month()), date.day());
        self.dir
            .join(format!("{}.{year:04}-{month:02}-{day:02}", self.prefix))
    }

    fn file_for_today(&mut self) -> io::Result<&mut File> {
        let today = OffsetDateTime::now_utc().date();
        if self.current.as_ref().is_none_or(|(date, _)| *date != today) {
            self.current = None;
            create_private_dir(&self.dir)?;
            let file = open_private_append(&self.path_for(today))?;
            self.current = Some((today, file));
        }
        let (_, file) = self.current.as_mut().expect("opened above");
        Ok(file)
    }
}

impl Write for DailyFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file_for_today()?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.current {
            Some((_, file)) => file.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_folder_and_file_are_the_owners_alone() {
        // Tried: a log folder two levels below an existing one, and the first line written.
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("logs/agent");
        let mut file = DailyFile::new(&dir, "agent.log");
        file.write_all(b"a line\n").unwrap();
        let path = file.path_for(OffsetDateTime::now_utc().date());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a line\n");
        assert_eq!(mode_of(&path), FILE_MODE, "{}", path.display());
        assert_eq!(mode_of(&dir), FOLDER_MODE);
        assert_eq!(mode_of(&root.path().join("logs")), FOLDER_MODE);
    }

    #[test]
    fn the_file_is_named_after_the_utc_date() {
        let file = DailyFile::new(Path::new("/var/log/muster"), "agent.log");
        let date = Date::from_calendar_date(2026, time::Month::March, 7).unwrap();
        assert_eq!(
            file.path_for(date),
            Path::new("/var/log/muster/agent.log.2026-03-07")
        );
    }
}
