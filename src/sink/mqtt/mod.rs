//! The MQTT sink: each frame is one QoS 1 PUBLISH, released from the spool on its PUBACK.
//!
//! Owns one TCP connection to the broker; never touches the spool. Packets are rumqttc's
//! `mqttbytes` (MQTT 3.1.1) over an async-io `TcpStream`, so the sink runs on the agent's one
//! executor: no tokio runtime, no extra thread (rumqttc's own event loop would bring both).
//! The protocol rules (packet ids, the window, keep-alive and the dead-link timeout,
//! reconnect backoff, failover and failback) are the shared client core, [`crate::mqtt`];
//! this file says what the sink says (frames, the retained birth and death) and does the I/O.
//!
//! Connections are made lazily by `send` and dropped on any error, which carries the core's
//! reconnect delay (`retry_after`): the agent's deliver loop waits at least that long
//! (exponential, jittered, capped, reset once a frame is acknowledged) and sends again from
//! the first unacknowledged frame, with the same sequence numbers. Broker names are resolved with the system
//! resolver on the agent's thread: give an address (or an /etc/hosts name) where DNS is slow.

mod birth;

use super::{Sink, SinkError};
use crate::config::{Endpoint, MqttSink as Cfg};
use crate::mqtt::client::{Client, Event, Hello, Options, Tick};
use crate::mqtt::wire::Wire;
use crate::sink::failover::SWITCH_AFTER;
use rumqttc::mqttbytes::v4::{Packet, Publish};
use rumqttc::mqttbytes::QoS;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Frames to the broker.
#[derive(Debug)]
pub struct MqttSink {
    cfg: Cfg,
    topic: String,
    state_topic: String,
    /// Birth and death (see `birth`): who, since when, and the session of this connection.
    instance: String,
    startup_time: u64,
    session: u64,
    connected_at: u64,
    /// Session numbers (`mqtt.session`).
    sessions: birth::Sessions,
    /// A newer session's death was logged (once per session seen).
    newer_seen: u64,
    /// The topics of rebirth requests (`P/I/rebirth`, `P/rebirth`), and when the birth was
    /// last published: a request is answered at most once per `fleet.rebirth_min_interval`.
    rebirth_topics: [String; 2],
    last_birth: Option<Instant>,
    hello: Hello,
    conn: Option<Wire>,
    endpoints: Vec<Endpoint>,
    client: Client,
    acked: u64,
}

/// An error after which the next connect waits `retry_after`.
fn err_after(msg: String, retry_after: Option<Duration>) -> SinkError {
    SinkError::Mqtt { msg, retry_after }
}

fn err(msg: String) -> SinkError {
    err_after(msg, None)
}

impl MqttSink {
    /// A sink for `cfg`, identifying as `instance` (the stream id, see `agent::pipe`); connects
    /// on first use.
    pub fn new(cfg: &Cfg, instance: &str, dir: &std::path::Path) -> MqttSink {
        let state_topic = cfg.state_topic.replace("{instance}", instance);
        let endpoints = cfg.endpoints();
        let opts = Options {
            keep_alive: cfg.keep_alive.0,
            window: cfg.window,
            // The deliver loop's own backoff (agent/deliver.rs): the two agree, and the
            // larger wait wins.
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(30),
            endpoints: endpoints.len(),
            failback_after: cfg.failback_after.0,
        };
        MqttSink {
            topic: cfg.topic.replace("{instance}", instance),
            hello: Hello {
                // A fleet pipeline's stream id is `instance/name`; some brokers (rumqttd)
                // refuse a '/' in a client id, so its default client id is `instance.name`.
                client_id: cfg
                    .client_id
                    .clone()
                    .unwrap_or_else(|| instance.replace('/', ".")),
                // Death: announced by the broker if a connection ends without a DISCONNECT;
                // set for each connection's session (`begin_session`).
                will: None,
                login: cfg.username.as_ref().map(|u| {
                    (
                        u.clone(),
                        cfg.password
                            .clone()
                            .unwrap_or_else(|| crate::config::Secret::new("")),
                    )
                }),
            },
            state_topic,
            instance: instance.to_string(),
            startup_time: crate::agent::now_ms() / 1000,
            session: 0,
            connected_at: 0,
            sessions: birth::Sessions::new(dir),
            newer_seen: 0,
            rebirth_topics: {
                // The agent's own id: a fleet pipeline's stream id is `instance/name`.
                let agent = instance.split('/').next().unwrap_or(instance);
                let p = &cfg.rebirth.0;
                [format!("{p}/{agent}/rebirth"), format!("{p}/rebirth")]
            },
            last_birth: None,
            client: Client::new(&opts, Instant::now()),
            endpoints,
            cfg: cfg.clone(),
            conn: None,
            acked: 0,
        }
    }

