//! Inputs: finding files by glob, following them through rotation, reading their lines.
//!
//! Owns the open log files and their read positions; never writes a file, never touches the
//! spool. What always holds:
//! - a file is read to its end before it is let go, whether it was renamed away, deleted, or
//!   is the copy left by copytruncate, and a successor under the same name waits for it, so
//!   each name's lines stay in order;
//! - a byte is skipped only when counted: cut line tails, truncations with no copy, files
//!   that vanished unread;
//! - `committed` moves only when the agent says a frame holding those lines is in the spool.
//!
//! Polling, not inotify: one `stat` per watched path per poll costs nothing at the one-second
//! idle interval, works the same on every filesystem (NFS, overlay, tmpfs on gateways), and
//! needs no extra descriptors or threads.

pub mod file;
pub mod glob;
#[cfg(test)]
mod tests;

use crate::config::{Input, StartAt};
use crate::frame::{BatchBuilder, FileMark};
use crate::stats::Counters;
use file::{fingerprint, Stop, Tailed};
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

/// Most files open at once; more are left for later and warned about.
pub const MAX_OPEN_FILES: usize = 512;

/// The bytes read per [`Tailer::read`] call before it yields to other work.
pub const READ_BUDGET: usize = 1 << 20;

/// The least a file may read in one pass of [`Tailer::read`], however many files there are:
/// smaller shares would cost more system calls than they save in fairness.
pub const MIN_SHARE: usize = 64 << 10;

/// What a [`Tailer::read`] call ended on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every file is at its end.
    Idle,
    /// The batch is full: close the frame, then read again.
    BatchFull,
    /// The budget ran out; there is more to read.
    More,
}

/// All files of all inputs.
///
/// Its memory is one read buffer (64 KiB, or the largest `max_line_bytes` + 2) plus a small
/// record per open file, at most [`MAX_OPEN_FILES`] of them.
#[derive(Debug)]
pub struct Tailer {
    inputs: Vec<Input>,
    files: Vec<Tailed>,
    /// Positions from the last run (or of files no input matches now), by (dev, ino).
    marks: HashMap<(u64, u64), FileMark>,
    buf: Vec<u8>,
    first_run: bool,
    started: bool,
    warned_full: bool,
    /// Where the next [`read`](Self::read) starts, so every file gets its turn.
    next: usize,
}

impl Tailer {
    /// A tailer for `inputs`, resuming from `marks`; `first_run` means no state existed, so
    /// `start_at` applies to the files already there.
    pub fn new(inputs: Vec<Input>, marks: Vec<FileMark>, first_run: bool) -> Tailer {
        let mut t = Tailer {
            inputs: Vec::new(),
            files: Vec::new(),
            marks: marks.into_iter().map(|m| ((m.dev, m.ino), m)).collect(),
            buf: Vec::new(),
            first_run,
            started: false,
            warned_full: false,
            next: 0,
        };
        t.set_inputs(inputs);
        t
    }

    /// Replaces the inputs (a reload): files of removed inputs are closed, their positions
    /// kept as marks; files of new inputs are picked up by the next [`scan`](Self::scan).
    pub fn set_inputs(&mut self, inputs: Vec<Input>) {
        let max_line = inputs
            .iter()
            .map(|i| i.max_line_bytes.0 as usize)
            .max()
            .unwrap_or(0);
        self.buf = vec![0; (max_line + 2).max(64 << 10)];
        let old = std::mem::replace(&mut self.inputs, inputs);
        let mut kept = Vec::new();
        for mut f in std::mem::take(&mut self.files) {
            let name = &old[f.input].name;
            match self.inputs.iter().position(|i| &i.name == name) {
                Some(i) => {
                    f.input = i;
                    kept.push(f);
                }
                None => {
                    log::info!("input {name:?} removed: closing {}", f.path.display());
                    self.marks.insert((f.dev, f.ino), mark(&f, f.committed));
                }
            }
        }
        self.files = kept;
    }

    /// Number of files open.
    pub fn open_files(&self) -> usize {
        self.files.len()
    }

