//! Inputs: finding files by glob, following them through rotation, reading their lines.
//!
//! Owns the open log files and their read positions; never writes a file, never touches the
//! spool. What always holds:
//! - a file is read to its end before it is let go, whether it was renamed away, deleted, or
//!   is the copy left by copytruncate, and a successor under the same name waits for it, so
//!   each name's lines stay in order; a log's generations are read in the order they were
//!   written (by modification time, the file under the log's name last), however and
//!   whenever each was found;
//! - bytes are taken only while the file still starts with the bytes its identity was
//!   fingerprinted by (checked after every read): content written after a truncation is
//!   never read at the old content's offset;
//! - the copy copytruncate leaves is claimed whenever it is found, so a glob that also
//!   matches it never reads it again from its head;
//! - a byte is skipped only when counted: cut line tails, truncations with no copy, files
//!   that vanished unread;
//! - `committed` moves only when the agent says a frame holding those lines is in the spool;
//! - a [`Tailer::read`] call consumes at most [`READ_BUDGET`] bytes plus one read buffer,
//!   shared between the files; at most [`MAX_OPEN_FILES`] are open, the others wait for a
//!   turn (counted) while files read to their end are let go and later reopened by identity.
//!
//! Scans and reads happen when the agent calls them: at each poll, and at once when
//! [`watch`] (inotify) reports that a file was written, created or renamed. Polling stays the
//! ground truth: it works the same on every filesystem (NFS, overlay, tmpfs on gateways), and
//! inotify only makes it sooner and rarer.

pub mod file;
pub mod glob;
#[cfg(test)]
mod tests;
pub mod watch;

use crate::config::{Input, StartAt};
use crate::frame::{BatchBuilder, FileMark, SourceRef};
use crate::stats::Counters;
use file::{fingerprint, Stop, Tailed};
use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

/// Most files open at once. Files found beyond it wait for a turn: files read to their end
/// are let go for them (their positions kept, so they are reopened by identity), and when
/// none is, files open for a whole [`TURN`] are.
pub const MAX_OPEN_FILES: usize = 512;

/// How long a file keeps its descriptor while others wait for one, if it never reaches its
/// end.
pub const TURN: std::time::Duration = std::time::Duration::from_secs(10);

/// The bytes read per [`Tailer::read`] call before it yields to other work.
pub const READ_BUDGET: usize = 1 << 20;

/// The least a file may read in one pass of [`Tailer::read`], however many files there are:
/// smaller shares would cost more system calls than they save in fairness.
pub const MIN_SHARE: usize = 64 << 10;

/// A file's identity: (device, inode).
type Key = (u64, u64);

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
    /// When the last run's positions were taken (milliseconds since the Unix epoch), if its
    /// checkpoint says.
    as_of: Option<u64>,
    buf: Vec<u8>,
    first_run: bool,
    started: bool,
    /// Copies claimed since the last read: noted in the batch before any other line.
    notes: Vec<(u64, u64)>,
    /// Files with lines in a finished frame the spool has not taken yet (the disk refused
    /// it): like the open batch's, their positions must not be checkpointed past those lines.
    unspooled: Vec<(u64, u64)>,
    /// Where the next [`read`](Self::read) starts, so every file gets its turn.
    next: usize,
    /// Files found at the last scan that wait for a turn (more than [`MAX_OPEN_FILES`]).
    waiting: usize,
    /// Marks of live files let go to make room: if one is renamed while closed, it is
    /// followed by identity like a file rotated while the agent was down.
    let_go: HashSet<(u64, u64)>,
    /// Of those, the ones a reload let go (not the ones let go for room), until a scan has
    /// found them again: one look each at their bytes when found at their mark's length.
    reloaded: HashSet<(u64, u64)>,
    /// Directories a glob could not list at the last scan (warned about once).
    unreadable: HashSet<PathBuf>,
    /// Run between the globs' listing and the look at each file, and between that look and
    /// the opening of what it found: a test lands a rotation there.
    #[cfg(test)]
    hook: Option<Hook>,
}

/// Where a scan is when [`Tailer::hook`] runs.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// After the truncation checks, before the glob walk.
    Checked,
    Listed,
    Looked,
}

#[cfg(test)]
struct Hook(Box<dyn FnMut(Stage)>);

#[cfg(test)]
impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

/// A regular file a glob found.
#[derive(Debug)]
struct Found {
    input: usize,
    path: PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    mtime: Option<std::time::SystemTime>,
}

impl Tailer {
    /// A tailer for `inputs`, resuming from `marks`, taken at `as_of` (milliseconds since
    /// the Unix epoch) if known; `first_run` means no state existed, so `start_at` applies
    /// to the files already there.
    pub fn new(
        inputs: Vec<Input>,
        marks: Vec<FileMark>,
        as_of: Option<u64>,
        first_run: bool,
    ) -> Tailer {
        let mut t = Tailer {
            inputs: Vec::new(),
            files: Vec::new(),
            marks: marks.into_iter().map(|m| ((m.dev, m.ino), m)).collect(),
            as_of,
            buf: Vec::new(),
            first_run,
            started: false,
            notes: Vec::new(),
            unspooled: Vec::new(),
            next: 0,
            waiting: 0,
            let_go: HashSet::new(),
            reloaded: HashSet::new(),
            unreadable: HashSet::new(),
            #[cfg(test)]
            hook: None,
        };
        t.set_inputs(inputs);
        t
    }

