//! Fleet pipelines of their own (a pipeline config with `[batch]`, `[spool]` or `[sink]`):
//! their own frames, spool and sink beside the local file's, changed and removed in place,
//! surviving kill -9, delivering their backlog after removal. Real peers on loopback: the
//! ConfigServer test double and, for the HTTP sink, the test HTTP server.

mod common;
use common::configserver::*;
use common::http::{HttpServer, Reply, Req};
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A pipeline tailing `logs/{file}` from its head, with `tables` after it.
fn own(s: &Scratch, file: &str, tables: &str) -> String {
    format!("{}{tables}", pipeline(s, file))
}

fn file_sink(p: &std::path::Path) -> String {
    format!(
        "[sink]\ntype = \"file\"\npath = \"{}\"\nfsync = false\n",
        p.display()
    )
}

/// Frames' numbers in a sink file: each frame's seq once, in order.
fn seqs(got: &[Got]) -> Vec<u64> {
    let mut v: Vec<u64> = got.iter().map(|g| g.seq).collect();
    v.dedup();
    v
}

#[test]
fn a_pipeline_with_its_own_sink_runs_beside_the_local_one_and_changes_in_place() {
    let s = Scratch::new("pipe-own");
    let cs = ConfigServer::start();
    let (m1, m2) = (s.path("m1.tbf"), s.path("m2.tbf"));
    let m_log = s.path("logs/m.log");
    // Version `v` of pipeline "metrics": m.log, frames of at most `max_lines`, into `out`.
    let metrics = |v: i64, max_lines: u32, out: &std::path::Path| {
        let batch = format!("[batch]\nmax_lines = {max_lines}\nlinger = \"50ms\"\n");
        cs.serve_pipeline("metrics", v, &own(&s, "m.log", &(batch + &file_sink(out))));
    };
    metrics(1, 5, &m1);
    write_lines(&m_log, "m", 0, 50);
    write_lines(&s.path("logs/app.log"), "a", 0, 20);
    let cfg = fleet_config(&s, &cs.url(), "heartbeat_interval = \"1s\"", "");
    let agent = Agent::start(&s, &cfg);
    cs.wait_report("metrics", 1, APPLIED, 10)
        .expect("v1 applied");

    // Its lines go to its own sink, in frames of its own: at most 5 lines (its [batch]),
    // numbered 1, 2, 3... under the stream id `it/metrics`.
    let got = wait_until(&m1, 10, |g| numbers(g, "m").len() >= 50);
    assert_exactly_once(&numbers(&got, "m"), 50);
    assert!(
        got.iter().all(|g| g.instance == "it/metrics"),
        "{:?}",
        got[0]
    );
    let n = seqs(&got);
    assert_eq!(n, (1..=n.len() as u64).collect::<Vec<_>>());
    assert!(
        n.len() >= 10,
        "{} frames for 50 lines with max_lines = 5",
        n.len()
    );
    assert!(s.path("data/pipelines/metrics/spool").is_dir());
    // The local pipeline is untouched: its lines, its sink, its numbering.
    let local = wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "a").len() >= 20);
    assert_exactly_once(&numbers(&local, "a"), 20);
    assert!(
        numbers(&local, "m").is_empty(),
        "a pipeline's lines in the local sink"
    );
    assert!(local.iter().all(|g| g.instance == "it"));
    let hb = cs.wait_heartbeats(3, 10);
    assert_eq!(hb.last().unwrap().health("pipelines"), 2);

    // Version 2 moves it to another file and larger frames, without a restart: new lines
    // go there, numbered on from where version 1 stopped.
    metrics(2, 100, &m2);
    cs.wait_report("metrics", 2, APPLIED, 10)
        .expect("v2 applied");
    write_lines(&m_log, "m", 50, 100);
    let got2 = wait_until(&m2, 10, |g| numbers(g, "m").len() >= 50);
    let mut all = numbers(&read_sink(&m1), "m");
    all.extend(numbers(&got2, "m"));
    assert_exactly_once(&all, 100);
    assert!(seqs(&got2)[0] > *n.last().unwrap(), "numbering restarted");

    // kill -9 and a restart: it runs again from its saved config and its own checkpoint.
    agent.kill9();
    write_lines(&m_log, "m", 100, 150);
    let agent = Agent::start(&s, &cfg);
    let got2 = wait_until(&m2, 15, |g| numbers(g, "m").len() >= 100);
    let mut all = numbers(&read_sink(&m1), "m");
    all.extend(numbers(&got2, "m"));
    assert_exactly_once(&all, 150);

    // Removed: its file is no longer read; the local pipeline goes on.
    cs.serve_pipeline("metrics", -1, "");
    cs.wait_report("metrics", -1, APPLIED, 10)
        .expect("removal applied");
    agent.wait_log("pipeline \"metrics\": backlog delivered, stopped", 10);
    write_lines(&m_log, "m", 150, 170);
    write_lines(&s.path("logs/app.log"), "a", 20, 40);
    let local = wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "a").len() >= 40);
    assert_exactly_once(&numbers(&local, "a"), 40);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(numbers(&dedup(read_sink(&m2)).0, "m").len(), 100);
    let hb = cs.wait_heartbeats(cs.heartbeats().len() + 2, 10);
    assert_eq!(hb.last().unwrap().health("pipelines"), 1);
    agent.stop();
}

