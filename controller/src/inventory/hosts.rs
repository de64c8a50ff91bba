//! The `hosts:` section: each entry expanded into hosts (a name range paired with an address
//! range of the same length, or all of its names sharing one address), each name checked, and
//! every host name defined once.
//!
//! Parsing an address and port is [`super::endpoint`]'s job; this module decides which address
//! goes with which name, and blames the right host or entry when something is wrong.

use std::collections::BTreeMap;
use std::path::Path;

use super::endpoint::{parse_endpoint, parse_map_endpoint, parse_ssh_target};
use super::raw::{RawHost, RawHostMap};
use super::{expand_in, is_valid_name, Host, InventoryError};

/// Every host of the `hosts:` entries in file order, and each host name's position in that list.
///
/// # Errors
///
/// A bad range, name, address or port, or a host name defined twice.
pub(super) fn build_hosts(
    path: &Path,
    default_port: u16,
    entries: &[(String, RawHost)],
) -> Result<(Vec<Host>, BTreeMap<String, usize>), InventoryError> {
    let mut hosts = Vec::new();
    let mut index = BTreeMap::new();
    for (entry, raw) in entries {
        for host in expand_host_entry(path, default_port, entry, raw)? {
            if index.contains_key(&host.name) {
                return Err(InventoryError::DuplicateHost {
                    path: path.to_owned(),
                    host: host.name,
                    entry: entry.clone(),
                });
            }
            index.insert(host.name.clone(), hosts.len());
            hosts.push(host);
        }
    }
    Ok((hosts, index))
}

/// Turns one `hosts:` entry into its hosts, pairing expanded names with expanded addresses.
fn expand_host_entry(
    path: &Path,
    default_port: u16,
    entry: &str,
    raw: &RawHost,
) -> Result<Vec<Host>, InventoryError> {
    let names = expand_in(path, entry, entry)?;
    let address_pattern = match raw {
        RawHost::Text(text) => text,
        RawHost::Map(map) => &map.address,
    };
    let addresses = expand_in(path, entry, address_pattern)?;
    let ssh_logins = match raw {
        RawHost::Map(RawHostMap { ssh: Some(ssh), .. }) => {
            let logins = expand_in(path, entry, ssh)?;
            if logins.len() != 1 && logins.len() != names.len() {
                return Err(InventoryError::AddressCountMismatch {
                    path: path.to_owned(),
                    host: entry.to_owned(),
                    n_hosts: names.len(),
                    address: ssh.clone(),
                    n_addresses: logins.len(),
                });
            }
            logins
        }
        _ => Vec::new(),
    };
    // One address is shared by every name (useful with distinct ports); otherwise pair them up.
    if addresses.len() != 1 && addresses.len() != names.len() {
        return Err(InventoryError::AddressCountMismatch {
            path: path.to_owned(),
            host: entry.to_owned(),
            n_hosts: names.len(),
            address: address_pattern.clone(),
            n_addresses: addresses.len(),
        });
    }
    let mut hosts = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        if !is_valid_name(&name) {
            return Err(InventoryError::BadHostName {
                path: path.to_owned(),
                host: name,
            });
        }
        let text = if addresses.len() == 1 {
            &addresses[0]
        } else {
            &addresses[i]
        };
        let (address, port) = match raw {
            RawHost::Text(_) => parse_endpoint(text, default_port),
            RawHost::Map(map) => parse_map_endpoint(text, map.port, default_port),
        }
        .map_err(|bad| bad.into_error(path, &name, text))?;
        let ssh = match ssh_logins.len() {
            0 => None,
            1 => Some(&ssh_logins[0]),
            _ => Some(&ssh_logins[i]),
        }
        .map(|login| parse_ssh_target(login).map_err(|bad| bad.into_error(path, &name, login)))
        .transpose()?;
        hosts.push(Host {
            name,
            address,
            port,
            ssh,
        });
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use crate::inventory::fixtures::{load, parse};
    use crate::inventory::InventoryError;

    #[test]
    fn name_range_pairs_with_address_range_and_shares_a_plain_address() {
        let inv =
            load("hosts:\n  n[8:10]: 10.0.0.[1:3]\n  s[1:2]: { address: db.local, port: 5 }\n");
        let got: Vec<String> = inv
            .hosts
            .iter()
            .map(|h| format!("{}={}", h.name, h.endpoint()))
            .collect();
        assert_eq!(
            got,
            [
                "n8=10.0.0.1:7070",
                "n9=10.0.0.2:7070",
                "n10=10.0.0.3:7070",
                "s1=db.local:5",
                "s2=db.local:5"
            ]
        );
    }

    #[test]
    fn address_range_of_other_length_is_rejected() {
        let err = parse("hosts:\n  app[1:3]: 10.0.0.[1:2]\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/muster/inventory.yaml: host \"app[1:3]\" expands to 3 name(s) but its address \"10.0.0.[1:2]\" expands to 2"
        );
    }

    #[test]
    fn bad_range_names_the_entry() {
        let err = parse("hosts:\n  web[3:1]: 10.0.0.1\n").unwrap_err();
        assert!(matches!(err, InventoryError::Range { .. }), "got {err:?}");
        assert!(err.to_string().contains("\"web[3:1]\""), "got {err}");
        let err = parse("hosts:\n  h[1:200000]: 10.0.0.1\n").unwrap_err();
        assert!(err.to_string().contains("more than 100000"), "got {err}");
    }

    #[test]
    fn bad_host_name_is_rejected() {
        let err = parse("hosts:\n  web[1-3]: 10.0.0.1\n").unwrap_err();
        assert!(
            matches!(err, InventoryError::BadHostName { .. }),
            "got {err:?}"
        );
        assert!(err.to_string().contains("\"web[1-3]\""), "got {err}");
    }

    #[test]
    fn a_host_name_that_could_climb_out_of_a_folder_is_rejected() {
        // Host names become file names (kept output, pulled files).
        for name in ["..", ".", ".hidden"] {
            let err = parse(&format!("hosts:\n  \"{name}\": 10.0.0.1\n")).unwrap_err();
            assert!(
                matches!(err, InventoryError::BadHostName { .. }),
                "{name}: got {err:?}"
            );
        }
    }

    #[test]
    fn duplicate_literal_host_is_reported_by_name() {
        let err = parse("hosts:\n  web1: 10.0.0.1\n  web1: 10.0.0.2\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/muster/inventory.yaml: host \"web1\" is defined twice"
        );
    }

    #[test]
    fn range_overlapping_a_plain_host_is_a_duplicate() {
        let err = parse("hosts:\n  web02: 10.0.0.1\n  web[01:03]: 10.0.0.[1:3]\n").unwrap_err();
        assert!(
            matches!(err, InventoryError::DuplicateHost { .. }),
            "got {err:?}"
        );
        assert_eq!(
            err.to_string(),
            "/etc/muster/inventory.yaml: host \"web02\" is defined twice (again by \"web[01:03]\")"
        );
    }
}
