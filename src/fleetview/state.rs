//! The fleet as the viewer knows it: plain state fed `(topic, payload, retained, now, wall)`
//! and asked what changed; no socket, no clock (the caller passes the monotonic `now` and,
//! for "since when" only, the wall clock's seconds).
//!
//! Rules:
//! - **Offline** is a death (`"state":"offline"`) of the agent's current session: the
//!   highest session number seen on its state topic. A death of an older session (a late
//!   Will of a link already replaced) is counted (`late_deaths`) and changes nothing; a
//!   message of a newer session, or the same one, applies, so the agent's own rebirth
//!   (`online` again under the same session after it saw its death) brings it back.
//! - **Stale**: an agent that heartbeats (the viewer has seen a heartbeat or a config
//!   status from it) and has not been heard for three intervals, by `now`: since its last
//!   heartbeat, or since the viewer first saw it if none came yet. The interval is the
//!   agent's observed cadence (the time between two heartbeats with consecutive sequence
//!   numbers), else the configured one. A retained heartbeat counts as heard when it
//!   arrives: its age before that is unknown to the viewer's clock.
//! - **Changes** worth a line: state, version, tags, config statuses, losses, alerts, an
//!   event, a gap, garbage, and the derived status (online → stale) as time passes. Backlog
//!   and heartbeat age are shown with them but do not by themselves make a change (every
//!   heartbeat moves them).
//! - **Memory**: at most `max_agents` agents (messages for more are counted in
//!   `overflow`), each with texts, configs, tags and alerts cut to fixed limits
//!   ([`decode`]'s, [`MAX_ALERTS`]).
//! - **Garbage** (a payload that is not its topic's message, one too large) is counted per
//!   topic kind and per agent; it never changes what is known.

use super::decode::{self, Beat, Health, LOSS_KEYS};
use crate::control::proto::ConfigInfo;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Alerts kept per agent.
pub const MAX_ALERTS: usize = 16;

/// How the fleet is read.
#[derive(Debug, Clone)]
pub struct Options {
    /// Topic levels of the prefix (`tailbeat` is 1, `tailbeat/eu/+` is 3): the instance is
    /// the level after them.
    pub prefix_levels: usize,
    /// The heartbeat interval to assume until an agent's cadence is seen.
    pub interval: Duration,
    /// Most agents kept.
    pub max_agents: usize,
    /// Show only agents with every one of these tags.
    pub filter: Vec<(String, String)>,
}

/// What a topic is, after the prefix: `I/state`, `I/heartbeat`, `I/status/pipeline`,
/// `I/status/instance`, `I/events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    /// The birth/death message.
    State,
    /// A `HeartbeatRequest`.
    Heartbeat,
    /// A `ReportConfigRequest` of pipeline configs.
    StatusPipeline,
    /// A `ReportConfigRequest` of instance configs.
    StatusInstance,
    /// A state event.
    Events,
}

impl TopicKind {
    const ALL: [TopicKind; 5] = [
        TopicKind::State,
        TopicKind::Heartbeat,
        TopicKind::StatusPipeline,
        TopicKind::StatusInstance,
        TopicKind::Events,
    ];
    /// The topic's tail, as shown in counts.
    pub fn name(self) -> &'static str {
        match self {
            TopicKind::State => "state",
            TopicKind::Heartbeat => "heartbeat",
            TopicKind::StatusPipeline => "status/pipeline",
            TopicKind::StatusInstance => "status/instance",
            TopicKind::Events => "events",
        }
    }
}

/// The topic filters that cover `prefix` (without a trailing `/`).
pub fn filters(prefix: &str) -> Vec<String> {
    ["state", "heartbeat", "status/+", "events"]
        .iter()
        .map(|t| format!("{prefix}/+/{t}"))
        .collect()
}

