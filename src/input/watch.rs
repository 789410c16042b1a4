//! Learning from the kernel (inotify) that a watched file was written, created, renamed or
//! deleted, so that a pipeline reads a line as it is written and opens a file as it appears,
//! instead of at its next poll.
//!
//! Owns one inotify descriptor per pipeline (registered with the reactor on the pipeline
//! thread: no thread of its own), the watches on the directories its globs can reach, and one
//! on each file the tailer has open. It never opens, reads or closes a log file and never
//! decides what is read: it only tells the collect loop *wake now* and *scan now* ([`Seen`]);
//! the tailer does the rest as at a poll.
//!
//! Writes are heard on the files themselves, not on their directories: a directory's watch
//! asks only for names that come and go (created, renamed, deleted), so a busy neighbour in
//! `/var/log` (syslog written a hundred times a second beside a quiet `app.log`) queues no
//! event and never wakes the agent. A file's watch is on its inode (added through
//! `/proc/self/fd`, so it is the file the tailer has open, whatever its name says now): it
//! follows the file through a rename, and a generation rotated away and still written to is
//! heard as well. Where a file cannot be watched (the watch limit, no `/proc`), the
//! directories ask for writes again, as they did before, and say so once.
//!
//! What always holds:
//! - polling stays underneath: a directory that is not watched (inotify unavailable, the
//!   watch limit reached, a network or FUSE file system where the kernel hears nothing of
//!   other clients' writes) runs in polling mode, and [`Watch::covers_all`] is false while any
//!   does, so the pipeline polls at `poll_interval` as before; each directory's mode is
//!   logged once when it is first watched or polled;
//! - an event is never needed for correctness, only for speed: a lost one (queue overflow,
//!   reported as such) leads to a full scan, and a scan runs anyway at the safety-net period;
//! - what it holds is bounded: one watch per directory a glob can reach, at most
//!   [`MAX_WATCHES`] per pipeline (the others are polled), one per open file (the tailer
//!   keeps at most `MAX_OPEN_FILES` open), and one 4 KiB read buffer;
//! - a file's watch is taken off when the tailer lets the file go, and the kernel's own
//!   removal (the file deleted and closed) forgets it; neither wakes the collect loop.
//!
//! Which directories: for each glob, the directories its files can be in; for a `*` or `**`
//! component, also the directory above it (a new matching subdirectory is an event there);
//! where a literal directory of the glob does not exist yet, the deepest one that does, so
//! that its creation is heard; and the one holding a symlinked directory of the glob, so
//! that its re-pointing is.

use crate::config::Input;
use crate::input::glob;
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;
use smol::Async;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Most directories one pipeline watches; the rest are polled. Each watch costs the kernel
/// about 1 KiB of unswappable memory and counts against `fs.inotify.max_user_watches`
/// (8192 on older kernels), shared by every program of the user.
pub const MAX_WATCHES: usize = 256;

/// With every directory watched, how often the tailer still looks at its files on its own
/// (unless `poll_interval` is longer): a safety net for what inotify cannot report, such as
/// a file written through another machine's mount of a file system we took for local. A
/// minute keeps an idle agent at one wake-up a minute per pipeline while bounding that delay.
pub const SAFETY_SCAN: Duration = Duration::from_secs(60);

/// Directories whose mode is logged one by one in a single set-up; the rest are counted.
const TELL: usize = 8;

/// File systems whose files change without the local kernel knowing (other clients' writes
/// are never reported): NFS, SMB/CIFS, FUSE, 9p, Ceph, AFS, Coda, NCP, GFS2, OCFS2, Lustre.
const REMOTE_FS: [u32; 13] = [
    0x6969,      // NFS
    0x517B,      // SMB
    0xFF53_4D42, // CIFS
    0xFE53_4D42, // SMB2
    0x6573_5546, // FUSE
    0x0102_1997, // 9p
    0x00C3_6400, // Ceph
    0x5346_414F, // AFS
    0x7375_7245, // Coda
    0x564C,      // NCP
    0x0116_1970, // GFS2
    0x7461_636F, // OCFS2
    0x0BD0_0BD0, // Lustre
];

