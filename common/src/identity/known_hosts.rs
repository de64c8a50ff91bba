//! `known_hosts`: which host keys ctl trusts, by address, port and name.