/// The instance and kind of `topic`, or `None` for a topic that is none of the fleet's.
pub fn parse_topic(prefix_levels: usize, topic: &str) -> Option<(&str, TopicKind)> {
    let mut rest = topic;
    for _ in 0..prefix_levels {
        rest = rest.split_once('/')?.1;
    }
    let (instance, tail) = rest.split_once('/')?;
    let kind = match tail {
        "state" => TopicKind::State,
        "heartbeat" => TopicKind::Heartbeat,
        "status/pipeline" => TopicKind::StatusPipeline,
        "status/instance" => TopicKind::StatusInstance,
        "events" => TopicKind::Events,
        _ => return None,
    };
    (!instance.is_empty()).then_some((instance, kind))
}

/// What an agent is, derived at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Its death of its current session was seen.
    Offline,
    /// It missed three heartbeats.
    Stale,
    /// Neither offline nor stale, with a birth or a heartbeat seen.
    Online,
    /// Only statuses or events seen so far.
    Unknown,
}

impl Status {
    /// As shown.
    pub fn name(self) -> &'static str {
        match self {
            Status::Offline => "offline",
            Status::Stale => "stale",
            Status::Online => "online",
            Status::Unknown => "unknown",
        }
    }
}

/// The last heartbeat heard.
#[derive(Debug, Clone)]
pub struct Heard {
    /// When it arrived (the viewer's clock).
    pub at: Instant,
    /// It came from the broker's retained store, not live.
    pub retained: bool,
    /// Its sequence number.
    pub seq: u64,
}

/// The last event, and what the sequence numbers said.
#[derive(Debug, Clone, Default)]
pub struct Events {
    /// Events taken (repeats left out).
    pub count: u64,
    /// The highest sequence number seen.
    pub last_seq: Option<u64>,
    /// Jumps of more than one in the sequence.
    pub gaps: u64,
    /// Sequence numbers skipped in those jumps.
    pub missing: u64,
    /// Events at or below the last number (harmless repeats, or a restart's renumbering).
    pub repeats: u64,
    /// The last one taken.
    pub last: Option<decode::Event>,
}

/// One agent, as known.
#[derive(Debug, Clone)]
pub struct Agent {
    /// Its instance id (from the topic).
    pub instance: String,
    /// When the viewer first heard of it.
    pub first_seen: Instant,
    /// Online or offline, per its current session; `None` before a state message.
    pub online: Option<bool>,
    /// The current session (the highest seen).
    pub session: u64,
    /// The current session's birth (or death) as received.
    pub birth: decode::Birth,
    /// Since when (Unix seconds) it is in that state: the session's connect time when
    /// online; when a death arrived live, the viewer's time then; `None` for a death that
    /// was retained (it happened before the viewer started).
    pub since: Option<u64>,
    /// Deaths of an older session, ignored.
    pub late_deaths: u64,
    /// The last heartbeat heard.
    pub heard: Option<Heard>,
    /// The observed time between heartbeats.
    pub cadence: Option<Duration>,
    /// What the last heartbeat said.
    pub beat: Option<Beat>,
    /// Pipeline configs, from the status topic (or a full heartbeat).
    pub pipelines: Vec<ConfigInfo>,
    /// Instance configs, likewise.
    pub instance_configs: Vec<ConfigInfo>,
    /// It has a fleet link over MQTT: heartbeats are expected from it.
    pub heartbeats: bool,
    /// Alerts raised (by events) and not cleared: name, message. At most [`MAX_ALERTS`].
    pub alerts: Vec<(String, String)>,
    /// The events seen.
    pub events: Events,
    /// Messages on its topics that were not their topic's message.
    pub garbage: u64,
    /// Something shown changed since [`Fleet::changes`] last reported it.
    dirty: bool,
    /// The status last reported by [`Fleet::changes`].
    shown: Option<Status>,
}

