//! Files → batch → spool: the task that reads, and what it does when the spool is full or
//! the disk under it is.
//!
//! What always holds: reading pauses while a frame cannot go to the spool (spool full under
//! `block`, disk full, a write refused), and the task then sleeps between looks, so the
//! deliver task and the signal handler run; the frame is kept and appended before anything
//! new, and no file position moves past a frame until it is in the spool. The spool never
//! takes the last [`DISK_RESERVE`] bytes of `data_dir`'s file system.
//!
//! When to look: the files are scanned at most every `min(poll_interval, 1 s)` and read
//! after each sleep, which grows from [`MIN_POLL`] to `poll_interval` while they stay quiet;
//! inotify ([`Watch`]) cuts a sleep short when a watched file is written, and forces a scan
//! at once when one is created, renamed or deleted, or when a write it heard left an open
//! file shorter than its position or with another head (a truncation in place). Only when
//! every directory is watched, a scan has seen the files since the last event, and nothing
//! waits on the clock (open batch, frames not yet acknowledged, a checkpoint to write, the
//! tailer's own waits: see `Tailer::settled`) does the task sleep longer, up to
//! `max(poll_interval, SAFETY_SCAN)`: then an idle pipeline wakes once a minute, and writes
//! nothing.
//!
//! Its life comes as messages ([`ToCollect`] on the pipeline's channel, kept in [`Inbox`]):
//! taken out of the config (the batch goes to the spool, reading stops), put back, stop
//! (the agent stops, or the drained pipeline is Stopped). The task reads no flag of the
//! agent's or the pipe's to learn it; it writes the pipe's [`Life`](super::pipe::Life) for
//! the deliver task (`collect_ended`, `batch_put_away`).

use super::pipe::{Pipe, PipeRef, ToCollect};
use super::{log_stats, now_ms, Built, Shared, State, CHECKPOINT_EVERY, MIN_POLL};
use crate::config::OnFull;
use crate::frame::BatchBuilder;
use crate::input::watch::{Seen, Watch, SAFETY_SCAN};
use crate::input::Outcome;
use crate::spool::SpoolError;
use crate::stats::Counters;
use smol::channel::Receiver;
use smol::future::FutureExt;
use smol::Timer;
use std::path::Path;
use std::time::{Duration, Instant};

/// The collect task's view of its commands: what it was told, in order, newest last.
struct Inbox {
    commands: Receiver<ToCollect>,
    /// Stop (or the channel closed): put the batch away and end.
    stop: bool,
    /// Out of the config (Drain, and no Run since).
    removed: bool,
    /// A command came that the task has not woken for yet: the next sleep ends at once.
    wake: bool,
}

impl Inbox {
    fn new(commands: Receiver<ToCollect>) -> Inbox {
        Inbox {
            commands,
            stop: false,
            removed: false,
            wake: false,
        }
    }

    fn take(&mut self, c: ToCollect) {
        match c {
            ToCollect::Wake => {}
            ToCollect::Drain => self.removed = true,
            ToCollect::Run => self.removed = false,
            ToCollect::Stop => self.stop = true,
        }
        self.wake = true;
    }

    /// Everything waiting on the channel, without waiting.
    fn drain(&mut self) {
        loop {
            match self.commands.try_recv() {
                Ok(c) => self.take(c),
                Err(smol::channel::TryRecvError::Empty) => return,
                // The pipe is gone (it holds the sending end): nothing more will come.
                Err(smol::channel::TryRecvError::Closed) => {
                    self.stop = true;
                    return;
                }
            }
        }
    }

    /// Waits `d`, or less when a command comes (or came since the last wake-up); takes
    /// every command waiting.
    async fn sleep(&mut self, d: Duration) {
        if !std::mem::take(&mut self.wake) {
            let got = async { Some(self.commands.recv().await) }
                .or(async {
                    Timer::after(d).await;
                    None
                })
                .await;
            match got {
                Some(Ok(c)) => self.take(c),
                Some(Err(_)) => self.stop = true,
                None => {}
            }
        }
        self.drain();
        self.wake = false;
    }

    /// Waits until told to stop; takes every other command meanwhile (a change of life does
    /// not end a wait for room: only a stop does).
    async fn stopped(&mut self) {
        while !self.stop {
            match self.commands.recv().await {
                Ok(c) => self.take(c),
                Err(_) => self.stop = true,
            }
        }
    }
}

