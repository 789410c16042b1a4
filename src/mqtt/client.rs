//! The MQTT client as plain state: link state, reconnect backoff and failover, packet ids,
//! QoS 1 publishes in flight, the subscription, keep-alive and the dead-link timeout.
//!
//! Design: methods change state and build the packets to send; they never touch the
//! network and never read a clock: time is passed in. The caller (the sink's or the fleet's
//! transport) writes what it is given, feeds back what it reads ([`Client::handle`]), says
//! when a link was lost, and sleeps until [`Client::wake_at`]. rumqttc's `MqttState` works
//! the same way, but reads `Instant::now()` inside; here "a dead broker costs at most N
//! connects a minute" is a unit test.
//!
//! Its limit is `window` (from `sink.window` for the sink): at most that many publishes in
//! flight, so the in-flight list is bounded and packet ids (65,535 of them) never run out.

use crate::backoff::Backoff;
use crate::sink::failover::Failover;
use rumqttc::mqttbytes::v4::{
    Connect, ConnectReturnCode, LastWill, Login, Packet, PubAck, Publish, Subscribe,
    SubscribeFilter, SubscribeReasonCode,
};
use rumqttc::mqttbytes::QoS;
use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// How a client behaves; fixed for its life.
#[derive(Debug, Clone)]
pub struct Options {
    /// Keep-alive announced in CONNECT; zero turns pings and the dead-link timeout off.
    pub keep_alive: Duration,
    /// Most QoS 1 publishes in flight at once.
    pub window: usize,
    /// First reconnect delay (before jitter).
    pub backoff_base: Duration,
    /// Longest reconnect delay.
    pub backoff_cap: Duration,
    /// Brokers to choose from, the first preferred (see [`Failover`]).
    pub endpoints: usize,
    /// While not on the first broker, how often to try it again.
    pub failback_after: Duration,
}

/// Who the client is when it connects.
#[derive(Debug, Clone)]
pub struct Hello {
    /// The client id.
    pub client_id: String,
    /// Topic and payload the broker publishes (QoS 1, retained) if the link ends without a
    /// DISCONNECT.
    pub will: Option<(String, Vec<u8>)>,
    /// User name and password (the password only leaves its `Secret` into the CONNECT).
    pub login: Option<(String, crate::config::Secret)>,
}

