//! The descriptors the agent inherited from whoever started it: none may reach a command.
//!
//! Everything the agent opens itself is close-on-exec already (Rust's std, tokio and mio
//! open with `O_CLOEXEC`/`SOCK_CLOEXEC`, and `common::atomic_file` passes `OFlags::CLOEXEC`
//! to every `openat`). What it inherited is not: a shell's or a supervisor's stray
//! descriptors would pass through the agent into every command it runs. So at start,
//! before anything else, the agent marks every descriptor above 2 close-on-exec. It keeps
//! them open (it might be meant to use one) but no command gets them.
//!
//! This is done once in the agent rather than in each child (a `pre_exec` with
//! `close_range`) so that spawning stays on std's fast path and needs no `unsafe` code
//! between `fork` and `exec`.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};

use rustix::io::{fcntl_getfd, fcntl_setfd, FdFlags};

/// Marks every open descriptor above 2 close-on-exec; returns how many were not.
///
/// Call it before the process starts threads that open or close descriptors.
///
/// # Errors
/// `/proc/self/fd` cannot be listed.
pub fn mark_inherited_cloexec() -> io::Result<usize> {
    let mut marked = 0;
    // The listing's own descriptor is among the entries; it is close-on-exec already.
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Some(fd) = entry?
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<RawFd>().ok())
        else {
            continue;
        };
        if fd <= 2 {
            continue;
        }
        // SAFETY: `fd` was just listed as open, and it stays open while it is borrowed:
        // this runs before the agent has any thread that could close it, and nothing here
        // closes descriptors.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let Ok(flags) = fcntl_getfd(fd) else {
            continue;
        };
        if !flags.contains(FdFlags::CLOEXEC) {
            fcntl_setfd(fd, flags | FdFlags::CLOEXEC)?;
            marked += 1;
        }
    }
    Ok(marked)
}
