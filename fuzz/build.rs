//! Copies `safe_local_path` out of `controller/src/client/pull.rs` into the build, so the
//! `entry_path` target fuzzes the function `ctl pull` runs, not a copy that could drift.
//!
//! `ctl` is a binary with no library, and `pull.rs` needs the whole client around it, so
//! the module cannot be compiled in here as the inventory is. The function is pure (paths
//! and `std::fs` only); it is taken from its `pub fn` line to the first `}` at the start
//! of a line. If it is renamed or moved, this build fails and says so.

use std::path::Path;

const SOURCE: &str = "../controller/src/client/pull.rs";
const START: &str = "pub fn safe_local_path(";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    let text = std::fs::read_to_string(SOURCE).expect("controller/src/client/pull.rs is readable");
    let start = text
        .find(START)
        .unwrap_or_else(|| panic!("{SOURCE} no longer has `{START}`: update fuzz/build.rs"));
    let len = text[start..]
        .find("\n}\n")
        .unwrap_or_else(|| panic!("`{START}` in {SOURCE} has no closing brace at line start"));
    let function = &text[start..start + len + 3];
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("safe_local_path.rs");
    std::fs::write(out, function).expect("OUT_DIR is writable");
}
