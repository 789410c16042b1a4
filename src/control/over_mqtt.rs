//! The control plane over MQTT: the same protobuf messages as over HTTP, on topics.
//!
//! With `fleet.server = "mqtt(s)://..."` and `P` = `fleet.topic_prefix`, `I` = instance id:
//! - `P/I/heartbeat` ← HeartbeatRequest, QoS 1; the sequence number grows by one per
//!   heartbeat the broker acknowledged (PUBACK), and a heartbeat not acknowledged is sent
//!   again with the same number;
//! - `P/I/status/pipeline`, `P/I/status/instance` ← ReportConfigRequest, QoS 1, retained:
//!   sent as soon as a status changes (and on every new connection, in case the broker lost
//!   its retained messages), the same bytes again until the broker acknowledges them;
//!   retained, so the fleet reads the current status whenever it subscribes;
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
//! Reconnects back off (0.5 s doubling to 60 s, jittered) and the backoff starts again only
//! once a connection has carried a heartbeat: a connection the broker accepts and then
//! loses at once (a broker that drops us, a message we cannot read) is not a success.
//!
//! Its own connection (client id `{instance}-fleet`), on the pipeline thread like the sink's;
//! the sink's connection carries the birth and death messages.

use super::apply;
use super::heartbeat;
use super::proto::{self, response_flags as rf, ConfigStatus, ResponseKind, ServerResponse};
use super::remote::Kind;
use crate::agent::{Notify, Shared};
use crate::backoff::Backoff;
use crate::config::{endpoint, Fleet};
use crate::sink::mqtt::wire::{Incoming, Wire};
use rumqttc::mqttbytes::v4::{
    Connect, ConnectReturnCode, Login, Packet, PubAck, Publish, Subscribe, SubscribeFilter,
};
use rumqttc::mqttbytes::QoS;
use smol::future::FutureExt;
use std::collections::VecDeque;
use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

/// The topics of one agent.
struct Topics {
    heartbeat: String,
    status: [String; 2],
    subscribe: Vec<String>,
}

impl Topics {
    fn new(f: &Fleet, instance: &str) -> Topics {
        let p = f.topic_prefix.trim_end_matches('/');
        let mut subscribe = vec![
            format!("{p}/{instance}/config"),
            format!("{p}/{instance}/heartbeat/response"),
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
            subscribe,
        }
    }
}

/// One connection to the broker: a small MQTT 3.1.1 client over rumqttc's codec.
struct Link {
    wire: Wire,
    pkid: u16,
    timeout: Duration,
    keep_alive: Duration,
    last_write: Instant,
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
    async fn open(f: &Fleet, client_id: &str, topics: &Topics) -> Result<Link, String> {
        let e = endpoint::mqtt(&f.server)?;
        let addr = (e.host.as_str(), e.port)
            .to_socket_addrs()
            .map_err(|x| err(&format!("resolve {}", e.host), x))?
            .next()
            .ok_or_else(|| format!("resolve {}: no address", e.host))?;
        let max = usize::try_from(f.max_message_bytes.0).unwrap_or(usize::MAX);
        let wire = Wire::open(addr, &e, &f.tls, f.timeout.0, max).await?;
        let keep_alive = Duration::from_secs(30);
        let mut link = Link {
            wire,
            pkid: 0,
            timeout: f.timeout.0,
            keep_alive,
            last_write: Instant::now(),
            incoming: VecDeque::new(),
        };
        let mut c = Connect::new(client_id.to_string());
        c.keep_alive = keep_alive.as_secs() as u16;
        c.clean_session = true;
        if let Some(u) = &f.username {
            c.login = Some(Login::new(
                u.clone(),
                f.password.as_ref().map_or("", |p| p.expose()),
            ));
        }
        link.write(Packet::Connect(c)).await?;
        match link.read(link.timeout).await? {
            Incoming::Packet(Packet::ConnAck(a)) if a.code == ConnectReturnCode::Success => {}
            Incoming::Packet(Packet::ConnAck(a)) => {
                return Err(format!("broker {e} refused the connection: {:?}", a.code))
            }
            p => return Err(format!("broker {e} answered CONNECT with {p:?}")),
        }
        let filters = topics
            .subscribe
            .iter()
            .map(|t| SubscribeFilter::new(t.clone(), QoS::AtLeastOnce))
            .collect::<Vec<_>>();
        let pkid = link.next_pkid();
        let mut s = Subscribe::new_many(filters);
        s.pkid = pkid;
        link.write(Packet::Subscribe(s)).await?;
        loop {
            match link.read(link.timeout).await? {
                Incoming::Packet(Packet::SubAck(a)) if a.pkid == pkid => break,
                p => link.take(p).await?,
            }
        }
        log::info!(
            "fleet: connected to {e} as {client_id:?}, subscribed to {}",
            topics.subscribe.join(", ")
        );
        Ok(link)
    }

