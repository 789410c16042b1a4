//! One tailed file: its identity, its read position, and reading lines out of it.
//!
//! Identity is device + inode, confirmed by a fingerprint (CRC-32 of the first up to
//! [`FP_MAX`] bytes) so a reused inode or a truncated-and-rewritten file is not taken for the
//! old one. The read position only ever moves past bytes that are in the open batch, in a
//! frame, or deliberately skipped (the tail of a cut line): a line that does not fit in the
//! batch is simply read again after the frame closes, so no partial line is ever buffered.

use crate::frame::{BatchBuilder, SourceRef, LINE_CUT, LINE_PARTIAL};
use crate::stats::Counters;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Bytes of a file's head that its fingerprint covers at most.
pub const FP_MAX: u32 = 256;

/// CRC-32 of the first `len` bytes of `f`, or `None` if it has fewer.
pub fn fingerprint(f: &File, len: u32) -> io::Result<Option<u32>> {
    let mut buf = [0u8; FP_MAX as usize];
    let buf = &mut buf[..len as usize];
    let mut got = 0;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], got as u64)? {
            0 => return Ok(None),
            n => got += n,
        }
    }
    Ok(Some(crc32fast::hash(buf)))
}

/// Whether all of `f`'s bytes (at least one) are the first bytes of `head`: a copy of the
/// file `head` was read from, taken before the tailer saw that file as short as the copy.
/// Every byte compared, not a fingerprint of a prefix: a generation that only shares its
/// first bytes with the file (a timestamp to the minute, a banner) is not one.
pub fn is_head_of(f: &File, head: &[u8]) -> bool {
    let Ok(m) = f.metadata() else { return false };
    let n = m.len();
    if n == 0 || n > head.len() as u64 {
        return false;
    }
    let mut buf = [0u8; FP_MAX as usize];
    let buf = &mut buf[..n as usize];
    let mut got = 0;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], got as u64) {
            Ok(0) | Err(_) => return false,
            Ok(k) => got += k,
        }
    }
    *buf == head[..buf.len()]
}

/// Why [`Tailed::read`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// At the end of the file (a partial line may be waiting).
    Eof,
    /// The batch cannot take the next line: close the frame and call again.
    BatchFull,
    /// Read `budget` bytes; more may be there.
    Budget,
    /// The file no longer starts with the bytes it was fingerprinted by: it was truncated
    /// (and perhaps written again) under the open descriptor. What was just read belongs to
    /// the new content and was not taken; the caller handles the truncation.
    Replaced,
}

/// A file being tailed.
#[derive(Debug)]
pub struct Tailed {
    /// Index of the input it belongs to.
    pub input: usize,
    /// Where it was last seen.
    pub path: PathBuf,
    /// The name frames give it: the one it was found under, kept across renames.
    pub wire_path: Rc<str>,
    pub(crate) file: File,
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Bytes covered by `fp`.
    pub fp_len: u32,
    /// Fingerprint of the first `fp_len` bytes.
    pub fp: u32,
    /// The last few (length, fingerprint) it grew from, oldest first; unused slots are
    /// `(0, 0)`. A copy taken while the file was shorter is found by these.
    pub fp_hist: [(u32, u32); 4],
    /// The `fp_len` bytes it is fingerprinted by, kept so that a copy shorter than anything
    /// seen of the file is told by all of its bytes (see [`is_head_of`]): at most
    /// [`FP_MAX`] bytes a file, 128 KiB with every file open.
    pub head: Vec<u8>,
    /// Next byte to read.
    pub pos: u64,
    /// Everything before this is in a spooled frame (or skipped).
    pub committed: u64,
    /// Size when last looked at.
    pub size: u64,
    /// When it stopped being reachable under a watched path (renamed, deleted, a copy).
    pub rotated: Option<Instant>,
    /// Inside the tail of a cut line: discard up to the next newline.
    pub skipping: bool,
    /// Whether the first read has checked that `pos` is not inside a cut line.
    pub line_checked: bool,
    /// Since when a last line without a newline has been waiting.
    pub partial_since: Option<Instant>,
    /// Not to be read until this file (its predecessor under the same name) is drained.
    pub wait_for: Option<(u64, u64)>,
    /// When bytes were last read from it.
    pub last_data: Instant,
    /// When it was opened.
    pub opened: Instant,
    /// Its modification time when opened: a copy made of it since is newer.
    pub found_mtime: Option<std::time::SystemTime>,
    /// Its modification time when last seen empty with nothing of it read (truncated): what
    /// is written to it from then on may be copied away and truncated before a look
    /// (copytruncate), leaving it empty, or refilled, with nothing to tell by. Taken when it
    /// is seen changed, and the generations modified since are looked for (`Tailer::refilled`).
    pub empty_at: Option<std::time::SystemTime>,
    /// For the next read only: read no further than this offset (see `Tailer::held_back`).
    pub limit: Option<u64>,
    /// Found starting like a live file (or empty): perhaps a copy in the making. Not read
    /// until a scan sees it differ, or claimed as the copy when the original is truncated.
    pub suspect: bool,
    /// The copytruncate copy of this file (dev, ino), attached while lines read from that
    /// file before its truncation were still in the batch: those lines are the copy's too,
    /// so its position is not checkpointed past them until they are in the spool.
    pub origin: Option<(u64, u64)>,
}

