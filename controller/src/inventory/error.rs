//! Why an inventory could not be loaded or a selection could not be resolved, worded for the
//! operator: every message starts with the inventory's path and names the offending value,
//! with a did-you-mean suggestion when a close name exists.
//!
//! This module owns the error type, its wording and the choice of suggestion. The checks that
//! raise each error live with their topic (`hosts`, `endpoint`, `groups`, `selection`, `raw`),
//! so that a reader of a check sees its rule, and a reader of this file sees every message.

use std::fmt;
use std::io;
use std::path::PathBuf;

use thiserror::Error;

use super::range::RangeError;
use super::ALL_GROUP;

/// What kind of name a lookup expected, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A host name.
    Host,
    /// Either a host or a group name.
    HostOrGroup,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Host => "host",
            NameKind::HostOrGroup => "host or group",
        })
    }
}

/// Why an inventory could not be loaded, or a selection could not be resolved against it.
///
/// Every message starts with the inventory path and names the offending value.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum InventoryError {
    /// The file could not be read.
    #[error("{}: cannot read inventory: {error}", path.display())]
    Read {
        /// The inventory file.
        path: PathBuf,
        /// The underlying I/O error.
        error: io::Error,
    },
    /// The file is not valid YAML or does not have the expected shape.
    #[error("{}{}: {message}", path.display(), Location(*line, *col))]
    Syntax {
        /// The inventory file.
        path: PathBuf,
        /// 1-based line of the problem, when the parser knows it.
        line: Option<usize>,
        /// 1-based column of the problem, when the parser knows it.
        col: Option<usize>,
        /// The parser's description of the problem.
        message: String,
    },
    /// A range in a host name, address, group member or selected name is invalid.
    #[error("{}: {name:?}: {error}", path.display())]
    Range {
        /// The inventory file.
        path: PathBuf,
        /// The host, group or selected name whose entry holds the range.
        name: String,
        /// What is wrong with the range.
        error: RangeError,
    },
    /// A host name contains characters other than letters, digits, `-`, `_` and `.`.
    #[error(
        "{}: bad host name {host:?} (use letters, digits, '-', '_' and '.')",
        path.display()
    )]
    BadHostName {
        /// The inventory file.
        path: PathBuf,
        /// The offending name, after range expansion.
        host: String,
    },
    /// A group name contains characters other than letters, digits, `-`, `_` and `.`.
    #[error(
        "{}: bad group name {group:?} (use letters, digits, '-', '_' and '.')",
        path.display()
    )]
    BadGroupName {
        /// The inventory file.
        path: PathBuf,
        /// The offending name.
        group: String,
    },
    /// A host's address is neither an IP literal nor a valid DNS name.
    #[error("{}: host {host:?} has a bad address {address:?}", path.display())]
    BadAddress {
        /// The inventory file.
        path: PathBuf,
        /// The host, after range expansion.
        host: String,
        /// The address as written (after range expansion).
        address: String,
    },
    /// A host's port is not a number from 1 to 65535.
    #[error("{}: host {host:?} has a bad port {port:?} (expected 1 to 65535)", path.display())]
    BadPort {
        /// The inventory file.
        path: PathBuf,
        /// The host, after range expansion.
        host: String,
        /// The port as written.
        port: String,
    },
    /// `defaults.port` is not a number from 1 to 65535.
    #[error("{}: bad defaults.port {port} (expected 1 to 65535)", path.display())]
    BadDefaultPort {
        /// The inventory file.
        path: PathBuf,
        /// The port as written.
        port: i64,
    },
    /// A host entry's address range expands to a different count than its name range.
    #[error(
        "{}: host {host:?} expands to {n_hosts} name(s) but its address {address:?} expands to {n_addresses}",
        path.display()
    )]
    AddressCountMismatch {
        /// The inventory file.
        path: PathBuf,
        /// The host entry's name pattern.
        host: String,
        /// How many names the pattern gives.
        n_hosts: usize,
        /// The address pattern.
        address: String,
        /// How many addresses the pattern gives.
        n_addresses: usize,
    },
    /// Two host entries define the same host name.
    #[error("{}: host {host:?} is defined twice{}", path.display(), Again(host, entry))]
    DuplicateHost {
        /// The inventory file.
        path: PathBuf,
        /// The repeated host name.
        host: String,
        /// The entry (possibly a range) that defined it the second time.
        entry: String,
    },
    /// Two group entries have the same name.
    #[error("{}: group {group:?} is defined twice", path.display())]
    DuplicateGroup {
        /// The inventory file.
        path: PathBuf,
        /// The repeated group name.
        group: String,
    },
    /// The file defines a group named `all`.
    #[error("{}: group \"{ALL_GROUP}\" is reserved (it always means every host)", path.display())]
    ReservedGroup {
        /// The inventory file.
        path: PathBuf,
    },
    /// A group has the same name as a host.
    #[error(
        "{}: {name:?} is both a host and a group (names must differ so --exclude is unambiguous)",
        path.display()
    )]
    GroupHostClash {
        /// The inventory file.
        path: PathBuf,
        /// The shared name.
        name: String,
    },
    /// A group lists a member that is neither a host nor a group.
    #[error(
        "{}: group {group:?} refers to unknown host or group {member:?}{}",
        path.display(),
        DidYouMean(suggestion.as_deref())
    )]
    UnknownMember {
        /// The inventory file.
        path: PathBuf,
        /// The group that lists the member.
        group: String,
        /// The unknown member, after range expansion.
        member: String,
        /// A similar existing name, if there is one.
        suggestion: Option<String>,
    },
    /// Groups contain each other in a loop.
    #[error("{}: group cycle {}", path.display(), cycle.join(" -> "))]
    GroupCycle {
        /// The inventory file.
        path: PathBuf,
        /// The groups along the loop; the first name is repeated at the end.
        cycle: Vec<String>,
    },
    /// A target expression (`-g`) with a term that cannot be read.
    #[error("target expression {expression:?}: {part:?}: {reason}")]
    BadExpression {
        expression: String,
        /// The term at fault, as written.
        part: String,
        reason: String,
    },
    /// An error about one term of a target expression (an unknown name, a bad range).
    #[error("target expression {expression:?}: {error}")]
    InExpression {
        expression: String,
        error: Box<InventoryError>,
    },
    /// A selection names a host or group the inventory does not have.
    #[error(
        "{}: unknown {kind} {name:?}{}",
        path.display(),
        DidYouMean(suggestion.as_deref())
    )]
    UnknownName {
        /// The inventory file.
        path: PathBuf,
        /// What kind of name was expected.
        kind: NameKind,
        /// The unknown name, after range expansion.
        name: String,
        /// A similar existing name, if there is one.
        suggestion: Option<String>,
    },
}