/// Files → batch → spool, for one pipeline.
pub(super) async fn collect(st: Shared, pipe: PipeRef, commands: Receiver<ToCollect>) {
    let mut inbox = Inbox::new(commands);
    let mut sleep = MIN_POLL;
    // Progress is logged from the local pipeline's loop rather than from a timer of its own:
    // an idle agent then has one periodic wake-up per pipeline, the poll.
    let mut last_stats = (Instant::now(), u64::MAX, u64::MAX);
    let local = pipe.with(|p| p.name.is_empty());
    let mut batch_age = Linger::default();
    let mut disk = DiskLog::default();
    let mut watch = Watch::new(pipe.with(|p| p.label()));
    // A watched file changed since the last scan: no long sleep until a scan has seen it
    // (a truncation, say, is noticed by a scan, and its event may have come just after one).
    let mut unscanned = false;
    // Events drained while sleeping, for the next look.
    let mut carried = Seen::default();
    loop {
        // Running again: whatever it waits for next, deliver must not wait for it.
        pipe.with_mut(|p| p.reading_on = false);
        inbox.drain();
        if inbox.stop {
            break;
        }
        if inbox.removed {
            if park(&st, &pipe, &mut inbox, &mut disk, &mut watch).await {
                break;
            }
            pipe.with_mut(|p| p.last_scan = None);
            continue;
        }
        let now = Instant::now();
        let settled = pipe.with(|p| p.tailer.settled(Instant::now()));
        let mut seen = watch.drain(!settled);
        let before = std::mem::take(&mut carried);
        seen.wake |= before.wake;
        seen.scan |= before.scan;
        unscanned |= seen.wake;
        let (outcome, linger_left, poll, stats, unheard) = st.with_mut(|s| {
            pipe.with_mut(|p| {
                let poll = s.cfg.poll_interval.0;
                let lost = (s.c.vanished_lost_bytes, s.c.truncated_lost_bytes);
                let scanned = seen.scan
                    || p.last_scan
                        .is_none_or(|t| now.duration_since(t) >= poll.min(Duration::from_secs(1)));
                if scanned {
                    scan(&mut watch, p, now, &mut s.c);
                    unscanned = false;
                }
                let read_before = s.c.bytes_read;
                let mut outcome = if p.pending.is_some() {
                    Outcome::BatchFull
                } else {
                    p.tailer.read(&mut p.batch, now, now_ms(), &mut s.c)
                };
                // A truncation in place is heard as a write with nothing new to read (so is
                // a rewrite to just the length read). Left to the next due scan, a line
                // written after it would wait for the idle sleep, up to `poll_interval`, and
                // be lost if the file were rewritten again meanwhile: scanned now instead,
                // once per truncation (the scan starts the file over).
                if !scanned
                    && seen.wake
                    && outcome == Outcome::Idle
                    && s.c.bytes_read == read_before
                    && p.tailer.rewritten()
                {
                    scan(&mut watch, p, now, &mut s.c);
                    unscanned = false;
                    outcome = p.tailer.read(&mut p.batch, now, now_ms(), &mut s.c);
                }
                // Files opened by this look are watched from now on; what was written to
                // them between their read and their watch is read at once, next look.
                let unheard = watch.follow(p.tailer.open_fds());
                if (s.c.vanished_lost_bytes, s.c.truncated_lost_bytes) != lost {
                    p.loss_unsaved = true;
                }
                // The look that found the batch's first line is its read time.
                if !p.batch.is_empty() {
                    p.track.reading(now);
                }
                p.track.set_rate(s.cfg.alerts.samples_per_sec);
                let linger_left = batch_age.left(&p.batch, now, p.cfg.batch.linger.0);
                if p.last_checkpoint.elapsed() >= CHECKPOINT_EVERY && p.changed {
                    p.checkpoint();
                }
                checkpoint_loss(p);
                let mut stats = false;
                if local && now.duration_since(last_stats.0) >= s.cfg.stats_interval.0 {
                    let progress = (s.c.bytes_read, s.c.frames_acked);
                    stats = progress != (last_stats.1, last_stats.2);
                    last_stats = (now, progress.0, progress.1);
                }
                (outcome, linger_left, poll, stats, unheard)
            })
        });
        // Not under the pipe's borrow: the figures add up every pipeline.
        st.with_mut(|s| super::handle::look_due(s, now));
        if stats {
            // Not under the pipe's borrow: the figures add up every pipeline.
            st.with(log_stats);
        }
        let close = outcome == Outcome::BatchFull
            || pipe.with(|p| p.batch.is_full())
            || linger_left == Some(Duration::ZERO);
        if close {
            if !close_frame(&st, &pipe, &mut inbox, &mut disk, &mut watch).await {
                continue;
            }
            batch_age.closed();
        }
        if unheard && outcome == Outcome::Idle {
            carried.wake = true;
            continue;
        }
        match outcome {
            Outcome::BatchFull | Outcome::More => {
                sleep = MIN_POLL;
                pipe.with_mut(|p| p.reading_on = true);
                smol::future::yield_now().await;
            }
            Outcome::Idle if st.with(|s| s.once) => {
                let label = pipe.with(|p| p.label());
                log::info!("--once: {label} read every file to its end");
                break;
            }
            Outcome::Idle => {
                let mut d = sleep;
                let settled = pipe.with(|p| {
                    let quiet = watch.covers_all()
                        && !unscanned
                        && p.tailer.settled(Instant::now())
                        && !p.changed
                        && p.pending.is_none()
                        && p.batch.is_empty()
                        && p.spool.backlog() == 0;
                    if quiet {
                        d = poll.max(SAFETY_SCAN);
                    }
                    p.tailer.settled(Instant::now())
                });
                if let Some(l) = linger_left.filter(|l| !l.is_zero()) {
                    d = d.min(l);
                }
                // Events about files no glob names (a busy neighbour in /var/log) are
                // drained here and slept through: only ours end the sleep.
                let until = Instant::now() + d;
                loop {
                    let left = until.saturating_duration_since(Instant::now());
                    let heard = async {
                        inbox.sleep(left).await;
                        false
                    }
                    .or(async {
                        watch.ready().await;
                        true
                    })
                    .await;
                    if !heard {
                        break;
                    }
                    carried = watch.drain(!settled);
                    if carried.wake || carried.scan {
                        break;
                    }
                }
                sleep = (sleep * 2).min(poll);
            }
        }
    }
    // Stopping: what is read goes to the spool, if it fits.
    st.with_mut(|s| {
        pipe.with_mut(|p| {
            put_away(p, &mut s.c);
            p.life.collect_ended();
            p.spooled.notify();
        });
        s.starter.notify();
    });
}

