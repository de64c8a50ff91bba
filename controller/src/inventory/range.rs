//! Numeric range patterns such as `web[01:20]`, shared by host names, addresses, group members
//! and the names given on the command line.
//!
//! This module only turns one pattern into the list of strings it stands for. It knows nothing
//! about hosts or groups; `inventory` decides where patterns are allowed and what a count
//! mismatch means. Keeping it pure makes the syntax easy to test on its own.
//!
//! A range is exactly `[digits:digits]`. Any other `[` is literal text, which is what lets an
//! IPv6 endpoint like `[::1]:7004` pass through unchanged. When the start is written with a
//! leading zero (`[01:10]`), every number is zero-padded to the width of the start, so names sort
//! the way people expect. Several ranges in one pattern give their cartesian product, the leftmost
//! range varying slowest (`r[1:2]n[1:2]` → `r1n1 r1n2 r2n1 r2n2`), like nested loops read left to
//! right. The total is capped at [`MAX_EXPANSION`] so that a typo such as `[1:1000000000]` fails
//! fast instead of allocating gigabytes, and so is the size of the names together
//! ([`MAX_EXPANSION_BYTES`]): a padded range with a long run of leading zeros is a short
//! pattern whose 100 000 names would each be as long as it is.

use thiserror::Error;

/// The largest number of strings one pattern may expand to.
pub const MAX_EXPANSION: usize = 100_000;

/// The largest number of bytes the strings of one pattern may take together (checked before
/// any is made): [`MAX_EXPANSION`] names of 160 bytes.
pub const MAX_EXPANSION_BYTES: usize = 16_000_000;

/// Why a pattern could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RangeError {
    /// The start of a range is greater than its end, as in `[5:1]`.
    #[error("range [{start}:{end}] in \"{pattern}\" goes backwards (start is greater than end)")]
    Reversed {
        /// The whole pattern being expanded.
        pattern: String,
        /// The start bound as written.
        start: String,
        /// The end bound as written.
        end: String,
    },
    /// A bound does not fit in 64 bits.
    #[error("range bound {bound} in \"{pattern}\" is too large")]
    BoundTooLarge {
        /// The whole pattern being expanded.
        pattern: String,
        /// The bound as written.
        bound: String,
    },
    /// The pattern would expand to more than [`MAX_EXPANSION`] strings.
    #[error("\"{pattern}\" expands to more than {MAX_EXPANSION} entries")]
    TooLarge {
        /// The whole pattern being expanded.
        pattern: String,
    },
    /// The pattern's strings would take more than [`MAX_EXPANSION_BYTES`] together.
    #[error("\"{pattern}\" expands to more than {MAX_EXPANSION_BYTES} bytes of names")]
    TooLong {
        /// The whole pattern being expanded.
        pattern: String,
    },
}

/// Expands every `[A:B]` range in `pattern` and returns the resulting strings in order.
///
/// A pattern without ranges expands to itself, so callers can expand unconditionally.
///
/// # Errors
///
/// Returns [`RangeError`] when a range goes backwards, a bound overflows `u64`, or the pattern
/// would expand to more than [`MAX_EXPANSION`] strings.
pub fn expand(pattern: &str) -> Result<Vec<String>, RangeError> {
    let segments = parse_segments(pattern)?;
    let mut total: usize = 1;
    for segment in &segments {
        total = total
            .checked_mul(segment.len())
            .filter(|&n| n <= MAX_EXPANSION)
            .ok_or_else(|| RangeError::TooLarge {
                pattern: pattern.to_owned(),
            })?;
    }
    let longest: usize = segments.iter().map(Segment::longest).sum();
    if total
        .checked_mul(longest)
        .is_none_or(|bytes| bytes > MAX_EXPANSION_BYTES)
    {
        return Err(RangeError::TooLong {
            pattern: pattern.to_owned(),
        });
    }
    let mut out = vec![String::new()];
    for segment in &segments {
        out = out
            .iter()
            .flat_map(|prefix| segment.values().map(move |v| format!("{prefix}{v}")))
            .collect();
    }
    Ok(out)
}

/// One piece of a pattern: fixed text, or a numeric range with its padding width.
#[derive(Debug)]
enum Segment<'a> {
    Literal(&'a str),
    Range { start: u64, end: u64, width: usize },
}

