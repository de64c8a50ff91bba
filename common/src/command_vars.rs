//! Environment variables a command may be given (`agent --command-env`, `ctl run -e`):
//! what a variable name is, and the one name the agent sets itself.

/// The variable every command gets with the operation id of `ctl`'s log.
pub const OP_ID_VAR: &str = "MUSTER_OP_ID";

/// Why `name`, with `value`, cannot be a command's variable, if it cannot: a name that is
/// not a shell variable name, `MUSTER_OP_ID` (set per command by the agent), or a NUL
/// byte in the value (which no environment can hold).
pub fn refusal(name: &str, value: &str) -> Option<String> {
    let mut chars = name.chars();
    let is_name = chars
        .next()
        .is_some_and(|first| first == '_' || first.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric());
    if !is_name {
        return Some(format!("{name:?} is not a variable name"));
    }
    if name == OP_ID_VAR {
        return Some(format!("{OP_ID_VAR} is set by the agent for each command"));
    }
    if value.contains('\0') {
        return Some(format!("the value of {name} holds a NUL byte"));
    }
    None
}

/// Parses `NAME=VALUE`.
///
/// # Errors
/// No `=`, or a pair [`refusal`] refuses.
pub fn parse_pair(text: &str) -> Result<(String, String), String> {
    let Some((name, value)) = text.split_once('=') else {
        return Err(format!("expected NAME=VALUE, got {text:?}"));
    };
    match refusal(name, value) {
        Some(why) => Err(why),
        None => Ok((name.to_owned(), value.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_shell_variable_names() {
        assert_eq!(parse_pair("A_1=x=y"), Ok(("A_1".into(), "x=y".into())));
        assert_eq!(parse_pair("EMPTY="), Ok(("EMPTY".into(), String::new())));
        for bad in ["NOVALUE", "=x", "1A=x", "A-B=x", "MUSTER_OP_ID=x"] {
            assert!(parse_pair(bad).is_err(), "{bad}");
        }
        assert!(refusal("A", "a\0b").is_some());
    }
}