/// What the events drained by [`Watch::drain`] ask of the collect loop.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// A watched file changed: read now.
    pub wake: bool,
    /// A file appeared, was renamed or deleted (or events were lost): scan now, whatever
    /// the age of the last scan.
    pub scan: bool,
}

/// One pipeline's inotify watches.
pub struct Watch {
    /// `None`: inotify could not be set up; every directory is polled.
    fd: Option<Async<OwnedFd>>,
    /// Watch descriptor → the directory (as the glob walk names it).
    by_wd: HashMap<i32, PathBuf>,
    by_dir: HashMap<PathBuf, i32>,
    /// The open files watched: (device, inode) and the watch descriptor. A list: events
    /// on files are looked up here one by one, and it changes only as files open and close.
    files: Vec<((u64, u64), i32)>,
    /// How many files were open, and a sum over their identities, when `files` was last
    /// brought up to date: [`follow`](Self::follow) costs one pass without a change.
    open_sum: (usize, u64),
    /// A file could not be watched: the directories ask for writes to any of their files
    /// (a neighbour's too), and no file is watched on its own any more.
    dir_writes: bool,
    /// Directories that run in polling mode now.
    polled: HashSet<PathBuf>,
    /// Directories whose mode was logged, with the mode (true: inotify).
    said: HashMap<PathBuf, bool>,
    /// The inputs' globs the watches were set up for.
    globs: Vec<String>,
    /// The watches no longer match the directories (one was deleted or created, events were
    /// lost): set them up again before the next scan.
    stale: bool,
    /// When the watches were last set up.
    synced: Option<Instant>,
    /// For the logs: `local pipeline`, `pipeline "app"`.
    label: String,
    buf: Vec<MaybeUninit<u8>>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("inotify", &self.fd.is_some())
            .field("watched", &self.by_dir.len())
            .field("polled", &self.polled.len())
            .finish()
    }
}

