//! The file sink: frames appended to one file, acknowledged once written (and fsynced).
//!
//! The file is a plain concatenation of frames, the format `tailbeat decode` reads. A write
//! that fails halfway is cut back, so the file never holds a partial frame that a later
//! frame would follow.

use super::{Sink, SinkError};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Appends frames to a file.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: Option<File>,
    fsync: bool,
    sent: u64,
    len: u64,
}

impl FileSink {
    /// Opens (creating it and its directory if needed) `path` for appending.
    pub fn open(path: &Path, fsync: bool) -> Result<FileSink, SinkError> {
        let mut s = FileSink {
            path: path.to_path_buf(),
            file: None,
            fsync,
            sent: 0,
            len: 0,
        };
        s.reopen()?;
        Ok(s)
    }

    fn err(&self, source: std::io::Error) -> SinkError {
        SinkError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn reopen(&mut self) -> Result<(), SinkError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| self.err(e))?;
        }
        let f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|e| self.err(e))?;
        self.len = f.metadata().map_err(|e| self.err(e))?.len();
        self.file = Some(f);
        Ok(())
    }
}

impl Sink for FileSink {
    fn window(&self) -> usize {
        // Sixteen frames per fsync: enough to amortise it, little to write again on error.
        16
    }

    async fn send(&mut self, seq: u64, frame: &[u8]) -> Result<(), SinkError> {
        if self.file.is_none() {
            self.reopen()?;
        }
        let f = self.file.as_mut().expect("opened above");
        if let Err(e) = f.write_all(frame) {
            let _ = f.set_len(self.len);
            self.file = None;
            return Err(self.err(e));
        }
        self.len += frame.len() as u64;
        self.sent = seq;
        Ok(())
    }

    async fn flush(&mut self) -> Result<u64, SinkError> {
        if let (true, Some(f)) = (self.fsync, &self.file) {
            if let Err(e) = f.sync_data() {
                self.file = None;
                return Err(self.err(e));
            }
        }
        Ok(self.sent)
    }
}
