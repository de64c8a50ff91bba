//! [`StreamPair`]: one value for each of a command's two output streams.
//!
//! A command's stdout and stderr are handled alike almost everywhere (shown, capped, kept,
//! counted, recorded), so every place that holds something per stream holds a
//! `StreamPair`, indexed by [`Stream`], rather than a two-element array, a tuple or an
//! index of its own.

use common::message::Stream;
use serde::{Deserialize, Serialize};

/// One `T` for stdout and one for stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPair<T> {
    pub stdout: T,
    pub stderr: T,
}

impl<T> StreamPair<T> {
    /// Both halves made by `make`.
    pub fn from_fn(mut make: impl FnMut(Stream) -> T) -> StreamPair<T> {
        StreamPair {
            stdout: make(Stream::Stdout),
            stderr: make(Stream::Stderr),
        }
    }

    /// The half for `stream`.
    pub fn get(&self, stream: Stream) -> &T {
        match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        }
    }

    /// The half for `stream`, to change.
    pub fn get_mut(&mut self, stream: Stream) -> &mut T {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }

    /// Both halves turned into something else, each told which stream it is.
    pub fn map<U>(self, mut f: impl FnMut(Stream, T) -> U) -> StreamPair<U> {
        StreamPair {
            stdout: f(Stream::Stdout, self.stdout),
            stderr: f(Stream::Stderr, self.stderr),
        }
    }
}
