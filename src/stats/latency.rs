//! Latency per stage of the data path, and the alerts read from it.
//!
//! Owns: the stage timestamps of frames in flight ([`Track`], one per pipeline), the
//! per-stage histograms over a sliding window ([`Window`], one per agent), the sampler that
//! decides which frames are timed ([`Sampler`]), and the alert state ([`Alerts`]). Touches no
//! clock, file or socket: every call takes `now`, so the tests drive it with a fake clock.
//!
//! What always holds:
//! - memory is fixed: a [`Track`] holds at most [`TRACKED`] frames (about 40 bytes each), a
//!   [`Window`] [`SUBS`] × [`STAGES`] histograms of [`BUCKETS`] counters (12 KiB), whatever
//!   the load or how long the sink is away. A frame sampled while its pipeline's track is
//!   full is simply not timed;
//! - stage times are on the monotonic clock, per frame: read (the look that found the
//!   batch's first line), closed (the batch finished into a frame), spooled (the spool's
//!   fsync after it was appended: durable), sent (handed to the sink; a retransmission
//!   moves it), acknowledged. Nothing of this goes into the frame: the wire format is
//!   unchanged;
//! - a frame read before a restart has no stamps (they lived in memory): it is in no stage's
//!   histogram, end to end included. Its age still shows in `oldest_unacked_age_ms`, from
//!   the wall-clock time the frame carries, and the `oldest_unacked` alert watches that;
//! - a frame not acknowledged (dropped by `drop_oldest` before it was sent) is forgotten at
//!   the next acknowledgement past it, never counted as a latency.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The stages, in the order of [`STAGE_NAMES`].
pub const STAGES: usize = 5;
/// Names of the stages, as in the metrics' `stage` label and the heartbeat keys.
pub const STAGE_NAMES: [&str; STAGES] = [
    "read_closed",
    "closed_spooled",
    "spooled_sent",
    "sent_acked",
    "read_acked",
];
/// Index of the end-to-end stage (read → acknowledged) in [`STAGE_NAMES`].
pub const READ_ACKED: usize = 4;

/// Exact buckets below this many milliseconds; above, [`SUB`] per power of two.
const LINEAR: u64 = 8;
/// Buckets per power of two above [`LINEAR`]: a figure is off by at most 1/(2·SUB) of
/// itself (12.5 %) when read back as its bucket's middle.
const SUB: u64 = 4;
/// The largest power of two kept apart: 2^25 ms is 9.3 hours; anything longer counts there.
const TOP_OCTAVE: u32 = 25;
/// Buckets per histogram.
pub const BUCKETS: usize = (LINEAR + (TOP_OCTAVE as u64 - 2) * SUB) as usize;

/// The bucket of `ms`.
fn bucket(ms: u64) -> usize {
    if ms < LINEAR {
        return ms as usize;
    }
    let octave = (63 - ms.leading_zeros()).min(TOP_OCTAVE);
    if octave == TOP_OCTAVE && ms >= 1 << (TOP_OCTAVE + 1) {
        return BUCKETS - 1;
    }
    let sub = (ms >> (octave - 2)) & (SUB - 1);
    (LINEAR + (octave as u64 - 3) * SUB + sub) as usize
}

/// The figure a bucket stands for: its middle (its only value below [`LINEAR`]).
fn value_of(b: usize) -> u64 {
    let b = b as u64;
    if b < LINEAR {
        return b;
    }
    let octave = 3 + (b - LINEAR) / SUB;
    let sub = (b - LINEAR) % SUB;
    let width = 1u64 << (octave - 2);
    (1 << octave) + sub * width + width / 2
}

/// Milliseconds, counted in log-scale buckets: fixed size ([`BUCKETS`] counters).
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: [u32; BUCKETS],
    n: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: [0; BUCKETS],
            n: 0,
        }
    }
}

impl Histogram {
    /// Counts one figure.
    pub fn record(&mut self, ms: u64) {
        let c = &mut self.counts[bucket(ms)];
        *c = c.saturating_add(1);
        self.n += 1;
    }

