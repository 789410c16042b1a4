//! The MQTT sink against a real broker: rumqttd, running inside this test process.

mod common;
use common::broker::*;
use common::configserver;
use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The rumqttd broker process the tests start (common::broker, [`Broker::start`]); does
/// nothing unless started that way.
#[test]
#[ignore = "the broker process of the other tests: they start it themselves"]
fn broker_process() {
    common::broker::broker_process();
}

fn mqtt_sink(port: u16, extra: &str) -> String {
    format!("[sink]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{port}\"\n{extra}\n")
}

/// The lines in what the broker received, frames repeated (same seq) dropped.
fn lines_of(got: &Received, tag: &str) -> (Vec<u64>, usize, Vec<String>) {
    let msgs = got.messages();
    let mut seen = std::collections::HashSet::new();
    let mut nums = Vec::new();
    let mut repeats = 0;
    let mut topics = Vec::new();
    let mut dec = tailbeat::frame::Decoder::default();
    for (topic, payload) in msgs.iter().filter(|(t, _)| t.ends_with("/frames")) {
        let b = dec.batch(payload).expect("each message is one whole frame");
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
    let (s, port, got, _broker) = with_broker("mqtt-basic");
    let f = app_log(&s, "m", 20_000);
    let cfg = s.config(
        "",
        &input("app", &f.display().to_string(), ""),
        &mqtt_sink(port.port, ""),
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
    let port = BrokerPort::new();
    let s = Scratch::new("mqtt-down");
    let f = app_log(&s, "d", 3_000);
    let cfg = s.config(
        "",
        &input("app", &f.display().to_string(), ""),
        &mqtt_sink(port.port, "timeout = \"1s\""),
    );
    let a = Agent::start(&s, &cfg);
    // Nobody listens: the agent spools, fails, backs off, and tries again.
    a.wait_log("retrying in", 10);
    std::thread::sleep(Duration::from_secs(2));
    for i in 3_000..6_000 {
        append(&f, &line("d", i));
    }
    let got = Received(s.path("received"));
    let _broker = Broker::start(&port, &got);
    let nums = wait_for(&got, "d", 6_000, 40);
    let log = a.stop();
    assert_exactly_once(&nums, 6_000);
    assert!(log.matches("retrying in").count() >= 2, "{log}");
}

#[test]
fn credentials_never_reach_the_log() {
    let (s, port, got, _broker) = with_broker("mqtt-secret");
    let f = s.path("logs/app.log");
    append(&f, &line("c", 0));
    let secret = "s3cr3t-Pa55w0rd";
    let cfg = s.config(
        "log_level = \"trace\"",
        &input("app", &f.display().to_string(), ""),
        &mqtt_sink(
            port.port,
            &format!("username = \"gw\"\npassword = \"{secret}\""),
        ),
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

#[test]
fn a_broker_killed_for_15_s_mid_stream_loses_nothing() {
    let port = BrokerPort::new();
    let s = Scratch::new("mqtt-outage");
    let got = Received(s.path("received"));
    let f = s.path("logs/app.log");
    let cfg = s.config(
        "",
        &input("app", &f.display().to_string(), ""),
        &mqtt_sink(port.port, "timeout = \"2s\""),
    );
    let broker = Broker::start(&port, &got);
    std::fs::write(&f, "").unwrap();
    let a = Agent::start(&s, &cfg);
    // A writer at ~2,000 lines/s for the whole test.
    let n = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let w = {
        let (n, running, f) = (n.clone(), running.clone(), f.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while running.load(std::sync::atomic::Ordering::Relaxed) {
                let chunk: String = (i..i + 20).map(|k| line("o", k)).collect();
                append(&f, &chunk);
                i += 20;
                n.store(i, std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    drop(broker); // kill -9
    std::thread::sleep(Duration::from_secs(15));
    let _broker = Broker::start(&port, &got);
    std::thread::sleep(Duration::from_secs(2));
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    w.join().unwrap();
    let total = n.load(std::sync::atomic::Ordering::Relaxed);
    let nums = wait_for(&got, "o", total as usize, 60);
    let log = a.stop();
    assert_exactly_once(&nums, total);
    assert!(nums.windows(2).all(|w| w[0] < w[1]), "out of order");
    assert!(log.contains("retrying in"), "{log}");
    eprintln!("{total} lines through a 15 s broker outage");
}

#[test]
fn run_once_waits_for_a_broker_that_comes_up_late_and_delivers_everything() {
    let port = BrokerPort::new();
    let s = Scratch::new("mqtt-once");
    let got = Received(s.path("received"));
    let f = app_log(&s, "q", 2_000);
    let cfg = s.config(
        "",
        &input("app", &f.display().to_string(), ""),
        &mqtt_sink(port.port, "timeout = \"1s\""),
    );
    let mut once = std::process::Command::new(BIN)
        .args(["run", "--once", "--config"])
        .arg(&cfg)
        .stderr(std::fs::File::create(s.path("once.log")).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        once.try_wait().unwrap().is_none(),
        "--once gave up while the broker was down"
    );
    let _broker = Broker::start(&port, &got);
    let status = wait_exit(&mut once, 60).expect("--once did not finish");
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(s.path("once.log")).unwrap()
    );
    // Exit 0 means the broker acknowledged every frame; its subscriber may still be writing.
    assert_exactly_once(&wait_for(&got, "q", 2_000, 10), 2_000);
}

#[test]
fn sigterm_stops_run_once_promptly_while_the_broker_is_down() {
    let port = BrokerPort::new();
    let s = Scratch::new("mqtt-once-term");
    let f = s.path("logs/app.log");
    append(&f, &line("t", 0));
    let cfg = s.config(
        "",
        &input("app", &f.display().to_string(), ""),
        &mqtt_sink(port.port, "timeout = \"1s\""),
    );
    let mut once = std::process::Command::new(BIN)
        .args(["run", "--once", "--config"])
        .arg(&cfg)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Long enough for the backoff to have grown to seconds.
    std::thread::sleep(Duration::from_secs(6));
    std::process::Command::new("kill")
        .args(["-TERM", &once.id().to_string()])
        .status()
        .unwrap();
    let status = wait_exit(&mut once, 3).expect("--once ignored SIGTERM during its backoff");
    assert_eq!(status.code(), Some(1), "stopped with a frame undelivered");
}

fn states(got: &Received) -> Vec<String> {
    got.messages()
        .into_iter()
        .filter(|(t, _)| t == "tailbeat/it/state")
        .map(|(_, p)| String::from_utf8(p).unwrap())
        .collect()
}

fn wait_state(got: &Received, n: usize, want: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let st = states(got);
        if st.len() >= n {
            assert!(
                st[n - 1].contains(&format!("\"state\":\"{want}\"")),
                "{st:?}"
            );
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "no state message {n} ({want}): {st:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn online_when_connected_offline_by_last_will_and_on_a_clean_stop() {
    let (s, port, got, _broker) = with_broker("mqtt-state");
    let f = s.path("logs/app.log");
    append(&f, &line("s", 0));
    let cfg = s.config(
        "",
        &input("app", &f.display().to_string(), ""),
        &mqtt_sink(port.port, ""),
    );
    let a = Agent::start(&s, &cfg);
    let st = wait_state(&got, 1, "online");
    assert!(
        st[0].starts_with("{\"state\":\"online\",\"instance\":\"it\",\"version\":\""),
        "{}",
        st[0]
    );
    // kill -9: the broker publishes the Will.
    a.kill9();
    wait_state(&got, 2, "offline");
    // Back, then a clean stop: the agent says offline itself.
    let a = Agent::start(&s, &cfg);
    append(&f, &line("s", 1));
    wait_state(&got, 3, "online");
    a.stop();
    wait_state(&got, 4, "offline");
}

#[test]
fn a_dead_broker_fails_over_to_the_next_and_back_when_it_returns() {
    let (s, port_a, got_a, broker_a) = with_broker("mqtt-failover");
    let port_b = BrokerPort::new();
    let got_b = Received(s.path("received-b"));
    let _broker_b = Broker::start(&port_b, &got_b);
    let f = s.path("logs/app.log");
    let cfg = s.config(
        "",
        &input("app", &f.display().to_string(), ""),
        &format!(
            "[batch]\nlinger = \"50ms\"\n{}",
            mqtt_sink(
                port_a.port,
                &format!(
                    "failover = [\"mqtt://127.0.0.1:{port_b}\"]\nfailback_after = \"2s\"\ntimeout = \"1s\""
                )
            )
        ),
    );
    let a = Agent::start(&s, &cfg);
    let mut n = 0;
    let mut write = |count: u64| {
        for _ in 0..count {
            append(&f, &line("f", n));
            n += 1;
        }
    };
    write(100);
    assert_eq!(wait_for(&got_a, "f", 100, 10).len(), 100);
    // A dies: after three failed connects the agent moves to B.
    drop(broker_a);
    write(100);
    a.wait_log("moving to mqtt://127.0.0.1", 20);
    assert!(wait_for(&got_b, "f", 100, 20).len() >= 100);
    // A returns: within failback_after the agent goes back to it.
    let _broker_a = Broker::start(&port_a, &got_a);
    std::thread::sleep(Duration::from_secs(3));
    write(100);
    a.wait_log("is back; leaving the failover broker", 10);
    let (on_a, _, _) = lines_of(&got_a, "f");
    let deadline = Instant::now() + Duration::from_secs(10);
    while lines_of(&got_a, "f")
        .0
        .iter()
        .filter(|&&x| x >= 200)
        .count()
        < 100
    {
        assert!(
            Instant::now() < deadline,
            "nothing new on the first broker: {on_a:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    a.stop();
    // Everything arrived somewhere, once a consumer drops repeated seqs.
    let mut all = lines_of(&got_a, "f").0;
    all.extend(lines_of(&got_b, "f").0);
    all.sort();
    all.dedup();
    assert_exactly_once(&all, 300);
}

#[test]
fn mqtts_checks_the_broker_and_presents_a_client_certificate() {
    let (s, port, got, _broker) = with_broker("mqtt-tls");
    let pki = tls::Pki::new(&s.path("pki"));
    let front = tls::TlsFront::start(&pki, port.port, true);
    let f = s.path("logs/app.log");
    let run = |name: &str, tls: String| {
        // Something new to send each time.
        append(&f, &line(name, 0));
        let cfg = s.config(
            "",
            &input(name, &f.display().to_string(), ""),
            &format!(
                "[sink]\ntype = \"mqtt\"\nurl = \"mqtts://127.0.0.1:{}\"\ntimeout = \"2s\"\nclient_id = \"{name}\"\n[sink.tls]\n{tls}\n",
                front.port
            ),
        );
        Agent::start(&s, &cfg)
    };
    let p = |p: &std::path::Path| p.display().to_string();
    // Verified both ways: delivered.
    for i in 0..500 {
        append(&f, &line("t", i));
    }
    let a = run(
        "good",
        format!(
            "ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"",
            p(&pki.ca),
            p(&pki.client_cert),
            p(&pki.client_key)
        ),
    );
    assert_eq!(wait_for(&got, "t", 500, 20).len(), 500);
    a.stop();
    // A broker certificate from a CA we do not trust: refused, and said so.
    let a = run(
        "untrusted",
        format!(
            "ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"",
            p(&pki.other_ca),
            p(&pki.client_cert),
            p(&pki.client_key)
        ),
    );
    a.wait_log("retrying in", 10);
    let log = a.stop();
    assert!(
        log.contains("UnknownIssuer") || log.contains("certificate"),
        "{log}"
    );
    // No client certificate for a broker that wants one: refused.
    let a = run("anonymous", format!("ca_file = \"{}\"", p(&pki.ca)));
    a.wait_log("retrying in", 10);
    a.stop();
    // The explicit, warned switch: accepted without checking.
    let a = run(
        "insecure",
        format!(
            "insecure = true\nclient_cert = \"{}\"\nclient_key = \"{}\"",
            p(&pki.client_cert),
            p(&pki.client_key)
        ),
    );
    a.wait_log("mqtt: connected", 10);
    let log = a.stop();
    assert!(log.contains("NOT checked"), "{log}");
}

/// Every status a `status/pipeline` message on the broker reported, in arrival order.
fn statuses(got: &Received) -> Vec<configserver::Info> {
    got.messages()
        .iter()
        .filter(|(t, _)| t == "tailbeat/it/status/pipeline")
        .flat_map(|(_, b)| {
            configserver::all(&configserver::fields(b), 3)
                .iter()
                .map(|i| configserver::info(i))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn wait_status(
    got: &Received,
    name: &str,
    version: i64,
    status: u64,
    secs: u64,
) -> configserver::Info {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(i) = statuses(got)
            .into_iter()
            .find(|i| i.name == name && i.version == version && i.status == status)
        {
            return i;
        }
        assert!(
            Instant::now() < deadline,
            "no status {name} v{version} {status}; got {:?}",
            statuses(got)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_fleet_over_mqtt_heartbeats_reports_status_and_takes_retained_configs() {
    use configserver::{APPLIED, FAILED};
    let (s, port, got, broker) = with_broker("mqtt-fleet");
    let remote_log = s.path("logs/remote.log");
    for i in 0..50 {
        append(&remote_log, &line("r", i));
    }
    let detail = format!(
        "paths = [\"{}\"]\nstart_at = \"head\"\n",
        remote_log.display()
    );
    // Retained before the agent exists: it gets it when it subscribes.
    publish(
        port.port,
        "tailbeat/it/config",
        &configs_message(&[("remote", 1, &detail)]),
        true,
    );
    let app = s.path("logs/app.log");
    let cfg = s.config(
        "log_level = \"trace\"",
        &input("app", &app.display().to_string(), ""),
        &format!(
            "[batch]\nlinger = \"50ms\"\n[fleet]\nserver = \"mqtt://127.0.0.1:{port}\"\nheartbeat_interval = \"1s\"\ntags = {{ group = \"plant-7\" }}\nusername = \"fleet\"\npassword = \"fl33t-Pa55\"\n"
        ),
    );
    let a = Agent::start(&s, &cfg);
    wait_status(&got, "remote", 1, APPLIED, 10);
    // The control connection runs on the pipeline thread: still main and async-io.
    assert_eq!(a.threads(), 2);
    let sink = wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "r").len() >= 50);
    assert_exactly_once(&numbers(&sink, "r"), 50);

    // Garbage on the config topic: logged, counted, nothing changes.
    publish(
        port.port,
        "tailbeat/it/config",
        b"\xff\xff\xff not protobuf",
        false,
    );
    a.wait_log("malformed protobuf", 10);
    // A group's config, and a bad version of the agent's own.
    let grp_log = s.path("logs/grp.log");
    append(&grp_log, &line("g", 0));
    let grp = format!("paths = [\"{}\"]\nstart_at = \"head\"\n", grp_log.display());
    publish(
        port.port,
        "tailbeat/group/plant-7/config",
        &configs_message(&[("grp", 1, &grp)]),
        true,
    );
    wait_status(&got, "grp", 1, APPLIED, 10);
    publish(
        port.port,
        "tailbeat/it/config",
        &configs_message(&[("remote", 2, "paths = [\"/x\"]\nstart_at = \"middle\"\n")]),
        true,
    );
    let failed = wait_status(&got, "remote", 2, FAILED, 10);
    assert!(failed.message.contains("start_at"), "{failed:?}");
    // v1 keeps running.
    append(&remote_log, &line("r", 50));
    wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "r").len() >= 51);

    // Heartbeats: one a second, numbered 1, 2, 3, ..., the first one full, health in each.
    let heartbeats = || -> Vec<configserver::Heartbeat> {
        got.messages()
            .iter()
            .filter(|(t, _)| t == "tailbeat/it/heartbeat")
            .map(|(_, b)| configserver::Heartbeat::decode(b))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while heartbeats().len() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let hbs = heartbeats();
    assert!(hbs.len() >= 3, "{} heartbeats", hbs.len());
    for (i, h) in hbs.iter().enumerate() {
        assert_eq!(h.seq, i as u64 + 1);
        assert_eq!(h.flags == 1, i == 0, "heartbeat {}", h.seq);
        assert_eq!(h.instance_id, "it");
    }
    assert_eq!(hbs.last().unwrap().health("bad_control_messages"), 1);

    // The broker goes away and comes back: heartbeats resume, numbers without a gap.
    drop(broker);
    a.wait_log("fleet: ", 5);
    std::thread::sleep(Duration::from_secs(3));
    let before = heartbeats().len();
    let status_messages = || {
        got.messages()
            .iter()
            .filter(|(t, _)| t == "tailbeat/it/status/pipeline")
            .count()
    };
    let status_before = status_messages();
    let _broker = Broker::start(&port, &got);
    let deadline = Instant::now() + Duration::from_secs(20);
    while heartbeats().len() < before + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let seqs: Vec<u64> = heartbeats().iter().map(|h| h.seq).collect();
    assert!(
        seqs.len() >= before + 2,
        "no heartbeats after the broker came back: {seqs:?}"
    );
    // What the new broker got continues without a gap; across the kill the old broker may
    // have acknowledged a heartbeat it never forwarded, which the agent rightly counts.
    for w in seqs[before..].windows(2) {
        assert!(
            w[1] == w[0] + 1,
            "gap or step back after the restart: {seqs:?}"
        );
    }
    // The new broker lost the retained statuses with the old one: the agent says them again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_messages() <= status_before {
        assert!(
            Instant::now() < deadline,
            "statuses not published again after a reconnect"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = a.stop();
    // The agent's own account: every acknowledged heartbeat is the previous one plus one.
    let acked: Vec<u64> = log
        .lines()
        .filter_map(|l| l.split("fleet: heartbeat ").nth(1))
        .filter_map(|r| r.strip_suffix(" acknowledged"))
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(acked.len() >= 4, "{acked:?}");
    for (i, n) in acked.iter().enumerate() {
        assert_eq!(*n, i as u64 + 1, "{acked:?}");
    }
    assert!(
        log.contains("reconnecting") || log.contains("retrying in"),
        "{log}"
    );
    assert!(
        log.contains("fleet: connected to mqtt://127.0.0.1"),
        "{log}"
    );
}

/// Frames on `topic`: (stream id, seq, lines of `tag`), repeats (same seq) dropped.
fn frames_on(got: &Received, topic: &str, tag: &str) -> Vec<(String, u64, Vec<u64>)> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut dec = tailbeat::frame::Decoder::default();
    for (_, payload) in got.messages().iter().filter(|(t, _)| t == topic) {
        let b = dec.batch(payload).expect("one whole frame");
        if seen.insert(b.seq) {
            out.push((b.instance.to_string(), b.seq, numbers_in(&b, tag)));
        }
    }
    out
}

fn numbers_in(b: &tailbeat::frame::Batch, tag: &str) -> Vec<u64> {
    b.lines
        .iter()
        .filter_map(|l| {
            let t = std::str::from_utf8(l.text).ok()?;
            t.strip_prefix(&format!("{tag} "))?.get(..8)?.parse().ok()
        })
        .collect()
}

#[test]
fn a_fleet_pipeline_with_its_own_batching_gets_a_connection_and_topics_of_its_own() {
    let (s, port, got, _broker) = with_broker("mqtt-pipeline");
    let m_log = s.path("logs/m.log");
    for i in 0..300 {
        append(&m_log, &line("m", i));
    }
    let app = s.path("logs/app.log");
    for i in 0..300 {
        append(&app, &line("a", i));
    }
    // Its own [batch], the local [sink]: a second MQTT connection, under its own client id.
    let detail = format!(
        "paths = [\"{}\"]\nstart_at = \"head\"\n[batch]\nmax_lines = 10\nlinger = \"50ms\"\n",
        m_log.display()
    );
    publish(
        port.port,
        "tailbeat/it/config",
        &configs_message(&[("metrics", 1, &detail)]),
        true,
    );
    let cfg = s.config(
        "",
        &input("app", &app.display().to_string(), ""),
        &format!(
            "{}[batch]\nlinger = \"50ms\"\n[fleet]\nserver = \"mqtt://127.0.0.1:{port}\"\nheartbeat_interval = \"1s\"\n",
            mqtt_sink(port.port, "")
        ),
    );
    let a = Agent::start(&s, &cfg);
    wait_status(&got, "metrics", 1, configserver::APPLIED, 10);
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mine, local) = loop {
        let mine = frames_on(&got, "tailbeat/it/metrics/frames", "m");
        let local = frames_on(&got, "tailbeat/it/frames", "a");
        let n = |f: &[(String, u64, Vec<u64>)]| f.iter().map(|x| x.2.len()).sum::<usize>();
        if (n(&mine) >= 300 && n(&local) >= 300) || Instant::now() > deadline {
            break (mine, local);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let nums =
        |f: &[(String, u64, Vec<u64>)]| f.iter().flat_map(|x| x.2.clone()).collect::<Vec<_>>();
    assert_exactly_once(&nums(&mine), 300);
    assert_exactly_once(&nums(&local), 300);
    assert!(mine
        .iter()
        .all(|(id, _, l)| id == "it/metrics" && l.len() <= 10));
    assert!(local.iter().all(|(id, _, _)| id == "it"));
    // Three connections (frames, the pipeline's frames, the fleet) and still two threads.
    assert_eq!(a.threads(), 2);
    let log = a.stop();
    // Two connections under one client id would have thrown each other off the broker.
    assert!(!log.contains("retrying in"), "{log}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        let st: Vec<String> = got
            .messages()
            .into_iter()
            .filter(|(t, _)| t == "tailbeat/it/metrics/state")
            .map(|(_, p)| String::from_utf8(p).unwrap())
            .collect();
        if st.len() >= 2 || Instant::now() > deadline {
            break st;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        st.first()
            .is_some_and(|m| m.contains("\"state\":\"online\"") && m.contains("it/metrics"))
            && st
                .last()
                .is_some_and(|m| m.contains("\"state\":\"offline\"")),
        "{st:?}"
    );
}

/// The broker's port is the test's for its whole life: between a broker's kill and its
/// restart on the same port, no other test's broker (nor any outgoing connection's source
/// port) can take it, so the agent can only ever reach this test's broker.
#[test]
fn nothing_else_can_take_the_broker_port_while_the_test_runs() {
    let port = BrokerPort::new();
    let s = Scratch::new("mqtt-port");
    let got = Received(s.path("received"));
    let broker = Broker::start(&port, &got);
    drop(broker);
    let squatter = TcpListener::bind(("127.0.0.1", port.port));
    assert!(
        squatter.is_err(),
        "port {port} was free for anyone between a broker's kill and its restart"
    );
}

/// Connections the fleet link made, by its log.
fn fleet_connects(log: &str) -> usize {
    log.matches("fleet: connected to").count()
}

/// The heartbeats the broker got from instance `it`.
fn heartbeats_of(got: &Received) -> Vec<configserver::Heartbeat> {
    got.messages()
        .iter()
        .filter(|(t, _)| t == "tailbeat/it/heartbeat")
        .map(|(_, b)| configserver::Heartbeat::decode(b))
        .collect()
}

// Issue 10, defect 8: a retained control message over the limit made the fleet link
// reconnect in a tight loop (28,491 reconnects in 15 s), heartbeats stalled, nothing counted.
#[test]
fn a_retained_control_message_over_the_limit_is_refused_once_and_heartbeats_go_on() {
    use configserver::APPLIED;
    let (s, port, got, _broker) = with_broker("mqtt-fleet-oversized");
    // A valid message, over the default limit of 4 MiB: the size alone refuses it.
    let big = configs_message(&[("big", 1, &"# padding\n".repeat(425_000))]);
    assert!(big.len() > 4 << 20);
    publish(port.port, "tailbeat/it/config", &big, true);
    let cfg = s.config(
        "",
        &input("app", &s.path("logs/app.log").display().to_string(), ""),
        &format!(
            "[batch]\nlinger = \"50ms\"\n[fleet]\nserver = \"mqtt://127.0.0.1:{port}\"\nheartbeat_interval = \"1s\"\n"
        ),
    );
    let a = Agent::start(&s, &cfg);
    a.wait_log("over fleet.max_message_bytes = 4194304; refused", 10);
    // Heartbeats go on, and the refusal is counted once per time the broker delivered it.
    let deadline = Instant::now() + Duration::from_secs(15);
    while heartbeats_of(&got).len() < 4 {
        assert!(
            Instant::now() < deadline,
            "heartbeats stalled: {} in 15 s; log:\n{}",
            heartbeats_of(&got).len(),
            a.log()
        );
        // Each look parses the 8 MiB of hex the recorder wrote for the message.
        std::thread::sleep(Duration::from_millis(250));
    }
    let hbs = heartbeats_of(&got);
    let connects = fleet_connects(&a.log());
    assert_eq!(connects, 1, "the link was not kept:\n{}", a.log());
    assert_eq!(hbs.last().unwrap().health("bad_control_messages"), 1);
    // The link still takes configs within the limit.
    let small_log = s.path("logs/small.log");
    append(&small_log, &line("s", 0));
    let small = format!(
        "paths = [\"{}\"]\nstart_at = \"head\"\n",
        small_log.display()
    );
    publish(
        port.port,
        "tailbeat/it/config",
        &configs_message(&[("small", 1, &small)]),
        false,
    );
    wait_status(&got, "small", 1, APPLIED, 10);
    let log = a.stop();
    assert_eq!(log.matches("; refused").count(), 1, "{log}");
}

/// A broker that accepts every connection, then sends a PUBLISH no MQTT client can read (its
/// topic is not UTF-8): the link is lost right after it was made, each time. Returns the
/// port and the times of the connections.
fn broker_that_breaks_every_link() -> (u16, Arc<Mutex<Vec<Instant>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let times: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let t = times.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            t.lock().unwrap().push(Instant::now());
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 4096];
            // CONNECT → CONNACK; SUBSCRIBE (0x82, length, packet id) → SUBACK for two
            // filters; then the unreadable PUBLISH.
            if c.read(&mut buf).unwrap_or(0) == 0 {
                continue;
            }
            let _ = c.write_all(&[0x20, 0x02, 0x00, 0x00]);
            let n = c.read(&mut buf).unwrap_or(0);
            if n < 4 || buf[0] != 0x82 {
                continue;
            }
            let _ = c.write_all(&[0x90, 0x04, buf[2], buf[3], 0x01, 0x01]);
            let _ = c.write_all(&[0x30, 0x07, 0x00, 0x02, 0xff, 0xfe, b'h', b'i', b'!']);
            // Held open: the agent is the one that lets go.
            while c.read(&mut buf).unwrap_or(0) > 0 {}
        }
    });
    (port, times)
}

// Issue 10, defect 8: the link reconnected at once after losing a connection it had just
// made, and a connection the broker accepted reset the backoff: a tight loop.
#[test]
fn a_fleet_link_lost_right_after_connecting_reconnects_with_backoff() {
    let (port, times) = broker_that_breaks_every_link();
    let s = Scratch::new("mqtt-fleet-backoff");
    let cfg = s.config(
        "",
        &input("app", &s.path("logs/app.log").display().to_string(), ""),
        &format!(
            "[batch]\nlinger = \"50ms\"\n[fleet]\nserver = \"mqtt://127.0.0.1:{port}\"\nheartbeat_interval = \"1s\"\ntimeout = \"1s\"\n"
        ),
    );
    let a = Agent::start(&s, &cfg);
    a.wait_log("fleet: connected to", 10);
    let first = times.lock().unwrap()[0];
    // Backoff from 0.5 s doubling, jittered to [d/2, d]: the first four waits add up to at
    // least 3.75 s, so the first 4 s see at most 5 connections (the loop made thousands).
    std::thread::sleep(Duration::from_secs(4).saturating_sub(first.elapsed()));
    let within = |secs: u64| {
        times
            .lock()
            .unwrap()
            .iter()
            .filter(|t| t.duration_since(first) < Duration::from_secs(secs))
            .count()
    };
    let n = within(4);
    let log = a.stop();
    assert!((2..=5).contains(&n), "{n} connections in 4 s:\n{log}");
    assert!(log.contains("bad packet from the broker"), "{log}");
}

/// Resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    proc_status_kb(pid, "VmRSS:") * 1024
}

/// A `kB` figure of /proc/`pid`/status.
fn proc_status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

// Issue 10, defect 8: a valid 3 MiB control message left the agent at 9.7 MiB of RSS for good.
#[test]
fn a_large_valid_control_message_is_applied_and_its_memory_given_back() {
    let (s, port, _got, _broker) = with_broker("mqtt-fleet-large");
    let cfg = s.config(
        "",
        &input("app", &s.path("logs/app.log").display().to_string(), ""),
        &format!(
            "[batch]\nlinger = \"50ms\"\n[fleet]\nserver = \"mqtt://127.0.0.1:{port}\"\nheartbeat_interval = \"1s\"\n"
        ),
    );
    let a = Agent::start(&s, &cfg);
    a.wait_log("fleet: connected to", 10);
    let detail = format!(
        "paths = [\"{}\"]\nstart_at = \"head\"\n",
        s.path("logs/extra.log").display()
    );
    // The same config path warmed up by a small message, so that the baseline already
    // holds what applying a config keeps.
    publish(
        port.port,
        "tailbeat/it/config",
        &configs_message(&[("extra", 1, &detail)]),
        false,
    );
    a.wait_log("config \"extra\" version 1 applied", 10);
    std::thread::sleep(Duration::from_millis(500));
    let baseline = rss(a.pid());
    // 3 MiB, valid: version 2 of the same config, and 3 MiB in the response's `opaque`
    // (field 8), which tailbeat reads past. The config is kept; the 3 MiB must not be.
    let mut big = configs_message(&[("extra", 2, &detail)]);
    big.extend(configserver::W::default().bytes(8, &vec![b'x'; 3 << 20]).0);
    publish(port.port, "tailbeat/it/config", &big, false);
    a.wait_log("config \"extra\" version 2 applied", 20);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut now = rss(a.pid());
    while now > baseline + (1 << 20) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        now = rss(a.pid());
    }
    // The message was held (the peak shows it), then let go.
    let peak = proc_status_kb(a.pid(), "VmHWM:") * 1024;
    eprintln!(
        "RSS: {} KiB before, {} KiB after, {} KiB at the peak",
        baseline >> 10,
        now >> 10,
        peak >> 10
    );
    assert!(
        peak >= baseline + (2 << 20),
        "the 3 MiB message was never held"
    );
    assert!(
        now <= baseline + (1 << 20),
        "RSS {} KiB after a 3 MiB message, {} KiB before",
        now >> 10,
        baseline >> 10
    );
    a.stop();
}

/// The statuses each `status/pipeline` message on the broker carried, message by message.
fn status_messages(got: &Received) -> Vec<Vec<configserver::Info>> {
    got.messages()
        .iter()
        .filter(|(t, _)| t == "tailbeat/it/status/pipeline")
        .map(|(_, b)| {
            configserver::all(&configserver::fields(b), 3)
                .iter()
                .map(|i| configserver::info(i))
                .collect()
        })
        .collect()
}

// Issue 10, defect 6 over MQTT: a config removed with version −1 stayed in the status list
// for ever; the HTTP client already let it go once the server had been told (`Remote`).
#[test]
fn a_config_removed_with_version_minus_one_leaves_the_status_list_once_reported() {
    use configserver::APPLIED;
    let (s, port, got, _broker) = with_broker("mqtt-fleet-removed");
    let logs: Vec<_> = ["gone", "other"]
        .iter()
        .map(|n| {
            let p = s.path(&format!("logs/{n}.log"));
            append(&p, &line(n, 0));
            format!("paths = [\"{}\"]\nstart_at = \"head\"\n", p.display())
        })
        .collect();
    let cfg = s.config(
        "",
        &input("app", &s.path("logs/app.log").display().to_string(), ""),
        &format!(
            "[batch]\nlinger = \"50ms\"\n[fleet]\nserver = \"mqtt://127.0.0.1:{port}\"\nheartbeat_interval = \"1s\"\n"
        ),
    );
    let a = Agent::start(&s, &cfg);
    a.wait_log("fleet: connected to", 10);
    let topic = "tailbeat/it/config";
    publish(
        port.port,
        topic,
        &configs_message(&[("gone", 1, &logs[0])]),
        false,
    );
    wait_status(&got, "gone", 1, APPLIED, 10);
    publish(
        port.port,
        topic,
        &configs_message(&[("gone", -1, "")]),
        false,
    );
    wait_status(&got, "gone", -1, APPLIED, 10);
    // The next change is reported without the deletion the broker already has.
    publish(
        port.port,
        topic,
        &configs_message(&[("other", 1, &logs[1])]),
        false,
    );
    wait_status(&got, "other", 1, APPLIED, 10);
    let msgs = status_messages(&got);
    let last = msgs.last().unwrap();
    assert!(
        last.iter().all(|i| i.name != "gone"),
        "still reported after its removal was: {last:?}\nall: {msgs:?}"
    );
    a.stop();
}

/// A broker that accepts one subscription filter and refuses the next (SUBACK 0x01, 0x80, as
/// a broker with an ACL does), then acknowledges what is published and answers pings.
fn broker_that_refuses_one_subscription() -> u16 {
    use rumqttc::mqttbytes::v4::SubscribeReasonCode as R;
    use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet, PubAck, SubAck};
    use rumqttc::mqttbytes::QoS;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let mut rx = bytes::BytesMut::new();
            loop {
                let answer = match Packet::read(&mut rx, 1 << 20) {
                    Ok(Packet::Connect(_)) => {
                        Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false))
                    }
                    Ok(Packet::Subscribe(s)) => {
                        let mut codes = vec![R::Failure; s.filters.len()];
                        codes[0] = R::Success(QoS::AtLeastOnce);
                        Packet::SubAck(SubAck::new(s.pkid, codes))
                    }
                    Ok(Packet::Publish(p)) if p.pkid != 0 => Packet::PubAck(PubAck::new(p.pkid)),
                    Ok(Packet::PingReq) => Packet::PingResp,
                    Ok(_) => continue,
                    Err(_) => {
                        let mut buf = [0u8; 4096];
                        match c.read(&mut buf) {
                            Ok(n) if n > 0 => rx.extend_from_slice(&buf[..n]),
                            _ => break,
                        }
                        continue;
                    }
                };
                let mut out = bytes::BytesMut::new();
                answer.write(&mut out, 1 << 20).unwrap();
                if c.write_all(&out).is_err() {
                    break;
                }
            }
        }
    });
    port
}

// A SUBACK failure code was ignored: the fleet link went on as if it got the topic's
// messages. It is reported by topic, and the link (and its heartbeats) go on.
#[test]
fn a_subscription_the_broker_refuses_is_reported_and_the_link_stays() {
    let port = broker_that_refuses_one_subscription();
    let s = Scratch::new("mqtt-fleet-suback");
    let cfg = s.config(
        "log_level = \"debug\"",
        &input("app", &s.path("logs/app.log").display().to_string(), ""),
        &format!("[fleet]\nserver = \"mqtt://127.0.0.1:{port}\"\nheartbeat_interval = \"1s\"\n"),
    );
    let a = Agent::start(&s, &cfg);
    a.wait_log(
        "fleet: the broker refused the subscription to tailbeat/it/heartbeat/response",
        10,
    );
    a.wait_log("fleet: heartbeat 3 acknowledged", 10);
    let log = a.stop();
    assert_eq!(fleet_connects(&log), 1, "{log}");
    // Once per link and topic (this broker refuses every filter but the first: the
    // heartbeat response and the two rebirth topics).
    assert_eq!(
        log.matches("refused the subscription to tailbeat/it/heartbeat/response")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches("refused the subscription").count(), 3, "{log}");
}

/// A broker that acknowledges a PUBLISH only when the next one arrives, or after `hold` of
/// silence; it counts the acknowledgements that had to wait out `hold`.
fn broker_that_acks_on_the_next_frame(hold: Duration) -> (u16, Arc<AtomicUsize>) {
    use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet, PubAck};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let late = Arc::new(AtomicUsize::new(0));
    let count = late.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            c.set_read_timeout(Some(hold)).unwrap();
            let mut rx = bytes::BytesMut::new();
            let mut held: Option<u16> = None;
            let send = |c: &mut TcpStream, p: Packet| {
                let mut out = bytes::BytesMut::new();
                p.write(&mut out, 1 << 20).unwrap();
                c.write_all(&out).is_ok()
            };
            loop {
                match Packet::read(&mut rx, 1 << 20) {
                    Ok(Packet::Connect(_)) => {
                        let ok = ConnAck::new(ConnectReturnCode::Success, false);
                        if !send(&mut c, Packet::ConnAck(ok)) {
                            break;
                        }
                    }
                    Ok(Packet::Publish(p)) if p.pkid != 0 => {
                        if let Some(id) = held.replace(p.pkid) {
                            if !send(&mut c, Packet::PubAck(PubAck::new(id))) {
                                break;
                            }
                        }
                    }
                    Ok(Packet::PingReq) => {
                        if !send(&mut c, Packet::PingResp) {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        let mut buf = [0u8; 65536];
                        match c.read(&mut buf) {
                            Ok(n) if n > 0 => rx.extend_from_slice(&buf[..n]),
                            Ok(_) => break,
                            Err(e)
                                if e.kind() == std::io::ErrorKind::WouldBlock
                                    || e.kind() == std::io::ErrorKind::TimedOut =>
                            {
                                if let Some(id) = held.take() {
                                    count.fetch_add(1, Ordering::Relaxed);
                                    if !send(&mut c, Packet::PubAck(PubAck::new(id))) {
                                        break;
                                    }
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }
            }
        }
    });
    (port, late)
}

// Issue 11: the sink sent a window of frames, then waited for every PUBACK of it before
// sending the next frame. A broker (or a link) that acknowledges one frame late then stalls
// the whole window each time; with the window sliding, one acknowledgement makes room for the
// next frame, which here releases the held one.
#[test]
fn the_window_slides_a_frame_is_sent_as_soon_as_the_oldest_is_acknowledged() {
    let (port, late) = broker_that_acks_on_the_next_frame(Duration::from_millis(700));
    let s = Scratch::new("mqtt-window");
    let f = app_log(&s, "w", 40);
    let cfg = s.config(
        "",
        &input("app", &f.display().to_string(), "[batch]\nmax_lines = 1\n"),
        &mqtt_sink(port, "window = 4\ntimeout = \"5s\""),
    );
    let mut once = std::process::Command::new(BIN)
        .args(["run", "--once", "--config"])
        .arg(&cfg)
        .stderr(std::fs::File::create(s.path("once.log")).unwrap())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut once, 60).expect("--once did not finish");
    let log = std::fs::read_to_string(s.path("once.log")).unwrap();
    assert!(status.success(), "{log}");
    // 40 frames, one each: the broker waited out its hold only for the last one (and for a
    // frame the tailer had not batched yet, at most once more), not once per window of 4.
    let late = late.load(Ordering::Relaxed);
    assert!(
        late <= 2,
        "{late} acknowledgements waited for a stalled window:\n{log}"
    );
}

/// Publishes one retained QoS 0 message as another client.
fn publish_retained(port: u16, topic: &str, payload: &[u8]) {
    use rumqttc::mqttbytes::v4::{Packet, Publish};
    use rumqttc::mqttbytes::QoS;
    let mut c = broker::client(port, "test-publisher");
    let mut p = Publish::new(topic, QoS::AtMostOnce, payload.to_vec());
    p.retain = true;
    let mut out = bytes::BytesMut::new();
    Packet::Publish(p).write(&mut out, 1 << 20).unwrap();
    Packet::Disconnect.write(&mut out, 1 << 20).unwrap();
    c.write_all(&out).unwrap();
}

/// The session number in a state message.
fn session_of(state: &str) -> u64 {
    let rest = state.split_once("\"session\":").expect("a session").1;
    rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap()]
        .parse()
        .unwrap()
}

// Issue 12: a Will the broker publishes late (for a link already replaced), a session taken
// over, or a restored retained message left `offline` on the state topic of a live agent.
// Births and deaths now carry a session number that grows with every connect and survives
// restarts; the agent watches its own state topic and answers a death of its current (or an
// older) session with `online`.
#[test]
fn a_death_of_the_current_session_is_answered_with_a_birth_and_sessions_grow() {
    let (s, port, got, _broker) = with_broker("mqtt-rebirth");
    let f = s.path("logs/app.log");
    append(&f, &line("r", 0));
    let cfg = s.config(
        "",
        &input("app", &f.display().to_string(), ""),
        &mqtt_sink(port.port, "keep_alive = \"1s\""),
    );
    let a = Agent::start(&s, &cfg);
    let st = wait_state(&got, 1, "online");
    let first = session_of(&st[0]);
    assert!(st[0].contains("\"connected_at\":"), "{st:?}");
    // A stale death of this very session, retained, from elsewhere: answered.
    let stale = st[0].replace("\"state\":\"online\"", "\"state\":\"offline\"");
    publish_retained(port.port, "tailbeat/it/state", stale.as_bytes());
    wait_state(&got, 2, "offline");
    let st = wait_state(&got, 3, "online");
    assert_eq!(session_of(&st[2]), first, "{st:?}");
    a.wait_log(
        &format!("says offline for session {first} or older; saying online again"),
        10,
    );
    // kill -9: the Will is this session's death. The next start has a higher number.
    a.kill9();
    let st = wait_state(&got, 4, "offline");
    assert_eq!(session_of(&st[3]), first, "{st:?}");
    let a = Agent::start(&s, &cfg);
    let st = wait_state(&got, 5, "online");
    let second = session_of(&st[4]);
    assert!(second > first, "{st:?}");
    a.stop();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let st = states(&got);
        let last = st.last().unwrap();
        if last.contains("\"state\":\"offline\"") {
            assert_eq!(session_of(last), second, "{st:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{st:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
