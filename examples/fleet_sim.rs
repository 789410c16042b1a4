//! N simulated agents' control traffic on an MQTT broker: what `tailbeat fleet` reads.
//!
//! Each agent is one MQTT connection (client id `{name}`, keep-alive 30 s, clean session,
//! its death registered as the Will) that says what a real agent with `fleet.server =
//! "mqtt://..."` says, in the agent's own encodings (`tailbeat::control::proto`):
//! - `P/I/state`: the birth (retained, QoS 1) with a session number and the connect time;
//!   the Will is the same with `"offline"`;
//! - `P/I/status/pipeline` and `P/I/status/instance`: a `ReportConfigRequest` each
//!   (retained, QoS 1), at connect;
//! - `P/I/heartbeat`: a `HeartbeatRequest` with the 39 `health.*` figures and two tags,
//!   every interval (QoS 1; retained with `--retain-heartbeats`), full (with config statuses)
//!   the first time;
//! - `P/I/events`: a `config_applied` event at connect, then one every `--events-every`.
//!
//! A real agent uses two connections (the sink's carries the state topic and the frames, the
//! fleet link the rest); one here, since what the broker stores and forwards is the same
//! messages. Blocking sockets on one thread: a tick writes what is due and reads off (and
//! drops) the PUBACKs of the agent it writes to.
//!
//! ```sh
//! cargo run --release --features fleet --example fleet_sim -- \
//!     --broker 127.0.0.1:1883 --agents 2000 [--interval 10s] [--for 60s] [--prefix tailbeat]
//! ```
//!
//! It prints the bytes and messages it sent and received, and what one agent costs the
//! broker per hour at the interval given. `tests/fleet_view.rs` drives the same [`Sim`].

#![forbid(unsafe_code)]
#![allow(dead_code)]

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Connect, LastWill, Packet, Publish};
use rumqttc::mqttbytes::QoS;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime};
use tailbeat::control::proto::{
    report_config_request, Attributes, ConfigInfo, ConfigStatus, HeartbeatRequest,
};

/// The health keys a real heartbeat carries (src/control/heartbeat.rs), with made-up values
/// of a plausible width.
const HEALTH: [(&str, u64); 39] = [
    ("lines_read", 1_284_113),
    ("bytes_read", 190_228_311),
    ("files_open", 3),
    ("files_waiting", 0),
    ("frames_spooled", 20_112),
    ("frames_sent", 20_110),
    ("frames_acked", 20_110),
    ("lines_acked", 1_284_000),
    ("retries", 4),
    ("pipelines", 2),
    ("spool_bytes", 18_220),
    ("spool_frames", 2),
    ("oldest_unacked_age_ms", 240),
    ("dropped_frames", 0),
    ("dropped_lines", 0),
    ("lines_cut", 0),
    ("cut_bytes", 0),
    ("partial_lines", 1),
    ("files_opened", 5),
    ("files_rotated", 2),
    ("files_truncated", 0),
    ("truncated_lost_bytes", 0),
    ("vanished_lost_bytes", 0),
    ("corrupt_records", 0),
    ("corrupt_bytes", 0),
    ("spool_lost_frames", 0),
    ("positions_lost_bytes", 0),
    ("dead_letters", 0),
    ("bad_control_messages", 0),
    ("spool_write_errors", 0),
    ("spool_full_waits", 0),
    ("disk_full_waits", 0),
    ("disk_full", 0),
    ("latency_p50_ms", 41),
    ("latency_p90_ms", 88),
    ("latency_p99_ms", 210),
    ("rss_bytes", 3_211_264),
    ("disk_free_bytes", 1_932_735_283),
    ("uptime_s", 86_400),
];

/// How the simulated agents behave.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The broker.
    pub broker: SocketAddr,
    /// `fleet.topic_prefix`.
    pub prefix: String,
    /// `fleet.heartbeat_interval`.
    pub interval: Duration,
    /// Heartbeats retained too.
    pub retain_heartbeats: bool,
    /// An event this often per agent, if any.
    pub events_every: Option<Duration>,
}

/// One simulated agent.
#[derive(Debug)]
pub struct SimAgent {
    /// Its instance id.
    pub name: String,
    sock: Option<TcpStream>,
    /// Its session number.
    pub session: u64,
    seq: u64,
    /// Its last event number.
    pub ev_seq: u64,
    next_beat: Instant,
    next_event: Option<Instant>,
    /// No more heartbeats (a hung agent: the connection stays until the broker's keep-alive
    /// drops it).
    pub silent: bool,
    pkid: u16,
    startup: u64,
}

