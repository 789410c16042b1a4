//! The control plane over MQTT: the same protobuf messages as over HTTP, on topics.
//!
//! With `fleet.server = "mqtt(s)://..."` and `P` = `fleet.topic_prefix`, `I` = instance id:
//! - `P/I/heartbeat` ← HeartbeatRequest, QoS 1, retained (a viewer that subscribes late
//!   sees every agent's last one at once; README says what that means for a server); the
//!   sequence number grows by one per heartbeat the broker acknowledged (PUBACK), and a
//!   heartbeat not acknowledged is sent again with the same number;
//! - `P/I/events` ← state events as JSON, QoS 1, not retained, after the statuses and before
//!   the heartbeat, in order, each numbered once ([`super::events`]); spool and disk are
//!   sampled at every turn of the loop, linked or not, and their edges become events;
//! - `P/I/rebirth`, `P/rebirth` → any payload: a full heartbeat and every status again, at
//!   most once per `fleet.rebirth_min_interval`, a new connection counting as one
//!   ([`Rebirth`]);
//! - `P/I/status/pipeline`, `P/I/status/instance` ← ReportConfigRequest, QoS 1, retained:
//!   sent as soon as a status changes (and on every new connection, in case the broker lost
//!   its retained messages), the same bytes again until the broker acknowledges them;
//!   retained, so the fleet reads the current status whenever it subscribes; a deletion
//!   (version −1) is reported once and leaves the list when the broker has that report
//!   (`Remote::forget_told`, as over HTTP);
//! - `P/I/config` and `P/group/{tag value}/config` → HeartbeatResponse carrying config
//!   updates with their detail; retained by whoever publishes them, so a device that comes
//!   online gets its configs at once;
//! - `P/I/heartbeat/response` → HeartbeatResponse, optional: ReportFullState makes the next
//!   heartbeat full; updates in it are applied as from the config topics.
//!
//! A message that is not a valid HeartbeatResponse, or is larger than
//! `fleet.max_message_bytes`, is logged, counted (`health.bad_control_messages`) and
//! ignored: it changes nothing, and costs neither the connection nor memory (a large one is
//! read off the connection and dropped as it arrives, see [`Wire::read_or_skip`]). That
//! setting bounds the control plane's memory: a message is held once as received, and its
//! config details once more as decoded; the receive buffer shrinks back after it.
//!
//! The MQTT rules (CONNECT, packet ids, PUBACK and SUBACK, keep-alive and the dead-link
//! timeout, reconnect backoff) are the shared client core's, [`crate::mqtt::client`]; this
//! file says what the fleet says and does the I/O. Reconnects back off (0.5 s doubling to
//! 60 s, jittered) and the backoff starts again only once a connection has carried a
//! heartbeat ([`Client::proven`]): a connection the broker accepts and then loses at once (a
//! broker that drops us, a message we cannot read) is not a success.
//!
//! Its own connection (client id `{instance}-fleet`), on the pipeline thread like the sink's;
//! the sink's connection carries the birth and death messages.

use super::apply;
use super::events::{self, Levels};
use super::heartbeat;
use super::proto::{
    self, response_flags as rf, ConfigInfo, ConfigStatus, ResponseKind, ServerResponse,
};
use super::remote::Kind;
use crate::agent::Handle;
use crate::config::{Fleet, Server};
use crate::mqtt::client::{Client, Event, Hello, Options, Tick};
use crate::mqtt::wire::{Incoming, Wire};
use rumqttc::mqttbytes::v4::{Packet, Publish};
use smol::future::FutureExt;
use std::collections::VecDeque;
use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

/// The keep-alive the fleet link announces.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// The topics of one agent.
struct Topics {
    heartbeat: String,
    status: [String; 2],
    events: String,
    /// `P/I/rebirth` and `P/rebirth`.
    rebirth: [String; 2],
    subscribe: Vec<String>,
}

impl Topics {
    fn new(f: &Fleet, instance: &str) -> Topics {
        let p = f.topic_prefix.trim_end_matches('/');
        let mut subscribe = vec![
            format!("{p}/{instance}/config"),
            format!("{p}/{instance}/heartbeat/response"),
            format!("{p}/{instance}/rebirth"),
            format!("{p}/rebirth"),
        ];
        for v in f.tags.values() {
            subscribe.push(format!("{p}/group/{v}/config"));
        }
        Topics {
            heartbeat: format!("{p}/{instance}/heartbeat"),
            status: [
                format!("{p}/{instance}/status/pipeline"),
                format!("{p}/{instance}/status/instance"),
            ],
            events: format!("{p}/{instance}/events"),
            rebirth: [format!("{p}/{instance}/rebirth"), format!("{p}/rebirth")],
            subscribe,
        }
    }
}