    /// Replaces the inputs (a reload): a file stays open under its input (matched by name)
    /// while that input still takes it, else under another input that takes it (an input
    /// renamed, or the file moved to another by the new globs), read on where it is. Files
    /// no input takes are closed, their spooled positions kept as marks (the agent spools
    /// the open batch first when it can, so that an input added back does not read its
    /// lines again), and followed by identity if an input takes them again; files of new
    /// inputs are picked up by the next [`scan`](Self::scan), and a known file a new input
    /// takes is followed by identity there, as at a restart (renamed since it was closed,
    /// it is read from its mark). A suspected copy (a copytruncate in the making) stays open
    /// whatever the globs: closing it would hide it from the truncation that follows.
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
            let same = self.inputs.iter().position(|i| &i.name == name);
            // Closed, a file renamed away before the next scan (a glob on the live name)
            // would be found by nothing, its unread lines lost.
            let to = same
                .filter(|&i| f.suspect || takes(&self.inputs[i], &f))
                .or_else(|| self.inputs.iter().position(|i| takes(i, &f)));
            match (to, same) {
                (Some(i), _) => {
                    if Some(i) != same {
                        log::info!(
                            "{} is now read by input {:?}",
                            f.path.display(),
                            self.inputs[i].name
                        );
                    }
                    f.input = i;
                    kept.push(f);
                }
                (None, Some(_)) => {
                    log::info!(
                        "input {name:?} no longer takes {}: closing it",
                        f.path.display()
                    );
                    self.let_go.insert((f.dev, f.ino));
                    self.reloaded.insert((f.dev, f.ino));
                    self.marks.insert((f.dev, f.ino), mark(&f, f.committed));
                }
                // A suspected copy was never read: no mark, so that the input added back
                // finds it as it found it before (a copy to claim, not a file to read from
                // its head).
                (None, None) if f.suspect => {
                    log::info!("input {name:?} removed: closing {}", f.path.display());
                }
                (None, None) => {
                    log::info!("input {name:?} removed: closing {}", f.path.display());
                    self.let_go.insert((f.dev, f.ino));
                    self.reloaded.insert((f.dev, f.ino));
                    self.marks.insert((f.dev, f.ino), mark(&f, f.committed));
                }
            }
        }
        self.files = kept;
        // Known files the inputs take now and did not before, by the name they were known
        // under (an input added back, or widened again): renamed while no input had them
        // open, they are followed by identity at the next scan, as at a restart, not lost
        // to a glob on the live name.
        for (k, m) in &self.marks {
            let p = Path::new(std::ffi::OsStr::from_bytes(&m.path));
            let took = |inputs: &[Input]| inputs.iter().any(|i| finds(i, p));
            if took(&self.inputs) && !took(&old) {
                self.let_go.insert(*k);
                self.reloaded.insert(*k);
            }
        }
    }

    /// Number of files open.
    pub fn open_files(&self) -> usize {
        self.files.len()
    }

    /// The files open now, by identity (device, inode), with their descriptors: the
    /// watcher hears their writes on them ([`watch::Watch::follow`]).
    pub fn open_fds(
        &self,
    ) -> impl Iterator<Item = ((u64, u64), std::os::fd::BorrowedFd<'_>)> + Clone {
        use std::os::fd::AsFd;
        self.files.iter().map(|f| ((f.dev, f.ino), f.file.as_fd()))
    }

    /// Whether an open file no longer holds what was read from it: shorter than its
    /// position, or starting with other bytes (truncated in place, perhaps rewritten to
    /// just the length read), which [`scan`](Self::scan) handles (its copy claimed, or the
    /// loss counted). An `fstat` and a read of the first bytes per open file, for a look
    /// woken by a write that found nothing new to read.
    pub fn rewritten(&self) -> bool {
        self.files.iter().any(|f| f.rewritten())
    }

    /// Looks for new, rotated and truncated files. Call at least every poll interval.
    pub fn scan(&mut self, now: Instant, batch: &BatchBuilder, c: &mut Counters) {
        // Truncations first, so that a copytruncate copy is claimed as a copy before the glob
        // walk below could take it for a new file.
        for i in (0..self.files.len()).rev() {
            self.check_truncation(i, now, c);
        }
        #[cfg(test)]
        if let Some(h) = self.hook.as_mut() {
            (h.0)(Stage::Checked);
        }
        for i in 0..self.files.len() {
            if self.files[i].suspect {
                let _ = self.files[i].stat();
                let _ = self.files[i].verify_head();
                // A live file let go for room shows its truncation only when it is taken
                // up again (by its mark, in the walk below): until then its copy stays a
                // suspect, to be claimed there.
                let t = &self.files[i];
                let let_go = self
                    .unopened_live(t)
                    .and_then(|(f, _)| f.metadata().ok())
                    .is_some_and(|m| self.marks.contains_key(&(m.dev(), m.ino())));
                // The live file truncated since the checks above (logrotate truncates right
                // after its copy): the suspect is its copy, for the next scan's check to
                // claim. Released now, it would be read from its head (its lines twice, in
                // one frame), as when the live file is too short for its fingerprint to
                // tell a copy by (under 16 bytes).
                let live_cut = self.files.iter().any(|f| {
                    f.rotated.is_none() && f.path.as_path() == family(&t.path) && f.rewritten()
                });
                if !let_go && !live_cut && !self.is_copy_of_live(t) {
                    self.files[i].suspect = false;
                    self.before_unread_live(i);
                }
            }
        }
        let (found, seen) = self.look();
        #[cfg(test)]
        if let Some(h) = self.hook.as_mut() {
            (h.0)(Stage::Looked);
        }
        let mut renamed = Vec::new();
        for f in self.files.iter_mut() {
            if f.rotated.is_none() && !seen.contains(&(f.dev, f.ino)) {
                log::debug!("{} rotated away (renamed or deleted)", f.path.display());
                c.files_rotated += 1;
                f.rotated = Some(now);
                renamed.push((f.dev, f.ino));
            }
        }
        // A live file renamed out of the glob's sight (`app.log` only) while the agent looked
        // away (stopped, paused, busy): generations renamed or copied away after it are in
        // no glob either. They come after it, before the file that has the name now.
        for key in renamed {
            self.unseen_after_renamed(key, now, c);
        }
        let mut wanting = Vec::new();
        for n in found {
            let key = (n.dev, n.ino);
            if let Some(f) = self.files.iter_mut().find(|f| (f.dev, f.ino) == key) {
                if f.rotated.is_none() {
                    f.path = n.path;
                }
                continue;
            }
            if n.size == 0 && family(&n.path) != n.path && !self.marks.contains_key(&key) {
                // An empty generation (or a copy whose first write has not landed): nothing
                // to read, and nothing a truncation could claim yet. Held open it would be a
                // suspected copy for ever, keeping a descriptor and the agent awake; it is
                // looked at again once it has bytes.
                continue;
            }
            let stale = |m: &FileMark| {
                // At start-up only across logs: a known file truncated while the agent was
                // down, then renamed, is still the mark's.
                let other_log =
                    family(Path::new(std::ffi::OsStr::from_bytes(&m.path))) != family(&n.path);
                // A log let go for room, found under its own name: truncated meanwhile
                // perhaps, but the mark's (`node-1` is a log's own name, not a generation).
                let own = self.let_go.contains(&key) && m.path == n.path.as_os_str().as_bytes();
                (self.started || other_log) && !own && !names_file(m, &n.path)
            };
            if self.marks.get(&key).is_some_and(stale) {
                // A file let go or done with was deleted, and this one took its freed inode
                // number before the mark was pruned (or while the agent was down): a new
                // file, not the marked one.
                let m = self.marks.remove(&key).expect("just seen");
                self.let_go.remove(&key);
                self.vanished(&m, c);
            }
            if let Some(m) = self.marks.get_mut(&key) {
                // Not at the first scan: then every known file is opened, so that the
                // generations of a log are chained in order (one read to its end may still
                // be written to by a writer that has not reopened yet).
                // A file a reload let go is looked at once, when found again: truncated and
                // written again to the same length meanwhile, it holds other bytes (lines
                // that all begin alike).
                let reloaded = self.reloaded.remove(&key);
                let same = || {
                    !reloaded
                        || std::fs::File::open(&n.path).is_ok_and(|f| holds_mark(&f, n.size, m))
                };
                if self.started && m.offset == n.size && same() {
                    // Read to its end before it was let go (or retired): nothing to open it
                    // for. The mark follows the name it is found under now.
                    m.path = n.path.as_os_str().as_bytes().to_vec();
                    continue;
                }
            }
            wanting.push(n);
        }
        let room = MAX_OPEN_FILES.saturating_sub(self.files.len());
        if wanting.len() > room {
            self.let_go(wanting.len() - room, now, batch);
        }
        let room = MAX_OPEN_FILES.saturating_sub(self.files.len());
        let waiting = wanting.len().saturating_sub(room);
        if waiting > 0 && self.waiting == 0 {
            log::warn!(
                "{MAX_OPEN_FILES} files open: {waiting} more wait for a turn (files read to their end are let go for them)"
            );
        }
        self.waiting = waiting;
        wanting.truncate(room);
        self.open_in_order(wanting, now, c);
        if !self.started {
            self.started = true;
            self.resolve_marks(now, c);
        }
        self.reorder();
        self.retire(now, batch, c);
    }

    /// Walks the globs and looks at each file found: what the inputs match now, and the
    /// identities seen. A name that holds another file than the one its directory listed
    /// (a rotation between the listing and the look, or the agent stopped in between)
    /// means the listing is stale: files renamed meanwhile would be missing from it, and a
    /// new live file would be taken for the successor of the last generation listed. The
    /// walk is then done again, up to three times in all; and once more whenever it finds
    /// a file it does not know and would open now (one it cannot open, refused by its
    /// permissions, makes every scan list twice while it is there).
    fn look(&mut self) -> (Vec<Found>, HashSet<Key>) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut seen: HashSet<Key> = HashSet::new();
            let mut paths: Vec<(usize, PathBuf)> = Vec::new();
            let mut listed: HashMap<PathBuf, u64> = HashMap::new();
            let mut unreadable = HashSet::new();
            // Said once, when the walk is done (it may be walked again).
            let mut warnings = Vec::new();
            for (idx, input) in self.inputs.iter().enumerate() {
                let mut mine = glob::Expansion::default();
                for p in &input.paths {
                    glob::expand(p, &mut mine);
                }
                for (dir, e) in mine.unreadable {
                    if !self.unreadable.contains(&dir) && !unreadable.contains(&dir) {
                        warnings.push(format!(
                            "input {:?}: cannot list {}: {e} (its files are not read until it can be)",
                            input.name,
                            dir.display()
                        ));
                    }
                    unreadable.insert(dir);
                }
                listed.extend(mine.listed);
                let mut mine = mine.files;
                mine.retain(|p| !input.exclude.iter().any(|x| glob::matches(x, p)));
                crate::sort::sort(&mut mine);
                mine.dedup();
                paths.extend(mine.into_iter().map(|p| (idx, p)));
            }
            #[cfg(test)]
            if let Some(h) = self.hook.as_mut() {
                (h.0)(Stage::Listed);
            }
            let mut found: Vec<Found> = Vec::new();
            let mut stale = false;
            for (input, path) in paths {
                let Ok(m) = std::fs::metadata(&path) else {
                    continue;
                };
                stale |= listed.get(&path).is_some_and(|&ino| ino != m.ino());
                if !m.is_file() || !seen.insert((m.dev(), m.ino())) {
                    continue;
                }
                found.push(Found {
                    input,
                    path,
                    dev: m.dev(),
                    ino: m.ino(),
                    size: m.len(),
                    mtime: m.modified().ok(),
                });
            }
            // New files: the listing is taken once more. A listing made while the directory
            // changes (a rotation under way) was seen on ext4 to leave out names that had
            // been there for seconds; a generation found a scan late is read after newer
            // ones.
            // Only files the scan would open now: not an empty generation (left until it has
            // bytes), and none while every descriptor is taken (they wait for a turn); else
            // every scan would list twice for as long as such a file is there.
            let new = || {
                self.files.len() < MAX_OPEN_FILES
                    && found.iter().any(|f| {
                        let k = (f.dev, f.ino);
                        let empty_generation = f.size == 0 && family(&f.path) != f.path;
                        !empty_generation
                            && !self.marks.contains_key(&k)
                            && !self.files.iter().any(|t| (t.dev, t.ino) == k)
                    })
            };
            stale |= attempt == 1 && new();
            if !stale || attempt == 3 {
                // Warned once per directory, and again if it becomes unreadable again later.
                for w in warnings {
                    log::warn!("{w}");
                }
                self.unreadable = unreadable;
                return (found, seen);
            }
            log::debug!("a name changed while the globs were walked: walking them again");
        }
    }

    /// Puts each log's generations in the one order they were written: by modification
    /// time, each waiting for the one before it, and the file under the log's name last.
    ///
    /// The rules that place a file when it is found (a claimed copy before its truncated
    /// file, the generations copied away after it, a renamed file before its successor)
    /// each see part of the picture; when rotations by rename and by copytruncate mix
    /// between two looks, a generation found now may be older than one placed earlier (a
    /// file truncated while unread, then renamed away, holds lines newer than a copy of it
    /// found only now). A generation is not written after the next one exists (a copy is
    /// not modified once made; a renamed file's writer moves to the new one), so its last
    /// write orders it. Equal times (a coarse clock) keep the order the rules gave.
    fn reorder(&mut self) {
        // Each file's log, worked out once: (input, log, file), grouped by log.
        let mut logs: Vec<(usize, PathBuf, usize)> = self
            .files
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.suspect)
            .map(|(i, f)| (f.input, family(Path::new(&*f.wire_path)).to_path_buf(), i))
            .collect();
        crate::sort::sort(&mut logs);
        // What each file waits for, to rank ties without a search per step.
        let next: HashMap<Key, Option<Key>> = self
            .files
            .iter()
            .map(|f| ((f.dev, f.ino), f.wait_for))
            .collect();
        let rank = |first: Option<Key>| {
            std::iter::successors(first, |k| next.get(k).copied().flatten())
                .take(next.len())
                .count()
        };
        for log in logs.chunk_by(|a, b| a.0 == b.0 && a.1 == b.1) {
            let fam = &log[0].1;
            // Files named like generations of a log that is not there (`node-1`, `node-2`,
            // no `node`) are not held again at every look: logs of their own, or a log's
            // last generations, read in order when found (open_in_order).
            if log.len() < 2 || !log_exists(fam, &self.files) {
                continue;
            }
            let mut gens: Vec<(bool, Option<std::time::SystemTime>, usize, usize)> = log
                .iter()
                .map(|&(_, _, i)| {
                    let f = &self.files[i];
                    let live = f.rotated.is_none() && f.path == *fam;
                    let mtime = f.file.metadata().and_then(|m| m.modified()).ok();
                    (live, mtime, rank(f.wait_for), i)
                })
                .collect();
            crate::sort::sort(&mut gens);
            let keys: HashSet<Key> = gens
                .iter()
                .map(|g| (self.files[g.3].dev, self.files[g.3].ino))
                .collect();
            // Whether a generation before has lines left to give (or waits itself). A file
            // released once (its predecessors drained) is not held again by drained ones;
            // held_back releases the others with its own care for a writer still appending.
            let mut open = false;
            let mut prev: Option<Key> = None;
            for &(_, _, _, i) in &gens {
                let f = &mut self.files[i];
                match prev {
                    // The first waits only for what it waited for outside the log.
                    None if f.wait_for.is_some_and(|k| keys.contains(&k)) => f.wait_for = None,
                    None => {}
                    Some(p) if open || f.wait_for.is_some() => f.wait_for = Some(p),
                    Some(_) => {}
                }
                open |= !f.at_eof() || f.wait_for.is_some();
                prev = Some((f.dev, f.ino));
            }
        }
    }

    /// `first`, then the file it waits for, and so on; no longer than the open files, so a
    /// chain that comes back on itself ends.
    fn chain(&self, first: Option<Key>) -> impl Iterator<Item = Key> + '_ {
        std::iter::successors(first, |k| {
            self.files
                .iter()
                .find(|f| (f.dev, f.ino) == *k)
                .and_then(|f| f.wait_for)
        })
        .take(self.files.len())
    }

    /// File `i`, a generation that was held as a possible copy in the making and now differs
    /// from the live file, is a generation of its own. If the live file has not been read
    /// since it was last empty (byte 0: the truncation that followed the copy left nothing to
    /// notice it by), what it holds now was written after this generation's lines: the live
    /// file waits for it, and it takes the live file's place after what the live file waited
    /// for.
    fn before_unread_live(&mut self, i: usize) {
        let g = &self.files[i];
        let fam = family(&g.path).to_path_buf();
        if fam == g.path {
            return;
        }
        let (input, key) = (g.input, (g.dev, g.ino));
        let Some(live) = self.files.iter().position(|f| unread_live(f, input, &fam)) else {
            return;
        };
        let before = self.files[live].wait_for.replace(key);
        if before.is_some() && before != Some(key) {
            self.files[i].wait_for = before;
        }
    }

    /// Whether a file is open, other than as an unread suspect, or has a mark: it is no
    /// unclaimed copy.
    fn is_known(&self, key: (u64, u64)) -> bool {
        self.marks.contains_key(&key)
            || self
                .files
                .iter()
                .any(|f| (f.dev, f.ino) == key && !f.suspect)
    }

    /// Whether nothing here waits on the clock: no rotated file kept open, no last line
    /// waiting for its newline (`partial_flush`), no file waiting for a turn, no suspected
    /// copy younger than its input's `rotate_wait`, no note or unspooled line pending. While
    /// it holds, only a change to a file can give [`scan`](Self::scan) or
    /// [`read`](Self::read) something to do, so an agent told of changes (inotify) need not
    /// poll. A suspect older than that is a copy made and left (logrotate's `copy`, a copy
    /// kept aside), not one in the making: what would end it, a write to it or the
    /// truncation of its original, is a change to a file.
    pub fn settled(&self, now: Instant) -> bool {
        self.waiting == 0
            && self.notes.is_empty()
            && self.unspooled.is_empty()
            && self.files.iter().all(|f| {
                let young = || {
                    let wait = self.inputs.get(f.input).map_or(TURN, |i| i.rotate_wait.0);
                    now.saturating_duration_since(f.opened) < wait
                };
                f.rotated.is_none()
                    && f.partial_since.is_none()
                    && !(f.suspect && young())
                    && f.wait_for.is_none()
            })
    }

    /// Number of files found that wait for a turn because [`MAX_OPEN_FILES`] are open.
    pub fn waiting_files(&self) -> usize {
        self.waiting
    }

    /// Closes up to `n` open files, keeping their positions as marks, so files that wait get
    /// a turn: first those read to their end (the longest quiet first), then, when files
    /// still wait, those open for a whole [`TURN`]. A file that is rotated, holds lines in the
    /// batch or waits for a partial line's newline stays open.
    fn let_go(&mut self, n: usize, now: Instant, batch: &BatchBuilder) {
        let mut idle: Vec<(bool, Instant, usize)> = self
            .files
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                // A suspect (perhaps a copy in the making) is not: reopened by its mark, it
                // would be read from its head.
                f.rotated.is_none()
                    && !f.suspect
                    && f.partial_since.is_none()
                    && !f.skipping
                    && !held(batch, &self.unspooled, f)
                    && (f.at_eof() || now.saturating_duration_since(f.opened) >= TURN)
            })
            .map(|(i, f)| (!f.at_eof(), f.last_data, i))
            .collect();
        crate::sort::sort(&mut idle);
        let mut close: Vec<usize> = idle.into_iter().take(n).map(|(_, _, i)| i).collect();
        crate::sort::sort_by(&mut close, |a, b| b.cmp(a));
        for i in close {
            let f = self.files.remove(i);
            log::debug!("letting go of {} at byte {}", f.path.display(), f.pos);
            let mut m = mark(&f, f.pos);
            m.path = f.path.as_os_str().as_bytes().to_vec();
            self.let_go.insert((m.dev, m.ino));
            self.marks.insert((m.dev, m.ino), m);
        }
    }

    /// Opens newly found files. Generations of one log found together (`app.log.2`,
    /// `app.log.1`, `app.log`: names that differ by a numeric or date suffix) are read one
    /// after the other, oldest first by modification time, so the log's lines reach the sink
    /// in the order they were written.
    fn open_in_order(&mut self, mut new: Vec<Found>, now: Instant, c: &mut Counters) {
        // By modification time, so generations are opened in the order they were written;
        // at the same time (a coarse clock) the live name last, and `app.log.2` before
        // `app.log.1`. A file the agent knows that was truncated while it was down takes
        // the place of its copy, just before it: it claims the copy there (so the copy is not
        // taken for a new file), and generations older than the copy still come first.
        let claims: HashMap<(u64, u64), Option<std::time::SystemTime>> = new
            .iter()
            .filter_map(|f| {
                let key = (f.dev, f.ino);
                let copy = self.copy_left_while_down(&f.path, key, f.size)?;
                Some((key, std::fs::metadata(copy).ok()?.modified().ok()))
            })
            .collect();
        let key = |f: &Found| {
            let fam = family(&f.path).to_path_buf();
            let live = fam == f.path;
            let (mtime, rank) = match claims.get(&(f.dev, f.ino)) {
                Some(copy) => (*copy, 0),
                None => (f.mtime, 1),
            };
            (
                f.input,
                fam,
                mtime,
                rank,
                live,
                std::cmp::Reverse(f.path.clone()),
            )
        };
        crate::sort::sort_by(&mut new, |a, b| key(a).cmp(&key(b)));
        let mut prev: Option<(usize, PathBuf, (u64, u64))> = None;
        // Per log, the first and last generation other than the live name opened here.
        let mut unseen: HashMap<(usize, PathBuf), (Key, Key)> = HashMap::new();
        let open_before = self.files.len();
        for n in new {
            // Opened meanwhile: claimed as the copy of a file opened before it.
            if self.files.iter().any(|f| (f.dev, f.ino) == (n.dev, n.ino)) {
                continue;
            }
            let fam = family(&n.path).to_path_buf();
            let is_gen = n.path != fam;
            let before = self.files.len();
            // Files open before this one, other than suspects: a suspect taken up as this
            // file's copy joins the chain that open_new builds.
            let existing: HashSet<(u64, u64)> = self
                .files
                .iter()
                .filter(|f| !f.suspect)
                .map(|f| (f.dev, f.ino))
                .collect();
            self.open_new(n.input, n.path, n.dev, n.ino, n.size, now, c);
            if self.files.len() == before {
                continue;
            }
            // What this generation comes after: the one opened just before it in this scan,
            // or else the newest generation of the same log that was already open and renamed
            // away (still being drained: several renames while the agent was stopped).
            let chained = match &prev {
                Some((input, pf, pk)) if *input == n.input && *pf == fam => Some(*pk),
                _ => None,
            };
            // The newest of them by modification time: the order of the file list says
            // nothing (a suspect that turned out a generation of its own joins at its end).
            let older = self.files[..open_before]
                .iter()
                .enumerate()
                .filter(|(_, f)| {
                    f.path != fam && !f.suspect && family(Path::new(&*f.wire_path)) == fam
                })
                .max_by_key(|(i, f)| (f.file.metadata().and_then(|m| m.modified()).ok(), *i))
                .map(|(_, f)| (f.dev, f.ino));
            // open_new may have put a chain before this file (the copy of what it held
            // when it was truncated while the agent was down, then the generations copied
            // away after that): the chain's first file is what waits for the generation
            // before, so the chain keeps its own order.
            let last = self.files.last().expect("just opened");
            let tail = (last.input, (last.dev, last.ino), last.suspect);
            let mut head = tail.1;
            let mut at = self.files.len() - 1;
            for _ in 0..self.files.len() {
                // Up the chain through files open now only: a file waited for may have
                // been closed since (read to its end, or gone), and ends the chain there.
                let up = self.files[at].wait_for.and_then(|k| {
                    let j = self.files.iter().position(|f| (f.dev, f.ino) == k)?;
                    (!existing.contains(&k) && k != tail.1).then_some((k, j))
                });
                match up {
                    Some((k, j)) => (head, at) = (k, j),
                    None => break,
                }
            }
            let open = |k: Key| self.files.iter().any(|f| (f.dev, f.ino) == k);
            if self.files[at].wait_for.is_some_and(|k| !open(k)) {
                // Waiting for a file closed since (read to its end, or gone): nothing.
                self.files[at].wait_for = None;
            }
            let h = &mut self.files[at];
            match (chained, older) {
                (Some(k), _) if h.wait_for.is_none() || head == tail.1 => h.wait_for = Some(k),
                (None, Some(k)) if h.wait_for.is_none() && k != head => h.wait_for = Some(k),
                _ => {}
            }
            // A suspect is not read until it differs: nothing waits for it.
            if !tail.2 && is_gen {
                unseen
                    .entry((n.input, fam.clone()))
                    .and_modify(|e: &mut (Key, Key)| e.1 = tail.1)
                    .or_insert((head, tail.1));
            }
            prev = (!tail.2).then_some((tail.0, fam, tail.1)).or(prev);
        }
        // A live file open before this scan and not read since it was last empty (byte 0,
        // nothing to check its head against) cannot tell that copytruncate ran while the agent
        // looked away (stopped, or not reading for a full disk): the copies are new names to
        // the glob. Every generation found now holds lines written before the live file's
        // current ones, so the live file waits for the last of them.
        for ((input, fam), (head, tail)) in unseen {
            let Some(at) = self.files[..open_before]
                .iter()
                .position(|f| unread_live(f, input, &fam))
            else {
                continue;
            };
            // What the live file waited for is the newest generation before them: the first
            // of them waits for it (rather than for the generation last in the file list).
            let before = self.files[at].wait_for.replace(tail);
            if let Some(h) = self.files.iter_mut().find(|f| (f.dev, f.ino) == head) {
                if before.is_some() && before != Some(head) {
                    h.wait_for = before;
                }
            }
        }
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
            // The scan opens no more than there is room for; this only guards the limit.
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
        if (t.dev, t.ino) != (dev, ino) {
            // Another file under the name since the scan looked (a rotation in between, or
            // the agent stopped there): opened now, it would take the place of the one that
            // was looked at, before the generations rotated meanwhile. The one looked at is
            // followed to where it went (a glob on the live name would never see it again)
            // and read as a rotated generation; the new file is left to the next scan,
            // which puts it after.
            drop(t);
            self.follow_moved(idx, &path, (dev, ino), now, c);
            return;
        }
        // On the scan's clock, which TURN and a suspect's age are measured on.
        t.opened = now;
        // A log found empty: since the agent started, or known by its checkpoint. Not one
        // found so at a first start: a copy made in the same clock tick as its truncation,
        // before the agent ever ran, would pass for newer and be read.
        let known = self.started || self.marks.contains_key(&(dev, ino));
        if known && t.size == 0 && family(&path) == path.as_path() {
            t.empty_at = t.found_mtime;
        }
        if size > 0
            && family(&path) != path.as_path()
            && log_exists(family(&path), &self.files)
            && self
                .marks
                .get(&(dev, ino))
                .is_some_and(|m| m.fp_len == 0 && m.offset == 0)
        {
            // A mark of a file that was empty knows nothing: not even whether this is still
            // its file (an empty generation deleted, its inode number taken by a copy). It
            // would have it read from its head; unknown, it is also looked at as a copy.
            // Only with bytes (an empty file made a suspect would be held open for ever)
            // and under a generation's name of a log that exists (`node-1` with no `node`
            // is a log of its own).
            self.marks.remove(&(dev, ino));
        }
        if !self.marks.contains_key(&(dev, ino)) && self.is_copy_of_live(&t) {
            // It starts like a file we tail (or is empty): perhaps a copy in the making
            // (copytruncate's copy step, only partly written yet). It is not read until a
            // scan sees it differ; if the original is truncated meanwhile, it is claimed as
            // the copy.
            t.suspect = true;
        }
        let mut after = Vec::new();
        // A log whose checkpointed position tells nothing of what happened while the agent
        // was down: generations of it modified since may hold lines written after it.
        let mut blind = false;
        if let Some(m) = self.marks.remove(&(dev, ino)) {
            // Its head, then the bytes before the position when the mark knows them: when
            // every line begins alike (a banner longer than the fingerprint), only those
            // tell the mark's file from a new one on its inode number, or from itself
            // copied away and written again past the position while the agent was down.
            let same = starts_and_ends_as(&t.file, &m);
            let kept = same
                && size >= m.offset
                && self
                    .rewrite_shown_by_copy(&path, (dev, ino), &m, &t.file)
                    .is_none();
            if kept {
                t.pos = m.offset;
                t.committed = m.offset;
                t.wire_path = String::from_utf8_lossy(&m.path).into();
                log::debug!("{}: resuming at byte {}", path.display(), m.offset);
                // Empty when last seen, nothing read: written, copied away and truncated
                // since, it would look just the same (emptied, or refilled from byte 0).
                blind = m.fp_len == 0 && m.offset == 0;
            } else if !same && self.copy_on_freed_inode(&t) {
                // Another head, and it starts like a live file: a generation deleted while
                // the agent was down (logrotate's `rotate 1`, or its oldest), its inode
                // number taken at once by the copy of the live file logrotate is making.
                // Not the mark's file written again: a copy in the making, a suspect until
                // the live file's truncation claims it (read from its head, it repeated
                // every line the agent had read from the live file).
                self.vanished(&m, c);
                t.suspect = true;
            } else {
                // Shorter than the mark, or no longer starting as it did: truncated while not
                // open and perhaps written again (copytruncate while the agent was down), or
                // the inode reused by a new file. Either way it is read from its head; the
                // rest of what the mark knew is in a copy, or lost.
                if !same {
                    log::debug!("{}: new content under a known inode", path.display());
                }
                let found = self.truncated_while_down(&m, &mut t, now, c);
                blind = found.is_none();
                after = found.unwrap_or_default();
            }
        } else if !self.started && self.first_run && self.inputs[idx].start_at == StartAt::Tail {
            t.pos = size;
            t.committed = size;
        }
        // The same name still draining a predecessor: wait for it. A predecessor renamed to
        // a name the glob also matches (`app.log.1` under `app.log*`) is not marked rotated,
        // but it is no longer under the name it was found by.
        if let Some(p) = self
            .files
            .iter()
            .rev()
            .find(|f| *f.wire_path == *t.wire_path && (f.rotated.is_some() || f.path != path))
        {
            t.wait_for = Some((p.dev, p.ino));
        }
        // Under the log's own name, generations written and rotated away unseen may come
        // before this file (the agent stopped, busy, or polling): searched from the last
        // one known, oldest first. That is the predecessor when it was already found gone
        // from the name (a glob on the live name sees no rotated name; the search does not
        // take copies of it), or, with none open (read to its end and let go, a mark of a
        // generation of this log left), the newest generation known.
        let key = (t.dev, t.ino);
        let search = if family(&path) != path.as_path() {
            None
        } else if let Some(k) = t.wait_for {
            self.files
                .iter()
                .find(|f| (f.dev, f.ino) == k && f.rotated.is_some())
                .and_then(|f| {
                    let since = f.file.metadata().and_then(|m| m.modified()).ok()?;
                    Some((Some(k), since, f.file.try_clone().ok()))
                })
        } else if let Some(since) = self.restart_since().filter(|_| blind) {
            Some((None, since, t.file.try_clone().ok()))
        } else if self.started
            && self
                .marks
                .values()
                .any(|m| family(Path::new(std::ffi::OsStr::from_bytes(&m.path))) == path)
        {
            let own = t.file.metadata().and_then(|m| m.modified()).ok();
            own.and_then(|o| self.newest_known_before(&path, key, o))
                .map(|since| (None, since, None))
        } else {
            None
        };
        if let Some((from, since, copy_of)) = search {
            let wire = t.wire_path.clone();
            let not = [from.unwrap_or(key), key];
            let between = self.later_than(
                since,
                None,
                &path,
                not,
                copy_of.as_ref(),
                &wire,
                idx,
                now,
                c,
            );
            t.wait_for = self.push_chain(from, between);
        }
        log::info!("tailing {} from byte {}", path.display(), t.pos);
        c.files_opened += 1;
        self.files.push(t);
        self.push_chain(Some(key), after);
    }

    /// Opens `gens` after `first`, each waiting for the one before it; returns the last
    /// (`first` if there are none).
    fn push_chain(&mut self, first: Option<Key>, gens: Vec<Tailed>) -> Option<Key> {
        let mut prev = first;
        for mut g in gens {
            g.wait_for = prev;
            prev = Some((g.dev, g.ino));
            self.files.push(g);
        }
        prev
    }

    /// File `key`, looked at under `path` and no longer there when it was to be opened:
    /// opened where it went in the same directory, as a rotated generation of `path`, from
    /// its head (nothing of it was read), or from where its mark says when the agent knew it
    /// (a restart), as for any file renamed while the agent was down. Gone altogether, it
    /// had nothing the agent could have read in order: a file created and deleted between
    /// two looks.
    fn follow_moved(
        &mut self,
        input: usize,
        path: &Path,
        key: Key,
        now: Instant,
        c: &mut Counters,
    ) {
        if let Some(m) = self.marks.remove(&key) {
            // From byte 0 it would repeat what was read before the restart, and its mark,
            // still there, would have it read again from the mark's offset. Looked for
            // first where the scan saw it (it may have moved since the mark was written).
            self.follow_near(m, Some(path), now, c);
            return;
        }
        let Some(p) = find_in_dir(path, key) else {
            log::debug!("{}: gone since the look", path.display());
            return;
        };
        let wire: Rc<str> = path.to_string_lossy().into();
        match Tailed::open(input, p.clone(), wire.clone(), 0) {
            Ok(mut t) if (t.dev, t.ino) == key => {
                log::info!(
                    "{} was rotated to {} before it could be opened: reading it from byte 0",
                    path.display(),
                    p.display()
                );
                t.rotated = Some(now);
                t.opened = now;
                c.files_opened += 1;
                self.insert_before_live(vec![t], &wire);
            }
            _ => log::debug!("{}: moved again since the look", path.display()),
        }
    }

    /// The copy of a file the agent has a mark for, if the file was truncated while it was
    /// not open (shorter than the mark's offset, another head, or at a restart other bytes
    /// before the offset than the copy made while down has) and copytruncate left a copy of
    /// what the mark knew.
    fn copy_left_while_down(&self, path: &Path, key: (u64, u64), size: u64) -> Option<PathBuf> {
        let m = self.marks.get(&key)?;
        if m.fp_len == 0 {
            return None;
        }
        let file = std::fs::File::open(path).ok()?;
        if holds_mark(&file, size, m) {
            return self.rewrite_shown_by_copy(path, key, m, &file);
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        self.copy_since(path, key, m)
            .or_else(|| self.find_copy_of(dir, m, key, false))
    }

    /// The copy copytruncate left of what mark `m` knew, in `dir`, other than `not`: among
    /// the files not open (`open` false: a copy read by no one yet, or claimed before a
    /// restart and resumed by its own mark) or among those open and not suspect (`open`
    /// true: resumed already).
    fn find_copy_of(&self, dir: &Path, m: &FileMark, not: Key, open: bool) -> Option<PathBuf> {
        let is_open = |k: Key| self.files.iter().any(|f| (f.dev, f.ino) == k && !f.suspect);
        find_copy(dir, &[(m.fp_len, m.fp)], not, &|k, p| {
            is_open(k) != open || !self.may_be_copy(k, p, m)
        })
    }

    /// Whether the file at `p` (identity `k`) may be the copy of what mark `m` knew: it may
    /// hold the mark's bytes before its position ([`may_hold_tail`]), and when it has a mark
    /// of its own that holds it (a copy claimed before a restart), that mark's position is
    /// at least where the claim put it: the mark's, or the copy's end when it is shorter.
    /// (A copy open already is not attached again, only followed: no position is taken
    /// from it.) Short of that it is a file of its own, renamed: the log's previous
    /// live file, its unread rest still to be read from there (claimed at the other mark's
    /// position, that rest was skipped when every line begins alike and an older
    /// generation's mark was found on a freed inode number under the log's name).
    fn may_be_copy(&self, k: Key, p: &Path, m: &FileMark) -> bool {
        let file = std::fs::File::open(p).ok();
        if !may_hold_tail(p, file.as_ref(), m) {
            return false;
        }
        let Some(file) = file else {
            return true;
        };
        let len = file.metadata().map_or(0, |x| x.len());
        // A mark on its inode number that is not its file's (a file deleted since, its
        // number reused by the copy) says nothing of it.
        let own = (self.marks.get(&k)).filter(|o| holds_mark(&file, len, o));
        own.is_none_or(|o| o.offset >= m.offset.min(len))
    }

    /// At a restart, for a log at `path` that starts as its mark `m` says, is as long as its
    /// position and has no other bytes just before it than the mark's (or the mark does not
    /// know them: a mark from before they were kept, or moved by frames whose lines did not
    /// hold them): the copy made while the agent was down that shows it was written again
    /// anyway, with other bytes over the 4 KiB before the position than the log has.
    fn rewrite_shown_by_copy(
        &self,
        path: &Path,
        key: Key,
        m: &FileMark,
        file: &std::fs::File,
    ) -> Option<PathBuf> {
        // Even with the bytes just before the position the same (lines that end alike too),
        // a copy since that differs over the 4 KiB before it says so.
        self.copy_since(path, key, m)
            .filter(|c| differ_before(file, c, m.offset))
    }

    /// At a restart, the copy of what mark `m` of the log at `live` knew, made while the
    /// agent was down: a generation of the log that no one knows, modified since the
    /// checkpoint and starting as the mark says. The oldest: copies made after it hold what
    /// was written later, and when every line begins alike (a banner longer than the
    /// fingerprint) they all start the same.
    fn copy_since(&self, live: &Path, not: Key, m: &FileMark) -> Option<PathBuf> {
        let since = self.restart_since()?;
        if family(live) != live || m.fp_len == 0 {
            return None;
        }
        let starts = |p: &Path| {
            let f = std::fs::File::open(p).ok();
            f.as_ref()
                .and_then(|f| fingerprint(f, m.fp_len).ok().flatten())
                == Some(m.fp)
                && may_hold_tail(p, f.as_ref(), m)
        };
        self.unknown_generations(live, since, None, [not; 2])
            .into_iter()
            .filter(|(_, p)| starts(p))
            // The same time (a coarse clock): `app.log.2` before `app.log.1`.
            .min_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(&a.1)))
            .map(|(_, p)| p)
    }

    /// Whether `t` may be a copy of a live file still being written: empty, or no longer than
    /// that file and starting with its bytes. Narrower than [`is_copy_of_live`]: a whole
    /// generation longer than the live file (a log of repeated lines may start just like
    /// it) is not one, and is read.
    fn in_the_making(&self, t: &Tailed) -> bool {
        // All its bytes (up to PREFIX_CHECK), not only its fingerprint: when every line
        // begins alike, every generation has a live file's fingerprint.
        let of = |f: &std::fs::File| is_prefix_of(&t.file, f);
        t.size == 0
            || self.unopened_live(t).is_some_and(|(f, _)| of(&f))
            || self
                .files
                .iter()
                .any(|f| f.rotated.is_none() && (f.dev, f.ino) != (t.dev, t.ino) && of(&f.file))
    }

    /// The file under the name of the log `t` is a generation of, and its length, when it
    /// is not open yet: found in the same scan as `t`, it is opened after it (generations go
    /// oldest first), or a copy of it is looked at before the scan's glob walk.
    fn unopened_live(&self, t: &Tailed) -> Option<(std::fs::File, u64)> {
        let fam = family(&t.path);
        if fam == t.path.as_path() {
            return None;
        }
        let f = std::fs::File::open(fam).ok()?;
        let m = f.metadata().ok()?;
        let key = (m.dev(), m.ino());
        let open = self.files.iter().any(|o| (o.dev, o.ino) == key);
        (m.is_file() && key != (t.dev, t.ino) && !open).then_some((f, m.len()))
    }

    /// Whether `t`, found on the inode number of a mark whose head it does not have, is
    /// logrotate's copy of a live file on a freed number rather than the mark's own file
    /// truncated and written again: it has bytes, its log's file exists, and it starts like
    /// a live file. An emptied file is the mark's own; so is a log whose name only ends like
    /// a generation (`node-1` with no `node`).
    fn copy_on_freed_inode(&self, t: &Tailed) -> bool {
        t.size > 0 && log_exists(family(&t.path), &self.files) && self.is_copy_of_live(t)
    }

    /// Whether `t`, a file with a rotation suffix, starts with the first bytes (all of its
    /// own, up to [`file::FP_MAX`]) of a live file we tail. An empty one counts: it may be a
    /// copy whose first write has not landed yet, and it has nothing to read anyway.
    fn is_copy_of_live(&self, t: &Tailed) -> bool {
        // A copy has a rotation suffix: a file under a log's own name (`app.log`) is the live
        // one, read from its first byte even when it starts empty.
        if family(&t.path) == t.path.as_path() {
            return false;
        }
        if t.size == 0 {
            return true;
        }
        // All its bytes (up to PREFIX_CHECK) are a live file's first ones: a copy being
        // made. Not its fingerprint alone: when every line begins alike, every generation
        // of the log starts like the live file.
        let of = |f: &std::fs::File| is_prefix_of(&t.file, f);
        self.unopened_live(t).is_some_and(|(f, _)| of(&f))
            || self.files.iter().any(|f| {
                if f.rotated.is_some() || (f.dev, f.ino) == (t.dev, t.ino) {
                    return false;
                }
                if of(&f.file) {
                    return true;
                }
                // Or it starts with what a live file started with when last looked at, and
                // that file shows a truncation: copytruncate may have emptied it between
                // the scan's truncation checks and this look, and the truncation, seen next
                // scan, claims it by the same fingerprints. Its whole fingerprint, or the
                // shorter ones it grew from (the copy may be shorter than what was read
                // since: lines written between the copy and the truncation), as a short
                // head is often shared (a banner at the top of every generation); so is a
                // file of its own log all of whose bytes are its first ones (a copy shorter
                // than anything seen of it: copied, then written to, before a look). Not a
                // prefix's fingerprint there: a generation that only shares 16 bytes with it
                // (a timestamp to the minute) would be held, then claimed as the copy, its
                // first bytes skipped.
                if !f.rewritten() {
                    return false;
                }
                let whole = f.fp_len >= MIN_PREFIX
                    && t.size >= u64::from(f.fp_len)
                    && fingerprint(&t.file, f.fp_len).ok().flatten() == Some(f.fp);
                whole
                    || f.fp_hist.iter().any(|&(n, fp)| {
                        // A copy shorter than MIN_PREFIX: all of it, not a prefix.
                        (n >= MIN_PREFIX && t.size >= u64::from(n)
                            || n > 0 && t.size == u64::from(n))
                            && fingerprint(&t.file, n).ok().flatten() == Some(fp)
                    })
                    || family(&t.path) == f.path && file::is_head_of(&t.file, &f.head)
            })
    }

    /// A file known by its mark found shorter than the mark's offset, or with another head:
    /// truncated while it was not open. The copy of what the mark knew is claimed, from the
    /// mark's offset, even when nothing of it is unread (so a glob that matches it does not
    /// read it again); with no copy, what was unread is counted.
    ///
    /// Returns the generations that come after `live` itself: copies newer than it when it
    /// was renamed away (see [`split_after_renamed`]); the caller opens them after it.
    /// `None`: no copy was found.
    ///
    /// With a copy found, `live` is the same log as the mark (renamed since, perhaps) and
    /// takes the mark's name, so that it waits for the copy.
    fn truncated_while_down(
        &mut self,
        m: &FileMark,
        live: &mut Tailed,
        now: Instant,
        c: &mut Counters,
    ) -> Option<Vec<Tailed>> {
        c.files_truncated += 1;
        let dir = live.path.parent().unwrap_or(Path::new("."));
        let wire: Rc<str> = String::from_utf8_lossy(&m.path).into();
        // A copy claimed before the restart has a mark of its own: attach_copy resumes it
        // there. Only files open (and not suspect) are someone else's.
        let not = (live.dev, live.ino);
        let name = Path::new(std::ffi::OsStr::from_bytes(&m.path));
        // A copy holds, before the mark's position, the bytes the mark saw there.
        let copy = self
            .copy_since(name, not, m)
            .or_else(|| self.find_copy_of(dir, m, not, false));
        let found = match copy {
            Some(copy) => Some((copy, true)),
            // Or open already: resumed by a mark of its own, claimed before the restart.
            // The generations copied away after it are still to be found.
            None => self
                .find_copy_of(dir, m, not, true)
                .map(|copy| (copy, false)),
        };
        match found {
            Some((copy, attach)) => {
                live.wire_path = wire.clone();
                if attach {
                    self.attach_copy(copy.clone(), &wire, live.input, m.offset, 0, now, c);
                }
                // Then the generations copied away after it while the agent was down; the
                // file that now has the name waits for the last (see open_new).
                let live_path = PathBuf::from(std::ffi::OsStr::from_bytes(&m.path));
                let key = (live.dev, live.ino);
                let mut later =
                    self.later_generations(&copy, &live_path, key, &wire, live.input, now, c);
                let after = split_after_renamed(&mut later, &copy, &live_path, key, &live.file);
                for mut g in later {
                    g.wait_for = self
                        .files
                        .iter()
                        .rev()
                        .find(|f| *f.wire_path == *wire && f.rotated.is_some())
                        .map(|f| (f.dev, f.ino));
                    self.files.push(g);
                }
                Some(after)
            }
            None => {
                self.truncation_loss(&live.path, m.size, m.offset, NO_COPY, c);
                None
            }
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
        let pos = f.pos;
        let committed = f.committed;
        // The fingerprint, then the shorter ones it grew from: a copy taken while the file
        // was shorter than its fingerprint is found by those.
        let mut fps = vec![(f.fp_len, f.fp)];
        fps.extend(f.fp_hist.iter().rev().filter(|h| h.0 >= MIN_PREFIX));
        // Then a suspect of this log (a file already found starting like it: a copy in the
        // making) all of whose bytes are its first ones, the longest: a copy of a file that
        // held a line of a few bytes, or one shorter than anything the tailer saw of it.
        let head = std::mem::take(&mut f.head);
        let dir = f.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let (key, wire, input, path) =
            ((f.dev, f.ino), f.wire_path.clone(), f.input, f.path.clone());
        f.start_over();
        log::info!("{} truncated at byte {pos}", path.display());
        // A generation rewritten in place with a copy of its live file (`cp app.log
        // app.log.1` over the previous copy): a copy in the making, which the live file's
        // truncation claims where that file was read to. Read from its head, it would
        // repeat every line the live file gave.
        if family(&path) != path.as_path() && self.is_copy_of_live(&self.files[i]) {
            log::info!(
                "{} was written over with a copy of its log: held as a copy",
                path.display()
            );
            self.truncation_loss(&path, before, pos, WRITTEN_OVER, c);
            self.files[i].suspect = true;
            self.files[i].wait_for = None;
            return;
        }
        // The copy is claimed even when nothing of it is unread: a glob that also matches
        // rotated names would otherwise take it for a new file and read it again. Its
        // length, not the size last seen, tells what is unread: the writer may have
        // appended between our last read and the copy.
        // A mark whose file no longer starts as it did is stale: the file was deleted and
        // the copy took its freed inode number (ext4 hands one out again at once).
        // An open file rewritten since its last read is not what it was known as: the copy
        // may have been written over the previous copy in place (`cp app.log app.log.1`).
        let known = |k: (u64, u64), p: &Path| {
            self.files
                .iter()
                .any(|o| (o.dev, o.ino) == k && !o.suspect && !o.rewritten())
                || self.marks.get(&k).is_some_and(|m| names_file(m, p))
        };
        let found = find_copy(&dir, &fps, key, &known).or_else(|| {
            self.files
                .iter()
                .filter(|o| {
                    o.suspect && family(&o.path) == path && file::is_head_of(&o.file, &head)
                })
                .max_by_key(|o| o.file.metadata().map_or(0, |m| m.len()))
                .map(|o| o.path.clone())
        });
        match found {
            Some(copy) => {
                // The generations copied away unseen before the copy, the copy, those
                // copied away after it unseen, then what is written to the truncated file
                // from now on: in that order.
                let mut chain = Vec::new();
                let attached = self
                    .attach_copy(copy.clone(), &wire, input, pos, before, now, c)
                    .is_some();
                if attached {
                    let mut t = self.files.pop().expect("attached last");
                    // What the batch (or a refused frame) still holds of the old content is
                    // the copy's too: not committed until those lines are spooled.
                    t.origin = Some(key);
                    t.committed = committed.min(t.pos);
                    // The truncated file may have been refilled by the next generation
                    // before a look (known as empty after its last copy was claimed, it
                    // is read from its first byte with nothing to tell a truncation by):
                    // generations no one knows, copied away between the newest one known
                    // and this copy, hold lines no one read.
                    // Up to the copy's modification time now: from there on, the later
                    // generations below.
                    if let Ok(until) = t.file.metadata().and_then(|m| m.modified()) {
                        if let Some(since) = self.newest_known_before(&path, key, until) {
                            // Not a file all of whose bytes are the copy's first ones: a
                            // copy of the live file an operator kept aside (`cp`), whose
                            // lines were read from the live file.
                            let not = [key, (t.dev, t.ino)];
                            chain = self.later_than(
                                since,
                                Some(until),
                                &path,
                                not,
                                Some(&t.file),
                                &wire,
                                input,
                                now,
                                c,
                            );
                        }
                    }
                    chain.push(t);
                }
                chain.extend(self.later_generations(&copy, &path, key, &wire, input, now, c));
                let at = self
                    .files
                    .iter()
                    .position(|f| (f.dev, f.ino) == key)
                    .expect("the truncated file is open");
                let after =
                    split_after_renamed(&mut chain, &copy, &path, key, &self.files[at].file);
                // The copy takes the truncated file's place in the order: it waits for what
                // that file waited for (a generation renamed away, not yet drained). A copy
                // that was open already: the later generations wait for it.
                let mut prev = match chain.first() {
                    Some(_) if attached => self.files[at].wait_for,
                    _ => std::fs::metadata(&copy).ok().map(|m| (m.dev(), m.ino())),
                };
                for (k, mut g) in chain.into_iter().enumerate() {
                    if g.wait_for.is_none() {
                        g.wait_for = prev;
                    }
                    prev = Some((g.dev, g.ino));
                    self.files.insert(at + k, g);
                }
                let at = self
                    .files
                    .iter()
                    .position(|f| (f.dev, f.ino) == key)
                    .expect("the truncated file is open");
                if let Some(p) = prev {
                    self.files[at].wait_for = Some(p);
                }
                // The generations newer than the renamed file come after it, in order.
                let mut prev = key;
                for (k, mut g) in after.into_iter().enumerate() {
                    g.wait_for = Some(prev);
                    prev = (g.dev, g.ino);
                    self.files.insert(at + 1 + k, g);
                }
            }
            None => self.truncation_loss(&path, before, pos, NO_COPY, c),
        }
    }

    /// File `key`, open under a log's own name, is no longer under it: renamed away (or
    /// deleted). Generations of that log newer than its last write that no one knows were
    /// rotated away after it unseen: they are opened now, each after the one before, the
    /// first after it. The file that has the log's name now waits for the last (open_new).
    fn unseen_after_renamed(&mut self, key: Key, now: Instant, c: &mut Counters) {
        let Some(i) = self.files.iter().position(|f| (f.dev, f.ino) == key) else {
            return;
        };
        let f = &self.files[i];
        let live = f.path.clone();
        // Before the look-ups below: only a log under its own name has generations to find.
        if family(&live) != live.as_path() || *f.wire_path != *live.as_os_str().to_string_lossy() {
            return;
        }
        let Some(mut since) = f.file.metadata().and_then(|m| m.modified()).ok() else {
            return;
        };
        if f.pos == 0 {
            // Nothing of it read: it may have been copied and truncated unseen before it
            // was renamed (its head then says nothing). Its copies are newer than the newest
            // generation known before it, and than itself when it was found; reorder puts
            // everything in the order written.
            let found = f.found_mtime;
            let known = self.newest_known_before(&live, key, since);
            for t in [known, found].into_iter().flatten() {
                since = since.min(t);
            }
        }
        self.unseen_since(i, since, Some(key), now, c);
    }

    /// While the first scan takes up the last run's positions: when they were taken, less a
    /// second (file times may be kept to the second, and lag the clock by a tick; what is
    /// taken early is a generation modified just before, known by its own mark if it was
    /// read).
    fn restart_since(&self) -> Option<SystemTime> {
        let ms = self.as_of.filter(|_| !self.started)?;
        Some(std::time::UNIX_EPOCH + Duration::from_millis(ms.saturating_sub(1000)))
    }

    /// Whether file `i`, last seen empty with nothing of it read (`empty_at`), was written
    /// to since, and generations of its log now come before it. What was written may have
    /// been copied away and truncated before any look (copytruncate twice between two looks,
    /// the first time with the copy claimed), leaving it empty again, or refilled, with no
    /// position or head to tell a truncation by. Generations of its log that no one knows,
    /// modified since it was seen empty, hold those lines: read before it, oldest first.
    /// Under a glob on the live name only, nothing else would ever open them.
    fn refilled(&mut self, i: usize, now: Instant, c: &mut Counters) -> bool {
        let f = &mut self.files[i];
        let (Some(since), Ok(m)) = (f.empty_at, f.file.metadata()) else {
            return false;
        };
        let mtime = m.modified().ok();
        if m.len() == 0 && mtime == Some(since) {
            return false;
        }
        // Still empty: seen so now, and looked at again once changed.
        f.empty_at = if m.len() == 0 { mtime } else { None };
        let first = f.wait_for;
        if f.pos > 0 || f.rotated.is_some() {
            return false;
        }
        let last = self.unseen_since(i, since, first, now, c);
        self.files[i].wait_for = last;
        last != first
    }

    /// Opens the generations of the log file `i` is under its own name (`app.log`) that no
    /// one knows and that were modified since `since`, oldest first, the first after
    /// `first`; returns the last (`first` if there are none). A file all of whose bytes are
    /// the first bytes of file `i` is a copy of it kept aside (`cp`, then deleted): what it
    /// holds comes from that file, no generation of it.
    fn unseen_since(
        &mut self,
        i: usize,
        since: std::time::SystemTime,
        first: Option<Key>,
        now: Instant,
        c: &mut Counters,
    ) -> Option<Key> {
        let f = &self.files[i];
        let live = f.path.clone();
        if family(&live) != live.as_path() {
            return first;
        }
        let (key, wire, input) = ((f.dev, f.ino), f.wire_path.clone(), f.input);
        let copy_of = f.file.try_clone().ok();
        let later = self.later_than(
            since,
            None,
            &live,
            [key; 2],
            copy_of.as_ref(),
            &wire,
            input,
            now,
            c,
        );
        self.push_chain(first, later)
    }

    /// The newest modification time, before `before`, of a generation of the log at `live`
    /// that is known (open, or marked) other than `not`: copies made of a file nothing was
    /// read of are newer.
    fn newest_known_before(
        &self,
        live: &Path,
        not: Key,
        before: std::time::SystemTime,
    ) -> Option<std::time::SystemTime> {
        let dir = live.parent().unwrap_or(Path::new("."));
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| family(&e.path()) == live)
            .filter_map(|e| e.metadata().ok())
            .filter(|m| {
                let k = (m.dev(), m.ino());
                k != not && (self.marks.contains_key(&k) || self.is_known(k))
            })
            .filter_map(|m| m.modified().ok())
            .filter(|t| *t < before)
            .max()
    }

    /// Generations of the log at `live` that were copied away after `copy` (newer, by
    /// modification time) and that no one knows: copytruncate ran more than once between two
    /// looks (the agent stopped, down, or paused with a full disk), so their heads were never
    /// seen. They are read whole, oldest first, whatever the glob: they hold the log's lines.
    #[allow(clippy::too_many_arguments)]
    fn later_generations(
        &mut self,
        copy: &Path,
        live: &Path,
        not: (u64, u64),
        wire: &Rc<str>,
        input: usize,
        now: Instant,
        c: &mut Counters,
    ) -> Vec<Tailed> {
        let Ok(m) = std::fs::metadata(copy) else {
            return Vec::new();
        };
        let Ok(since) = m.modified() else {
            return Vec::new();
        };
        let not = [not, (m.dev(), m.ino())];
        self.later_than(since, None, live, not, None, wire, input, now, c)
    }

    /// The generations of the log at `live`, with their modification times, that no one
    /// knows (neither open nor marked, nor one of `not`), modified since `since` (at the
    /// same time too: a coarse clock stamps generations made within one tick alike) and
    /// before `until`.
    fn unknown_generations(
        &self,
        live: &Path,
        since: std::time::SystemTime,
        until: Option<std::time::SystemTime>,
        not: [(u64, u64); 2],
    ) -> Vec<(std::time::SystemTime, PathBuf)> {
        let dir = live.parent().unwrap_or(Path::new("."));
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                let m = e.metadata().ok()?;
                let key = (m.dev(), m.ino());
                let mtime = m.modified().ok()?;
                let unknown = !not.contains(&key)
                    && !self.marks.get(&key).is_some_and(|m| names_file(m, &p))
                    && !self.files.iter().any(|f| (f.dev, f.ino) == key);
                let within = mtime >= since && until.is_none_or(|u| mtime < u);
                (m.is_file() && p != live && family(&p) == live && within && unknown)
                    .then_some((mtime, p))
            })
            .collect()
    }

    /// [`later_generations`](Self::later_generations) by time: unknown generations of the
    /// log at `live` modified since `since` (at the same time too: a coarse clock stamps
    /// generations made within one tick alike), oldest first; none of `not`, none that the
    /// input excludes, and none whose bytes are the first bytes of `copy_of` (a copy of that
    /// file: generations of a log that share a header or banner differ after it).
    #[allow(clippy::too_many_arguments)]
    fn later_than(
        &mut self,
        since: std::time::SystemTime,
        until: Option<std::time::SystemTime>,
        live: &Path,
        not: [(u64, u64); 2],
        copy_of: Option<&std::fs::File>,
        wire: &Rc<str>,
        input: usize,
        now: Instant,
        c: &mut Counters,
    ) -> Vec<Tailed> {
        let exclude = &self.inputs[input].exclude;
        let mut later: Vec<(std::time::SystemTime, PathBuf)> = self
            .unknown_generations(live, since, until, not)
            .into_iter()
            .filter(|(_, p)| !exclude.iter().any(|x| glob::matches(x, p)))
            .filter(|(_, p)| {
                let Some(of) = copy_of else { return true };
                let same = std::fs::File::open(p).is_ok_and(|f| is_prefix_of(&f, of));
                if same {
                    log::debug!("{}: a copy of {wire}'s head; not a generation", p.display());
                }
                !same
            })
            .collect();
        crate::sort::sort_by(&mut later, |a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(&a.1)));
        let mut out = Vec::new();
        for (_, p) in later {
            match Tailed::open(input, p.clone(), wire.clone(), 0) {
                Ok(t) if self.in_the_making(&t) => {
                    // Empty, or no longer than a live file and its first bytes: perhaps a
                    // copy still in the making. Taken now, it would be read from its head
                    // while the same bytes are read from the log; the glob walk opens it as a
                    // suspect instead, and the next truncation claims it.
                    log::debug!("{}: perhaps a copy in the making; not yet", p.display());
                }
                Ok(mut t) => {
                    log::info!(
                        "reading {}, a generation of {wire} copied away unseen",
                        p.display()
                    );
                    // On the inode of a file deleted since, whose mark is stale (see the
                    // filter above): that file's unread rest is gone.
                    if let Some(m) = self.marks.remove(&(t.dev, t.ino)) {
                        self.let_go.remove(&(t.dev, t.ino));
                        self.vanished(&m, c);
                    }
                    t.rotated = Some(now);
                    c.files_opened += 1;
                    out.push(t);
                }
                Err(e) => log::warn!("cannot open {}: {e}", p.display()),
            }
        }
        out
    }

    /// Opens `copy`, the copy copytruncate left of what was read up to `pos` under `wire`, to
    /// read the rest. A copy already open is left as it is; one that has a mark of its own
    /// (claimed before) resumes where that mark is, if further. Returns the copy's identity
    /// when it is now the last of the open files (opened, or an unread suspect taken up).
    #[allow(clippy::too_many_arguments)]
    fn attach_copy(
        &mut self,
        copy: PathBuf,
        wire: &Rc<str>,
        input: usize,
        pos: u64,
        before: u64,
        now: Instant,
        c: &mut Counters,
    ) -> Option<(u64, u64)> {
        let mut pos = pos;
        if let Ok(m) = std::fs::metadata(&copy) {
            // logrotate's window: what was written after the copy was made and before the
            // truncation is in neither file. What of it was seen (the truncated file was
            // `before` bytes long at the last look) and not read is counted; lines written
            // and truncated between two looks cannot be.
            let why = "that were written after its copy was made";
            self.truncation_loss(Path::new(&**wire), before, pos.max(m.len()), why, c);
            // A copy shorter than what was read: the rest was written after the copy and
            // read from the original. Past its end the copy would look truncated.
            pos = pos.min(m.len());
            let key = (m.dev(), m.ino());
            if let Some(j) = self.files.iter().position(|f| (f.dev, f.ino) == key) {
                let f = &mut self.files[j];
                if !f.suspect && f.rewritten() {
                    // An open file the copy was written over in place (the previous copy,
                    // `cp` onto its name): what it held unread is gone; from now on it is
                    // this copy.
                    let (path, before, at) = (f.path.clone(), f.size.max(f.pos), f.pos);
                    f.start_over();
                    f.suspect = true;
                    self.truncation_loss(&path, before, at, WRITTEN_OVER, c);
                }
                let f = &mut self.files[j];
                if f.suspect {
                    // Opened in the making and left unread: now known as the copy. It goes
                    // last, so the caller puts it before the truncated file.
                    says_claimed(wire, &copy, pos);
                    f.suspect = false;
                    // Its place in the order is the truncated file's, which the caller
                    // gives it: what it was chained to when it was found is a guess from
                    // before anyone knew what it is.
                    f.wait_for = None;
                    f.pos = pos.max(f.pos);
                    f.committed = f.pos;
                    f.wire_path = wire.clone();
                    f.input = input;
                    f.rotated = Some(now);
                    self.notes.push(key);
                    let f = self.files.remove(j);
                    self.files.push(f);
                    return Some(key);
                }
                return None;
            }
            if let Some(own) = self.marks.remove(&key) {
                // The copy's own mark (claimed before a restart) when the heads agree; else
                // the mark of a file deleted since, whose inode the copy now reuses: its
                // offset says nothing about the copy, and its unread rest is gone.
                // When every line begins alike, the bytes before the mark's position tell.
                // And a copy shorter than its own mark's position is another file on its
                // inode: copies do not shrink.
                let file = std::fs::File::open(&copy).ok();
                if file.is_some_and(|f| holds_mark(&f, m.len(), &own)) {
                    pos = pos.max(own.offset);
                } else {
                    self.vanished(&own, c);
                }
            }
        }
        match Tailed::open(input, copy.clone(), wire.clone(), pos) {
            Ok(mut t) => {
                says_claimed(wire, &copy, pos);
                t.rotated = Some(now);
                c.files_opened += 1;
                // The claim reaches the spool with the next frame, before any line of the
                // truncated file's new content can (see BatchBuilder::note).
                let key = (t.dev, t.ino);
                self.notes.push(key);
                self.files.push(t);
                Some(key)
            }
            Err(e) => {
                log::warn!("cannot open copy {}: {e}", copy.display());
                None
            }
        }
    }

    /// Counts the bytes from `pos` to `size` of `path` as lost to a truncation; `why` says
    /// where they went, in the warning.
    fn truncation_loss(&mut self, path: &Path, size: u64, pos: u64, why: &str, c: &mut Counters) {
        let lost = size.saturating_sub(pos);
        if lost > 0 {
            c.truncated_lost_bytes += lost;
            log::warn!(
                "{} was truncated with {lost} bytes unread {why}: lost",
                path.display()
            );
        }
    }

    fn vanished(&mut self, m: &FileMark, c: &mut Counters) {
        let lost = m.size.saturating_sub(m.offset);
        if lost == 0 {
            // Read to its end: nothing lost, nothing to warn of.
            return;
        }
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
        // Each stays a mark until its turn: a generation followed before it must not take it
        // for one renamed away unseen.
        let mut gone: Vec<FileMark> = self
            .marks
            .values()
            .filter(|m| !still_there(m))
            .cloned()
            .collect();
        // Followed oldest first (by the modification time of the name each is found under
        // now), so that generations renamed while the agent was down are read in order.
        let mut when: HashMap<(u64, u64), std::time::SystemTime> = HashMap::new();
        let dirs: HashSet<PathBuf> = gone
            .iter()
            .filter_map(|m| {
                let p = Path::new(std::ffi::OsStr::from_bytes(&m.path));
                p.parent().map(Path::to_path_buf)
            })
            .collect();
        for d in dirs {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if let Ok(md) = e.metadata() {
                    if let Ok(t) = md.modified() {
                        when.insert((md.dev(), md.ino()), t);
                    }
                }
            }
        }
        crate::sort::sort_by_cached_key(&mut gone, |m| {
            (when.get(&(m.dev, m.ino)).copied(), m.path.clone())
        });
        for m in gone {
            if let Some(m) = self.marks.remove(&(m.dev, m.ino)) {
                self.follow(m, now, c);
            }
        }
        // Then, per log, the generations renamed or copied away after the newest one
        // followed that no one knows: with a glob on the live name only, nothing else finds
        // them. They come before the live file, oldest first.
        let mut newest: HashMap<Rc<str>, (std::time::SystemTime, PathBuf, usize)> = HashMap::new();
        for f in self.files.iter().filter(|f| f.rotated.is_some()) {
            let Some(t) = f.file.metadata().and_then(|m| m.modified()).ok() else {
                continue;
            };
            let e = newest
                .entry(f.wire_path.clone())
                .or_insert((t, f.path.clone(), f.input));
            if t > e.0 {
                *e = (t, f.path.clone(), f.input);
            }
        }
        let wires: Vec<Rc<str>> = newest.keys().cloned().collect();
        for (wire, (_, path, input)) in newest {
            let live = PathBuf::from(&*wire);
            let later = self.later_generations(&path, &live, (0, 0), &wire, input, now, c);
            if !later.is_empty() {
                self.insert_before_live(later, &wire);
            }
        }
        // Copies claimed through the live file, generations followed by their marks and
        // generations found unseen were each put in place by their own rule: put each
        // log's generations in the one order they were written.
        for wire in wires {
            self.rechain(&wire);
        }
    }

    /// The input that found a file under `path`, if one still would.
    fn input_of(&self, path: &Path) -> Option<usize> {
        self.inputs.iter().position(|i| finds(i, path))
    }

    /// A file known only by its mark is no longer under the mark's path. Renamed in the same
    /// directory? It is read from the mark's offset as a rotated file, before the file that
    /// now has its name. Gone? What was unread is counted. The input that found it under its
    /// old name gives its settings; if none would find it now, it is not ours any more and
    /// its mark is kept.
    fn follow(&mut self, m: FileMark, now: Instant, c: &mut Counters) {
        self.follow_near(m, None, now, c);
    }

    /// [`follow`](Self::follow), looking first in the directory of `near` (where a scan
    /// last saw the file), then in the mark's.
    fn follow_near(&mut self, m: FileMark, near: Option<&Path>, now: Instant, c: &mut Counters) {
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(&m.path));
        let Some(input) = self.input_of(&path) else {
            self.marks.insert((m.dev, m.ino), m);
            return;
        };
        let key = (m.dev, m.ino);
        let found = near
            .and_then(|n| find_in_dir(n, key))
            .or_else(|| find_in_dir(&path, key));
        let Some(p) = found else {
            self.vanished(&m, c);
            return;
        };
        let wire: Rc<str> = String::from_utf8_lossy(&m.path).into();
        match Tailed::open(input, p.clone(), wire.clone(), m.offset) {
            Ok(mut t)
                if t.size >= m.offset
                    && (m.fp_len == 0
                        || fingerprint(&t.file, m.fp_len).ok().flatten() == Some(m.fp)) =>
            {
                log::info!(
                    "{wire} was rotated to {} while not open: reading it from byte {}",
                    p.display(),
                    m.offset
                );
                t.rotated = Some(now);
                c.files_opened += 1;
                let mut chain = Vec::new();
                let key = (t.dev, t.ino);
                let own = t.file.metadata().and_then(|x| x.modified()).ok();
                if m.offset == 0 && m.fp_len == 0 && family(&path) == path.as_path() {
                    // The log's file, empty when last seen: copytruncate may have run on it
                    // while the agent was down, and its head says nothing. Its copies are
                    // newer than the newest generation known before it; reorder puts them
                    // in the order written.
                    if let Some(since) = own.and_then(|o| self.newest_known_before(&path, key, o)) {
                        chain = self
                            .later_than(since, None, &path, [key; 2], None, &wire, input, now, c);
                    }
                }
                chain.push(t);
                self.insert_before_live(chain, &wire);
            }
            // Another head: truncated while not open (copytruncate), then written again and
            // renamed. Its copy (from the mark's offset), the copies made after it, its new
            // content, then the copies newer than it: all before the file that now has its
            // name.
            // Under another log's name with another head: not this file, but a new one on
            // its freed inode number (the mark's file was deleted); it is found as new.
            Ok(_) if family(&p) != family(&path) => self.vanished(&m, c),
            Ok(_) => {
                let Ok(mut t) = Tailed::open(input, p.clone(), wire.clone(), 0) else {
                    return self.vanished(&m, c);
                };
                if self.copy_on_freed_inode(&t) {
                    // Another head that starts like a live file: the mark's file was deleted
                    // and logrotate's copy of the live file took its inode number (as in
                    // `open_new`). Not this mark's: the walk finds it as a new file, or the
                    // live file's truncation claims it.
                    return self.vanished(&m, c);
                }
                log::info!(
                    "{wire} was truncated and rotated to {} while not open: reading it from its head",
                    p.display()
                );
                t.rotated = Some(now);
                c.files_opened += 1;
                let had: HashSet<(u64, u64)> = self
                    .files
                    .iter()
                    .filter(|f| !f.suspect)
                    .map(|f| (f.dev, f.ino))
                    .collect();
                let after = self
                    .truncated_while_down(&m, &mut t, now, c)
                    .unwrap_or_default();
                let mut chain = Vec::new();
                let mut i = 0;
                while i < self.files.len() {
                    if had.contains(&(self.files[i].dev, self.files[i].ino)) {
                        i += 1;
                    } else {
                        chain.push(self.files.remove(i));
                    }
                }
                chain.push(t);
                chain.extend(after);
                self.insert_before_live(chain, &wire);
            }
            Err(_) => self.vanished(&m, c),
        }
    }

    /// Orders the generations of the log `wire` that are not under its name (rotated, or
    /// renamed away) by modification time, each waiting for the one before it, and the file
    /// under the name (if open) after the last. At a restart: what was written last was
    /// modified last, and a copy is not modified after it is made.
    fn rechain(&mut self, wire: &Rc<str>) {
        let mtime = |f: &Tailed| f.file.metadata().and_then(|m| m.modified()).ok();
        let is_gen = |f: &Tailed| {
            *f.wire_path == **wire && !f.suspect && (f.rotated.is_some() || *f.path != **wire)
        };
        let Some(at) = self.files.iter().position(is_gen) else {
            return;
        };
        let mut gens = Vec::new();
        let mut i = at;
        while i < self.files.len() {
            if is_gen(&self.files[i]) {
                gens.push(self.files.remove(i));
            } else {
                i += 1;
            }
        }
        // What the first of them waited for outside the log's own chain (an older generation
        // found under its own name, still being read) the first of the new order waits for.
        let keys: HashSet<(u64, u64)> = gens.iter().map(|g| (g.dev, g.ino)).collect();
        let outside = gens
            .iter()
            .filter_map(|g| g.wait_for)
            .find(|k| !keys.contains(k));
        crate::sort::sort_by_cached_key(&mut gens, |f| {
            (mtime(f), std::cmp::Reverse(f.path.clone()))
        });
        for g in &mut gens {
            g.wait_for = None;
        }
        self.splice(at, gens, outside, |f| {
            *f.wire_path == **wire && f.rotated.is_none() && *f.path == **wire
        });
    }

    /// Inserts `chain` at `at`, each file waiting for the one before it (the first, unless it
    /// waits for something already, for `first`), and makes the first file `live` picks
    /// wait for the last of the chain.
    fn splice(
        &mut self,
        at: usize,
        chain: Vec<Tailed>,
        first: Option<(u64, u64)>,
        live: impl Fn(&Tailed) -> bool,
    ) {
        let mut prev = first;
        for (k, mut g) in chain.into_iter().enumerate() {
            if k > 0 || g.wait_for.is_none() {
                g.wait_for = prev;
            }
            prev = Some((g.dev, g.ino));
            self.files.insert(at + k, g);
        }
        if let Some(n) = self.files.iter_mut().find(|f| live(f)) {
            n.wait_for = prev;
        }
    }

    /// Puts `chain`, generations of the log `wire` in the order they are to be read, before
    /// the file that has the log's name now (or last): each waits for the one before it,
    /// the first for the generation already before it, and the live file for the last.
    fn insert_before_live(&mut self, chain: Vec<Tailed>, wire: &Rc<str>) {
        let at = self
            .files
            .iter()
            .position(|f| *f.wire_path == **wire && f.rotated.is_none())
            .unwrap_or(self.files.len());
        let before = self.files[..at]
            .iter()
            .rev()
            .find(|f| *f.wire_path == **wire)
            .map(|f| (f.dev, f.ino));
        self.splice(at, chain, before, |f| {
            *f.wire_path == **wire && f.rotated.is_none()
        });
    }

    /// Closes rotated files that are drained and quiet, and whose lines are all in the spool.
    /// Each leaves a mark, so a glob that also matches rotated names (`app.log*`) does not
    /// read it again; marks of files that no longer exist are pruned.
    fn retire(&mut self, now: Instant, batch: &BatchBuilder, c: &mut Counters) {
        let inputs = &self.inputs;
        let unspooled = &self.unspooled;
        let mut done = Vec::new();
        self.files.retain(|f| {
            let Some(since) = f.rotated else { return true };
            let wait = inputs
                .get(f.input)
                .map_or(std::time::Duration::ZERO, |i| i.rotate_wait.0);
            let quiet = now.duration_since(since.max(f.last_data)) >= wait;
            let finished = f.at_eof() && quiet && !held(batch, unspooled, f);
            if finished {
                log::info!("done with rotated {} ({})", f.path.display(), f.wire_path);
                let mut m = mark(f, f.pos);
                m.path = f.path.as_os_str().as_bytes().to_vec();
                done.push(m);
            }
            !finished
        });
        let moved: Vec<(u64, u64)> = self
            .marks
            .iter()
            .filter(|(_, m)| !still_there(m))
            .map(|(k, _)| *k)
            .collect();
        // Files renamed since the walk (logrotate shifting `.1` to `.2` as we look) are
        // still in their directory: their marks follow them there, or the next walk would
        // take them for new files and read them again from their heads.
        let mut names: HashMap<Key, PathBuf> = HashMap::new();
        if !moved.is_empty() {
            let dirs: HashSet<PathBuf> = moved
                .iter()
                .filter_map(|k| {
                    let p = Path::new(std::ffi::OsStr::from_bytes(&self.marks[k].path));
                    p.parent().map(Path::to_path_buf)
                })
                .collect();
            for d in dirs {
                for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                    if let Ok(md) = e.metadata() {
                        if md.is_file() {
                            names.insert((md.dev(), md.ino()), e.path());
                        }
                    }
                }
            }
        }
        for k in moved {
            let mut m = self.marks.remove(&k).expect("listed above");
            let taken = self.input_of(Path::new(std::ffi::OsStr::from_bytes(&m.path)));
            if taken.is_none() && self.let_go.contains(&k) {
                // Closed by a reload that left no input taking it: still there, it keeps the
                // name it was known under, so that an input taking that name again follows
                // it from there (see set_inputs); gone, it is no input's loss.
                if names.contains_key(&k) {
                    self.marks.insert(k, m);
                } else {
                    self.let_go.remove(&k);
                }
            } else if self.let_go.remove(&k) {
                // Let go while live: rotated since, perhaps with lines written before that.
                self.follow(m, now, c);
            } else if let Some(p) = names.remove(&k) {
                // The same file, not a new one on a freed inode number: its head agrees.
                let same = m.fp_len == 0
                    || std::fs::File::open(&p)
                        .ok()
                        .and_then(|f| fingerprint(&f, m.fp_len).ok().flatten())
                        == Some(m.fp);
                if same {
                    m.path = p.as_os_str().as_bytes().to_vec();
                    self.marks.insert(k, m);
                }
            }
        }
        self.let_go.retain(|k| self.marks.contains_key(k));
        self.reloaded.retain(|k| self.let_go.contains(k));
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
        for key in std::mem::take(&mut self.notes) {
            if let Some(f) = self.files.iter().find(|f| (f.dev, f.ino) == key) {
                let src = SourceRef {
                    path: &f.wire_path,
                    dev: f.dev,
                    ino: f.ino,
                    fp_len: f.fp_len,
                    fp: f.fp,
                };
                batch.note(&src, f.pos);
            }
        }
        let n = self.files.len();
        if n == 0 {
            return Outcome::Idle;
        }
        let mut budget = READ_BUDGET;
        let share = (READ_BUDGET / n).max(MIN_SHARE);
        let start = self.next % n;
        loop {
            let mut hungry = false;
            // A file held back for a predecessor that this pass then drained is read in
            // the next pass, not at the next wake: its lines are on disk now, and the next
            // wake may come after a copytruncate took them.
            let (mut held, at) = (false, budget);
            for k in 0..n {
                let i = (start + k) % n;
                if self.files[i].suspect {
                    continue;
                }
                if self.files[i].empty_at.is_some() && self.refilled(i, now, c) {
                    // The generations found go before it: read next, from `i`.
                    self.next = i;
                    return Outcome::More;
                }
                if self.held_back(i) {
                    held = true;
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
            let released = held && budget < at;
            if !hungry && !released {
                return Outcome::Idle;
            }
        }
    }

    /// Whether file `i` waits for its predecessor under the same name to be drained.
    ///
    /// The predecessor's size is looked at afresh (a writer may still have appended to a
    /// renamed file after the last scan), and only after the successor's: the successor is
    /// then released with that earlier size as the limit of its next read. A writer that
    /// finished the old file before starting the new one wrote every byte of the old file
    /// before any byte under that limit, so none of the old file's lines can come after them.
    fn held_back(&mut self, i: usize) -> bool {
        let Some(k) = self.files[i].wait_for else {
            return false;
        };
        let own = self.files[i].file.metadata().map(|m| m.len()).ok();
        // A chain of waits that comes back to this file would wait for ever: let it go.
        let me = (self.files[i].dev, self.files[i].ino);
        let looped = self.chain(Some(k)).any(|n| n == me);
        if let Some(p) = self.files.iter_mut().find(|p| (p.dev, p.ino) == k) {
            let _ = p.stat();
            // A suspect (perhaps a copy in the making) is not read until it differs: it holds
            // no one back meanwhile.
            // A predecessor still waiting for its own holds this one back too, even if it is
            // empty: the order is the whole chain's.
            if (!p.at_eof() || p.wait_for.is_some()) && !p.suspect && !looped {
                return true;
            }
        }
        let f = &mut self.files[i];
        f.wait_for = None;
        f.limit = own;
        false
    }

    /// Records that a finished frame with lines up to these ends could not go to the spool
    /// yet: until [`commit`](Self::commit) says it did, those files are treated as holding
    /// lines in the batch (not checkpointed past them, not let go).
    pub fn hold(&mut self, ends: &[(u64, u64, u64)]) {
        self.unspooled = ends.iter().map(|&(d, i, _)| (d, i)).collect();
    }

    /// Records that a frame holding lines up to `end` of file `(dev, ino)` is in the spool.
    pub fn commit(&mut self, dev: u64, ino: u64, end: u64) {
        self.unspooled.retain(|&k| k != (dev, ino));
        // The copy of a truncated file shares the old content's offsets.
        for f in self
            .files
            .iter_mut()
            .filter(|f| f.origin == Some((dev, ino)))
        {
            if end <= f.pos {
                f.committed = f.committed.max(end);
            }
        }
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
        // A suspected copy (a copytruncate in the making) was never read: no mark, or a
        // restart would resume it from its head, the lines it copied read twice. Found
        // again, it is a suspect again, or the copy a truncation while down claims.
        for f in self.files.iter_mut().filter(|f| !f.suspect) {
            if !held(batch, &self.unspooled, f) {
                // Nothing of it waits in the batch: all it read is spooled or skipped.
                f.committed = f.pos;
            }
            out.push(mark(f, f.committed));
        }
        out
    }
}

