//! The ConfigServer client as plain state: what to send next, and when.
//!
//! Design: methods change state and never touch the network; time is passed in (monotonic).
//! The transport (`over_http`) asks [`Session::next`] what to do, does it, and feeds the
//! answer back ([`Session::heartbeat_answered`], [`Session::report_answered`],
//! [`Session::fetch_answered`]). So "an outage produces at most N requests" is a unit test
//! here, in microseconds, with no server.
//!
//! Three kinds of request, each with its own exponential backoff (0.5 s doubling to 60 s,
//! jittered to [½, 1] of that; heartbeats capped at the interval), in this priority:
//! 1. **status reports**, on the best channel the server has answered on (see [`Channel`]);
//! 2. **fetches** of configs a heartbeat announced by name only;
//! 3. **heartbeats**, every interval; in [`Channel::Heartbeat`] a status change sends one at
//!    once — unless heartbeats are failing, when the backoff decides (the retry storm of
//!    issue 10 was a failed heartbeat that carried statuses re-arming "send now").
//!
//! What always holds: after a failed request of one kind, no request of that kind before
//! its backoff says; a 404 is an answer (the endpoint does not exist), never retried on the
//! same endpoint until the re-probe ([`REPROBE`]).
//!
//! # The bound
//! A failing request of one kind is retried after at least 0.25, 0.5, 1, 2, 4, 8, 16, then
//! 30 s (the lower edge of the jitter), so an outage of 60 s sees at most 8 reports and 8
//! fetches; heartbeats (capped at the interval, and at least three quarters of it once the
//! backoff reaches it, still jittered so a fleet does not retry in lockstep) at most 12 at
//! the default 10 s interval. Plus at most 2 answers of 404 per
//! channel step, which are not failures. The tests below check this in every mode.

use super::proto::ConfigInfo;
use super::remote::Kind;
use crate::backoff::Backoff;
use std::time::{Duration, Instant};

/// How often a server that lacked an endpoint is asked again (an upgraded server is noticed
/// within this long; each re-probe costs at most two requests answered 404).
pub const REPROBE: Duration = Duration::from_secs(3600);

/// Where config status goes, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The seed's `/Agent/ReportPipelineConfig` and `/Agent/ReportInstanceConfig`.
    Split,
    /// Upstream's `/Agent/ReportStatus` (both kinds in one `ReportStatusRequest`).
    Combined,
    /// In every heartbeat (the server has neither).
    Heartbeat,
}

/// Where a fetch of one kind goes, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchVia {
    /// `/Agent/FetchPipelineConfig` or `/Agent/FetchInstanceConfig`.
    Split,
    /// Upstream's `/Agent/FetchConfig`.
    Combined,
    /// The server has neither: a config announced by name only cannot be fetched.
    Nowhere,
}

/// A status report's endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportTo {
    /// One kind, on its own endpoint.
    Split(Kind),
    /// Both kinds, on `/Agent/ReportStatus`.
    Combined,
}

impl ReportTo {
    /// The path.
    pub fn path(self) -> &'static str {
        match self {
            ReportTo::Split(Kind::Pipeline) => "/Agent/ReportPipelineConfig",
            ReportTo::Split(Kind::Instance) => "/Agent/ReportInstanceConfig",
            ReportTo::Combined => "/Agent/ReportStatus",
        }
    }
    /// The kinds whose statuses it carries.
    pub fn kinds(self) -> &'static [Kind] {
        match self {
            ReportTo::Split(Kind::Pipeline) => &[Kind::Pipeline],
            ReportTo::Split(Kind::Instance) => &[Kind::Instance],
            ReportTo::Combined => &Kind::ALL,
        }
    }
}

/// The path of a fetch of kind `k` via `v` (`None` for [`FetchVia::Nowhere`]).
pub fn fetch_path(k: Kind, v: FetchVia) -> Option<&'static str> {
    match (v, k) {
        (FetchVia::Split, Kind::Pipeline) => Some("/Agent/FetchPipelineConfig"),
        (FetchVia::Split, Kind::Instance) => Some("/Agent/FetchInstanceConfig"),
        (FetchVia::Combined, _) => Some("/Agent/FetchConfig"),
        (FetchVia::Nowhere, _) => None,
    }
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Send a heartbeat.
    Heartbeat {
        /// Its sequence number.
        seq: u64,
        /// Identity and every status (FullState).
        full: bool,
        /// The statuses ride in it (the status channel is the heartbeat).
        statuses: bool,
    },
    /// Send a status report.
    Report {
        /// Where.
        to: ReportTo,
        /// Build it from the statuses now; otherwise send the pending one again, byte for
        /// byte.
        fresh: bool,
    },
    /// Fetch the detail of [`Session::wanted`].
    Fetch {
        /// Of this kind.
        kind: Kind,
        /// From this endpoint.
        path: &'static str,
    },
    /// Nothing is due before this instant (or an outside event).
    Wait(Instant),
}

