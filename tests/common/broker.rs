//! A real MQTT broker for the tests, in a process of its own behind a port the test holds:
//! rumqttd by default, or Mosquitto with `TAILBEAT_TEST_BROKER=mosquitto` (CI runs both), as
//! [`Broker`]; or Mosquitto alone ([`Mosquitto`]), for the tests that need what only it has
//! (sessions kept across its restart, retained messages exactly as Mosquitto keeps them).
//! And a client of the test's own: [`client`], [`read_until`], [`publish`].
//!
//! A test file that starts a [`Broker`] declares the rumqttd child as a test of its own
//! (the broker runs as this test binary again, with only that test):
//!
//! ```ignore
//! #[test]
//! #[ignore = "the broker process of the other tests: they start it themselves"]
//! fn broker_process() {
//!     common::broker::broker_process();
//! }
//! ```

use super::configserver;
use super::Scratch;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every PUBLISH a broker routed to the test's subscription, as `topic hexpayload` lines in
/// a file, so that it survives the broker being killed.
#[derive(Clone)]
pub struct Received(pub PathBuf);

impl Received {
    pub fn messages(&self) -> Vec<(String, Vec<u8>)> {
        let text = std::fs::read_to_string(&self.0).unwrap_or_default();
        // Complete lines only: the broker may be halfway through appending the last one (a
        // 64 KiB frame is a 128 KiB line), and half a frame does not decode.
        text.split_inclusive('\n')
            .filter_map(|l| l.strip_suffix('\n'))
            .filter_map(|l| {
                let (topic, hex) = l.split_once(' ')?;
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                    .collect::<Option<Vec<u8>>>()?;
                Some((topic.to_string(), bytes))
            })
            .collect()
    }
}

/// The broker's port as the agent sees it: bound to port 0 by the test and held for the
/// test's whole life. A port found free, let go and bound again later is a race: between
/// the two, another test's broker, or the source port of any outgoing connection, can take
/// it (and between a broker's kill and its restart, for as long as the broker is down). A
/// thread accepts on it and forwards each connection to the broker that is up, if any;
/// with none, it closes the connection at once, and the agent's connect fails as against a
/// closed port. Brokers themselves listen where nothing can race: rumqttd on a port the
/// kernel picks (found in /proc), Mosquitto on a Unix socket in the scratch directory.
pub struct BrokerPort {
    pub port: u16,
    backend: Arc<Mutex<Option<Backend>>>,
    stop: Arc<AtomicBool>,
}

/// Where the broker that is up listens.
#[derive(Clone)]
enum Backend {
    Tcp(std::net::SocketAddr),
    Unix(std::path::PathBuf),
}

impl BrokerPort {
    pub fn new() -> BrokerPort {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let backend: Arc<Mutex<Option<Backend>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (b, st) = (backend.clone(), stop.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(c) = c else { continue };
                // Taken out first: a broker that dies meanwhile fails the connect below.
                let up = b.lock().unwrap().clone();
                match up {
                    Some(Backend::Tcp(a)) => {
                        if let Ok(to) = TcpStream::connect(a) {
                            splice(c, to);
                        }
                    }
                    Some(Backend::Unix(p)) => {
                        if let Ok(to) = UnixStream::connect(p) {
                            splice(c, to);
                        }
                    }
                    None => {}
                }
            }
        });
        BrokerPort {
            port,
            backend,
            stop,
        }
    }
}

impl std::fmt::Display for BrokerPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.port.fmt(f)
    }
}