impl Tailed {
    /// Opens `path` for tailing from `pos`.
    pub fn open(input: usize, path: PathBuf, wire_path: Rc<str>, pos: u64) -> io::Result<Tailed> {
        let file = File::open(&path)?;
        let m = file.metadata()?;
        let mut t = Tailed {
            input,
            path,
            wire_path,
            file,
            dev: m.dev(),
            ino: m.ino(),
            fp_len: 0,
            fp: 0,
            fp_hist: Default::default(),
            head: Vec::new(),
            pos,
            committed: pos,
            size: m.len(),
            rotated: None,
            skipping: false,
            line_checked: false,
            partial_since: None,
            wait_for: None,
            last_data: Instant::now(),
            opened: Instant::now(),
            found_mtime: m.modified().ok(),
            empty_at: None,
            limit: None,
            suspect: false,
            origin: None,
        };
        t.refresh_fp()?;
        Ok(t)
    }

    /// Grows the fingerprint while the file is shorter than [`FP_MAX`].
    pub fn refresh_fp(&mut self) -> io::Result<()> {
        let want = (self.size.min(FP_MAX as u64)) as u32;
        if want > self.fp_len {
            let mut head = [0u8; FP_MAX as usize];
            let got = self.read_head(&mut head[..want as usize])?;
            if got > self.fp_len as usize {
                self.grow_fp(&head[..got]);
            }
        }
        Ok(())
    }

    /// Reads the file's first bytes into `head`; returns how many there were.
    fn read_head(&self, head: &mut [u8]) -> io::Result<usize> {
        let mut got = 0;
        while got < head.len() {
            match self.file.read_at(&mut head[got..], got as u64)? {
                0 => break,
                n => got += n,
            }
        }
        Ok(got)
    }

    /// Takes `head`, longer than the bytes fingerprinted so far, as the fingerprint; the one
    /// it replaces goes to the history.
    fn grow_fp(&mut self, head: &[u8]) {
        if self.fp_len > 0 {
            self.fp_hist.rotate_left(1);
            self.fp_hist[3] = (self.fp_len, self.fp);
        }
        self.fp_len = head.len() as u32;
        self.fp = crc32fast::hash(head);
        self.head.clear();
        self.head.extend_from_slice(head);
    }

    /// Forgets every fingerprint: the file was truncated, its next bytes are new content.
    pub fn forget_fp(&mut self) {
        self.fp_len = 0;
        self.fp = 0;
        self.fp_hist = Default::default();
        self.head = Vec::new();
    }

