//! `tailbeat fleet` against a real Mosquitto the tests start, with a real agent and
//! simulated ones (the simulator of `examples/fleet_sim.rs`, the same code): the snapshot
//! (`--once --json`) sees every agent, offline, stale, a late Will, event gaps and garbage;
//! a viewer started late sees the fleet from retained messages alone; the live table works
//! in a real terminal (tmux). Mosquitto, not the embedded rumqttd: retained messages and the
//! retain flag on what a new subscription gets are what these tests are about. They fail,
//! not skip, if Mosquitto or tmux is missing (`.ci/run` installs both).

mod common;
use common::broker::{self, BrokerPort};
#[path = "../examples/fleet_sim.rs"]
mod fleet_sim;

use common::*;
use fleet_sim::{state_payload, Sim, SimOptions};
use serde_json::Value;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Mosquitto (common::broker) reached through a TCP port the test holds for its whole life
/// (a port found free and bound again later is a race; see common::broker, `BrokerPort`).
/// Dropping it kills it.
struct Mosquitto {
    _broker: broker::Mosquitto,
    _held: BrokerPort,
    port: u16,
}

impl Mosquitto {
    fn start(s: &Scratch) -> Mosquitto {
        let held = BrokerPort::new();
        let broker =
            broker::Mosquitto::start(&s.path("broker"), "persistence false\n", None).behind(&held);
        Mosquitto {
            port: held.port,
            _broker: broker,
            _held: held,
        }
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

fn sim(m: &Mosquitto, n: usize, interval: Duration) -> Sim {
    Sim::new(
        SimOptions {
            broker: ([127, 0, 0, 1], m.port).into(),
            prefix: "tailbeat".into(),
            interval,
            retain_heartbeats: false,
            events_every: None,
        },
        n,
        "sim",
    )
}

/// Runs the simulated agents' heartbeats on a thread until dropped.
struct Ticking {
    sim: Arc<Mutex<Sim>>,
    stop: Arc<AtomicBool>,
}

impl Ticking {
    fn start(sim: Sim) -> Ticking {
        let sim = Arc::new(Mutex::new(sim));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (sim.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                s.lock().unwrap().tick(Instant::now()).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Ticking { sim, stop }
    }
    fn with<R>(&self, f: impl FnOnce(&mut Sim) -> R) -> R {
        f(&mut self.sim.lock().unwrap())
    }
}

impl Drop for Ticking {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Waits until the broker retains a message on `topic` that contains `what`.
fn retained(m: &Mosquitto, topic: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &m.port.to_string(), "-t", topic])
            .args(["--retained-only", "-C", "1", "-W", "1"])
            .output()
            .expect("mosquitto_sub does not run (Debian package mosquitto-clients)");
        if String::from_utf8_lossy(&out.stdout).contains(what) {
            return;
        }
        assert!(Instant::now() < deadline, "no {what:?} retained on {topic}");
    }
}

/// `tailbeat fleet ARGS` with stdout piped.
fn viewer(m: &Mosquitto, args: &[&str]) -> Child {
    Command::new(BIN)
        .args(["fleet", "--broker", &m.url()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for the viewer to exit 0 within `secs`; its JSON lines, by instance, and the
/// fleet's line.
fn snapshot(child: Child, secs: u64) -> (HashMap<String, Value>, Value, Duration) {
    let t0 = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()).unwrap());
    let out = rx
        .recv_timeout(Duration::from_secs(secs))
        .expect("the viewer did not exit")
        .unwrap();
    let took = t0.elapsed();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "fleet exited with {}: {}{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut agents = HashMap::new();
    let mut fleet = Value::Null;
    for l in stdout.lines() {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        if let Some(f) = v.get("fleet") {
            fleet = f.clone();
        } else {
            agents.insert(v["instance"].as_str().unwrap().to_string(), v);
        }
    }
    (agents, fleet, took)
}

#[test]
fn once_json_sees_every_agent_offline_stale_a_late_will_gaps_and_garbage() {
    let s = Scratch::new("fleet-once");
    let m = Mosquitto::start(&s);
    // A real agent: its sink's birth, its fleet link's heartbeats and statuses.
    let app = app_log(&s, "a", 3);
    let cfg = s.config(
        "",
        &input("app", &app.display().to_string(), ""),
        &format!(
            "[sink]\ntype = \"mqtt\"\nurl = \"{url}\"\n[fleet]\nserver = \"{url}\"\nheartbeat_interval = \"1s\"\ntags = {{ site = \"plant-7\" }}\n",
            url = m.url()
        ),
    );
    let _agent = Agent::start(&s, &cfg);
    // Five simulated ones, heartbeating every second.
    let mut sim = sim(&m, 5, Duration::from_secs(1));
    sim.connect_all().unwrap();
    // sim-3's connection breaks: the broker publishes its Will, a death of its session.
    sim.kill(3);
    retained(&m, "tailbeat/sim-3/state", "offline");
    // sim-4 hangs: its connection stays, its heartbeats stop.
    sim.silence(4);
    // Garbage, retained, on sim-2's heartbeat topic: the viewer gets it at once.
    sim.publish(2, "heartbeat", b"\xff\xfe not protobuf".to_vec(), true)
        .unwrap();
    let t = Ticking::start(sim);

    let child = viewer(&m, &["--once", "--json", "--interval", "1s", "--for", "4s"]);
    // While it watches: a late Will of an older session of sim-0 (must not make it
    // offline), and sim-1's events with three numbers missing.
    std::thread::sleep(Duration::from_millis(1500));
    t.with(|sim| {
        let a = &sim.agents[0];
        let old = state_payload(false, &a.name, 1, a.session - 1, 2);
        sim.publish(0, "state", old, false).unwrap();
        sim.event(1, "alert_raised", "latency", "p99 above 5s")
            .unwrap();
        sim.agents[1].ev_seq += 3;
        sim.event(1, "disk_full", "", "").unwrap();
    });
    let (agents, fleet, _) = snapshot(child, 20);

    let names: Vec<&String> = {
        let mut v: Vec<&String> = agents.keys().collect();
        v.sort();
        v
    };
    assert_eq!(names, ["it", "sim-0", "sim-1", "sim-2", "sim-3", "sim-4"]);
    let it = &agents["it"];
    assert_eq!(it["status"], "online", "{it}");
    assert_eq!(it["tags"]["site"], "plant-7", "{it}");
    assert_eq!(it["version"], env!("CARGO_PKG_VERSION"));
    assert!(it["heartbeat"]["seq"].as_u64().unwrap() >= 1, "{it}");
    assert!(it["backlog"]["frames"].is_u64(), "{it}");

    let s0 = &agents["sim-0"];
    assert_eq!(s0["status"], "online", "a late Will changed it: {s0}");
    assert_eq!(s0["late_deaths"], 1, "{s0}");
    assert_eq!(s0["heartbeat"]["interval_observed"], true, "{s0}");
    assert_eq!(s0["pipelines"][0]["name"], "app", "{s0}");
    assert_eq!(s0["pipelines"][0]["status"], "APPLIED", "{s0}");
    assert_eq!(s0["tags"]["site"], "plant-0", "{s0}");

    let s1 = &agents["sim-1"];
    assert_eq!(s1["events"]["gaps"], 1, "{s1}");
    assert_eq!(s1["events"]["missing"], 3, "{s1}");
    assert_eq!(s1["events"]["last"]["kind"], "disk_full", "{s1}");
    let alerts: Vec<&str> = s1["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(alerts, ["latency", "disk_full"], "{s1}");

    let s2 = &agents["sim-2"];
    assert_eq!(
        (&s2["status"], &s2["garbage"]),
        (&"online".into(), &1.into()),
        "{s2}"
    );

    let s3 = &agents["sim-3"];
    assert_eq!(s3["status"], "offline", "{s3}");
    // Its death came from the broker's retained store: when it died, the viewer cannot say.
    assert_eq!(s3["since"], Value::Null, "{s3}");

    assert_eq!(agents["sim-4"]["status"], "stale", "{}", agents["sim-4"]);

    assert_eq!(fleet["agents"], 6, "{fleet}");
    assert_eq!(
        (&fleet["online"], &fleet["stale"], &fleet["offline"]),
        (&4.into(), &1.into(), &1.into()),
        "{fleet}"
    );
    assert_eq!(fleet["garbage"]["heartbeat"], 1, "{fleet}");
}

#[test]
fn a_viewer_started_late_sees_the_whole_fleet_at_once_from_retained_messages() {
    let s = Scratch::new("fleet-late");
    let m = Mosquitto::start(&s);
    let mut sim = sim(&m, 300, Duration::from_secs(3600));
    sim.connect_all().unwrap();
    for i in (0..300).step_by(30) {
        sim.kill(i);
    }
    // Nothing more is published: all the viewer can learn is what the broker retained.
    let (agents, fleet, took) = snapshot(viewer(&m, &["--once", "--json"]), 20);
    assert_eq!(agents.len(), 300, "{fleet}");
    assert_eq!(
        (&fleet["online"], &fleet["offline"]),
        (&290.into(), &10.into()),
        "{fleet}"
    );
    for (name, a) in &agents {
        assert_eq!(a["pipelines"].as_array().unwrap().len(), 2, "{name}: {a}");
        assert_eq!(a["instance_configs"][0]["name"], "base", "{name}: {a}");
        assert!(a["session"].as_u64().unwrap() > 100, "{name}: {a}");
    }
    // The snapshot waits half a second of quiet after the retained burst, no more.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    drop(sim);
}

/// A tmux server of the test's own (`-L`), killed on drop.
struct Tmux(String);

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.0])
            .args(args)
            .output()
            .expect("tmux does not run (Debian package tmux)")
    }
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "view"]).stdout)
            .into_owned()
    }
    /// Waits until the screen satisfies `ok`; returns it.
    fn wait(&self, secs: u64, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "no {what} on the screen:\n{s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

fn row<'a>(screen: &'a str, name: &str) -> Vec<&'a str> {
    screen
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(name))
        .collect()
}

