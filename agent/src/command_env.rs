//! The environment every command starts with: a short, fixed list, never the agent's own.
//!
//! The agent's environment is the service manager's business (systemd's `INVOCATION_ID`,
//! `NOTIFY_SOCKET`, whatever an operator exported in the shell that started it) and is no
//! command's: a command gets exactly
//!
//! | variable | value |
//! |---|---|
//! | `PATH` | [`SAFE_PATH`] |
//! | `HOME`, `USER`, `LOGNAME` | from the agent's account (`HOME=/` when it has none) |
//! | `SHELL` | `/bin/sh` |
//! | `LANG`, `LC_ALL` | the agent's, when set |
//! | `--command-env NAME=VALUE` | as given (they may replace the ones above) |
//! | `MUSTER_OP_ID` | the controller's operation id, when it sent one |
//!
//! Building the list once at start is this module's; [`crate::request::exec`] applies it.

use std::ffi::OsString;

/// `PATH` for commands: the usual system folders, none writable by ordinary users.
pub const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
pub use common::command_vars::OP_ID_VAR;
/// Variables passed on from the agent's environment when it has them.
const FROM_AGENT: [&str; 2] = ["LANG", "LC_ALL"];

/// The account commands run as, for `HOME`, `USER` and `LOGNAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user name, when the account has a passwd entry.
    pub name: Option<String>,
    /// The home folder (`/` without a passwd entry).
    pub home: OsString,
}

impl Account {
    /// The account the agent runs as (its effective user).
    pub fn current() -> Account {
        match nix::unistd::User::from_uid(nix::unistd::Uid::effective()) {
            Ok(Some(user)) => Account {
                name: Some(user.name),
                home: user.dir.into_os_string(),
            },
            _ => Account {
                name: None,
                home: OsString::from("/"),
            },
        }
    }
}

/// Every variable a command starts with but `MUSTER_OP_ID`, in the order they are set:
/// the fixed list, what `agent_var` gives for [`FROM_AGENT`], then `extra` (the
/// `--command-env` flags), which may replace any of them.
pub fn base_env(
    account: &Account,
    agent_var: impl Fn(&str) -> Option<OsString>,
    extra: &[(String, String)],
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = vec![
        ("PATH".into(), SAFE_PATH.into()),
        ("HOME".into(), account.home.clone()),
        ("SHELL".into(), "/bin/sh".into()),
    ];
    if let Some(name) = &account.name {
        env.push(("USER".into(), name.into()));
        env.push(("LOGNAME".into(), name.into()));
    }
    for name in FROM_AGENT {
        if let Some(value) = agent_var(name) {
            env.push((name.into(), value));
        }
    }
    for (name, value) in extra {
        env.retain(|(known, _)| known != name.as_str());
        env.push((name.into(), value.into()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_and_values(env: &[(OsString, OsString)]) -> Vec<(String, String)> {
        env.iter()
            .map(|(name, value)| {
                (
                    name.to_string_lossy().into_owned(),
                    value.to_string_lossy().into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn commands_get_the_fixed_list_and_only_the_agents_locale() {
        // Tried: an agent environment with a locale, a secret and its own PATH, and one
        // extra variable that replaces HOME.
        let account = Account {
            name: Some("root".into()),
            home: "/root".into(),
        };
        let agent_var = |name: &str| match name {
            "LANG" => Some(OsString::from("C.UTF-8")),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".into()),
            "PATH" => Some("/home/me/bin:/usr/bin".into()),
            _ => None,
        };
        let extra = [("HOME".to_owned(), "/srv".to_owned())];
        let env = names_and_values(&base_env(&account, agent_var, &extra));
        let want = [
            ("PATH", SAFE_PATH),
            ("SHELL", "/bin/sh"),
            ("USER", "root"),
            ("LOGNAME", "root"),
            ("LANG", "C.UTF-8"),
            ("HOME", "/srv"),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned()));
        assert_eq!(env, want);
    }

    #[test]
    fn an_account_without_a_name_gets_home_slash_and_no_user() {
        let account = Account {
            name: None,
            home: "/".into(),
        };
        let env = names_and_values(&base_env(&account, |_| None, &[]));
        let names: Vec<&str> = env.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["PATH", "HOME", "SHELL"]);
    }
}
