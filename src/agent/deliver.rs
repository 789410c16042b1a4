//! Spool → sink → acknowledgement → release: the task that sends, and how it backs off.

use super::{checkpoint, now_ms, Notify, Shared};
use crate::backoff::Backoff;
use crate::sink::{AnySink, Sink};
use std::time::{Duration, Instant};

/// Spool → sink → acknowledgement → release.
pub(super) async fn deliver(
    st: Shared,
    mut sink: AnySink,
    spooled: Notify,
    space: Notify,
    stop: Notify,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
    let mut buf = Vec::new();
    {
        let mut g = st.borrow_mut();
        let held = sink.holds(&g.instance);
        g.spool.skip_delivered(held);
    }
    loop {
        let failure = {
            let new_sink = st.borrow_mut().new_sink.take();
            if let Some(new) = new_sink {
                let mut g = st.borrow_mut();
                let s = &mut *g;
                s.spool.rewind(&mut s.c);
                sink = new;
            }
            let mut failure = None;
            loop {
                let seq = {
                    let mut g = st.borrow_mut();
                    let s = &mut *g;
                    if let Err(e) = s.spool.sync() {
                        log::error!("{e}");
                        break;
                    }
                    if s.spool.in_flight() >= sink.window() {
                        break;
                    }
                    match s.spool.next_unsent(&mut buf, &mut s.c) {
                        Ok(Some(seq)) => seq,
                        Ok(None) => break,
                        Err(e) => {
                            log::error!("{e}");
                            break;
                        }
                    }
                };
                if let Err(e) = sink.send(seq, &buf).await {
                    failure = Some(e);
                    break;
                }
                st.borrow_mut().c.frames_sent += 1;
            }
            if failure.is_none() && st.borrow().spool.in_flight() > 0 {
                match sink.flush().await {
                    Ok(seq) => {
                        let mut g = st.borrow_mut();
                        let s = &mut *g;
                        s.c.dead_letters += sink.take_dead_letters();
                        s.spool.ack(seq, now_ms(), &mut s.c, &mut s.lat);
                        s.changed = true;
                        if s.spool.reclaimable() {
                            checkpoint(s);
                        }
                        backoff.reset();
                        space.notify();
                        continue;
                    }
                    Err(e) => failure = Some(e),
                }
            }
            failure
        };
        match failure {
            Some(e) => {
                let mut d = backoff.next_delay();
                if let Some(ra) = e.retry_after() {
                    d = d.max(ra.min(Duration::from_secs(3600)));
                }
                {
                    let mut g = st.borrow_mut();
                    let s = &mut *g;
                    s.c.send_errors += 1;
                    s.spool.rewind(&mut s.c);
                    log::warn!("{e}; retrying in {} ms", d.as_millis());
                    // Shutting down: what is left stays in the spool. `--once` keeps trying
                    // until everything is delivered, or a signal says stop.
                    if !s.collecting && (!s.once || s.shutdown) {
                        break;
                    }
                }
                stop.wait_for(d).await;
                let s = st.borrow();
                if s.shutdown && !s.collecting {
                    break;
                }
            }
            None => {
                {
                    let s = st.borrow();
                    if !s.collecting && s.spool.backlog() == 0 {
                        break;
                    }
                }
                // Nothing to send: sleep until frames come or the sink wants its keep-alive.
                let now = Instant::now();
                let wait = sink
                    .idle_until()
                    .map_or(Duration::from_secs(60), |t| {
                        t.saturating_duration_since(now)
                    })
                    .min(Duration::from_secs(60));
                spooled.wait_for(wait).await;
                if sink.idle_until().is_some_and(|t| t <= Instant::now()) {
                    if let Err(e) = sink.idle().await {
                        log::warn!("{e}; reconnecting when there is something to send");
                    }
                }
            }
        }
    }
    // A clean stop: the sink says goodbye (MQTT: the retained offline state).
    sink.close().await;
}