#[test]
fn a_removed_pipeline_still_delivers_its_backlog() {
    let s = Scratch::new("pipe-backlog");
    let cs = ConfigServer::start();
    // The pipeline's HTTP sink refuses everything with 503 until `up`.
    let up = Arc::new(AtomicBool::new(false));
    let bodies = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let (up2, bodies2) = (up.clone(), bodies.clone());
    let sink = HttpServer::start(Box::new(move |r: &Req| {
        if !up2.load(Ordering::SeqCst) {
            return Reply::status(503);
        }
        let id = r
            .headers
            .get("x-tailbeat-instance")
            .cloned()
            .unwrap_or_default();
        assert_eq!(id, "it/web", "X-Tailbeat-Instance");
        bodies2.lock().unwrap().push(r.body.clone());
        Reply::status(204)
    }));
    let w_log = s.path("logs/w.log");
    cs.serve_pipeline(
        "web",
        1,
        &own(
            &s,
            "w.log",
            &format!(
                "[batch]\nlinger = \"50ms\"\n[sink]\ntype = \"http\"\nurl = \"{}\"\ntimeout = \"1s\"\n",
                sink.url("/ingest")
            ),
        ),
    );
    write_lines(&w_log, "w", 0, 200);
    let cfg = fleet_config(&s, &cs.url(), "heartbeat_interval = \"1s\"", "");
    let agent = Agent::start(&s, &cfg);
    cs.wait_report("web", 1, APPLIED, 10).expect("applied");
    agent.wait_log("retrying in", 10);

    // Removed while its sink is down: reading stops, but what was read is not thrown away.
    cs.serve_pipeline("web", -1, "");
    cs.wait_report("web", -1, APPLIED, 10)
        .expect("removal applied");
    agent.wait_log("pipeline \"web\": taken out of the config", 5);
    write_lines(&w_log, "w", 200, 250);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !agent.log().contains("backlog delivered"),
        "{}",
        agent.log()
    );

    up.store(true, Ordering::SeqCst);
    agent.wait_log("pipeline \"web\": backlog delivered, stopped", 40);
    let p = s.path("web.tbf");
    std::fs::write(&p, bodies.lock().unwrap().concat()).unwrap();
    let got = dedup(read_sink(&p)).0;
    assert_exactly_once(&numbers(&got, "w"), 200);
    agent.stop();
}

