//! Node state over the MQTT fleet link (issue 12): state events on `P/I/events`, rebirth
//! requests, retained heartbeats, topic templates from `fleet.tags`; the real agent against
//! a real broker (rumqttd in a process of its own, or Mosquitto with
//! `TAILBEAT_TEST_BROKER=mosquitto`). The full-disk test mounts a tmpfs on `data_dir`, so it
//! needs root (CI runs as root); without it, it prints SKIPPED and why.
//!
//! The broker harness (a port held for the test's whole life, forwarding to whichever broker
//! is up) is tests/common/broker.rs, shared with tests/mqtt.rs.

mod common;
use common::broker::*;
use common::configserver;
use common::http::{HttpServer, Reply, Req};
use common::*;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The rumqttd broker process the tests start (common::broker, [`Broker::start`]); does
/// nothing unless started that way.
#[test]
#[ignore = "the broker process of the other tests: they start it themselves"]
fn broker_process() {
    common::broker::broker_process();
}

/// One event as published: the JSON, and the fields the tests look at.
#[derive(Debug, Clone)]
struct Ev {
    json: String,
    seq: u64,
    kind: String,
}

/// A number field of a flat JSON object.
fn num(json: &str, key: &str) -> Option<u64> {
    let rest = json.split_once(&format!("\"{key}\":"))?.1;
    rest[..rest.find(|c: char| !c.is_ascii_digit())?]
        .parse()
        .ok()
}

/// A string field of a flat JSON object (no escapes in the values the tests use).
fn text(json: &str, key: &str) -> Option<String> {
    let rest = json.split_once(&format!("\"{key}\":\""))?.1;
    Some(rest[..rest.find('"')?].to_string())
}

/// The events on `topic`, repeats (same seq) dropped, in arrival order.
fn events_on(got: &Received, topic: &str) -> Vec<Ev> {
    let mut seen = std::collections::HashSet::new();
    got.messages()
        .into_iter()
        .filter(|(t, _)| t == topic)
        .map(|(_, b)| {
            let json = String::from_utf8(b).unwrap();
            Ev {
                seq: num(&json, "seq").expect("a seq"),
                kind: text(&json, "kind").expect("a kind"),
                json,
            }
        })
        .filter(|e| seen.insert(e.seq))
        .collect()
}