/// How a request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 2xx with CommonResponse status 0.
    Ok,
    /// HTTP 404: the server has no such endpoint.
    NotFound,
    /// Anything else: no connection, a timeout, another HTTP status, a non-zero
    /// CommonResponse status, a body that does not decode.
    Failed,
    /// The endpoint answered that something the request names does not exist
    /// (CommonResponse status 404, upstream's `ConfigNotExist`, sent with HTTP 404 by the
    /// Go server): the endpoint is there, and the same request would fail again.
    Refused,
}

/// What became of a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The server answered: apply what it sent of these.
    Apply(Vec<ConfigInfo>),
    /// The server has no way to fetch them: FAILED, with this reason.
    Fail(Vec<ConfigInfo>, String),
    /// Nothing to do now (retried later, or on another endpoint).
    Later,
}

#[derive(Debug)]
struct Retry {
    backoff: Backoff,
    at: Instant,
    failing: bool,
}

impl Retry {
    fn new(now: Instant) -> Retry {
        Retry {
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(60)),
            at: now,
            failing: false,
        }
    }
    fn ok(&mut self, now: Instant) {
        self.backoff.reset();
        self.failing = false;
        self.at = now;
    }
    fn failed(&mut self, now: Instant, cap: Duration) -> Duration {
        let d = self.backoff.next_delay_within(cap);
        self.failing = true;
        self.at = now + d;
        d
    }
}

/// The state of the conversation with one ConfigServer.
#[derive(Debug)]
pub struct Session {
    interval: Duration,
    seq: u64,
    full: bool,
    next_heartbeat: Instant,
    heartbeat: Retry,
    /// Statuses in the heartbeat in flight (to re-arm on failure).
    heartbeat_statuses: bool,
    channel: Channel,
    /// When the status channel is next tried from the best one again.
    channel_reprobe: Option<Instant>,
    /// Statuses changed and not yet in a report (or a heartbeat, in [`Channel::Heartbeat`]).
    unreported: [bool; 2],
    /// The report being delivered, and where.
    pending: Option<ReportTo>,
    report: Retry,
    fetch_via: [FetchVia; 2],
    fetch_reprobe: [Option<Instant>; 2],
    wanted: [Vec<ConfigInfo>; 2],
    fetch: Retry,
    reprobe: Duration,
}

impl Session {
    /// A session that heartbeats every `interval`, starting now with a full heartbeat.
    pub fn new(now: Instant, interval: Duration) -> Session {
        Session {
            interval,
            seq: 1,
            full: true,
            next_heartbeat: now,
            heartbeat: Retry::new(now),
            heartbeat_statuses: false,
            channel: Channel::Split,
            channel_reprobe: None,
            unreported: [false; 2],
            pending: None,
            report: Retry::new(now),
            fetch_via: [FetchVia::Split; 2],
            fetch_reprobe: [None; 2],
            wanted: [Vec::new(), Vec::new()],
            fetch: Retry::new(now),
            reprobe: REPROBE,
        }
    }

    /// Another server (a failover, a reload): what it has is unknown again. The sequence
    /// number goes on (a gap makes the server ask for full state, which it gets anyway).
    pub fn restart(&mut self, now: Instant) {
        self.full = true;
        self.next_heartbeat = now;
        self.heartbeat = Retry::new(now);
        self.channel = Channel::Split;
        self.channel_reprobe = None;
        self.unreported = [true; 2];
        self.pending = None;
        self.report = Retry::new(now);
        self.fetch_via = [FetchVia::Split; 2];
        self.fetch_reprobe = [None; 2];
        self.fetch = Retry::new(now);
    }

