//! The file sink: frames appended to one file, acknowledged once written (and fsynced).
//!
//! The file is a plain concatenation of frames, the format `tailbeat decode` reads. A write
//! that fails halfway is cut back, so the file never holds a partial frame that a later
//! frame would follow.

use super::{Sink, SinkError};
use crate::frame::{self, FrameReader, Item};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// How far back from its end the file is searched for its last frame at open.
const TAIL_WINDOW: u64 = 8 << 20;

/// Appends frames to a file.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: Option<File>,
    fsync: bool,
    sent: u64,
    len: u64,
    /// The last frame of an earlier run found in the file: (instance, seq).
    last: Option<(String, u64)>,
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
            last: None,
        };
        s.reopen()?;
        s.recover_tail()?;
        Ok(s)
    }

    fn err(&self, source: std::io::Error) -> SinkError {
        SinkError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn reopen(&mut self) -> Result<(), SinkError> {
        // Made by the agent, the output is private like the spool (it holds every shipped
        // line); a file or directory the user made keeps the mode the user gave it.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| self.err(e))?;
        }
        let f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| self.err(e))?;
        let meta = f.metadata().map_err(|e| self.err(e))?;
        self.len = meta.len();
        if self.fsync && !meta.is_file() {
            // A device or a FIFO (/dev/null, a pipe to another program): fsync means nothing
            // there and fails with EINVAL, which would stall delivery for good.
            log::info!(
                "{}: not a regular file, writes are not fsynced",
                self.path.display()
            );
            self.fsync = false;
        }
        self.file = Some(f);
        Ok(())
    }
}

