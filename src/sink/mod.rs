//! Sinks: where frames go, and how they are acknowledged.
//!
//! A sink owns its connection or file and never touches the spool: the agent reads frames
//! from the spool, hands them over with [`Sink::send`], and releases them from the spool only
//! when [`Sink::flush`] acknowledges them. The contract:
//! - `send` returning `Ok` means the sink has taken the frame, not that it is safe;
//! - `flush` returning `Ok(seq)` means every frame sent up to `seq` is acknowledged (durable
//!   at the sink); the spool may forget them;
//! - any `Err`, or a future dropped before it completes, means nothing unacknowledged is
//!   safe: the agent rewinds and sends those frames again, with the same sequence numbers;
//! - `holds` lets a sink that can read back what it has (the file sink) say so at start-up,
//!   which makes delivery to it exactly-once across crashes; other sinks say 0.
//!
//! Sinks are an enum, not trait objects: async trait methods are not object-safe, and an
//! enum costs no allocation and lets the compiler drop sinks a build leaves out.

pub mod failover;
mod file;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "mqtt")]
pub mod mqtt;
mod stdout;

pub use file::FileSink;
#[cfg(feature = "http")]
pub use http::{HttpSink, FRAME_CONTENT_TYPE};
#[cfg(feature = "mqtt")]
pub use mqtt::MqttSink;
pub use stdout::StdoutSink;

use crate::config;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// A sink operation that failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum SinkError {
    /// A file sink could not write or sync.
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Standard output is closed (e.g. `tailbeat run | head`).
    Closed,
    /// The sink type is left out of this build (cargo features).
    Unsupported,
    /// The MQTT broker could not be reached, refused, or broke the protocol.
    Mqtt {
        /// What happened.
        msg: String,
        /// How long the client's reconnect backoff asks to wait before the next attempt.
        retry_after: Option<std::time::Duration>,
    },
    /// The peer refused a frame as too large (HTTP 413): the agent cuts it into smaller
    /// frames (`frame::rebatch`) instead of sending it again or setting it aside.
    TooLarge {
        /// The frame's sequence number.
        seq: u64,
        /// The frame as it was sent.
        frame: Vec<u8>,
        /// Who refused it, and how.
        msg: String,
    },
    /// The HTTP server could not be reached or answered with a status worth retrying.
    Http {
        /// What happened.
        msg: String,
        /// How long the server asked us to wait (`Retry-After`).
        retry_after: Option<std::time::Duration>,
    },
}

impl SinkError {
    /// How long the peer asked to be left alone, if it did.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            SinkError::Http { retry_after, .. } | SinkError::Mqtt { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkError::Io { path, source } => write!(f, "sink {}: {source}", path.display()),
            SinkError::Closed => f.write_str("sink: standard output is closed"),
            SinkError::Unsupported => f.write_str("sink: this type is left out of this build"),
            SinkError::Mqtt { msg, .. } => write!(f, "sink mqtt: {msg}"),
            SinkError::TooLarge { seq, frame, msg } => write!(
                f,
                "sink: frame {seq} ({} bytes) refused as too large: {msg}",
                frame.len()
            ),
            SinkError::Http { msg, retry_after } => {
                write!(f, "sink http: {msg}")?;
                match retry_after {
                    Some(d) => write!(f, " (Retry-After {} s)", d.as_secs()),
                    None => Ok(()),
                }
            }
        }
    }
}

impl std::error::Error for SinkError {}

