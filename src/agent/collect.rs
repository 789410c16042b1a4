//! Files → batch → spool: the task that reads, and what it does when the spool is full.

use super::{
    checkpoint, log_stats, now_ms, Built, Notify, Shared, State, CHECKPOINT_EVERY, MIN_POLL,
};
use crate::config::OnFull;
use crate::input::Outcome;
use std::time::{Duration, Instant};

/// Files → batch → spool.
pub(super) async fn collect(st: Shared, spooled: Notify, space: Notify, wake: Notify) {
    let mut sleep = MIN_POLL;
    let mut last_scan: Option<Instant> = None;
    // Progress is logged from this loop rather than from a timer of its own: an idle agent
    // then has exactly one periodic wake-up, the poll.
    let mut last_stats = (Instant::now(), u64::MAX, u64::MAX);
    loop {
        let now = Instant::now();
        let (outcome, linger_left, poll) = {
            let mut g = st.borrow_mut();
            let s = &mut *g;
            if s.shutdown {
                break;
            }
            let poll = s.cfg.poll_interval.0;
            if last_scan.is_none_or(|t| now.duration_since(t) >= poll.min(Duration::from_secs(1))) {
                s.tailer.scan(now, &s.batch, &mut s.c);
                last_scan = Some(now);
            }
            let outcome = if s.pending.is_some() {
                Outcome::BatchFull
            } else {
                s.tailer.read(&mut s.batch, now, now_ms(), &mut s.c)
            };
            let linger = s.cfg.batch.linger.0;
            let age = Duration::from_millis(now_ms().saturating_sub(s.batch.base_ts_ms()));
            let linger_left = (!s.batch.is_empty()).then(|| linger.saturating_sub(age));
            if s.last_checkpoint.elapsed() >= CHECKPOINT_EVERY && s.changed {
                checkpoint(s);
            }
            if now.duration_since(last_stats.0) >= s.cfg.stats_interval.0 {
                let progress = (s.c.bytes_read, s.c.frames_acked);
                if progress != (last_stats.1, last_stats.2) {
                    log_stats(s);
                }
                last_stats = (now, progress.0, progress.1);
            }
            (outcome, linger_left, poll)
        };
        let close = outcome == Outcome::BatchFull
            || st.borrow().batch.is_full()
            || linger_left == Some(Duration::ZERO);
        if close && !close_frame(&st, &spooled, &space).await {
            continue;
        }
        match outcome {
            Outcome::BatchFull | Outcome::More => {
                sleep = MIN_POLL;
                smol::future::yield_now().await;
            }
            Outcome::Idle if st.borrow().once => {
                log::info!("--once: every file is read to its end");
                break;
            }
            Outcome::Idle => {
                let mut d = sleep;
                if let Some(l) = linger_left.filter(|l| !l.is_zero()) {
                    d = d.min(l);
                }
                wake.wait_for(d).await;
                sleep = (sleep * 2).min(poll);
            }
        }
    }
    // Shutting down: what is read goes to the spool, if it fits.
    let mut g = st.borrow_mut();
    let s = &mut *g;
    if let Some(b) = s.pending.take() {
        append(s, b, &spooled);
    }
    if !s.batch.is_empty() && s.spool.fits(s.batch.encoded_len()) {
        let b = finish(s);
        append(s, b, &spooled);
    }
    let _ = s.spool.sync();
    s.collecting = false;
}

/// Moves the open batch (or a frame the disk refused earlier) into the spool, waiting or
/// dropping per `on_full`. Returns false when it could not (full, disk error, shutdown).
async fn close_frame(st: &Shared, spooled: &Notify, space: &Notify) -> bool {
    let mut waited = false;
    loop {
        {
            let mut g = st.borrow_mut();
            let s = &mut *g;
            if s.shutdown {
                return false;
            }
            let len = match &s.pending {
                Some(b) => b.frame.len(),
                None if s.batch.is_empty() => return true,
                None => s.batch.encoded_len(),
            };
            if !s.spool.fits(len) && s.spool.on_full() == OnFull::DropOldest {
                // Positions first: the frames about to go must not be read again at restart.
                checkpoint(s);
                if let Err(e) = s.spool.drop_oldest(len, &mut s.c) {
                    log::error!("{e}");
                }
            }
            if s.spool.fits(len) {
                let b = match s.pending.take() {
                    Some(b) => b,
                    None => finish(s),
                };
                return append(s, b, spooled);
            }
            if !waited {
                waited = true;
                s.c.spool_full_waits += 1;
                log::warn!(
                    "spool full ({} bytes, {} frames waiting): reading paused until the sink catches up",
                    s.spool.bytes(),
                    s.spool.backlog()
                );
                if s.spool.reclaimable() {
                    checkpoint(s);
                    continue;
                }
            }
        }
        space.wait_for(Duration::from_secs(1)).await;
    }
}

fn finish(s: &mut State) -> Built {
    let ends = s.batch.ends().collect();
    let frame = s.batch.finish(&s.instance, s.spool.next_seq());
    Built { frame, ends }
}

fn append(s: &mut State, b: Built, spooled: &Notify) -> bool {
    match s.spool.append(&b.frame) {
        Ok(_) => {
            for &(dev, ino, end) in &b.ends {
                s.tailer.commit(dev, ino, end);
            }
            s.c.frames_spooled += 1;
            s.changed = true;
            spooled.notify();
            true
        }
        Err(e) => {
            if s.c.spool_write_errors == 0 || s.pending.is_none() {
                log::error!("{e}; reading paused, retrying");
            }
            s.c.spool_write_errors += 1;
            s.pending = Some(b);
            false
        }
    }
}