/// Where a truncated file's unread bytes went, for [`Tailer::truncation_loss`]'s warning.
const NO_COPY: &str = "and no copy of them was found";
const WRITTEN_OVER: &str = "and it was written over with a copy of its log";

/// The log a file is a generation of: its path without a rotation suffix, the trailing run
/// of digits and `.`, `-`, `_` that starts with a separator and holds a digit
/// (`app.log.1`, `app.log-20261130`, `app.log.2026-11-30` are generations of `app.log`).
fn family(path: &Path) -> &Path {
    let b = path.as_os_str().as_bytes();
    let name_start = b.iter().rposition(|&c| c == b'/').map_or(0, |i| i + 1);
    let mut cut = b.len();
    let mut i = b.len();
    let mut digit = false;
    while i > name_start {
        let c = b[i - 1];
        if c.is_ascii_digit() {
            digit = true;
        } else if matches!(c, b'.' | b'-' | b'_') {
            if digit && i - 1 > name_start {
                cut = i - 1;
            }
        } else {
            break;
        }
        i -= 1;
    }
    Path::new(std::ffi::OsStr::from_bytes(&b[..cut]))
}

/// Whether log `fam` is there: open, or found under its name (a file renamed away since
/// still carries it), or on disk. If not, files named like its generations (`node-1`,
/// `node-2`) are logs of their own.
fn log_exists(fam: &Path, files: &[Tailed]) -> bool {
    files
        .iter()
        .any(|f| f.path == fam || Path::new(&*f.wire_path) == fam)
        || std::fs::symlink_metadata(fam).is_ok()
}

