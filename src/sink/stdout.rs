//! The stdout sink: lines as JSON on standard output, for trying things out.

use super::{Sink, SinkError};
use crate::frame;
use std::io::Write;

/// Prints each frame's lines as JSON objects, one per line.
#[derive(Debug, Default)]
pub struct StdoutSink {
    sent: u64,
    dec: frame::Decoder,
}

impl Sink for StdoutSink {
    fn window(&self) -> usize {
        16
    }

    async fn send(&mut self, seq: u64, bytes: &[u8]) -> Result<(), SinkError> {
        let b = self.dec.batch(bytes).map_err(|e| SinkError::Io {
            path: "-".into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        let out = std::io::stdout();
        let mut out = out.lock();
        frame::json::write_batch(&mut out, &b).map_err(|_| SinkError::Closed)?;
        self.sent = seq;
        Ok(())
    }

    async fn flush(&mut self) -> Result<u64, SinkError> {
        std::io::stdout().flush().map_err(|_| SinkError::Closed)?;
        Ok(self.sent)
    }
}