    /// Looks for new, rotated and truncated files. Call at least every poll interval.
    pub fn scan(&mut self, now: Instant, batch: &BatchBuilder, c: &mut Counters) {
        // Truncations first, so that a copytruncate copy is claimed as a copy before the glob
        // walk below could take it for a new file.
        for i in (0..self.files.len()).rev() {
            self.check_truncation(i, now, c);
        }
        let mut seen: Vec<(u64, u64)> = Vec::new();
        let mut paths: Vec<(usize, PathBuf)> = Vec::new();
        for (idx, input) in self.inputs.iter().enumerate() {
            let mut mine = Vec::new();
            for p in &input.paths {
                glob::expand(p, &mut mine);
            }
            mine.retain(|p| !input.exclude.iter().any(|x| glob::matches(x, p)));
            mine.sort();
            mine.dedup();
            paths.extend(mine.into_iter().map(|p| (idx, p)));
        }
        let mut found: Vec<(usize, PathBuf, u64, u64, u64)> = Vec::new();
        for (idx, p) in paths {
            let Ok(m) = std::fs::metadata(&p) else {
                continue;
            };
            if !m.is_file() || seen.contains(&(m.dev(), m.ino())) {
                continue;
            }
            seen.push((m.dev(), m.ino()));
            found.push((idx, p, m.dev(), m.ino(), m.len()));
        }
        for f in self.files.iter_mut() {
            if f.rotated.is_none() && !seen.contains(&(f.dev, f.ino)) {
                log::debug!("{} rotated away (renamed or deleted)", f.path.display());
                c.files_rotated += 1;
                f.rotated = Some(now);
            }
        }
        for (idx, path, dev, ino, size) in found {
            if let Some(f) = self.files.iter_mut().find(|f| (f.dev, f.ino) == (dev, ino)) {
                if f.rotated.is_none() {
                    f.path = path;
                }
                continue;
            }
            self.open_new(idx, path, dev, ino, size, now, c);
        }
        if !self.started {
            self.started = true;
            self.resolve_marks(now, c);
        }
        self.retire(now, batch);
    }

    #[allow(clippy::too_many_arguments)]
    fn open_new(
        &mut self,
        idx: usize,
        path: PathBuf,
        dev: u64,
        ino: u64,
        size: u64,
        now: Instant,
        c: &mut Counters,
    ) {
        if self.files.len() >= MAX_OPEN_FILES {
            if !self.warned_full {
                log::warn!(
                    "{MAX_OPEN_FILES} files open: {} and others wait until some are let go",
                    path.display()
                );
                self.warned_full = true;
            }
            return;
        }
        let wire: Rc<str> = path.to_string_lossy().into();
        let mut t = match Tailed::open(idx, path.clone(), wire.clone(), 0) {
            Ok(t) => t,
            Err(e) => {
                log::warn!("cannot open {}: {e}", path.display());
                return;
            }
        };
        if t.fp_len >= 32 && self.is_copy_of_live(&t) {
            // Identical head to a file we tail: a copy in the making (copytruncate's copy
            // step). The truncation check claims it once the original is truncated.
            return;
        }
        if let Some(m) = self.marks.remove(&(dev, ino)) {
            if m.fp_len <= t.fp_len && fingerprint(&t.file, m.fp_len).ok().flatten() == Some(m.fp)
                || m.fp_len == 0
            {
                if size >= m.offset {
                    t.pos = m.offset;
                    t.committed = m.offset;
                    t.wire_path = String::from_utf8_lossy(&m.path).into();
                    log::debug!("{}: resuming at byte {}", path.display(), m.offset);
                } else {
                    self.truncated_while_down(&m, &t, now, c);
                }
            } else {
                log::debug!("{}: inode reused by a new file", path.display());
                if m.size > m.offset {
                    self.vanished(&m, c);
                }
            }
        } else if !self.started && self.first_run && self.inputs[idx].start_at == StartAt::Tail {
            t.pos = size;
            t.committed = size;
        }
        // The same name still draining a rotated predecessor: wait for it.
        if let Some(p) = self
            .files
            .iter()
            .rev()
            .find(|f| f.rotated.is_some() && *f.wire_path == *wire)
        {
            t.wait_for = Some((p.dev, p.ino));
        }
        log::info!("tailing {} from byte {}", path.display(), t.pos);
        c.files_opened += 1;
        self.files.push(t);
    }

    fn is_copy_of_live(&self, t: &Tailed) -> bool {
        self.files.iter().any(|f| {
            f.rotated.is_none()
                && f.fp_len >= t.fp_len.min(32)
                && fingerprint(&t.file, f.fp_len).ok().flatten() == Some(f.fp)
        })
    }