impl Watch {
    /// A watcher with no watches yet (they come with the first [`sync`](Self::sync)). If
    /// inotify cannot be set up, says so once and leaves every directory to polling.
    pub fn new(label: String) -> Watch {
        let fd = match inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)
            .map_err(std::io::Error::from)
            .and_then(Async::new)
        {
            Ok(fd) => Some(fd),
            Err(e) => {
                log::warn!("{label}: inotify unavailable ({e}): every directory is polled, at poll_interval; a file created and renamed away between two polls is not seen");
                None
            }
        };
        Watch {
            fd,
            by_wd: HashMap::new(),
            by_dir: HashMap::new(),
            files: Vec::new(),
            open_sum: (0, 0),
            dir_writes: false,
            polled: HashSet::new(),
            said: HashMap::new(),
            globs: Vec::new(),
            stale: true,
            synced: None,
            label,
            buf: vec![MaybeUninit::uninit(); 4096],
        }
    }

    /// Whether the watches need setting up again before a scan: the inputs changed, a
    /// watched directory went or a new one may have come, or the last set-up is
    /// [`SAFETY_SCAN`] old (a directory polled for lack of watches may have room now).
    pub fn wants_sync(&self, inputs: &[Input], now: Instant) -> bool {
        self.stale
            || self
                .synced
                .is_none_or(|t| now.duration_since(t) >= SAFETY_SCAN)
            || !self
                .globs
                .iter()
                .eq(inputs.iter().flat_map(|i| i.paths.iter()))
    }

    /// Sets up the watches for `inputs`' globs: new directories watched (or polled, logged
    /// once), directories no longer reachable let go.
    pub fn sync(&mut self, inputs: &[Input], now: Instant) {
        self.globs = inputs.iter().flat_map(|i| i.paths.clone()).collect();
        self.stale = false;
        self.synced = Some(now);
        let mut want = Vec::new();
        for g in &self.globs {
            dirs(g, &mut want);
        }
        let mut seen = HashSet::new();
        want.retain(|d| seen.insert(d.clone()));
        for (d, wd) in self.by_dir.clone() {
            if !seen.contains(&d) {
                if let Some(fd) = &self.fd {
                    let _ = inotify::remove_watch(fd.get_ref(), wd);
                }
                self.by_dir.remove(&d);
                self.by_wd.remove(&wd);
            }
        }
        self.polled.retain(|d| seen.contains(d));
        self.said.retain(|d, _| seen.contains(d));
        // Each directory's mode is said once; past a few in one go (a `**` over a big tree,
        // the watch limit reached), the rest are counted in one line.
        let (mut told_watched, mut told_polled) = (0, 0);
        let (mut untold_watched, mut untold_polled) = (0, 0);
        for d in want {
            if self.by_dir.contains_key(&d) {
                continue;
            }
            let mode = self.watch(&d);
            let inotify = mode.is_ok();
            match mode {
                Ok(wd) => {
                    self.polled.remove(&d);
                    self.by_dir.insert(d.clone(), wd);
                    self.by_wd.insert(wd, d.clone());
                }
                Err(why) => {
                    // No inotify at all was said in new().
                    if self.said.get(&d) != Some(&false) && self.fd.is_some() {
                        if told_polled < TELL {
                            told_polled += 1;
                            log::warn!(
                                "{}: {}: polled every poll_interval ({why}); a file created and renamed away between two polls is not seen",
                                self.label,
                                shown(&d)
                            );
                        } else {
                            untold_polled += 1;
                        }
                    }
                    self.polled.insert(d.clone());
                }
            }
            if inotify && self.said.get(&d) != Some(&true) {
                if told_watched < TELL {
                    told_watched += 1;
                    log::info!("{}: {}: watched with inotify", self.label, shown(&d));
                } else {
                    untold_watched += 1;
                }
            }
            self.said.insert(d, inotify);
        }
        if untold_watched > 0 {
            log::info!(
                "{}: and {untold_watched} more directories watched with inotify",
                self.label
            );
        }
        if untold_polled > 0 {
            log::warn!(
                "{}: and {untold_polled} more directories polled every poll_interval",
                self.label
            );
        }
    }

    /// Adds a watch on `dir`, or says why it runs in polling mode.
    fn watch(&self, dir: &Path) -> Result<i32, String> {
        let Some(fd) = &self.fd else {
            return Err("no inotify".into());
        };
        let d = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(s) = rustix::fs::statfs(d) {
            // Compared on its low 32 bits: `f_type` is signed on some targets.
            let t = (i128::from(s.f_type) & 0xFFFF_FFFF) as u32;
            if REMOTE_FS.contains(&t) {
                return Err(format!("a network or FUSE file system (type {t:#x}): inotify hears nothing of other clients' writes"));
            }
        }
        if self.by_dir.len() >= MAX_WATCHES {
            return Err(format!("{MAX_WATCHES} directories watched already"));
        }
        inotify::add_watch(fd.get_ref(), d, self.dir_mask()).map_err(refused)
    }

    /// What a directory's watch asks for: names that come and go, and writes to its files
    /// only where files cannot be watched on their own.
    fn dir_mask(&self) -> WatchFlags {
        let mut mask = WatchFlags::CREATE
            | WatchFlags::MOVED_TO
            | WatchFlags::MOVED_FROM
            | WatchFlags::DELETE
            | WatchFlags::DELETE_SELF
            | WatchFlags::MOVE_SELF
            | WatchFlags::ONLYDIR;
        if self.dir_writes {
            mask |= WatchFlags::MODIFY | WatchFlags::CLOSE_WRITE;
        }
        mask
    }

    /// Watches each file in `open` (the tailer's open files: identity and descriptor) for
    /// writes, and lets go of the watches of files no longer open. Returns true when it
    /// added a watch: a write between the tailer's last read of that file and now was not
    /// heard, so the caller reads once more. Called at every look: without a change it is
    /// one pass over `open`, with nothing allocated.
    pub fn follow<'a, I>(&mut self, open: I) -> bool
    where
        I: Iterator<Item = ((u64, u64), BorrowedFd<'a>)> + Clone,
    {
        if self.fd.is_none() || self.dir_writes {
            return false;
        }
        let sum = open.clone().fold((0usize, 0u64), |(n, sum), (key, _)| {
            (n + 1, sum.wrapping_add(mix(key)))
        });
        if sum == self.open_sum {
            return false;
        }
        let Some(fd) = &self.fd else { return false };
        // Files let go first: their watches come off.
        self.files.retain(|(key, wd)| {
            let open = open.clone().any(|(k, _)| k == *key);
            if !open {
                // Already gone in the kernel if the file was deleted and closed: no matter.
                let _ = inotify::remove_watch(fd.get_ref(), *wd);
            }
            open
        });
        let mut added = false;
        for (key, file) in open {
            if self.files.iter().any(|(k, _)| *k == key) {
                continue;
            }
            // Through the descriptor: the inode the tailer reads, not whatever the name
            // points to now (a rotation may have put another file there).
            let path = format!("/proc/self/fd/{}", file.as_raw_fd());
            match inotify::add_watch(fd.get_ref(), path.as_str(), WatchFlags::MODIFY) {
                Ok(wd) => {
                    self.files.push((key, wd));
                    added = true;
                }
                Err(e) => {
                    self.hear_writes_on_directories(e);
                    return true;
                }
            }
        }
        self.open_sum = sum;
        added
    }

    /// A file could not be watched: every directory asks for writes to its files again
    /// (which wakes the agent for a neighbour's writes too), and the files' own watches go.
    fn hear_writes_on_directories(&mut self, e: Errno) {
        let Some(fd) = &self.fd else { return };
        log::warn!(
            "{}: an open file cannot be watched ({}): writes to any file of its directories wake the agent",
            self.label,
            refused(e)
        );
        for (_, wd) in self.files.drain(..) {
            let _ = inotify::remove_watch(fd.get_ref(), wd);
        }
        self.dir_writes = true;
        let mask = self.dir_mask();
        for d in self.by_dir.keys() {
            let p = if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            };
            // The same directory: the kernel replaces the mask of its watch.
            if inotify::add_watch(fd.get_ref(), p, mask).is_err() {
                // Gone meanwhile: the next set-up finds out.
                self.stale = true;
            }
        }
    }

    /// Whether every directory the globs reach is watched: then the pipeline need not poll,
    /// only look at [`SAFETY_SCAN`] intervals.
    pub fn covers_all(&self) -> bool {
        self.fd.is_some() && self.polled.is_empty() && !self.stale && self.synced.is_some()
    }

    /// Resolves when events are waiting (never without inotify). Cancel-safe.
    pub async fn ready(&self) {
        match &self.fd {
            Some(fd) => {
                let _ = fd.readable().await;
            }
            None => std::future::pending().await,
        }
    }

    /// Takes every event the kernel queued, without blocking. `draining`: the tailer follows
    /// files by descriptor that no glob names any more (rotated away), so a write to any
    /// file of a watched directory may be theirs.
    pub fn drain(&mut self, draining: bool) -> Seen {
        let mut seen = Seen::default();
        let Some(fd) = &self.fd else { return seen };
        let mut reader = inotify::Reader::new(fd.get_ref(), &mut self.buf);
        let mut lost = Vec::new();
        loop {
            let ev = match reader.next() {
                Ok(ev) => ev,
                Err(Errno::AGAIN) | Err(Errno::INTR) => break,
                Err(e) => {
                    // Not expected; polling still covers everything.
                    log::debug!("{}: inotify read: {e}", self.label);
                    seen.scan = true;
                    seen.wake = true;
                    break;
                }
            };
            let flags = ev.events();
            if let Some(i) = self.files.iter().position(|(_, wd)| *wd == ev.wd()) {
                // An open file's own watch: a write (or a truncation) is news; its removal
                // by the kernel (the file deleted and closed) is only forgotten.
                if flags.contains(ReadFlags::IGNORED) {
                    self.files.swap_remove(i);
                    // The tailer may hold another file on the same inode number by now:
                    // the next follow looks at every open file again.
                    self.open_sum = (usize::MAX, 0);
                } else if flags.contains(ReadFlags::MODIFY) {
                    seen.wake = true;
                }
                continue;
            }
            if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                log::debug!("{}: inotify queue overflowed: full scan", self.label);
                self.stale = true;
                seen.scan = true;
                seen.wake = true;
                continue;
            }
            if flags.intersects(ReadFlags::IGNORED | ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF)
                && self.by_wd.contains_key(&ev.wd())
            {
                // The directory itself went (or moved): its watch is gone; the glob's
                // parent is watched instead at the next set-up. A moved directory keeps its
                // watch in the kernel (it follows the inode): that one is taken off.
                if flags.contains(ReadFlags::MOVE_SELF) {
                    let _ = inotify::remove_watch(fd.get_ref(), ev.wd());
                }
                lost.push(ev.wd());
                self.stale = true;
                seen.scan = true;
                seen.wake = true;
                continue;
            }
            let Some(dir) = self.by_wd.get(&ev.wd()) else {
                continue;
            };
            let Some(name) = ev.file_name() else { continue };
            let path = dir.join(OsStr::from_bytes(name.to_bytes()));
            let moved = flags.intersects(
                ReadFlags::CREATE | ReadFlags::MOVED_TO | ReadFlags::MOVED_FROM | ReadFlags::DELETE,
            );
            if moved
                && (flags.contains(ReadFlags::ISDIR)
                    || self.globs.iter().any(|g| leads_to(g, &path)))
            {
                // A directory (or a symlink a glob goes through) came or went: a glob may
                // reach other places now.
                self.stale = true;
                seen.scan = true;
                seen.wake = true;
                continue;
            }
            if self.globs.iter().any(|g| glob::matches(g, &path)) {
                seen.wake = true;
                seen.scan |= moved;
            } else if draining && flags.intersects(ReadFlags::MODIFY | ReadFlags::CLOSE_WRITE) {
                seen.wake = true;
            }
        }
        for wd in lost {
            if let Some(d) = self.by_wd.remove(&wd) {
                self.by_dir.remove(&d);
            }
        }
        seen
    }
}