    /// Whether the file still starts with the bytes it was fingerprinted by.
    pub fn same_head(&self) -> io::Result<bool> {
        Ok(self.fp_len == 0 || fingerprint(&self.file, self.fp_len)? == Some(self.fp))
    }

    /// Starts over at the first byte: the file's content is new (truncated, or written over
    /// in place), nothing of it read, its fingerprints taken afresh.
    pub fn start_over(&mut self) {
        self.pos = 0;
        self.committed = 0;
        self.forget_fp();
        self.skipping = false;
        self.partial_since = None;
        self.empty_at = None;
        if let Ok(m) = self.file.metadata() {
            self.size = m.len();
            if m.len() == 0 {
                self.empty_at = m.modified().ok();
            }
        }
        let _ = self.verify_head();
    }

    /// Whether the content read from it is no longer there: the file is shorter than the
    /// position, or starts with other bytes (truncated, perhaps written again).
    pub fn rewritten(&self) -> bool {
        self.file.metadata().is_ok_and(|m| m.len() < self.pos) || !self.same_head().unwrap_or(true)
    }

    /// Checks that the file still starts with the bytes it was fingerprinted by, and grows
    /// the fingerprint over what is there now (up to [`FP_MAX`]) when it is still short.
    ///
    /// Called after every read: bytes read at `pos` belong to the content this identity
    /// names only if the head is unchanged afterwards. A truncation followed by new writes
    /// past `pos` would otherwise be read as the rest of the old content.
    pub fn verify_head(&mut self) -> io::Result<bool> {
        let mut head = [0u8; FP_MAX as usize];
        let got = self.read_head(&mut head)?;
        let fp_len = self.fp_len as usize;
        if got < fp_len || crc32fast::hash(&head[..fp_len]) != self.fp {
            return Ok(false);
        }
        if got > fp_len {
            self.grow_fp(&head[..got]);
        }
        Ok(true)
    }

    /// The file's current size, through the open descriptor (it may have been renamed).
    pub fn stat(&mut self) -> io::Result<u64> {
        self.size = self.file.metadata()?.len();
        Ok(self.size)
    }

    /// At the end of what was last seen of the file.
    pub fn at_eof(&self) -> bool {
        self.pos >= self.size
    }