impl Segment<'_> {
    /// Number of strings this segment contributes, saturating for absurd ranges (the caller caps it).
    fn len(&self) -> usize {
        match self {
            Segment::Literal(_) => 1,
            Segment::Range { start, end, .. } => {
                usize::try_from(end - start).map_or(usize::MAX, |n| n.saturating_add(1))
            }
        }
    }

    /// The length of the longest string this segment contributes.
    fn longest(&self) -> usize {
        match self {
            Segment::Literal(text) => text.len(),
            Segment::Range { end, width, .. } => (*width).max(end.to_string().len()),
        }
    }

    fn values(&self) -> Box<dyn Iterator<Item = String> + '_> {
        match *self {
            Segment::Literal(text) => Box::new(std::iter::once(text.to_owned())),
            Segment::Range { start, end, width } => {
                Box::new((start..=end).map(move |n| format!("{n:0width$}")))
            }
        }
    }
}

fn parse_segments(pattern: &str) -> Result<Vec<Segment<'_>>, RangeError> {
    let bytes = pattern.as_bytes();
    let mut segments = Vec::new();
    let mut literal_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let Some((colon, close)) = match_range(bytes, i) else {
            i += 1;
            continue;
        };
        if literal_start < i {
            segments.push(Segment::Literal(&pattern[literal_start..i]));
        }
        segments.push(parse_range(
            pattern,
            &pattern[i + 1..colon],
            &pattern[colon + 1..close],
        )?);
        i = close + 1;
        literal_start = i;
    }
    if literal_start < bytes.len() {
        segments.push(Segment::Literal(&pattern[literal_start..]));
    }
    Ok(segments)
}

/// If a range `[digits:digits]` starts at `open`, returns the indices of its `:` and `]`.
fn match_range(bytes: &[u8], open: usize) -> Option<(usize, usize)> {
    if bytes.get(open) != Some(&b'[') {
        return None;
    }
    let colon = open + 1 + count_digits(&bytes[open + 1..]);
    if colon == open + 1 || bytes.get(colon) != Some(&b':') {
        return None;
    }
    let close = colon + 1 + count_digits(&bytes[colon + 1..]);
    if close == colon + 1 || bytes.get(close) != Some(&b']') {
        return None;
    }
    Some((colon, close))
}

fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