    /// A new heartbeat interval; a shorter one counts from now.
    pub fn set_interval(&mut self, now: Instant, interval: Duration) {
        if interval != self.interval {
            self.next_heartbeat = self.next_heartbeat.min(now + interval);
            self.interval = interval;
        }
    }

    /// The status of configs of `k` changed.
    pub fn changed(&mut self, k: Kind) {
        self.unreported[k as usize] = true;
    }

    /// Where statuses go now.
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// Where fetches of `k` go now.
    pub fn fetch_via(&self, k: Kind) -> FetchVia {
        self.fetch_via[k as usize]
    }

    /// The configs of `k` waiting for their detail.
    pub fn wanted(&self, k: Kind) -> &[ConfigInfo] {
        &self.wanted[k as usize]
    }

    /// A heartbeat announced `name` at `version` without its detail. `Err` when the server
    /// has no way to fetch it (the reason for FAILED).
    pub fn announce(
        &mut self,
        now: Instant,
        k: Kind,
        name: &str,
        version: i64,
    ) -> Result<(), String> {
        let i = k as usize;
        if self.fetch_via[i] == FetchVia::Nowhere {
            if self.fetch_reprobe[i].is_some_and(|t| now >= t) {
                self.fetch_via[i] = FetchVia::Split;
                self.fetch_reprobe[i] = None;
            } else {
                return Err(nowhere(k));
            }
        }
        let list = &mut self.wanted[i];
        list.retain(|w| w.name != name);
        list.push(ConfigInfo {
            name: name.to_string(),
            version,
            ..Default::default()
        });
        // A fetch in backoff keeps its backoff: a heartbeat re-announcing is no reason to
        // hammer a fetch endpoint that fails.
        if !self.fetch.failing {
            self.fetch.at = self.fetch.at.min(now);
        }
        Ok(())
    }

    /// What to do at `now`.
    pub fn next(&mut self, now: Instant) -> Next {
        if self.channel != Channel::Split && self.channel_reprobe.is_some_and(|t| now >= t) {
            // Ask the best channel again, with every status (a report is idempotent).
            log::info!("fleet: asking the server again for its status endpoints");
            self.channel = Channel::Split;
            self.channel_reprobe = None;
            self.unreported = [true; 2];
        }
        let to_report = self.channel != Channel::Heartbeat
            && (self.pending.is_some() || self.unreported.iter().any(|&u| u));
        if to_report && now >= self.report.at {
            if let Some(to) = self.pending {
                return Next::Report { to, fresh: false };
            }
            let to = match self.channel {
                Channel::Split => {
                    let k = Kind::ALL
                        .into_iter()
                        .find(|&k| self.unreported[k as usize])
                        .expect("something unreported");
                    ReportTo::Split(k)
                }
                _ => ReportTo::Combined,
            };
            for &k in to.kinds() {
                self.unreported[k as usize] = false;
            }
            self.pending = Some(to);
            return Next::Report { to, fresh: true };
        }
        let to_fetch = Kind::ALL
            .into_iter()
            .find(|&k| !self.wanted[k as usize].is_empty());
        if let Some(k) = to_fetch {
            if now >= self.fetch.at {
                let path = fetch_path(k, self.fetch_via[k as usize]).expect("not announced");
                return Next::Fetch { kind: k, path };
            }
        }
        let mut heartbeat_at = self.next_heartbeat;
        if self.channel == Channel::Heartbeat
            && self.unreported.iter().any(|&u| u)
            && !self.heartbeat.failing
        {
            heartbeat_at = now;
        }
        if now >= heartbeat_at {
            // A full heartbeat carries every status too, but on the other channels the
            // report still goes: the report endpoint is where the server looks for them.
            let statuses = self.channel == Channel::Heartbeat;
            if statuses {
                self.unreported = [false; 2];
            }
            self.heartbeat_statuses = statuses;
            return Next::Heartbeat {
                seq: self.seq,
                full: self.full,
                statuses,
            };
        }
        let mut until = heartbeat_at;
        if to_report {
            until = until.min(self.report.at);
        }
        if to_fetch.is_some() {
            until = until.min(self.fetch.at);
        }
        Next::Wait(until)
    }

