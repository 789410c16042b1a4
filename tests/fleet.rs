//! The control plane against a ConfigServer test double on loopback: heartbeats, config
//! status on its own endpoints (and in the heartbeat for servers without them), remote
//! pipeline and instance configs, restarts.

mod common;
use common::configserver::*;
use common::*;
use std::time::Duration;

#[test]
fn a_config_from_the_server_is_reported_applied_within_1s_and_runs() {
    let s = Scratch::new("fleet-latency");
    let cs = ConfigServer::start();
    cs.serve_pipeline("remote", 1, &pipeline(&s, "remote.log"));
    write_lines(&s.path("logs/remote.log"), "r", 0, 100);
    let cfg = fleet_config(&s, &cs.url(), "heartbeat_interval = \"30s\"", "");
    let agent = Agent::start(&s, &cfg);
    let hb = cs.wait_heartbeats(1, 10);
    assert_eq!(hb.len(), 1, "no heartbeat");
    let report = cs
        .wait_report("remote", 1, APPLIED, 5)
        .expect("no APPLIED report");
    let latency = report.at.duration_since(hb[0].at);
    assert!(
        latency < Duration::from_secs(1),
        "APPLIED reported {latency:?} after the heartbeat"
    );
    assert_eq!(report.path, "/Agent/ReportPipelineConfig");
    assert_eq!(report.instance_id, "it");
    let got = wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "r").len() >= 100);
    assert_exactly_once(&numbers(&got, "r"), 100);
    assert_eq!(cs.heartbeats().len(), 1, "the 30 s heartbeat came early");
    agent.stop();
}

#[test]
fn a_bad_config_fails_with_its_reason_and_version_minus_1_removes_the_pipeline() {
    let s = Scratch::new("fleet-bad");
    let cs = ConfigServer::start();
    let remote_log = s.path("logs/remote.log");
    cs.serve_pipeline("remote", 1, &pipeline(&s, "remote.log"));
    write_lines(&remote_log, "r", 0, 50);
    let cfg = fleet_config(&s, &cs.url(), "heartbeat_interval = \"1s\"", "");
    let agent = Agent::start(&s, &cfg);
    cs.wait_report("remote", 1, APPLIED, 10)
        .expect("v1 applied");
    wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "r").len() >= 50);

    // Version 2 does not parse: FAILED with a message that names the key; v1 keeps running.
    cs.serve_pipeline("remote", 2, "paths = \"not-a-list\"\n");
    let r = cs.wait_report("remote", 2, FAILED, 10).expect("v2 FAILED");
    let msg = &r.infos.iter().find(|i| i.name == "remote").unwrap().message;
    assert!(msg.contains("paths"), "FAILED message: {msg}");
    write_lines(&remote_log, "r", 50, 100);
    let got = wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "r").len() >= 100);
    assert_exactly_once(&numbers(&got, "r"), 100);

    // Version −1: the pipeline goes, and its file is no longer read.
    cs.serve_pipeline("remote", -1, "");
    cs.wait_report("remote", -1, APPLIED, 10)
        .expect("deletion reported");
    agent.wait_log("input \"remote\" removed", 5);
    write_lines(&remote_log, "r", 100, 150);
    write_lines(&s.path("logs/app.log"), "a", 0, 10);
    let got = wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "a").len() >= 10);
    assert_exactly_once(&numbers(&got, "a"), 10);
    assert_eq!(
        numbers(&got, "r").len(),
        100,
        "read after its pipeline was removed"
    );
    let log = agent.stop();
    assert!(log.contains("FAILED"), "{log}");
}

#[test]
fn after_a_restart_the_last_good_configs_run_and_are_reported_again() {
    let s = Scratch::new("fleet-restart");
    let cs = ConfigServer::start();
    let remote_log = s.path("logs/remote.log");
    cs.serve_pipeline("remote", 3, &pipeline(&s, "remote.log"));
    cs.serve_instance("agent", 5, "stats_interval = \"2s\"\n");
    let cfg = fleet_config(&s, &cs.url(), "heartbeat_interval = \"1s\"", "");
    let agent = Agent::start(&s, &cfg);
    cs.wait_report("remote", 3, APPLIED, 10).expect("applied");
    cs.wait_report("agent", 5, APPLIED, 10)
        .expect("instance config applied");
    write_lines(&remote_log, "r", 0, 20);
    wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "r").len() >= 20);
    agent.stop();

    // While the agent is down the server forgets it all; the agent runs what it saved.
    write_lines(&remote_log, "r", 20, 40);
    cs.with(|c| {
        c.pipelines.clear();
        c.instances.clear();
    });
    let before = cs.reports().len();
    let agent = Agent::start(&s, &cfg);
    let got = wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "r").len() >= 40);
    assert_exactly_once(&numbers(&got, "r"), 40);
    let again = cs
        .wait_report("remote", 3, APPLIED, 10)
        .map(|_| cs.reports().len() > before);
    assert_eq!(again, Some(true), "not reported again after the restart");
    assert!(cs.wait_report("agent", 5, APPLIED, 5).is_some());
    agent.stop();
}

