//! Files → batch → spool: the task that reads, and what it does when the spool is full.

use super::pipe::{Pipe, PipeRef};
use super::{log_stats, now_ms, Built, Shared, CHECKPOINT_EVERY, MIN_POLL};
use crate::config::OnFull;
use crate::frame::BatchBuilder;
use crate::input::Outcome;
use crate::stats::Counters;
use std::time::{Duration, Instant};

/// Files → batch → spool, for one pipeline.
pub(super) async fn collect(st: Shared, pipe: PipeRef) {
    let mut sleep = MIN_POLL;
    let mut last_scan: Option<Instant> = None;
    // Progress is logged from the local pipeline's loop rather than from a timer of its own:
    // an idle agent then has one periodic wake-up per pipeline, the poll.
    let mut last_stats = (Instant::now(), u64::MAX, u64::MAX);
    let local = pipe.borrow().name.is_empty();
    let mut batch_age = Linger::default();
    loop {
        let removed = {
            let p = pipe.borrow();
            if st.borrow().shutdown || p.ended {
                break;
            }
            p.removed
        };
        if removed {
            if park(&st, &pipe).await {
                break;
            }
            last_scan = None;
            continue;
        }
        let now = Instant::now();
        let (outcome, linger_left, poll, stats) = {
            let mut g = st.borrow_mut();
            let s = &mut *g;
            let mut p = pipe.borrow_mut();
            let p = &mut *p;
            let poll = s.cfg.poll_interval.0;
            if last_scan.is_none_or(|t| now.duration_since(t) >= poll.min(Duration::from_secs(1))) {
                p.tailer.scan(now, &p.batch, &mut s.c);
                last_scan = Some(now);
            }
            let outcome = if p.pending.is_some() {
                Outcome::BatchFull
            } else {
                p.tailer.read(&mut p.batch, now, now_ms(), &mut s.c)
            };
            let linger_left = batch_age.left(&p.batch, now, p.cfg.batch.linger.0);
            if p.last_checkpoint.elapsed() >= CHECKPOINT_EVERY && p.changed {
                p.checkpoint();
            }
            let mut stats = false;
            if local && now.duration_since(last_stats.0) >= s.cfg.stats_interval.0 {
                let progress = (s.c.bytes_read, s.c.frames_acked);
                stats = progress != (last_stats.1, last_stats.2);
                last_stats = (now, progress.0, progress.1);
            }
            (outcome, linger_left, poll, stats)
        };
        if stats {
            // Not under the pipe's borrow: the figures add up every pipeline.
            log_stats(&st.borrow());
        }
        let close = outcome == Outcome::BatchFull
            || pipe.borrow().batch.is_full()
            || linger_left == Some(Duration::ZERO);
        if close {
            if !close_frame(&st, &pipe).await {
                continue;
            }
            batch_age.closed();
        }
        match outcome {
            Outcome::BatchFull | Outcome::More => {
                sleep = MIN_POLL;
                smol::future::yield_now().await;
            }
            Outcome::Idle if st.borrow().once => {
                log::info!(
                    "--once: {} read every file to its end",
                    pipe.borrow().label()
                );
                break;
            }
            Outcome::Idle => {
                let mut d = sleep;
                if let Some(l) = linger_left.filter(|l| !l.is_zero()) {
                    d = d.min(l);
                }
                let wake = pipe.borrow().wake.clone();
                wake.wait_for(d).await;
                sleep = (sleep * 2).min(poll);
            }
        }
    }
    // Stopping: what is read goes to the spool, if it fits.
    let mut g = st.borrow_mut();
    let mut p = pipe.borrow_mut();
    put_away(&mut p, &mut g.c);
    p.collecting = false;
    p.spooled.notify();
    g.starter.notify();
}

/// A removed pipeline: its open batch goes to the spool, then it waits to be put back in
/// the config (false) or for its tasks to end (true).
async fn park(st: &Shared, pipe: &PipeRef) -> bool {
    // The batch first, waiting for room like any frame: what was read is delivered.
    if !close_frame(st, pipe).await {
        if st.borrow().shutdown {
            return true;
        }
        // The disk refused the frame: try again in a while, as the loop above would.
        smol::Timer::after(Duration::from_secs(1)).await;
        return false;
    }
    {
        let mut g = st.borrow_mut();
        let mut p = pipe.borrow_mut();
        put_away(&mut p, &mut g.c);
        p.checkpoint();
        p.collecting = false;
        p.spooled.notify();
    }
    loop {
        let wake = {
            let p = pipe.borrow();
            if p.ended || st.borrow().shutdown {
                return true;
            }
            if !p.removed {
                drop(p);
                pipe.borrow_mut().collecting = true;
                return false;
            }
            p.wake.clone()
        };
        wake.wait_for(Duration::from_secs(60)).await;
    }
}

/// What is read but not in the spool goes there, if it fits.
fn put_away(p: &mut Pipe, c: &mut Counters) {
    if let Some(b) = p.pending.take() {
        append(p, c, b);
    }
    if !p.batch.is_empty() && p.spool.fits(p.batch.encoded_len()) {
        let b = finish(p);
        append(p, c, b);
    }
    let _ = p.spool.sync();
}

/// Moves the open batch (or a frame the disk refused earlier) into the spool, waiting or
/// dropping per `on_full`. Returns false when it could not (full, disk error, shutdown).
async fn close_frame(st: &Shared, pipe: &PipeRef) -> bool {
    let mut waited = false;
    loop {
        let space = {
            let mut g = st.borrow_mut();
            let s = &mut *g;
            if s.shutdown {
                return false;
            }
            let mut p = pipe.borrow_mut();
            let p = &mut *p;
            let len = match &p.pending {
                Some(b) => b.frame.len(),
                None if p.batch.is_empty() => return true,
                None => p.batch.encoded_len(),
            };
            if !p.spool.fits(len) && p.spool.on_full() == OnFull::DropOldest {
                // Positions first: the frames about to go must not be read again at restart.
                p.checkpoint();
                if let Err(e) = p.spool.drop_oldest(len, &mut s.c) {
                    log::error!("{}: {e}", p.label());
                }
            }
            if p.spool.fits(len) {
                let b = match p.pending.take() {
                    Some(b) => b,
                    None => finish(p),
                };
                return append(p, &mut s.c, b);
            }
            if !waited {
                waited = true;
                s.c.spool_full_waits += 1;
                log::warn!(
                    "{}: spool full ({} bytes, {} frames waiting): reading paused until the sink catches up",
                    p.label(),
                    p.spool.bytes(),
                    p.spool.backlog()
                );
                if p.spool.reclaimable() {
                    p.checkpoint();
                    continue;
                }
            }
            p.space.clone()
        };
        space.wait_for(Duration::from_secs(1)).await;
    }
}

fn finish(p: &mut Pipe) -> Built {
    let ends = p.batch.ends().collect();
    let frame = p.batch.finish(&p.stream, p.spool.next_seq());
    Built { frame, ends }
}

fn append(p: &mut Pipe, c: &mut Counters, b: Built) -> bool {
    match p.spool.append(&b.frame) {
        Ok(_) => {
            for &(dev, ino, end) in &b.ends {
                p.tailer.commit(dev, ino, end);
            }
            c.frames_spooled += 1;
            p.changed = true;
            p.spooled.notify();
            true
        }
        Err(e) => {
            if c.spool_write_errors == 0 || p.pending.is_none() {
                log::error!("{}: {e}; reading paused, retrying", p.label());
            }
            c.spool_write_errors += 1;
            p.pending = Some(b);
            false
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
