//! `tailbeat fleet`: the fleet viewer. Subscribes to the agents' state, heartbeat, status
//! and event topics and shows every agent: a live table in a terminal, a plain line per
//! change when piped, a JSON line per change with `--json`, a snapshot with `--once`.
//!
//! Owns one MQTT connection (clean session, QoS 0 subscriptions: a viewer needs no delivery
//! guarantee, since the next heartbeat or the retained set at a reconnect brings back what it
//! missed, and at QoS 0 the broker keeps no in-flight state for it, so Mosquitto's 20
//! in-flight messages per client do not pace the retained burst by round trips) and stdout.
//! Touches nothing of the agent's: it shares the MQTT client core ([`crate::mqtt`]) and the
//! protobuf reader ([`crate::control::proto`]).
//!
//! - [`state`]: the fleet as plain state fed `(topic, payload, retained, now, wall)`; the
//!   rules for offline, stale, changes, garbage and the agent cap are there, with their
//!   tests.
//! - [`decode`]: the messages taken apart, within fixed limits.
//! - [`render`]: the JSON object, the plain line, the table.
//! - this file: the command line, the connection loop, the output.
//!
//! What always holds:
//! - memory: at most `--max-agents` agents (default [`MAX_AGENTS`]), each bounded
//!   ([`state`]); one message at a time, at most [`MAX_MESSAGE`] (a larger one is read off
//!   the connection as it arrives, counted as garbage, never held);
//! - a message that is not what its topic should carry is counted and shown, never a crash,
//!   never a change to what is known;
//! - reconnects back off (0.5 s doubling to 60 s, jittered), as every MQTT client of
//!   tailbeat does; `--once` tries once and fails (exit 1), for scripts;
//! - `--once` prints when the retained messages have arrived: the broker sends what it
//!   retained right after the SUBACK, each with the retain flag set, and live messages
//!   without it; the snapshot is taken once [`QUIET`] has passed without a retained message
//!   (or at [`ONCE_LIMIT`] at the latest), plus `--for` if given.

pub mod decode;
pub mod render;
pub mod state;

use crate::config::{endpoint, parse_duration, Tls};
use crate::mqtt::client::{Client, Event, Hello, Options as ClientOptions, Tick};
use crate::mqtt::wire::{Incoming, Wire};
use rumqttc::mqttbytes::v4::Packet;
use rumqttc::mqttbytes::QoS;
use smol::future::FutureExt;
use smol::stream::StreamExt;
use state::{Fleet, Options};
use std::fmt;
use std::io::{IsTerminal, Write};
use std::net::ToSocketAddrs;
use std::time::{Duration, Instant, SystemTime};

/// Agents kept by default: a fleet of 100,000 (README, Fleet view); more needs
/// `--max-agents`. About 3 KiB each (measured: 8.8 MB of RSS with 2,000 agents, 30 MB with
/// 10,000), so the default bounds the viewer near 300 MB, whatever is published.
pub const MAX_AGENTS: usize = 100_000;
/// The largest message read; a heartbeat is about 1 KiB, a status report of 64 configs a few.
pub const MAX_MESSAGE: usize = 1 << 20;
/// `--once`: the retained burst is over after this long without a retained message. On
/// loopback 2,000 agents' retained messages arrive within ~100 ms with no pause longer than a
/// few ms; half a second leaves room for a broker on the far side of a slow link.
pub const QUIET: Duration = Duration::from_millis(500);
/// `--once`: the snapshot is printed this long after the SUBACK at the latest, however
/// the retained messages trickle.
pub const ONCE_LIMIT: Duration = Duration::from_secs(30);
/// The keep-alive announced in CONNECT.
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Longest wait for a connect, a write, or a CONNACK / SUBACK.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Piped and `--json` output: changes are gathered for this long, so a burst of messages
/// about one agent is one line, not one per message.
const EMIT_EVERY: Duration = Duration::from_millis(200);
/// The table is drawn at most this often, and at least once a second (ages move).
const DRAW_EVERY: Duration = Duration::from_millis(250);

