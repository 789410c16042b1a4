//! Spool → sink → acknowledgement → release: the task that sends, and how it backs off.
//!
//! The agent reaches this task through the pipeline's command channel ([`ToDeliver`]): a
//! new sink, taken at the top of the next turn; a stop, which cuts one retry backoff short.
//! The task waits on that channel while it owns its receiving end, with no borrow of the
//! pipe held.

use super::pipe::{Outbox, Pipe, PipeRef, ToDeliver, CHECKPOINT_ACKED, CK_ACKED_EVERY};
use super::Shared;
use crate::backoff::Backoff;
use crate::sink::{AnySink, Sink, SinkError};
use crate::stats::Counters;
use smol::channel::Receiver;
use smol::future::FutureExt;
use smol::Timer;
use std::time::{Duration, Instant};

/// Bytes of frames a busy reader may put in the spool before deliver syncs them (see the
/// loop in [`deliver`]): 16 frames of the default 64 KiB, about 40 lz4 frames.
const GROUP_COMMIT: u64 = 1 << 20;
/// How long a frame appended behind a durable backlog may wait for its group before the
/// sender syncs it anyway (a live source behind a slow sink makes small groups).
const GROUP_WAIT: Duration = Duration::from_secs(1);

/// The group commit's size for this pipeline (see the loop in [`deliver`]).
fn group(p: &Pipe) -> u64 {
    GROUP_COMMIT.min(p.cfg.spool.max_bytes.0 / 16)
}

/// Nothing appended waits unsynced: the next group starts from nothing.
fn ungroup(p: &mut Pipe) {
    p.grouped = 0;
    p.grouped_since = None;
}

/// Syncs the spool (one fsync covers every frame appended since the last) and marks the
/// timed frames durable; `None` when the spool failed (logged).
fn sync(p: &mut Pipe, c: &mut Counters) -> Option<()> {
    if let Err(e) = p.spool.sync() {
        log::error!("{}: {e}", p.label());
        return None;
    }
    ungroup(p);
    if p.spool.syncs_frames() {
        c.spool_syncs += 1;
    }
    // Synced: the timed frames appended so far are durable now.
    if p.track.unsynced() {
        p.track.synced(Instant::now());
    }
    Some(())
}

/// The commands that came while the task was busy.
#[derive(Default)]
struct Inbox {
    /// The newest sink the agent sent; taken at the top of the next turn.
    sink: Option<AnySink>,
    /// A stop that no backoff has consumed yet: like a notification, it cuts the next one
    /// short, once.
    stop: bool,
}

impl Inbox {
    fn take(&mut self, c: ToDeliver) {
        match c {
            ToDeliver::Sink(s) => self.sink = Some(s),
            ToDeliver::Stop => self.stop = true,
        }
    }

    /// Everything waiting on the channel, without waiting.
    fn drain(&mut self, commands: &Receiver<ToDeliver>) {
        while let Ok(c) = commands.try_recv() {
            self.take(c);
        }
    }

    /// Waits `d`, or until a stop: a new sink that comes meanwhile waits for the next turn
    /// (a retry backoff is not cut short by a config change, as before the channel).
    async fn backoff(&mut self, commands: &Receiver<ToDeliver>, d: Duration) {
        let until = Instant::now() + d;
        loop {
            if std::mem::take(&mut self.stop) {
                return;
            }
            let got = async { commands.recv().await.ok() }
                .or(async {
                    Timer::at(until).await;
                    None
                })
                .await;
            match got {
                Some(c) => self.take(c),
                None => {
                    // The timer, or a channel closed (the pipe is gone): the whole wait.
                    Timer::at(until).await;
                    return;
                }
            }
        }
    }
}