    /// Reads lines into `batch` until the end of the file, a full batch, or `budget` bytes.
    ///
    /// Every byte consumed is charged to `budget`, skipped tails of cut lines included, so a
    /// call consumes at most `budget` bytes plus one line (at most `buf.len()`).
    #[allow(clippy::too_many_arguments)]
    pub fn read(
        &mut self,
        buf: &mut [u8],
        batch: &mut BatchBuilder,
        max_line: usize,
        partial_flush: Duration,
        now: Instant,
        ts_ms: u64,
        budget: &mut usize,
        c: &mut Counters,
    ) -> io::Result<Stop> {
        if !self.line_checked {
            self.line_checked = true;
            // Opened at a checkpointed position inside a line: the tail of a cut line (its
            // head went out, the rest was being skipped) or the rest of a line flushed
            // partial. A partial flush sends at most `max_line` bytes, so a line that began
            // further back than that was being cut: its rest is skipped again, not sent as a
            // line of its own.
            if self.pos > 0 && !self.skipping && self.inside_cut_line(max_line)? {
                self.skipping = true;
            }
        }
        let limit = self.limit.take();
        loop {
            if *budget == 0 {
                return Ok(Stop::Budget);
            }
            let max = limit.map_or(buf.len(), |l| {
                (l.saturating_sub(self.pos)).min(buf.len() as u64) as usize
            });
            let n = match max {
                0 => 0,
                _ => self.file.read_at(&mut buf[..max], self.pos)?,
            };
            if n == 0 {
                return Ok(Stop::Eof);
            }
            // The read reached the limit: what follows it (the rest of a line, say) is for
            // the next call, which has no limit. Without this a limit inside a line was read
            // again and again, the buffer never "full" and the line never complete.
            let at_limit = limit.is_some_and(|l| self.pos + n as u64 >= l);
            if !self.verify_head()? {
                return Ok(Stop::Replaced);
            }
            // After verify_head: frames name the fingerprint as it is now.
            let wire = self.wire_path.clone();
            let src = SourceRef {
                path: &wire,
                dev: self.dev,
                ino: self.ino,
                fp_len: self.fp_len,
                fp: self.fp,
            };
            self.last_data = now;
            let chunk = &buf[..n];
            let mut s = 0;
            while let Some(i) = memchr::memchr(b'\n', &chunk[s..]) {
                let e = s + i;
                let offset = self.pos;
                let consumed = (e + 1 - s) as u64;
                if self.skipping {
                    self.skipping = false;
                    c.cut_bytes += consumed;
                } else {
                    // The line's exact bytes, without its newline (a CR before it stays).
                    let mut text = &chunk[s..e];
                    let cut = text.len().saturating_sub(max_line);
                    let flags = if cut > 0 {
                        text = &text[..max_line];
                        LINE_CUT
                    } else {
                        0
                    };
                    if !batch.push(&src, offset, offset + consumed, ts_ms, flags, text) {
                        // Read again after the frame closes: counted then, not now.
                        return Ok(Stop::BatchFull);
                    }
                    if cut > 0 {
                        c.lines_cut += 1;
                        c.cut_bytes += cut as u64;
                    }
                    c.lines_read += 1;
                }
                self.consume(consumed, budget, c);
                s = e + 1;
            }
            // What is left has no newline yet.
            let rest = n - s;
            if at_limit && !self.skipping && rest <= max_line {
                // Bytes past the limit (the line's rest) are read at once by the next call,
                // which has no limit; Eof would let a quiet pipeline sleep on them.
                return Ok(if rest > 0 { Stop::Budget } else { Stop::Eof });
            }
            if self.skipping && rest > 0 {
                c.cut_bytes += rest as u64;
                self.consume(rest as u64, budget, c);
                continue;
            }
            if rest > max_line {
                // Too long to ever be a whole line: send its head, skip to the newline.
                let offset = self.pos;
                let text = &chunk[s..s + max_line];
                if !batch.push(&src, offset, offset + rest as u64, ts_ms, LINE_CUT, text) {
                    return Ok(Stop::BatchFull);
                }
                c.lines_read += 1;
                c.lines_cut += 1;
                c.cut_bytes += (rest - max_line) as u64;
                self.consume(rest as u64, budget, c);
                self.skipping = true;
                continue;
            }
            if n < max && rest > 0 {
                // A last line still being written: wait for its newline, up to partial_flush.
                let since = *self.partial_since.get_or_insert(now);
                if now.duration_since(since) >= partial_flush {
                    let offset = self.pos;
                    let text = &chunk[s..n];
                    if !batch.push(
                        &src,
                        offset,
                        offset + rest as u64,
                        ts_ms,
                        LINE_PARTIAL,
                        text,
                    ) {
                        return Ok(Stop::BatchFull);
                    }
                    c.lines_read += 1;
                    c.partial_lines += 1;
                    self.consume(rest as u64, budget, c);
                }
                return Ok(Stop::Eof);
            }
            if n < max {
                return Ok(Stop::Eof);
            }
        }
    }

    /// Whether `pos` is inside a line that began more than `max_line` bytes before it.
    fn inside_cut_line(&self, max_line: usize) -> io::Result<bool> {
        let back = (max_line as u64 + 1).min(self.pos);
        let mut before = vec![0u8; back as usize];
        self.file.read_exact_at(&mut before, self.pos - back)?;
        Ok(back > max_line as u64 && !before.contains(&b'\n'))
    }

    /// Moves past `n` bytes that are in the batch or deliberately skipped.
    fn consume(&mut self, n: u64, budget: &mut usize, c: &mut Counters) {
        c.bytes_read += n;
        self.pos += n;
        self.partial_since = None;
        *budget = budget.saturating_sub(n as usize);
    }
}
