//! Target expressions, as Ansible writes host patterns, in `-g` and `ctl hosts`:
//!
//! - `web:db` (or `web,db`): the union (a `:` inside a range's brackets is the range's);
//! - `web:&prod`: only the hosts also in `prod`;
//! - `prod:!db1`: without `db1`;
//! - a term is `all` (or `*`), a group or a host name, which may carry ranges
//!   (`web[01:20]`), `~REGEX` (host names the regular expression matches anywhere in
//!   them; it takes the rest of the expression, `:` included), or `@FILE` (the terms
//!   of each of its lines; `#` starts a comment).
//!
//! As in Ansible, the order of the terms does not matter: the union of the plain terms
//! is taken first (`all` when there is none), then each `&` term intersects it, then
//! each `!` term is taken out. Resolution is one pass over a flag per host: linear in the
//! inventory's size.

use std::path::Path;

use regex::Regex;

use super::{expand_in, Inventory, InventoryError, NameKind, ALL_GROUP};

/// How a term combines with the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Combine {
    Union,
    Intersect,
    Exclude,
}

/// One term of an expression, as written (for errors) and what it stands for.
#[derive(Debug)]
struct Term {
    combine: Combine,
    text: String,
    atom: Atom,
}

#[derive(Debug)]
enum Atom {
    All,
    /// A host or group name, perhaps with ranges.
    Name(String),
    Regex(Regex),
}

impl Inventory {
    /// The hosts `expression` selects, as one flag per inventory host.
    ///
    /// # Errors
    /// [`InventoryError::BadExpression`] for a term that cannot be read (empty, a bad
    /// regular expression, an unreadable `@FILE`), and [`InventoryError::InExpression`]
    /// around an unknown name or a bad range.
    pub(super) fn evaluate(&self, expression: &str) -> Result<Vec<bool>, InventoryError> {
        let terms = parse(expression, 0)?;
        let in_expression = |error: InventoryError| InventoryError::InExpression {
            expression: expression.to_owned(),
            error: Box::new(error),
        };
        let mut chosen = vec![false; self.hosts.len()];
        let has_union = terms.iter().any(|term| term.combine == Combine::Union);
        if !has_union {
            chosen.fill(true);
        }
        for combine in [Combine::Union, Combine::Intersect, Combine::Exclude] {
            for term in terms.iter().filter(|term| term.combine == combine) {
                let hits = self.resolve_term(term).map_err(in_expression)?;
                match combine {
                    Combine::Union => hits.into_iter().for_each(|i| chosen[i] = true),
                    Combine::Exclude => hits.into_iter().for_each(|i| chosen[i] = false),
                    Combine::Intersect => {
                        let mut keep = vec![false; chosen.len()];
                        hits.into_iter().for_each(|i| keep[i] = true);
                        for (chosen, keep) in chosen.iter_mut().zip(keep) {
                            *chosen &= keep;
                        }
                    }
                }
            }
        }
        Ok(chosen)
    }

    /// The positions of the hosts one term stands for.
    fn resolve_term(&self, term: &Term) -> Result<Vec<usize>, InventoryError> {
        match &term.atom {
            Atom::All => Ok((0..self.hosts.len()).collect()),
            Atom::Regex(regex) => Ok(self
                .hosts
                .iter()
                .enumerate()
                .filter(|(_, host)| regex.is_match(&host.name))
                .map(|(i, _)| i)
                .collect()),
            Atom::Name(pattern) => {
                let mut found = Vec::new();
                for name in expand_in(&self.path, &term.text, pattern)? {
                    if let Some(&i) = self.host_index.get(&name) {
                        found.push(i);
                    } else if name == ALL_GROUP {
                        found.extend(0..self.hosts.len());
                    } else if let Some(members) = self.groups.get(&name) {
                        found.extend_from_slice(members);
                    } else {
                        return Err(self.unknown_name(NameKind::HostOrGroup, name));
                    }
                }
                Ok(found)
            }
        }
    }
}

/// `@FILE`s may name `@FILE`s; this deep, it is a loop.
const MAX_FILE_DEPTH: usize = 8;

/// Splits `expression` into terms, reading `@FILE`s.
fn parse(expression: &str, depth: usize) -> Result<Vec<Term>, InventoryError> {
    let bad = |part: &str, reason: String| InventoryError::BadExpression {
        expression: expression.to_owned(),
        part: part.to_owned(),
        reason,
    };
    let mut terms = Vec::new();
    let mut rest = expression;
    while !rest.is_empty() || terms.is_empty() {
        // A regular expression may hold `:` and `,`: it takes the rest.
        let regex_start = rest.trim_start_matches(['&', '!']).starts_with('~');
        let (part, next) = match separator(rest) {
            Some(at) if !regex_start => (&rest[..at], Some(&rest[at + 1..])),
            _ => (rest, None),
        };
        let (combine, text) = match part.as_bytes().first() {
            Some(b'&') => (Combine::Intersect, &part[1..]),
            Some(b'!') => (Combine::Exclude, &part[1..]),
            _ => (Combine::Union, part),
        };
        let atom = match text {
            "" => return Err(bad(part, "an empty term (two separators in a row?)".into())),
            "all" | "*" => Atom::All,
            _ if text.starts_with('~') => {
                let regex = Regex::new(&text[1..])
                    .map_err(|err| bad(part, format!("not a regular expression: {err}")))?;
                Atom::Regex(regex)
            }
            _ if text.starts_with('@') => {
                if depth >= MAX_FILE_DEPTH {
                    return Err(bad(part, "@FILEs name each other in a loop".into()));
                }
                let from_file = read_file_terms(Path::new(&text[1..]), depth)
                    .map_err(|reason| bad(part, reason))?;
                // The file's lines are terms of this expression: `!x` in a line still
                // takes x out, whatever the @FILE itself was prefixed with.
                for term in from_file {
                    let combine = match (combine, term.combine) {
                        (Combine::Union, inner) => inner,
                        (outer, _) => outer,
                    };
                    terms.push(Term { combine, ..term });
                }
                rest = next.unwrap_or("");
                if next.is_none() {
                    break;
                }
                continue;
            }
            _ => Atom::Name(text.to_owned()),
        };
        terms.push(Term {
            combine,
            text: text.to_owned(),
            atom,
        });
        match next {
            Some("") => return Err(bad(expression, "ends with a separator".into())),
            Some(next) => rest = next,
            None => break,
        }
    }
    Ok(terms)
}

