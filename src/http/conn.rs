//! One connection to an HTTP server: plain TCP, or TLS over it (`https://`), both on
//! async-io, so a request waits on the reactor and never blocks the pipeline thread.

use std::io;

/// A connection: `http://` plain, `https://` with TLS.
pub(super) use crate::net::Stream as Conn;

impl Conn {
    /// An idle connection is fit for another request only if nothing has arrived on it: a
    /// byte would be more than the last answer announced (or a TLS alert), and an end means
    /// the server closed it. A look at the socket (no wait: it is non-blocking) catches both
    /// before a request is spent on it; the race that remains, a close in flight, is what the
    /// one retry in `Client::post` is for.
    pub(super) fn idle_and_open(&self) -> bool {
        matches!(self.tcp().peek(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}