/// Spool → sink → acknowledgement → release, for one pipeline.
pub(super) async fn deliver(st: Shared, pipe: PipeRef, out: Outbox) {
    let Outbox {
        mut sink, commands, ..
    } = out;
    let mut inbox = Inbox::default();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
    let mut buf = Vec::new();
    pipe.with_mut(|p| {
        let held = sink.holds(&p.stream);
        p.spool.skip_delivered(held);
    });
    loop {
        // Group commit: while collect works through a backlog (it yielded and comes back at
        // once), let it add GROUP_COMMIT bytes of frames (or a 16th of the spool, so that a
        // small spool under `drop_oldest` does not fill while the sender waits), then one
        // fsync of the spool and one flush of the sink cover them all, instead of one of each
        // per frame. Only while every frame that waits is of this group: while an older one
        // waits, the sender sends it and the new frames wait for their group below (holding
        // the sender back would let a reader faster than a one-at-a-time sink, HTTP, fill the
        // spool). Not "while no durable frame waits": with `fsync = false` every frame is
        // durable once appended, and the sink then flushed (fsynced, for a file) once per
        // frame. Counted in bytes appended since the sender last synced or found nothing to
        // sync, not in unsynced bytes, which a new segment or a checkpoint's sync resets (and
        // which `fsync = false` never has): otherwise the sender could wait out the whole
        // backlog. Never while
        // collect waits for anything (`reading_on` is false then), so a frame waits for at
        // most the next few of a busy reader, never for an idle one.
        let defer = pipe.with_mut(|p| {
            p.reading_on && p.grouped < group(p) && p.spool.unsent_bytes() <= p.grouped
        });
        if defer {
            smol::future::yield_now().await;
            continue;
        }
        let failure = {
            inbox.drain(&commands);
            if let Some(new) = inbox.sink.take() {
                st.with_mut(|s| pipe.with_mut(|p| p.spool.rewind(&mut s.c)));
                sink = new;
            }
            let mut failure = None;
            loop {
                // `None`: nothing to send now (or the spool failed, logged).
                let next = st.with_mut(|s| {
                    pipe.with_mut(|p| {
                        // Behind a sink slower than the reader (a backlog that was
                        // made durable, new frames coming): durable frames go first, and
                        // the new ones are synced once they make a group or the first of
                        // them has waited GROUP_WAIT, not one fsync per frame sent.
                        // Nothing durable left: synced now, to be sent. Without fsync,
                        // syncing is free (it marks the frames sent-able and timed).
                        let waited = p.grouped_since.is_some_and(|t| t.elapsed() >= GROUP_WAIT);
                        if !p.spool.needs_sync() {
                            ungroup(p);
                        } else if !p.spool.syncs_frames()
                            || p.grouped >= group(p)
                            || waited
                            || !p.spool.durable_unsent()
                        {
                            sync(p, &mut s.c)?;
                        }
                        // Synced by a checkpoint or a segment's end meanwhile.
                        if p.track.unsynced() && !p.spool.needs_sync() {
                            p.track.synced(Instant::now());
                        }
                        if p.spool.in_flight() >= sink.window() {
                            return None;
                        }
                        let mut next = p.spool.next_unsent(&mut buf, &mut s.c);
                        if matches!(next, Ok(None)) && p.spool.needs_sync() {
                            // What looked durable and unsent held no frame to send: bytes
                            // damaged since they were appended (skipped and counted by
                            // `next_unsent`), or a hole it steps over. The new frames are
                            // synced now rather than wait for the next wake-up.
                            sync(p, &mut s.c)?;
                            next = p.spool.next_unsent(&mut buf, &mut s.c);
                        }
                        match next {
                            Ok(seq) => seq,
                            Err(e) => {
                                log::error!("{}: {e}", p.label());
                                None
                            }
                        }
                    })
                });
                let Some(seq) = next else {
                    break;
                };
                if let Err(e) = sink.send(seq, &buf).await {
                    failure = Some(e);
                    break;
                }
                st.with_mut(|s| s.c.frames_sent += 1);
                pipe.with_mut(|p| {
                    if !p.track.is_empty() {
                        p.track.sent(seq, Instant::now());
                    }
                });
            }
            if failure.is_none() && pipe.with(|p| p.spool.in_flight()) > 0 {
                match sink.flush().await {
                    Ok(seq) => {
                        let dead = sink.take_dead_letters();
                        st.with_mut(|s| {
                            pipe.with_mut(|p| {
                                s.c.sink_flushes += 1;
                                s.c.dead_letters += dead;
                                let before = p.spool.in_flight();
                                p.spool.ack(seq, &mut s.c);
                                p.acked_since_ck += (before - p.spool.in_flight()) as u64;
                                p.track.acked(seq, Instant::now(), &mut s.window);
                                p.changed = true;
                                let many = p.acked_since_ck >= CHECKPOINT_ACKED
                                    && (!p.acked_ck_once
                                        || p.last_checkpoint.elapsed() >= CK_ACKED_EVERY);
                                if (many || p.spool.reclaimable()) && p.checkpoint_due() {
                                    p.acked_ck_once |= many;
                                    p.checkpoint();
                                }
                                p.space.notify();
                            })
                        });
                        backoff.reset();
                        continue;
                    }
                    Err(e) => failure = Some(e),
                }
            }
            failure
        };
        if let Some(SinkError::TooLarge { seq, frame, msg }) = &failure {
            // Not a failure of the link: the frame is cut smaller and delivery goes on.
            let cut = st.with_mut(|s| pipe.with_mut(|p| p.cut_refused(*seq, frame, msg, &mut s.c)));
            if cut {
                backoff.reset();
                continue;
            }
        }
        match failure {
            Some(e) => {
                let mut d = backoff.next_delay();
                if let Some(ra) = e.retry_after() {
                    d = d.max(ra.min(Duration::from_secs(3600)));
                }
                let give_up = st.with_mut(|s| {
                    pipe.with_mut(|p| {
                        s.c.send_errors += 1;
                        p.spool.rewind(&mut s.c);
                        log::warn!("{}: {e}; retrying in {} ms", p.label(), d.as_millis());
                        // Shutting down: what is left stays in the spool. `--once` keeps
                        // trying until everything is delivered, or a signal says stop. A
                        // removed pipeline keeps trying too: its backlog has nowhere else
                        // to go.
                        !p.life.collecting() && (s.shutdown || !(s.once || p.life.removed()))
                    })
                });
                if give_up {
                    break;
                }
                inbox.backoff(&commands, d).await;
                if st.with(|s| s.shutdown) && !pipe.with(|p| p.life.collecting()) {
                    break;
                }
            }
            None => {
                if pipe.with(|p| !p.life.collecting() && p.spool.backlog() == 0) {
                    break;
                }
                // Nothing to send: sleep until frames come or the sink wants its keep-alive.
                let now = Instant::now();
                let wait = sink
                    .idle_until()
                    .map_or(Duration::from_secs(60), |t| {
                        t.saturating_duration_since(now)
                    })
                    .min(Duration::from_secs(60));
                let spooled = pipe.with(|p| p.spooled.clone());
                spooled.wait_for(wait).await;
                if sink.idle_until().is_some_and(|t| t <= Instant::now()) {
                    if let Err(e) = sink.idle().await {
                        log::warn!("{e}; reconnecting when there is something to send");
                    }
                }
            }
        }
    }
    st.with_mut(|s| {
        let stopped = pipe.with_mut(|p| {
            if !p.life.removed() || s.shutdown {
                return false;
            }
            // Delivered, and out of the config: the pipeline ends here (pipe.rs), before the
            // `.await` below, so that a config adding it again meanwhile opens it afresh.
            p.checkpoint();
            p.stopped();
            log::info!("{}: backlog delivered, stopped", p.label());
            true
        });
        if stopped {
            s.pipes.retain(|x| !x.ptr_eq(&pipe));
        }
    });
    // A clean stop: the sink says goodbye (MQTT: the retained offline state).
    sink.close().await;
}