/// Whether `f` has lines that are not in the spool yet: in the open batch, or in a frame the
/// disk refused.
fn held(batch: &BatchBuilder, unspooled: &[(u64, u64)], f: &Tailed) -> bool {
    let by = |k: (u64, u64)| batch.holds(k.0, k.1) || unspooled.contains(&k);
    by((f.dev, f.ino)) || f.origin.is_some_and(by)
}

/// Whether `input` would find a file under `path`: one of its globs, none of its excludes.
fn finds(input: &Input, path: &Path) -> bool {
    input.paths.iter().any(|g| glob::matches(g, path))
        && !input.exclude.iter().any(|x| glob::matches(x, path))
}

/// Whether `input` (reloaded) still takes file `f`: under the path it is at, or under the
/// name it was found by (a rotated file being drained).
fn takes(input: &Input, f: &Tailed) -> bool {
    finds(input, &f.path) || finds(input, Path::new(&*f.wire_path))
}

/// Whether `f` is the live file of log `fam` in `input`, not read since it was last empty:
/// at byte 0, with nothing to check its head against.
fn unread_live(f: &Tailed, input: usize, fam: &Path) -> bool {
    f.input == input
        && f.path == fam
        && *f.wire_path == *fam.as_os_str().to_string_lossy()
        && f.rotated.is_none()
        && !f.suspect
        && f.pos == 0
}