    /// The retained state message of the current session, QoS 0: no packet id to settle.
    fn state(&self, online: bool) -> Packet {
        self.state_of(online, self.session, self.connected_at)
    }

    fn state_of(&self, online: bool, session: u64, connected_at: u64) -> Packet {
        let payload = birth::payload(
            online,
            &self.instance,
            self.startup_time,
            session,
            connected_at,
        );
        let mut p = Publish::new(self.state_topic.clone(), QoS::AtMostOnce, payload);
        p.retain = true;
        Packet::Publish(p)
    }

    /// The topic frames go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    fn addr(&self, i: usize) -> Result<SocketAddr, SinkError> {
        let e = &self.endpoints[i];
        (e.host.as_str(), e.port)
            .to_socket_addrs()
            .map_err(|err_| err(format!("resolve {}: {err_}", e.host)))?
            .next()
            .ok_or_else(|| err(format!("resolve {}: no address", e.host)))
    }

    /// Connects to the broker the core says, once its backoff allows.
    async fn connect(&mut self) -> Result<(), SinkError> {
        let i = match self.client.connecting(Instant::now()) {
            Ok(i) => i,
            Err(wait) => {
                // The deliver loop logs the wait, `retry_after`.
                return Err(err_after("reconnect backoff".into(), Some(wait)));
            }
        };
        self.begin_session();
        match self.open(i).await {
            Ok((wire, addr)) => {
                self.conn = Some(wire);
                log::info!(
                    "mqtt: connected to {addr} as {:?} (session {})",
                    self.hello.client_id,
                    self.session
                );
                self.born().await
            }
            Err(SinkError::Mqtt { msg, .. }) => {
                let r = self.client.link_lost(Instant::now());
                if let Some(next) = r.moved_to {
                    log::warn!(
                        "mqtt: {} failed {SWITCH_AFTER} times in a row; moving to {}",
                        self.endpoints[i],
                        self.endpoints[next]
                    );
                }
                Err(err_after(msg, Some(r.after)))
            }
            Err(e) => Err(e),
        }
    }

    /// A new session for the next CONNECT: its number (kept on disk first), and the Will
    /// that carries it.
    fn begin_session(&mut self) {
        let now = crate::agent::now_ms() / 1000;
        self.session = self.sessions.next(now);
        self.connected_at = now;
        let death = birth::payload(false, &self.instance, self.startup_time, self.session, now);
        self.hello.will = Some((self.state_topic.clone(), death));
    }

    /// Birth on a new connection: `online`, retained (QoS 0: no packet id to settle; if this
    /// connection drops before the broker has it, the Will says offline and the next connect
    /// says online again), and a subscription to the state topic to see a stale death.
    async fn born(&mut self) -> Result<(), SinkError> {
        let p = self.state(true);
        self.write_packet(p).await?;
        self.last_birth = Some(Instant::now());
        let topics = [
            self.state_topic.clone(),
            self.rebirth_topics[0].clone(),
            self.rebirth_topics[1].clone(),
        ];
        let sub = self
            .client
            .subscribe(&topics, Instant::now())
            .map_err(|e| err(format!("subscribe: {e}")))?;
        self.write_packet(sub).await
    }

    /// A message on a subscribed topic: a death on the state topic that is not newer than
    /// this session is answered with a birth; so is a rebirth request, at most once per
    /// `fleet.rebirth_min_interval` (a birth on connecting counts), so that a retained or
    /// repeated request costs the broker nothing more.
    async fn on_message(&mut self, publish: &Publish) -> Result<(), SinkError> {
        if self.rebirth_topics.contains(&publish.topic) {
            let now = Instant::now();
            if self
                .last_birth
                .is_some_and(|t| now.saturating_duration_since(t) < self.cfg.rebirth.1)
            {
                log::debug!(
                    "mqtt: rebirth request on {}: answered lately",
                    publish.topic
                );
                return Ok(());
            }
            log::info!("mqtt: rebirth request on {}: birth again", publish.topic);
            self.last_birth = Some(now);
            let p = self.state(true);
            return self.write_packet(p).await;
        }
        if publish.topic != self.state_topic {
            return Ok(());
        }
        match birth::verdict(birth::parse(&publish.payload), self.session) {
            birth::Verdict::Fine => Ok(()),
            birth::Verdict::Rebirth => {
                log::info!(
                    "mqtt: {} says offline for session {} or older; saying online again",
                    self.state_topic,
                    self.session
                );
                let p = self.state(true);
                self.write_packet(p).await
            }
            birth::Verdict::Newer(s) => {
                if self.newer_seen != s {
                    self.newer_seen = s;
                    log::warn!(
                        "mqtt: {} has the death of session {s}, newer than this one ({}): another process with this identity?",
                        self.state_topic,
                        self.session
                    );
                }
                Ok(())
            }
        }
    }

    /// While on a failover broker with nothing in flight: try the first broker again, and
    /// leave the current one (saying offline there) only once the first has answered.
    async fn try_failback(&mut self) {
        let (old_session, old_at) = (self.session, self.connected_at);
        self.begin_session();
        match self.open(0).await {
            Ok((new, _)) => {
                log::info!(
                    "mqtt: {} is back; leaving the failover broker",
                    self.endpoints[0]
                );
                self.client.failed_back(Instant::now());
                if let Some(mut old) = self.conn.replace(new) {
                    let p = self.state_of(false, old_session, old_at);
                    if old.queue(p).is_ok() && old.queue(Packet::Disconnect).is_ok() {
                        let _ = old.flush(self.cfg.timeout.0).await;
                    }
                }
                let _ = self.born().await;
            }
            Err(e) => {
                log::debug!("mqtt: {} still fails: {e}", self.endpoints[0]);
                self.client.failback_failed(Instant::now());
                // Still connected as the old session; the next try takes a new number.
                (self.session, self.connected_at) = (old_session, old_at);
            }
        }
    }

    /// A new connection to broker `i`, CONNECT answered by a CONNACK that accepts it. The
    /// core sees the CONNECT and the CONNACK (for a failback, beside the link it has).
    async fn open(&mut self, i: usize) -> Result<(Wire, SocketAddr), SinkError> {
        let addr = self.addr(i)?;
        let t = self.cfg.timeout.0;
        let max = self.cfg.max_packet_bytes.0 as usize;
        let mut wire = Wire::open(addr, &self.endpoints[i], &self.cfg.tls, t, max)
            .await
            .map_err(err)?;
        wire.write(self.client.connect_packet(&self.hello), t)
            .await
            .map_err(|e| err(format!("send CONNECT: {e}")))?;
        let p = wire.read(t).await.map_err(err)?;
        self.client
            .connack(p)
            .map_err(|e| err(format!("broker {addr}: {e}")))?;
        Ok((wire, addr))
    }

    /// Reads one packet, waiting at most `t`.
    async fn read_packet(&mut self, t: Duration) -> Result<Packet, SinkError> {
        let wire = self
            .conn
            .as_mut()
            .ok_or_else(|| err("not connected".into()))?;
        wire.read(t).await.map_err(err)
    }

    /// The connection is gone: nothing in flight is safe any more. Returns `e` with the
    /// core's reconnect delay.
    fn drop_conn(&mut self, e: SinkError) -> SinkError {
        self.conn = None;
        let r = self.client.link_lost(Instant::now());
        match e {
            SinkError::Mqtt { msg, .. } => err_after(msg, Some(r.after)),
            e => e,
        }
    }

    /// Writes one packet; the connection goes on failure.
    async fn write_packet(&mut self, p: Packet) -> Result<(), SinkError> {
        let t = self.cfg.timeout.0;
        let wire = self
            .conn
            .as_mut()
            .ok_or_else(|| err("not connected".into()))?;
        let r = wire.write(p, t).await.map_err(err);
        self.client.wrote(Instant::now());
        r.map_err(|e| self.drop_conn(e))
    }

    /// Reads one packet and gives it to the core; the connection goes on failure.
    async fn next_event(&mut self, t: Duration) -> Result<Event, SinkError> {
        match self.read_packet(t).await {
            Ok(p) => match self.client.handle(p, Instant::now()) {
                // The state topic, the one subscription: acknowledged, then looked at.
                Ok(Event::Message { publish, reply }) => {
                    if let Some(r) = reply {
                        self.write_packet(r).await?;
                    }
                    self.on_message(&publish).await?;
                    Ok(Event::Ignored)
                }
                Ok(Event::Subscribed { refused }) if !refused.is_empty() => {
                    log::warn!(
                        "mqtt: the broker refused the subscription to {}: a stale offline there is not corrected",
                        self.state_topic
                    );
                    Ok(Event::Ignored)
                }
                Ok(ev) => Ok(ev),
                Err(e) => {
                    log::warn!("mqtt: {e}, ignored");
                    Ok(Event::Ignored)
                }
            },
            Err(e) => Err(self.drop_conn(e)),
        }
    }
}