    /// The heartbeat answered (`full_state` = the server asked for ReportFullState), or not.
    /// Returns the delay before the retry when it failed.
    pub fn heartbeat_answered(
        &mut self,
        now: Instant,
        a: Answer,
        full_state: bool,
    ) -> Option<Duration> {
        match a {
            Answer::Ok => {
                self.seq += 1;
                self.full = full_state;
                self.heartbeat.ok(now);
                self.next_heartbeat = now + self.interval;
                None
            }
            Answer::NotFound | Answer::Failed | Answer::Refused => {
                if self.heartbeat_statuses {
                    // They did not arrive: the next heartbeat carries them (when it is due).
                    self.unreported = [true; 2];
                }
                let d = self.heartbeat.failed(now, self.interval);
                self.next_heartbeat = self.heartbeat.at;
                Some(d)
            }
        }
    }

    /// The pending report answered. Returns the delay before the retry when it failed.
    pub fn report_answered(&mut self, now: Instant, a: Answer) -> Option<Duration> {
        let to = self.pending?;
        match a {
            Answer::Ok => {
                self.pending = None;
                self.report.ok(now);
                None
            }
            Answer::NotFound => {
                // Its statuses go on the next channel, at once: a 404 is an answer.
                self.pending = None;
                self.unreported = [true; 2];
                self.channel = match self.channel {
                    Channel::Split => Channel::Combined,
                    _ => Channel::Heartbeat,
                };
                if self.channel_reprobe.is_none() {
                    self.channel_reprobe = Some(now + self.reprobe);
                }
                log::warn!(
                    "fleet: the server has no {}: config status goes {} from now on (asked again in {} s)",
                    to.path(),
                    match self.channel {
                        Channel::Combined => "to /Agent/ReportStatus",
                        _ => "in the heartbeat",
                    },
                    self.reprobe.as_secs()
                );
                None
            }
            Answer::Failed | Answer::Refused => Some(self.report.failed(now, Duration::MAX)),
        }
    }

    /// The fetch of `k` answered.
    pub fn fetch_answered(&mut self, now: Instant, k: Kind, a: Answer) -> Fetched {
        let i = k as usize;
        match a {
            Answer::Ok => {
                self.fetch.ok(now);
                Fetched::Apply(std::mem::take(&mut self.wanted[i]))
            }
            Answer::NotFound => {
                let was = fetch_path(k, self.fetch_via[i]).unwrap_or("");
                self.fetch_via[i] = match self.fetch_via[i] {
                    FetchVia::Split => FetchVia::Combined,
                    _ => FetchVia::Nowhere,
                };
                log::warn!("fleet: the server has no {was}");
                if self.fetch_via[i] == FetchVia::Nowhere {
                    self.fetch_reprobe[i] = Some(now + self.reprobe);
                    Fetched::Fail(std::mem::take(&mut self.wanted[i]), nowhere(k))
                } else {
                    Fetched::Later
                }
            }
            Answer::Failed => {
                self.fetch.failed(now, Duration::MAX);
                Fetched::Later
            }
            Answer::Refused => {
                // A config announced by name was deleted before its detail was fetched:
                // the server refuses the whole list while it names it. Nothing was applied
                // or reported; the next heartbeat announces again what the server still has.
                self.fetch.failed(now, Duration::MAX);
                self.wanted[i].clear();
                Fetched::Later
            }
        }
    }

    #[cfg(test)]
    fn set_reprobe(&mut self, d: Duration) {
        self.reprobe = d;
    }
}