/// Waits until `n` events are on `tailbeat/it/events`.
fn wait_events(got: &Received, n: usize, secs: u64) -> Vec<Ev> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let ev = events_on(got, "tailbeat/it/events");
        if ev.len() >= n {
            return ev;
        }
        assert!(
            Instant::now() < deadline,
            "{} events of {n}: {ev:#?}",
            ev.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until an event of `kind` is on `tailbeat/it/events`, and returns the first.
fn wait_kind(got: &Received, kind: &str, secs: u64) -> Ev {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let ev = events_on(got, "tailbeat/it/events");
        if let Some(e) = ev.iter().find(|e| e.kind == kind) {
            return e.clone();
        }
        assert!(Instant::now() < deadline, "no {kind}: {ev:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn heartbeats_on(got: &Received, topic: &str) -> Vec<configserver::Heartbeat> {
    got.messages()
        .iter()
        .filter(|(t, _)| t == topic)
        .map(|(_, b)| configserver::Heartbeat::decode(b))
        .collect()
}

fn wait_heartbeats(
    got: &Received,
    topic: &str,
    n: usize,
    secs: u64,
) -> Vec<configserver::Heartbeat> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let h = heartbeats_on(got, topic);
        if h.len() >= n {
            return h;
        }
        assert!(Instant::now() < deadline, "{} heartbeats of {n}", h.len());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn fleet(port: u16, extra: &str) -> String {
    format!("[fleet]\nserver = \"mqtt://127.0.0.1:{port}\"\n{extra}\n")
}

fn mqtt_sink(port: u16) -> String {
    format!("[sink]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{port}\"\n")
}

// A config that fails and one that applies are events, in order, numbered one after the
// other; while the broker is down the events wait, the same thing's states coalesce to the
// latest (and say how many they replaced), and when it is back they come in order with the
// numbers going on; after a kill -9 the numbers go on from above the last.
#[test]
fn config_spool_and_restart_events_arrive_in_order_coalesced_with_numbers_that_go_on() {
    let (s, port, got, broker) = with_broker("events-order");
    let app = s.path("logs/app.log");
    append(&app, &line("a", 0));
    let remote = s.path("logs/remote.log");
    append(&remote, &line("r", 0));
    let config = |threshold: &str| {
        s.config(
            "log_level = \"debug\"",
            &input("app", &app.display().to_string(), ""),
            &format!(
                "[batch]\nlinger = \"50ms\"\n{}{}",
                mqtt_sink(port.port),
                fleet(
                    port.port,
                    &format!("heartbeat_interval = \"1s\"\nspool_high_bytes = \"{threshold}\"\n")
                )
            ),
        )
    };
    let cfg = config("1GiB");
    let a = Agent::start(&s, &cfg);
    a.wait_log("fleet: connected to", 10);
    publish(
        port.port,
        "tailbeat/it/config",
        &configs_message(&[("app2", 1, "paths = [\"/x\"]\nstart_at = \"middle\"\n")]),
        false,
    );
    wait_events(&got, 1, 10);
    let good = format!("paths = [\"{}\"]\nstart_at = \"head\"\n", remote.display());
    publish(
        port.port,
        "tailbeat/it/config",
        &configs_message(&[("app2", 2, &good)]),
        false,
    );
    let ev = wait_events(&got, 3, 10);
    let kinds: Vec<&str> = ev.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["config_failed", "config_applied", "pipeline_added"],
        "{ev:#?}"
    );
    assert!(
        ev[0].json.starts_with("{\"instance\":\"it\",\"seq\":")
            && ev[0]
                .json
                .contains("\"name\":\"app2\",\"version\":1,\"message\":\"")
            && ev[0].json.contains("start_at"),
        "{}",
        ev[0].json
    );
    assert!(num(&ev[0].json, "at").unwrap() > 1_700_000_000);
    assert!(
        ev[1].json.contains("\"name\":\"app2\",\"version\":2") && !ev[1].json.contains("message"),
        "{}",
        ev[1].json
    );
    let first = ev[0].seq;
    assert_eq!(
        ev.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [first, first + 1, first + 2]
    );
    // Version -1 takes the pipeline out: applied, and removed.
    publish(
        port.port,
        "tailbeat/it/config",
        &configs_message(&[("app2", -1, "")]),
        false,
    );
    let ev = wait_events(&got, 5, 10);
    assert_eq!(
        (ev[3].kind.as_str(), ev[4].kind.as_str(), ev[4].seq),
        ("config_applied", "pipeline_removed", first + 4),
        "{ev:#?}"
    );
    assert!(ev[3].json.contains("\"version\":-1"), "{}", ev[3].json);

    // The broker goes away; lines pile up in the spool; the spool's threshold goes under
    // them, over them, under them again (each sampled: the reload wakes the link).
    drop(broker);
    a.wait_log("fleet: ", 5);
    for i in 1..=100 {
        append(&app, &line("a", i));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.log().matches("; spool ").count() == 0 || stat(&a.log(), "; spool ", "bytes") < 1024 {
        assert!(Instant::now() < deadline, "{}", a.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    for (threshold, what, n) in [
        ("1KiB", "event spool_high", 1),
        ("1GiB", "event spool_ok", 1),
        ("1KiB", "event spool_high", 2),
    ] {
        config(threshold);
        a.signal("HUP");
        let deadline = Instant::now() + Duration::from_secs(10);
        while a.log().matches(what).count() < n {
            assert!(Instant::now() < deadline, "no {what}: {}", a.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _broker = Broker::start(&port, &got);
    let ev = wait_events(&got, 6, 30);
    // One event for the spool's three changes: the latest state, saying how many it
    // replaced. (If the sink got its connection back first and emptied the spool, the fleet
    // link's first look already saw it under: then the latest is `spool_ok`, over three.)
    let replaced = match ev[5].kind.as_str() {
        "spool_high" => 2,
        "spool_ok" => 3,
        _ => panic!("{ev:#?}"),
    };
    assert_eq!(ev[5].seq, first + 5, "{ev:#?}");
    assert_eq!(
        num(&ev[5].json, "coalesced"),
        Some(replaced),
        "{}",
        ev[5].json
    );

    // kill -9, and a new config: its event is numbered above every one before.
    a.kill9();
    let a = Agent::start(&s, &config("1GiB"));
    a.wait_log("fleet: connected to", 10);
    let before = events_on(&got, "tailbeat/it/events");
    let last = before.iter().map(|e| e.seq).max().unwrap();
    publish(
        port.port,
        "tailbeat/it/config",
        &configs_message(&[("app2", 3, "paths = [\"/y\"]\nstart_at = \"nowhere\"\n")]),
        false,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let ev = events_on(&got, "tailbeat/it/events");
        if let Some(e) = ev.iter().find(|e| e.json.contains("\"version\":3")) {
            break e.clone();
        }
        assert!(Instant::now() < deadline, "{ev:#?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(after.kind, "config_failed");
    assert!(after.seq > last, "{after:?} after {last}");
    // A clean stop keeps the exact number: the next start goes on without a gap.
    a.stop();
    let a = Agent::start(&s, &config("1GiB"));
    a.wait_log("fleet: connected to", 10);
    publish(
        port.port,
        "tailbeat/it/config",
        &configs_message(&[("app2", 4, "paths = [\"/z\"]\nstart_at = \"nowhere\"\n")]),
        false,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ev = events_on(&got, "tailbeat/it/events");
        if let Some(e) = ev.iter().find(|e| e.json.contains("\"version\":4")) {
            assert_eq!(e.seq, after.seq + 1, "{ev:#?}");
            break;
        }
        assert!(Instant::now() < deadline, "{ev:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    a.stop();
}

// A rebirth request, on the agent's topic or the fleet's, makes it say a full heartbeat and
// every status again; at most once per `fleet.rebirth_min_interval`, a new connection
// counting as one: a retained request, delivered again on every connection, does not loop.
// The heartbeat is retained: a viewer that subscribes late gets it at once.
#[test]
fn rebirth_requests_bring_a_full_heartbeat_and_statuses_and_a_retained_one_does_not_loop() {
    let (s, port, got, _broker) = with_broker("events-rebirth");
    let app = s.path("logs/app.log");
    append(&app, &line("a", 0));
    let cfg = s.config(
        "log_level = \"debug\"",
        &input("app", &app.display().to_string(), ""),
        &fleet(
            port.port,
            "heartbeat_interval = \"3600s\"\nrebirth_min_interval = \"2s\"\n",
        ),
    );
    let a = Agent::start(&s, &cfg);
    let hb = "tailbeat/it/heartbeat";
    wait_heartbeats(&got, hb, 1, 10);
    publish(
        port.port,
        "tailbeat/it/config",
        &configs_message(&[("p", 1, "paths = [\"/x\"]\nstart_at = \"middle\"\n")]),
        false,
    );
    let statuses = || {
        got.messages()
            .iter()
            .filter(|(t, _)| t == "tailbeat/it/status/pipeline")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while statuses() == 0 {
        assert!(Instant::now() < deadline, "no status");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A viewer started now gets the last heartbeat, retained.
    {
        use rumqttc::mqttbytes::v4::{Packet, Subscribe};
        use rumqttc::mqttbytes::QoS;
        let mut c = client(port.port, "late-viewer");
        let mut out = bytes::BytesMut::new();
        let mut sub = Subscribe::new("tailbeat/+/heartbeat", QoS::AtLeastOnce);
        sub.pkid = 1;
        Packet::Subscribe(sub).write(&mut out, 1 << 20).unwrap();
        c.write_all(&out).unwrap();
        let mut seen = None;
        read_until(&mut c, |p| match p {
            Packet::Publish(p) => {
                seen = Some((
                    p.topic,
                    p.retain,
                    configserver::Heartbeat::decode(&p.payload),
                ));
                true
            }
            _ => false,
        });
        let (topic, retain, h) = seen.unwrap();
        assert_eq!(
            (topic.as_str(), retain, h.instance_id.as_str()),
            (hb, true, "it")
        );
    }
    // Each request is answered once the interval since the last full state has passed.
    let mut served = 1;
    for topic in ["tailbeat/it/rebirth", "tailbeat/rebirth"] {
        std::thread::sleep(Duration::from_millis(2100));
        let st = statuses();
        publish(port.port, topic, b"", false);
        served += 1;
        let h = wait_heartbeats(&got, hb, served, 10);
        assert_eq!(h[served - 1].flags, 1, "a full heartbeat");
        let deadline = Instant::now() + Duration::from_secs(10);
        while statuses() == st {
            assert!(Instant::now() < deadline, "statuses not said again");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // A flood within the interval: one answer at most, whatever the count.
    std::thread::sleep(Duration::from_millis(2100));
    for _ in 0..20 {
        publish(port.port, "tailbeat/it/rebirth", b"now", false);
    }
    served += 1;
    wait_heartbeats(&got, hb, served, 10);
    // A retained request, then a restart: the new connection's full heartbeat is the answer,
    // and the request, delivered again on the connection, is not answered twice.
    publish(port.port, "tailbeat/rebirth", b"retained", true);
    a.stop();
    let n = heartbeats_on(&got, hb).len();
    let a = Agent::start(&s, &cfg);
    a.wait_log("fleet: connected to", 10);
    wait_heartbeats(&got, hb, n + 1, 10);
    // Three intervals: a loop would have answered at least twice more by now.
    std::thread::sleep(Duration::from_secs(6));
    let log = a.stop();
    assert_eq!(heartbeats_on(&got, hb).len(), n + 1, "{log}");
    assert!(log.contains("within fleet.rebirth_min_interval"), "{log}");
}

// `fleet.topic_prefix = "tailbeat/{region}/{type}"` and the sink's topic take the tags:
// the agent's messages come under the tags' topics, and configs there apply.
#[test]
fn a_templated_prefix_puts_the_agents_messages_under_its_tags() {
    let (s, port, got, _broker) = with_broker("events-template");
    let app = s.path("logs/app.log");
    append(&app, &line("a", 0));
    let cfg = s.config(
        "",
        &input("app", &app.display().to_string(), ""),
        &format!(
            "[batch]\nlinger = \"50ms\"\n{}topic = \"tailbeat/{{region}}/{{instance}}/frames\"\nstate_topic = \"tailbeat/{{region}}/{{instance}}/state\"\n{}",
            mqtt_sink(port.port),
            fleet(
                port.port,
                "heartbeat_interval = \"1s\"\ntopic_prefix = \"tailbeat/{region}/{type}\"\ntags = { region = \"eu-west\", type = \"gw\" }\n"
            )
        ),
    );
    let a = Agent::start(&s, &cfg);
    wait_heartbeats(&got, "tailbeat/eu-west/gw/it/heartbeat", 1, 10);
    publish(
        port.port,
        "tailbeat/eu-west/gw/it/config",
        &configs_message(&[("p", 1, "paths = [\"/x\"]\nstart_at = \"middle\"\n")]),
        false,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ev = events_on(&got, "tailbeat/eu-west/gw/it/events");
        let status = got
            .messages()
            .iter()
            .any(|(t, _)| t == "tailbeat/eu-west/gw/it/status/pipeline");
        if !ev.is_empty() && status {
            assert_eq!(ev[0].kind, "config_failed");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{:?}",
            got.messages().iter().map(|m| &m.0).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got
        .messages()
        .iter()
        .any(|(t, _)| t == "tailbeat/eu-west/it/frames")
        || !got
            .messages()
            .iter()
            .any(|(t, _)| t == "tailbeat/eu-west/it/state")
    {
        assert!(
            Instant::now() < deadline,
            "no frames or birth under the region"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    a.stop();
    // Nothing under the untemplated names.
    assert!(!got
        .messages()
        .iter()
        .any(|(t, _)| t.starts_with("tailbeat/it/") || t.contains('{')));
}

// An unknown tag in a template is a config error naming the key and its line.
#[test]
fn an_unknown_tag_in_a_topic_template_is_refused_with_its_key_and_line() {
    let s = Scratch::new("events-template-bad");
    let cfg = s.config(
        "",
        &input("app", "/nonexistent/*.log", ""),
        "[fleet]\nserver = \"mqtt://127.0.0.1:1\"\ntopic_prefix = \"tailbeat/{region}\"\ntags = { regoin = \"eu\" }\n",
    );
    let stderr = s.path("stderr");
    let mut child = std::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&cfg)
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    // A build that took the template for a topic name would run on: killed here.
    let st = wait_exit(&mut child, 10);
    let _ = child.kill();
    let err = std::fs::read_to_string(&stderr).unwrap();
    assert_eq!(st.and_then(|s| s.code()), Some(2), "{err}");
    let line = std::fs::read_to_string(&cfg)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("topic_prefix"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!(
            "tailbeat.toml:{line}: fleet.topic_prefix: {{region}} names no tag in fleet.tags (it has: regoin)"
        )),
        "{err}"
    );
}

// An alert of [alerts] raised and then cleared is an alert_raised and an alert_cleared event,
// named after the alert, with the figure and its threshold: the sink refuses frames until the
// backlog passes 1 KiB, then takes them, and the backlog drains.
#[test]
fn an_alert_raised_and_cleared_is_two_state_events_named_after_it() {
    let (s, port, got, _broker) = with_broker("events-alert");
    let down = Arc::new(AtomicBool::new(true));
    let d = down.clone();
    let sink = HttpServer::start(Box::new(move |_: &Req| {
        if d.load(Ordering::SeqCst) {
            Reply::status(503)
        } else {
            Reply::status(204)
        }
    }));
    let app = s.path("logs/app.log");
    let cfg = s.config(
        "",
        &input("app", &app.display().to_string(), ""),
        &format!(
            "[batch]\nlinger = \"50ms\"\n[sink]\ntype = \"http\"\nurl = \"{}\"\n{}\
             [alerts]\nbacklog_bytes = \"1KiB\"\nhold = \"1s\"\n",
            sink.url("/ingest"),
            fleet(port.port, "heartbeat_interval = \"1s\"\n")
        ),
    );
    let a = Agent::start(&s, &cfg);
    for n in 0..400 {
        append(&app, &line("a", n));
    }
    let raised = wait_kind(&got, "alert_raised", 20).json;
    assert_eq!(
        text(&raised, "name").as_deref(),
        Some("backlog_bytes"),
        "{raised}"
    );
    assert!(
        text(&raised, "message").is_some_and(|m| m.ends_with("bytes (threshold 1024 bytes)")),
        "{raised}"
    );
    down.store(false, Ordering::SeqCst);
    let cleared = wait_kind(&got, "alert_cleared", 30);
    assert_eq!(
        text(&cleared.json, "name").as_deref(),
        Some("backlog_bytes")
    );
    let raised_seq = num(&raised, "seq").unwrap();
    assert!(cleared.seq > raised_seq, "{raised} then {}", cleared.json);
    a.stop();
}

// The MQTT sink answers a rebirth request with its birth too, on its own connection, at its
// next read from the broker (at the latest after its keep_alive): once per
// fleet.rebirth_min_interval, the birth it made on connecting counting as one.
#[test]
fn a_rebirth_request_brings_the_sinks_birth_again_at_most_once_per_interval() {
    let (s, port, got, _broker) = with_broker("events-sink-rebirth");
    let app = s.path("logs/app.log");
    append(&app, &line("a", 0));
    let cfg = s.config(
        "",
        &input("app", &app.display().to_string(), ""),
        &format!(
            "{}keep_alive = \"1s\"\n{}",
            mqtt_sink(port.port),
            fleet(
                port.port,
                "heartbeat_interval = \"3600s\"\nrebirth_min_interval = \"3s\"\n"
            )
        ),
    );
    let a = Agent::start(&s, &cfg);
    let births = || {
        got.messages()
            .iter()
            .filter(|(t, b)| {
                t == "tailbeat/it/state" && String::from_utf8_lossy(b).contains("\"online\"")
            })
            .count()
    };
    let wait_births = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while births() < n {
            assert!(Instant::now() < deadline, "{} births of {n}", births());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_births(1);
    let born = Instant::now();
    // Within the interval of the connect's birth (read within the sink's 1 s keep-alive):
    // not answered.
    publish(port.port, "tailbeat/it/rebirth", b"", false);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        births(),
        1,
        "a request within the interval of the last birth"
    );
    // Past it: answered.
    std::thread::sleep(Duration::from_millis(3300).saturating_sub(born.elapsed()));
    publish(port.port, "tailbeat/rebirth", b"", false);
    wait_births(2);
    // Twenty at once: one birth.
    for _ in 0..20 {
        publish(port.port, "tailbeat/it/rebirth", b"", false);
    }
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(births(), 2, "twenty requests inside one interval");
    a.stop();
}

// The disk under data_dir fills up for real (a small tmpfs, filled by a file of someone
// else's) while lines come: reading pauses, and the agent says `disk_full` on its events
// topic; the file goes, reading resumes, and it says `disk_ok`, numbered right after. Needs
// root to mount the tmpfs (CI runs as root): skipped, saying so, otherwise.
#[test]
fn a_disk_that_fills_up_and_is_freed_is_a_disk_full_then_a_disk_ok_event() {
    if !common::disk::is_root() {
        eprintln!("SKIPPED: mounting a tmpfs to fill a real disk needs root");
        return;
    }
    let (s, port, got, _broker) = with_broker("events-disk");
    let data = s.path("data");
    let _fs = common::disk::Tmpfs::mount(&data, "1m");
    let app = s.path("logs/app.log");
    append(&app, &line("d", 0));
    let cfg = s.config(
        "",
        &input("app", &app.display().to_string(), ""),
        &format!(
            "[batch]\nlinger = \"50ms\"\n{}",
            fleet(port.port, "heartbeat_interval = \"1s\"\n")
        ),
    );
    let a = Agent::start(&s, &cfg);
    a.wait_log("fleet: connected to", 10);
    wait_lines(&s.path("out.tbf"), 1, 10);
    let filler = common::disk::fill(&data, 4096);
    for n in 1..=200 {
        append(&app, &line("d", n));
    }
    a.wait_log("reading paused", 30);
    let full = wait_kind(&got, "disk_full", 10);
    assert!(
        text(&full.json, "message").is_some_and(|m| m.contains("disk under data_dir is full")),
        "{}",
        full.json
    );
    std::fs::remove_file(&filler).unwrap();
    let ok = wait_kind(&got, "disk_ok", 20);
    assert_eq!(ok.seq, full.seq + 1, "{} then {}", full.json, ok.json);
    let got_lines = wait_lines(&s.path("out.tbf"), 201, 20);
    assert_exactly_once(&numbers(&got_lines, "d"), 201);
    a.stop();
}
