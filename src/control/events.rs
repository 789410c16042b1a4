//! State events: what changed in the agent, told once, in order, with a sequence number.
//!
//! An event (config applied or failed, pipeline added or removed, spool above its threshold or
//! back under it, disk full or ok, an alert raised or cleared) goes to `P/I/events` over the
//! MQTT fleet link as one JSON object (README, "MQTT topics"):
//! `{"instance":"gw-1","seq":42,"at":1795378650,"kind":"config_failed","name":"app","version":7,"message":"..."}`.
//!
//! **Memory.** [`Queue`] holds at most [`CAPACITY`] events, each message cut at
//! [`MAX_MESSAGE`] bytes and each name at [`MAX_NAME`]: the limit is in the type's constants,
//! not in how long the link was down. A new event replaces a waiting one of the same family
//! (config, pipeline, spool, disk, alert) and name — only the latest state matters to a
//! viewer — and takes its place at the end, so what is published stays in the order things
//! last happened; the one replaced is counted (`coalesced` in the event that replaced it,
//! and in [`Queue::coalesced`]). Past the capacity, the oldest waiting event is dropped and
//! counted (`dropped` in the next event numbered, and [`Queue::dropped`]).
//!
//! **Numbers.** An event is numbered when it is first handed to the link, not when it is
//! raised: an event coalesced or dropped never had a number, so numbers on the wire are
//! consecutive within a run and what was lost shows in `coalesced`/`dropped`, not as a gap
//! that means nothing. A number once given is the event's for good: a publish that got no
//! PUBACK is sent again with the same number (a repeat is harmless, a subscriber drops it),
//! and a later event of the same family and name does not replace it (a subscriber may have
//! it already). Numbers never go backwards across restarts: they are reserved on disk
//! [`BLOCK`] at a time in `data_dir/fleet.events.seq`, as `mqtt.session` reserves session
//! numbers; a clean stop writes the last number used, so a restart goes on from it without a
//! gap, and a crash leaves a gap of less than a block. A missing or unreadable file starts
//! from the wall clock's seconds (above any count of events published so far at less than one
//! a second on average).
//!
//! [`Queue`] is plain state (no clock, no I/O; the time of each event is passed in);
//! [`Bus`] is the agent-wide handle around it: the clock, the file, and a wake-up for the
//! fleet link.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Events waiting, at most.
pub const CAPACITY: usize = 64;
/// Bytes of an event's message kept, at most (cut at a character boundary).
pub const MAX_MESSAGE: usize = 512;
/// Bytes of an event's name kept, at most.
pub const MAX_NAME: usize = 128;
/// Numbers reserved on disk by one write.
pub const BLOCK: u64 = 100;
/// The file in `data_dir` that keeps the numbers reserved.
pub const SEQ_FILE: &str = "fleet.events.seq";

/// What happened. The wire name is [`Kind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A config from the fleet runs (`name`, `version`).
    ConfigApplied,
    /// A config from the fleet was refused (`name`, `version`, `message`).
    ConfigFailed,
    /// A pipeline from the fleet started (`name`).
    PipelineAdded,
    /// A pipeline from the fleet was taken out (`name`).
    PipelineRemoved,
    /// The spools hold more than the threshold (`message` says how much).
    SpoolHigh,
    /// The spools are back under it.
    SpoolOk,
    /// Reading is paused for lack of disk.
    DiskFull,
    /// Reading goes on.
    DiskOk,
    /// An alert is raised (`name`, `message`).
    AlertRaised,
    /// An alert is cleared (`name`).
    AlertCleared,
}

impl Kind {
    /// The `kind` on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ConfigApplied => "config_applied",
            Kind::ConfigFailed => "config_failed",
            Kind::PipelineAdded => "pipeline_added",
            Kind::PipelineRemoved => "pipeline_removed",
            Kind::SpoolHigh => "spool_high",
            Kind::SpoolOk => "spool_ok",
            Kind::DiskFull => "disk_full",
            Kind::DiskOk => "disk_ok",
            Kind::AlertRaised => "alert_raised",
            Kind::AlertCleared => "alert_cleared",
        }
    }

    /// Kinds of one family say the same thing's state: the later one replaces the earlier.
    fn family(self) -> u8 {
        match self {
            Kind::ConfigApplied | Kind::ConfigFailed => 0,
            Kind::PipelineAdded | Kind::PipelineRemoved => 1,
            Kind::SpoolHigh | Kind::SpoolOk => 2,
            Kind::DiskFull | Kind::DiskOk => 3,
            Kind::AlertRaised | Kind::AlertCleared => 4,
        }
    }
}