/// Why the kernel refused a watch, for the log.
fn refused(e: Errno) -> String {
    match e {
        Errno::NOSPC => {
            format!("the inotify watch limit is reached ({e}; raise fs.inotify.max_user_watches)")
        }
        e => format!("inotify: {e}"),
    }
}

/// A file's identity spread over 64 bits, for the sum [`Watch::follow`] compares.
fn mix((dev, ino): (u64, u64)) -> u64 {
    (dev.rotate_left(32) ^ ino).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Whether `path` is a directory a glob goes through (a proper prefix of it), such as the
/// symlink `/var/log/current` of `/var/log/current/*.log`, replaced when it is re-pointed.
fn leads_to(pattern: &str, path: &Path) -> bool {
    let mut prefix = String::new();
    if pattern.starts_with('/') {
        prefix.push('/');
    }
    let comps: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        prefix.push_str(c);
        // With a `/` in it, a pattern matches whole paths (a bare name would match any
        // file of that name).
        if prefix.contains('/') && glob::matches(&prefix, path) {
            return true;
        }
    }
    false
}

/// `""` is the current directory.
fn shown(d: &Path) -> String {
    if d.as_os_str().is_empty() {
        ".".into()
    } else {
        d.display().to_string()
    }
}

/// Adds the directories to watch for `pattern` (module doc), as the glob walk names them.
pub fn dirs(pattern: &str, out: &mut Vec<PathBuf>) {
    let root = if pattern.starts_with('/') {
        PathBuf::from("/")
    } else {
        PathBuf::new()
    };
    let comps: Vec<&str> = pattern
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let Some((_, dir_part)) = comps.split_last() else {
        return;
    };
    walk(&root, dir_part, 0, out);
}