    /// Adds `other`'s counts to this one's.
    pub fn add(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a = a.saturating_add(*b);
        }
        self.n += other.n;
    }

    /// Figures counted.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// The `q` quantile (0 < q ≤ 1) in ms, `None` when empty: the smallest bucket holding
    /// the `ceil(q·n)`-th figure.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0u64;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return Some(value_of(b));
            }
        }
        Some(value_of(BUCKETS - 1))
    }

    /// p50, p90, p99 in ms (saturated to `u32`), `None` when empty.
    pub fn percentiles(&self) -> Option<[u32; 3]> {
        let q = |q| self.quantile(q).map(|v| v.min(u32::MAX.into()) as u32);
        Some([q(0.5)?, q(0.9)?, q(0.99)?])
    }
}

/// Sub-windows in a [`Window`].
pub const SUBS: usize = 6;

/// One sub-window: which one it is (counted from the window's origin) and its histograms.
#[derive(Debug, Clone, Default)]
struct Slot {
    epoch: u64,
    stages: [Histogram; STAGES],
}

/// Per-stage histograms over a sliding window: the last [`SUBS`] sub-windows of
/// `length / SUBS` each (one minute in six 10 s slices by default). A quantile reads the
/// current sub-window and the five before it, so a figure leaves the window between
/// `length · 5/6` and `length` after it was counted. Fixed size.
#[derive(Debug, Clone)]
pub struct Window {
    origin: Instant,
    sub: Duration,
    slots: [Slot; SUBS],
}

impl Window {
    /// The length a window asked for `length` has (a whole number of sub-windows).
    pub fn length_for(length: Duration) -> Duration {
        (length / SUBS as u32).max(Duration::from_millis(1)) * SUBS as u32
    }

    /// A window of `length` (at least [`SUBS`] ms) starting at `now`.
    pub fn new(length: Duration, now: Instant) -> Window {
        let sub = (length / SUBS as u32).max(Duration::from_millis(1));
        let mut slots: [Slot; SUBS] = Default::default();
        // Epoch 0 is the current sub-window; the others are marked as long past.
        for s in slots.iter_mut() {
            s.epoch = u64::MAX;
        }
        Window {
            origin: now,
            sub,
            slots,
        }
    }

    /// The window's length.
    pub fn length(&self) -> Duration {
        self.sub * SUBS as u32
    }

    fn epoch(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.origin).as_nanos() / self.sub.as_nanos()) as u64
    }

    /// Counts `ms` for stage `stage` (an index into [`STAGE_NAMES`]) at `now`.
    pub fn record(&mut self, stage: usize, ms: u64, now: Instant) {
        let e = self.epoch(now);
        let slot = &mut self.slots[(e % SUBS as u64) as usize];
        if slot.epoch != e {
            *slot = Slot {
                epoch: e,
                ..Slot::default()
            };
        }
        slot.stages[stage].record(ms);
    }

    /// Stage `stage`'s figures in the window at `now`, merged.
    pub fn merged(&self, stage: usize, now: Instant) -> Histogram {
        let e = self.epoch(now);
        let mut h = Histogram::default();
        for s in &self.slots {
            if s.epoch <= e && e - s.epoch < SUBS as u64 {
                h.add(&s.stages[stage]);
            }
        }
        h
    }

    /// p50, p90, p99 of every stage at `now`, `None` for a stage with no figure in the window.
    pub fn percentiles(&self, now: Instant) -> [Option<[u32; 3]>; STAGES] {
        std::array::from_fn(|i| self.merged(i, now).percentiles())
    }
}

/// Decides which frames are timed: all of them up to `per_sec` frames a second, then one in
/// `k`, `k` following the last second's rate, so timing costs the same at 10 or 10,000
/// frames a second. `per_sec = 0` times none.
#[derive(Debug, Clone)]
pub struct Sampler {
    per_sec: u32,
    every: u64,
    seen: u64,
    this_sec: u64,
    sec_start: Option<Instant>,
}