impl Agent {
    fn new(instance: &str, now: Instant) -> Agent {
        Agent {
            instance: instance.to_string(),
            first_seen: now,
            online: None,
            session: 0,
            birth: decode::Birth::default(),
            since: None,
            late_deaths: 0,
            heard: None,
            cadence: None,
            beat: None,
            pipelines: Vec::new(),
            instance_configs: Vec::new(),
            heartbeats: false,
            alerts: Vec::new(),
            events: Events::default(),
            garbage: 0,
            dirty: true,
            shown: None,
        }
    }

    /// The tags its last heartbeat carried.
    pub fn tags(&self) -> &[(String, String)] {
        self.beat.as_ref().map_or(&[], |b| &b.tags)
    }

    /// Its version: the birth's, else the heartbeat's.
    pub fn version(&self) -> &str {
        match (&self.birth.version, &self.beat) {
            (v, _) if !v.is_empty() => v,
            (_, Some(b)) => &b.version,
            _ => "",
        }
    }

    /// The health figures of its last heartbeat.
    pub fn health(&self) -> Option<&Health> {
        self.beat.as_ref().map(|b| &b.health)
    }

    /// The sum of its loss counters, and the non-zero ones by key.
    pub fn losses(&self) -> Vec<(&'static str, u64)> {
        self.health().map_or(Vec::new(), |h| {
            LOSS_KEYS
                .iter()
                .zip(h.losses)
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| (*k, n))
                .collect()
        })
    }

    /// The interval its heartbeats are judged by.
    pub fn interval(&self, default: Duration) -> Duration {
        self.cadence.unwrap_or(default)
    }

    /// When it was last heard, for staleness: its last heartbeat, else first seen.
    fn last_heard(&self) -> Instant {
        self.heard.as_ref().map_or(self.first_seen, |h| h.at)
    }

    /// Its status at `now`.
    pub fn status(&self, now: Instant, default: Duration) -> Status {
        if self.online == Some(false) {
            return Status::Offline;
        }
        if self.heartbeats
            && now.saturating_duration_since(self.last_heard()) > 3 * self.interval(default)
        {
            return Status::Stale;
        }
        if self.online == Some(true) || self.heard.is_some() {
            Status::Online
        } else {
            Status::Unknown
        }
    }

    /// When its status would turn stale if nothing is heard.
    fn stale_at(&self, default: Duration) -> Option<Instant> {
        (self.heartbeats && self.online != Some(false))
            .then(|| self.last_heard() + 3 * self.interval(default))
    }

    fn matches(&self, filter: &[(String, String)]) -> bool {
        filter
            .iter()
            .all(|(k, v)| self.tags().iter().any(|(tk, tv)| tk == k && tv == v))
    }
}

/// The whole fleet.
#[derive(Debug)]
pub struct Fleet {
    opts: Options,
    agents: BTreeMap<String, Agent>,
    /// Garbage per topic kind, in [`TopicKind::ALL`] order.
    garbage: [u64; 5],
    /// Messages for agents past `max_agents`, dropped.
    pub overflow: u64,
    /// Fleet-wide counts changed since [`Fleet::changes`] last reported.
    dirty: bool,
}

/// Counts over the agents shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Agents shown (matching the filter).
    pub agents: usize,
    /// Of them online.
    pub online: usize,
    /// Stale.
    pub stale: usize,
    /// Offline.
    pub offline: usize,
    /// Unknown.
    pub unknown: usize,
}

impl Fleet {
    /// An empty fleet.
    pub fn new(opts: Options) -> Fleet {
        Fleet {
            opts,
            agents: BTreeMap::new(),
            garbage: [0; 5],
            overflow: 0,
            dirty: false,
        }
    }

