//! The MQTT sink: each frame is one QoS 1 PUBLISH, released from the spool on its PUBACK.
//!
//! Owns one TCP connection to the broker; never touches the spool. Packets are rumqttc's
//! `mqttbytes` (MQTT 3.1.1) over an async-io `TcpStream`, so the sink runs on the agent's one
//! executor: no tokio runtime, no extra thread (rumqttc's own event loop would bring both).
//! [`session`] holds the protocol state; this file does the I/O.
//!
//! Connections are made lazily by `send` and dropped on any error; the agent's deliver loop
//! backs off (exponential, jittered, capped) and sends again from the first unacknowledged
//! frame, with the same sequence numbers. Broker names are resolved with the system
//! resolver on the agent's thread: give an address (or an /etc/hosts name) where DNS is slow.

pub(crate) mod conn;
pub mod session;
pub(crate) mod wire;

use super::failover::{Failover, SWITCH_AFTER};
use super::{Sink, SinkError};
use crate::config::{Endpoint, MqttSink as Cfg};
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, LastWill, Login, Packet, Publish};
use rumqttc::mqttbytes::QoS;
use session::Session;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};
use wire::Wire;

/// Frames to the broker.
#[derive(Debug)]
pub struct MqttSink {
    cfg: Cfg,
    topic: String,
    state_topic: String,
    /// The retained birth and death payloads.
    online: Vec<u8>,
    offline: Vec<u8>,
    client_id: String,
    conn: Option<Wire>,
    endpoints: Vec<Endpoint>,
    failover: Failover,
    session: Session,
    acked: u64,
}

fn err(msg: String) -> SinkError {
    SinkError::Mqtt(msg)
}