/// Traffic counts.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// PUBLISH packets sent.
    pub publishes: u64,
    /// Bytes written (whole MQTT packets: CONNECT, PUBLISH, DISCONNECT).
    pub bytes_out: u64,
    /// Bytes read (CONNACK, PUBACK).
    pub bytes_in: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// Bytes of heartbeat PUBLISH packets.
    pub heartbeat_bytes: u64,
    /// Bytes of births and statuses (per connect).
    pub connect_bytes: u64,
    /// Events sent.
    pub events: u64,
}

/// N simulated agents.
#[derive(Debug)]
pub struct Sim {
    /// How they behave.
    pub opts: SimOptions,
    /// The agents.
    pub agents: Vec<SimAgent>,
    /// What went over the wire.
    pub counts: Counts,
}

fn unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn encode(p: Packet) -> Vec<u8> {
    let mut b = BytesMut::new();
    p.write(&mut b, 1 << 20).expect("a packet within 1 MiB");
    b.to_vec()
}

/// The state message, as `src/sink/mqtt/birth.rs` writes it.
pub fn state_payload(online: bool, name: &str, startup: u64, session: u64, at: u64) -> Vec<u8> {
    format!(
        r#"{{"state":"{}","instance":"{name}","version":"0.1.0","startup_time":{startup},"session":{session},"connected_at":{at}}}"#,
        if online { "online" } else { "offline" }
    )
    .into_bytes()
}

fn configs() -> [Vec<ConfigInfo>; 2] {
    let c = |name: &str, version: i64| ConfigInfo {
        name: name.into(),
        version,
        status: ConfigStatus::Applied,
        message: String::new(),
    };
    [vec![c("app", 3), c("syslog", 1)], vec![c("base", 2)]]
}

impl Sim {
    /// `n` agents named `{name}-{i}`, not yet connected.
    pub fn new(opts: SimOptions, n: usize, name: &str) -> Sim {
        let now = Instant::now();
        let agents = (0..n)
            .map(|i| SimAgent {
                name: format!("{name}-{i}"),
                sock: None,
                session: 100 + i as u64,
                seq: 0,
                ev_seq: 0,
                next_beat: now,
                next_event: None,
                silent: false,
                pkid: 0,
                startup: unix(),
            })
            .collect();
        Sim {
            opts,
            agents,
            counts: Counts::default(),
        }
    }

    fn topic(&self, i: usize, tail: &str) -> String {
        format!("{}/{}/{tail}", self.opts.prefix, self.agents[i].name)
    }