/// A removed pipeline: its open batch goes to the spool, then it waits to be put back in
/// the config (false) or for its tasks to end (true).
async fn park(
    st: &Shared,
    pipe: &PipeRef,
    inbox: &mut Inbox,
    disk: &mut DiskLog,
    watch: &mut Watch,
) -> bool {
    // The batch first, waiting for room (spool or disk) like any frame: what was read is
    // delivered. Only a stop ends that wait.
    if !close_frame(st, pipe, inbox, disk, watch).await {
        return true;
    }
    st.with_mut(|s| {
        pipe.with_mut(|p| {
            put_away(p, &mut s.c);
            p.checkpoint();
            p.life.batch_put_away();
            p.spooled.notify();
        })
    });
    loop {
        inbox.drain();
        if inbox.stop {
            return true;
        }
        if !inbox.removed {
            return false;
        }
        inbox.sleep(Duration::from_secs(60)).await;
    }
}

/// What is read but not in the spool goes there, if it fits (shutdown, removal). A frame the
/// disk refuses here is left out: its lines were not committed, so they are read again at
/// the next start.
fn put_away(p: &mut Pipe, c: &mut Counters) {
    let mut written = true;
    if let Some(b) = p.pending.take() {
        written = append(p, c, b).map_err(|e| put_away_failed(p, e)).is_ok();
    }
    if written && !p.batch.is_empty() && p.spool.fits(p.batch.encoded_len()) {
        let b = finish(p);
        let _ = append(p, c, b).map_err(|e| put_away_failed(p, e));
    }
    let _ = p.spool.sync();
}

fn put_away_failed(p: &Pipe, e: SpoolError) {
    log::error!(
        "{}: {e}; the open batch is not in the spool, its lines are read again at the next start",
        p.label()
    );
}