impl Sampler {
    /// At most about `per_sec` frames a second.
    pub fn new(per_sec: u32) -> Sampler {
        Sampler {
            per_sec,
            every: 1,
            seen: 0,
            this_sec: 0,
            sec_start: None,
        }
    }

    /// Whether the frame closed at `now` is timed.
    pub fn take(&mut self, now: Instant) -> bool {
        if self.per_sec == 0 {
            return false;
        }
        let start = *self.sec_start.get_or_insert(now);
        if now.saturating_duration_since(start) >= Duration::from_secs(1) {
            self.every = (self.this_sec / u64::from(self.per_sec)).max(1);
            self.this_sec = 0;
            self.sec_start = Some(now);
        }
        self.this_sec += 1;
        self.seen += 1;
        self.seen % self.every == 0
    }

    /// Changes the target rate (a new config); the next second's rate sets `k` again.
    pub fn set_rate(&mut self, per_sec: u32) {
        self.per_sec = per_sec;
    }

    /// One in how many frames is timed now.
    pub fn every(&self) -> u64 {
        self.every
    }
}

/// Frames one pipeline's track keeps timestamps for, at most.
pub const TRACKED: usize = 128;

/// Not stamped yet.
const UNSET: u32 = u32::MAX;

/// One timed frame: its read time, and the later stages in ms after it ([`UNSET`] until
/// then), which keeps it at 40 bytes.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    seq: u64,
    read: Instant,
    closed: u32,
    spooled: u32,
    sent: u32,
}

fn ms_since(t: Instant, now: Instant) -> u32 {
    now.saturating_duration_since(t)
        .as_millis()
        .min(u128::from(UNSET - 1)) as u32
}

/// The stage timestamps of one pipeline's frames in flight (read, not yet acknowledged),
/// for the sampled ones: at most [`TRACKED`].
#[derive(Debug, Clone)]
pub struct Track {
    sampler: Sampler,
    /// When the open batch's first line was read.
    opened: Option<Instant>,
    /// The frame finished but not yet in the spool (at most one: the spool's `pending`):
    /// read and closed times, if it is timed.
    closing: Option<(Instant, u32)>,
    frames: VecDeque<Stamp>,
    /// Frames at the back of `frames` not yet stamped spooled.
    unsynced: usize,
}

impl Track {
    /// A track that times about `per_sec` frames a second.
    pub fn new(per_sec: u32) -> Track {
        Track {
            sampler: Sampler::new(per_sec),
            opened: None,
            closing: None,
            frames: VecDeque::new(),
            unsynced: 0,
        }
    }

    /// The open batch holds lines at `now`; the first call after a close marks its read time.
    pub fn reading(&mut self, now: Instant) {
        self.opened.get_or_insert(now);
    }

    /// The open batch was finished into a frame at `now`.
    pub fn closed(&mut self, now: Instant) {
        let read = self.opened.take().unwrap_or(now);
        self.closing = self.sampler.take(now).then(|| (read, ms_since(read, now)));
    }

    /// The frame last closed went into the spool as `seq` (written, not yet synced).
    pub fn appended(&mut self, seq: u64) {
        let Some((read, closed)) = self.closing.take() else {
            return;
        };
        if self.frames.len() >= TRACKED {
            return;
        }
        if self.frames.capacity() < TRACKED {
            self.frames.reserve_exact(TRACKED - self.frames.len());
        }
        self.frames.push_back(Stamp {
            seq,
            read,
            closed,
            spooled: UNSET,
            sent: UNSET,
        });
        self.unsynced += 1;
    }

    /// Times about `per_sec` frames a second from now on.
    pub fn set_rate(&mut self, per_sec: u32) {
        self.sampler.set_rate(per_sec);
    }

    /// Whether some timed frame waits for the spool's sync.
    pub fn unsynced(&self) -> bool {
        self.unsynced > 0
    }