/// The regular file with identity `key` in the directory of `path`, under whatever name.
fn find_in_dir(path: &Path, key: Key) -> Option<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .find(|e| {
            e.metadata()
                .is_ok_and(|m| m.is_file() && (m.dev(), m.ino()) == key)
        })
        .map(|e| e.path())
}

/// Whether the file found under `path` on the inode of mark `m` is the file the mark
/// knows: its head unchanged (renamed or not), or a log's live name the mark had, truncated
/// since. A new file on a freed inode number has another head, and under a rotation suffix
/// it is not the same file even by the same name (logrotate's `rotate 1` deletes
/// `app.log.1`, then copies the live file to a new `app.log.1`).
/// Another file under `path` by now (renamed since it was looked at) cannot tell: yes.
/// A mark with no fingerprint (its file was empty) cannot tell either, but it knows no
/// bytes: taken as stale, the file is read from its head just as the mark would have it,
/// and may be claimed as a copy (a generation let go empty, deleted, and its inode number
/// taken by a copytruncate copy).
fn names_file(m: &FileMark, path: &Path) -> bool {
    if m.path == path.as_os_str().as_bytes() && family(path) == path {
        return true;
    }
    if m.fp_len == 0 {
        return m.offset > 0;
    }
    let Ok(f) = std::fs::File::open(path) else {
        return true;
    };
    f.metadata()
        .map_or(true, |x| (x.dev(), x.ino()) != (m.dev, m.ino))
        || fingerprint(&f, m.fp_len).ok().flatten() == Some(m.fp)
}

