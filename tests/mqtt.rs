//! The MQTT sink against a real broker: rumqttd, running inside this test process.

mod common;
use common::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every PUBLISH the broker routed to the test's subscription: (topic, payload).
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts rumqttd on 127.0.0.1:`port`, subscribed to `tailbeat/#` through an in-process link.
fn broker(port: u16) -> Received {
    let cfg: rumqttd::Config = toml::from_str(&format!(
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
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 1048576
max_inflight_count = 100
dynamic_filters = true
"#
    ))
    .unwrap();
    let mut b = rumqttd::Broker::new(cfg);
    let (mut tx, mut rx) = b.link("test").unwrap();
    std::thread::spawn(move || b.start().unwrap());
    tx.subscribe("tailbeat/#").unwrap();
    let got: Received = Default::default();
    let sink = got.clone();
    std::thread::spawn(move || loop {
        match rx.recv() {
            Ok(Some(rumqttd::Notification::Forward(f))) => {
                let topic = String::from_utf8_lossy(&f.publish.topic).into_owned();
                sink.lock()
                    .unwrap()
                    .push((topic, f.publish.payload.to_vec()));
            }
            Ok(_) => {}
            Err(_) => return,
        }
    });
    // Wait until it listens.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "rumqttd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    got
}

fn mqtt_sink(port: u16, extra: &str) -> String {
    format!("[sink]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{port}\"\n{extra}\n")
}

/// The lines in what the broker received, frames repeated (same seq) dropped.
fn lines_of(got: &Received, tag: &str) -> (Vec<u64>, usize, Vec<String>) {
    let msgs = got.lock().unwrap().clone();
    let mut seen = std::collections::HashSet::new();
    let mut nums = Vec::new();
    let mut repeats = 0;
    let mut topics = Vec::new();
    for (topic, payload) in &msgs {
        let b = tailbeat::frame::decode_batch(payload).expect("each message is one whole frame");
        if !seen.insert(b.seq) {
            repeats += 1;
            continue;
        }
        topics.push(topic.clone());
        for l in &b.lines {
            let t = std::str::from_utf8(l.text).unwrap();
            if let Some(n) = t.strip_prefix(&format!("{tag} ")).and_then(|r| r.get(..8)) {
                nums.push(n.parse().unwrap());
            }
        }
    }
    (nums, repeats, topics)
}

fn wait_for(got: &Received, tag: &str, n: usize, secs: u64) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (nums, _, _) = lines_of(got, tag);
        if nums.len() >= n || Instant::now() > deadline {
            return nums;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn frames_reach_the_broker_exactly_once_on_the_instance_topic() {
    let port = free_port();
    let got = broker(port);
    let s = Scratch::new("mqtt-basic");
    let f = s.path("logs/app.log");
    for i in 0..20_000 {
        append(&f, &line("m", i));
    }
    let cfg = s.config(
        "",
        &input("app", &f.display().to_string(), ""),
        &mqtt_sink(port, ""),
    );
    let a = Agent::start(&s, &cfg);
    let nums = wait_for(&got, "m", 20_000, 30);
    // Still two threads with the MQTT sink: no runtime of its own.
    let threads = std::fs::read_to_string(format!("/proc/{}/status", a.pid())).unwrap();
    assert!(threads.contains("Threads:\t2\n"), "{threads}");
    let log = a.stop();
    assert_exactly_once(&nums, 20_000);
    assert!(nums.windows(2).all(|w| w[0] < w[1]), "out of order");
    let (_, repeats, topics) = lines_of(&got, "m");
    assert_eq!(repeats, 0);
    assert!(
        topics.iter().all(|t| t == "tailbeat/it/frames"),
        "{topics:?}"
    );
    assert!(log.contains("mqtt: connected to 127.0.0.1"), "{log}");
}

#[test]
fn a_broker_that_is_down_gets_everything_once_it_is_up() {
    let port = free_port();
    let s = Scratch::new("mqtt-down");
    let f = s.path("logs/app.log");
    for i in 0..3_000 {
        append(&f, &line("d", i));
    }
    let cfg = s.config(
        "",
        &input("app", &f.display().to_string(), ""),
        &mqtt_sink(port, "timeout = \"1s\""),
    );
    let a = Agent::start(&s, &cfg);
    // Nobody listens: the agent spools, fails, backs off, and tries again.
    a.wait_log("retrying in", 10);
    std::thread::sleep(Duration::from_secs(2));
    for i in 3_000..6_000 {
        append(&f, &line("d", i));
    }
    let got = broker(port);
    let nums = wait_for(&got, "d", 6_000, 40);
    let log = a.stop();
    assert_exactly_once(&nums, 6_000);
    assert!(log.matches("retrying in").count() >= 2, "{log}");
}

#[test]
fn credentials_never_reach_the_log() {
    let port = free_port();
    let got = broker(port);
    let s = Scratch::new("mqtt-secret");
    let f = s.path("logs/app.log");
    append(&f, &line("c", 0));
    let secret = "s3cr3t-Pa55w0rd";
    let cfg = s.config(
        "log_level = \"trace\"",
        &input("app", &f.display().to_string(), ""),
        &mqtt_sink(port, &format!("username = \"gw\"\npassword = \"{secret}\"")),
    );
    let a = Agent::start(&s, &cfg);
    wait_for(&got, "c", 1, 10);
    // And a reload that fails validation, which prints config errors.
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("window", "windows"),
    )
    .ok();
    a.signal("HUP");
    std::thread::sleep(Duration::from_millis(300));
    let log = a.stop();
    assert!(!log.contains(secret), "the password is in the log:\n{log}");
}

#[test]
fn frames_too_big_for_the_broker_are_refused_at_config_time() {
    let s = Scratch::new("mqtt-size");
    let cfg = s.config(
        "",
        &input("app", "/var/log/x.log", ""),
        &format!(
            "[batch]\nmax_bytes = \"64KiB\"\n{}",
            mqtt_sink(1883, "max_packet_bytes = \"16KiB\"")
        ),
    );
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "sink.max_packet_bytes: 16384 is too small for frames of batch.max_bytes = 65536"
        ),
        "{err}"
    );
}