#[test]
fn heartbeats_count_up_by_one_retry_on_errors_and_send_full_state_when_asked() {
    let s = Scratch::new("fleet-heartbeat");
    let cs = ConfigServer::start();
    cs.with(|c| {
        // Heartbeat 2 fails three ways before it goes through; heartbeat 4 asks for full state.
        c.faults.push_back(Fault::Status(1));
        c.faults.push_back(Fault::Http(503));
        c.faults.push_back(Fault::Stall(Duration::from_secs(3)));
        c.ask_full_state_at = Some(4);
    });
    // The first heartbeat goes through: the faults start with the second.
    cs.with(|c| c.faults.push_front(Fault::Status(0)));
    let cfg = fleet_config(
        &s,
        &cs.url(),
        "heartbeat_interval = \"1s\"\ntoken = \"fleet-t0ken-xyz\"\ntags = { site = \"plant-7\", role = \"gw\" }",
        "log_level = \"trace\"",
    );
    let agent = Agent::start(&s, &cfg);
    write_lines(&s.path("logs/app.log"), "a", 0, 200);
    let hbs = cs.wait_heartbeats(10, 40);
    // main, async-io, and the ConfigServer's worker (the sink is a file).
    assert_eq!(agent.threads(), 3);
    assert!(hbs.len() >= 10, "{} heartbeats", hbs.len());
    // The same number is retried until answered, then it grows by exactly one.
    let seqs: Vec<u64> = hbs.iter().map(|h| h.seq).collect();
    assert_eq!(&seqs[..5], &[1, 2, 2, 2, 2], "{seqs:?}");
    for w in seqs.windows(2).skip(4) {
        assert_eq!(w[1], w[0] + 1, "{seqs:?}");
    }
    let first = &hbs[0];
    assert_eq!(first.flags, 1, "the first heartbeat is full");
    assert_eq!(first.agent_type, "tailbeat");
    assert_eq!(first.instance_id, "it");
    assert_eq!(first.capabilities, 3);
    assert_eq!(first.running_status, "running");
    assert!(first.startup_time > 1_700_000_000);
    assert_eq!(first.attrs["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(first.attrs["ip"], "127.0.0.1");
    assert_eq!(first.attrs["os"], "linux");
    assert!(!first.attrs["hostname"].is_empty());
    assert!(first.tags.contains(&("site".into(), "plant-7".into())));
    for h in &hbs[1..] {
        let full = h.seq == 5;
        assert_eq!(h.flags == 1, full, "heartbeat {} flags {}", h.seq, h.flags);
        // The identity is in every heartbeat (see heartbeat.rs): short ones must not erase it.
        assert_eq!(h.attrs["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(h.instance_id, "it");
        assert!(h.attrs.contains_key("health.rss_bytes"));
    }
    // Health: what was read, and the memory and disk figures, in every heartbeat.
    let last = hbs.last().unwrap();
    assert_eq!(last.health("lines_read"), 200);
    assert_eq!(last.health("lines_acked"), 200);
    assert_eq!(last.health("spool_frames"), 0);
    let rss = last.health("rss_bytes");
    assert!(rss > 100_000 && rss < 64 << 20, "rss {rss}");
    assert!(last.health("disk_free_bytes") > 0);
    assert!(last.health("latency_p99_ms") >= last.health("latency_p50_ms"));
    // The token is sent, never logged.
    let reqs = cs.http.requests();
    assert!(reqs
        .iter()
        .all(|r| r.headers["authorization"] == "Bearer fleet-t0ken-xyz"));
    let log = agent.stop();
    assert!(!log.contains("fleet-t0ken-xyz"), "the token is in the log");
    assert!(log.contains("server status 1"), "{log}");
    assert!(log.contains("HTTP 503"), "{log}");
}

#[test]
fn a_stalled_server_does_not_stall_the_data() {
    let s = Scratch::new("fleet-stall");
    let cs = ConfigServer::start();
    cs.with(|c| {
        for _ in 0..10 {
            c.faults.push_back(Fault::Stall(Duration::from_secs(5)));
        }
    });
    let cfg = fleet_config(&s, &cs.url(), "heartbeat_interval = \"1s\"", "");
    let agent = Agent::start(&s, &cfg);
    cs.wait_heartbeats(1, 10);
    write_lines(&s.path("logs/app.log"), "a", 0, 500);
    let got = wait_until(&s.path("out.tbf"), 5, |g| numbers(g, "a").len() >= 500);
    assert_exactly_once(&numbers(&got, "a"), 500);
    agent.stop();
}

#[test]
fn without_status_endpoints_statuses_ride_in_the_heartbeat() {
    let s = Scratch::new("fleet-404");
    let cs = ConfigServer::start();
    cs.with(|c| c.report_404 = true);
    cs.serve_pipeline("remote", 4, &pipeline(&s, "remote.log"));
    let cfg = fleet_config(&s, &cs.url(), "heartbeat_interval = \"3s\"", "");
    let agent = Agent::start(&s, &cfg);
    // The status goes out with the next heartbeat at once, not after the interval.
    let hbs = cs.wait_heartbeats(2, 10);
    assert!(hbs.len() >= 2);
    let carried = |h: &Heartbeat| {
        h.pipelines
            .iter()
            .any(|i| i.name == "remote" && i.version == 4 && i.status == APPLIED)
    };
    assert!(carried(&hbs[1]), "{:?}", hbs[1]);
    assert!(
        hbs[1].at.duration_since(hbs[0].at) < Duration::from_secs(2),
        "the status waited for the heartbeat interval"
    );
    assert!(cs.http.requests_to("/Agent/ReportPipelineConfig").len() == 1);
    // And every later heartbeat carries it too (the server may not remember).
    let hbs = cs.wait_heartbeats(3, 10);
    assert!(carried(&hbs[2]), "{:?}", hbs[2]);
    let log = agent.stop();
    assert!(log.contains("config status goes in the heartbeat"), "{log}");
}

#[test]
fn configs_announced_by_name_are_fetched_and_instance_configs_apply() {
    let s = Scratch::new("fleet-fetch");
    let cs = ConfigServer::start();
    cs.with(|c| c.fetch_mode = true);
    cs.serve_pipeline("remote", 1, &pipeline(&s, "remote.log"));
    cs.serve_instance(
        "agent",
        1,
        "heartbeat_interval = \"1s\"\nlog_level = \"debug\"\n",
    );
    write_lines(&s.path("logs/remote.log"), "r", 0, 30);
    let cfg = fleet_config(&s, &cs.url(), "heartbeat_interval = \"30s\"", "");
    let agent = Agent::start(&s, &cfg);
    cs.wait_report("remote", 1, APPLYING, 10)
        .expect("APPLYING while fetching");
    cs.wait_report("remote", 1, APPLIED, 10)
        .expect("APPLIED after the fetch");
    cs.wait_report("agent", 1, APPLIED, 10)
        .expect("instance config applied");
    let fetches = cs.with(|c| c.fetches.clone());
    assert!(fetches
        .iter()
        .any(|(p, i)| p == "/Agent/FetchPipelineConfig"
            && i[0].name == "remote"
            && i[0].version == 1));
    assert!(fetches
        .iter()
        .any(|(p, _)| p == "/Agent/FetchInstanceConfig"));
    let got = wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "r").len() >= 30);
    assert_exactly_once(&numbers(&got, "r"), 30);
    // The instance config's 1 s heartbeat replaced the local 30 s one.
    assert!(
        cs.wait_heartbeats(4, 8).len() >= 4,
        "heartbeat interval not applied"
    );
    // A bad instance config: FAILED, naming the key; the running settings stay.
    cs.serve_instance(
        "agent",
        2,
        "heartbeat_interval = \"1s\"\nlog_levle = \"trace\"\n",
    );
    let r = cs.wait_report("agent", 2, FAILED, 10).expect("v2 FAILED");
    assert!(r.infos[0].message.contains("log_levle"), "{:?}", r.infos);
    let n = cs.heartbeats().len();
    assert!(
        cs.wait_heartbeats(n + 2, 5).len() >= n + 2,
        "1 s heartbeats stopped"
    );
    let log = agent.stop();
    assert!(
        log.contains(" DEBUG ") || log.contains("DEBUG"),
        "log_level not applied"
    );
}

#[test]
fn the_config_server_can_be_https() {
    let s = Scratch::new("fleet-tls");
    let cs = ConfigServer::start();
    let pki = tls::Pki::new(&s.path("pki"));
    let front = tls::TlsFront::start(&pki, cs.http.addr.port(), false);
    cs.serve_pipeline("remote", 1, &pipeline(&s, "remote.log"));
    let cfg = fleet_config(
        &s,
        &format!("https://localhost:{}", front.port),
        &format!("[fleet.tls]\nca_file = \"{}\"", pki.ca.display()),
        "",
    );
    let agent = Agent::start(&s, &cfg);
    cs.wait_report("remote", 1, APPLIED, 10)
        .expect("applied over https");
    assert_eq!(cs.heartbeats()[0].seq, 1);
    agent.stop();
}

#[test]
fn a_fleet_that_cannot_start_leaves_the_data_alone_and_does_not_spin() {
    let s = Scratch::new("fleet-no-ca");
    let cfg = fleet_config(
        &s,
        "https://127.0.0.1:9",
        "[fleet.tls]\nca_file = \"/nonexistent/ca.pem\"",
        "",
    );
    let agent = Agent::start(&s, &cfg);
    write_lines(&s.path("logs/app.log"), "a", 0, 100);
    let got = wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "a").len() >= 100);
    assert_exactly_once(&numbers(&got, "a"), 100);
    std::thread::sleep(Duration::from_secs(2));
    let log = agent.stop();
    let errors = log.matches("/nonexistent/ca.pem").count();
    assert!((1..=2).contains(&errors), "{errors} errors:\n{log}");
}