    /// Writes `bytes` to agent `i`'s connection, after reading off what the broker sent it
    /// (PUBACKs), so its receive buffer never fills.
    fn send(&mut self, i: usize, bytes: &[u8]) -> std::io::Result<()> {
        let sock = self.agents[i]
            .sock
            .as_mut()
            .ok_or_else(|| std::io::Error::other("not connected"))?;
        sock.set_nonblocking(true)?;
        let mut buf = [0u8; 4096];
        loop {
            match sock.read(&mut buf) {
                Ok(0) => return Err(std::io::Error::other("the broker closed the connection")),
                Ok(n) => self.counts.bytes_in += n as u64,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        sock.set_nonblocking(false)?;
        sock.write_all(bytes)?;
        self.counts.bytes_out += bytes.len() as u64;
        Ok(())
    }

    /// A QoS 1 PUBLISH from agent `i`; returns its size.
    pub fn publish(
        &mut self,
        i: usize,
        tail: &str,
        payload: Vec<u8>,
        retain: bool,
    ) -> std::io::Result<usize> {
        let topic = self.topic(i, tail);
        let a = &mut self.agents[i];
        a.pkid = a.pkid % u16::MAX + 1;
        let mut p = Publish::new(topic, QoS::AtLeastOnce, payload);
        p.pkid = a.pkid;
        p.retain = retain;
        let b = encode(Packet::Publish(p));
        self.send(i, &b)?;
        self.counts.publishes += 1;
        Ok(b.len())
    }

    /// Connects agent `i` (a new session), and publishes its birth, statuses, a full
    /// heartbeat and a `config_applied` event.
    pub fn connect(&mut self, i: usize) -> std::io::Result<()> {
        let now = unix();
        let state_topic = self.topic(i, "state");
        let a = &mut self.agents[i];
        a.session += 1;
        let mut c = Connect::new(a.name.clone());
        c.keep_alive = 30;
        c.clean_session = true;
        c.last_will = Some(LastWill::new(
            state_topic,
            state_payload(false, &a.name, a.startup, a.session, now),
            QoS::AtLeastOnce,
            true,
        ));
        let mut sock = TcpStream::connect(self.opts.broker)?;
        sock.set_nodelay(true)?;
        let b = encode(Packet::Connect(c));
        sock.write_all(&b)?;
        self.counts.bytes_out += b.len() as u64;
        let mut ack = [0u8; 4];
        sock.read_exact(&mut ack)?;
        self.counts.bytes_in += 4;
        if ack[0] != 0x20 || ack[3] != 0 {
            return Err(std::io::Error::other(format!("CONNACK {ack:?}")));
        }
        a.sock = Some(sock);
        let (name, startup, session) = (a.name.clone(), a.startup, a.session);
        let mut n = self.publish(
            i,
            "state",
            state_payload(true, &name, startup, session, now),
            true,
        )?;
        let [p, inst] = configs();
        n += self.publish(
            i,
            "status/pipeline",
            report_config_request(b"r1", &name, &p),
            true,
        )?;
        n += self.publish(
            i,
            "status/instance",
            report_config_request(b"r2", &name, &inst),
            true,
        )?;
        self.counts.connect_bytes += n as u64;
        self.heartbeat(i, true)?;
        self.event(i, "config_applied", "app", "")?;
        // The next ones spread over the interval, as agents started at different times are.
        let spread = self
            .opts
            .interval
            .mul_f64((i + 1) as f64 / self.agents.len() as f64);
        let a = &mut self.agents[i];
        a.next_beat = Instant::now() + spread;
        a.next_event = self.opts.events_every.map(|e| Instant::now() + e);
        Ok(())
    }

    /// Connects every agent.
    pub fn connect_all(&mut self) -> std::io::Result<()> {
        for i in 0..self.agents.len() {
            self.connect(i)?;
        }
        Ok(())
    }

    /// The heartbeat agent `i` sends next.
    pub fn heartbeat_payload(&mut self, i: usize, full: bool) -> Vec<u8> {
        let a = &mut self.agents[i];
        a.seq += 1;
        let [p, inst] = if full { configs() } else { Default::default() };
        HeartbeatRequest {
            request_id: format!("{:016x}", a.seq).into_bytes(),
            sequence_num: a.seq,
            capabilities: 3,
            instance_id: a.name.clone(),
            agent_type: "tailbeat".into(),
            attributes: Some(Attributes {
                version: "0.1.0".into(),
                ip: "10.20.30.40".into(),
                hostname: format!("host-{}", a.name),
                hostid: "4c4c4544003957108052b4c04f384e32".into(),
                extras: [("os", "linux".to_string()), ("arch", "aarch64".to_string())]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.into_bytes()))
                    .chain(
                        HEALTH
                            .iter()
                            .map(|(k, v)| (format!("health.{k}"), v.to_string().into_bytes())),
                    )
                    .collect(),
            }),
            tags: vec![
                ("site".into(), format!("plant-{}", i % 7)),
                ("role".into(), "gateway".into()),
            ],
            running_status: "running".into(),
            startup_time: a.startup as i64,
            pipeline_configs: p,
            instance_configs: inst,
            flags: full as u64,
        }
        .encode()
    }

    /// Agent `i` heartbeats now.
    pub fn heartbeat(&mut self, i: usize, full: bool) -> std::io::Result<()> {
        let p = self.heartbeat_payload(i, full);
        let retain = self.opts.retain_heartbeats;
        let n = self.publish(i, "heartbeat", p, retain)?;
        self.counts.heartbeats += 1;
        self.counts.heartbeat_bytes += n as u64;
        self.agents[i].next_beat = Instant::now() + self.opts.interval;
        Ok(())
    }

    /// Agent `i` publishes an event of `kind` about `name`, with the next number.
    pub fn event(
        &mut self,
        i: usize,
        kind: &str,
        name: &str,
        message: &str,
    ) -> std::io::Result<()> {
        self.agents[i].ev_seq += 1;
        let a = &self.agents[i];
        let e = format!(
            r#"{{"instance":"{}","seq":{},"at":{},"kind":"{kind}","name":"{name}","version":3,"message":"{message}"}}"#,
            a.name,
            a.ev_seq,
            unix()
        );
        self.publish(i, "events", e.into_bytes(), false)?;
        self.counts.events += 1;
        Ok(())
    }

