//! How control characters in hosts' output are shown: escaped on a terminal, byte for byte
//! elsewhere.
//!
//! A host's output is text from a machine we do not control. On a terminal, its escape
//! sequences would be obeyed (retitle the window, move the cursor, clear the screen) and a
//! `\r` would let one host's line overwrite what came before it, so it could forge other
//! hosts' lines. So when ctl's stdout (or stderr) is a terminal, every control character
//! in host output but tab is shown as visible text, as `cat -v` would make it visible but
//! in the notation of a Rust or C string: `\r`, `\x1b`, `\x7f` and, for the C1 controls
//! U+0080 to U+009F that some terminals obey too, `\u{9b}`. The newline that ends a line
//! stays a newline. A backslash is shown as it is, so a host can print text that looks like
//! an escape, but not one that acts. `ctl run --raw`, and any output that is not a terminal
//! (a pipe, a file), keeps the bytes as they came.
//!
//! Besides `ctl run`'s output, the same goes for every other text an agent or a host
//! decides that ctl prints: the reasons and paths of `ctl push`/`ctl pull` results, the
//! reasons and versions in `ctl ping`'s report, and the kept output and reasons in
//! `ctl log show`.

use std::borrow::Cow;
use std::io::IsTerminal;

use crate::stream_pair::StreamPair;

/// What happens to control characters on one of ctl's output streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Controls {
    /// Written as they came.
    #[default]
    Raw,
    /// Shown escaped, as text.
    Escaped,
}

impl Controls {
    /// Escaped on whichever of ctl's stdout and stderr is a terminal, unless `raw`.
    pub fn for_ctl_output(raw: bool) -> StreamPair<Controls> {
        let on = |is_terminal: bool| match is_terminal && !raw {
            true => Controls::Escaped,
            false => Controls::Raw,
        };
        StreamPair {
            stdout: on(std::io::stdout().is_terminal()),
            stderr: on(std::io::stderr().is_terminal()),
        }
    }
}

/// `text` as it is to be shown with `controls`: with its control characters but tab and
/// newline escaped, or as it is.
pub fn shown(text: &str, controls: Controls) -> Cow<'_, str> {
    if controls == Controls::Raw || !may_have_controls(text.as_bytes()) {
        return Cow::Borrowed(text);
    }
    let mut dst = Vec::with_capacity(text.len() + 16);
    escape_controls(text, &mut dst);
    Cow::Owned(String::from_utf8(dst).expect("escaping keeps text UTF-8"))
}

/// True when `bytes` may hold a character [`escape_controls`] would change (a quick,
/// conservative test: a lead byte of U+0080 to U+00BF counts, though only some of those
/// are controls).
pub fn may_have_controls(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .any(|&b| (b < 0x20 && b != b'\t' && b != b'\n') || b == 0x7f || b == 0xc2)
}

/// Appends `text` to `dst` with every control character but tab and newline escaped.
pub fn escape_controls(text: &str, dst: &mut Vec<u8>) {
    let mut utf8 = [0u8; 4];
    for ch in text.chars() {
        match ch {
            '\t' | '\n' => dst.push(ch as u8),
            '\r' => dst.extend_from_slice(b"\\r"),
            '\0'..='\x1f' | '\x7f' => {
                dst.extend_from_slice(format!("\\x{:02x}", ch as u32).as_bytes());
            }
            '\u{80}'..='\u{9f}' => {
                dst.extend_from_slice(format!("\\u{{{:x}}}", ch as u32).as_bytes());
            }
            _ => dst.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        let mut dst = Vec::new();
        escape_controls(text, &mut dst);
        String::from_utf8(dst).unwrap()
    }

    #[test]
    fn terminal_controls_become_visible_text() {
        // Tried: a window title, a cursor move and screen clear, a carriage return that
        // would overwrite the line, a bell, DEL and a NUL.
        assert_eq!(
            escaped("a\x1b]0;pwned\x07b\rc\x1b[2J\x1b[1;1Hd\x7f\0"),
            r"a\x1b]0;pwned\x07b\rc\x1b[2J\x1b[1;1Hd\x7f\x00"
        );
    }

    #[test]
    fn c1_controls_are_escaped_and_other_text_is_kept() {
        assert_eq!(escaped("x\u{9b}31my"), r"x\u{9b}31my");
        assert_eq!(escaped("tab\there\n°é✓ \\x1b"), "tab\there\n°é✓ \\x1b");
    }

    #[test]
    fn shown_borrows_plain_text_and_escapes_only_when_asked() {
        assert!(matches!(
            shown("plain", Controls::Escaped),
            Cow::Borrowed("plain")
        ));
        assert_eq!(shown("a\rb", Controls::Raw), "a\rb");
        assert_eq!(shown("a\rb", Controls::Escaped), "a\\rb");
    }

    #[test]
    fn the_quick_test_finds_every_control_it_must() {
        for text in ["\x1b", "\r", "\x7f", "\u{85}", "\x08"] {
            assert!(may_have_controls(text.as_bytes()), "{text:?}");
        }
        assert!(!may_have_controls("plain\ttext é ✓".as_bytes()));
    }
}
