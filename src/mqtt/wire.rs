//! One MQTT connection's packets: encoded into a buffer, written and read over [`Conn`],
//! every I/O bounded by a timeout. Shared by the MQTT sink and the fleet's MQTT link, which
//! differ in what they say, not in how bytes move.

use super::conn::Conn;
use crate::config::{Endpoint, Tls};
use bytes::BytesMut;
use rumqttc::mqttbytes::v4::Packet;
use rumqttc::mqttbytes::QoS;
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use std::net::SocketAddr;
use std::time::Duration;

/// An open connection and its buffers.
///
/// The receive buffer grows to the packet being read (at most `max` and its header) and
/// goes back to [`RX_START`] once a packet larger than that has been taken out of it, so a
/// large message is not held for the rest of the connection.
#[derive(Debug)]
pub(crate) struct Wire {
    conn: Conn,
    rx: BytesMut,
    tx: BytesMut,
    /// Largest packet encoded or accepted.
    max: usize,
    /// `rx` grew past [`RX_START`] for a packet: let it go once that packet is out of it.
    rx_grown: bool,
}

/// The receive buffer's size between large packets: a read's chunk.
const RX_START: usize = 4096;

/// What [`Wire::read_or_skip`] got.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A packet within the limit.
    Packet(Packet),
    /// A PUBLISH larger than the limit: read off the connection and thrown away as it
    /// arrived, never held whole. Its packet id is to be acknowledged at QoS 1, or the
    /// broker would hold it in flight.
    TooLarge {
        /// Its topic.
        topic: String,
        /// Its packet id (0 at QoS 0).
        pkid: u16,
        /// Its QoS.
        qos: QoS,
        /// Its size (the MQTT remaining length: topic, packet id and payload).
        len: usize,
    },
}

/// `f`, or a `TimedOut` error after `d`; the error says `what` was being done.
pub(crate) async fn within<T>(
    d: Duration,
    what: &str,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, String> {
    f.or(async {
        smol::Timer::after(d).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer in {} ms", d.as_millis()),
        ))
    })
    .await
    .map_err(|e| format!("{what}: {e}"))
}

/// What the packet codec refused, in a few words of our own: rumqttc's messages for its 30
/// kinds of error cost about 1.4 KB of binary, and the MQTT-only build is counted in bytes.
fn packet_error(e: &rumqttc::mqttbytes::Error) -> String {
    use rumqttc::mqttbytes::Error as E;
    let (what, n) = match *e {
        E::OutgoingPacketTooLarge { pkt_size, .. } => {
            ("a packet over the size limit, bytes:", pkt_size)
        }
        E::InvalidQoS(q) => ("an invalid QoS", q.into()),
        E::InvalidPacketType(t) => ("an invalid packet type", t.into()),
        E::InvalidConnectReturnCode(c) => ("an invalid CONNACK code", c.into()),
        E::InvalidSubscribeReasonCode(c) => ("an invalid SUBACK code", c.into()),
        E::TopicNotUtf8 => return "a topic that is not UTF-8".into(),
        _ => return "a malformed packet".into(),
    };
    format!("{what} {n}")
}

impl Wire {
    /// Connects to `addr` (with TLS for an `mqtts://` endpoint) within `t`.
    pub(crate) async fn open(
        addr: SocketAddr,
        e: &Endpoint,
        tls: &Tls,
        t: Duration,
        max: usize,
    ) -> Result<Wire, String> {
        let conn = within(t, &format!("connect to {e}"), Conn::open(addr, e, tls)).await?;
        Ok(Wire {
            conn,
            rx: BytesMut::with_capacity(RX_START),
            tx: BytesMut::new(),
            max,
            rx_grown: false,
        })
    }

    /// Encodes `p` behind what is queued, to go out with the next [`flush`](Self::flush).
    pub(crate) fn queue(&mut self, p: Packet) -> Result<(), rumqttc::mqttbytes::Error> {
        p.write(&mut self.tx, self.max).map(|_| ())
    }