/// The candidate closest to `name`, if any is close enough to be a likely typo.
///
/// Candidates are ranked by edit distance counting a swap of neighbours as one edit (so `wbe`
/// is one edit from `web`), then by Jaro-Winkler similarity, which favours a shared prefix.
pub(super) fn suggest<'c>(name: &str, candidates: impl Iterator<Item = &'c str>) -> Option<String> {
    candidates
        .filter(|c| *c != name)
        .map(|c| {
            (
                strsim::osa_distance(name, c),
                strsim::jaro_winkler(name, c),
                c,
            )
        })
        .filter(|&(distance, score, _)| {
            // A distance of 2 is a typo in "wbe" but a different word in "db" vs "x".
            score >= 0.8 || (distance <= 2 && distance < name.chars().count())
        })
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, _, c)| c.to_owned())
}

/// Formats `: line L, column C` (or nothing) for [`InventoryError::Syntax`].
struct Location(Option<usize>, Option<usize>);

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(line), Some(col)) => write!(f, ": line {line}, column {col}"),
            (Some(line), None) => write!(f, ": line {line}"),
            _ => Ok(()),
        }
    }
}

/// Formats ` (did you mean "x"?)` or nothing.
struct DidYouMean<'a>(Option<&'a str>);

impl fmt::Display for DidYouMean<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(name) => write!(f, " (did you mean {name:?}?)"),
            None => Ok(()),
        }
    }
}

/// Formats ` (again by "web[01:03]")` when a range entry repeated the host, or nothing.
struct Again<'a>(&'a str, &'a str);

impl fmt::Display for Again<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == self.1 {
            Ok(())
        } else {
            write!(f, " (again by {:?})", self.1)
        }
    }
}