impl FileSink {
    /// Reads the whole frames from `start` to the end, handing each batch frame's head to
    /// `each` until it says stop (false); returns where a frame torn at the end begins.
    fn scan_tail(
        &self,
        f: &mut File,
        start: u64,
        each: &mut dyn FnMut(&frame::BatchHead<'_>, &[u8]) -> bool,
    ) -> Result<Option<u64>, SinkError> {
        f.seek(SeekFrom::Start(start)).map_err(|e| self.err(e))?;
        let mut r = FrameReader::new(f.take(self.len - start), frame::MAX_PAYLOAD);
        let mut dec = frame::Decoder::default();
        let mut torn = None;
        while let Some(item) = r.next_item().map_err(|e| self.err(e))? {
            match item {
                Item::Frame { bytes, .. } => {
                    torn = None;
                    if dec.head(bytes).is_ok_and(|h| !each(&h, bytes)) {
                        break;
                    }
                }
                Item::Torn { pos, .. } if start + pos > 0 => torn = Some(start + pos),
                _ => {}
            }
        }
        Ok(torn)
    }

    /// Finds the last whole frame in the file, and cuts off a torn one after it (a write the
    /// agent was killed in the middle of), so the next frame starts on a clean boundary.
    fn recover_tail(&mut self) -> Result<(), SinkError> {
        let Ok(mut f) = File::open(&self.path) else {
            return Ok(());
        };
        let len = self.len;
        if len == 0 || !f.metadata().is_ok_and(|m| m.is_file()) {
            return Ok(());
        }
        if self.fsync {
            // What the file holds is taken as acknowledged (`holds`, `replay`): on disk
            // first. A run killed between its write and its fsync left frames only in the
            // page cache, and a checkpoint covering them would outlive them in a power cut.
            f.sync_data().map_err(|e| self.err(e))?;
        }
        let mut last = None;
        let torn = self.scan_tail(&mut f, len.saturating_sub(TAIL_WINDOW), &mut |h, _| {
            last = Some((h.instance.to_string(), h.seq));
            true
        })?;
        self.last = last;
        if let Some(at) = torn {
            log::warn!(
                "{}: cutting off {} bytes of a frame torn by an earlier crash",
                self.path.display(),
                len - at
            );
            let f = self.file.as_ref().expect("opened");
            f.set_len(at).map_err(|e| self.err(e))?;
            self.len = at;
        }
        Ok(())
    }

    /// Moves `files` forward by every frame of `instance` in the file numbered `from` or
    /// later, in order; returns the last one's number, or 0. Read from the end back, a
    /// window twice as long each time, until a frame before `from` (or another stream's) or
    /// the file's start is in it: after a power cut the spool may have lost its copies of
    /// what the file holds (`Spool::open_behind`), and the file is the record of where
    /// those lines ended.
    pub fn replay(
        &self,
        instance: &str,
        from: u64,
        gone: &[(u64, u64)],
        files: &mut Vec<frame::FileMark>,
    ) -> Result<u64, SinkError> {
        if self.holds(instance) < from {
            return Ok(0);
        }
        let Ok(mut f) = File::open(&self.path) else {
            return Ok(0);
        };
        let mut window = TAIL_WINDOW;
        // Whole frames for those that move positions: their lines give the bytes before.
        let mut dec = frame::Decoder::default();
        loop {
            let start = self.len.saturating_sub(window);
            let (mut first, mut too_late, mut last) = (true, false, 0);
            let mut moved = files.clone();
            let mut seqs = Vec::new();
            self.scan_tail(&mut f, start, &mut |h, bytes| {
                let ours = h.instance == instance;
                if std::mem::take(&mut first) && start > 0 && ours && h.seq > from {
                    // The window begins after `from`: look further back (nothing moved yet).
                    too_late = true;
                    return false;
                }
                if ours && h.seq >= from {
                    match dec.batch(bytes) {
                        Ok(b) => crate::spool::advance_by(&mut moved, &b),
                        // Its head decoded, so does the rest unless damaged past the CRC:
                        // then the positions without what was before them.
                        Err(_) => {
                            for s in &h.sources {
                                crate::spool::advance(&mut moved, s);
                            }
                        }
                    }
                    seqs.push(h.seq);
                    last = h.seq;
                }
                true
            })?;
            if too_late {
                window = window.saturating_mul(2);
                continue;
            }
            if let Some((a, b)) = first_missing(&mut seqs, from, gone) {
                // Frames numbered between the checkpoint and the file's last went elsewhere
                // (another sink, before a reload switched back to this one): positions
                // from the frames on both sides of the hole would skip what the missing
                // ones moved, or go back. The spool's copies are used instead.
                log::warn!(
                    "{}: frames {a} to {b} of {instance} are not in it (sent to another sink before a reload, or dropped): positions are taken from the spool, not from this file",
                    self.path.display()
                );
                return Ok(0);
            }
            *files = moved;
            return Ok(last);
        }
    }
}

/// The first range of numbers from `from` to the last of `seqs` that is neither in `seqs`
/// (sorted and deduplicated here: a frame sent again after a restart is in a file twice)
/// nor in `gone` (numbers never sent: dropped, or given out and lost).
fn first_missing(seqs: &mut Vec<u64>, from: u64, gone: &[(u64, u64)]) -> Option<(u64, u64)> {
    crate::sort::sort(seqs);
    seqs.dedup();
    let mut want = from;
    for &s in seqs.iter() {
        while want < s {
            match gone.iter().find(|&&(a, b)| a <= want && want <= b) {
                Some(&(_, b)) => want = b.saturating_add(1),
                None => {
                    let next_gone = gone.iter().filter(|&&(a, _)| a > want).map(|&(a, _)| a - 1);
                    return Some((want, next_gone.min().unwrap_or(u64::MAX).min(s - 1)));
                }
            }
        }
        want = want.max(s + 1);
    }
    None
}

impl Sink for FileSink {
    fn holds(&self, instance: &str) -> u64 {
        match &self.last {
            Some((i, seq)) if i == instance => *seq,
            _ => 0,
        }
    }

    fn window(&self) -> usize {
        // One fsync for what the spool's group commit lets through at once (1 MiB: 16
        // frames of 64 KiB, about 40 lz4 frames), little to write again on error.
        64
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

#[cfg(test)]
mod tests {
    use super::first_missing;

    #[test]
    fn the_first_number_a_sink_file_is_missing_is_found_past_repeats_and_numbers_gone() {
        let gone = [(5, 6), (7, 9), (12, 18), (20, 20)];
        for (seqs, from, want) in [
            (vec![3, 4, 5], 3, None),
            (vec![4, 3, 3, 4], 3, None),
            // 5..9 were never sent (two ranges side by side), 12..18 and 20 neither.
            (vec![3, 4, 10, 11, 19, 21], 3, None),
            (vec![4, 5], 3, Some((3, 3))),
            (vec![1, 2, 3, 12], 1, Some((4, 4))),
            (vec![1, 2, 3, 4, 10, 12], 1, Some((11, 11))),
            (vec![1, 2, 3, 11, 19], 1, Some((4, 4))),
            (vec![], 3, None),
        ] {
            let mut s = seqs.clone();
            assert_eq!(
                first_missing(&mut s, from, &gone),
                want,
                "{seqs:?} from {from}"
            );
        }
    }
}
