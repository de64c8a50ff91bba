//! muster's end-to-end tests: real `agent` and `ctl` processes talking over loopback, with no
//! network mocks. One test binary (see `[[test]]` in Cargo.toml) so the binaries are built
//! once; each module below is one area of behaviour.

// The harness: builds the binaries once, starts agents (with a files folder of their own when
// a test needs one), runs ctl, temp fleets, deadlines, and the fixtures several modules share
// (hashes, modes and temporary files on disk, --json results by host). Nothing here asserts
// a behaviour of muster.
mod util;

// `ctl run` and `ctl ping` against live agents: selection, streaming, exit codes and the
// summary, --json, --gather, timeouts, Ctrl-C, unreachable, silent and cut-off hosts.
mod run;

// The agent and ctl as processes on their hosts: signals (SIGHUP), what a command inherits
// from the agent (environment, descriptors), the modes of log files and folders, and how
// ctl shows control characters from hosts on a terminal.
mod process;

// Keys: a wrong key is refused before anything runs; bad key files stop ctl before it
// contacts anyone.
mod auth;

// Peers that break the protocol. Raw bytes at an agent (garbage, oversized or half frames,
// silence, a forged proof): the agent drops the connection and keeps serving everyone else,
// also behind floods of them (bounded sockets, memory, log lines and log folder size).
// Authenticated fakes built from `common`: an agent that answers a pull with paths that
// escape (ctl refuses, writes nothing outside its folder) and a controller that lies about
// a pushed file (the agent refuses and keeps the old file). Fakes go here, not in the module
// of the command they talk to.
mod protocol_abuse;

// docs/PROTOCOL.md's appendix: its Python controller, as printed, against a real agent.
mod protocol_appendix;

// Broken inventories and selections: exit 2, a clear message, nothing contacted or logged.
mod inventory;

// The operation log as `run` writes it: start and end records, and many concurrent ctl
// processes appending to one log.
mod audit;

// `ctl log`: listing and filtering real operations, `show` with kept output, and `verify`
// with operators' public keys on intact, tampered, forged, rotated and concurrently written
// logs, and on one log of two operators.
mod log;

// `ctl push` and `ctl pull` between real binaries: large files verified on disk with flat
// memory, trees, the scp rule, interrupted pushes, missing files, full disks, and their
// start and end records in the operation log.
mod transfer;

// A local user on an agent host against the root agent's file requests: links planted at or
// on the way to a push's or pull's path, temporary files and folders swapped mid-push,
// stale temporary files under a reused pid. Each test repeats one attack on real agents.
mod attacks_files;

// ctl's memory while hosts print far more than it may hold: live lines, --json and
// --gather stay under one bound whatever the volume.
mod output_memory;

// Fake hosts for `ctl bootstrap`: each a real sshd on its own loopback address, in a mount
// namespace of its own where /usr/local/bin, /etc/muster, /var and /run are its folders.
mod sshd;

// `ctl bootstrap` over real SSH: install, unchanged, upgrade and rollback, remove, and
// hosts refused before anything changes (SSH key, space, architecture, glibc).
mod bootstrap;

// `ctl completions` and `ctl man`: every subcommand covered, scripts that parse, pages
// that man reads.
mod reference;

// Rollouts of `ctl run`: --batch windows, --canary, --max-fail (no host starts after the
// budget is spent; the rest are `skipped`), --order random:SEED.
mod rollout;