/// What every sink does.
#[allow(async_fn_in_trait)]
pub trait Sink {
    /// How many frames may be sent before a [`flush`](Sink::flush).
    fn window(&self) -> usize;
    /// The highest seq of `instance` that the sink already holds from an earlier run, so
    /// frames up to it need not be sent again after a crash; 0 when it cannot tell.
    fn holds(&self, _instance: &str) -> u64 {
        0
    }
    /// Takes one frame.
    async fn send(&mut self, seq: u64, frame: &[u8]) -> Result<(), SinkError>;
    /// Waits until the oldest frame sent is acknowledged (a sink may wait for more: the file
    /// sink syncs all it was given); returns the highest seq acknowledged so far. The deliver
    /// loop then sends again while fewer than [`window`](Sink::window) are in flight.
    async fn flush(&mut self) -> Result<u64, SinkError>;
    /// When the sink wants [`idle`](Sink::idle) called if nothing is sent before (an MQTT
    /// keep-alive); `None` when it never does.
    fn idle_until(&self) -> Option<std::time::Instant> {
        None
    }
    /// Housekeeping while there is nothing to send.
    async fn idle(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// The agent is stopping cleanly: say goodbye (MQTT: the retained `offline`).
    async fn close(&mut self) {}
    /// Frames acknowledged by setting them aside (HTTP dead letters) since the last call.
    fn take_dead_letters(&mut self) -> u64 {
        0
    }
}

/// The configured sink.
#[derive(Debug)]
pub enum AnySink {
    /// `type = "file"`.
    File(FileSink),
    /// `type = "stdout"`.
    Stdout(StdoutSink),
    /// `type = "mqtt"` (boxed: its buffers and session are several times the others' size).
    #[cfg(feature = "mqtt")]
    Mqtt(Box<MqttSink>),
    /// `type = "http"`.
    #[cfg(feature = "http")]
    Http(Box<HttpSink>),
}

impl AnySink {
    /// Builds the sink a config describes (opening files, not yet connecting anywhere),
    /// identifying as `stream` (the id in the frames; `{instance}` in MQTT topics), keeping
    /// HTTP dead letters in `dir` (at most `dead_letter_bytes`).
    #[cfg_attr(not(feature = "http"), allow(unused_variables))]
    pub fn new(
        sink: &config::Sink,
        stream: &str,
        dir: &std::path::Path,
        dead_letter_bytes: u64,
    ) -> Result<AnySink, SinkError> {
        Ok(match sink {
            config::Sink::File { path, fsync } => AnySink::File(FileSink::open(path, *fsync)?),
            config::Sink::Stdout {} => AnySink::Stdout(StdoutSink::default()),
            #[cfg(feature = "mqtt")]
            config::Sink::Mqtt(m) => AnySink::Mqtt(Box::new(MqttSink::new(m, stream, dir))),
            #[cfg(feature = "http")]
            config::Sink::Http(h) => {
                AnySink::Http(Box::new(HttpSink::new(h, stream, dir, dead_letter_bytes)?))
            }
            #[allow(unreachable_patterns)]
            _ => return Err(SinkError::Unsupported),
        })
    }

    /// For a sink that keeps what it acknowledged (the file sink): moves `files` forward by
    /// every frame of `instance` it holds numbered `from` or later, in order, and returns
    /// the last one's number; 0 for other sinks, or when it has none (see
    /// `Spool::open_behind`). A file that cannot be read counts as holding none.
    pub fn replay(
        &self,
        instance: &str,
        from: u64,
        gone: &[(u64, u64)],
        files: &mut Vec<crate::frame::FileMark>,
    ) -> u64 {
        match self {
            AnySink::File(s) => s.replay(instance, from, gone, files).unwrap_or_else(|e| {
                log::warn!("{e}: frames it holds are not read back");
                0
            }),
            _ => 0,
        }
    }
}

impl Sink for AnySink {
    fn holds(&self, instance: &str) -> u64 {
        match self {
            AnySink::File(s) => s.holds(instance),
            AnySink::Stdout(s) => s.holds(instance),
            #[cfg(feature = "mqtt")]
            AnySink::Mqtt(s) => s.holds(instance),
            #[cfg(feature = "http")]
            AnySink::Http(s) => s.holds(instance),
        }
    }
    fn window(&self) -> usize {
        match self {
            AnySink::File(s) => s.window(),
            AnySink::Stdout(s) => s.window(),
            #[cfg(feature = "mqtt")]
            AnySink::Mqtt(s) => s.window(),
            #[cfg(feature = "http")]
            AnySink::Http(s) => s.window(),
        }
    }
    async fn send(&mut self, seq: u64, frame: &[u8]) -> Result<(), SinkError> {
        match self {
            AnySink::File(s) => s.send(seq, frame).await,
            AnySink::Stdout(s) => s.send(seq, frame).await,
            #[cfg(feature = "mqtt")]
            AnySink::Mqtt(s) => s.send(seq, frame).await,
            #[cfg(feature = "http")]
            AnySink::Http(s) => s.send(seq, frame).await,
        }
    }
    async fn flush(&mut self) -> Result<u64, SinkError> {
        match self {
            AnySink::File(s) => s.flush().await,
            AnySink::Stdout(s) => s.flush().await,
            #[cfg(feature = "mqtt")]
            AnySink::Mqtt(s) => s.flush().await,
            #[cfg(feature = "http")]
            AnySink::Http(s) => s.flush().await,
        }
    }
    fn idle_until(&self) -> Option<std::time::Instant> {
        match self {
            #[cfg(feature = "mqtt")]
            AnySink::Mqtt(s) => s.idle_until(),
            _ => None,
        }
    }
    async fn idle(&mut self) -> Result<(), SinkError> {
        match self {
            #[cfg(feature = "mqtt")]
            AnySink::Mqtt(s) => s.idle().await,
            _ => Ok(()),
        }
    }
    async fn close(&mut self) {
        #[cfg(feature = "mqtt")]
        if let AnySink::Mqtt(s) = self {
            s.close().await;
        }
    }
    fn take_dead_letters(&mut self) -> u64 {
        match self {
            #[cfg(feature = "http")]
            AnySink::Http(s) => s.take_dead_letters(),
            _ => 0,
        }
    }
}