impl Sink for MqttSink {
    fn window(&self) -> usize {
        self.cfg.window
    }

    async fn send(&mut self, seq: u64, frame: &[u8]) -> Result<(), SinkError> {
        if self.conn.is_some() && self.client.failback_due(Instant::now()) {
            self.try_failback().await;
        }
        if self.conn.is_none() {
            self.connect().await?;
        }
        let p = self
            .client
            .publish(&self.topic, frame.to_vec(), false, seq, Instant::now())
            .map_err(|e| err(format!("frame {seq}: {e}")))?;
        self.write_packet(p).await.map_err(|e| match e {
            SinkError::Mqtt { msg, retry_after } => {
                err_after(format!("frame {seq}: {msg}"), retry_after)
            }
            e => e,
        })
    }

    /// Returns as soon as the front of the window is acknowledged, not once all of it is: the
    /// window slides, and the deliver loop refills it while the rest is still on the wire.
    async fn flush(&mut self) -> Result<u64, SinkError> {
        let t = self.cfg.timeout.0;
        while self.client.in_flight() > 0 {
            if let Event::Acked(_) = self.next_event(t).await? {
                if let Some(seq) = self.client.take_acked() {
                    self.acked = seq;
                    // The link carried frames: once it has lived `STABLE`, its loss starts
                    // reconnects again from the base delay.
                    self.client.proven();
                    return Ok(seq);
                }
            }
        }
        Ok(self.acked)
    }