/// Room to leave free on `data_dir`'s file system: the spool never fills the disk to the
/// last byte, because freeing space needs a write first (the checkpoint that lets acked
/// segments go), as do `fleet.state` and dead letters. A checkpoint of 512 files is
/// well under 64 KiB; it is written beside the old one, so twice that, and some margin.
const DISK_RESERVE: u64 = 256 << 10;
/// While the disk is full, look again at least this often (sooner when the sink acks).
const DISK_RETRY_MAX: Duration = Duration::from_secs(5);
/// While the disk stays full, say so again this often.
const DISK_LOG_EVERY: Duration = Duration::from_secs(60);

/// Bytes free for the agent on the file system of `dir`, `None` if it cannot be told.
fn disk_free(dir: &Path) -> Option<u64> {
    let v = rustix::fs::statvfs(dir).ok()?;
    Some(v.f_bavail.saturating_mul(v.f_frsize))
}

/// Whether a frame of `len` bytes may go to the spool now: it must leave [`DISK_RESERVE`]
/// free. Returns the bytes free when it may not.
fn disk_room(free: Option<u64>, len: usize) -> Result<(), u64> {
    match free {
        Some(f) if f < len as u64 + DISK_RESERVE => Err(f),
        _ => Ok(()),
    }
}

/// A pause for lack of disk (or a spool write that failed): when it began, when it was
/// last logged (`None`: not at all, another pause was logged a moment ago), how long to
/// wait before looking again.
struct DiskWait {
    since: Instant,
    logged: Option<Instant>,
    delay: Duration,
}

/// What the collect task remembers between pauses for lack of disk, so that a spool
/// hovering at the reserve (each acked segment lets a few frames in, then it pauses again)
/// is logged once a minute, not once a frame.
#[derive(Debug, Default)]
struct DiskLog {
    /// When a pause was last logged.
    last: Option<Instant>,
    /// Pauses since then that were not logged.
    unsaid: u64,
}

/// What one look of [`close_frame`] at the spool ([`try_spool`], inside the borrows of the
/// state and the pipe) says to do next, outside them.
enum Turn {
    /// Finished: the frame is in the spool.
    Done,
    /// Look again at once (a checkpoint just freed room).
    Again,
    /// No room yet: wait for this wake-up (an ack) or this long.
    Wait(super::Notify, Duration),
}

/// Moves the open batch (or a frame the disk refused earlier) into the spool, waiting or
/// dropping per `on_full`, and waiting while the disk is full or refuses the write: reading
/// is paused meanwhile, the deliver task keeps sending (which frees the disk) and signals
/// are handled, as the task sleeps between looks. Returns false only when told to stop.
async fn close_frame(
    st: &Shared,
    pipe: &PipeRef,
    inbox: &mut Inbox,
    log: &mut DiskLog,
    watch: &mut Watch,
) -> bool {
    let mut waited = false;
    let mut disk: Option<DiskWait> = None;
    // The progress line goes on while reading waits (it says `disk full now`): acks and
    // losses still change, and an operator looks there first.
    let local = pipe.with(|p| p.name.is_empty());
    let mut last_stats = (Instant::now(), None);
    let done = loop {
        inbox.drain();
        if inbox.stop {
            break false;
        }
        let turn = st.with_mut(|s| pipe.with_mut(|p| try_spool(s, p, &mut disk, log, &mut waited)));
        let (wake, delay) = match turn {
            Turn::Done => break true,
            Turn::Again => continue,
            Turn::Wait(wake, delay) => (wake, delay),
        };
        // Acks ring `space`: room on disk comes back first through the sink. Reading is
        // paused, looking is not: the wait is cut in slices of the scan interval, and files
        // that appear, are rotated or truncated meanwhile are opened and followed by identity
        // (a generation renamed away while reading waits is still read when there is room,
        // whatever the glob). The next try at the spool still waits the whole `delay`.
        let until = Instant::now() + delay;
        loop {
            let every = st.with(|s| s.cfg.poll_interval.0.min(Duration::from_secs(1)));
            let now = Instant::now();
            let slice = until.saturating_duration_since(now).min(every);
            // An inotify event ends the slice too: a file created or renamed meanwhile is
            // opened now (a generation renamed away is then followed by identity), not at
            // the next slice; it does not count as room.
            let notified = async {
                wake.wait_for(slice).await;
                true
            }
            .or(async {
                watch.ready().await;
                false
            })
            .or(async {
                inbox.stopped().await;
                true
            })
            .await;
            let woke_early = notified && now.elapsed() < slice;
            let seen = watch.drain(true);
            if inbox.stop {
                break;
            }
            let done = st.with_mut(|s| {
                pipe.with_mut(|p| {
                    let now = Instant::now();
                    if seen.scan || p.last_scan.is_none_or(|t| now.duration_since(t) >= every) {
                        scan(watch, p, now, &mut s.c);
                    }
                    woke_early || now >= until
                })
            });
            // Once, then when something moved (acks, reads): a pipeline blocked for hours
            // writes no line a minute to what may be the full disk.
            let (interval, progress) = st.with(|s| {
                let c = &s.c;
                (s.cfg.stats_interval.0, (c.frames_acked, c.bytes_read))
            });
            if local && last_stats.0.elapsed() >= interval && last_stats.1 != Some(progress) {
                last_stats = (Instant::now(), Some(progress));
                st.with(log_stats);
            }
            if done {
                break;
            }
        }
    };
    if let Some(w) = disk {
        st.with_mut(|s| s.disk_full -= 1);
        if done && w.logged.is_some() {
            log::info!(
                "{}: room on disk again after {} s: reading resumed",
                pipe.with(|p| p.label()),
                w.since.elapsed().as_secs()
            );
        }
    }
    done
}