/// One event. Fields that do not apply are `None` and left out of the JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: Kind,
    /// The config, pipeline or alert it is about.
    pub name: Option<String>,
    /// The config's version.
    pub version: Option<i64>,
    /// Words for a person.
    pub message: Option<String>,
    /// When it happened, Unix seconds.
    pub at: u64,
}

impl Event {
    /// An event of `kind` about `name` at `at`, with nothing else.
    pub fn new(kind: Kind, name: Option<&str>, at: u64) -> Event {
        Event {
            kind,
            name: name.map(str::to_string),
            version: None,
            message: None,
            at,
        }
    }
}

/// An event waiting, and what it carries besides.
#[derive(Debug)]
struct Waiting {
    ev: Event,
    /// Its number, once handed to the link.
    seq: Option<u64>,
    /// Events of its family and name that it replaced.
    coalesced: u64,
    /// Events dropped for room before it was numbered.
    dropped: u64,
}

/// The next event to publish (from [`Queue::next`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Next {
    /// Its number.
    pub seq: u64,
    /// Write this to the numbers file before publishing: the block reserved so far is used up.
    pub reserve: Option<u64>,
    /// The JSON to publish.
    pub payload: Vec<u8>,
}

/// Events waiting for the link, in order: bounded, coalescing (module doc).
#[derive(Debug)]
pub struct Queue {
    waiting: VecDeque<Waiting>,
    /// The last number handed out.
    last: u64,
    /// Numbers up to this are reserved on disk.
    reserved: u64,
    /// Dropped for room since the last event was numbered.
    dropped_since: u64,
    /// Events replaced by a later one of the same family and name, since the start.
    pub coalesced: u64,
    /// Events dropped for room, since the start.
    pub dropped: u64,
}

impl Queue {
    /// An empty queue whose numbers go on after `last` (reserved on disk up to there).
    pub fn new(last: u64) -> Queue {
        Queue {
            waiting: VecDeque::new(),
            last,
            reserved: last,
            dropped_since: 0,
            coalesced: 0,
            dropped: 0,
        }
    }

    /// Events waiting (the one being published included).
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The last number handed out.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Adds `ev`: it replaces a waiting, not yet numbered event of its family and name, else
    /// takes the oldest not yet numbered one's room when [`CAPACITY`] events wait.
    pub fn push(&mut self, mut ev: Event) {
        if let Some(m) = &mut ev.message {
            cut(m, MAX_MESSAGE);
        }
        if let Some(n) = &mut ev.name {
            cut(n, MAX_NAME);
        }
        let mut w = Waiting {
            ev,
            seq: None,
            coalesced: 0,
            dropped: 0,
        };
        let same = self.waiting.iter().position(|o| {
            o.seq.is_none() && o.ev.kind.family() == w.ev.kind.family() && o.ev.name == w.ev.name
        });
        if let Some(i) = same {
            let old = self.waiting.remove(i).expect("found");
            w.coalesced = old.coalesced + 1;
            w.dropped = old.dropped;
            self.coalesced += 1;
        } else if self.waiting.len() >= CAPACITY {
            // The one being published (numbered, at the front) stays: it may be on the wire.
            let i = usize::from(self.waiting.front().is_some_and(|f| f.seq.is_some()));
            if let Some(old) = self.waiting.remove(i) {
                self.dropped += 1;
                self.dropped_since += 1 + old.dropped;
            }
        }
        self.waiting.push_back(w);
    }

    /// The oldest event, numbered (the same number again until [`published`](Self::published)),
    /// as JSON from `instance`; `None` when nothing waits.
    pub fn next(&mut self, instance: &str) -> Option<Next> {
        let mut reserve = None;
        let front = self.waiting.front_mut()?;
        let seq = match front.seq {
            Some(s) => s,
            None => {
                self.last += 1;
                if self.last > self.reserved {
                    self.reserved = self.last + BLOCK - 1;
                    reserve = Some(self.reserved);
                }
                front.seq = Some(self.last);
                front.dropped += std::mem::take(&mut self.dropped_since);
                self.last
            }
        };
        Some(Next {
            seq,
            reserve,
            payload: json(instance, seq, front),
        })
    }

    /// The broker has event `seq`: it leaves the queue.
    pub fn published(&mut self, seq: u64) {
        if self.waiting.front().and_then(|w| w.seq) == Some(seq) {
            self.waiting.pop_front();
        }
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary, marking the cut with `…`.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut at = max - '…'.len_utf8();
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
        s.push('…');
    }
}