    /// A checkpointed file found shorter than its committed offset at start-up.
    fn truncated_while_down(
        &mut self,
        m: &FileMark,
        live: &Tailed,
        now: Instant,
        c: &mut Counters,
    ) {
        c.files_truncated += 1;
        let dir = live.path.parent().unwrap_or(Path::new("."));
        match find_copy(dir, m.fp_len, m.fp, m.offset, (live.dev, live.ino)) {
            Some(copy) => self.attach_copy(copy, &live.wire_path, live.input, m.offset, now, c),
            None => self.truncation_loss(&live.path, m.size, m.offset, c),
        }
    }

    fn check_truncation(&mut self, i: usize, now: Instant, c: &mut Counters) {
        let f = &mut self.files[i];
        let before = f.size;
        let size = match f.stat() {
            Ok(s) => s,
            Err(e) => {
                log::warn!("cannot stat {}: {e}", f.path.display());
                return;
            }
        };
        // verify_head also takes the fingerprint further while the file is short.
        let same = f.verify_head().unwrap_or(true);
        if size >= f.pos && same {
            return;
        }
        self.truncated(i, before, now, c);
    }

    /// File `i`, last seen `before` bytes long, was truncated (and perhaps written again)
    /// since its bytes before `pos` were read. Its unread rest, if any, is in a copy (copytruncate) or lost; either way the
    /// file itself is read again from its head.
    fn truncated(&mut self, i: usize, before: u64, now: Instant, c: &mut Counters) {
        c.files_truncated += 1;
        let f = &mut self.files[i];
        let (fp_len, fp, pos) = (f.fp_len, f.fp, f.pos);
        let dir = f.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let (key, wire, input, path) =
            ((f.dev, f.ino), f.wire_path.clone(), f.input, f.path.clone());
        f.pos = 0;
        f.committed = 0;
        f.fp_len = 0;
        f.fp = 0;
        f.skipping = false;
        f.partial_since = None;
        let _ = f.stat();
        let _ = f.verify_head();
        log::info!("{} truncated at byte {pos}", path.display());
        // The copy is claimed even when nothing of it is unread: a glob that also matches
        // rotated names would otherwise take it for a new file and read it again. Its
        // length, not the size last seen, tells what is unread: the writer may have
        // appended between our last read and the copy.
        match find_copy(&dir, fp_len, fp, u64::from(fp_len), key) {
            Some(copy) => {
                let before_len = self.files.len();
                self.attach_copy(copy, &wire, input, pos, now, c);
                if self.files.len() > before_len {
                    // Read the copy before what is written to the truncated file from now on.
                    let copy = self.files.pop().expect("just pushed");
                    let ck = (copy.dev, copy.ino);
                    self.files.insert(i, copy);
                    self.files[i + 1].wait_for = Some(ck);
                }
            }
            None => self.truncation_loss(&path, before, pos, c),
        }
    }

    fn attach_copy(
        &mut self,
        copy: PathBuf,
        wire: &Rc<str>,
        input: usize,
        pos: u64,
        now: Instant,
        c: &mut Counters,
    ) {
        if let Ok(m) = std::fs::metadata(&copy) {
            if self
                .files
                .iter()
                .any(|f| (f.dev, f.ino) == (m.dev(), m.ino()))
            {
                return;
            }
        }
        match Tailed::open(input, copy.clone(), wire.clone(), pos) {
            Ok(mut t) => {
                log::info!(
                    "reading the rest of {wire} from its copy {} at byte {pos}",
                    copy.display()
                );
                t.rotated = Some(now);
                c.files_opened += 1;
                self.files.push(t);
            }
            Err(e) => log::warn!("cannot open copy {}: {e}", copy.display()),
        }
    }

    fn truncation_loss(&mut self, path: &Path, size: u64, pos: u64, c: &mut Counters) {
        let lost = size.saturating_sub(pos);
        if lost > 0 {
            c.truncated_lost_bytes += lost;
            log::warn!(
                "{} was truncated with {lost} bytes unread and no copy of them was found: lost",
                path.display()
            );
        }
    }