/// One look of [`close_frame`] at the spool: the frame goes in, or room is made, or it says
/// what to wait for. `disk` is the pause for lack of disk under way, `waited` whether this
/// frame has waited for room in the spool already.
fn try_spool(
    s: &mut State,
    p: &mut Pipe,
    disk: &mut Option<DiskWait>,
    log: &mut DiskLog,
    waited: &mut bool,
) -> Turn {
    let len = match &p.pending {
        Some(b) => b.frame.len(),
        None if p.batch.is_empty() => return Turn::Done,
        None => p.batch.encoded_len(),
    };
    if !p.spool.fits(len)
        && p.spool.on_full() == OnFull::DropOldest
        // Positions first: the frames about to go must not be read again at restart.
        // Without a checkpoint, nothing is dropped: reading waits.
        && p.checkpoint_due()
        && p.checkpoint()
    {
        if let Err(e) = p.spool.drop_oldest(len, &mut s.c) {
            log::error!("{}: {e}", p.label());
        }
    }
    if p.spool.fits(len) {
        let why = match disk_room(disk_free(&s.cfg.data_dir), len) {
            Ok(()) => {
                let b = match p.pending.take() {
                    Some(b) => b,
                    None => finish(p),
                };
                match append(p, &mut s.c, b) {
                    Ok(()) => return Turn::Done,
                    Err(e) => e.to_string(),
                }
            }
            Err(free) => format!(
                "{} has {free} bytes free, the spool leaves {DISK_RESERVE}",
                s.cfg.data_dir.display()
            ),
        };
        // Acknowledged segments the disk kept because their checkpoint could not be
        // written: try again now (at most once a second), they are room.
        if p.spool.reclaimable() && p.checkpoint_due() && p.checkpoint() {
            return Turn::Again;
        }
        let now = Instant::now();
        let w = disk.get_or_insert_with(|| {
            s.disk_full += 1;
            s.c.disk_full_waits += 1;
            let say = log.last.is_none_or(|t| now.duration_since(t) >= DISK_LOG_EVERY);
            if say {
                let before = match std::mem::take(&mut log.unsaid) {
                    0 => String::new(),
                    n => format!(" ({n} short pauses since last said)"),
                };
                log::error!(
                    "{}: the spool cannot take a frame: disk full or failing ({why}); reading paused, delivering goes on; retrying{before}",
                    p.label()
                );
                log.last = Some(now);
            } else {
                log.unsaid += 1;
            }
            DiskWait {
                since: now,
                logged: say.then_some(now),
                delay: MIN_POLL * 5,
            }
        });
        if now.duration_since(w.logged.unwrap_or(w.since)) >= DISK_LOG_EVERY {
            w.logged = Some(now);
            log.last = Some(now);
            log::warn!(
                "{}: the spool still cannot take a frame after {} s ({why}); {} frames waiting",
                p.label(),
                now.duration_since(w.since).as_secs(),
                p.spool.backlog()
            );
        }
        let d = w.delay;
        w.delay = (w.delay * 2).min(DISK_RETRY_MAX);
        Turn::Wait(p.space.clone(), d)
    } else {
        if !*waited {
            *waited = true;
            s.c.spool_full_waits += 1;
            log::warn!(
                "{}: spool full ({} bytes, {} frames waiting): reading paused until the sink catches up",
                p.label(),
                p.spool.bytes(),
                p.spool.backlog()
            );
            if p.spool.reclaimable() {
                p.checkpoint();
                return Turn::Again;
            }
        }
        Turn::Wait(p.space.clone(), Duration::from_secs(1))
    }
}