    /// How it is read.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Takes one message. `retained`: the broker's retain flag (set on what it held before
    /// the subscription); `wall`: the viewer's Unix seconds, for "since when".
    pub fn feed(&mut self, topic: &str, payload: &[u8], retained: bool, now: Instant, wall: u64) {
        let Some((instance, kind)) = parse_topic(self.opts.prefix_levels, topic) else {
            return;
        };
        // An empty retained message is the broker's way to delete one: nothing to learn,
        // and not worth an agent.
        if payload.is_empty() {
            return;
        }
        let Some(a) = self.agent(instance, now) else {
            return;
        };
        let ok = match kind {
            TopicKind::State => decode::birth(payload)
                .map(|(online, b)| state(a, online, b, retained, wall))
                .is_ok(),
            TopicKind::Heartbeat => decode::heartbeat(payload)
                .map(|b| heartbeat(a, b, retained, now))
                .is_ok(),
            TopicKind::StatusPipeline | TopicKind::StatusInstance => decode::report(payload)
                .map(|(cs, _)| {
                    a.heartbeats = true;
                    let list = if kind == TopicKind::StatusPipeline {
                        &mut a.pipelines
                    } else {
                        &mut a.instance_configs
                    };
                    if *list != cs {
                        *list = cs;
                        a.dirty = true;
                    }
                })
                .is_ok(),
            TopicKind::Events => decode::event(payload).map(|e| event(a, e)).is_ok(),
        };
        if !ok {
            a.garbage += 1;
            a.dirty = true;
            self.garbage_of(kind);
        }
    }

    /// A message too large to read on `topic` (dropped as it arrived): garbage.
    pub fn too_large(&mut self, topic: &str) {
        if let Some((instance, kind)) = parse_topic(self.opts.prefix_levels, topic) {
            if let Some(a) = self.agents.get_mut(instance) {
                a.garbage += 1;
                a.dirty = true;
            }
            self.garbage_of(kind);
        }
    }

    fn garbage_of(&mut self, kind: TopicKind) {
        let i = TopicKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.garbage[i] += 1;
        self.dirty = true;
    }

    /// The agent `instance`, made if there is room.
    fn agent(&mut self, instance: &str, now: Instant) -> Option<&mut Agent> {
        if !self.agents.contains_key(instance) {
            if self.agents.len() >= self.opts.max_agents {
                self.overflow += 1;
                self.dirty = true;
                return None;
            }
            self.agents
                .insert(instance.to_string(), Agent::new(instance, now));
        }
        self.agents.get_mut(instance)
    }

    /// Garbage counts by topic kind (non-zero ones).
    pub fn garbage(&self) -> Vec<(&'static str, u64)> {
        TopicKind::ALL
            .iter()
            .zip(self.garbage)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.name(), n))
            .collect()
    }

    /// All garbage seen.
    pub fn garbage_total(&self) -> u64 {
        self.garbage.iter().sum()
    }

    /// The agents shown (matching the filter), by instance id.
    pub fn agents(&self) -> impl Iterator<Item = &Agent> {
        self.agents
            .values()
            .filter(|a| a.matches(&self.opts.filter))
    }

    /// One agent, if shown.
    pub fn get(&self, instance: &str) -> Option<&Agent> {
        self.agents
            .get(instance)
            .filter(|a| a.matches(&self.opts.filter))
    }

    /// An agent's status at `now`.
    pub fn status(&self, a: &Agent, now: Instant) -> Status {
        a.status(now, self.opts.interval)
    }

    /// Counts over the agents shown.
    pub fn summary(&self, now: Instant) -> Summary {
        let mut s = Summary::default();
        for a in self.agents() {
            s.agents += 1;
            match self.status(a, now) {
                Status::Online => s.online += 1,
                Status::Stale => s.stale += 1,
                Status::Offline => s.offline += 1,
                Status::Unknown => s.unknown += 1,
            }
        }
        s
    }

    /// The agents shown whose view changed since the last call (a message, or their status
    /// by time), and whether the fleet-wide counts (garbage, overflow) changed.
    pub fn changes(&mut self, now: Instant) -> (Vec<String>, bool) {
        let interval = self.opts.interval;
        let filter = self.opts.filter.clone();
        let mut out = Vec::new();
        for a in self.agents.values_mut() {
            let s = a.status(now, interval);
            if a.dirty || a.shown != Some(s) {
                a.dirty = false;
                a.shown = Some(s);
                if a.matches(&filter) {
                    out.push(a.instance.clone());
                }
            }
        }
        (out, std::mem::take(&mut self.dirty))
    }

    /// When the next agent turns stale after `now` if nothing is heard: when to look again.
    pub fn next_change(&self, now: Instant) -> Option<Instant> {
        self.agents
            .values()
            .filter_map(|a| a.stale_at(self.opts.interval))
            .filter(|t| *t > now)
            .min()
    }
}