    /// Writes what is queued within `t`. The queue is empty afterwards whatever happened:
    /// a packet must not go out twice (Mosquitto drops a client that sends CONNECT twice).
    pub(crate) async fn flush(&mut self, t: Duration) -> Result<(), String> {
        let (conn, tx) = (&mut self.conn, &self.tx);
        let r = within(t, "write", async {
            conn.write_all(tx).await?;
            // TLS holds records back until flushed; plain TCP has nothing to flush.
            conn.flush().await
        })
        .await;
        self.tx.clear();
        r
    }

    /// [`queue`](Self::queue) and [`flush`](Self::flush).
    pub(crate) async fn write(&mut self, p: Packet, t: Duration) -> Result<(), String> {
        if let Err(e) = self.queue(p) {
            self.tx.clear();
            return Err(format!("encode: {}", packet_error(&e)));
        }
        self.flush(t).await
    }

    /// Reads one packet, waiting at most `t` for each chunk of it. A packet larger than the
    /// limit is an error (the MQTT sink's broker never sends one: it only acknowledges).
    pub(crate) async fn read(&mut self, t: Duration) -> Result<Packet, String> {
        match self.read_or_skip(t).await? {
            Incoming::Packet(p) => Ok(p),
            Incoming::TooLarge { topic, len, .. } => Err(format!(
                "bad packet from the broker: a PUBLISH on {topic} of {len} bytes, over the limit of {}",
                self.max
            )),
        }
    }