impl MqttSink {
    /// A sink for `cfg`, identifying as `instance` (the stream id, see `agent::pipe`); connects
    /// on first use.
    pub fn new(cfg: &Cfg, instance: &str) -> MqttSink {
        let state = |s: &str| {
            let mut j = String::from("{\"state\":\"");
            j.push_str(s);
            j.push_str("\",\"instance\":");
            crate::frame::json::push_str(&mut j, instance);
            j.push_str(&format!(
                ",\"version\":\"{}\",\"startup_time\":{}}}",
                env!("CARGO_PKG_VERSION"),
                crate::agent::now_ms() / 1000
            ));
            j.into_bytes()
        };
        MqttSink {
            topic: cfg.topic.replace("{instance}", instance),
            state_topic: cfg.state_topic.replace("{instance}", instance),
            online: state("online"),
            offline: state("offline"),
            // A fleet pipeline's stream id is `instance/name`; some brokers (rumqttd) refuse
            // a '/' in a client id, so its default client id is `instance.name`.
            client_id: cfg
                .client_id
                .clone()
                .unwrap_or_else(|| instance.replace('/', ".")),
            session: Session::new(cfg.window, cfg.keep_alive.0, Instant::now()),
            endpoints: cfg.endpoints(),
            failover: Failover::new(cfg.endpoints().len(), cfg.failback_after.0, Instant::now()),
            cfg: cfg.clone(),
            conn: None,
            acked: 0,
        }
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

    /// Connects to the broker failover says, and moves on after repeated failures.
    async fn connect(&mut self) -> Result<(), SinkError> {
        let i = self.failover.current();
        match self.connect_to(i).await {
            Ok(()) => {
                self.failover.succeeded();
                Ok(())
            }
            Err(e) => {
                if let Some(next) = self.failover.failed(Instant::now()) {
                    log::warn!(
                        "mqtt: {} failed {SWITCH_AFTER} times in a row; moving to {}",
                        self.endpoints[i],
                        self.endpoints[next]
                    );
                }
                Err(e)
            }
        }
    }

    /// While on a failover broker with nothing in flight: try the first broker again, and
    /// leave the current one (saying offline there) only once the first has answered.
    async fn try_failback(&mut self) {
        let old = self.conn.take();
        match self.connect_to(0).await {
            Ok(()) => {
                log::info!(
                    "mqtt: {} is back; leaving the failover broker",
                    self.endpoints[0]
                );
                self.failover.failed_back();
                if let Some(mut old) = old {
                    let mut p = Publish::new(
                        self.state_topic.clone(),
                        QoS::AtMostOnce,
                        self.offline.clone(),
                    );
                    p.retain = true;
                    if old.queue(Packet::Publish(p)).is_ok()
                        && old.queue(Packet::Disconnect).is_ok()
                    {
                        let _ = old.flush(self.cfg.timeout.0).await;
                    }
                }
            }
            Err(e) => {
                log::debug!("mqtt: {} still fails: {e}", self.endpoints[0]);
                self.conn = old;
                self.failover.failback_failed(Instant::now());
            }
        }
    }

    async fn connect_to(&mut self, i: usize) -> Result<(), SinkError> {
        let r = self.connect_inner(i).await;
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    async fn connect_inner(&mut self, i: usize) -> Result<(), SinkError> {
        let addr = self.addr(i)?;
        let t = self.cfg.timeout.0;
        let max = self.cfg.max_packet_bytes.0 as usize;
        let mut wire = Wire::open(addr, &self.endpoints[i], &self.cfg.tls, t, max)
            .await
            .map_err(err)?;
        let mut c = Connect::new(self.client_id.clone());
        c.keep_alive = self.cfg.keep_alive.0.as_secs().min(u16::MAX as u64) as u16;
        // Every unacknowledged frame is in the spool: a clean session loses nothing.
        c.clean_session = true;
        // Death: announced by the broker if this connection ends without a DISCONNECT.
        c.last_will = Some(LastWill::new(
            self.state_topic.clone(),
            self.offline.clone(),
            QoS::AtLeastOnce,
            true,
        ));
        if let Some(u) = &self.cfg.username {
            c.login = Some(Login::new(
                u.clone(),
                self.cfg.password.as_ref().map_or("", |p| p.expose()),
            ));
        }
        wire.write(Packet::Connect(c), t)
            .await
            .map_err(|e| err(format!("send CONNECT: {e}")))?;
        self.conn = Some(wire);
        match self.read_packet(t).await? {
            Packet::ConnAck(a) if a.code == ConnectReturnCode::Success => {
                log::info!("mqtt: connected to {addr} as {:?}", self.client_id);
                self.session.reset(Instant::now());
                // Birth, retained. QoS 0: no packet id to settle; if this connection drops
                // before the broker has it, the Last Will says offline and the next connect
                // says online again.
                let mut p = Publish::new(
                    self.state_topic.clone(),
                    QoS::AtMostOnce,
                    self.online.clone(),
                );
                p.retain = true;
                self.write_packet(Packet::Publish(p)).await
            }
            Packet::ConnAck(a) => {
                self.conn = None;
                Err(err(format!(
                    "broker {addr} refused the connection: {:?}",
                    a.code
                )))
            }
            p => {
                self.conn = None;
                Err(err(format!("broker {addr} answered CONNECT with {p:?}")))
            }
        }
    }

    /// Reads one packet, waiting at most `t`.
    async fn read_packet(&mut self, t: Duration) -> Result<Packet, SinkError> {
        let wire = self
            .conn
            .as_mut()
            .ok_or_else(|| err("not connected".into()))?;
        wire.read(t).await.map_err(err)
    }

    fn drop_conn(&mut self) {
        self.conn = None;
        self.session.reset(Instant::now());
    }

    /// Writes one packet; the connection goes on failure.
    async fn write_packet(&mut self, p: Packet) -> Result<(), SinkError> {
        let t = self.cfg.timeout.0;
        let wire = self
            .conn
            .as_mut()
            .ok_or_else(|| err("not connected".into()))?;
        let r = wire.write(p, t).await.map_err(err);
        if r.is_err() {
            self.drop_conn();
        }
        r
    }
}

impl Sink for MqttSink {
    fn window(&self) -> usize {
        self.cfg.window
    }

    async fn send(&mut self, seq: u64, frame: &[u8]) -> Result<(), SinkError> {
        if self.conn.is_some()
            && self.session.in_flight() == 0
            && self.failover.failback_due(Instant::now())
        {
            self.try_failback().await;
        }
        if self.conn.is_none() {
            self.connect().await?;
        }
        let pkid = self
            .session
            .publish(seq, Instant::now())
            .map_err(|e| err(format!("{e:?}")))?;
        let mut p = Publish::new(self.topic.clone(), QoS::AtLeastOnce, frame.to_vec());
        p.pkid = pkid;
        self.write_packet(Packet::Publish(p))
            .await
            .map_err(|e| match e {
                SinkError::Mqtt(m) => err(format!("frame {seq}: {m}")),
                e => e,
            })
    }

    async fn flush(&mut self) -> Result<u64, SinkError> {
        let t = self.cfg.timeout.0;
        while self.session.in_flight() > 0 {
            let p = match self.read_packet(t).await {
                Ok(p) => p,
                Err(e) => {
                    self.drop_conn();
                    return Err(e);
                }
            };
            match p {
                Packet::PubAck(a) => {
                    if let Err(e) = self.session.puback(a.pkid) {
                        log::warn!("mqtt: {e:?}, ignored");
                    }
                    if let Some(seq) = self.session.take_acked() {
                        self.acked = seq;
                    }
                }
                Packet::PingResp => {}
                other => log::debug!("mqtt: ignoring {other:?}"),
            }
        }
        Ok(self.acked)
    }

    async fn close(&mut self) {
        if self.conn.is_none() {
            return;
        }
        // A clean stop: say offline ourselves (DISCONNECT discards the Will), then leave.
        let mut p = Publish::new(
            self.state_topic.clone(),
            QoS::AtMostOnce,
            self.offline.clone(),
        );
        p.retain = true;
        if self.write_packet(Packet::Publish(p)).await.is_ok() {
            let _ = self.write_packet(Packet::Disconnect).await;
        }
        self.conn = None;
    }

    fn idle_until(&self) -> Option<Instant> {
        self.conn.as_ref().map(|_| self.session.ping_at())
    }

    async fn idle(&mut self) -> Result<(), SinkError> {
        if self.conn.is_none() || Instant::now() < self.session.ping_at() {
            return Ok(());
        }
        self.session.wrote(Instant::now());
        let r = async {
            self.write_packet(Packet::PingReq).await?;
            loop {
                match self.read_packet(self.cfg.timeout.0).await? {
                    Packet::PingResp => return Ok(()),
                    other => log::debug!("mqtt: ignoring {other:?}"),
                }
            }
        }
        .await;
        if r.is_err() {
            self.drop_conn();
        }
        r
    }
}
