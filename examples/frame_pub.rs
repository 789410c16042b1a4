//! Many agents' frames on an MQTT broker, as fast as it takes them: what `tailbeat consume`
//! reads, for measuring how many consumers a fleet needs (README, "Scale, by simulation").
//!
//! `--agents N` streams (`tailbeat/sim-00000/frames` ...), each `--frames F` frames in seq
//! order from 1, each frame `--lines K` log lines of `--line-bytes B` bytes built by the
//! agent's own batcher (`tailbeat::frame::BatchBuilder`, lz4 as a default agent: a payload
//! over 1 KiB is compressed). Lines vary as real ones do (time, ids, paths, figures), so lz4
//! finds what it finds in logs, not in a repeated string. Every frame is built before the
//! first is sent, so building costs nothing during the run. QoS 1 over `--conns C`
//! connections (agent `i` on connection `i % C`, so each stream stays in order), at most
//! 100 unacknowledged publishes per connection.
//!
//! ```sh
//! cargo run --release --example frame_pub -- --broker 127.0.0.1:1883 \
//!     --agents 1000 --frames 100 --lines 1 [--line-bytes 200] [--conns 4]
//! ```
//!
//! It prints what it sent: frames, lines, payload bytes (plain and as sent) and the time.

#![forbid(unsafe_code)]

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Connect, Packet, Publish};
use rumqttc::mqttbytes::QoS;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tailbeat::frame::{BatchBuilder, Codec, SourceRef};

/// Publishes a connection may have waiting for their PUBACK.
const WINDOW: u64 = 100;

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: Option<T>) -> T {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name}: a value")),
        None => default.unwrap_or_else(|| panic!("{name} is required")),
    }
}

/// Line `n` of agent `a`: a plausible access-log line, cut or padded to `len` bytes.
fn log_line(a: usize, n: u64, len: usize) -> Vec<u8> {
    const PATHS: [&str; 6] = [
        "/api/v1/items",
        "/api/v1/status",
        "/metrics",
        "/api/v2/orders",
        "/login",
        "/static/app.js",
    ];
    const UA: [&str; 3] = [
        "Mozilla/5.0 (X11; Linux x86_64)",
        "curl/8.5.0",
        "okhttp/4.12.0",
    ];
    let h = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ a as u64).rotate_left(17);
    let mut s = format!(
        "2026-11-30T21:{:02}:{:02}.{:03}Z INFO  [worker-{}] gw-{a:05} {} {}/{} status={} bytes={} dur_ms={} req={:016x} ua=\"{}\"",
        (n / 60) % 60,
        n % 60,
        h % 1000,
        h % 8,
        if h % 5 == 0 { "POST" } else { "GET" },
        PATHS[(h % 6) as usize],
        h % 10_000,
        if h % 17 == 0 { 500 } else { 200 },
        h % 65_536,
        h % 250,
        h,
        UA[(h % 3) as usize],
    );
    while s.len() < len {
        s.push_str(" pad");
    }
    s.truncate(len);
    s.into_bytes()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let broker: String = arg(&args, "--broker", None);
    let agents: usize = arg(&args, "--agents", None);
    let frames: u64 = arg(&args, "--frames", None);
    let lines: u64 = arg(&args, "--lines", None);
    let line_bytes: usize = arg(&args, "--line-bytes", Some(200));
    let conns: usize = arg(&args, "--conns", Some(4));

    // Built first, in the order they go out: round after round, each agent's next frame.
    let src = SourceRef {
        path: "/var/log/app.log",
        dev: 1,
        ino: 2,
        fp_len: 0,
        fp: 0,
    };
    let mut b = BatchBuilder::new(lines as u32, 64 << 10);
    b.set_codec(Codec::Lz4);
    let mut queues: Vec<Vec<(String, Vec<u8>)>> = vec![Vec::new(); conns];
    let (mut plain, mut sent) = (0u64, 0u64);
    for seq in 1..=frames {
        for a in 0..agents {
            let inst = format!("sim-{a:05}");
            for k in 0..lines {
                let n = (seq - 1) * lines + k;
                let l = log_line(a, n, line_bytes);
                plain += l.len() as u64;
                let off = n * (line_bytes as u64 + 1);
                assert!(b.push(
                    &src,
                    off,
                    off + line_bytes as u64 + 1,
                    1_796_000_000_000 + n * 100,
                    0,
                    &l
                ));
            }
            let f = b.finish(&inst, seq);
            sent += f.len() as u64;
            queues[a % conns].push((format!("tailbeat/{inst}/frames"), f));
        }
    }
    let start = Instant::now();
    let threads: Vec<_> = queues
        .into_iter()
        .enumerate()
        .map(|(c, q)| {
            let broker = broker.clone();
            std::thread::spawn(move || publish_all(&broker, c, q))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let n = frames * agents as u64;
    println!(
        "frame_pub: {n} frames ({} lines, {plain} bytes of lines, {sent} bytes of frames: {:.0} per frame) from {agents} agents in {secs:.2} s ({:.0} frames/s)",
        n * lines,
        sent as f64 / n as f64,
        n as f64 / secs
    );
}

/// Publishes `q` in order on one connection and waits for every PUBACK.
fn publish_all(broker: &str, c: usize, q: Vec<(String, Vec<u8>)>) {
    let mut sock = TcpStream::connect(broker).expect("the broker");
    sock.set_nodelay(true).unwrap();
    let mut out = BytesMut::new();
    let mut conn = Connect::new(format!("frame-pub-{}-{c}", std::process::id()));
    conn.keep_alive = 60;
    Packet::Connect(conn).write(&mut out, 1 << 20).unwrap();
    sock.write_all(&out).unwrap();
    let mut ack = [0u8; 4];
    sock.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [0x20, 2, 0, 0], "CONNACK");
    let total = q.len() as u64;
    let acked = Arc::new(AtomicU64::new(0));
    let (mut r, a) = (sock.try_clone().unwrap(), acked.clone());
    let reader = std::thread::spawn(move || {
        let mut rx = BytesMut::new();
        let mut buf = [0u8; 16 << 10];
        while a.load(Ordering::SeqCst) < total {
            match Packet::read(&mut rx, 1 << 20) {
                Ok(Packet::PubAck(_)) => {
                    a.fetch_add(1, Ordering::SeqCst);
                }
                Ok(_) => {}
                Err(_) => {
                    let n = r.read(&mut buf).expect("the broker's answers");
                    assert!(n > 0, "the broker closed the connection");
                    rx.extend_from_slice(&buf[..n]);
                }
            }
        }
    });
    for (i, (topic, payload)) in q.into_iter().enumerate() {
        while i as u64 - acked.load(Ordering::SeqCst) >= WINDOW {
            std::thread::sleep(Duration::from_micros(50));
        }
        let mut p = Publish::new(topic, QoS::AtLeastOnce, payload);
        p.pkid = (i % 65_535) as u16 + 1;
        out.clear();
        Packet::Publish(p).write(&mut out, 16 << 20).unwrap();
        sock.write_all(&out).unwrap();
    }
    reader.join().unwrap();
    out.clear();
    Packet::Disconnect.write(&mut out, 16).unwrap();
    let _ = sock.write_all(&out);
}