/// A broker did something the protocol does not allow, or the caller asked for what the
/// state cannot give. Carries what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A PUBACK or SUBACK for a packet id that is not in flight.
    Unsolicited(u16),
    /// More publishes than the window allows.
    WindowFull,
    /// The broker answered CONNECT with this refusal.
    Refused(ConnectReturnCode),
    /// A packet of this kind before the CONNACK.
    BeforeConnAck(&'static str),
    /// A publish or subscribe without a link.
    NotConnected,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Unsolicited(id) => write!(
                f,
                "an acknowledgement of packet id {id}, which is not in flight"
            ),
            ProtocolError::WindowFull => f.write_str("more publishes than the window allows"),
            ProtocolError::Refused(c) => write!(f, "the broker refused the connection: {c:?}"),
            ProtocolError::BeforeConnAck(k) => write!(f, "the broker sent {k} before CONNACK"),
            ProtocolError::NotConnected => f.write_str("not connected"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// What a packet read from the broker meant.
#[derive(Debug)]
pub enum Event {
    /// CONNACK, success: the link is up.
    Connected,
    /// PUBACK for this packet id; [`Client::take_acked`] releases what it completes.
    Acked(u16),
    /// SUBACK: subscribed, except to these filters, which the broker refused (0x80).
    Subscribed {
        /// The filters refused.
        refused: Vec<String>,
    },
    /// A message on a subscribed topic, and the PUBACK to write for it (at QoS 1).
    Message {
        /// The message.
        publish: Publish,
        /// The acknowledgement to send, if its QoS asks for one.
        reply: Option<Packet>,
    },
    /// PINGRESP.
    Pong,
    /// Anything else: nothing to do.
    Ignored,
}

/// What time says, from [`Client::tick`].
#[derive(Debug)]
pub enum Tick {
    /// Nothing due.
    Idle,
    /// Write this PINGREQ.
    Ping(Packet),
    /// Nothing read for 1.5 × keep-alive: the link is dead; drop it and call
    /// [`Client::link_lost`].
    Dead,
}

/// What a lost link or a failed connect leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Wait this long before connecting again.
    pub after: Duration,
    /// The failure made the client move to this broker.
    pub moved_to: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// No link; the next attempt is allowed from `retry_at`.
    Down { retry_at: Instant },
    /// CONNECT written, no CONNACK yet.
    Connecting,
    /// CONNACK received.
    Up,
}

#[derive(Debug, Clone, Copy)]
struct Flight {
    pkid: u16,
    tag: u64,
    acked: bool,
}

/// The client's state across links.
#[derive(Debug)]
pub struct Client {
    keep_alive: Duration,
    window: usize,
    link: Link,
    next_pkid: u16,
    /// QoS 1 publishes not yet released, in publish order.
    flights: VecDeque<Flight>,
    /// The SUBSCRIBE awaiting its SUBACK: its packet id and filters.
    subscribing: Option<(u16, Vec<String>)>,
    last_write: Instant,
    last_read: Instant,
    /// A PINGREQ is out and its PINGRESP not in: no second one.
    ping_out: bool,
    backoff: Backoff,
    /// The current link carried what it is for ([`proven`](Self::proven)) and when it came
    /// up: the backoff starts again once such a link has lived [`STABLE`].
    proven: bool,
    up_since: Instant,
    failover: Failover,
}

/// How long a link that carried something must have lived for its loss to start the
/// reconnect backoff again from its base. Shorter lives are not proof: two connections with
/// one client id (two sinks, or two devices cloned from one image) each get a frame
/// acknowledged before the broker drops it for the other, and without this they would
/// throw each other off ten times a second.
pub const STABLE: Duration = Duration::from_secs(10);

impl Client {
    /// A client with no link, allowed to connect at once.
    pub fn new(o: &Options, now: Instant) -> Client {
        Client {
            keep_alive: o.keep_alive,
            window: o.window.max(1),
            link: Link::Down { retry_at: now },
            next_pkid: 1,
            flights: VecDeque::new(),
            subscribing: None,
            last_write: now,
            last_read: now,
            ping_out: false,
            backoff: Backoff::new(o.backoff_base, o.backoff_cap),
            proven: false,
            up_since: now,
            failover: Failover::new(o.endpoints, o.failback_after, now),
        }
    }

    // --- the link ------------------------------------------------------------------------

    /// Whether a CONNACK has been received on the current link.
    pub fn is_up(&self) -> bool {
        self.link == Link::Up
    }

    /// Starts a connection: returns the broker to connect to, or how long the reconnect
    /// backoff still asks to wait.
    pub fn connecting(&mut self, now: Instant) -> Result<usize, Duration> {
        if let Link::Down { retry_at } = self.link {
            if now < retry_at {
                return Err(retry_at - now);
            }
        }
        self.link = Link::Connecting;
        self.reset_link(now);
        Ok(self.failover.current())
    }

    /// The CONNECT for `hello`: a clean session (see the module doc), the keep-alive, the Will.
    pub fn connect_packet(&self, hello: &Hello) -> Packet {
        self.connect_packet_with(hello, true)
    }

    /// The CONNECT for `hello` with clean session off: the broker keeps the session (its
    /// subscriptions, the QoS 1 messages not yet acknowledged, those that arrive while the
    /// client is away) across links. For a subscriber that acknowledges a message only once
    /// it is safe (`tailbeat consume`); the client id must be stable.
    pub fn connect_packet_keeping_session(&self, hello: &Hello) -> Packet {
        self.connect_packet_with(hello, false)
    }

    fn connect_packet_with(&self, hello: &Hello, clean_session: bool) -> Packet {
        let mut c = Connect::new(hello.client_id.clone());
        c.keep_alive = self.keep_alive.as_secs().min(u16::MAX as u64) as u16;
        c.clean_session = clean_session;
        c.last_will = hello
            .will
            .as_ref()
            .map(|(t, p)| LastWill::new(t.clone(), p.clone(), QoS::AtLeastOnce, true));
        c.login = hello
            .login
            .as_ref()
            .map(|(u, p)| Login::new(u.clone(), p.expose()));
        Packet::Connect(c)
    }

    /// The link (or the attempt to make one) ended. The backoff starts again from its base
    /// if the link was [`proven`](Self::proven) and lived [`STABLE`], and grows otherwise;
    /// a connect that failed before its CONNACK counts towards moving to the next broker.
    pub fn link_lost(&mut self, now: Instant) -> Retry {
        let moved_to = match self.link {
            Link::Connecting => self.failover.failed(now),
            _ => None,
        };
        if self.link == Link::Up
            && self.proven
            && now.saturating_duration_since(self.up_since) >= STABLE
        {
            self.backoff.reset();
        }
        let after = self.backoff.next_delay();
        self.link = Link::Down {
            retry_at: now + after,
        };
        self.reset_link(now);
        Retry { after, moved_to }
    }

    /// The caller ended the link cleanly (DISCONNECT written): the next connect may be at once.
    pub fn disconnected(&mut self, now: Instant) {
        self.link = Link::Down { retry_at: now };
        self.reset_link(now);
    }

    /// The link carried what it is for (the broker acknowledged a frame, a heartbeat): once
    /// it has lived [`STABLE`], its loss starts the reconnect backoff again from its base.
    pub fn proven(&mut self) {
        self.proven = true;
    }

    /// When the link is up, on another broker than the first, with nothing in flight, and
    /// `failback_after` has passed: time to try the first again (the caller keeps the link
    /// it has until the first answers).
    pub fn failback_due(&self, now: Instant) -> bool {
        self.is_up() && self.flights.is_empty() && self.failover.failback_due(now)
    }

    /// The first broker accepted a connection made while on another: it is the link now.
    pub fn failed_back(&mut self, now: Instant) {
        self.failover.failed_back();
        self.link = Link::Up;
        self.reset_link(now);
        self.came_up();
    }

    /// A new link is up: not proven yet. Its age counts from `last_read`: the CONNACK's
    /// time when it came through [`handle`](Self::handle), else the connect's start (a slow
    /// handshake then counts towards [`STABLE`]).
    fn came_up(&mut self) {
        self.proven = false;
        self.up_since = self.last_read;
    }

    /// The first broker still fails: stay, and try it again after `failback_after`.
    pub fn failback_failed(&mut self, now: Instant) {
        self.failover.failback_failed(now);
    }

    fn reset_link(&mut self, now: Instant) {
        self.flights.clear();
        self.subscribing = None;
        self.last_write = now;
        self.last_read = now;
        self.ping_out = false;
    }

    // --- packets -------------------------------------------------------------------------

    /// A packet id that is not 0 and not in flight.
    fn pkid(&mut self) -> u16 {
        loop {
            let id = self.next_pkid;
            self.next_pkid = if id == u16::MAX { 1 } else { id + 1 };
            let busy = self.flights.iter().any(|f| f.pkid == id)
                || self.subscribing.as_ref().is_some_and(|(s, _)| *s == id);
            // At most `window` + 1 ids are busy, far fewer than 65,535: this ends.
            if !busy {
                return id;
            }
        }
    }

    /// Whether another QoS 1 publish fits in the window.
    pub fn has_room(&self) -> bool {
        self.flights.len() < self.window
    }

    /// QoS 1 publishes not yet released.
    pub fn in_flight(&self) -> usize {
        self.flights.len()
    }

    /// A QoS 1 PUBLISH of `payload` on `topic`, in flight until its PUBACK; `tag` is the
    /// caller's name for it (the sink: the frame's seq), given back by
    /// [`take_acked`](Self::take_acked).
    pub fn publish(
        &mut self,
        topic: &str,
        payload: Vec<u8>,
        retain: bool,
        tag: u64,
        now: Instant,
    ) -> Result<Packet, ProtocolError> {
        if !self.is_up() {
            return Err(ProtocolError::NotConnected);
        }
        if !self.has_room() {
            return Err(ProtocolError::WindowFull);
        }
        let pkid = self.pkid();
        self.flights.push_back(Flight {
            pkid,
            tag,
            acked: false,
        });
        let mut p = Publish::new(topic, QoS::AtLeastOnce, payload);
        p.pkid = pkid;
        p.retain = retain;
        self.last_write = now;
        Ok(Packet::Publish(p))
    }

    /// A SUBSCRIBE to `filters` at QoS 1; [`handle`](Self::handle) reports its SUBACK.
    pub fn subscribe(&mut self, filters: &[String], now: Instant) -> Result<Packet, ProtocolError> {
        self.subscribe_at(filters, QoS::AtLeastOnce, now)
    }

    /// A SUBSCRIBE to `filters` at `qos`. At QoS 0 the broker keeps no delivery state for
    /// this client and owes it no redelivery: for a reader that what it misses the next
    /// message replaces (`tailbeat fleet`).
    pub fn subscribe_at(
        &mut self,
        filters: &[String],
        qos: QoS,
        now: Instant,
    ) -> Result<Packet, ProtocolError> {
        if !self.is_up() {
            return Err(ProtocolError::NotConnected);
        }
        let pkid = self.pkid();
        let mut s =
            Subscribe::new_many(filters.iter().map(|t| SubscribeFilter::new(t.clone(), qos)));
        s.pkid = pkid;
        self.subscribing = Some((pkid, filters.to_vec()));
        self.last_write = now;
        Ok(Packet::Subscribe(s))
    }

    /// The acknowledgement owed for a message with this id and QoS (one read off the link
    /// without being kept: the broker would otherwise hold it in flight).
    pub fn ack(pkid: u16, qos: QoS) -> Option<Packet> {
        (qos == QoS::AtLeastOnce).then(|| Packet::PubAck(PubAck::new(pkid)))
    }

    /// Records that the caller wrote a packet not built here (a QoS 0 publish, a PUBACK, a
    /// CONNECT): the keep-alive counts from it.
    pub fn wrote(&mut self, now: Instant) {
        self.last_write = now;
    }

    /// A packet read from the broker.
    pub fn handle(&mut self, p: Packet, now: Instant) -> Result<Event, ProtocolError> {
        self.last_read = now;
        if self.link == Link::Connecting {
            return self.connack(p).map(|()| Event::Connected);
        }
        match p {
            Packet::PubAck(a) => {
                match self
                    .flights
                    .iter_mut()
                    .find(|f| f.pkid == a.pkid && !f.acked)
                {
                    Some(f) => {
                        f.acked = true;
                        Ok(Event::Acked(a.pkid))
                    }
                    None => Err(ProtocolError::Unsolicited(a.pkid)),
                }
            }
            Packet::SubAck(a) => match self.subscribing.take() {
                Some((id, mut filters)) if id == a.pkid => {
                    // A filter without a success code (0x80, or none at all) is refused.
                    let mut i = 0;
                    filters.retain(|_| {
                        i += 1;
                        !matches!(
                            a.return_codes.get(i - 1),
                            Some(SubscribeReasonCode::Success(_))
                        )
                    });
                    Ok(Event::Subscribed { refused: filters })
                }
                other => {
                    self.subscribing = other;
                    Err(ProtocolError::Unsolicited(a.pkid))
                }
            },
            Packet::Publish(publish) => {
                let reply = Client::ack(publish.pkid, publish.qos);
                if reply.is_some() {
                    self.last_write = now;
                }
                Ok(Event::Message { publish, reply })
            }
            Packet::PingResp => {
                self.ping_out = false;
                Ok(Event::Pong)
            }
            _ => Ok(Event::Ignored),
        }
    }

    /// The answer to a CONNECT: accepted, or why not. On a new link (after
    /// [`connecting`](Self::connecting)) the link is up; on a failback connection, the caller
    /// goes on with [`failed_back`](Self::failed_back).
    pub fn connack(&mut self, p: Packet) -> Result<(), ProtocolError> {
        match p {
            Packet::ConnAck(a) if a.code == ConnectReturnCode::Success => {
                if self.link == Link::Connecting {
                    self.link = Link::Up;
                    self.failover.succeeded();
                    self.came_up();
                }
                Ok(())
            }
            Packet::ConnAck(a) => Err(ProtocolError::Refused(a.code)),
            p => Err(ProtocolError::BeforeConnAck(kind(&p))),
        }
    }

    /// Releases the acknowledged publishes at the front (brokers may acknowledge out of
    /// order; only a contiguous prefix is safe to release); returns the last one's tag.
    pub fn take_acked(&mut self) -> Option<u64> {
        let mut last = None;
        while self.flights.front().is_some_and(|f| f.acked) {
            last = self.flights.pop_front().map(|f| f.tag);
        }
        last
    }

    // --- time ----------------------------------------------------------------------------

    /// When a PINGREQ is due if nothing is written or read before: `keep_alive` after the
    /// later of neither (a link that only writes, or only reads, still pings). `None` with no
    /// link, with a ping already out, or with keep-alive off.
    pub fn ping_at(&self) -> Option<Instant> {
        (self.is_up() && !self.ping_out && !self.keep_alive.is_zero())
            .then(|| self.last_write.min(self.last_read) + self.keep_alive)
    }

    /// When the link counts as dead if nothing is read before: 1.5 × keep-alive after the
    /// last read. `None` with no link or keep-alive off.
    pub fn dead_at(&self) -> Option<Instant> {
        (self.is_up() && !self.keep_alive.is_zero())
            .then(|| self.last_read + self.keep_alive + self.keep_alive / 2)
    }

    /// When to call [`tick`](Self::tick) (up), or when the next connect is allowed (down).
    pub fn wake_at(&self) -> Option<Instant> {
        match self.link {
            Link::Down { retry_at } => Some(retry_at),
            Link::Connecting => None,
            Link::Up => match (self.ping_at(), self.dead_at()) {
                (Some(p), Some(d)) => Some(p.min(d)),
                (p, d) => p.or(d),
            },
        }
    }

    /// What time asks for: a PINGREQ to write, or the link declared dead.
    pub fn tick(&mut self, now: Instant) -> Tick {
        if self.dead_at().is_some_and(|d| now >= d) {
            return Tick::Dead;
        }
        if self.ping_at().is_some_and(|p| now >= p) {
            self.ping_out = true;
            self.last_write = now;
            return Tick::Ping(Packet::PingReq);
        }
        Tick::Idle
    }
}

/// A packet's kind, for messages.
fn kind(p: &Packet) -> &'static str {
    match p {
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::SubAck(_) => "SUBACK",
        Packet::PingResp => "PINGRESP",
        _ => "another packet",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::mqttbytes::v4::{ConnAck, SubAck};

    fn opts() -> Options {
        Options {
            keep_alive: Duration::from_secs(30),
            window: 8,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(60),
            endpoints: 1,
            failback_after: Duration::from_secs(300),
        }
    }

    fn connack(code: ConnectReturnCode) -> Packet {
        Packet::ConnAck(ConnAck::new(code, false))
    }

    /// A client that is up at `now`.
    fn up(o: &Options, now: Instant) -> Client {
        let mut c = Client::new(o, now);
        c.connecting(now).unwrap();
        assert!(matches!(
            c.handle(connack(ConnectReturnCode::Success), now),
            Ok(Event::Connected)
        ));
        c
    }

    fn pkid(p: &Packet) -> u16 {
        match p {
            Packet::Publish(p) => p.pkid,
            Packet::Subscribe(s) => s.pkid,
            p => panic!("{p:?}"),
        }
    }

    fn puback(id: u16) -> Packet {
        Packet::PubAck(PubAck::new(id))
    }

    #[test]
    fn a_broker_that_drops_every_link_after_connack_gets_few_connects_a_minute() {
        let t0 = Instant::now();
        let mut c = Client::new(&opts(), t0);
        let mut connects = Vec::new();
        let mut now = t0;
        while now < t0 + Duration::from_secs(600) {
            match c.connecting(now) {
                Ok(_) => {
                    connects.push(now - t0);
                    c.handle(connack(ConnectReturnCode::Success), now).unwrap();
                    // Accepted, then gone before anything was acknowledged.
                    c.link_lost(now);
                }
                Err(wait) => now += wait,
            }
        }
        // 0.5 s doubling to 60 s, each delay jittered to [d/2, d]: the first seven waits add
        // up to at least 31.75 s, the eighth to at least 30 more.
        let first_minute = connects.iter().filter(|t| t.as_secs() < 60).count();
        assert!(first_minute <= 8, "{first_minute} connects: {connects:?}");
        // Then at most 2 in any minute (30 s at least between two).
        for w in connects[8..].windows(3) {
            assert!(w[2] - w[0] >= Duration::from_secs(60), "{connects:?}");
        }
        // A status change or any other early wake-up does not cut the wait short.
        let now = t0 + Duration::from_secs(600);
        let retry = c.link_lost(now);
        assert!(c.connecting(now + retry.after / 2).is_err());
    }

    #[test]
    fn the_backoff_starts_again_only_once_a_link_has_proven_itself() {
        let t0 = Instant::now();
        let mut c = Client::new(&opts(), t0);
        for _ in 0..8 {
            c.connecting(t0 + Duration::from_secs(3600)).unwrap();
            c.link_lost(t0);
        }
        let late = t0 + Duration::from_secs(7200);
        c.connecting(late).unwrap();
        c.handle(connack(ConnectReturnCode::Success), late).unwrap();
        assert!(c.link_lost(late).after >= Duration::from_secs(30));
        let later = late + Duration::from_secs(3600);
        c.connecting(later).unwrap();
        c.handle(connack(ConnectReturnCode::Success), later)
            .unwrap();
        c.proven();
        assert!(c.link_lost(later + STABLE).after <= Duration::from_millis(500));
    }

    /// Two connections with one client id: the broker acknowledges a frame on each, then
    /// drops it when the other connects. A link lost that young proves nothing: the backoff
    /// keeps growing, a few connects a minute, not ten a second.
    #[test]
    fn a_link_dropped_soon_after_an_acknowledgement_does_not_start_the_backoff_again() {
        let t0 = Instant::now();
        let mut c = Client::new(&opts(), t0);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..10 {
            c.connecting(now).unwrap();
            c.handle(connack(ConnectReturnCode::Success), now).unwrap();
            c.proven();
            let after = c.link_lost(now + Duration::from_millis(80)).after;
            waits.push(after);
            now += Duration::from_millis(80) + after;
        }
        assert!(waits[9] >= Duration::from_secs(30), "{waits:?}");
        let connects_in_first_minute = waits
            .iter()
            .scan(Duration::ZERO, |t, w| {
                *t += *w;
                Some(*t)
            })
            .take_while(|t| *t < Duration::from_secs(60))
            .count();
        assert!(connects_in_first_minute <= 8, "{waits:?}");
    }

    #[test]
    fn a_missing_pingresp_closes_the_link_after_one_and_a_half_keep_alives() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut c = up(&opts(), t0);
        assert_eq!(c.wake_at(), Some(s(30)));
        assert!(matches!(c.tick(s(29)), Tick::Idle));
        assert!(matches!(c.tick(s(30)), Tick::Ping(Packet::PingReq)));
        // No second ping while the first is unanswered; the wake-up is the deadline.
        assert_eq!(c.wake_at(), Some(s(45)));
        assert!(matches!(c.tick(s(44)), Tick::Idle));
        assert!(matches!(c.tick(s(45)), Tick::Dead));
        // Answered in time, the link lives and the next ping is a keep-alive later.
        let mut c = up(&opts(), t0);
        assert!(matches!(c.tick(s(30)), Tick::Ping(_)));
        assert!(matches!(c.handle(Packet::PingResp, s(31)), Ok(Event::Pong)));
        assert!(matches!(c.tick(s(45)), Tick::Idle));
        assert_eq!(c.wake_at(), Some(s(60)));
    }

    #[test]
    fn a_link_that_only_writes_still_pings_and_notices_a_dead_broker() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut c = up(&opts(), t0);
        // QoS 0 writes every 10 s (nothing comes back for them).
        for n in 1..3 {
            c.wrote(s(10 * n));
        }
        assert!(matches!(c.tick(s(30)), Tick::Ping(_)));
        c.wrote(s(40));
        assert!(matches!(c.tick(s(45)), Tick::Dead));
    }

    #[test]
    fn packet_ids_never_collide_with_one_in_flight() {
        let t0 = Instant::now();
        let mut c = up(&opts(), t0);
        // Id 1 stays unacknowledged while the counter goes all the way round.
        assert_eq!(pkid(&c.publish("t", vec![], false, 1, t0).unwrap()), 1);
        c.next_pkid = u16::MAX;
        assert_eq!(
            pkid(&c.publish("t", vec![], false, 2, t0).unwrap()),
            u16::MAX
        );
        // Past 65535: not 0, not 1 (in flight).
        assert_eq!(pkid(&c.publish("t", vec![], false, 3, t0).unwrap()), 2);
        // Subscriptions draw from the same ids, and are skipped in turn.
        assert_eq!(pkid(&c.subscribe(&["a".into()], t0).unwrap()), 3);
        c.next_pkid = 1;
        assert_eq!(pkid(&c.publish("t", vec![], false, 4, t0).unwrap()), 4);
        // Once acknowledged and released, an id is free again.
        for id in [1, u16::MAX, 2, 4] {
            c.handle(puback(id), t0).unwrap();
        }
        assert_eq!(c.take_acked(), Some(4));
        c.next_pkid = 1;
        assert_eq!(pkid(&c.publish("t", vec![], false, 5, t0).unwrap()), 1);
    }

    #[test]
    fn acks_release_a_contiguous_prefix_only() {
        let t0 = Instant::now();
        let mut c = up(&opts(), t0);
        let ids: Vec<u16> = (10..14)
            .map(|seq| pkid(&c.publish("t", vec![], false, seq, t0).unwrap()))
            .collect();
        assert_eq!(ids, vec![1, 2, 3, 4]);
        c.handle(puback(2), t0).unwrap();
        assert_eq!(c.take_acked(), None, "frame 10 is not acknowledged yet");
        c.handle(puback(1), t0).unwrap();
        assert_eq!(c.take_acked(), Some(11));
        c.handle(puback(4), t0).unwrap();
        assert_eq!(c.take_acked(), None);
        c.handle(puback(3), t0).unwrap();
        assert_eq!(c.take_acked(), Some(13));
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn the_window_is_enforced_and_unsolicited_acks_name_the_id() {
        let t0 = Instant::now();
        let mut c = up(
            &Options {
                window: 2,
                ..opts()
            },
            t0,
        );
        c.publish("t", vec![], false, 1, t0).unwrap();
        c.publish("t", vec![], false, 2, t0).unwrap();
        assert!(!c.has_room());
        assert_eq!(
            c.publish("t", vec![], false, 3, t0).unwrap_err(),
            ProtocolError::WindowFull
        );
        assert_eq!(
            c.handle(puback(9), t0).unwrap_err(),
            ProtocolError::Unsolicited(9)
        );
        c.handle(puback(1), t0).unwrap();
        assert_eq!(
            c.handle(puback(1), t0).unwrap_err(),
            ProtocolError::Unsolicited(1)
        );
    }

    #[test]
    fn a_suback_failure_code_is_reported_with_its_filter() {
        let t0 = Instant::now();
        let mut c = up(&opts(), t0);
        let filters = vec!["p/it/config".to_string(), "p/group/x/config".to_string()];
        let id = pkid(&c.subscribe(&filters, t0).unwrap());
        let a = SubAck::new(
            id,
            vec![
                SubscribeReasonCode::Success(QoS::AtLeastOnce),
                SubscribeReasonCode::Failure,
            ],
        );
        match c.handle(Packet::SubAck(a), t0).unwrap() {
            Event::Subscribed { refused } => assert_eq!(refused, vec!["p/group/x/config"]),
            e => panic!("{e:?}"),
        }
        // A SUBACK for nothing pending is an error naming its id.
        let a = SubAck::new(77, vec![]);
        assert_eq!(
            c.handle(Packet::SubAck(a), t0).unwrap_err(),
            ProtocolError::Unsolicited(77)
        );
    }

    #[test]
    fn a_subscription_at_qos_0_asks_for_qos_0_and_its_suback_is_matched() {
        let t0 = Instant::now();
        let mut c = up(&opts(), t0);
        let f = vec!["p/+/state".to_string()];
        let Packet::Subscribe(s) = c.subscribe_at(&f, QoS::AtMostOnce, t0).unwrap() else {
            panic!()
        };
        assert_eq!(s.filters[0].qos, QoS::AtMostOnce);
        let a = SubAck::new(s.pkid, vec![SubscribeReasonCode::Success(QoS::AtMostOnce)]);
        match c.handle(Packet::SubAck(a), t0).unwrap() {
            Event::Subscribed { refused } => assert!(refused.is_empty()),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn connect_carries_the_will_and_a_refusal_or_early_packet_is_an_error() {
        let t0 = Instant::now();
        let mut c = Client::new(&opts(), t0);
        let hello = Hello {
            client_id: "it".into(),
            will: Some(("p/it/state".into(), b"offline".to_vec())),
            login: Some(("u".into(), crate::config::Secret::new("pw"))),
        };
        let Packet::Connect(p) = c.connect_packet(&hello) else {
            panic!()
        };
        assert_eq!((p.keep_alive, p.clean_session), (30, true));
        let Packet::Connect(k) = c.connect_packet_keeping_session(&hello) else {
            panic!()
        };
        assert_eq!((k.client_id.as_str(), k.clean_session), ("it", false));
        let w = p.last_will.unwrap();
        assert_eq!(
            (w.topic.as_str(), w.qos, w.retain),
            ("p/it/state", QoS::AtLeastOnce, true)
        );
        c.connecting(t0).unwrap();
        assert_eq!(
            c.handle(connack(ConnectReturnCode::NotAuthorized), t0)
                .unwrap_err(),
            ProtocolError::Refused(ConnectReturnCode::NotAuthorized)
        );
        c.link_lost(t0);
        let later = t0 + Duration::from_secs(10);
        c.connecting(later).unwrap();
        assert_eq!(
            c.handle(Packet::PingResp, later).unwrap_err(),
            ProtocolError::BeforeConnAck("PINGRESP")
        );
        assert_eq!(
            c.publish("t", vec![], false, 1, later).unwrap_err(),
            ProtocolError::NotConnected
        );
    }

    #[test]
    fn failed_connects_move_to_the_next_broker_and_fail_back_when_idle() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let o = Options {
            endpoints: 2,
            failback_after: Duration::from_secs(60),
            ..opts()
        };
        let mut c = Client::new(&o, t0);
        let mut moved = None;
        for n in 0..3 {
            assert_eq!(c.connecting(s(100 * n)), Ok(0));
            moved = c.link_lost(s(100 * n)).moved_to;
        }
        assert_eq!(moved, Some(1));
        assert_eq!(c.connecting(s(400)), Ok(1));
        c.handle(connack(ConnectReturnCode::Success), s(400))
            .unwrap();
        // `failback_after` has passed since the move (at 200 s).
        assert!(c.failback_due(s(400)));
        let id = pkid(&c.publish("t", vec![], false, 1, s(400)).unwrap());
        assert!(!c.failback_due(s(460)), "not with a publish in flight");
        c.handle(puback(id), s(460)).unwrap();
        c.take_acked();
        assert!(c.failback_due(s(460)));
        c.failback_failed(s(460));
        assert!(!c.failback_due(s(519)));
        assert!(c.failback_due(s(520)));
        c.failed_back(s(520));
        assert!(c.is_up() && !c.failback_due(s(10_000)));
        assert_eq!(c.link_lost(s(10_000)).moved_to, None);
        assert_eq!(c.connecting(s(20_000)), Ok(0));
    }
}