    /// Sends what is due; returns when the next thing is due.
    pub fn tick(&mut self, now: Instant) -> std::io::Result<Instant> {
        let mut next = now + self.opts.interval;
        for i in 0..self.agents.len() {
            let a = &self.agents[i];
            if a.sock.is_none() || a.silent {
                continue;
            }
            if a.next_beat <= now {
                self.heartbeat(i, false)?;
            }
            if self.agents[i].next_event.is_some_and(|t| t <= now) {
                self.event(i, "alert_raised", "latency", "read→ack p99 above 5s")?;
                self.agents[i].next_event = self.opts.events_every.map(|e| now + e);
            }
            let a = &self.agents[i];
            next = next.min(a.next_beat);
            if let Some(t) = a.next_event {
                next = next.min(t);
            }
        }
        Ok(next)
    }

    /// Agent `i`'s connection ends without a DISCONNECT: the broker publishes its Will.
    pub fn kill(&mut self, i: usize) {
        if let Some(s) = self.agents[i].sock.take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Agent `i` sends nothing more, its connection open.
    pub fn silence(&mut self, i: usize) {
        self.agents[i].silent = true;
    }
}

fn main() {
    let mut broker: SocketAddr = "127.0.0.1:1883".parse().unwrap();
    let mut n = 2000usize;
    let mut interval = Duration::from_secs(10);
    let mut run_for = Duration::from_secs(60);
    let mut prefix = "tailbeat".to_string();
    let mut retain = false;
    let mut events_every = None;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    let dur = |v: Option<&String>| {
        tailbeat::config::parse_duration(v.expect("a value")).expect("a duration like 10s")
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--broker" => broker = it.next().expect("HOST:PORT").parse().expect("an IP:PORT"),
            "--agents" => n = it.next().expect("N").parse().expect("a number"),
            "--interval" => interval = dur(it.next()),
            "--for" => run_for = dur(it.next()),
            "--prefix" => prefix = it.next().expect("P").clone(),
            "--retain-heartbeats" => retain = true,
            "--events-every" => events_every = Some(dur(it.next())),
            other => {
                eprintln!("fleet_sim: unknown option {other:?}\nusage: fleet_sim --broker IP:PORT --agents N [--interval 10s] [--for 60s] [--prefix P] [--retain-heartbeats] [--events-every D]");
                std::process::exit(2);
            }
        }
    }
    let mut sim = Sim::new(
        SimOptions {
            broker,
            prefix,
            interval,
            retain_heartbeats: retain,
            events_every,
        },
        n,
        "sim",
    );
    let t0 = Instant::now();
    if let Err(e) = sim.connect_all() {
        eprintln!("fleet_sim: connect: {e}");
        std::process::exit(1);
    }
    let up = t0.elapsed();
    let at_connect = sim.counts;
    eprintln!(
        "fleet_sim: {n} agents connected in {:.2} s ({} bytes out: births, statuses, first heartbeats, events)",
        up.as_secs_f64(),
        at_connect.bytes_out
    );
    let end = Instant::now() + run_for;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        match sim.tick(now) {
            Ok(next) => std::thread::sleep(next.min(end).saturating_duration_since(Instant::now())),
            Err(e) => {
                eprintln!("fleet_sim: {e}");
                std::process::exit(1);
            }
        }
    }
    let c = sim.counts;
    let hb = (c.heartbeats - at_connect.heartbeats).max(1);
    let hb_bytes = c.heartbeat_bytes - at_connect.heartbeat_bytes;
    let per_hour = 3600.0 / interval.as_secs_f64();
    let hb_size = hb_bytes as f64 / hb as f64;
    println!(
        "agents {n}, interval {} s, ran {:.0} s after connecting",
        interval.as_secs_f64(),
        run_for.as_secs_f64()
    );
    println!(
        "connect: {:.0} bytes per agent (CONNECT with Will, birth, 2 statuses, full heartbeat, event)",
        at_connect.bytes_out as f64 / n as f64
    );
    println!(
        "steady: {hb} short heartbeats, {hb_size:.0} bytes each as an MQTT PUBLISH; PUBACK 4 bytes"
    );
    println!(
        "per agent per hour: {per_hour:.0} PUBLISH + {per_hour:.0} PUBACK = {:.0} messages, {:.0} bytes in + {:.0} bytes out at the broker (MQTT bytes, no TCP/IP headers)",
        2.0 * per_hour,
        per_hour * hb_size,
        per_hour * 4.0
    );
    println!(
        "totals: {} publishes, {} bytes out, {} bytes in",
        c.publishes, c.bytes_out, c.bytes_in
    );
}