    /// The spool was synced at `now`: every frame appended before is durable.
    pub fn synced(&mut self, now: Instant) {
        let n = self.frames.len();
        for f in self.frames.range_mut(n - self.unsynced..) {
            f.spooled = ms_since(f.read, now);
        }
        self.unsynced = 0;
    }

    /// Frame `seq` was handed to the sink at `now`.
    pub fn sent(&mut self, seq: u64, now: Instant) {
        if let Ok(i) = self.frames.binary_search_by_key(&seq, |f| f.seq) {
            let f = &mut self.frames[i];
            f.sent = ms_since(f.read, now);
        }
    }

    /// The sink acknowledged every frame up to `seq` at `now`: each timed one that was sent
    /// goes into `w`, stage by stage; all of them are forgotten.
    pub fn acked(&mut self, seq: u64, now: Instant, w: &mut Window) {
        while let Some(f) = self.frames.front() {
            if f.seq > seq {
                break;
            }
            let f = self.frames.pop_front().unwrap_or_else(|| unreachable!());
            if self.unsynced > self.frames.len() {
                self.unsynced = self.frames.len();
            }
            if f.sent == UNSET || f.spooled == UNSET {
                // Dropped unsent (drop_oldest), or acked before its sync was seen.
                continue;
            }
            let acked = ms_since(f.read, now);
            let at = [f.closed, f.spooled, f.sent, acked];
            let mut from = 0u32;
            for (stage, &t) in at.iter().enumerate() {
                w.record(stage, u64::from(t.saturating_sub(from)), now);
                from = from.max(t);
            }
            w.record(READ_ACKED, u64::from(acked), now);
        }
    }

    /// Frames timed and in flight now.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether no frame is timed now.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// One frame in how many is timed now.
    pub fn sampling_every(&self) -> u64 {
        self.sampler.every()
    }
}

/// The alerts, in the order of their bits in the heartbeat's `alerts` figure.
pub const ALERT_NAMES: [&str; 4] = [
    "read_to_ack_p99",
    "backlog_bytes",
    "oldest_unacked",
    "free_disk",
];

/// Alert thresholds (`[alerts]`), each `None` when unset: no alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Thresholds {
    /// read→ack p99 over the window, in ms, above which `read_to_ack_p99` is raised.
    pub read_to_ack_p99_ms: Option<u64>,
    /// Bytes not yet acknowledged in the spools above which `backlog_bytes` is raised.
    pub backlog_bytes: Option<u64>,
    /// Age in ms of the oldest line not acknowledged above which `oldest_unacked` is raised.
    pub oldest_unacked_ms: Option<u64>,
    /// Free bytes under `data_dir` below which `free_disk` is raised.
    pub free_disk: Option<u64>,
    /// How long a figure must stay past its clear level before its alert clears.
    pub hold: Duration,
}

/// The figures the alerts look at, at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Figures {
    /// read→ack p99 over the window; `None` when nothing was acknowledged in it, which
    /// counts as below any threshold (a sink that acks nothing is `oldest_unacked`'s case).
    pub read_to_ack_p99_ms: Option<u64>,
    /// Bytes not yet acknowledged in the spools (to within a segment each).
    pub backlog_bytes: u64,
    /// Age of the oldest line not acknowledged, ms (0: none).
    pub oldest_unacked_ms: u64,
    /// Free bytes under `data_dir`, `None` if it cannot be told (no alert then).
    pub free_disk: Option<u64>,
}

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// It went past its threshold.
    Raised,
    /// It came back past its clear level and stayed there for the hold time.
    Cleared,
}

/// Changes kept for [`Alerts::take_changes`] at most; past that the oldest go first.
pub const MAX_CHANGES: usize = 16;