/// The command line of `tailbeat fleet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// `mqtt://HOST:PORT` or `mqtts://...`.
    pub broker: String,
    /// The fleet's topic prefix (`fleet.topic_prefix` and the sink's state topic prefix);
    /// may hold `+` levels.
    pub prefix: String,
    /// `--filter TAG=VALUE`, every one required.
    pub filter: Vec<(String, String)>,
    /// One JSON object per line.
    pub json: bool,
    /// Print a snapshot and exit.
    pub once: bool,
    /// The heartbeat interval assumed until an agent's cadence is seen.
    pub interval: Duration,
    /// `--once`: watch this much longer after the retained messages.
    pub watch: Duration,
    /// Most agents kept.
    pub max_agents: usize,
}

impl Args {
    /// Parses what follows `tailbeat fleet`.
    pub fn parse(args: &[String]) -> Result<Args, String> {
        let mut a = Args {
            broker: String::new(),
            prefix: "tailbeat".into(),
            filter: Vec::new(),
            json: false,
            once: false,
            interval: Duration::from_secs(10),
            watch: Duration::ZERO,
            max_agents: MAX_AGENTS,
        };
        let dur = |k: &str, v: String| {
            parse_duration(&v)
                .filter(|d| !d.is_zero())
                .ok_or(format!("{k}: expected a duration like 10s, got {v:?}"))
        };
        crate::flags::walk(args, |arg, k, val| {
            match k {
                "--broker" => a.broker = val()?,
                "--prefix" => a.prefix = val()?.trim_end_matches('/').to_string(),
                "--filter" => {
                    let v = val()?;
                    let (t, x) = v
                        .split_once('=')
                        .ok_or(format!("--filter: expected TAG=VALUE, got {v:?}"))?;
                    a.filter.push((t.to_string(), x.to_string()));
                }
                "--json" => a.json = true,
                "--once" => a.once = true,
                "--interval" => a.interval = dur(k, val()?)?,
                "--for" => a.watch = dur(k, val()?)?,
                "--max-agents" => {
                    let v = val()?;
                    a.max_agents = v
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or(format!("--max-agents: expected a count, got {v:?}"))?
                }
                _ => return Err(format!("unknown option {arg:?}")),
            }
            Ok(())
        })?;
        if a.broker.is_empty() {
            return Err("fleet needs --broker mqtt://HOST:PORT".into());
        }
        endpoint::mqtt(&a.broker).map_err(|e| format!("--broker: {e}"))?;
        if a.prefix.is_empty() || a.prefix.contains('#') {
            return Err(format!(
                "--prefix: topic levels without '#', got {:?}",
                a.prefix
            ));
        }
        if !a.watch.is_zero() && !a.once {
            return Err("--for goes with --once".into());
        }
        Ok(a)
    }
}

/// Why the viewer stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum FleetError {
    /// `--once` could not reach the broker or lost it before the snapshot.
    Link(String),
    /// The broker refused a subscription.
    Refused(String),
    /// stdout could not be written (other than a closed pipe, which is a normal end).
    Output(std::io::Error),
    /// Signal handlers could not be installed.
    Signals(std::io::Error),
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetError::Link(e) => f.write_str(e),
            FleetError::Refused(t) => write!(
                f,
                "the broker refused the subscription to {t} (does it allow this client to read it?)"
            ),
            FleetError::Output(e) => write!(f, "stdout: {e}"),
            FleetError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
        }
    }
}

impl std::error::Error for FleetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FleetError::Output(e) | FleetError::Signals(e) => Some(e),
            _ => None,
        }
    }
}

/// How the fleet is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The live table (stdout is a terminal, no `--json`, no `--once`).
    Table,
    /// A plain line per change.
    Lines,
    /// A JSON line per change.
    Json,
}