impl Drop for BrokerPort {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then lets the port go.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A socket the forwarder can copy both ways and close.
trait Duplex: Read + Write + Send + Sized + 'static {
    fn dup(&self) -> Self;
    fn close(&self);
}
impl Duplex for TcpStream {
    fn dup(&self) -> Self {
        self.try_clone().unwrap()
    }
    fn close(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}
impl Duplex for UnixStream {
    fn dup(&self) -> Self {
        self.try_clone().unwrap()
    }
    fn close(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

/// Copies `a` and `b` into each other until either side ends, then closes both: a broker
/// killed closes the agent's connection, an agent killed closes the broker's (which then
/// publishes its Will).
fn splice<B: Duplex>(a: TcpStream, b: B) {
    fn one_way<R: Duplex, W: Duplex>(mut r: R, mut w: W) {
        let _ = std::io::copy(&mut r, &mut w);
        r.close();
        w.close();
    }
    let (a2, b2) = (a.dup(), b.dup());
    std::thread::spawn(move || one_way(a, b2));
    std::thread::spawn(move || one_way(b, a2));
}

/// The TCP port that process `pid` listens on (its first listening socket), from /proc.
fn listening_port(pid: u32) -> Option<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .filter_map(|e| {
            let l = std::fs::read_link(e.path()).ok()?;
            let l = l.to_str()?;
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // local_address (hex ip:port), st (0A: LISTEN), inode.
        let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?);
        if *state != "0A" || !inodes.iter().any(|i| i == inode) {
            return None;
        }
        u16::from_str_radix(local.split(':').nth(1)?, 16).ok()
    })
}

/// A broker in a process of its own, subscribed to `tailbeat/#`, behind a [`BrokerPort`]:
/// rumqttd by default, or Mosquitto with `TAILBEAT_TEST_BROKER=mosquitto` (CI runs both).
/// Dropping it kills it.
pub struct Broker {
    procs: Vec<Child>,
    port: Arc<Mutex<Option<Backend>>>,
}

impl Broker {
    pub fn start(port: &BrokerPort, out: &Received) -> Broker {
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        let kind = std::env::var("TAILBEAT_TEST_BROKER").unwrap_or_else(|_| "rumqttd".into());
        let (procs, backend) = match kind.as_str() {
            "rumqttd" => {
                // This test binary again, running only `broker_process`.
                let child = Command::new(std::env::current_exe().unwrap())
                    .args(["--exact", "broker_process", "--ignored", "--nocapture"])
                    .env("TAILBEAT_BROKER_CHILD", &out.0)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                let p = loop {
                    if let Some(p) = listening_port(child.id()) {
                        break p;
                    }
                    assert!(Instant::now() < deadline, "rumqttd does not listen");
                    std::thread::sleep(Duration::from_millis(20));
                };
                (vec![child], Backend::Tcp(([127, 0, 0, 1], p).into()))
            }
            "mosquitto" => {
                let m = Mosquitto::start(
                    &out.0.with_extension(format!("broker{n}")),
                    "persistence false\n",
                    None,
                );
                let sub = Command::new("mosquitto_sub")
                    .arg("--unix")
                    .arg(&m.sock)
                    .args(["-t", "tailbeat/#", "-q", "1", "-F", "%t %x"])
                    .stdout(
                        std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(&out.0)
                            .unwrap(),
                    )
                    .spawn()
                    .expect("mosquitto_sub does not run (Debian package mosquitto-clients)");
                // Let the subscription settle before anything is published.
                std::thread::sleep(Duration::from_millis(300));
                let sock = m.sock.clone();
                (vec![m.into_child(), sub], Backend::Unix(sock))
            }
            other => panic!("TAILBEAT_TEST_BROKER={other}: expected rumqttd or mosquitto"),
        };
        *port.backend.lock().unwrap() = Some(backend);
        Broker {
            procs,
            port: port.backend.clone(),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        *self.port.lock().unwrap() = None;
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// The rumqttd broker process the tests start (see [`Broker::start`]): the body of each test
/// file's `broker_process` test (module doc); does nothing unless started that way.
pub fn broker_process() {
    let Ok(out) = std::env::var("TAILBEAT_BROKER_CHILD") else {
        return;
    };
    // Port 0: the kernel picks a port no one else has; `Broker::start` finds it in /proc.
    let cfg: rumqttd::Config = toml::from_str(
        r#"
id = 0
[router]
id = 0
max_connections = 100
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:0"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 8388608
max_inflight_count = 100
dynamic_filters = true
"#,
    )
    .unwrap();
    let mut b = rumqttd::Broker::new(cfg);
    let (mut tx, mut rx) = b.link("test").unwrap();
    tx.subscribe("tailbeat/#").unwrap();
    std::thread::spawn(move || b.start().unwrap());
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .unwrap();
    loop {
        if let Ok(Some(rumqttd::Notification::Forward(fw))) = rx.recv() {
            let hex: String = fw
                .publish
                .payload
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let topic = String::from_utf8_lossy(&fw.publish.topic);
            f.write_all(format!("{topic} {hex}\n").as_bytes()).unwrap();
        }
    }
}

/// A scratch directory, a free port, and a broker on it recording into `received`.
pub fn with_broker(name: &str) -> (Scratch, BrokerPort, Received, Broker) {
    let port = BrokerPort::new();
    let s = Scratch::new(name);
    let got = Received(s.path("received"));
    let broker = Broker::start(&port, &got);
    (s, port, got, broker)
}

/// The Mosquitto binary: `/usr/sbin` is not on every user's PATH.
pub fn mosquitto_bin() -> &'static str {
    if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

/// Mosquitto listening on the Unix socket `dir/sock` (nothing can race for it), with
/// `dir/mosquitto.conf`: anonymous clients, plus the test's `conf` lines. Reached over TCP
/// once put [`Mosquitto::behind`] a [`BrokerPort`]. Dropping it kills it.
pub struct Mosquitto {
    child: Option<Child>,
    /// Where it listens.
    pub sock: PathBuf,
    port: Option<Arc<Mutex<Option<Backend>>>>,
}

impl Mosquitto {
    /// Starts it and waits until it listens; its log goes to `log` (`None`: `dir/mosquitto.log`).
    /// A socket left by a Mosquitto before it in `dir` is removed first.
    pub fn start(dir: &Path, conf: &str, log: Option<&Path>) -> Mosquitto {
        std::fs::create_dir_all(dir).unwrap();
        let sock = dir.join("sock");
        let _ = std::fs::remove_file(&sock);
        let conf_file = dir.join("mosquitto.conf");
        // `user root`: started as root, mosquitto would become user `mosquitto`, who cannot
        // create the socket in the scratch directory (not started as root, it ignores this).
        std::fs::write(
            &conf_file,
            format!(
                "user root\nlistener 0 {}\nallow_anonymous true\n{conf}",
                sock.display()
            ),
        )
        .unwrap();
        let log = log.map_or_else(|| dir.join("mosquitto.log"), Path::to_path_buf);
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&conf_file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("mosquitto does not run (Debian package mosquitto)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&sock).is_err() {
            assert!(Instant::now() < deadline, "mosquitto does not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Mosquitto {
            child: Some(child),
            sock,
            port: None,
        }
    }

    /// Connections to `port` go to this Mosquitto from now on, until it stops.
    pub fn behind(mut self, port: &BrokerPort) -> Mosquitto {
        *port.backend.lock().unwrap() = Some(Backend::Unix(self.sock.clone()));
        self.port = Some(port.backend.clone());
        self
    }

    /// SIGTERM (Mosquitto saves its sessions and queues, if it persists them), and wait for
    /// it to exit. Its port, if any, closes new connections at once from before the signal.
    pub fn stop(mut self) {
        self.detach();
        let mut child = self.child.take().unwrap();
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        assert!(
            super::wait_exit(&mut child, 20).is_some(),
            "mosquitto did not stop"
        );
    }

    fn detach(&mut self) {
        if let Some(p) = self.port.take() {
            *p.lock().unwrap() = None;
        }
    }

    fn into_child(mut self) -> Child {
        self.child.take().unwrap()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.detach();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Connects a client of the test's own and reads its CONNACK.
pub fn client(port: u16, id: &str) -> TcpStream {
    use rumqttc::mqttbytes::v4::{Connect, Packet};
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = bytes::BytesMut::new();
    Packet::Connect(Connect::new(format!("{id}-{}", std::process::id())))
        .write(&mut out, 1 << 20)
        .unwrap();
    c.write_all(&out).unwrap();
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(buf, [0x20, 0x02, 0x00, 0x00], "CONNACK");
    c
}

/// Reads packets from `c` until `done` says so (or 10 s pass, which fails the test).
pub fn read_until(c: &mut TcpStream, done: impl FnMut(rumqttc::mqttbytes::v4::Packet) -> bool) {
    if !try_read_until(c, done) {
        panic!("the broker closed the test client's connection");
    }
}

/// [`read_until`], but a connection the broker closes first is `false`.
fn try_read_until(
    c: &mut TcpStream,
    mut done: impl FnMut(rumqttc::mqttbytes::v4::Packet) -> bool,
) -> bool {
    use rumqttc::mqttbytes::v4::Packet;
    let mut rx = bytes::BytesMut::new();
    loop {
        match Packet::read(&mut rx, 16 << 20) {
            Ok(p) => {
                if done(p) {
                    return true;
                }
            }
            Err(_) => {
                let mut buf = [0u8; 4096];
                let n = c.read(&mut buf).expect("an answer from the broker");
                if n == 0 {
                    return false;
                }
                rx.extend_from_slice(&buf[..n]);
            }
        }
    }
}

/// Publishes one message at QoS 1 and waits for the PUBACK.
///
/// After the DISCONNECT it waits for the broker to close the connection, so that the next
/// call's session starts after this one ended: rumqttd closed 9 to 16 of 600 back-to-back
/// publishers before their PUBACK without the wait, 0 of 1,800 with it (and CI's suite failed
/// on one). At least once, as QoS 1 is: a connection closed before its PUBACK anyway is
/// published on again, on a new one, saying so.
pub fn publish(port: u16, topic: &str, payload: &[u8], retain: bool) {
    use rumqttc::mqttbytes::v4::{Packet, Publish};
    use rumqttc::mqttbytes::QoS;
    // A client id of its own each time: one reused back to back races the broker's
    // session takeover (it closed the new connection once, in the full suite).
    static N: AtomicUsize = AtomicUsize::new(0);
    for attempt in 1..=3 {
        let mut c = client(
            port,
            &format!("test-pub-{}", N.fetch_add(1, Ordering::SeqCst)),
        );
        let mut p = Publish::new(topic, QoS::AtLeastOnce, payload.to_vec());
        p.pkid = 1;
        p.retain = retain;
        let mut out = bytes::BytesMut::new();
        Packet::Publish(p).write(&mut out, 16 << 20).unwrap();
        c.write_all(&out).unwrap();
        if !try_read_until(&mut c, |p| matches!(p, Packet::PubAck(_))) {
            eprintln!("publish to {topic}: the broker closed the connection before its PUBACK (attempt {attempt}), again");
            continue;
        }
        let mut out = bytes::BytesMut::new();
        Packet::Disconnect.write(&mut out, 16).unwrap();
        if c.write_all(&out).is_ok() {
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 64];
            while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
        }
        return;
    }
    panic!("publish to {topic}: the broker closed the connection three times before its PUBACK");
}

/// A HeartbeatResponse carrying pipeline configs (name, version, detail).
pub fn configs_message(pipelines: &[(&str, i64, &str)]) -> Vec<u8> {
    let mut w = configserver::W::default();
    for (name, version, detail) in pipelines {
        let d = configserver::W::default()
            .bytes(1, name.as_bytes())
            .int(2, *version as u64)
            .bytes(3, detail.as_bytes());
        w = w.bytes(4, &d.0);
    }
    w.0
}
