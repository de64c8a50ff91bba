//! The inventory file as written, before any check: serde types for `defaults`, `hosts` and
//! `groups`, and the YAML parsing, with the parser's line and column kept for the error.
//!
//! Nothing here validates a value; [`super::Inventory::from_yaml_str`] does that, step by step.
//! The `hosts` and `groups` maps are read into ordered entry lists rather than serde maps, so
//! that file order survives and a repeated key reaches the duplicate checks instead of silently
//! replacing the first. `serde_yaml` is used here and nowhere else.

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::InventoryError;

/// Parses inventory YAML into the shape of the file, checking nothing but that shape.
///
/// # Errors
///
/// [`InventoryError::Syntax`], with line and column when the parser knows them.
pub(super) fn parse(text: &str, path: &Path) -> Result<RawInventory, InventoryError> {
    serde_yaml::from_str(text).map_err(|err| syntax_error(path, &err))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInventory {
    #[serde(default)]
    pub(super) defaults: Option<RawDefaults>,
    #[serde(default)]
    pub(super) hosts: Option<Entries<RawHost>>,
    #[serde(default)]
    pub(super) groups: Option<Entries<Vec<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    // Read wide so that 0 and 70000 get our port message rather than serde's.
    pub(super) port: Option<i64>,
    pub(super) identity: Option<PathBuf>,
    pub(super) known_hosts: Option<PathBuf>,
}

/// A host's value: `"addr[:port]"` or `{ address, port, ssh }`.
pub(super) enum RawHost {
    Text(String),
    Map(RawHostMap),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHostMap {
    pub(super) address: String,
    pub(super) port: Option<i64>,
    /// `[user@]host[:port]` for `ctl bootstrap`; ranges expand as in `address`.
    pub(super) ssh: Option<String>,
}

impl<'de> Deserialize<'de> for RawHost {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RawHostVisitor;

        impl<'de> Visitor<'de> for RawHostVisitor {
            type Value = RawHost;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address such as 10.0.0.1:7070, or a map with address and port")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<RawHost, E> {
                Ok(RawHost::Text(text.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawHost, A::Error> {
                let fields = RawHostMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawHost::Map(fields))
            }
        }

        deserializer.deserialize_any(RawHostVisitor)
    }
}

/// A YAML mapping read as entries in file order, keeping repeated keys so we can report them.
pub(super) struct Entries<V>(pub(super) Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = Entries<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of names")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<V>, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }

        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}

fn syntax_error(path: &Path, err: &serde_yaml::Error) -> InventoryError {
    let location = err.location();
    let mut message = err.to_string();
    // serde_yaml appends the location to its message; we show it in our own format instead.
    if let Some(loc) = &location {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_owned();
        }
    }
    InventoryError::Syntax {
        path: path.to_owned(),
        line: location.as_ref().map(|loc| loc.line()),
        col: location.as_ref().map(|loc| loc.column()),
        message,
    }
}

#[cfg(test)]
mod tests {
    use crate::inventory::fixtures::parse;
    use crate::inventory::InventoryError;

    #[test]
    fn yaml_syntax_error_shows_line_and_column() {
        let err = parse("hosts:\n  web1: 10.0.0.1\n  web2: [oops\n").unwrap_err();
        let InventoryError::Syntax { line, col, .. } = &err else {
            panic!("expected a syntax error, got {err:?}");
        };
        assert!(line.is_some() && col.is_some(), "got {err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("/etc/muster/inventory.yaml: line "),
            "got {msg}"
        );
        assert!(!msg.contains(" at line "), "location shown twice: {msg}");
    }

    #[test]
    fn wrong_shape_shows_where() {
        let err = parse("hosts:\n  web1: 10.0.0.1\n  web2: 42\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/muster/inventory.yaml: line 3, column 9: hosts.web2: invalid type: integer `42`, \
             expected an address such as 10.0.0.1:7070, or a map with address and port"
        );
        let err = parse("hosts:\n  web1: { address: a.b, prot: 1 }\n").unwrap_err();
        assert!(
            matches!(err, InventoryError::Syntax { line: Some(2), .. }),
            "got {err:?}"
        );
        assert!(err.to_string().contains("prot"), "got {err}");
        let err = parse("hots:\n  web1: 10.0.0.1\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `hots`"),
            "got {err}"
        );
    }
}