/// One connection to the broker: the bytes of it; the rules are the shared [`Client`]'s.
struct Link {
    wire: Wire,
    timeout: Duration,
    /// Messages that arrived while waiting for something else.
    incoming: VecDeque<Msg>,
}

/// A message on a subscribed topic.
enum Msg {
    /// Within `fleet.max_message_bytes`.
    Publish(Publish),
    /// Over it: only its topic and size were kept.
    TooLarge { topic: String, len: usize },
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

impl Link {
    async fn open(
        f: &Fleet,
        c: &mut Client,
        hello: &Hello,
        topics: &Topics,
    ) -> Result<Link, String> {
        let Server::Mqtt(e) = &f.server else {
            return Err(format!("{} is not an MQTT broker", f.server));
        };
        let addr = (e.host.as_str(), e.port)
            .to_socket_addrs()
            .map_err(|x| err(&format!("resolve {}", e.host), x))?
            .next()
            .ok_or_else(|| format!("resolve {}: no address", e.host))?;
        let max = usize::try_from(f.max_message_bytes.0).unwrap_or(usize::MAX);
        let wire = Wire::open(addr, e, &f.tls, f.timeout.0, max).await?;
        let mut link = Link {
            wire,
            timeout: f.timeout.0,
            incoming: VecDeque::new(),
        };
        link.write(c, c.connect_packet(hello)).await?;
        match link.read(link.timeout).await? {
            Incoming::Packet(p) => {
                c.handle(p, Instant::now())
                    .map_err(|x| format!("broker {e}: {x}"))?;
            }
            // Worded here: printing the packet with Debug would link rumqttc's Debug of
            // every packet type (about 2 KiB) for this one message.
            Incoming::TooLarge { topic, len, .. } => {
                return Err(format!(
                    "broker {e} answered CONNECT with a PUBLISH of {len} bytes on {topic:?}"
                ))
            }
        }
        let s = c
            .subscribe(&topics.subscribe, Instant::now())
            .map_err(|x| x.to_string())?;
        link.write(c, s).await?;
        loop {
            let p = link.read(link.timeout).await?;
            if let Some(refused) = link.take(c, p).await? {
                // Kept: a refused filter (an ACL, a wildcard the broker forbids) does not get
                // better by reconnecting; the rest of the link works. Said once per link.
                for t in refused {
                    log::warn!("fleet: the broker refused the subscription to {t}");
                }
                break;
            }
        }
        log::info!(
            "fleet: connected to {e} as {:?}, subscribed to {}",
            hello.client_id,
            topics.subscribe.join(", ")
        );
        Ok(link)
    }

    async fn write(&mut self, c: &mut Client, p: Packet) -> Result<(), String> {
        let r = self.wire.write(p, self.timeout).await;
        c.wrote(Instant::now());
        r
    }

    async fn read(&mut self, t: Duration) -> Result<Incoming, String> {
        self.wire.read_or_skip(t).await
    }

    /// Gives what was read to the core: messages are acknowledged and queued (one too large,
    /// as a refusal). Returns the PUBACK's packet id, if it was one, in `acked`; a SUBACK's
    /// refused filters as the result.
    async fn take_one(
        &mut self,
        c: &mut Client,
        p: Incoming,
        acked: &mut Option<u16>,
    ) -> Result<Option<Vec<String>>, String> {
        let (reply, msg) = match p {
            Incoming::TooLarge {
                topic,
                pkid,
                qos,
                len,
            } => (Client::ack(pkid, qos), Msg::TooLarge { topic, len }),
            Incoming::Packet(p) => match c.handle(p, Instant::now()) {
                Ok(Event::Message { publish, reply }) => (reply, Msg::Publish(publish)),
                Ok(Event::Acked(id)) => {
                    *acked = Some(id);
                    return Ok(None);
                }
                Ok(Event::Subscribed { refused }) => return Ok(Some(refused)),
                Ok(_) => return Ok(None),
                Err(e) => {
                    log::debug!("fleet: {e}; ignored");
                    return Ok(None);
                }
            },
        };
        if let Some(r) = reply {
            self.write(c, r).await?;
        }
        self.incoming.push_back(msg);
        Ok(None)
    }

