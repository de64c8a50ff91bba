//! One host's endpoint as written in the inventory, parsed and checked: `addr`, `addr:port`,
//! `[v6]`, `[v6]:port`, a bare IPv6 literal, or the address and port of the map form.
//!
//! This module knows nothing of host names or ranges: it gets one text, already expanded, and
//! answers with an address and a port, or with what is wrong ([`BadEndpoint`]), which the caller
//! turns into an error naming the host. An address is an IP literal or a well-formed DNS name;
//! nothing is resolved here, so loading an inventory never touches the network.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use super::{InventoryError, SshTarget};

/// What is wrong with an endpoint, before we know which host it belongs to.
pub(super) enum BadEndpoint {
    Address,
    Port(String),
}

impl BadEndpoint {
    pub(super) fn into_error(self, path: &Path, host: &str, text: &str) -> InventoryError {
        match self {
            BadEndpoint::Address => InventoryError::BadAddress {
                path: path.to_owned(),
                host: host.to_owned(),
                address: text.to_owned(),
            },
            BadEndpoint::Port(port) => InventoryError::BadPort {
                path: path.to_owned(),
                host: host.to_owned(),
                port,
            },
        }
    }
}

/// Parses `addr`, `addr:port`, `[v6]`, `[v6]:port` or a bare IPv6 literal.
pub(super) fn parse_endpoint(text: &str, default_port: u16) -> Result<(String, u16), BadEndpoint> {
    if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or(BadEndpoint::Address)?;
        if inner.parse::<Ipv6Addr>().is_err() {
            return Err(BadEndpoint::Address);
        }
        let port = match after {
            "" => default_port,
            _ => parse_port(after.strip_prefix(':').ok_or(BadEndpoint::Address)?)?,
        };
        return Ok((inner.to_owned(), port));
    }
    // Two or more colons can only be a bare IPv6 literal, which cannot carry a port.
    if text.matches(':').count() >= 2 {
        return Ok((parse_address(text)?, default_port));
    }
    match text.split_once(':') {
        Some((address, port)) => Ok((parse_address(address)?, parse_port(port)?)),
        None => Ok((parse_address(text)?, default_port)),
    }
}

/// Parses the `{ address, port }` form, where the address carries no port.
pub(super) fn parse_map_endpoint(
    text: &str,
    port: Option<i64>,
    default_port: u16,
) -> Result<(String, u16), BadEndpoint> {
    let bare = text
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .filter(|inner| inner.contains(':'))
        .unwrap_or(text);
    let address = parse_address(bare)?;
    let port = match port {
        None => default_port,
        Some(port) => to_port(port).ok_or_else(|| BadEndpoint::Port(port.to_string()))?,
    };
    Ok((address, port))
}

fn parse_address(text: &str) -> Result<String, BadEndpoint> {
    let ok =
        text.parse::<Ipv4Addr>().is_ok() || text.parse::<Ipv6Addr>().is_ok() || is_dns_name(text);
    if ok {
        Ok(text.to_owned())
    } else {
        Err(BadEndpoint::Address)
    }
}

/// Parses an SSH login, `[user@]host[:port]`, where host is as in [`parse_endpoint`]. The
/// user is a plain login name: it goes to ssh as an argument, and a name ssh would read
/// as an option or a hostile remote shell would read as syntax has no place there.
pub(super) fn parse_ssh_target(text: &str) -> Result<SshTarget, BadEndpoint> {
    let (user, rest) = match text.rsplit_once('@') {
        Some((user, rest)) => (Some(user), rest),
        None => (None, text),
    };
    if user.is_some_and(|user| !is_login_name(user)) {
        return Err(BadEndpoint::Address);
    }
    // The agent's default port stands in for "none given", then is taken back out.
    const NONE: u16 = 0;
    let (host, port) = parse_endpoint(rest, NONE)?;
    Ok(SshTarget {
        user: user.map(str::to_owned),
        host,
        port: (port != NONE).then_some(port),
    })
}