/// Looks for new, rotated and truncated files, the watches set up again first when they
/// need it (so that a file made during the scan is either found or heard of).
fn scan(watch: &mut Watch, p: &mut Pipe, now: Instant, c: &mut Counters) {
    if watch.wants_sync(&p.cfg.inputs, now) {
        watch.sync(&p.cfg.inputs, now);
    }
    p.tailer.scan(now, &p.batch, c);
    p.last_scan = Some(now);
}

/// A loss is counted once: the marks that counted it leave the checkpoint as soon as it is
/// safe, not at the next 5 s tick, which an agent in a crash loop never reaches (every start
/// counted the same files again). Safe once the open batch is empty and no refused frame
/// waits: a checkpoint taken while the batch holds lines of the file's old content would
/// record its new start and lose those lines, uncounted, to a crash.
fn checkpoint_loss(p: &mut Pipe) {
    if p.loss_unsaved && p.batch.is_empty() && p.pending.is_none() && p.checkpoint_due() {
        p.checkpoint();
    }
}

fn finish(p: &mut Pipe) -> Built {
    p.track.closed(Instant::now());
    let ends = p.batch.ends().collect();
    let head = crate::spool::Head {
        lines: p.batch.len().into(),
        base_ts_ms: p.batch.base_ts_ms(),
    };
    let frame = p.batch.finish(&p.stream, p.spool.next_seq());
    Built { frame, ends, head }
}

/// Spools the open batch now, if the spool and the disk take it: a reload is about to close
/// files (an input removed, globs narrowed), and their marks are what is spooled, so an
/// input added back then goes on past these lines instead of reading them again. Not while
/// a frame the disk refused waits, nor without room: the lines then stay in the batch and
/// the marks before them (an input added back reads them again: duplicates, never a loss).
pub(super) fn spool_open_batch(p: &mut Pipe, c: &mut Counters, data_dir: &Path) {
    if p.pending.is_some() || p.batch.is_empty() {
        return;
    }
    let len = p.batch.encoded_len();
    if !p.spool.fits(len) || disk_room(disk_free(data_dir), len).is_err() {
        return;
    }
    let b = finish(p);
    if let Err(e) = append(p, c, b) {
        log::error!("{}: {e}", p.label());
    }
}

/// Appends a built frame and commits its files' positions; a frame the disk refused stays
/// in `pending`, to be appended before anything new.
fn append(p: &mut Pipe, c: &mut Counters, b: Built) -> Result<(), SpoolError> {
    match p.spool.append_batch(&b.frame, b.head) {
        Ok(seq) => {
            p.track.appended(seq);
            for &(dev, ino, end) in &b.ends {
                p.tailer.commit(dev, ino, end);
            }
            c.frames_spooled += 1;
            if p.grouped == 0 {
                p.grouped_since = Some(Instant::now());
            }
            p.grouped += b.frame.len() as u64;
            p.changed = true;
            p.spooled.notify();
            checkpoint_loss(p);
            Ok(())
        }
        Err(e) => {
            c.spool_write_errors += 1;
            // Its lines are in memory only: no checkpoint may claim them.
            p.tailer.hold(&b.ends);
            p.pending = Some(b);
            Err(e)
        }
    }
}

/// How long the open batch has been waiting, for `batch.linger`: measured on the monotonic
/// clock from the first look that found it holding lines. The frames' timestamps stay wall
/// clock (they are for people and consumers); a wall clock stepped back must not hold a
/// batch open for as long as the step, nor a step forward close it at once.
#[derive(Debug, Default)]
struct Linger {
    /// When the open batch was first seen non-empty.
    opened: Option<Instant>,
}

impl Linger {
    /// How long the open batch may still wait before it is closed; `None` when it is empty.
    /// Called once per turn of the collect loop, so a batch is seen non-empty at most one
    /// read after its first line went in.
    fn left(&mut self, batch: &BatchBuilder, now: Instant, linger: Duration) -> Option<Duration> {
        if batch.is_empty() {
            self.opened = None;
            return None;
        }
        let opened = *self.opened.get_or_insert(now);
        Some(linger.saturating_sub(now.saturating_duration_since(opened)))
    }

