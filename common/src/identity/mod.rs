//! Who is who: the operator's identity and the agents' host keys (OpenSSH Ed25519 keys, as
//! `ssh-keygen -t ed25519` makes them), which operators an agent lets in and for what
//! (`authorized_keys`), and which host keys `ctl` trusts (`known_hosts`), in the formats
//! and with the habits operators already have from OpenSSH.
//!
//! - [`keys`]: reading and making keys, signing with a key file or through `ssh-agent`,
//!   fingerprints as `ssh-keygen -l` prints them.
//! - [`authorized_keys`]: the agent's list of operator keys with their `from=` and `permit=`
//!   options, re-read when the file changes.
//! - [`known_hosts`]: ctl's list of host keys by address, port and name.

pub mod authorized_keys;
pub mod keys;
pub mod known_hosts;