fn json(instance: &str, seq: u64, w: &Waiting) -> Vec<u8> {
    use crate::frame::json::push_str;
    let e = &w.ev;
    let mut j = String::from("{\"instance\":");
    push_str(&mut j, instance);
    j.push_str(&format!(
        ",\"seq\":{seq},\"at\":{},\"kind\":\"{}\"",
        e.at,
        e.kind.as_str()
    ));
    if let Some(n) = &e.name {
        j.push_str(",\"name\":");
        push_str(&mut j, n);
    }
    if let Some(v) = e.version {
        j.push_str(&format!(",\"version\":{v}"));
    }
    if let Some(m) = &e.message {
        j.push_str(",\"message\":");
        push_str(&mut j, m);
    }
    if w.coalesced > 0 {
        j.push_str(&format!(",\"coalesced\":{}", w.coalesced));
    }
    if w.dropped > 0 {
        j.push_str(&format!(",\"dropped\":{}", w.dropped));
    }
    j.push('}');
    j.into_bytes()
}

/// Spool and disk, sampled: turns levels into `spool_high`/`spool_ok` and
/// `disk_full`/`disk_ok` edges. Spool: high at or above the threshold, ok again below 90 % of
/// it (hysteresis: a spool hovering at the threshold does not flap).
#[derive(Debug, Default)]
pub struct Levels {
    spool_high: bool,
    disk_full: bool,
}

impl Levels {
    /// The events that `spool_bytes` against `threshold` and `disk_full` (pipelines paused for
    /// lack of disk) make now, at `at`.
    pub fn sample(
        &mut self,
        spool_bytes: u64,
        threshold: u64,
        disk_full: u32,
        at: u64,
    ) -> Vec<Event> {
        let mut out = Vec::new();
        let high = if self.spool_high {
            spool_bytes >= threshold / 10 * 9
        } else {
            spool_bytes >= threshold
        };
        if high != self.spool_high {
            self.spool_high = high;
            let mut e = Event::new(if high { Kind::SpoolHigh } else { Kind::SpoolOk }, None, at);
            e.message = Some(format!(
                "spool {spool_bytes} bytes, threshold {threshold} bytes"
            ));
            out.push(e);
        }
        let full = disk_full > 0;
        if full != self.disk_full {
            self.disk_full = full;
            let mut e = Event::new(if full { Kind::DiskFull } else { Kind::DiskOk }, None, at);
            if full {
                e.message = Some(format!(
                    "the disk under data_dir is full: reading paused in {disk_full} pipeline(s)"
                ));
            }
            out.push(e);
        }
        out
    }
}

/// The agent's events: one per agent, shared by whoever raises them (the control plane,
/// the agent's alerts) and the fleet link that publishes them. Bounded as [`Queue`] is.
///
/// To raise or clear a named alert, one call: [`Bus::alert`].
#[derive(Debug)]
pub struct Bus {
    q: RefCell<Queue>,
    file: PathBuf,
    ring: (smol::channel::Sender<()>, smol::channel::Receiver<()>),
}