fn wall() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The viewer: the fleet, the MQTT client, the output.
struct Viewer {
    args: Args,
    fleet: Fleet,
    client: Client,
    hello: Hello,
    mode: Mode,
    out: std::io::BufWriter<std::io::Stdout>,
    /// The link as the header says it.
    link: String,
    /// Something was fed since the last emit / draw.
    pending: bool,
    /// The fleet's counts as last printed (piped and `--json`).
    printed: Option<state::Summary>,
    last_out: Instant,
}

/// How a link ended.
enum End {
    /// A signal, or `--once` done.
    Stop,
    /// Lost; reconnect after the backoff.
    Lost(String),
}

/// Runs the viewer until SIGTERM/SIGINT, or (`--once`) until the snapshot is printed.
///
/// # Errors
/// `--once` cannot reach the broker; the broker refuses the subscription; stdout fails.
pub fn run(args: Args) -> Result<(), FleetError> {
    let signals =
        async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int])
            .map_err(FleetError::Signals)?;
    let now = Instant::now();
    let mode = if args.json {
        Mode::Json
    } else if std::io::stdout().is_terminal() && !args.once {
        Mode::Table
    } else {
        Mode::Lines
    };
    // Levels of the prefix: the instance is the next one.
    let prefix_levels = args.prefix.split('/').count();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut v = Viewer {
        fleet: Fleet::new(Options {
            prefix_levels,
            interval: args.interval,
            max_agents: args.max_agents,
            filter: args.filter.clone(),
        }),
        client: Client::new(
            &ClientOptions {
                keep_alive: KEEP_ALIVE,
                window: 1,
                backoff_base: Duration::from_millis(500),
                backoff_cap: Duration::from_secs(60),
                endpoints: 1,
                failback_after: Duration::ZERO,
            },
            now,
        ),
        hello: Hello {
            client_id: format!("tailbeat-fleet-{:x}-{nanos:08x}", std::process::id()),
            will: None,
            login: None,
        },
        mode,
        out: std::io::BufWriter::new(std::io::stdout()),
        link: "connecting".into(),
        pending: false,
        printed: None,
        last_out: now,
        args,
    };
    if mode == Mode::Table {
        // The alternate screen, cursor hidden; both undone on the way out.
        v.write_raw("\x1b[?1049h\x1b[?25l")?;
    }
    let r = smol::block_on(v.run(signals));
    if mode == Mode::Table {
        let _ = v.write_raw("\x1b[?25h\x1b[?1049l");
    }
    match r {
        Err(FleetError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

impl Viewer {
    fn write_raw(&mut self, s: &str) -> Result<(), FleetError> {
        self.out
            .write_all(s.as_bytes())
            .and_then(|()| self.out.flush())
            .map_err(FleetError::Output)
    }

    async fn run(&mut self, mut signals: async_signal::Signals) -> Result<(), FleetError> {
        let e = endpoint::mqtt(&self.args.broker).expect("checked by Args::parse");
        loop {
            if let Err(wait) = self.client.connecting(Instant::now()) {
                // Redrawn while waiting, so ages and staleness keep moving.
                let until = Instant::now() + wait;
                while Instant::now() < until {
                    let step = (until - Instant::now()).min(Duration::from_secs(1));
                    let stop = async {
                        signals.next().await;
                        true
                    }
                    .or(async {
                        smol::Timer::after(step).await;
                        false
                    })
                    .await;
                    if stop {
                        return Ok(());
                    }
                    self.show(Instant::now(), false)?;
                }
                continue;
            }
            let opened = async { Some(self.open(&e).await) }
                .or(async {
                    signals.next().await;
                    None
                })
                .await;
            let end = match opened {
                None => return Ok(()),
                Some(Ok(wire)) => self.session(wire, &mut signals).await?,
                Some(Err(Err(fatal))) => return Err(fatal),
                Some(Err(Ok(why))) => End::Lost(why),
            };
            match end {
                End::Stop => return Ok(()),
                End::Lost(why) => {
                    if self.args.once {
                        return Err(FleetError::Link(why));
                    }
                    let d = self.client.link_lost(Instant::now()).after;
                    // A failed connect names the broker already.
                    let at = if why.starts_with("connect to") {
                        String::new()
                    } else {
                        format!("{e}: ")
                    };
                    self.link = format!("{at}{why}; again in {} ms", d.as_millis());
                    // In the table the header says it; a log line would tear the screen.
                    if self.mode != Mode::Table {
                        log::warn!("fleet: {}", self.link);
                    }
                    self.show(Instant::now(), true)?;
                }
            }
        }
    }

    /// Connects and subscribes. `Err(Ok(why))`: retry; `Err(Err(e))`: stop.
    async fn open(&mut self, e: &endpoint::Endpoint) -> Result<Wire, Result<String, FleetError>> {
        let addr = (e.host.as_str(), e.port)
            .to_socket_addrs()
            .map_err(|x| Ok(format!("resolve {}: {x}", e.host)))?
            .next()
            .ok_or_else(|| Ok(format!("resolve {}: no address", e.host)))?;
        let mut w = Wire::open(addr, e, &Tls::default(), TIMEOUT, MAX_MESSAGE)
            .await
            .map_err(Ok)?;
        w.write(self.client.connect_packet(&self.hello), TIMEOUT)
            .await
            .map_err(Ok)?;
        self.client.wrote(Instant::now());
        let p = w.read(TIMEOUT).await.map_err(Ok)?;
        self.client
            .handle(p, Instant::now())
            .map_err(|x| Ok(format!("{e}: {x}")))?;
        let filters = state::filters(&self.args.prefix);
        let s = self
            .client
            .subscribe_at(&filters, QoS::AtMostOnce, Instant::now())
            .map_err(|x| Ok(x.to_string()))?;
        w.write(s, TIMEOUT).await.map_err(Ok)?;
        // Nothing is published to us before the SUBACK: the subscription starts with it.
        loop {
            let p = w.read_or_skip(TIMEOUT).await.map_err(Ok)?;
            if let Some(refused) = self.take(p, Instant::now()) {
                if !refused.is_empty() {
                    return Err(Err(FleetError::Refused(refused.join(", "))));
                }
                break;
            }
        }
        self.client.proven();
        self.link = format!("connected to {e}");
        log::debug!(
            "fleet: connected to {e}, subscribed to {}",
            filters.join(", ")
        );
        Ok(w)
    }

    /// Gives a packet to the client core and a message to the fleet. Returns a SUBACK's
    /// refused filters. Whether a retained message was taken goes to `self.pending`.
    fn take(&mut self, p: Incoming, now: Instant) -> Option<Vec<String>> {
        match p {
            Incoming::TooLarge { topic, .. } => {
                self.fleet.too_large(&topic);
                self.pending = true;
            }
            Incoming::Packet(p) => match self.client.handle(p, now) {
                Ok(Event::Message { publish, .. }) => {
                    self.fleet.feed(
                        &publish.topic,
                        &publish.payload,
                        publish.retain,
                        now,
                        wall(),
                    );
                    self.pending = true;
                }
                Ok(Event::Subscribed { refused }) => return Some(refused),
                Ok(_) => {}
                Err(x) => log::debug!("fleet: {x}; ignored"),
            },
        }
        None
    }

    async fn session(
        &mut self,
        mut w: Wire,
        signals: &mut async_signal::Signals,
    ) -> Result<End, FleetError> {
        let subscribed = Instant::now();
        // `--once`: when the last retained message arrived (the SUBACK to start with).
        let mut last_retained = subscribed;
        self.show(subscribed, true)?;
        loop {
            let now = Instant::now();
            if self.args.once {
                if now >= self.once_at(last_retained, subscribed) {
                    self.snapshot(now)?;
                    let _ = w.write(Packet::Disconnect, TIMEOUT).await;
                    self.client.disconnected(Instant::now());
                    return Ok(End::Stop);
                }
            } else {
                self.show(now, false)?;
            }
            match self.client.tick(now) {
                Tick::Idle => {}
                Tick::Ping(p) => {
                    if let Err(e) = w.write(p, TIMEOUT).await {
                        return Ok(End::Lost(e));
                    }
                }
                Tick::Dead => {
                    return Ok(End::Lost(
                        "no answer from the broker in 1.5 × keep-alive".into(),
                    ))
                }
            }
            let wake = self.wake_at(now, last_retained, subscribed);
            let d = wake.saturating_duration_since(now);
            enum Got {
                Read(Result<Incoming, String>),
                Timer,
                Signal,
            }
            let got = async { Got::Read(w.read_or_skip(Duration::from_secs(86_400)).await) }
                .or(async {
                    smol::Timer::after(d).await;
                    Got::Timer
                })
                .or(async {
                    signals.next().await;
                    Got::Signal
                })
                .await;
            match got {
                Got::Read(Ok(p)) => {
                    // What arrived together is taken together: one look at the output after.
                    let mut next = Some(p);
                    while let Some(p) = next {
                        let now = Instant::now();
                        if is_retained(&p) {
                            last_retained = now;
                        }
                        self.take(p, now);
                        next = match w.read_buffered() {
                            Ok(p) => p.map(Incoming::Packet),
                            Err(e) => return Ok(End::Lost(e)),
                        };
                    }
                }
                Got::Read(Err(e)) => return Ok(End::Lost(e)),
                Got::Timer => {}
                Got::Signal => {
                    let _ = w.write(Packet::Disconnect, TIMEOUT).await;
                    self.client.disconnected(Instant::now());
                    return Ok(End::Stop);
                }
            }
        }
    }

    /// `--once`: when to print the snapshot: [`QUIET`] after the last retained message (at
    /// most [`ONCE_LIMIT`] after the SUBACK), then `--for`. Live messages come without the
    /// retain flag (MQTT 3.1.1 §3.3.1.3), so they do not hold it back.
    fn once_at(&self, last_retained: Instant, subscribed: Instant) -> Instant {
        (last_retained + QUIET).min(subscribed + ONCE_LIMIT) + self.args.watch
    }

    /// When to look again: the client's ping or deadline, the next output, the next agent
    /// to turn stale, the end of `--once`.
    fn wake_at(&self, now: Instant, last_retained: Instant, subscribed: Instant) -> Instant {
        let mut t = self.client.wake_at().unwrap_or(now + KEEP_ALIVE);
        if self.args.once {
            t = t.min(self.once_at(last_retained, subscribed));
        } else {
            match self.mode {
                Mode::Table if self.pending => t = t.min(self.last_out + DRAW_EVERY),
                Mode::Table => t = t.min(self.last_out + Duration::from_secs(1)),
                _ if self.pending => t = t.min(self.last_out + EMIT_EVERY),
                _ => {}
            }
            if let Some(s) = self.fleet.next_change(now) {
                t = t.min(s);
            }
        }
        t.max(now + Duration::from_millis(1))
    }

    /// Live output: the table (at most every [`DRAW_EVERY`], at least every second), or
    /// the changes as lines (at most every [`EMIT_EVERY`]). `force`: now (the link changed).
    fn show(&mut self, now: Instant, force: bool) -> Result<(), FleetError> {
        if self.args.once {
            return Ok(());
        }
        let since = now.saturating_duration_since(self.last_out);
        match self.mode {
            Mode::Table => {
                if !(force
                    || since >= Duration::from_secs(1)
                    || (self.pending && since >= DRAW_EVERY))
                {
                    return Ok(());
                }
                let (cols, rows) = term_size();
                let t = render::table(&self.fleet, now, wall(), cols, rows, &self.link);
                self.fleet.changes(now);
                self.write_raw(&t)?;
            }
            Mode::Lines | Mode::Json => {
                if !force && since < EMIT_EVERY {
                    return Ok(());
                }
                let (changed, fleet_changed) = self.fleet.changes(now);
                let mut s = String::new();
                for i in &changed {
                    if let Some(a) = self.fleet.get(i) {
                        if self.mode == Mode::Json {
                            s.push_str(&render::agent_json(&self.fleet, a, now).to_string());
                        } else {
                            s.push_str(&render::agent_line(&self.fleet, a, now, wall()));
                        }
                        s.push('\n');
                    }
                }
                let summary = Some(self.fleet.summary(now));
                if fleet_changed || force || summary != self.printed {
                    self.printed = summary;
                    if self.mode == Mode::Json {
                        s.push_str(&render::fleet_json(&self.fleet, now, &self.link).to_string());
                    } else {
                        s.push_str(&render::summary_line(&self.fleet, now, &self.link));
                    }
                    s.push('\n');
                }
                if !s.is_empty() {
                    self.write_raw(&s)?;
                }
            }
        }
        self.pending = false;
        self.last_out = now;
        Ok(())
    }

    /// `--once`: every agent shown, then the fleet's line.
    fn snapshot(&mut self, now: Instant) -> Result<(), FleetError> {
        let mut s = String::new();
        let w = wall();
        for a in self.fleet.agents() {
            if self.mode == Mode::Json {
                s.push_str(&render::agent_json(&self.fleet, a, now).to_string());
            } else {
                s.push_str(&render::agent_line(&self.fleet, a, now, w));
            }
            s.push('\n');
        }
        if self.mode == Mode::Json {
            s.push_str(&render::fleet_json(&self.fleet, now, &self.link).to_string());
        } else {
            s.push_str(&render::summary_line(&self.fleet, now, &self.link));
        }
        s.push('\n');
        self.write_raw(&s)
    }
}

/// A PUBLISH the broker sent from its retained store.
fn is_retained(p: &Incoming) -> bool {
    matches!(p, Incoming::Packet(Packet::Publish(p)) if p.retain)
}

/// The terminal's columns and rows (80 × 24 if it will not say).
fn term_size() -> (usize, usize) {
    match rustix::termios::tcgetwinsize(std::io::stdout()) {
        Ok(w) if w.ws_col > 0 && w.ws_row > 0 => (w.ws_col as usize, w.ws_row as usize),
        _ => (80, 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        Args::parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn the_command_line_takes_its_options_and_names_what_is_wrong() {
        let a = args("--broker mqtt://127.0.0.1:1883").unwrap();
        assert_eq!(
            (a.prefix.as_str(), a.json, a.once),
            ("tailbeat", false, false)
        );
        assert_eq!(a.interval, Duration::from_secs(10));
        let a = args(
            "--broker=mqtt://h --prefix tb/eu/ --filter site=a --filter role=gw --json --once --for 3s --interval 2s --max-agents 5",
        )
        .unwrap();
        assert_eq!(a.prefix, "tb/eu");
        assert_eq!(a.filter.len(), 2);
        assert_eq!((a.watch, a.max_agents), (Duration::from_secs(3), 5));
        for (bad, says) in [
            ("", "needs --broker"),
            ("--broker http://h", "--broker"),
            ("--broker mqtt://h --filter site", "TAG=VALUE"),
            ("--broker mqtt://h --interval soon", "--interval"),
            ("--broker mqtt://h --for 2s", "--once"),
            ("--broker mqtt://h --prefix a/#", "--prefix"),
            ("--broker mqtt://h --max-agents 0", "--max-agents"),
            ("--broker mqtt://h --bogus", "unknown option"),
        ] {
            let e = args(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