fn is_dir(d: &Path) -> bool {
    let d = if d.as_os_str().is_empty() {
        Path::new(".")
    } else {
        d
    };
    d.is_dir()
}

/// Subdirectories of `d`, by name, in no order; none when it cannot be listed.
fn subdirs(d: &Path) -> Vec<String> {
    let l = if d.as_os_str().is_empty() {
        Path::new(".")
    } else {
        d
    };
    std::fs::read_dir(l)
        .into_iter()
        .flatten()
        .flatten()
        // Not following symlinks, as the glob walk under `**`.
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect()
}

fn walk(dir: &Path, rest: &[&str], depth: usize, out: &mut Vec<PathBuf>) {
    if out.len() > MAX_WATCHES * 4 {
        // Far past what is watched anyway: the rest is polled.
        return;
    }
    let Some((first, more)) = rest.split_first() else {
        // The files' own directory.
        out.push(dir.to_path_buf());
        return;
    };
    if *first == "**" {
        // Zero directories, or one more level of any (not hidden), as the glob walk.
        out.push(dir.to_path_buf());
        walk(dir, more, depth, out);
        if depth >= 16 {
            return;
        }
        for n in subdirs(dir) {
            if !n.starts_with('.') {
                walk(&dir.join(n), rest, depth + 1, out);
            }
        }
    } else if first.contains(['*', '?']) {
        out.push(dir.to_path_buf());
        for n in subdirs(dir) {
            if n.starts_with('.') && !first.starts_with('.') {
                continue;
            }
            if glob::matches(first, Path::new(&n)) {
                walk(&dir.join(n), more, depth, out);
            }
        }
    } else {
        let next = dir.join(first);
        if is_dir(&next) {
            if next.is_symlink() {
                // Re-pointing it is an event in the directory that holds it.
                out.push(dir.to_path_buf());
            }
            walk(&next, more, depth, out);
        } else if is_dir(dir) {
            // Not there yet: its creation is an event here.
            out.push(dir.to_path_buf());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tailbeat-watch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn dirs_of(pattern: &str) -> Vec<PathBuf> {
        let mut v = Vec::new();
        dirs(pattern, &mut v);
        v.sort();
        v.dedup();
        v
    }

    #[test]
    fn directories_a_glob_can_reach_and_the_deepest_existing_one() {
        let d = scratch("dirs");
        for s in ["a/x", "a/y", "b", ".h"] {
            std::fs::create_dir_all(d.join(s)).unwrap();
        }
        let p = |s: &str| format!("{}/{s}", d.display());
        assert_eq!(dirs_of(&p("a/x/app.log")), vec![d.join("a/x")]);
        // Missing: the deepest directory that exists hears its creation.
        assert_eq!(dirs_of(&p("a/z/q/app.log")), vec![d.join("a")]);
        // A wildcard directory: its parent (new subdirectories) and each match.
        assert_eq!(
            dirs_of(&p("a/*/app.log")),
            vec![d.join("a"), d.join("a/x"), d.join("a/y")]
        );
        // A symlinked directory: the one holding the link hears it re-pointed.
        std::os::unix::fs::symlink(d.join("a/x"), d.join("cur")).unwrap();
        assert_eq!(dirs_of(&p("cur/app.log")), vec![d.clone(), d.join("cur")]);
        assert!(leads_to(&p("cur/app.log"), &d.join("cur")));
        assert!(!leads_to(&p("cur/app.log"), &d.join("other")));
        std::fs::remove_file(d.join("cur")).unwrap();
        // `**`: every level, hidden directories left out as by the glob walk.
        assert_eq!(
            dirs_of(&p("**/*.log")),
            vec![
                d.clone(),
                d.join("a"),
                d.join("a/x"),
                d.join("a/y"),
                d.join("b")
            ]
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Drains until `want` holds or two seconds pass (events are delivered asynchronously).
    fn until(w: &mut Watch, want: impl Fn(Seen) -> bool) -> Seen {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut all = Seen::default();
        while Instant::now() < deadline {
            let s = w.drain(false);
            all.wake |= s.wake;
            all.scan |= s.scan;
            if want(all) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        all
    }

    fn input(glob: &str) -> Input {
        let t = format!("data_dir = \"/tmp\"\n[[input]]\nname = \"t\"\npaths = [\"{glob}\"]\n[sink]\ntype = \"stdout\"\n");
        crate::config::Config::parse(&t).unwrap().inputs.remove(0)
    }

    #[test]
    fn a_new_directory_is_watched_and_past_the_limit_directories_are_polled() {
        let d = scratch("many");
        let inputs = vec![input(&format!("{}/*/app.log", d.display()))];
        let mut w = Watch::new("test".into());
        w.sync(&inputs, Instant::now());
        assert!(w.covers_all(), "{w:?}");
        // A directory the glob reaches appears: scan, and watch it.
        std::fs::create_dir(d.join("new")).unwrap();
        let s = until(&mut w, |s| s.scan);
        assert!(s.scan && w.wants_sync(&inputs, Instant::now()), "{s:?}");
        w.sync(&inputs, Instant::now());
        assert!(w.by_dir.contains_key(&d.join("new")) && w.covers_all());
        // More than a pipeline may watch: the rest are polled, and so is the pipeline.
        for i in 0..MAX_WATCHES {
            std::fs::create_dir(d.join(format!("d{i}"))).unwrap();
        }
        w.sync(&inputs, Instant::now());
        assert_eq!(w.by_dir.len(), MAX_WATCHES);
        // `d`, `new` and the others: MAX_WATCHES + 2 directories.
        assert_eq!(w.polled.len(), 2);
        assert!(!w.covers_all());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_watched_directory_renamed_away_is_let_go_and_its_name_watched_again() {
        let d = scratch("moved");
        std::fs::create_dir(d.join("logs")).unwrap();
        let inputs = vec![input(&format!("{}/logs/*.log", d.display()))];
        let mut w = Watch::new("test".into());
        w.sync(&inputs, Instant::now());
        assert!(w.by_dir.contains_key(&d.join("logs")));
        std::fs::rename(d.join("logs"), d.join("old")).unwrap();
        let s = until(&mut w, |s| s.scan);
        assert!(s.scan && !w.covers_all(), "{s:?} {w:?}");
        assert!(w.by_dir.is_empty());
        // Taken off in the kernel too (it would follow the directory to its new name).
        assert_eq!(kernel_watches(&w), 0);
        // Writes in the moved directory are not the glob's any more: nothing.
        std::fs::write(d.join("old/a.log"), b"x\n").unwrap();
        // Set up again: the glob's directory is missing, so its parent hears it come back.
        w.sync(&inputs, Instant::now());
        assert_eq!(w.by_dir.keys().collect::<Vec<_>>(), vec![&d]);
        assert_eq!(until(&mut w, |_| false), Seen::default());
        std::fs::create_dir(d.join("logs")).unwrap();
        assert!(until(&mut w, |s| s.scan).scan);
        w.sync(&inputs, Instant::now());
        assert_eq!(w.by_dir.keys().collect::<Vec<_>>(), vec![&d.join("logs")]);
        assert_eq!(kernel_watches(&w), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn writes_are_heard_on_the_open_files_not_on_their_directory() {
        use std::io::Write;
        use std::os::fd::AsFd;
        let d = scratch("files");
        let inputs = vec![input(&format!("{}/app.log", d.display()))];
        let mut w = Watch::new("test".into());
        w.sync(&inputs, Instant::now());
        let append = |name: &str| {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(d.join(name))
                .unwrap();
            f.write_all(b"x\n").unwrap();
        };
        append("app.log");
        append("syslog");
        let f = std::fs::File::open(d.join("app.log")).unwrap();
        let open = || std::iter::once(((7, 8), f.as_fd()));
        // The kernel queues an event in the write itself: what drain finds is all there is.
        assert!(w.drain(false).scan, "app.log created");
        assert!(w.follow(open()), "a watch added: read once more");
        assert!(!w.follow(open()), "nothing new");
        assert_eq!(kernel_watches(&w), 2);
        // A neighbour's write queues nothing; one to the open file wakes, renamed or not.
        append("syslog");
        assert_eq!(w.drain(false), Seen::default());
        append("app.log");
        assert_eq!(
            w.drain(false),
            Seen {
                wake: true,
                scan: false
            }
        );
        std::fs::rename(d.join("app.log"), d.join("app.log.1")).unwrap();
        assert!(w.drain(false).scan, "renamed away");
        append("app.log.1");
        assert_eq!(
            w.drain(false),
            Seen {
                wake: true,
                scan: false
            }
        );
        // Let go: its watch comes off, and that wakes nothing.
        assert!(!w.follow(std::iter::empty()));
        assert_eq!(kernel_watches(&w), 1);
        append("app.log.1");
        assert_eq!(w.drain(false), Seen::default());
        // A file that cannot be watched on its own: the directory asks for writes again.
        assert!(w.follow(open()));
        w.hear_writes_on_directories(Errno::NOSPC);
        assert_eq!(kernel_watches(&w), 1);
        assert!(!w.follow(open()), "no file watched on its own any more");
        append("app.log");
        assert_eq!(
            w.drain(false),
            Seen {
                wake: true,
                scan: true
            }
        );
        append("app.log");
        assert_eq!(
            w.drain(false),
            Seen {
                wake: true,
                scan: false
            }
        );
        // A neighbour's write is read and found to be someone else's.
        append("syslog");
        assert_eq!(w.drain(false), Seen::default());
        assert!(w.covers_all());
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// The watches the kernel holds for `w`'s descriptor.
    fn kernel_watches(w: &Watch) -> usize {
        use std::os::fd::AsRawFd;
        let fd = w.fd.as_ref().unwrap().get_ref().as_raw_fd();
        std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("inotify wd:"))
            .count()
    }

    #[test]
    fn writes_wake_and_names_coming_and_going_ask_for_a_scan() {
        let d = scratch("events");
        let f = d.join("app.log");
        let inputs = vec![input(&format!("{}/app.log", d.display()))];
        let mut w = Watch::new("test".into());
        w.sync(&inputs, Instant::now());
        assert!(w.covers_all(), "{w:?}");
        assert_eq!(w.drain(false), Seen::default());
        std::fs::write(&f, b"a\n").unwrap();
        assert_eq!(
            until(&mut w, |s| s.scan),
            Seen {
                wake: true,
                scan: true
            }
        );
        // A write to the file, open in the tailer: read now, no scan needed.
        let open = std::fs::File::open(&f).unwrap();
        use std::os::fd::AsFd;
        assert!(w.follow(std::iter::once(((1, 2), open.as_fd()))));
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&f)
            .unwrap()
            .write_all(b"b\n")
            .unwrap();
        assert_eq!(
            until(&mut w, |s| s.wake),
            Seen {
                wake: true,
                scan: false
            }
        );
        // Renamed away: a scan, so the tailer sees the rotation now.
        std::fs::rename(&f, d.join("app.log.1")).unwrap();
        assert_eq!(
            until(&mut w, |s| s.scan),
            Seen {
                wake: true,
                scan: true
            }
        );
        // A file no glob names: nothing.
        std::fs::write(d.join("other.txt"), b"x\n").unwrap();
        assert_eq!(until(&mut w, |_| false), Seen::default());
        // The rotated file, still open in the tailer: heard on its own watch.
        std::fs::write(d.join("app.log.1"), b"y\n").unwrap();
        assert_eq!(
            w.drain(false),
            Seen {
                wake: true,
                scan: false
            }
        );
        // The directory itself goes: the watches are set up again, and a scan. (The kernel
        // tells of a directory's removal once no open file inside holds it.)
        drop(open);
        std::fs::remove_dir_all(&d).unwrap();
        let s = until(&mut w, |s| s.scan);
        assert!(s.scan && !w.covers_all(), "{s:?} {w:?}");
        assert!(w.wants_sync(&inputs, Instant::now()));
    }
}