impl Bus {
    /// The events of the agent whose data is in `data_dir`: numbers go on from
    /// `data_dir/fleet.events.seq` (module doc).
    pub fn open(data_dir: &Path) -> Bus {
        let file = data_dir.join(SEQ_FILE);
        let last = match std::fs::read_to_string(&file) {
            Ok(t) => t.trim().parse::<u64>().unwrap_or_else(|_| {
                log::warn!(
                    "{}: not a number; event numbers go on from the clock",
                    file.display()
                );
                unix_s()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => unix_s(),
            Err(e) => {
                log::warn!(
                    "{}: {e}; event numbers go on from the clock",
                    file.display()
                );
                unix_s()
            }
        };
        Bus {
            q: RefCell::new(Queue::new(last)),
            file,
            ring: smol::channel::bounded(1),
        }
    }

    /// Raises `ev` (its `at` is set to now) and wakes the fleet link.
    pub fn raise(&self, mut ev: Event) {
        ev.at = unix_s();
        log::debug!(
            "event {} {:?} {:?}",
            ev.kind.as_str(),
            ev.name.as_deref().unwrap_or(""),
            ev.message.as_deref().unwrap_or("")
        );
        self.q.borrow_mut().push(ev);
        let _ = self.ring.0.try_send(());
    }

    /// Raises (`raised`) or clears alert `name`: an `alert_raised` event with `message`, or an
    /// `alert_cleared` one (with `message` if it is not empty). Call it on each change, not
    /// on each evaluation: every call is an event (a repeat waiting for the link replaces the
    /// one before it).
    ///
    /// ```ignore
    /// events.alert("read_ack_p99", true, "read→ack p99 1250 ms over 1000 ms for 60 s");
    /// events.alert("read_ack_p99", false, "");
    /// ```
    pub fn alert(&self, name: &str, raised: bool, message: &str) {
        let mut e = Event::new(
            if raised {
                Kind::AlertRaised
            } else {
                Kind::AlertCleared
            },
            Some(name),
            0,
        );
        e.message = (!message.is_empty()).then(|| message.to_string());
        self.raise(e);
    }

    /// Runs `f` on the queue.
    pub fn with<R>(&self, f: impl FnOnce(&mut Queue) -> R) -> R {
        f(&mut self.q.borrow_mut())
    }

    /// Waits until an event is raised (at once if one was raised since the last wait).
    pub async fn rung(&self) {
        let _ = self.ring.1.recv().await;
    }

    /// Writes `upto` to the numbers file, durably (a failure is logged: numbers still grow
    /// within this run).
    pub fn reserve(&self, upto: u64) {
        let tmp = self.file.with_extension("seq.tmp");
        let written = std::fs::File::create(&tmp)
            .and_then(|mut f| {
                writeln!(f, "{upto}")?;
                f.sync_data()
            })
            .and_then(|()| std::fs::rename(&tmp, &self.file));
        if let Err(e) = written {
            log::warn!("{}: {e}", self.file.display());
        }
    }

    /// At a clean stop: the last number used becomes the reserved one, so the next start
    /// goes on from it without a gap.
    pub fn close(&self) {
        let last = {
            let mut q = self.q.borrow_mut();
            // Numbers past `last` are reserved again before use: else, after this write, a
            // crash would hand out again numbers this run goes on to use.
            q.reserved = q.last;
            q.last
        };
        self.reserve(last);
    }
}

fn unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: Kind, name: &str, at: u64) -> Event {
        Event::new(kind, Some(name), at)
    }