fn parse_range<'a>(pattern: &str, start: &str, end: &str) -> Result<Segment<'a>, RangeError> {
    let parse = |bound: &str| {
        bound.parse::<u64>().map_err(|_| RangeError::BoundTooLarge {
            pattern: pattern.to_owned(),
            bound: bound.to_owned(),
        })
    };
    let (first, last) = (parse(start)?, parse(end)?);
    if first > last {
        return Err(RangeError::Reversed {
            pattern: pattern.to_owned(),
            start: start.to_owned(),
            end: end.to_owned(),
        });
    }
    // Only a written leading zero asks for padding; `[8:11]` stays unpadded.
    let width = if start.len() > 1 && start.starts_with('0') {
        start.len()
    } else {
        0
    };
    Ok(Segment::Range {
        start: first,
        end: last,
        width,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(pattern: &str) -> Vec<String> {
        expand(pattern).unwrap_or_else(|e| panic!("expand({pattern:?}) failed: {e}"))
    }

    #[test]
    fn a_short_pattern_with_long_names_is_refused_before_it_is_expanded() {
        // 4 KB of pattern, 100 000 names of 4 KB each: 400 MB, were it expanded.
        let pattern = format!("h[{}1:99999]", "0".repeat(4000));
        let err = expand(&pattern).unwrap_err();
        assert!(matches!(err, RangeError::TooLong { .. }), "{err}");
        // The bound is the names' size, not the pattern's: long names, few of them, pass.
        assert_eq!(ok(&format!("{}[1:2]", "x".repeat(4000))).len(), 2);
    }

    #[test]
    fn plain_text_expands_to_itself() {
        assert_eq!(ok("web1"), ["web1"]);
        assert_eq!(ok(""), [""]);
    }

    #[test]
    fn leading_zero_keeps_padding() {
        let got = ok("web[01:10]");
        assert_eq!(got.len(), 10);
        assert_eq!(got[0], "web01");
        assert_eq!(got[8], "web09");
        assert_eq!(got[9], "web10");
        assert_eq!(ok("n[001:002]"), ["n001", "n002"]);
    }

    #[test]
    fn no_leading_zero_means_no_padding() {
        assert_eq!(ok("[8:11]"), ["8", "9", "10", "11"]);
        assert_eq!(ok("h[0:1]"), ["h0", "h1"]);
    }

    #[test]
    fn single_value_range_is_allowed() {
        assert_eq!(ok("a[3:3]b"), ["a3b"]);
    }

    #[test]
    fn several_ranges_give_product_leftmost_slowest() {
        assert_eq!(ok("r[1:2]n[1:2]"), ["r1n1", "r1n2", "r2n1", "r2n2"]);
    }

    #[test]
    fn range_in_address_expands() {
        assert_eq!(ok("127.0.1.[1:3]"), ["127.0.1.1", "127.0.1.2", "127.0.1.3"]);
    }

    #[test]
    fn ipv6_bracket_is_not_a_range() {
        assert_eq!(ok("[::1]:7004"), ["[::1]:7004"]);
        assert_eq!(ok("[2001:db8::1]:7000"), ["[2001:db8::1]:7000"]);
    }

    #[test]
    fn range_inside_ipv6_brackets_expands() {
        assert_eq!(
            ok("[fd00::[1:2]]:7000"),
            ["[fd00::1]:7000", "[fd00::2]:7000"]
        );
    }

    #[test]
    fn malformed_brackets_are_literal() {
        assert_eq!(ok("a[1-3]"), ["a[1-3]"]);
        assert_eq!(ok("a[1:"), ["a[1:"]);
        assert_eq!(ok("a[:3]"), ["a[:3]"]);
        assert_eq!(ok("a[[1:2]"), ["a[1", "a[2"]);
    }

    #[test]
    fn reversed_range_is_rejected() {
        let err = expand("web[5:1]").unwrap_err();
        assert!(matches!(err, RangeError::Reversed { .. }), "got {err:?}");
        assert_eq!(
            err.to_string(),
            "range [5:1] in \"web[5:1]\" goes backwards (start is greater than end)"
        );
    }

    #[test]
    fn oversized_range_is_rejected() {
        let err = expand("h[0:100000]").unwrap_err();
        assert!(matches!(err, RangeError::TooLarge { .. }), "got {err:?}");
        assert!(err.to_string().contains("h[0:100000]"), "got {err}");
        assert_eq!(ok("h[1:100000]").len(), MAX_EXPANSION);
    }

    #[test]
    fn oversized_product_is_rejected() {
        let err = expand("h[1:1000]x[1:1000]").unwrap_err();
        assert!(matches!(err, RangeError::TooLarge { .. }), "got {err:?}");
    }

    #[test]
    fn huge_bounds_are_rejected_without_overflow() {
        let err = expand("h[0:99999999999999999999999]").unwrap_err();
        assert!(
            matches!(err, RangeError::BoundTooLarge { .. }),
            "got {err:?}"
        );
        let err = expand("h[0:18446744073709551615]").unwrap_err();
        assert!(matches!(err, RangeError::TooLarge { .. }), "got {err:?}");
    }
}

/// Property tests: patterns built from known parts expand to the nested loops they stand
/// for, and any text expands or fails without panicking, within the bounds (the fuzz target
/// `range` checks the same on nightly).
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// One part of a generated pattern and the strings it stands for.
    #[derive(Debug, Clone)]
    enum Part {
        Literal(String),
        Range { start: u64, len: u64, padded: bool },
    }

    impl Part {
        fn written(&self) -> String {
            match self {
                Part::Literal(text) => text.clone(),
                Part::Range {
                    start,
                    len,
                    padded: true,
                } => format!("[0{start}:{}]", start + len),
                Part::Range { start, len, .. } => format!("[{start}:{}]", start + len),
            }
        }

        fn values(&self) -> Vec<String> {
            match self {
                Part::Literal(text) => vec![text.clone()],
                Part::Range { start, len, padded } => {
                    let width = if *padded {
                        format!("0{start}").len()
                    } else {
                        0
                    };
                    (*start..=start + len)
                        .map(|n| format!("{n:0width$}"))
                        .collect()
                }
            }
        }
    }

    fn part() -> impl Strategy<Value = Part> {
        prop_oneof![
            "[a-z.:\\-\\]]{0,4}".prop_map(Part::Literal),
            (0u64..2000, 0u64..5, any::<bool>()).prop_map(|(start, len, padded)| Part::Range {
                start,
                len,
                padded
            }),
        ]
    }

    proptest! {
        #[test]
        fn a_pattern_expands_to_its_parts_in_nested_loops(parts in proptest::collection::vec(part(), 0..5)) {
            let pattern: String = parts.iter().map(Part::written).collect();
            let mut expected = vec![String::new()];
            for part in &parts {
                expected = expected
                    .iter()
                    .flat_map(|prefix| part.values().into_iter().map(move |v| format!("{prefix}{v}")))
                    .collect();
            }
            prop_assert_eq!(expand(&pattern).unwrap(), expected, "{}", pattern);
        }

        #[test]
        fn any_text_expands_or_fails_without_panicking(pattern in "[a0-9:\\[\\]]{0,24}|(?s).{0,24}") {
            if let Ok(names) = expand(&pattern) {
                prop_assert!(!names.is_empty() && names.len() <= MAX_EXPANSION);
                prop_assert!(names.iter().map(String::len).sum::<usize>() <= MAX_EXPANSION_BYTES);
                if !pattern.contains('[') {
                    prop_assert_eq!(names, [pattern]);
                }
            }
        }
    }
}