fn state(a: &mut Agent, online: bool, b: decode::Birth, retained: bool, wall: u64) {
    // Session 0: an agent from before sessions, which cannot be told apart: it applies.
    if b.session != 0 && b.session < a.session {
        if !online {
            a.late_deaths += 1;
            a.dirty = true;
        }
        return;
    }
    let since = if online {
        Some(b.connected_at).filter(|t| *t != 0)
    } else if retained {
        None
    } else {
        Some(wall)
    };
    if a.online != Some(online) || a.session != b.session || a.birth.version != b.version {
        a.dirty = true;
    }
    if a.online != Some(online) || online {
        a.since = since;
    }
    a.online = Some(online);
    a.session = a.session.max(b.session);
    a.birth = b;
}

fn heartbeat(a: &mut Agent, b: Beat, retained: bool, now: Instant) {
    if let Some(h) = &a.heard {
        // The cadence: two live heartbeats in a row. A repeat (the same number, sent
        // again) or a restart (numbers start over) says nothing about it.
        if !retained && !h.retained && b.seq == h.seq + 1 {
            let d = now.saturating_duration_since(h.at);
            if d >= Duration::from_millis(50) {
                a.cadence = Some(d);
            }
        }
    }
    a.heartbeats = true;
    a.heard = Some(Heard {
        at: now,
        retained,
        seq: b.seq,
    });
    if let Some([p, i]) = &b.configs {
        if *p != a.pipelines || *i != a.instance_configs {
            a.pipelines = p.clone();
            a.instance_configs = i.clone();
            a.dirty = true;
        }
    }
    let shown = |x: &Beat| {
        (
            x.version.clone(),
            x.tags.clone(),
            x.running_status.clone(),
            x.health.losses,
            x.health.disk_full,
        )
    };
    if a.beat.as_ref().map(shown) != Some(shown(&b)) {
        a.dirty = true;
    }
    a.beat = Some(b);
}

