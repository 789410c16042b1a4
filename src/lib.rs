//! tailbeat: a small, static, single-threaded agent that tails log files on edge devices and
//! ships them, at least once and in order, as compact checksummed frames.
//!
//! The data path, top to bottom:
//!
//! ```text
//! input (tail files) → frame (batch lines) → spool (bounded, crash-safe) → sink (file | stdout | mqtt | http)
//!                ▲                                                          │
//!                └────── file offsets are checkpointed with the frames ─────┘
//!
//! control (heartbeats, config status, remote configs) ⇄ fleet (ConfigServer v2, HTTP or MQTT)
//! ```
//!
//! - [`input`] finds files by glob, follows rotation by rename and copytruncate, and reads
//!   lines; [`frame`] defines the wire format (see `src/frame/FORMAT.md`); [`spool`] keeps
//!   frames on disk until the [`sink`] acknowledges them; [`agent`] runs it all, once per
//!   pipeline (the local file's, and each fleet pipeline with its own batching, spool and
//!   sink); [`control`] talks to the fleet and applies the configs it sends; `mqtt` is the
//!   one MQTT client (protocol state, connection) under the MQTT sink and the fleet's link.
//! - Invariants: a line is never forgotten before its frame is acknowledged; every frame has
//!   a sequence number that never goes backwards, so duplicates are detectable; memory is
//!   bounded by the config, not by the input; every loss is counted.
//!
//! # Threads
//!
//! The process has two OS threads, whatever the sinks and the fleet server; the tests
//! count them:
//! 1. **main**, which runs every task on smol's `LocalExecutor`: tailing, batching,
//!    spooling, sending (the MQTT sink: rumqttc's packet codec over an async-io
//!    `TcpStream`, not its tokio event loop; the HTTP sink and the ConfigServer client:
//!    our own HTTP/1.1 client over the same stream, see [`http`]; TLS for both through
//!    futures-rustls), the fleet client, signals, stats, the metrics endpoint. File reads and fsyncs run on it
//!    directly: page-cache reads bounded by a 1 MiB budget per turn, and fsyncs batched to one
//!    per window of frames. Going through `smol::fs` instead would add a blocking pool. It
//!    parks on a futex between turns, not in the reactor (see `agent`). Host names of
//!    brokers and HTTP servers are resolved on it too (`to_socket_addrs`: no resolver
//!    thread; an IP literal costs nothing).
//! 2. **async-io**, started by `async-io` on first use of the reactor: it runs the reactor
//!    (timers, sockets, the signal pipe, each pipeline's inotify descriptor) and wakes main.
//!
//! Signals arrive through `async-signal`'s self-pipe on the reactor: no signal thread.
#![forbid(unsafe_code)]
// The tasks share their state on one thread: a `RefCell` borrow held across an `.await`
// would panic when another task borrows it meanwhile. The agent's state and pipelines are
// `agent::Local`, reached only inside synchronous closures, so the compiler itself refuses
// an `.await` under their borrow; this lint (clippy's MIR check) stays for every other
// `RefCell` (the events queue, the HTTP client's idle connection), and as a second guard.
#![deny(clippy::await_holding_refcell_ref)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod agent;
pub mod backoff;
pub mod config;
#[cfg(feature = "consume")]
pub mod consume;
pub mod control;
#[cfg(any(feature = "consume", feature = "fleet"))]
pub mod flags;
#[cfg(feature = "fleet")]
pub mod fleetview;
pub mod frame;
#[cfg(feature = "http")]
pub mod http;
pub mod input;
pub mod logger;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "mqtt")]
pub mod mqtt;
#[cfg(any(feature = "http", feature = "mqtt"))]
mod net;
pub mod sink;
pub mod sort;
pub mod spool;
pub mod stats;
#[cfg(feature = "tls")]
pub mod tls;

pub use agent::{run, RunOpts};
pub use config::Config;

use std::fmt;
use std::path::PathBuf;

/// Why the agent could not start or stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The config is invalid.
    Config(config::ConfigError),
    /// The spool could not be opened.
    Spool(spool::SpoolError),
    /// The sink could not be set up.
    Sink(sink::SinkError),
    /// `--once` stopped (by a signal) with frames still in the spool.
    Undelivered(u64),
    /// A listening socket could not be opened.
    Listen {
        /// The config key that names it.
        key: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Any other file operation.
    Io {
        /// What was being done.
        what: &'static str,
        /// To what.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => e.fmt(f),
            Error::Spool(e) => e.fmt(f),
            Error::Sink(e) => e.fmt(f),
            Error::Undelivered(n) => {
                write!(
                    f,
                    "stopped with {n} frames not delivered; they stay in the spool"
                )
            }
            Error::Listen { key, addr, source } => {
                write!(f, "{key}: cannot listen on {addr}: {source}")
            }
            Error::Io { what, path, source } => {
                write!(f, "cannot {what} {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config(e) => Some(e),
            Error::Spool(e) => Some(e),
            Error::Sink(e) => Some(e),
            Error::Listen { source, .. } | Error::Io { source, .. } => Some(source),
            Error::Undelivered(_) => None,
        }
    }
}
