//! Range expansion: `range::expand` (controller/src/inventory/range.rs), which every host
//! name, address, group member and command-line name goes through (`web[01:20]`).
//!
//! Input: the pattern, as UTF-8.
//!
//! Invariant: no panic; an expansion has between 1 and `MAX_EXPANSION` entries that take at
//! most `MAX_EXPANSION_BYTES` together; a pattern without `[` expands to itself alone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_fuzz::inventory::range::{expand, MAX_EXPANSION, MAX_EXPANSION_BYTES};

fuzz_target!(|data: &[u8]| {
    let Ok(pattern) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(names) = expand(pattern) else {
        return;
    };
    assert!(
        !names.is_empty() && names.len() <= MAX_EXPANSION,
        "{} names",
        names.len()
    );
    let bytes: usize = names.iter().map(String::len).sum();
    assert!(bytes <= MAX_EXPANSION_BYTES, "{bytes} bytes of names");
    if !pattern.contains('[') {
        assert_eq!(names, [pattern]);
    }
});