fn nowhere(k: Kind) -> String {
    format!(
        "the server announced this {} config by name only, but has neither {} nor /Agent/FetchConfig (both answered 404) to fetch its detail",
        k.name(),
        fetch_path(k, FetchVia::Split).unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How the server fails during an outage.
    #[derive(Debug, Clone, Copy)]
    enum Down {
        /// Connection refused: the answer is immediate.
        Refused,
        /// HTTP 503.
        Unavailable,
        /// No answer within the client's timeout (1 s).
        Timeout,
    }

    /// A simulated server: which endpoints it lacks, and when it is down.
    struct Server {
        missing: Vec<&'static str>,
        down: Option<(Instant, Instant, Down)>,
    }

    impl Server {
        fn answer(&self, t: Instant, path: &str) -> (Answer, Duration) {
            if let Some((from, to, how)) = self.down {
                if t >= from && t < to {
                    return match how {
                        Down::Refused => (Answer::Failed, Duration::ZERO),
                        Down::Unavailable => (Answer::Failed, Duration::from_millis(1)),
                        Down::Timeout => (Answer::Failed, Duration::from_secs(1)),
                    };
                }
            }
            if self.missing.contains(&path) {
                (Answer::NotFound, Duration::from_millis(1))
            } else {
                (Answer::Ok, Duration::from_millis(1))
            }
        }
    }

    /// Every request sent between `from` and `to`, with its time and path.
    fn drive(s: &mut Session, srv: &Server, from: Instant, to: Instant) -> Vec<(Instant, String)> {
        let mut t = from;
        let mut sent = Vec::new();
        while t < to {
            assert!(
                sent.len() < 100_000,
                "a request storm: {:?}",
                &sent[sent.len() - 5..]
            );
            match s.next(t) {
                Next::Wait(u) => {
                    assert!(u > t, "asked to wait until {u:?}, which is not after {t:?}");
                    t = u.min(to);
                }
                Next::Heartbeat { .. } => {
                    let (a, cost) = srv.answer(t, "/Agent/Heartbeat");
                    sent.push((t, "/Agent/Heartbeat".to_string()));
                    t += cost;
                    s.heartbeat_answered(t, a, false);
                }
                Next::Report { to: r, .. } => {
                    let (a, cost) = srv.answer(t, r.path());
                    sent.push((t, r.path().to_string()));
                    t += cost;
                    s.report_answered(t, a);
                }
                Next::Fetch { kind, path } => {
                    let (a, cost) = srv.answer(t, path);
                    sent.push((t, path.to_string()));
                    t += cost;
                    s.fetch_answered(t, kind, a);
                }
            }
        }
        sent
    }

    const SPLIT: [&str; 2] = ["/Agent/ReportPipelineConfig", "/Agent/ReportInstanceConfig"];
    const SECOND: Duration = Duration::from_secs(1);

    fn count(sent: &[(Instant, String)], f: impl Fn(&str) -> bool) -> usize {
        sent.iter().filter(|(_, p)| f(p)).count()
    }

    #[test]
    fn a_60s_outage_costs_at_most_12_heartbeats_8_reports_and_8_fetches_in_every_mode() {
        let modes: [(&str, Vec<&str>); 3] = [
            ("status endpoints", vec![]),
            ("ReportStatus only", SPLIT.to_vec()),
            (
                "404 fallback",
                vec![
                    SPLIT[0],
                    SPLIT[1],
                    "/Agent/ReportStatus",
                    "/Agent/FetchInstanceConfig",
                ],
            ),
        ];
        for (mode, missing) in modes {
            for how in [Down::Refused, Down::Unavailable, Down::Timeout] {
                for dirty in [false, true] {
                    for fetching in [false, true] {
                        let t0 = Instant::now();
                        let mut s = Session::new(t0, 10 * SECOND);
                        let outage = t0 + 30 * SECOND;
                        let mut srv = Server {
                            missing: missing.clone(),
                            down: None,
                        };
                        // Settle: a status change finds the channel before the outage.
                        s.changed(Kind::Pipeline);
                        drive(&mut s, &srv, t0, outage);
                        srv.down = Some((outage, outage + 60 * SECOND, how));
                        if dirty {
                            s.changed(Kind::Pipeline);
                            s.changed(Kind::Instance);
                        }
                        if fetching {
                            s.announce(outage, Kind::Pipeline, "p", 2).unwrap();
                        }
                        let sent = drive(&mut s, &srv, outage, outage + 60 * SECOND);
                        let what = format!("{mode}, {how:?}, dirty {dirty}, fetching {fetching}");
                        let hb = count(&sent, |p| p == "/Agent/Heartbeat");
                        let reports = count(&sent, |p| p.starts_with("/Agent/Report"));
                        let fetches = count(&sent, |p| p.starts_with("/Agent/Fetch"));
                        assert!(hb <= 12, "{what}: {hb} heartbeats");
                        assert!(reports <= 8, "{what}: {reports} reports");
                        assert!(fetches <= 8, "{what}: {fetches} fetches");
                        assert!(hb >= 2, "{what}: heartbeats stopped: {hb}");
                        // And once the server is back, everything goes through.
                        srv.down = None;
                        let end = outage + 60 * SECOND;
                        drive(&mut s, &srv, end, end + 70 * SECOND);
                        assert!(
                            s.wanted(Kind::Pipeline).is_empty(),
                            "{what}: fetch never retried"
                        );
                        assert!(
                            s.pending.is_none() && s.unreported == [false; 2],
                            "{what}: statuses never delivered"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn in_404_fallback_a_failed_heartbeat_with_statuses_waits_for_its_backoff() {
        // Issue 10, defect 1: 5,000 heartbeats a second once the server had answered 404.
        let t0 = Instant::now();
        let mut s = Session::new(t0, 10 * SECOND);
        let srv = Server {
            missing: vec![SPLIT[0], SPLIT[1], "/Agent/ReportStatus"],
            down: Some((t0 + 5 * SECOND, t0 + 8 * SECOND, Down::Refused)),
        };
        s.changed(Kind::Pipeline);
        drive(&mut s, &srv, t0, t0 + 5 * SECOND);
        assert_eq!(s.channel(), Channel::Heartbeat);
        s.changed(Kind::Pipeline);
        let sent = drive(&mut s, &srv, t0 + 5 * SECOND, t0 + 8 * SECOND);
        // t = 0, 0.25+, 0.75+, 1.75+: at most 4 in 3 s (the real agent made 8,985).
        assert!(sent.len() <= 4, "{} requests in a 3 s outage", sent.len());
    }

    #[test]
    fn the_status_channel_is_discovered_remembered_and_probed_again() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, 10 * SECOND);
        s.set_reprobe(600 * SECOND);
        let mut srv = Server {
            missing: vec![SPLIT[0], SPLIT[1], "/Agent/ReportStatus"],
            down: None,
        };
        s.changed(Kind::Instance);
        let sent = drive(&mut s, &srv, t0, t0 + SECOND);
        let paths: Vec<&str> = sent.iter().map(|(_, p)| p.as_str()).collect();
        // The instance report 404s; both kinds go to ReportStatus, which 404s; then the
        // heartbeat (the first was due anyway) carries them.
        assert_eq!(
            paths,
            [
                "/Agent/ReportInstanceConfig",
                "/Agent/ReportStatus",
                "/Agent/Heartbeat"
            ]
        );
        assert_eq!(s.channel(), Channel::Heartbeat);
        // Remembered: later changes go straight into a heartbeat, no probing.
        s.changed(Kind::Pipeline);
        let sent = drive(&mut s, &srv, t0 + SECOND, t0 + 100 * SECOND);
        assert!(
            sent.iter().all(|(_, p)| p == "/Agent/Heartbeat"),
            "{sent:?}"
        );
        assert_eq!(sent.len(), 10, "{sent:?}");
        // The server is upgraded: noticed at the re-probe, 600 s after the first 404.
        srv.missing.clear();
        let sent = drive(&mut s, &srv, t0 + 100 * SECOND, t0 + 700 * SECOND);
        let first = sent.iter().find(|(_, p)| p.starts_with("/Agent/Report"));
        let (at, path) = first.expect("never probed again");
        assert_eq!(path, "/Agent/ReportPipelineConfig");
        assert!(
            *at >= t0 + 600 * SECOND && *at < t0 + 611 * SECOND,
            "{:?}",
            *at - t0
        );
        assert_eq!(s.channel(), Channel::Split);
        // A restart (failover, reload to another server) starts the chain again.
        srv.missing = vec![SPLIT[0], SPLIT[1]];
        s.restart(t0 + 700 * SECOND);
        let sent = drive(&mut s, &srv, t0 + 700 * SECOND, t0 + 701 * SECOND);
        let paths: Vec<&str> = sent.iter().map(|(_, p)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/Agent/ReportPipelineConfig",
                "/Agent/ReportStatus",
                "/Agent/Heartbeat"
            ]
        );
        assert_eq!(s.channel(), Channel::Combined);
    }

    #[test]
    fn a_missing_fetch_endpoint_falls_back_to_fetch_config_then_fails_with_a_reason() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, 10 * SECOND);
        s.heartbeat_answered(t0, Answer::Ok, false);
        s.announce(t0, Kind::Instance, "agent", 3).unwrap();
        assert_eq!(
            s.next(t0),
            Next::Fetch {
                kind: Kind::Instance,
                path: "/Agent/FetchInstanceConfig"
            }
        );
        assert_eq!(
            s.fetch_answered(t0, Kind::Instance, Answer::NotFound),
            Fetched::Later
        );
        assert_eq!(
            s.next(t0),
            Next::Fetch {
                kind: Kind::Instance,
                path: "/Agent/FetchConfig"
            }
        );
        match s.fetch_answered(t0, Kind::Instance, Answer::NotFound) {
            Fetched::Fail(list, why) => {
                assert_eq!((list[0].name.as_str(), list[0].version), ("agent", 3));
                assert!(
                    why.contains("/Agent/FetchInstanceConfig")
                        && why.contains("/Agent/FetchConfig"),
                    "{why}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Remembered: the next announcement fails at once, no request.
        assert!(s.announce(t0, Kind::Instance, "agent", 4).is_err());
        assert!(matches!(s.next(t0), Next::Wait(_)));
        // Pipelines are another endpoint, still tried.
        s.announce(t0, Kind::Pipeline, "p", 1).unwrap();
        assert_eq!(
            s.next(t0),
            Next::Fetch {
                kind: Kind::Pipeline,
                path: "/Agent/FetchPipelineConfig"
            }
        );
        // After the re-probe delay, instance fetches are tried again.
        assert!(s.announce(t0 + REPROBE, Kind::Instance, "agent", 4).is_ok());
    }

    #[test]
    fn a_fetch_refused_for_a_deleted_config_forgets_the_list_and_keeps_the_endpoint() {
        // The Go server answers a fetch naming a config deleted since it was announced with
        // ConfigNotExist (HTTP 404, a CommonResponse): the endpoint is there. Taken for a
        // missing endpoint, every config announced later was FAILED unfetched for an hour.
        let t0 = Instant::now();
        let mut s = Session::new(t0, 10 * SECOND);
        s.heartbeat_answered(t0, Answer::Ok, false);
        s.announce(t0, Kind::Pipeline, "gone", 1).unwrap();
        let fetch = Next::Fetch {
            kind: Kind::Pipeline,
            path: "/Agent/FetchPipelineConfig",
        };
        assert_eq!(s.next(t0), fetch);
        assert_eq!(
            s.fetch_answered(t0, Kind::Pipeline, Answer::Refused),
            Fetched::Later
        );
        assert!(
            s.wanted(Kind::Pipeline).is_empty(),
            "the list is not asked again"
        );
        // The next announcement is fetched from the same endpoint, after the backoff.
        let soon = t0 + Duration::from_millis(1);
        s.announce(soon, Kind::Pipeline, "new", 1).unwrap();
        assert!(!matches!(s.next(soon), Next::Fetch { .. }), "backoff");
        assert_eq!(s.next(t0 + 10 * SECOND), fetch);
        assert_eq!(s.wanted(Kind::Pipeline)[0].name, "new");
    }

    #[test]
    fn a_failing_fetch_keeps_its_backoff_when_announced_again() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, 10 * SECOND);
        s.heartbeat_answered(t0, Answer::Ok, false);
        s.announce(t0, Kind::Pipeline, "p", 1).unwrap();
        assert!(matches!(s.next(t0), Next::Fetch { .. }));
        for _ in 0..6 {
            s.fetch_answered(t0, Kind::Pipeline, Answer::Failed);
        }
        s.announce(t0 + SECOND, Kind::Pipeline, "p", 1).unwrap();
        assert!(!matches!(s.next(t0 + SECOND), Next::Fetch { .. }));
    }

    #[test]
    fn heartbeats_count_answered_ones_and_are_full_when_asked() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, 10 * SECOND);
        let hb = |s: &mut Session, t| match s.next(t) {
            Next::Heartbeat { seq, full, .. } => (seq, full),
            other => panic!("{other:?}"),
        };
        assert_eq!(hb(&mut s, t0), (1, true));
        s.heartbeat_answered(t0, Answer::Failed, false);
        let again = t0 + 10 * SECOND;
        assert_eq!(hb(&mut s, again), (1, true));
        s.heartbeat_answered(again, Answer::Ok, false);
        assert_eq!(s.next(again), Next::Wait(again + 10 * SECOND));
        assert_eq!(hb(&mut s, again + 10 * SECOND), (2, false));
        s.heartbeat_answered(again + 10 * SECOND, Answer::Ok, true);
        assert_eq!(hb(&mut s, again + 20 * SECOND), (3, true));
    }
}
