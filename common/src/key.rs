//! The shared fleet key: reading it from a key file, checking it, and making new ones.
//!
//! A key file holds the secret as hex text (whitespace around it is ignored), at least
//! [`MIN_KEY_BYTES`] bytes of secret. Like ssh with private keys, a key file that group or
//! others may read is refused: a key everyone on the box can read authenticates everyone.
//! The key's `Debug` never shows the secret, so it cannot leak into a log line by accident.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The least secret a key may hold, in bytes.
pub const MIN_KEY_BYTES: usize = 16;
/// The most secret a key may hold, in bytes; anything longer is surely the wrong file.
pub const MAX_KEY_BYTES: usize = 1024;
/// How many bytes of secret [`Key::generate`] makes.
pub const GENERATED_KEY_BYTES: usize = 32;

/// The shared secret that agents and controllers prove to each other.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

/// Why a key could not be read, parsed or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The key file may be read by group or others.
    #[error(
        "key file {path} is accessible by group or others (mode {mode:04o}); run `chmod 600 {path}`"
    )]
    TooOpen {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The content is not hex text.
    #[error("key file {path} is not hex text: {reason}")]
    NotHex {
        /// The key file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// The key is shorter or longer than allowed.
    #[error("key file {path} holds {len} bytes of secret; a key must hold {MIN_KEY_BYTES} to {MAX_KEY_BYTES}")]
    BadLength {
        /// The key file.
        path: PathBuf,
        /// How many bytes it held.
        len: usize,
    },
    /// `keygen` was asked to write over an existing file.
    #[error("key file {path} already exists; remove it first to replace the key")]
    Exists {
        /// The key file.
        path: PathBuf,
    },
}

impl Key {
    /// Reads a key file, refusing it when group or others may access it.
    ///
    /// # Errors
    /// [`KeyError`] when the file cannot be read, is too open, is not hex, or is too short.
    pub fn load(path: &Path) -> Result<Key, KeyError> {
        let io_err = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = fs::metadata(path).map_err(io_err)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
        let text = fs::read_to_string(path).map_err(io_err)?;
        Key::from_hex(&text).map_err(|err| err.at(path))
    }

    /// Parses hex text (surrounding whitespace ignored) into a key.
    ///
    /// # Errors
    /// [`KeyError::NotHex`] or [`KeyError::BadLength`], with an empty path.
    pub fn from_hex(text: &str) -> Result<Key, KeyError> {
        let bytes = hex::decode(text.trim()).map_err(|err| KeyError::NotHex {
            path: PathBuf::new(),
            reason: err.to_string(),
        })?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&bytes.len()) {
            return Err(KeyError::BadLength {
                path: PathBuf::new(),
                len: bytes.len(),
            });
        }
        Ok(Key(bytes))
    }

    /// Makes a new random key of [`GENERATED_KEY_BYTES`] bytes from the operating system's
    /// random source.
    pub fn generate() -> Key {
        let mut bytes = vec![0u8; GENERATED_KEY_BYTES];
        getrandom::fill(&mut bytes).expect("the operating system random source works");
        Key(bytes)
    }

    /// Writes the key as hex to a new file with mode 0600. An existing file is never replaced.
    ///
    /// # Errors
    /// [`KeyError::Exists`] if the file exists, [`KeyError::Io`] on any other failure.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::AlreadyExists => KeyError::Exists {
                    path: path.to_owned(),
                },
                _ => KeyError::Io {
                    path: path.to_owned(),
                    source,
                },
            })?;
        let text = format!("{}\n", hex::encode(&self.0));
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| KeyError::Io {
                path: path.to_owned(),
                source,
            })
    }

    /// The secret bytes, for the HMAC computations in [`crate::auth`].
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl KeyError {
    /// Fills in the path of a parse error that was made without one.
    fn at(self, file: &Path) -> KeyError {
        match self {
            KeyError::NotHex { reason, .. } => KeyError::NotHex {
                path: file.to_owned(),
                reason,
            },
            KeyError::BadLength { len, .. } => KeyError::BadLength {
                path: file.to_owned(),
                len,
            },
            other => other,
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({} bytes, redacted)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_with_mode(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("k");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_generated_key_round_trips_through_its_file_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.key");
        let key = Key::generate();
        key.write_new(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Key::load(&path).unwrap(), key);
    }

    #[test]
    fn keygen_never_overwrites_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_with_mode(dir.path(), "00", 0o600);
        let err = Key::generate().write_new(&path).unwrap_err();
        assert!(matches!(err, KeyError::Exists { .. }), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "00");
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_with_mode(dir.path(), &"ab".repeat(32), 0o644);
        let err = Key::load(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn short_and_non_hex_keys_are_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_with_mode(dir.path(), "abcd\n", 0o600);
        let err = Key::load(&path).unwrap_err();
        assert!(matches!(err, KeyError::BadLength { len: 2, .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
        let path = write_with_mode(dir.path(), "not hex at all", 0o600);
        assert!(matches!(Key::load(&path), Err(KeyError::NotHex { .. })));
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let key = Key::from_hex(&"ab".repeat(16)).unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains("abab"), "{shown}");
    }
}