    fn next_pkid(&mut self) -> u16 {
        self.pkid = self.pkid % u16::MAX + 1;
        self.pkid
    }

    async fn write(&mut self, p: Packet) -> Result<(), String> {
        self.wire.write(p, self.timeout).await?;
        self.last_write = Instant::now();
        Ok(())
    }

    async fn read(&mut self, t: Duration) -> Result<Incoming, String> {
        self.wire.read_or_skip(t).await
    }

    /// Takes a packet that is not the answer being waited for: messages are acknowledged
    /// and queued (one too large, as a refusal), the rest ignored.
    async fn take(&mut self, p: Incoming) -> Result<(), String> {
        let (pkid, qos, msg) = match p {
            Incoming::Packet(Packet::Publish(p)) => (p.pkid, p.qos, Msg::Publish(p)),
            Incoming::TooLarge {
                topic,
                pkid,
                qos,
                len,
            } => (pkid, qos, Msg::TooLarge { topic, len }),
            Incoming::Packet(_) => return Ok(()),
        };
        // Subscribed at QoS 1: nothing arrives at QoS 2.
        if qos == QoS::AtLeastOnce {
            self.write(Packet::PubAck(PubAck::new(pkid))).await?;
        }
        self.incoming.push_back(msg);
        Ok(())
    }

    /// Publishes at QoS 1 and waits for the PUBACK.
    async fn publish(&mut self, topic: &str, payload: Vec<u8>, retain: bool) -> Result<(), String> {
        let pkid = self.next_pkid();
        let mut p = Publish::new(topic.to_string(), QoS::AtLeastOnce, payload);
        p.pkid = pkid;
        p.retain = retain;
        self.write(Packet::Publish(p)).await?;
        loop {
            match self.read(self.timeout).await? {
                Incoming::Packet(Packet::PubAck(a)) if a.pkid == pkid => return Ok(()),
                p => self.take(p).await?,
            }
        }
    }

    fn ping_at(&self) -> Instant {
        self.last_write + self.keep_alive / 2
    }
}