    fn vanished(&mut self, m: &FileMark, c: &mut Counters) {
        let lost = m.size.saturating_sub(m.offset);
        c.vanished_lost_bytes += lost;
        log::warn!(
            "{} is gone with {lost} bytes unread: lost",
            String::from_utf8_lossy(&m.path)
        );
    }

    /// After the first scan: marks of files no glob found. Renamed while the agent was down?
    /// Then drain them. Still there but unmatched (an input was removed)? Keep the mark.
    /// Gone? Count what was unread.
    fn resolve_marks(&mut self, now: Instant, c: &mut Counters) {
        let marks: Vec<FileMark> = self.marks.drain().map(|(_, m)| m).collect();
        for m in marks {
            let path = PathBuf::from(std::ffi::OsStr::from_bytes(&m.path));
            let still =
                std::fs::metadata(&path).is_ok_and(|md| (md.dev(), md.ino()) == (m.dev, m.ino));
            if still {
                self.marks.insert((m.dev, m.ino), m);
                continue;
            }
            let dir = path.parent().unwrap_or(Path::new("."));
            let renamed = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .find(|e| {
                    e.metadata()
                        .is_ok_and(|md| md.is_file() && (md.dev(), md.ino()) == (m.dev, m.ino))
                });
            let wire: Rc<str> = String::from_utf8_lossy(&m.path).into();
            // The input that found it under its old name: its line limit, partial flush and
            // rotate wait apply to the rest of it. None (the input went while the agent was
            // down): the file is not ours to read any more; its mark stays, as above.
            let Some(input) = self.inputs.iter().position(|i| {
                i.paths.iter().any(|p| glob::matches(p, &path))
                    && !i.exclude.iter().any(|x| glob::matches(x, &path))
            }) else {
                self.marks.insert((m.dev, m.ino), m);
                continue;
            };
            match renamed.map(|e| e.path()) {
                Some(p) => match Tailed::open(input, p.clone(), wire.clone(), m.offset) {
                    Ok(mut t) if t.same_head().unwrap_or(false) && t.size >= m.offset => {
                        log::info!(
                            "{} was rotated to {} while tailbeat was down: reading it from byte {}",
                            wire,
                            p.display(),
                            m.offset
                        );
                        t.rotated = Some(now);
                        t.fp_len = m.fp_len;
                        t.fp = m.fp;
                        c.files_opened += 1;
                        // Before the file that now has its name.
                        let at = self
                            .files
                            .iter()
                            .position(|f| *f.wire_path == *wire)
                            .unwrap_or(self.files.len());
                        let key = (t.dev, t.ino);
                        self.files.insert(at, t);
                        if let Some(n) = self.files.get_mut(at + 1) {
                            if *n.wire_path == *wire {
                                n.wait_for = Some(key);
                            }
                        }
                    }
                    _ => self.vanished(&m, c),
                },
                None => self.vanished(&m, c),
            }
        }
    }

    /// Closes rotated files that are drained and quiet, and whose lines are all in the spool.
    /// Each leaves a mark, so a glob that also matches rotated names (`app.log*`) does not
    /// read it again; marks of files that no longer exist are pruned.
    fn retire(&mut self, now: Instant, batch: &BatchBuilder) {
        let inputs = &self.inputs;
        let mut done = Vec::new();
        self.files.retain(|f| {
            let Some(since) = f.rotated else { return true };
            let wait = inputs
                .get(f.input)
                .map_or(std::time::Duration::ZERO, |i| i.rotate_wait.0);
            let quiet = now.duration_since(since.max(f.last_data)) >= wait;
            let finished = f.at_eof() && quiet && !batch.holds(f.dev, f.ino);
            if finished {
                log::debug!("done with rotated {} ({})", f.path.display(), f.wire_path);
                let mut m = mark(f, f.pos);
                m.path = f.path.as_os_str().as_bytes().to_vec();
                done.push(m);
            }
            !finished
        });
        self.marks.retain(|_, m| {
            let p = Path::new(std::ffi::OsStr::from_bytes(&m.path));
            std::fs::metadata(p).is_ok_and(|md| (md.dev(), md.ino()) == (m.dev, m.ino))
        });
        for m in done {
            self.marks.insert((m.dev, m.ino), m);
        }
    }