    /// The batch went to the spool: the next one counts from its own first line, even if the
    /// loop refills it before looking again.
    fn closed(&mut self) {
        self.opened = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::SourceRef;

    /// The task's view is the newest change of life: taken out and put back before it
    /// looked, it reads on.
    #[test]
    fn the_inbox_keeps_the_newest_change_of_life() {
        let (tx, rx) = smol::channel::bounded(3);
        let mut inbox = Inbox::new(rx);
        tx.try_send(ToCollect::Drain).unwrap();
        inbox.drain();
        assert!(inbox.removed && !inbox.stop);
        tx.try_send(ToCollect::Run).unwrap();
        tx.try_send(ToCollect::Wake).unwrap();
        inbox.drain();
        assert!(!inbox.removed && !inbox.stop && inbox.wake);
        // A command taken while busy ends the next sleep at once.
        smol::block_on(inbox.sleep(Duration::from_secs(3600)));
        assert!(!inbox.wake);
        // The pipe gone (its sending end dropped): a stop.
        drop(tx);
        inbox.drain();
        assert!(inbox.stop);
    }

    /// A wait for room in the spool ends on a stop, not on a change of life (what was read
    /// still goes to the spool when a pipeline is taken out of the config).
    #[test]
    fn only_a_stop_ends_a_wait_for_room() {
        let (tx, rx) = smol::channel::bounded(3);
        let mut inbox = Inbox::new(rx);
        let mut wait = Box::pin(async {
            inbox.stopped().await;
        });
        assert!(smol::block_on(smol::future::poll_once(&mut wait)).is_none());
        tx.try_send(ToCollect::Drain).unwrap();
        tx.try_send(ToCollect::Wake).unwrap();
        assert!(smol::block_on(smol::future::poll_once(&mut wait)).is_none());
        tx.try_send(ToCollect::Stop).unwrap();
        assert!(smol::block_on(smol::future::poll_once(&mut wait)).is_some());
        drop(wait);
        assert!(inbox.stop && inbox.removed);
    }

    #[test]
    fn a_frame_goes_to_the_spool_only_if_it_leaves_the_reserve_free() {
        let len = 8 << 10;
        assert_eq!(disk_room(None, len), Ok(()));
        assert_eq!(disk_room(Some(DISK_RESERVE + len as u64), len), Ok(()));
        let short = DISK_RESERVE + len as u64 - 1;
        assert_eq!(disk_room(Some(short), len), Err(short));
        assert_eq!(disk_room(Some(0), len), Err(0));
    }

    /// A backward step of the wall clock must not hold a batch open: its first line was
    /// stamped an hour ahead of what the wall clock says now, as after a step back.
    #[test]
    fn linger_is_measured_on_the_monotonic_clock() {
        let src = SourceRef {
            path: "/var/log/app.log",
            dev: 1,
            ino: 2,
            fp_len: 0,
            fp: 0,
        };
        let linger = Duration::from_millis(100);
        let mut age = Linger::default();
        let mut b = BatchBuilder::new(1000, 64 << 10);
        let t0 = Instant::now();
        assert_eq!(age.left(&b, t0, linger), None);
        assert!(b.push(&src, 0, 4, now_ms() + 3_600_000, 0, b"abc"));
        assert_eq!(age.left(&b, t0, linger), Some(linger));
        let t1 = t0 + Duration::from_millis(60);
        assert_eq!(age.left(&b, t1, linger), Some(Duration::from_millis(40)));
        assert_eq!(age.left(&b, t0 + linger, linger), Some(Duration::ZERO));
        // Closed and refilled before the next look: the next batch counts from its own
        // first look, not from the closed one's.
        b.finish("it", 1);
        age.closed();
        assert!(b.push(&src, 4, 8, now_ms(), 0, b"def"));
        let t3 = t0 + Duration::from_secs(5);
        assert_eq!(age.left(&b, t3, linger), Some(linger));
        let t4 = t3 + Duration::from_millis(30);
        assert_eq!(age.left(&b, t4, linger), Some(Duration::from_millis(70)));
        b.finish("it", 2);
        assert_eq!(age.left(&b, t4, linger), None);
    }
}
