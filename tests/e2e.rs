//! muster's end-to-end tests: real `agent` and `ctl` processes talking over loopback, with no
//! network mocks. One test binary (see `[[test]]` in Cargo.toml) so the binaries are built
//! once; each module below is one area of behaviour.

// The harness: builds the binaries once, starts agents, runs ctl, temp fleets, deadlines.
mod util;

// `ctl run` and `ctl ping` against live agents: selection, streaming, exit codes and the
// summary, --json, --gather, timeouts, Ctrl-C, unreachable and silent hosts.
mod run;

// Keys: a wrong key is refused before anything runs; bad key files stop ctl before it
// contacts anyone.
mod auth;

// Raw bytes at an agent (garbage, oversized or half frames, silence): the agent drops the
// connection and keeps serving everyone else.
mod protocol_abuse;

// Broken inventories and selections: exit 2, a clear message, nothing contacted or logged.
mod inventory;

// The operation log: start and end records, and many concurrent ctl processes.
mod audit;

// `ctl log`: listing and filtering real operations, `show` with kept output, and `verify`
// on intact, tampered, rotated and concurrently written logs.
mod log;

// `ctl push` and `ctl pull`: large files verified on disk with flat memory, trees, interrupted
// pushes, missing files, hostile peers and the operation log.
mod transfer;

// ctl's memory while hosts print far more than it may hold: live lines, --json and
// --gather stay under one bound whatever the volume.
mod output_memory;