    /// Reads lines from the files into `batch`.
    ///
    /// A call consumes at most [`READ_BUDGET`] bytes plus one line (one read buffer), shared
    /// between the files: each pass gives every file at most an equal share (at least
    /// [`MIN_SHARE`]), and a call that stops early (full batch, spent budget) is continued by
    /// the next call from the file after the one it stopped at. So a busy file delays the
    /// others by at most one share, and one frame, per turn.
    pub fn read(
        &mut self,
        batch: &mut BatchBuilder,
        now: Instant,
        ts_ms: u64,
        c: &mut Counters,
    ) -> Outcome {
        let n = self.files.len();
        if n == 0 {
            return Outcome::Idle;
        }
        let mut budget = READ_BUDGET;
        let share = (READ_BUDGET / n).max(MIN_SHARE);
        let start = self.next % n;
        loop {
            let mut hungry = false;
            for k in 0..n {
                let i = (start + k) % n;
                if self.held_back(i) {
                    continue;
                }
                let f = &mut self.files[i];
                let input = &self.inputs[f.input];
                let given = share.min(budget);
                let mut left = given;
                let r = f.read(
                    &mut self.buf,
                    batch,
                    input.max_line_bytes.0 as usize,
                    input.partial_flush.0,
                    now,
                    ts_ms,
                    &mut left,
                    c,
                );
                budget -= given - left;
                match r {
                    Ok(Stop::Eof) => f.size = f.size.max(f.pos),
                    Ok(Stop::BatchFull) => {
                        self.next = i + 1;
                        return Outcome::BatchFull;
                    }
                    Ok(Stop::Budget) => hungry = true,
                    Ok(Stop::Replaced) => {
                        let before = f.size.max(f.pos);
                        self.truncated(i, before, now, c);
                        // The copy, if found, now stands at `i`: it goes first.
                        self.next = i;
                        return Outcome::More;
                    }
                    Err(e) => log::warn!("reading {}: {e}", f.path.display()),
                }
                if budget == 0 {
                    self.next = i + 1;
                    return Outcome::More;
                }
            }
            if !hungry {
                return Outcome::Idle;
            }
        }
    }

    /// Whether file `i` waits for its predecessor under the same name to be drained.
    fn held_back(&mut self, i: usize) -> bool {
        let Some(k) = self.files[i].wait_for else {
            return false;
        };
        if self
            .files
            .iter()
            .any(|p| (p.dev, p.ino) == k && !p.at_eof())
        {
            return true;
        }
        self.files[i].wait_for = None;
        false
    }

    /// Records that a frame holding lines up to `end` of file `(dev, ino)` is in the spool.
    pub fn commit(&mut self, dev: u64, ino: u64, end: u64) {
        if let Some(f) = self.files.iter_mut().find(|f| (f.dev, f.ino) == (dev, ino)) {
            // A frame built before a truncation names the old content's offsets: ignore them.
            if end <= f.pos {
                f.committed = f.committed.max(end);
            }
        }
    }

    /// The positions to checkpoint: what is in the spool, given what `batch` still holds.
    pub fn marks(&mut self, batch: &BatchBuilder) -> Vec<FileMark> {
        let mut out: Vec<FileMark> = self.marks.values().cloned().collect();
        for f in &mut self.files {
            if !batch.holds(f.dev, f.ino) {
                // Nothing of it waits in the batch: all it read is spooled or skipped.
                f.committed = f.pos;
            }
            out.push(mark(f, f.committed));
        }
        out
    }
}

fn mark(f: &Tailed, offset: u64) -> FileMark {
    FileMark {
        path: f.wire_path.as_bytes().to_vec(),
        dev: f.dev,
        ino: f.ino,
        fp_len: f.fp_len,
        fp: f.fp,
        offset,
        size: f.size,
    }
}

/// A file in `dir`, other than `not`, at least `min_len` long, whose first `fp_len` bytes
/// have fingerprint `fp`: the copy copytruncate left.
fn find_copy(dir: &Path, fp_len: u32, fp: u32, min_len: u64, not: (u64, u64)) -> Option<PathBuf> {
    if fp_len == 0 {
        return None;
    }
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if !m.is_file() || (m.dev(), m.ino()) == not || m.len() < min_len {
            continue;
        }
        let Ok(f) = std::fs::File::open(e.path()) else {
            continue;
        };
        if fingerprint(&f, fp_len).ok().flatten() == Some(fp) {
            return Some(e.path());
        }
    }
    None
}