/// The log line of a copy claimed for a truncated file (one copy of it in the binary).
fn says_claimed(wire: &str, copy: &Path, pos: u64) {
    log::info!(
        "reading the rest of {wire} from its copy {} at byte {pos}",
        copy.display()
    );
}

/// Whether the file a mark names is still under the mark's path.
fn still_there(m: &FileMark) -> bool {
    let p = Path::new(std::ffi::OsStr::from_bytes(&m.path));
    std::fs::metadata(p).is_ok_and(|md| (md.dev(), md.ino()) == (m.dev, m.ino))
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
        // Read now, not when the bytes were: what the agent holds to be there. A rewrite
        // it has not seen (every line beginning alike) is missed here as by the reads.
        tail: crate::frame::tail_of(&f.file, offset),
    }
}

/// Splits off the generations of `chain` (the copy of a truncated file, then the copies
/// made after it, oldest first) that come after the truncated file itself, `file`, known as
/// `key`. Still under its name `path`, it is the newest: none. Renamed away since, the later
/// copies are copies of it made before the rename, then copies of the file that took its
/// name: its modification time (its last write, before the rename) says where it stands.
fn split_after_renamed(
    chain: &mut Vec<Tailed>,
    copy: &Path,
    path: &Path,
    key: (u64, u64),
    file: &std::fs::File,
) -> Vec<Tailed> {
    let moved = std::fs::metadata(path).map_or(true, |m| (m.dev(), m.ino()) != key);
    let mtime = |f: &std::fs::File| f.metadata().and_then(|m| m.modified()).ok();
    match mtime(file) {
        Some(own) if moved => chain
            .iter()
            .position(|g| g.path != copy && mtime(&g.file).is_some_and(|t| t > own))
            .map_or(Vec::new(), |i| chain.split_off(i)),
        _ => Vec::new(),
    }
}