    async fn close(&mut self) {
        if self.conn.is_none() {
            return;
        }
        // A clean stop: say offline ourselves (DISCONNECT discards the Will), then leave.
        let p = self.state(false);
        if self.write_packet(p).await.is_ok() {
            let _ = self.write_packet(Packet::Disconnect).await;
        }
        self.conn = None;
        self.client.disconnected(Instant::now());
    }

    fn idle_until(&self) -> Option<Instant> {
        self.conn.as_ref().and_then(|_| self.client.wake_at())
    }

    async fn idle(&mut self) -> Result<(), SinkError> {
        if self.conn.is_none() {
            return Ok(());
        }
        match self.client.tick(Instant::now()) {
            Tick::Idle => Ok(()),
            Tick::Dead => {
                let e = err("no answer from the broker in 1.5 × keep-alive".into());
                Err(self.drop_conn(e))
            }
            Tick::Ping(p) => {
                self.write_packet(p).await?;
                // Wait for the PINGRESP here (the sink reads only when it waits for
                // something), at most the I/O timeout or until the link counts as dead.
                let dead = self.client.dead_at().unwrap_or_else(Instant::now);
                let t = dead
                    .saturating_duration_since(Instant::now())
                    .min(self.cfg.timeout.0)
                    .max(Duration::from_millis(1));
                loop {
                    if let Event::Pong = self.next_event(t).await? {
                        return Ok(());
                    }
                }
            }
        }
    }
}