/// Where the first term of `text` ends: the first `:` or `,` outside the brackets of a
/// range (`web[01:20]`).
fn separator(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (at, byte) in text.bytes().enumerate() {
        match byte {
            b'[' => depth += 1,
            b']' => depth = depth.saturating_sub(1),
            b':' | b',' if depth == 0 => return Some(at),
            _ => {}
        }
    }
    None
}

/// The terms of every line of `path`, blank lines and `#` comments skipped.
fn read_file_terms(path: &Path, depth: usize) -> Result<Vec<Term>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let mut terms = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let parsed = parse(line, depth + 1)
            .map_err(|err| format!("{} line {}: {err}", path.display(), number + 1))?;
        terms.extend(parsed);
    }
    Ok(terms)
}

#[cfg(test)]
mod tests {
    use crate::inventory::fixtures::{load, EXAMPLE};
    use crate::inventory::{Inventory, InventoryError};

    fn chosen(inv: &Inventory, expression: &str) -> Vec<String> {
        let flags = inv
            .evaluate(expression)
            .unwrap_or_else(|err| panic!("{expression}: {err}"));
        inv.hosts
            .iter()
            .zip(flags)
            .filter(|(_, keep)| *keep)
            .map(|(host, _)| host.name.clone())
            .collect()
    }

    #[test]
    fn union_intersection_and_difference_combine_as_ansible_does() {
        let inv = load(EXAMPLE);
        assert_eq!(chosen(&inv, "web:db"), ["web1", "web2", "db1"]);
        assert_eq!(chosen(&inv, "web,db"), ["web1", "web2", "db1"]);
        assert_eq!(chosen(&inv, "prod:&web"), ["web1", "web2"]);
        assert_eq!(chosen(&inv, "prod:!web1"), ["web2", "db1"]);
        // Order does not matter: unions first, then &, then !.
        assert_eq!(chosen(&inv, "!web1:prod"), ["web2", "db1"]);
        assert_eq!(chosen(&inv, "&web:prod:!web2"), ["web1"]);
        // Only exclusions: from all.
        assert_eq!(chosen(&inv, "!prod"), chosen(&inv, "all:!prod"));
        assert_eq!(chosen(&inv, "*"), chosen(&inv, "all"));
        // Host names, ranges, regular expressions (which may hold `:`).
        assert_eq!(chosen(&inv, "web[1:2]:db1"), ["web1", "web2", "db1"]);
        assert_eq!(chosen(&inv, "all:!~^web"), chosen(&inv, "all:!web"));
        assert_eq!(chosen(&inv, "~^(web1|db1)$"), ["web1", "db1"]);
        assert_eq!(chosen(&inv, "~web[12]:?"), ["web1", "web2"]);
    }

    #[test]
    fn a_file_of_terms_is_read_line_by_line() {
        let inv = load(EXAMPLE);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("targets");
        std::fs::write(&file, "# tonight\nweb\n\ndb1  # the primary\n!web2\n").unwrap();
        let at = format!("@{}", file.display());
        assert_eq!(chosen(&inv, &at), ["web1", "db1"]);
        assert_eq!(
            chosen(&inv, &format!("all:!{at}")),
            chosen(&inv, "all:!web:!db1")
        );
    }

    #[test]
    fn errors_name_the_bad_part() {
        let inv = load(EXAMPLE);
        let err = |expression: &str| inv.evaluate(expression).unwrap_err().to_string();
        let e = err("web:&prd");
        assert!(e.contains("\"web:&prd\"") && e.contains("\"prd\""), "{e}");
        assert!(e.contains("did you mean \"prod\""), "{e}");
        assert!(err("web::db").contains("empty term"), "{}", err("web::db"));
        assert!(err("web:").contains("ends with a separator"));
        assert!(err("~web(").contains("not a regular expression"));
        assert!(err("@/nonexistent/targets").contains("cannot read"));
        assert!(matches!(
            inv.evaluate("!").unwrap_err(),
            InventoryError::BadExpression { .. }
        ));
    }

    #[test]
    fn a_large_inventory_resolves_in_one_pass() {
        let inv = load("hosts:\n  h[1:100000]: 10.0.0.1\ngroups:\n  web: [\"h[1:50000]\"]\n");
        let flags = inv.evaluate("all:!web").unwrap();
        assert_eq!(flags.iter().filter(|keep| **keep).count(), 50000);
    }
}
