//! `authorized_keys`: which operator keys an agent lets in, and for what.