#[test]
fn the_live_table_redraws_in_place_in_a_real_terminal() {
    let s = Scratch::new("fleet-tmux");
    let m = Mosquitto::start(&s);
    let mut sim = sim(&m, 4, Duration::from_secs(1));
    sim.connect_all().unwrap();
    sim.kill(3);
    let t = Ticking::start(sim);
    let tmux = Tmux(format!("tailbeat-fleet-{}", std::process::id()));
    let cmd = format!("{BIN} fleet --broker {} --interval 1s", m.url());
    let out = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "view",
        "-x",
        "200",
        "-y",
        "50",
        &cmd,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = tmux.wait(10, "the fleet", |s| {
        s.contains("4 agents: 3 online, 0 stale, 1 offline")
    });
    let lines: Vec<&str> = first.lines().collect();
    assert!(lines[0].starts_with("tailbeat fleet: 4 agents"), "{first}");
    for c in ["AGENT", "STATE", "HB", "PIPELINES", "BACKLOG", "GAPS"] {
        assert!(lines[1].contains(c), "{first}");
    }
    // Problems first: the offline agent is the first row.
    assert!(
        lines[2].starts_with("sim-3") && lines[2].contains("offline"),
        "{first}"
    );
    assert!(
        row(&first, "sim-0")[0].contains("app:v3:APPLIED"),
        "{first}"
    );
    // sim-1 hangs: three seconds later its row says stale, drawn over the old one.
    t.with(|sim| sim.silence(1));
    let later = tmux.wait(10, "sim-1 stale", |s| {
        row(s, "sim-1").first().is_some_and(|r| r.contains("stale"))
    });
    assert!(
        later.starts_with("tailbeat fleet: 4 agents: 2 online, 1 stale, 1 offline"),
        "{later}"
    );
    for n in 0..4 {
        assert_eq!(row(&later, &format!("sim-{n}")).len(), 1, "{later}");
    }
    // Ctrl-C ends it and gives the terminal back.
    tmux.cmd(&["send-keys", "-t", "view", "C-c"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux.cmd(&["has-session", "-t", "view"]).status.success() {
        assert!(Instant::now() < deadline, "fleet did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn piped_it_prints_a_line_per_change_and_none_for_a_heartbeat_that_changes_nothing() {
    let s = Scratch::new("fleet-piped");
    let m = Mosquitto::start(&s);
    let mut sim = sim(&m, 3, Duration::from_millis(500));
    sim.connect_all().unwrap();
    let t = Ticking::start(sim);
    let mut child = viewer(&m, &["--interval", "1s"]);
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stdout).lines() {
            if tx.send(l.unwrap()).is_err() {
                return;
            }
        }
    });
    let mut lines: Vec<String> = Vec::new();
    let mut wait_for = |what: &str, ok: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if lines.iter().any(|l| ok(l)) {
                return lines.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => lines.push(l),
                Err(_) => panic!("no line with {what}:\n{}", lines.join("\n")),
            }
        }
    };
    wait_for("3 online", &|l| {
        l.starts_with("3 agents: 3 online, 0 stale, 0 offline")
    });
    // Heartbeats every 500 ms meanwhile; then sim-2's connection breaks.
    std::thread::sleep(Duration::from_secs(2));
    t.with(|sim| sim.kill(2));
    let got = wait_for("sim-2 offline", &|l| l.starts_with("sim-2 offline"));
    wait_for("the new counts", &|l| {
        l.starts_with("3 agents: 2 online, 0 stale, 1 offline")
    });
    // sim-0 was shown when it was first seen and when its first heartbeat came (perhaps in
    // one line); the four or more heartbeats since changed nothing shown.
    let sim0 = got.iter().filter(|l| l.starts_with("sim-0 ")).count();
    assert!((1..=2).contains(&sim0), "{}", got.join("\n"));
    assert!(got
        .iter()
        .any(|l| l.starts_with("sim-0 online") && l.contains("tags site=plant-0")));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let st = wait_exit(&mut child, 10).expect("fleet did not stop on SIGTERM");
    assert!(st.success(), "{st}");
}