/// Whether the bytes of `f` (not empty, and at most [`PREFIX_CHECK`] of them compared) are
/// the first bytes of `of`: a copy of it, whole or in part.
fn is_prefix_of(f: &std::fs::File, of: &std::fs::File) -> bool {
    use std::os::unix::fs::FileExt;
    let (Ok(a), Ok(b)) = (f.metadata(), of.metadata()) else {
        return false;
    };
    if a.len() == 0 || a.len() > b.len() {
        return false;
    }
    let n = a.len().min(PREFIX_CHECK) as usize;
    let (mut x, mut y) = (vec![0u8; n], vec![0u8; n]);
    f.read_exact_at(&mut x, 0).is_ok() && of.read_exact_at(&mut y, 0).is_ok() && x == y
}

/// Whether `a` and the file at `b` hold other bytes before `at` (the last up to 4 KiB: the
/// end of the line read last, where lines that begin alike differ). Not when either is
/// shorter, or unreadable: nothing tells then (a copy made before the checkpoint, when the
/// file was shorter, by logrotate's `copy`).
fn differ_before(a: &std::fs::File, b: &Path, at: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let n = at.min(4 << 10) as usize;
    let (mut x, mut y) = (vec![0u8; n], vec![0u8; n]);
    let Ok(b) = std::fs::File::open(b) else {
        return false;
    };
    a.read_exact_at(&mut x, at - n as u64).is_ok()
        && b.read_exact_at(&mut y, at - n as u64).is_ok()
        && x != y
}