    /// [`take_one`](Self::take_one), for a packet that is not the answer being waited for.
    async fn take(&mut self, c: &mut Client, p: Incoming) -> Result<Option<Vec<String>>, String> {
        let mut acked = None;
        self.take_one(c, p, &mut acked).await
    }

    /// Publishes at QoS 1 and waits for the PUBACK.
    async fn publish(
        &mut self,
        c: &mut Client,
        topic: &str,
        payload: Vec<u8>,
        retain: bool,
    ) -> Result<(), String> {
        let p = c
            .publish(topic, payload, retain, 0, Instant::now())
            .map_err(|e| e.to_string())?;
        let Packet::Publish(ref sent) = p else {
            unreachable!("publish builds a PUBLISH")
        };
        let pkid = sent.pkid;
        self.write(c, p).await?;
        loop {
            let p = self.read(self.timeout).await?;
            let mut acked = None;
            self.take_one(c, p, &mut acked).await?;
            if acked == Some(pkid) {
                c.take_acked();
                return Ok(());
            }
        }
    }
}

/// Runs the control plane while the config names an `mqtt(s)://` broker.
pub(crate) async fn run(agent: &Handle) {
    let Some(f) = agent.fleet() else {
        return;
    };
    let instance = agent.instance();
    let topics = Topics::new(&f, &instance);
    let hello = Hello {
        client_id: f
            .client_id
            .clone()
            .unwrap_or_else(|| format!("{instance}-fleet")),
        // The sink's connection carries the birth and death messages.
        will: None,
        login: f.username.as_ref().map(|u| {
            (
                u.clone(),
                f.password
                    .clone()
                    .unwrap_or_else(|| crate::config::Secret::new("")),
            )
        }),
    };
    let startup_s = super::unix_s();
    let mut client = Client::new(
        &Options {
            keep_alive: KEEP_ALIVE,
            // One publish at a time: each waits for its PUBACK.
            window: 1,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(60),
            // One broker: nothing to fail back to.
            endpoints: 1,
            failback_after: Duration::ZERO,
        },
        Instant::now(),
    );
    let mut link: Option<Link> = None;
    // Whether the link has carried a heartbeat: only then does the backoff start again.
    let mut proven = false;
    let mut seq = 1u64;
    let mut full = true;
    let mut next_heartbeat = Instant::now();
    // Each report's bytes, and the statuses it carries (deletions it told leave the list
    // once the broker has it).
    let mut reports: [Option<(Vec<u8>, Vec<ConfigInfo>)>; 2] = [None, None];
    let mut requests = 0u64;
    let events = agent.events();
    let mut levels = Levels::default();
    let mut rebirth = Rebirth::default();
    loop {
        let g = match agent.fleet() {
            _ if agent.stopping() => None,
            Some(g)
                if g.server == f.server && g.topic_prefix == f.topic_prefix && g.tags == f.tags =>
            {
                Some(g)
            }
            _ => None,
        };
        let Some(g) = g else {
            if let Some(mut l) = link.take() {
                let _ = l.write(&mut client, Packet::Disconnect).await;
                client.disconnected(Instant::now());
            }
            // The last event number used is kept: the next start goes on from it.
            events.close();
            return;
        };
        let interval = g.heartbeat_interval.0;
        // Spool and disk, sampled at each turn, linked or not (a message, a heartbeat, a
        // status, an event, a reload, a reconnect attempt): their edges become events.
        let h = agent.health();
        let threshold = g
            .spool_high_bytes
            .map_or_else(|| agent.remote(|_, l| l.spool.max_bytes.0) / 5 * 4, |s| s.0);
        for e in levels.sample(h.spool_bytes, threshold, h.disk_full, 0) {
            events.raise(e);
        }
        let now = Instant::now();
        next_heartbeat = next_heartbeat.min(now + interval);
        let l = match &mut link {
            Some(l) => l,
            None => match client.connecting(now) {
                // A status change woke us early: the backoff still holds.
                Err(wait) => {
                    agent.wait_for(wait).await;
                    continue;
                }
                Ok(_) => match Link::open(&f, &mut client, &hello, &topics).await {
                    Ok(l) => {
                        proven = false;
                        full = true;
                        // The broker may have restarted without its retained messages: say the
                        // statuses again on every new connection. That is a rebirth: a
                        // request that the broker kept retained is answered by it.
                        statuses_again(agent);
                        rebirth.served(Instant::now());
                        link.insert(l)
                    }
                    Err(e) => {
                        let d = client.link_lost(Instant::now()).after;
                        log::warn!("fleet: {e}; retrying in {} ms", d.as_millis());
                        agent.wait_for(d).await;
                        continue;
                    }
                },
            },
        };
        while let Some(m) = l.incoming.pop_front() {
            if let Msg::Publish(p) = &m {
                if topics.rebirth.contains(&p.topic) {
                    let now = Instant::now();
                    if rebirth.request(now, g.rebirth_min_interval.0) {
                        log::info!(
                            "fleet: rebirth asked on {}: a full heartbeat and every status again",
                            p.topic
                        );
                        full = true;
                        next_heartbeat = now;
                        statuses_again(agent);
                        rebirth.served(now);
                    } else {
                        log::debug!(
                            "fleet: rebirth asked on {} within fleet.rebirth_min_interval of the last; the retained heartbeat and statuses answer it",
                            p.topic
                        );
                    }
                    continue;
                }
            }
            on_message(agent, m, &mut full, f.max_message_bytes.0);
        }
        // Status first: it must not wait for anything.
        let mut failed = None;
        for k in Kind::ALL {
            let i = k as usize;
            if reports[i].is_none() {
                let changed =
                    agent.remote(|r, _| std::mem::take(&mut r.dirty[i]).then(|| r.infos(k)));
                if let Some(infos) = changed {
                    requests += 1;
                    let rid = format!("{instance}-{startup_s:x}-{requests}");
                    reports[i] = Some((
                        proto::report_config_request(rid.as_bytes(), &instance, &infos),
                        infos,
                    ));
                }
            }
            if let Some((body, _)) = &reports[i] {
                match l
                    .publish(&mut client, &topics.status[i], body.clone(), true)
                    .await
                {
                    Ok(()) => {
                        log::info!(
                            "fleet: {} config status published on {}",
                            k.name(),
                            topics.status[i]
                        );
                        // Told once: a deletion leaves the list, as over HTTP (`Remote`).
                        if let Some((_, sent)) = reports[i].take() {
                            agent.remote(|r, _| r.forget_told(k, &sent));
                        }
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        // Events next, in order, each numbered once (events.rs).
        while failed.is_none() {
            let Some(n) = events.with(|q| q.next(&instance)) else {
                break;
            };
            if let Some(upto) = n.reserve {
                events.reserve(upto);
            }
            match l
                .publish(&mut client, &topics.events, n.payload, false)
                .await
            {
                Ok(()) => {
                    log::debug!("fleet: event {} published", n.seq);
                    events.with(|q| q.published(n.seq));
                }
                Err(e) => failed = Some(e),
            }
        }
        if failed.is_none() && Instant::now() >= next_heartbeat {
            requests += 1;
            let rid = format!("{instance}-{startup_s:x}-{requests}");
            let statuses = full
                .then(|| agent.remote(|r, _| [r.infos(Kind::Pipeline), r.infos(Kind::Instance)]));
            let body = heartbeat::request(agent, seq, rid.into_bytes(), full, statuses, startup_s)
                .encode();
            // Retained: a viewer that subscribes late sees every agent's last heartbeat at
            // once (README, "MQTT topics", says what that means for a server).
            match l.publish(&mut client, &topics.heartbeat, body, true).await {
                Ok(()) => {
                    log::debug!("fleet: heartbeat {seq} acknowledged");
                    if !proven {
                        proven = true;
                        client.proven();
                    }
                    seq += 1;
                    full = false;
                    next_heartbeat = Instant::now() + interval;
                }
                Err(e) => failed = Some(e),
            }
        }
        if failed.is_none() && !l.incoming.is_empty() {
            continue;
        }
        if failed.is_none() {
            // Wait for a message, the next heartbeat, a keep-alive, or a change of status.
            let until = client
                .wake_at()
                .map_or(next_heartbeat, |t| t.min(next_heartbeat));
            let d = until.saturating_duration_since(Instant::now());
            let got = async { Some(l.read(Duration::from_secs(86_400)).await) }
                .or(async {
                    agent.wait_for(d).await;
                    None
                })
                .or(async {
                    events.rung().await;
                    None
                })
                .await;
            match got {
                Some(Ok(p)) => {
                    if let Err(e) = l.take(&mut client, p).await {
                        failed = Some(e);
                    }
                }
                Some(Err(e)) => failed = Some(e),
                None => {}
            }
            if failed.is_none() {
                match client.tick(Instant::now()) {
                    Tick::Idle => {}
                    Tick::Ping(p) => {
                        if let Err(e) = l.write(&mut client, p).await {
                            failed = Some(e);
                        }
                    }
                    Tick::Dead => {
                        failed = Some("no answer from the broker in 1.5 × keep-alive".into())
                    }
                }
            }
        }
        if let Some(e) = failed {
            link = None;
            let d = client.link_lost(Instant::now()).after;
            log::warn!("fleet: {e}; reconnecting in {} ms", d.as_millis());
            agent.wait_for(d).await;
        }
    }
}

/// Every status is published again (a new connection, a rebirth).
fn statuses_again(agent: &Handle) {
    agent.remote(|r, _| {
        for k in Kind::ALL {
            if !r.entries(k).is_empty() {
                r.dirty[k as usize] = true;
            }
        }
    });
}

/// Rebirth requests, rate-limited: one is answered only if nothing answered one (or a new
/// connection, which says everything again) within `fleet.rebirth_min_interval`. A request
/// within it is not deferred but dropped: heartbeats and statuses are retained, so the one
/// who asked reads the latest from the broker; and a retained request, which the broker
/// delivers again on every connection, costs nothing more than the connection's own full
/// heartbeat. So whatever arrives, the agent publishes at most one full state per interval
/// (and per connection).
#[derive(Debug, Default)]
struct Rebirth {
    last: Option<Instant>,
}

impl Rebirth {
    /// A request at `now`: whether to answer it.
    fn request(&self, now: Instant, min_interval: Duration) -> bool {
        self.last
            .is_none_or(|t| now.saturating_duration_since(t) >= min_interval)
    }

    /// Everything was said again at `now`.
    fn served(&mut self, now: Instant) {
        self.last = Some(now);
    }
}

fn on_message(agent: &Handle, m: Msg, full: &mut bool, max: u64) {
    let p = match m {
        Msg::Publish(p) => p,
        Msg::TooLarge { topic, len } => {
            log::warn!(
                "fleet: {topic}: a message of {len} bytes, over fleet.max_message_bytes = {max}; refused"
            );
            agent.bad_control_message();
            return;
        }
    };
    let r = match ServerResponse::decode(ResponseKind::Heartbeat, &p.payload) {
        Ok(r) => r,
        Err(e) => {
            log::warn!("fleet: {}: {e}; ignored", p.topic);
            agent.bad_control_message();
            return;
        }
    };
    if r.flags & rf::REPORT_FULL_STATE != 0 {
        *full = true;
    }
    for (k, updates) in [
        (Kind::Pipeline, &r.pipeline_updates),
        (Kind::Instance, &r.instance_updates),
    ] {
        for d in updates {
            if agent.remote(|r, _| r.settled(k, &d.name, d.version)) {
                continue;
            }
            if d.detail.is_empty() && d.version != -1 {
                let why = "no detail: over MQTT a config carries its detail";
                agent.remote(|r, _| r.set_status(k, &d.name, d.version, ConfigStatus::Failed, why));
                let mut e = events::Event::new(events::Kind::ConfigFailed, Some(&d.name), 0);
                e.version = Some(d.version);
                e.message = Some(why.into());
                agent.events().raise(e);
                continue;
            }
            apply(agent, k, d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebirth_requests_are_answered_at_most_once_per_interval_and_a_connection_counts() {
        let t0 = Instant::now();
        let gap = Duration::from_secs(10);
        let mut r = Rebirth::default();
        assert!(r.request(t0, gap));
        // A new connection says everything: a retained request that arrives with it is not
        // answered again.
        r.served(t0);
        assert!(!r.request(t0 + Duration::from_millis(5), gap));
        // A flood within the interval: nothing.
        for ms in (0..10_000).step_by(10) {
            assert!(!r.request(t0 + Duration::from_millis(ms), gap));
        }
        assert!(r.request(t0 + gap, gap));
        r.served(t0 + gap);
        assert!(!r.request(t0 + gap + Duration::from_secs(9), gap));
    }
}