/// A login name ssh takes as a value and no remote shell reads as syntax: letters,
/// digits, `.`, `_` and `-`, not starting with `-`.
pub fn is_login_name(text: &str) -> bool {
    !text.is_empty()
        && !text.starts_with('-')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn parse_port(text: &str) -> Result<u16, BadEndpoint> {
    let bad = || BadEndpoint::Port(text.to_owned());
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let port = text.parse::<i64>().map_err(|_| bad())?;
    to_port(port).ok_or_else(bad)
}

pub(super) fn to_port(port: i64) -> Option<u16> {
    u16::try_from(port).ok().filter(|&p| p != 0)
}

/// Letters, digits, `-` and `.`, at most 253 characters, labels of 1 to 63 characters that do
/// not start or end with `-`. A name made only of numeric labels is refused, because it is
/// really a malformed IPv4 address such as `10.0.0.300` (often a range that ran too far).
fn is_dns_name(text: &str) -> bool {
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() || text.len() > 253 {
        return false;
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    let all_numeric = name
        .split('.')
        .all(|label| label.bytes().all(|b| b.is_ascii_digit()));
    labels_ok && !all_numeric
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::fixtures::{load, parse};
    use crate::inventory::Host;

    #[test]
    fn ipv6_forms_format_with_brackets() {
        let inv = load(
            "hosts:\n  a: \"[::1]:7004\"\n  b: \"::1\"\n  c: \"[fe80::2]\"\n  d: { address: \"::1\", port: 9 }\n",
        );
        let got: Vec<String> = inv.hosts.iter().map(Host::endpoint).collect();
        assert_eq!(
            got,
            ["[::1]:7004", "[::1]:7070", "[fe80::2]:7070", "[::1]:9"]
        );
        assert_eq!(inv.hosts[0].address, "::1");
    }

    #[test]
    fn bad_address_is_rejected_with_host_and_value() {
        for address in [
            "foo bar",
            "-bad.example",
            "10.0.0.300",
            "a..b",
            "[10.0.0.1]:7000",
            "",
            "[::1",
        ] {
            let text = format!("hosts:\n  h1: {address:?}\n");
            let err = parse(&text).unwrap_err();
            assert!(
                matches!(err, InventoryError::BadAddress { .. }),
                "{address:?}: got {err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains("\"h1\"") && msg.contains(&format!("{address:?}")),
                "got {msg}"
            );
        }
        let err = parse("hosts:\n  a[1:2]: 10.0.0.[255:256]\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/muster/inventory.yaml: host \"a2\" has a bad address \"10.0.0.256\""
        );
    }

    #[test]
    fn bad_port_is_rejected_with_host_and_value() {
        for text in [
            "hosts:\n  h1: 10.0.0.1:0\n",
            "hosts:\n  h1: 10.0.0.1:70000\n",
            "hosts:\n  h1: 10.0.0.1:http\n",
            "hosts:\n  h1: \"10.0.0.1:\"\n",
            "hosts:\n  h1: { address: 10.0.0.1, port: 0 }\n",
            "hosts:\n  h1: \"[::1]:-1\"\n",
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                matches!(err, InventoryError::BadPort { .. }),
                "{text:?}: got {err:?}"
            );
            assert!(err.to_string().contains("\"h1\""), "got {err}");
        }
        let err = parse("defaults:\n  port: 70000\n").unwrap_err();
        assert!(
            matches!(err, InventoryError::BadDefaultPort { port: 70000, .. }),
            "got {err:?}"
        );
    }

    #[test]
    fn dns_names_are_checked() {
        assert!(is_dns_name("db-1.example.com"));
        assert!(is_dns_name("localhost"));
        assert!(is_dns_name("example.com."));
        assert!(!is_dns_name("ex_ample.com"));
        assert!(!is_dns_name(&"a".repeat(64)));
        assert!(!is_dns_name(&["abc"; 64].join(".")));
        assert!(!is_dns_name("1.2.3"));
    }

    #[test]
    fn ssh_logins_take_a_user_and_a_port_and_expand_with_the_names() {
        let inv = load(
            "hosts:\n  a: { address: 10.0.0.1, ssh: \"admin@10.0.0.1:2222\" }\n  \
             b: { address: \"::1\", ssh: \"[::1]\" }\n  c: 10.0.0.3\n  \
             n[1:2]: { address: \"10.0.1.[1:2]\", ssh: \"root@10.0.2.[1:2]\" }\n",
        );
        let ssh: Vec<String> = inv
            .hosts
            .iter()
            .map(|host| {
                let target = host.ssh_target();
                format!("{:?} {} {:?}", target.user, target.host, target.port)
            })
            .collect();
        assert_eq!(
            ssh,
            [
                "Some(\"admin\") 10.0.0.1 Some(2222)",
                "None ::1 None",
                "None 10.0.0.3 None",
                "Some(\"root\") 10.0.2.1 None",
                "Some(\"root\") 10.0.2.2 None",
            ]
        );
        for bad in ["-oProxyCommand=x@h", "a b@h", "@h", "root@h:0", "root@"] {
            let err =
                parse(&format!("hosts:\n  a: {{ address: h, ssh: \"{bad}\" }}\n")).unwrap_err();
            assert!(err.to_string().contains("\"a\""), "{bad}: {err}");
        }
    }
}