/// Whether `file`, `len` bytes long, is the file mark `m` knows: the same head (or the mark
/// knows none), the bytes the mark saw before its position where it knows them, and at
/// least as long as that position.
fn holds_mark(file: &std::fs::File, len: u64, m: &FileMark) -> bool {
    starts_and_ends_as(file, m) && len >= m.offset
}

/// Whether `file` has the bytes mark `m` knows of its file: the same head (or the mark
/// knows none) and, where the mark knows them, the same bytes just before its position.
/// Not whether it still reaches that position: a file truncated since is the mark's file.
fn starts_and_ends_as(file: &std::fs::File, m: &FileMark) -> bool {
    (m.fp_len == 0 || fingerprint(file, m.fp_len).ok().flatten() == Some(m.fp))
        && tail_holds(file, m) != Some(false)
}

/// Whether `file` holds, before `m`'s position, the bytes the mark saw there (see
/// [`FileMark::tail`]): `None` when the mark does not know them or the file is shorter.
fn tail_holds(file: &std::fs::File, m: &FileMark) -> Option<bool> {
    let t = m.tail?;
    Some(crate::frame::tail_of(file, m.offset)? == t)
}

/// Whether the file at `p`, opened as `file` (`None`: it could not be), may be a copy of
/// what `m` knew: its bytes before the position are the mark's, or nothing tells (no tail
/// known; the file shorter, a copy in the making; unreadable). Not a file under its log's
/// own name when the mark's is a generation's: a live log refilled since starts like all
/// its generations when every line begins alike.
fn may_hold_tail(p: &Path, file: Option<&std::fs::File>, m: &FileMark) -> bool {
    let named = Path::new(std::ffi::OsStr::from_bytes(&m.path));
    if family(p) == p && family(named) == p {
        return false;
    }
    file.is_none_or(|f| tail_holds(f, m) != Some(false))
}

/// How many bytes [`is_prefix_of`] compares: past a header or banner, two generations of a
/// log differ within their first lines.
const PREFIX_CHECK: u64 = 64 << 10;

/// The shortest earlier fingerprint a copy may be found by: shorter heads are too often
/// shared by unrelated files (a timestamp's first bytes).
const MIN_PREFIX: u32 = 16;

/// A file in `dir`, other than `not` and not `known` (open or marked: another file's copy
/// or a file of its own), whose first bytes have one of the fingerprints `fps` (length, CRC;
/// the first is the current one, then shorter ones): the copy copytruncate left.
fn find_copy(
    dir: &Path,
    fps: &[(u32, u32)],
    not: (u64, u64),
    known: &dyn Fn((u64, u64), &Path) -> bool,
) -> Option<PathBuf> {
    for &(fp_len, fp) in fps.iter().filter(|f| f.0 > 0) {
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let Ok(m) = e.metadata() else { continue };
            let key = (m.dev(), m.ino());
            if !m.is_file() || key == not || m.len() < u64::from(fp_len) {
                continue;
            }
            let Ok(f) = std::fs::File::open(e.path()) else {
                continue;
            };
            if fingerprint(&f, fp_len).ok().flatten() == Some(fp) && !known(key, &e.path()) {
                return Some(e.path());
            }
        }
    }
    None
}