/// The alerts' state: which are raised, since when each figure has been past its clear
/// level, and what changed since the last look. Pure: fed figures and time.
///
/// Hysteresis: an alert is raised as soon as its figure is past the threshold (above it;
/// below it for `free_disk`). It clears once the figure has been back past the clear level —
/// 80 % of the threshold (125 % for `free_disk`) — at every evaluation for `hold`; a figure
/// between the two levels keeps the alert as it is and restarts the hold.
#[derive(Debug, Clone, Default)]
pub struct Alerts {
    raised: [bool; 4],
    calm_since: [Option<Instant>; 4],
    changes: VecDeque<(&'static str, Change)>,
}

/// Each alert's figure, threshold, and whether higher is worse, in [`ALERT_NAMES`] order.
fn looks(f: &Figures, t: &Thresholds) -> [(u64, Option<u64>, bool); 4] {
    [
        (
            f.read_to_ack_p99_ms.unwrap_or(0),
            t.read_to_ack_p99_ms,
            true,
        ),
        (f.backlog_bytes, t.backlog_bytes, true),
        (f.oldest_unacked_ms, t.oldest_unacked_ms, true),
        (f.free_disk.unwrap_or(u64::MAX), t.free_disk, false),
    ]
}

/// What an alert's state event says: its figure and its threshold, e.g.
/// `"6210 ms (threshold 5000 ms)"` (a free disk that cannot be told says 0).
pub fn alert_message(name: &str, f: &Figures, t: &Thresholds) -> String {
    let i = ALERT_NAMES.iter().position(|n| *n == name).unwrap_or(0);
    let (v, thr, _) = looks(f, t)[i];
    let v = if i == 3 { f.free_disk.unwrap_or(0) } else { v };
    let unit = if matches!(i, 0 | 2) { "ms" } else { "bytes" };
    format!("{v} {unit} (threshold {} {unit})", thr.unwrap_or(0))
}

impl Alerts {
    /// Looks at `f` at `now` against `t`.
    pub fn evaluate(&mut self, t: &Thresholds, f: &Figures, now: Instant) {
        for (i, (v, thr, up)) in looks(f, t).into_iter().enumerate() {
            let Some(thr) = thr else {
                // Unset (or unset by a new config): no alert, and a raised one clears.
                if std::mem::take(&mut self.raised[i]) {
                    self.push(i, Change::Cleared);
                }
                self.calm_since[i] = None;
                continue;
            };
            let (past, calm) = if up {
                (v > thr, v <= thr / 5 * 4 + thr % 5 * 4 / 5)
            } else {
                (v < thr, v >= thr.saturating_add(thr / 4))
            };
            if past {
                self.calm_since[i] = None;
                if !self.raised[i] {
                    self.raised[i] = true;
                    self.push(i, Change::Raised);
                }
            } else if calm {
                let since = *self.calm_since[i].get_or_insert(now);
                if self.raised[i] && now.saturating_duration_since(since) >= t.hold {
                    self.raised[i] = false;
                    self.push(i, Change::Cleared);
                }
            } else {
                self.calm_since[i] = None;
            }
        }
    }

    fn push(&mut self, i: usize, c: Change) {
        if self.changes.len() >= MAX_CHANGES {
            self.changes.pop_front();
        }
        self.changes.push_back((ALERT_NAMES[i], c));
    }

    /// What changed since the last call, oldest first (at most [`MAX_CHANGES`]): what a
    /// state-event publisher sends as `alert_raised` / `alert_cleared`.
    pub fn take_changes(&mut self) -> Vec<(&'static str, Change)> {
        self.changes.drain(..).collect()
    }

    /// The raised alerts, one bit each in the order of [`ALERT_NAMES`].
    pub fn bits(&self) -> u64 {
        self.raised
            .iter()
            .enumerate()
            .fold(0, |b, (i, &r)| b | (u64::from(r) << i))
    }

    /// The names of the raised alerts.
    pub fn active(&self) -> impl Iterator<Item = &'static str> + '_ {
        ALERT_NAMES
            .iter()
            .zip(self.raised)
            .filter(|(_, r)| *r)
            .map(|(n, _)| *n)
    }
}

#[cfg(test)]
mod tests;