// The collect task learns of its life by messages (src/agent/pipe.rs, `ToCollect`): taken
// out of the config (it parks), put back while its backlog still waits (it reads again).
#[test]
fn a_pipeline_put_back_before_its_backlog_is_delivered_reads_on() {
    let s = Scratch::new("pipe-back");
    let cs = ConfigServer::start();
    // The pipeline's HTTP sink refuses everything with 503 until `up`.
    let up = Arc::new(AtomicBool::new(false));
    let bodies = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let (up2, bodies2) = (up.clone(), bodies.clone());
    let sink = HttpServer::start(Box::new(move |r: &Req| {
        if !up2.load(Ordering::SeqCst) {
            return Reply::status(503);
        }
        bodies2.lock().unwrap().push(r.body.clone());
        Reply::status(204)
    }));
    let w_log = s.path("logs/w.log");
    let tables = own(
        &s,
        "w.log",
        &format!(
            "[batch]\nlinger = \"50ms\"\n[sink]\ntype = \"http\"\nurl = \"{}\"\ntimeout = \"1s\"\n",
            sink.url("/ingest")
        ),
    );
    cs.serve_pipeline("web", 1, &tables);
    write_lines(&w_log, "w", 0, 100);
    let cfg = fleet_config(&s, &cs.url(), "heartbeat_interval = \"1s\"", "");
    let agent = Agent::start(&s, &cfg);
    cs.wait_report("web", 1, APPLIED, 10).expect("applied");
    agent.wait_log("retrying in", 10);

    cs.serve_pipeline("web", -1, "");
    cs.wait_report("web", -1, APPLIED, 10)
        .expect("removal applied");
    agent.wait_log("pipeline \"web\": taken out of the config", 5);
    // Put back while the sink is still down: the backlog is still there, and the lines
    // written from now on are read by the same pipeline.
    cs.serve_pipeline("web", 2, &tables);
    cs.wait_report("web", 2, APPLIED, 10).expect("put back");
    agent.wait_log("pipeline \"web\": back in the config, reading again", 5);
    write_lines(&w_log, "w", 100, 150);

    up.store(true, Ordering::SeqCst);
    let p = s.path("web.tbf");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let got = loop {
        std::fs::write(&p, bodies.lock().unwrap().concat()).unwrap();
        let got = dedup(read_sink(&p)).0;
        if numbers(&got, "w").len() >= 150 || std::time::Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_exactly_once(&numbers(&got, "w"), 150);
    assert!(
        !agent.log().contains("backlog delivered, stopped"),
        "{}",
        agent.log()
    );
    agent.stop();
}

#[test]
fn a_pipeline_that_cannot_open_at_start_is_reported_failed_and_the_agent_runs_without_it() {
    let s = Scratch::new("pipe-broken");
    let cs = ConfigServer::start();
    let out_dir = s.path("pipe-out");
    let sink = file_sink(&out_dir.join("m.tbf"));
    cs.serve_pipeline(
        "metrics",
        1,
        &own(&s, "m.log", &format!("[batch]\nlinger = \"50ms\"\n{sink}")),
    );
    write_lines(&s.path("logs/m.log"), "m", 0, 10);
    let cfg = fleet_config(&s, &cs.url(), "heartbeat_interval = \"1s\"", "");
    let agent = Agent::start(&s, &cfg);
    cs.wait_report("metrics", 1, APPLIED, 10).expect("applied");
    wait_until(&out_dir.join("m.tbf"), 10, |g| numbers(g, "m").len() >= 10);
    agent.stop();

    // While the agent is down its sink's directory becomes a file: the saved pipeline can
    // no longer open. The agent starts anyway, says why, and runs the rest.
    std::fs::remove_dir_all(&out_dir).unwrap();
    std::fs::write(&out_dir, "not a directory").unwrap();
    write_lines(&s.path("logs/app.log"), "a", 0, 10);
    let agent = Agent::start(&s, &cfg);
    let r = cs
        .wait_report("metrics", 1, FAILED, 10)
        .expect("reported FAILED after the restart");
    let msg = &r
        .infos
        .iter()
        .find(|i| i.name == "metrics")
        .unwrap()
        .message;
    assert!(msg.contains("pipe-out"), "FAILED message: {msg}");
    let local = wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "a").len() >= 10);
    assert_exactly_once(&numbers(&local, "a"), 10);
    let log = agent.stop();
    assert!(log.contains("pipeline \"metrics\" cannot start"), "{log}");
}

/// A sink URL that does not parse (issue 10, "URLs parsed once into the config"): the
/// version is FAILED with one line naming the line and key of the pipeline's own text, and
/// the pipeline runs on with its last good version.
#[test]
fn a_bad_sink_url_from_the_fleet_names_its_line_and_key_and_the_last_good_version_runs_on() {
    let s = Scratch::new("pipe-bad-url");
    let cs = ConfigServer::start();
    let m1 = s.path("m1.tbf");
    let m_log = s.path("logs/m.log");
    let batch = "[batch]\nlinger = \"50ms\"\n";
    cs.serve_pipeline(
        "metrics",
        1,
        &own(&s, "m.log", &(batch.to_string() + &file_sink(&m1))),
    );
    write_lines(&m_log, "m", 0, 10);
    let cfg = fleet_config(&s, &cs.url(), "heartbeat_interval = \"1s\"", "");
    let agent = Agent::start(&s, &cfg);
    cs.wait_report("metrics", 1, APPLIED, 10)
        .expect("v1 applied");
    wait_until(&m1, 10, |g| numbers(g, "m").len() >= 10);

    for (v, sink, key, what) in [
        (
            2,
            "[sink]\ntype = \"http\"\nurl = \"http://127.0.0.1:notaport/x\"\n",
            "sink.url",
            "bad port \"notaport\" in \"http://127.0.0.1:notaport/x\"",
        ),
        (
            3,
            "[sink]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1\"\n\
             failover = [\"mqtt://127.0.0.1:2\", \"http://127.0.0.1:3\"]\n",
            "sink.failover[1]",
            "expected mqtt://host:port or mqtts://host:port, got \"http://127.0.0.1:3\"",
        ),
    ] {
        let text = own(&s, "m.log", &(batch.to_string() + sink));
        let line = 1 + text
            .lines()
            .position(|l| l.starts_with(key.trim_start_matches("sink.").split('[').next().unwrap()))
            .unwrap();
        cs.serve_pipeline("metrics", v, &text);
        let r = cs
            .wait_report("metrics", v, FAILED, 10)
            .unwrap_or_else(|| panic!("v{v} reported FAILED"));
        let msg = &r
            .infos
            .iter()
            .find(|i| i.name == "metrics")
            .unwrap()
            .message;
        assert_eq!(msg, &format!("line {line}: {key}: {what}"));
    }
    // Version 1 runs on: new lines reach its sink.
    write_lines(&m_log, "m", 10, 20);
    let got = wait_until(&m1, 10, |g| numbers(g, "m").len() >= 20);
    assert_exactly_once(&numbers(&got, "m"), 20);
    agent.stop();
}