/// Runs the control plane while the config names an `mqtt(s)://` broker.
pub(crate) async fn run(st: Shared, wake: Notify) {
    let Some(f) = st.borrow().cfg.fleet.clone() else {
        return;
    };
    let instance = st.borrow().instance.clone();
    let topics = Topics::new(&f, &instance);
    let client_id = f
        .client_id
        .clone()
        .unwrap_or_else(|| format!("{instance}-fleet"));
    let startup_s = (crate::agent::now_ms() / 1000) as i64;
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
    let mut link: Option<Link> = None;
    // Whether the link has carried a heartbeat: only then does the backoff start again.
    let mut proven = false;
    let mut seq = 1u64;
    let mut full = true;
    let mut next_heartbeat = Instant::now();
    let mut reports: [Option<Vec<u8>>; 2] = [None, None];
    let mut requests = 0u64;
    loop {
        let interval = {
            let s = st.borrow();
            match &s.cfg.fleet {
                _ if s.shutdown => None,
                Some(g)
                    if g.server == f.server
                        && g.topic_prefix == f.topic_prefix
                        && g.tags == f.tags =>
                {
                    Some(g.heartbeat_interval.0)
                }
                _ => None,
            }
        };
        let Some(interval) = interval else {
            if let Some(mut l) = link.take() {
                let _ = l.write(Packet::Disconnect).await;
            }
            return;
        };
        let now = Instant::now();
        next_heartbeat = next_heartbeat.min(now + interval);
        let l = match &mut link {
            Some(l) => l,
            None => match Link::open(&f, &client_id, &topics).await {
                Ok(l) => {
                    proven = false;
                    full = true;
                    // The broker may have restarted without its retained messages: say the
                    // statuses again on every new connection.
                    let mut s = st.borrow_mut();
                    for k in Kind::ALL {
                        if !s.remote.entries(k).is_empty() {
                            s.remote.dirty[k as usize] = true;
                        }
                    }
                    drop(s);
                    link.insert(l)
                }
                Err(e) => {
                    let d = backoff.next_delay();
                    log::warn!("fleet: {e}; retrying in {} ms", d.as_millis());
                    wake.wait_for(d).await;
                    continue;
                }
            },
        };
        while let Some(m) = l.incoming.pop_front() {
            on_message(&st, m, &mut full, f.max_message_bytes.0);
        }
        // Status first: it must not wait for anything.
        let mut failed = None;
        for k in Kind::ALL {
            let i = k as usize;
            if reports[i].is_none() {
                let mut s = st.borrow_mut();
                if s.remote.dirty[i] {
                    s.remote.dirty[i] = false;
                    requests += 1;
                    let rid = format!("{instance}-{startup_s:x}-{requests}");
                    reports[i] = Some(proto::report_config_request(
                        rid.as_bytes(),
                        &instance,
                        &s.remote.infos(k),
                    ));
                }
            }
            if let Some(body) = &reports[i] {
                match l.publish(&topics.status[i], body.clone(), true).await {
                    Ok(()) => {
                        log::info!(
                            "fleet: {} config status published on {}",
                            k.name(),
                            topics.status[i]
                        );
                        reports[i] = None;
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        if failed.is_none() && Instant::now() >= next_heartbeat {
            requests += 1;
            let rid = format!("{instance}-{startup_s:x}-{requests}");
            let body = {
                let s = st.borrow();
                heartbeat::request(&s, seq, rid.into_bytes(), full, false, startup_s).encode()
            };
            match l.publish(&topics.heartbeat, body, false).await {
                Ok(()) => {
                    log::debug!("fleet: heartbeat {seq} acknowledged");
                    if !proven {
                        proven = true;
                        backoff.reset();
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
            let until = next_heartbeat.min(l.ping_at());
            let d = until.saturating_duration_since(Instant::now());
            let got = async { Some(l.read(Duration::from_secs(86_400)).await) }
                .or(async {
                    wake.wait_for(d).await;
                    None
                })
                .await;
            match got {
                Some(Ok(p)) => {
                    if let Err(e) = l.take(p).await {
                        failed = Some(e);
                    }
                }
                Some(Err(e)) => failed = Some(e),
                None => {}
            }
            if failed.is_none() && Instant::now() >= l.ping_at() {
                if let Err(e) = l.write(Packet::PingReq).await {
                    failed = Some(e);
                }
            }
        }
        if let Some(e) = failed {
            link = None;
            let d = backoff.next_delay();
            log::warn!("fleet: {e}; reconnecting in {} ms", d.as_millis());
            wake.wait_for(d).await;
        }
    }
}

fn on_message(st: &Shared, m: Msg, full: &mut bool, max: u64) {
    let p = match m {
        Msg::Publish(p) => p,
        Msg::TooLarge { topic, len } => {
            log::warn!(
                "fleet: {topic}: a message of {len} bytes, over fleet.max_message_bytes = {max}; refused"
            );
            st.borrow_mut().c.bad_control_messages += 1;
            return;
        }
    };
    let r = match ServerResponse::decode(ResponseKind::Heartbeat, &p.payload) {
        Ok(r) => r,
        Err(e) => {
            log::warn!("fleet: {}: {e}; ignored", p.topic);
            st.borrow_mut().c.bad_control_messages += 1;
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
            if st.borrow().remote.settled(k, &d.name, d.version) {
                continue;
            }
            if d.detail.is_empty() && d.version != -1 {
                st.borrow_mut().remote.set_status(
                    k,
                    &d.name,
                    d.version,
                    ConfigStatus::Failed,
                    "no detail: over MQTT a config carries its detail",
                );
                continue;
            }
            apply(st, k, d);
        }
    }
}
