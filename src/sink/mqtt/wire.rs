//! One MQTT connection's packets: encoded into a buffer, written and read over [`Conn`],
//! every I/O bounded by a timeout. Shared by the MQTT sink and the fleet's MQTT link, which
//! differ in what they say, not in how bytes move.

use super::conn::Conn;
use crate::config::{Endpoint, Tls};
use bytes::BytesMut;
use rumqttc::mqttbytes::v4::Packet;
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use std::net::SocketAddr;
use std::time::Duration;

/// An open connection and its buffers.
#[derive(Debug)]
pub(crate) struct Wire {
    conn: Conn,
    rx: BytesMut,
    tx: BytesMut,
    /// Largest packet encoded or accepted.
    max: usize,
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
            rx: BytesMut::with_capacity(4096),
            tx: BytesMut::new(),
            max,
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
            return Err(format!("encode: {e}"));
        }
        self.flush(t).await
    }

    /// Reads one packet, waiting at most `t` for each chunk of it.
    pub(crate) async fn read(&mut self, t: Duration) -> Result<Packet, String> {
        loop {
            match Packet::read(&mut self.rx, self.max) {
                Ok(p) => return Ok(p),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => return Err(format!("bad packet from the broker: {e}")),
            }
            let mut chunk = [0u8; 4096];
            let n = within(t, "read", self.conn.read(&mut chunk)).await?;
            if n == 0 {
                return Err("the broker closed the connection".into());
            }
            self.rx.extend_from_slice(&chunk[..n]);
        }
    }
}