    fn drain(q: &mut Queue) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(n) = q.next("gw-1") {
            q.published(n.seq);
            out.push(String::from_utf8(n.payload).unwrap());
        }
        out
    }

    #[test]
    fn the_contract_shape_with_fields_that_do_not_apply_left_out() {
        let mut q = Queue::new(41);
        let mut e = ev(Kind::ConfigFailed, "app", 1795378650);
        e.version = Some(7);
        e.message = Some("bad \"x\"".into());
        q.push(e);
        q.push(Event::new(Kind::DiskOk, None, 1795378651));
        assert_eq!(
            drain(&mut q),
            [
                r#"{"instance":"gw-1","seq":42,"at":1795378650,"kind":"config_failed","name":"app","version":7,"message":"bad \"x\""}"#,
                r#"{"instance":"gw-1","seq":43,"at":1795378651,"kind":"disk_ok"}"#,
            ]
        );
    }

    #[test]
    fn numbers_are_given_when_published_and_kept_for_a_retry() {
        let mut q = Queue::new(0);
        q.push(ev(Kind::ConfigFailed, "app", 1));
        q.push(ev(Kind::ConfigApplied, "web", 2));
        let a = q.next("i").unwrap();
        assert_eq!((a.seq, a.reserve), (1, Some(BLOCK)));
        // No PUBACK: the same number, the same bytes, nothing more reserved.
        let again = q.next("i").unwrap();
        assert_eq!((again.seq, again.reserve), (1, None));
        assert_eq!(again.payload, a.payload);
        // A later state of `app` while it is on the wire does not replace it.
        q.push(ev(Kind::ConfigApplied, "app", 3));
        q.published(1);
        // A stale PUBACK does nothing.
        q.published(1);
        let b = q.next("i").unwrap();
        assert_eq!(b.seq, 2);
        q.published(2);
        assert_eq!(q.next("i").unwrap().seq, 3);
    }

    #[test]
    fn a_later_state_of_the_same_thing_replaces_it_in_order_and_is_counted() {
        let mut q = Queue::new(10);
        q.push(ev(Kind::ConfigFailed, "app", 1));
        q.push(ev(Kind::AlertRaised, "p99", 2));
        q.push(ev(Kind::ConfigApplied, "app", 3));
        q.push(ev(Kind::ConfigFailed, "app", 4));
        // A pipeline of the same name is another family.
        q.push(ev(Kind::PipelineAdded, "app", 5));
        assert_eq!(q.len(), 3);
        assert_eq!(q.coalesced, 2);
        let out = drain(&mut q);
        assert_eq!(out.len(), 3);
        assert!(
            out[0].contains(r#""seq":11,"at":2,"kind":"alert_raised""#),
            "{out:?}"
        );
        assert!(
            out[1].contains(r#""seq":12,"at":4,"kind":"config_failed""#)
                && out[1].ends_with(r#","coalesced":2}"#),
            "{out:?}"
        );
        assert!(
            out[2].contains(r#""seq":13,"at":5,"kind":"pipeline_added""#),
            "{out:?}"
        );
    }

    #[test]
    fn the_queue_never_holds_more_than_its_capacity_and_counts_what_it_drops() {
        let mut q = Queue::new(0);
        // One on the wire: it stays whatever comes.
        q.push(ev(Kind::AlertRaised, "first", 0));
        assert_eq!(q.next("i").unwrap().seq, 1);
        for i in 0..1000u64 {
            q.push(ev(Kind::AlertRaised, &format!("a{i}"), i));
            assert!(q.len() <= CAPACITY);
        }
        assert_eq!(q.len(), CAPACITY);
        assert_eq!(q.dropped, 1000 - (CAPACITY as u64 - 1));
        q.published(1);
        let out = drain(&mut q);
        assert_eq!(out.len(), CAPACITY - 1);
        // The oldest went; the newest are there, numbered on from 2 without a gap; the first
        // numbered after the loss says how many were lost.
        assert!(out[0].contains(r#""seq":2,"#), "{}", out[0]);
        assert!(out[0].contains(r#""name":"a937""#), "{}", out[0]);
        assert!(out[0].ends_with(r#","dropped":937}"#), "{}", out[0]);
        assert!(out.last().unwrap().contains(r#""name":"a999""#));
        assert!(!out[1].contains("dropped"));
    }

    #[test]
    fn long_messages_and_names_are_cut() {
        let mut q = Queue::new(0);
        let mut e = ev(Kind::AlertRaised, &"n".repeat(1000), 0);
        e.message = Some("é".repeat(1000));
        q.push(e);
        let out = String::from_utf8(q.next("i").unwrap().payload).unwrap();
        assert!(out.len() < MAX_MESSAGE + MAX_NAME + 100, "{}", out.len());
        assert!(out.contains("é…\""));
    }

    #[test]
    fn spool_and_disk_levels_become_edges_with_hysteresis() {
        let mut l = Levels::default();
        let kinds = |v: Vec<Event>| v.into_iter().map(|e| e.kind.as_str()).collect::<Vec<_>>();
        assert!(l.sample(10, 1000, 0, 1).is_empty());
        assert_eq!(
            kinds(l.sample(1000, 1000, 1, 2)),
            ["spool_high", "disk_full"]
        );
        // Between 90 % and the threshold: still high.
        assert!(l.sample(950, 1000, 1, 3).is_empty());
        assert_eq!(kinds(l.sample(899, 1000, 0, 4)), ["spool_ok", "disk_ok"]);
        assert!(l.sample(950, 1000, 0, 5).is_empty());
    }

    #[test]
    fn numbers_go_on_after_a_restart_from_the_file() {
        let dir = std::env::temp_dir().join(format!("tailbeat-events-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let bus = Bus::open(&dir);
        // A fresh data_dir starts from the clock.
        let first = bus.with(|q| q.last());
        assert!(first > 1_700_000_000, "{first}");
        bus.alert("a", true, "m");
        let n = bus.with(|q| q.next("i")).unwrap();
        assert_eq!(n.seq, first + 1);
        bus.reserve(n.reserve.unwrap());
        bus.with(|q| q.published(n.seq));
        // A crash: the next run goes on past the block.
        assert_eq!(Bus::open(&dir).with(|q| q.last()), first + BLOCK);
        // A clean stop: from the last one used.
        bus.close();
        assert_eq!(Bus::open(&dir).with(|q| q.last()), first + 1);
        // Used on after a clean stop (the link started again): reserved again first.
        bus.alert("a", false, "");
        let n = bus.with(|q| q.next("i")).unwrap();
        assert_eq!((n.seq, n.reserve), (first + 2, Some(first + 1 + BLOCK)));
        std::fs::write(dir.join(SEQ_FILE), "junk").unwrap();
        assert!(Bus::open(&dir).with(|q| q.last()) > 1_700_000_000);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