fn event(a: &mut Agent, e: decode::Event) {
    let ev = &mut a.events;
    match ev.last_seq {
        Some(last) if e.seq <= last => {
            ev.repeats += 1;
            return;
        }
        Some(last) if e.seq > last + 1 => {
            ev.gaps += 1;
            ev.missing += e.seq - last - 1;
        }
        _ => {}
    }
    ev.last_seq = Some(e.seq);
    ev.count += 1;
    let name = e.name.clone().unwrap_or_default();
    let message = e.message.clone().unwrap_or_default();
    // The kinds that raise and clear something the table shows as an alert.
    let (raise, clear) = match e.kind.as_str() {
        "alert_raised" => (Some(name.clone()), None),
        "alert_cleared" => (None, Some(name.clone())),
        "disk_full" => (Some("disk_full".to_string()), None),
        "disk_ok" => (None, Some("disk_full".to_string())),
        "spool_high" => (Some("spool_high".to_string()), None),
        "spool_ok" => (None, Some("spool_high".to_string())),
        _ => (None, None),
    };
    if let Some(n) = raise {
        match a.alerts.iter().position(|(k, _)| *k == n) {
            Some(i) => a.alerts[i].1 = message,
            None if a.alerts.len() < MAX_ALERTS => a.alerts.push((n, message)),
            None => {}
        }
    }
    if let Some(n) = clear {
        a.alerts.retain(|(k, _)| *k != n);
    }
    a.events.last = Some(e);
    a.dirty = true;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::proto::{
        report_config_request, Attributes, ConfigStatus, HeartbeatRequest,
    };

    fn fleet() -> Fleet {
        Fleet::new(Options {
            prefix_levels: 1,
            interval: Duration::from_secs(10),
            max_agents: 100,
            filter: Vec::new(),
        })
    }

    fn birth(online: bool, session: u64) -> Vec<u8> {
        format!(
            r#"{{"state":"{}","instance":"gw-1","version":"0.1.0","startup_time":100,"session":{session},"connected_at":{}}}"#,
            if online { "online" } else { "offline" },
            1000 + session
        )
        .into_bytes()
    }

    fn beat(seq: u64, tags: &[(&str, &str)]) -> Vec<u8> {
        HeartbeatRequest {
            sequence_num: seq,
            instance_id: "gw-1".into(),
            attributes: Some(Attributes {
                version: "0.1.0".into(),
                extras: vec![("health.spool_frames".into(), b"2".to_vec())],
                ..Default::default()
            }),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
        .encode()
    }

    fn s(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_secs(n)
    }

    #[test]
    fn topics_name_the_instance_after_the_prefix_levels() {
        assert_eq!(
            parse_topic(1, "tailbeat/gw-1/state"),
            Some(("gw-1", TopicKind::State))
        );
        assert_eq!(
            parse_topic(3, "tailbeat/eu/gw/gw-1/status/instance"),
            Some(("gw-1", TopicKind::StatusInstance))
        );
        // Frames, a fleet pipeline's own state, config topics: not the viewer's.
        for t in [
            "tailbeat/gw-1/frames",
            "tailbeat/gw-1/app/state",
            "tailbeat/gw-1/config",
            "tailbeat//state",
            "tailbeat",
        ] {
            assert_eq!(parse_topic(1, t), None, "{t}");
        }
        assert_eq!(
            filters("tb"),
            vec![
                "tb/+/state",
                "tb/+/heartbeat",
                "tb/+/status/+",
                "tb/+/events"
            ]
        );
    }

    #[test]
    fn a_death_of_the_current_session_is_offline_and_a_late_will_of_an_older_one_is_not() {
        let t0 = Instant::now();
        let mut f = fleet();
        f.feed("tailbeat/gw-1/state", &birth(true, 7), true, t0, 5000);
        let a = f.get("gw-1").unwrap();
        assert_eq!(f.status(a, t0), Status::Online);
        assert_eq!(a.since, Some(1007));
        // The Will of session 6 arrives late: ignored, counted.
        f.feed("tailbeat/gw-1/state", &birth(false, 6), false, t0, 5001);
        let a = f.get("gw-1").unwrap();
        assert_eq!((f.status(a, t0), a.late_deaths), (Status::Online, 1));
        // Its own session's death: offline, since the viewer saw it.
        f.feed("tailbeat/gw-1/state", &birth(false, 7), false, t0, 5002);
        let a = f.get("gw-1").unwrap();
        assert_eq!((f.status(a, t0), a.since), (Status::Offline, Some(5002)));
        // The agent answers its own death with a rebirth of the same session.
        f.feed("tailbeat/gw-1/state", &birth(true, 7), false, t0, 5003);
        assert_eq!(f.status(f.get("gw-1").unwrap(), t0), Status::Online);
        // A retained death: since unknown.
        f.feed("tailbeat/gw-2/state", &birth(false, 3), true, t0, 5004);
        let a = f.get("gw-2").unwrap();
        assert_eq!((f.status(a, t0), a.since), (Status::Offline, None));
    }

    #[test]
    fn three_missed_heartbeats_by_the_observed_cadence_make_an_agent_stale() {
        let t0 = Instant::now();
        let mut f = fleet();
        f.feed("tailbeat/gw-1/state", &birth(true, 1), true, t0, 0);
        // A sink-only agent (no heartbeats ever): never stale.
        assert_eq!(
            f.status(f.get("gw-1").unwrap(), s(t0, 3600)),
            Status::Online
        );
        // Heartbeats every 2 s: the cadence, not the configured 10 s, is the measure.
        for n in 1..=3 {
            f.feed(
                "tailbeat/gw-1/heartbeat",
                &beat(n, &[]),
                false,
                s(t0, 2 * n),
                0,
            );
        }
        let a = f.get("gw-1").unwrap();
        assert_eq!(a.cadence, Some(Duration::from_secs(2)));
        assert_eq!(f.status(a, s(t0, 12)), Status::Online);
        assert_eq!(f.status(a, s(t0, 13)), Status::Stale);
        assert_eq!(f.next_change(s(t0, 6)), Some(s(t0, 12)));
        assert_eq!(f.next_change(s(t0, 12)), None);
        // Heard again: online.
        f.feed(
            "tailbeat/gw-1/heartbeat",
            &beat(4, &[]),
            false,
            s(t0, 14),
            0,
        );
        assert_eq!(f.status(f.get("gw-1").unwrap(), s(t0, 14)), Status::Online);
        // An agent known only by a retained status, never heard: stale after three of the
        // configured intervals since the viewer first saw it.
        let st = report_config_request(b"r", "gw-3", &[]);
        f.feed("tailbeat/gw-3/status/pipeline", &st, true, t0, 0);
        let a = f.get("gw-3").unwrap();
        assert_eq!(f.status(a, s(t0, 30)), Status::Unknown);
        assert_eq!(f.status(a, s(t0, 31)), Status::Stale);
        // A repeat (same number) or a retained one does not set the cadence.
        let mut f = fleet();
        f.feed("tailbeat/gw-1/heartbeat", &beat(5, &[]), true, t0, 0);
        f.feed("tailbeat/gw-1/heartbeat", &beat(6, &[]), false, s(t0, 1), 0);
        f.feed("tailbeat/gw-1/heartbeat", &beat(6, &[]), false, s(t0, 2), 0);
        assert_eq!(f.get("gw-1").unwrap().cadence, None);
    }

    #[test]
    fn changes_report_what_is_shown_once_and_status_changes_by_time() {
        let t0 = Instant::now();
        let mut f = fleet();
        f.feed("tailbeat/gw-1/heartbeat", &beat(1, &[]), false, t0, 0);
        assert_eq!(f.changes(t0), (vec!["gw-1".to_string()], false));
        assert_eq!(f.changes(t0), (vec![], false));
        // Another heartbeat saying the same: no change.
        f.feed(
            "tailbeat/gw-1/heartbeat",
            &beat(2, &[]),
            false,
            s(t0, 10),
            0,
        );
        assert_eq!(f.changes(s(t0, 10)).0.len(), 0);
        // Time alone: stale.
        assert_eq!(f.changes(s(t0, 41)).0, vec!["gw-1"]);
        // A status report that changes something.
        let st = report_config_request(
            b"r",
            "gw-1",
            &[ConfigInfo {
                name: "app".into(),
                version: 2,
                status: ConfigStatus::Applied,
                message: String::new(),
            }],
        );
        f.feed("tailbeat/gw-1/status/pipeline", &st, true, s(t0, 41), 0);
        assert_eq!(f.changes(s(t0, 41)).0, vec!["gw-1"]);
        assert_eq!(f.get("gw-1").unwrap().pipelines[0].name, "app");
        f.feed("tailbeat/gw-1/status/pipeline", &st, false, s(t0, 41), 0);
        assert_eq!(f.changes(s(t0, 41)).0.len(), 0);
    }

    #[test]
    fn event_gaps_are_counted_and_alerts_follow_raise_and_clear() {
        let t0 = Instant::now();
        let mut f = fleet();
        let ev = |seq: u64, kind: &str, name: &str| {
            format!(r#"{{"instance":"gw-1","seq":{seq},"at":1,"kind":"{kind}","name":"{name}","message":"m{seq}","extra":true}}"#)
                .into_bytes()
        };
        let t = "tailbeat/gw-1/events";
        f.feed(t, &ev(40, "alert_raised", "p99"), false, t0, 0);
        f.feed(t, &ev(41, "disk_full", ""), false, t0, 0);
        f.feed(t, &ev(41, "disk_full", ""), false, t0, 0); // a repeat
        f.feed(t, &ev(45, "alert_cleared", "p99"), false, t0, 0);
        f.feed(t, &ev(46, "kind_from_the_future", "x"), false, t0, 0);
        let a = f.get("gw-1").unwrap();
        let e = &a.events;
        assert_eq!((e.count, e.gaps, e.missing, e.repeats), (4, 1, 3, 1));
        assert_eq!(e.last.as_ref().unwrap().kind, "kind_from_the_future");
        assert_eq!(a.alerts, vec![("disk_full".to_string(), "m41".to_string())]);
        f.feed(t, &ev(47, "disk_ok", ""), false, t0, 0);
        assert!(f.get("gw-1").unwrap().alerts.is_empty());
    }

    #[test]
    fn garbage_is_counted_per_topic_and_agent_and_changes_nothing() {
        let t0 = Instant::now();
        let mut f = fleet();
        f.feed("tailbeat/gw-1/state", &birth(true, 1), true, t0, 0);
        for (t, p) in [
            ("tailbeat/gw-1/state", &b"not json"[..]),
            ("tailbeat/gw-1/heartbeat", b"\xff\xff\xff"),
            ("tailbeat/gw-1/events", b"{}"),
            ("tailbeat/gw-1/status/pipeline", b"\x0a\x09"),
        ] {
            f.feed(t, p, false, t0, 0);
        }
        f.too_large("tailbeat/gw-1/heartbeat");
        f.too_large("elsewhere/x");
        // Deletion of a retained message: neither garbage nor an agent.
        f.feed("tailbeat/gw-9/state", b"", true, t0, 0);
        assert_eq!(
            f.garbage(),
            vec![
                ("state", 1),
                ("heartbeat", 2),
                ("status/pipeline", 1),
                ("events", 1)
            ]
        );
        let a = f.get("gw-1").unwrap();
        assert_eq!((a.garbage, a.online), (5, Some(true)));
        assert!(f.get("gw-9").is_none());
        assert!(f.changes(t0).1);
    }

    #[test]
    fn agents_past_the_cap_are_counted_not_kept_and_the_filter_hides_others() {
        let t0 = Instant::now();
        let mut f = Fleet::new(Options {
            max_agents: 2,
            filter: vec![("site".into(), "a".into())],
            ..fleet().opts
        });
        f.feed(
            "tailbeat/gw-1/heartbeat",
            &beat(1, &[("site", "a")]),
            false,
            t0,
            0,
        );
        f.feed(
            "tailbeat/gw-2/heartbeat",
            &beat(1, &[("site", "b")]),
            false,
            t0,
            0,
        );
        f.feed(
            "tailbeat/gw-3/heartbeat",
            &beat(1, &[("site", "a")]),
            false,
            t0,
            0,
        );
        f.feed("tailbeat/gw-3/state", &birth(true, 1), false, t0, 0);
        assert_eq!(f.overflow, 2);
        let shown: Vec<&str> = f.agents().map(|a| a.instance.as_str()).collect();
        assert_eq!(shown, vec!["gw-1"]);
        assert_eq!(f.summary(t0).agents, 1);
        assert_eq!(f.changes(t0).0, vec!["gw-1"]);
    }
}