    /// Reads one packet, waiting at most `t` for each chunk of it; a PUBLISH larger than the
    /// limit is skipped (see [`Incoming::TooLarge`]), so a retained message too large for
    /// this client costs one refusal instead of the connection.
    pub(crate) async fn read_or_skip(&mut self, t: Duration) -> Result<Incoming, String> {
        self.release_rx();
        loop {
            match Packet::read(&mut self.rx, self.max) {
                Ok(p) => {
                    self.release_rx();
                    return Ok(Incoming::Packet(p));
                }
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(n)) => {
                    // Room for the rest of the packet at once, not by doubling (which
                    // would hold up to twice the packet).
                    if self.rx.capacity() - self.rx.len() < n {
                        self.rx.reserve(n);
                        self.rx_grown = self.rx.capacity() > RX_START;
                    }
                }
                Err(rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(len)) => {
                    if let Some(skipped) = self.skip(len, t).await? {
                        return Ok(skipped);
                    }
                    return Err(format!(
                        "bad packet from the broker: {len} bytes, over the limit of {}, and not a PUBLISH",
                        self.max
                    ));
                }
                Err(e) => return Err(format!("bad packet from the broker: {}", packet_error(&e))),
            }
            self.fill(t).await?;
        }
    }

    /// The next packet if it is already whole in the receive buffer, without I/O: lets a
    /// reader take what arrived together as one batch. `None` if the buffer holds no whole
    /// packet (or the head is one over the limit: [`read_or_skip`](Self::read_or_skip)
    /// deals with it).
    #[cfg(any(feature = "consume", feature = "fleet"))]
    pub(crate) fn read_buffered(&mut self) -> Result<Option<Packet>, String> {
        match Packet::read(&mut self.rx, self.max) {
            Ok(p) => {
                self.release_rx();
                Ok(Some(p))
            }
            Err(
                rumqttc::mqttbytes::Error::InsufficientBytes(_)
                | rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(_),
            ) => Ok(None),
            Err(e) => Err(format!("bad packet from the broker: {}", packet_error(&e))),
        }
    }

    /// Reads a chunk into `rx`.
    async fn fill(&mut self, t: Duration) -> Result<(), String> {
        let mut chunk = [0u8; RX_START];
        let n = within(t, "read", self.conn.read(&mut chunk)).await?;
        if n == 0 {
            return Err("the broker closed the connection".into());
        }
        self.rx.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Lets a receive buffer that grew for a large packet go once that packet has left it:
    /// what is left (the start of the next packets, at most a read's chunk) moves to a
    /// buffer of the usual size. (`split_to` leaves `rx` sharing the large allocation.)
    fn release_rx(&mut self) {
        if self.rx_grown && self.rx.len() <= RX_START {
            let mut fresh = BytesMut::with_capacity(RX_START);
            fresh.extend_from_slice(&self.rx);
            self.rx = fresh;
            self.rx_grown = false;
        }
    }

    /// Skips the packet at the head of `rx`, whose remaining length `len` is over the limit,
    /// if it is a PUBLISH: reads its variable header (topic, packet id; at most 64 KiB),
    /// then reads and drops the rest chunk by chunk. `None` if it is not a PUBLISH.
    async fn skip(&mut self, len: usize, t: Duration) -> Result<Option<Incoming>, String> {
        let byte1 = self.rx[0];
        if byte1 >> 4 != 3 {
            return Ok(None);
        }
        let qos = match (byte1 >> 1) & 3 {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        // The remaining length's own size: 1 to 4 bytes, each but the last with bit 7 set.
        let len_len = self.rx[1..]
            .iter()
            .take(4)
            .position(|b| b & 0x80 == 0)
            .unwrap_or(3)
            + 1;
        let head = 1 + len_len;
        if len < 2 {
            return Err(format!(
                "bad packet from the broker: a PUBLISH of {len} bytes"
            ));
        }
        while self.rx.len() < head + 2 {
            self.fill(t).await?;
        }
        let topic_len = u16::from_be_bytes([self.rx[head], self.rx[head + 1]]) as usize;
        let pkid_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
        let var = 2 + topic_len + pkid_len;
        if len < var {
            // Its variable header says more than its length: the stream is out of step.
            return Err(format!(
                "bad packet from the broker: a PUBLISH of {len} bytes with a {topic_len}-byte topic"
            ));
        }
        while self.rx.len() < head + var {
            self.fill(t).await?;
        }
        let topic = String::from_utf8_lossy(&self.rx[head + 2..head + 2 + topic_len]).into_owned();
        let pkid = match pkid_len {
            2 => u16::from_be_bytes([self.rx[head + var - 2], self.rx[head + var - 1]]),
            _ => 0,
        };
        let mut left = head + len;
        loop {
            let n = left.min(self.rx.len());
            let _ = self.rx.split_to(n);
            left -= n;
            if left == 0 {
                break;
            }
            self.fill(t).await?;
        }
        self.release_rx();
        Ok(Some(Incoming::TooLarge {
            topic,
            pkid,
            qos,
            len,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{endpoint, Tls};
    use rumqttc::mqttbytes::v4::Publish;
    use std::io::Write;

    #[test]
    fn a_refused_packet_is_named_with_what_was_wrong() {
        use rumqttc::mqttbytes::Error as E;
        // A PUBLISH with QoS 3 in its fixed header, as a broken broker could send it.
        let mut b = bytes::BytesMut::from(&[0x36u8, 0x05, 0x00, 0x01, b't', 0x00, 0x01][..]);
        let e = Packet::read(&mut b, 1024).unwrap_err();
        assert_eq!(packet_error(&e), "an invalid QoS 3");
        assert_eq!(packet_error(&E::MalformedPacket), "a malformed packet");
        let big = E::OutgoingPacketTooLarge {
            pkt_size: 300,
            max: 100,
        };
        assert_eq!(
            packet_error(&big),
            "a packet over the size limit, bytes: 300"
        );
    }

    /// A wire with a limit of `max` to a loopback socket that sends `bytes`.
    fn wire_fed(max: usize, bytes: Vec<u8>) -> Wire {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            // In small pieces, as a network would: the skip must cope with any split.
            for piece in bytes.chunks(1000) {
                c.write_all(piece).unwrap();
            }
            std::thread::sleep(Duration::from_secs(2));
        });
        let e = endpoint::mqtt(&format!("mqtt://{addr}")).unwrap();
        smol::block_on(Wire::open(
            addr,
            &e,
            &Tls::default(),
            Duration::from_secs(5),
            max,
        ))
        .unwrap()
    }

    fn encode(p: Packet) -> Vec<u8> {
        let mut b = BytesMut::new();
        p.write(&mut b, usize::MAX).unwrap();
        b.to_vec()
    }

    fn publish(topic: &str, pkid: u16, len: usize) -> Packet {
        let mut p = Publish::new(topic, QoS::AtLeastOnce, vec![7u8; len]);
        p.pkid = pkid;
        Packet::Publish(p)
    }

    #[test]
    fn a_publish_over_the_limit_is_skipped_with_its_topic_and_id_and_the_next_one_read() {
        let mut bytes = encode(publish("t/it/config", 4242, 300_000));
        bytes.extend(encode(publish("t/it/config", 7, 100)));
        bytes.extend(encode(Packet::PingResp));
        let mut w = wire_fed(64 << 10, bytes);
        let t = Duration::from_secs(5);
        match smol::block_on(w.read_or_skip(t)).unwrap() {
            Incoming::TooLarge {
                topic,
                pkid,
                qos,
                len,
            } => {
                assert_eq!(
                    (topic.as_str(), pkid, qos),
                    ("t/it/config", 4242, QoS::AtLeastOnce)
                );
                assert_eq!(len, 2 + 11 + 2 + 300_000);
            }
            other => panic!("{other:?}"),
        }
        // Never held whole: the buffer did not grow past a read's chunk and a header.
        assert!(w.rx.capacity() < 64 << 10, "{}", w.rx.capacity());
        match smol::block_on(w.read_or_skip(t)).unwrap() {
            Incoming::Packet(Packet::Publish(p)) => assert_eq!((p.pkid, p.payload.len()), (7, 100)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            smol::block_on(w.read_or_skip(t)).unwrap(),
            Incoming::Packet(Packet::PingResp)
        ));
        // The sink's read() still calls it an error.
        let mut w = wire_fed(64 << 10, encode(publish("t", 1, 100_000)));
        assert!(smol::block_on(w.read(t))
            .unwrap_err()
            .contains("over the limit"));
    }

    #[test]
    fn a_publish_over_the_limit_whose_topic_runs_past_its_length_is_an_error() {
        // PUBLISH QoS 1, remaining length 200 (over the limit of 100), topic length 300.
        let mut bytes = vec![0x32, 0xc8, 0x01, 0x01, 0x2c];
        bytes.extend(vec![b't'; 198]);
        let mut w = wire_fed(100, bytes);
        let e = smol::block_on(w.read_or_skip(Duration::from_secs(5))).unwrap_err();
        assert!(e.contains("300-byte topic"), "{e}");
    }

    #[test]
    #[cfg(feature = "consume")]
    fn buffered_packets_are_taken_without_io_and_a_partial_one_is_left() {
        let mut bytes = encode(publish("t", 1, 10));
        bytes.extend(encode(publish("t", 2, 10)));
        let third = encode(publish("t", 3, 10));
        bytes.extend(&third[..5]);
        let mut w = wire_fed(1 << 20, bytes);
        let t = Duration::from_secs(5);
        // Nothing read yet: nothing buffered.
        assert!(w.read_buffered().unwrap().is_none());
        let Incoming::Packet(Packet::Publish(p)) = smol::block_on(w.read_or_skip(t)).unwrap()
        else {
            panic!("not a publish");
        };
        assert_eq!(p.pkid, 1);
        // The first chunk held the second packet whole, and the start of the third.
        match w.read_buffered().unwrap() {
            Some(Packet::Publish(p)) => assert_eq!(p.pkid, 2),
            other => panic!("{other:?}"),
        }
        assert!(w.read_buffered().unwrap().is_none());
        assert_eq!(w.rx.len(), 5, "the partial packet stays for the next read");
    }

    #[test]
    fn the_receive_buffer_shrinks_back_after_a_large_packet() {
        let mut bytes = encode(publish("t", 1, 1 << 20));
        bytes.extend(encode(Packet::PingResp));
        let mut w = wire_fed(4 << 20, bytes);
        let t = Duration::from_secs(5);
        let Incoming::Packet(Packet::Publish(p)) = smol::block_on(w.read_or_skip(t)).unwrap()
        else {
            panic!("not a publish");
        };
        assert_eq!(p.payload.len(), 1 << 20);
        drop(p);
        assert!(w.rx.capacity() <= RX_START, "{}", w.rx.capacity());
        assert!(matches!(
            smol::block_on(w.read_or_skip(t)).unwrap(),
            Incoming::Packet(Packet::PingResp)
        ));
    }
}
