//! The control plane against a ConfigServer test double on loopback: heartbeats, config
//! status on its own endpoints (and in the heartbeat for servers without them), remote
//! pipeline and instance configs, restarts. Most tests run twice: against the seed's design
//! (`Mode::Seed`) and against a double that behaves as the real Go server does
//! (`Mode::Real`: no status endpoints, no FetchInstanceConfig, versions +1).

mod common;
use common::configserver::*;
use common::*;
use std::time::{Duration, Instant};

/// `name::seed` and `name::real`: the test `name(mode)` against both doubles.
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn seed() {
                super::$name(super::Mode::Seed)
            }
            #[test]
            fn real() {
                super::$name(super::Mode::Real)
            }
        }
    )*};
}

both_modes!(
    a_config_from_the_server_is_reported_applied_within_1s_and_runs,
    a_bad_config_fails_with_its_reason_and_version_minus_1_removes_the_pipeline,
    after_a_restart_the_last_good_configs_run_and_are_reported_again,
    heartbeats_count_up_by_one_retry_on_errors_and_send_full_state_when_asked,
    a_stalled_server_does_not_stall_the_data,
    status_goes_to_the_best_channel_the_server_has,
    configs_announced_by_name_are_fetched_and_instance_configs_apply,
    the_config_server_can_be_https,
);

fn a_config_from_the_server_is_reported_applied_within_1s_and_runs(mode: Mode) {
    let s = Scratch::new(&format!("fleet-latency-{mode:?}"));
    let cs = ConfigServer::start_as(mode);
    let v = cs.serve_pipeline("remote", 1, &pipeline(&s, "remote.log"));
    write_lines(&s.path("logs/remote.log"), "r", 0, 100);
    let cfg = fleet_config(&s, &cs.url(), "heartbeat_interval = \"30s\"", "");
    let agent = Agent::start(&s, &cfg);
    let hb = cs.wait_heartbeats(1, 10);
    assert!(!hb.is_empty(), "no heartbeat");
    let report = cs
        .wait_status("remote", v, APPLIED, 5)
        .expect("no APPLIED status");
    let latency = report.at.duration_since(hb[0].at);
    assert!(
        latency < Duration::from_secs(1),
        "APPLIED reported {latency:?} after the heartbeat"
    );
    // The seed has a status endpoint; the real server has none: a heartbeat at once.
    let (path, heartbeats) = match mode {
        Mode::Seed => ("/Agent/ReportPipelineConfig", 1),
        Mode::Real => ("/Agent/Heartbeat", 2),
    };
    assert_eq!(report.path, path);
    let got = wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "r").len() >= 100);
    assert_exactly_once(&numbers(&got, "r"), 100);
    assert_eq!(
        cs.heartbeats().len(),
        heartbeats,
        "the 30 s heartbeat came early"
    );
    agent.stop();
}

fn a_bad_config_fails_with_its_reason_and_version_minus_1_removes_the_pipeline(mode: Mode) {
    let s = Scratch::new(&format!("fleet-bad-{mode:?}"));
    let cs = ConfigServer::start_as(mode);
    let remote_log = s.path("logs/remote.log");
    let v1 = cs.serve_pipeline("remote", 1, &pipeline(&s, "remote.log"));
    write_lines(&remote_log, "r", 0, 50);
    let cfg = fleet_config(&s, &cs.url(), "heartbeat_interval = \"1s\"", "");
    let agent = Agent::start(&s, &cfg);
    cs.wait_status("remote", v1, APPLIED, 10)
        .expect("v1 applied");
    wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "r").len() >= 50);

    // Version 2 does not parse: FAILED with a message that names the key; v1 keeps running.
    let v2 = cs.serve_pipeline("remote", v1 + 1, "paths = \"not-a-list\"\n");
    let r = cs.wait_status("remote", v2, FAILED, 10).expect("v2 FAILED");
    let msg = &r.infos.iter().find(|i| i.name == "remote").unwrap().message;
    assert!(msg.contains("paths"), "FAILED message: {msg}");
    write_lines(&remote_log, "r", 50, 100);
    let got = wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "r").len() >= 100);
    assert_exactly_once(&numbers(&got, "r"), 100);

    // Version −1: the pipeline goes, and its file is no longer read.
    cs.serve_pipeline("remote", -1, "");
    cs.wait_status("remote", -1, APPLIED, 10)
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
    // Once the server was told, the deletion leaves the status list (issue 10, defect 6):
    // the next list of pipeline statuses, here after another config arrives, lacks it.
    let vo = cs.serve_pipeline("other", 1, &pipeline(&s, "other.log"));
    let l = cs
        .wait_status("other", vo, APPLIED, 10)
        .expect("other applied");
    assert!(
        l.infos.iter().all(|i| i.name != "remote"),
        "a deleted config is still reported: {:?}",
        l.infos
    );
    let n = cs.listings().len();
    cs.wait_heartbeats(cs.heartbeats().len() + 2, 5);
    assert!(
        cs.listings()[n..]
            .iter()
            .all(|l| l.infos.iter().all(|i| i.name != "remote")),
        "a deleted config came back"
    );
    let log = agent.stop();
    assert!(log.contains("FAILED"), "{log}");
    assert_eq!(log.matches("input \"remote\" removed").count(), 1, "{log}");
}

fn after_a_restart_the_last_good_configs_run_and_are_reported_again(mode: Mode) {
    let s = Scratch::new(&format!("fleet-restart-{mode:?}"));
    let cs = ConfigServer::start_as(mode);
    let remote_log = s.path("logs/remote.log");
    let vp = cs.serve_pipeline("remote", 3, &pipeline(&s, "remote.log"));
    let vi = cs.serve_instance("agent", 5, "stats_interval = \"2s\"\n");
    let cfg = fleet_config(&s, &cs.url(), "heartbeat_interval = \"1s\"", "");
    let agent = Agent::start(&s, &cfg);
    cs.wait_status("remote", vp, APPLIED, 10).expect("applied");
    cs.wait_status("agent", vi, APPLIED, 10)
        .expect("instance config applied");
    write_lines(&remote_log, "r", 0, 20);
    wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "r").len() >= 20);
    // What the server stored about the agent, from a full heartbeat.
    let stored = cs.stored();
    assert_eq!(stored.instance_id, "it");
    assert_eq!(stored.seq.map(|n| n >= 1), Some(true));
    agent.stop();

    // While the agent is down the server forgets it all; the agent runs what it saved.
    write_lines(&remote_log, "r", 20, 40);
    cs.with(|c| {
        c.pipelines.clear();
        c.instances.clear();
    });
    let before = cs.listings().len();
    let agent = Agent::start(&s, &cfg);
    let got = wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "r").len() >= 40);
    assert_exactly_once(&numbers(&got, "r"), 40);
    let again = cs
        .wait_status("remote", vp, APPLIED, 10)
        .map(|_| cs.listings().len() > before);
    assert_eq!(again, Some(true), "not reported again after the restart");
    assert!(cs.listings()[before..].iter().any(|l| l
        .infos
        .iter()
        .any(|i| i.name == "agent" && i.version == vi && i.status == APPLIED)));
    agent.stop();
}

fn heartbeats_count_up_by_one_retry_on_errors_and_send_full_state_when_asked(mode: Mode) {
    let s = Scratch::new(&format!("fleet-heartbeat-{mode:?}"));
    let cs = ConfigServer::start_as(mode);
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
    // main and async-io: the ConfigServer client runs on main (see "Threads" in lib.rs).
    assert_eq!(agent.threads(), 2);
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

fn a_stalled_server_does_not_stall_the_data(mode: Mode) {
    let s = Scratch::new(&format!("fleet-stall-{mode:?}"));
    let cs = ConfigServer::start_as(mode);
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

fn status_goes_to_the_best_channel_the_server_has(mode: Mode) {
    let s = Scratch::new(&format!("fleet-404-{mode:?}"));
    let cs = ConfigServer::start_as(mode);
    // The seed double without the seed's status endpoints still has upstream's
    // /Agent/ReportStatus; the real server has neither.
    cs.with(|c| c.report_404 = true);
    let v = cs.serve_pipeline("remote", 4, &pipeline(&s, "remote.log"));
    let cfg = fleet_config(&s, &cs.url(), "heartbeat_interval = \"3s\"", "");
    let agent = Agent::start(&s, &cfg);
    let hb = cs.wait_heartbeats(1, 10);
    let l = cs.wait_status("remote", v, APPLIED, 5).expect("APPLIED");
    // Not after the heartbeat interval: at once, on the next channel.
    assert!(
        l.at.duration_since(hb[0].at) < Duration::from_secs(2),
        "the status waited for the heartbeat interval"
    );
    assert_eq!(cs.http.requests_to("/Agent/ReportPipelineConfig").len(), 1);
    let log = match mode {
        Mode::Seed => {
            assert_eq!(l.path, "/Agent/ReportStatus");
            let r = cs.http.requests_to("/Agent/ReportStatus");
            assert!(!r.is_empty());
            let log = agent.stop();
            assert!(
                log.contains("config status goes to /Agent/ReportStatus"),
                "{log}"
            );
            log
        }
        Mode::Real => {
            assert_eq!(l.path, "/Agent/Heartbeat");
            assert_eq!(cs.http.requests_to("/Agent/ReportStatus").len(), 1);
            // And every later heartbeat carries it too (the server compares with them).
            let n = cs.heartbeats().len();
            let hbs = cs.wait_heartbeats(n + 1, 10);
            assert!(
                hbs[n]
                    .pipelines
                    .iter()
                    .any(|i| i.name == "remote" && i.status == APPLIED),
                "{:?}",
                hbs[n]
            );
            // Remembered: the status endpoints are not asked again.
            assert_eq!(cs.http.requests_to("/Agent/ReportPipelineConfig").len(), 1);
            let log = agent.stop();
            assert!(log.contains("config status goes in the heartbeat"), "{log}");
            log
        }
    };
    assert!(!log.contains("retrying"), "{log}");
}

fn configs_announced_by_name_are_fetched_and_instance_configs_apply(mode: Mode) {
    let s = Scratch::new(&format!("fleet-fetch-{mode:?}"));
    let cs = ConfigServer::start_as(mode);
    cs.with(|c| c.fetch_mode = true);
    let vp = cs.serve_pipeline("remote", 1, &pipeline(&s, "remote.log"));
    let vi = cs.serve_instance(
        "agent",
        1,
        "heartbeat_interval = \"1s\"\nlog_level = \"debug\"\n",
    );
    write_lines(&s.path("logs/remote.log"), "r", 0, 30);
    let cfg = fleet_config(&s, &cs.url(), "heartbeat_interval = \"30s\"", "");
    let agent = Agent::start(&s, &cfg);
    let applied = cs
        .wait_status("remote", vp, APPLIED, 10)
        .expect("APPLIED after the fetch");
    cs.wait_status("agent", vi, APPLIED, 10)
        .expect("instance config applied");
    let fetches = cs.with(|c| c.fetches.clone());
    assert!(fetches
        .iter()
        .any(|(p, i)| p == "/Agent/FetchPipelineConfig"
            && i[0].name == "remote"
            && i[0].version == vp));
    // The real server sends instance configs with their detail.
    assert_eq!(
        fetches
            .iter()
            .any(|(p, _)| p == "/Agent/FetchInstanceConfig"),
        mode == Mode::Seed
    );
    // Never reported before its detail was here (issue 10, defect 3).
    let first_fetch = cs.http.requests_to("/Agent/FetchPipelineConfig")[0].at;
    assert!(cs
        .listings()
        .iter()
        .filter(|l| l.at < first_fetch)
        .all(|l| l.infos.iter().all(|i| i.name != "remote")));
    assert!(applied.at > first_fetch);
    let got = wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "r").len() >= 30);
    assert_exactly_once(&numbers(&got, "r"), 30);
    // The instance config's 1 s heartbeat replaced the local 30 s one.
    assert!(
        cs.wait_heartbeats(4, 8).len() >= 4,
        "heartbeat interval not applied"
    );
    // A bad instance config: FAILED, naming the key; the running settings stay.
    let v2 = cs.serve_instance(
        "agent",
        vi + 1,
        "heartbeat_interval = \"1s\"\nlog_levle = \"trace\"\n",
    );
    let r = cs.wait_status("agent", v2, FAILED, 10).expect("v2 FAILED");
    let i = r.infos.iter().find(|i| i.name == "agent").unwrap();
    assert!(i.message.contains("log_levle"), "{:?}", r.infos);
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

fn the_config_server_can_be_https(mode: Mode) {
    let s = Scratch::new(&format!("fleet-tls-{mode:?}"));
    let cs = ConfigServer::start_as(mode);
    let pki = tls::Pki::new(&s.path("pki"));
    let front = tls::TlsFront::start(&pki, cs.http.addr.port(), false);
    let v = cs.serve_pipeline("remote", 1, &pipeline(&s, "remote.log"));
    let cfg = fleet_config(
        &s,
        &format!("https://localhost:{}", front.port),
        &format!("[fleet.tls]\nca_file = \"{}\"", pki.ca.display()),
        "",
    );
    let agent = Agent::start(&s, &cfg);
    cs.wait_status("remote", v, APPLIED, 10)
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

#[test]
fn a_config_that_cannot_be_fetched_fails_with_what_the_server_lacks_and_is_not_reported_first() {
    // Issue 10, defects 3 and 4: a 404 on the fetch endpoints was retried for ever, and the
    // config was reported APPLYING at the new version before its detail was here.
    let s = Scratch::new("fleet-no-fetch");
    let cs = ConfigServer::start();
    cs.with(|c| {
        c.fetch_mode = true;
        c.missing.insert("/Agent/FetchPipelineConfig".into());
        c.missing.insert("/Agent/FetchConfig".into());
    });
    cs.serve_pipeline("remote", 2, &pipeline(&s, "remote.log"));
    let cfg = fleet_config(&s, &cs.url(), "heartbeat_interval = \"1s\"", "");
    let agent = Agent::start(&s, &cfg);
    let l = cs.wait_status("remote", 2, FAILED, 10).expect("FAILED");
    let i = l.infos.iter().find(|i| i.name == "remote").unwrap();
    assert!(
        i.message.contains("/Agent/FetchPipelineConfig")
            && i.message.contains("/Agent/FetchConfig"),
        "{}",
        i.message
    );
    assert!(
        cs.listings()
            .iter()
            .flat_map(|l| l.infos.iter())
            .all(|i| i.name != "remote" || i.status == FAILED),
        "reported before its detail was fetched: {:?}",
        cs.listings()
    );
    // Remembered: the heartbeats that follow do not ask again.
    let n = cs.heartbeats().len();
    cs.wait_heartbeats(n + 2, 5);
    assert_eq!(cs.http.requests_to("/Agent/FetchPipelineConfig").len(), 1);
    assert_eq!(cs.http.requests_to("/Agent/FetchConfig").len(), 1);
    agent.stop();
}

#[test]
fn a_config_deleted_before_its_fetch_does_not_stop_the_fetches_that_follow() {
    // Found against the real Go server: a config deleted between the heartbeat that
    // announced it and the fetch is answered ConfigNotExist with HTTP 404. Taken for a
    // missing endpoint, every config announced after it was FAILED unfetched for an hour,
    // and the deleted one stayed in the status list as FAILED.
    let s = Scratch::new("fleet-deleted-before-fetch");
    let cs = ConfigServer::start_as(Mode::Real);
    cs.serve_pipeline("gone", 1, &pipeline(&s, "gone.log"));
    cs.with(|c| {
        c.delete_on_fetch.insert("gone".into());
    });
    let cfg = fleet_config(&s, &cs.url(), "heartbeat_interval = \"1s\"", "");
    let agent = Agent::start(&s, &cfg);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cs.with(|c| c.fetches.is_empty()) {
        assert!(Instant::now() < deadline, "no fetch");
        std::thread::sleep(Duration::from_millis(20));
    }
    let v = cs.serve_pipeline("next", 1, &pipeline(&s, "next.log"));
    write_lines(&s.path("logs/next.log"), "n", 0, 50);
    cs.wait_status("next", v, APPLIED, 15)
        .expect("the config announced after the deleted one is fetched and applied");
    let got = wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "n").len() >= 50);
    assert_exactly_once(&numbers(&got, "n"), 50);
    let n = cs.heartbeats().len();
    cs.wait_heartbeats(n + 2, 5);
    assert!(
        cs.listings()
            .iter()
            .flat_map(|l| l.infos.iter())
            .all(|i| i.name != "gone"),
        "the deleted config is in the status list: {:?}",
        cs.listings()
    );
    let log = agent.stop();
    assert!(!log.contains("has no /Agent/FetchPipelineConfig"), "{log}");
}

#[test]
fn without_fetch_instance_config_instance_configs_come_from_fetch_config() {
    let s = Scratch::new("fleet-fetch-config");
    let cs = ConfigServer::start();
    cs.with(|c| {
        c.fetch_mode = true;
        c.missing.insert("/Agent/FetchInstanceConfig".into());
    });
    cs.serve_instance("agent", 3, "stats_interval = \"2s\"\n");
    let cfg = fleet_config(&s, &cs.url(), "heartbeat_interval = \"1s\"", "");
    let agent = Agent::start(&s, &cfg);
    cs.wait_status("agent", 3, APPLIED, 10).expect("APPLIED");
    let fetches = cs.with(|c| c.fetches.clone());
    assert!(
        fetches
            .iter()
            .any(|(p, i)| p == "/Agent/FetchConfig" && i[0].name == "agent"),
        "{fetches:?}"
    );
    agent.stop();
}

#[test]
fn a_60s_outage_of_the_real_server_costs_a_bounded_number_of_requests() {
    // Issue 10, defect 1: in 404 fallback (every real server) a failed heartbeat was retried
    // at once: 5,000 requests a second. The bound is the session core's (see
    // src/control/session.rs): at most 12 heartbeats at a 10 s interval, 8 status reports
    // and 8 fetches in 60 s; here nothing but heartbeats is due, so at most 12.
    let s = Scratch::new("fleet-outage");
    let cs = ConfigServer::start_as(Mode::Real);
    let v = cs.serve_pipeline("remote", 1, &pipeline(&s, "remote.log"));
    let cfg = fleet_config(&s, &cs.url(), "heartbeat_interval = \"10s\"", "");
    let agent = Agent::start(&s, &cfg);
    cs.wait_status("remote", v, APPLIED, 10).expect("APPLIED");
    let start = Instant::now();
    let end = start + Duration::from_secs(60);
    cs.with(|c| c.outage_until = Some(end));
    // Waiting on the clock is the test: the count during the outage is the measurement.
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let during = cs
        .http
        .requests()
        .iter()
        .filter(|r| r.at >= start && r.at < end)
        .count();
    eprintln!("requests during the 60 s outage: {during}");
    assert!(during >= 3, "the agent stopped trying: {during}");
    assert!(during <= 12, "{during} requests in a 60 s outage");
    // And it comes back: the next heartbeat is answered, with its statuses.
    let n = cs.listings().len();
    let back = Instant::now() + Duration::from_secs(15);
    while cs.listings().len() == n && Instant::now() < back {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(cs.listings().len() > n, "no heartbeat after the outage");
    let log = agent.stop();
    assert!(log.contains("HTTP 503"), "{log}");
}

// The agent's identity on the server survives short heartbeats (issue 10, defect 2).
//
// A real ConfigServer (LoongCollector's, in Go) stores agent_type, startup_time, tags and
// the attributes from every heartbeat as sent; this test keeps what each heartbeat the
// test double received says, the same way, and checks it after every short one.
mod identity {
    use super::*;

    /// What a server that stores every heartbeat as sent knows of the agent after `h`.
    #[derive(Debug, PartialEq)]
    struct Stored {
        agent_type: String,
        startup_time: i64,
        tags: Vec<(String, String)>,
        /// version, ip, hostname, hostid, os, arch.
        attrs: Vec<Option<String>>,
    }

    fn stored(h: &Heartbeat) -> Stored {
        Stored {
            agent_type: h.agent_type.clone(),
            startup_time: h.startup_time,
            tags: h.tags.clone(),
            attrs: ["version", "ip", "hostname", "hostid", "os", "arch"]
                .iter()
                .map(|k| h.attrs.get(*k).cloned())
                .collect(),
        }
    }

    #[test]
    fn the_identity_the_server_stored_survives_short_heartbeats() {
        let s = Scratch::new("fleet-identity");
        let cs = ConfigServer::start();
        let cfg = fleet_config(
            &s,
            &cs.url(),
            "heartbeat_interval = \"1s\"\nagent_type = \"tailbeat-gw\"\ntags = { site = \"plant-7\", role = \"gw\" }",
            "",
        );
        let agent = Agent::start(&s, &cfg);
        let hbs = cs.wait_heartbeats(4, 20);
        assert!(hbs.len() >= 4, "{} heartbeats", hbs.len());
        let first = &hbs[0];
        assert_eq!(first.flags, 1, "the first heartbeat is full");
        let known = stored(first);
        assert_eq!(known.agent_type, "tailbeat-gw");
        assert!(known.startup_time > 1_700_000_000);
        assert_eq!(
            known.tags,
            [
                ("role".into(), "gw".into()),
                ("site".into(), "plant-7".into())
            ]
        );
        assert_eq!(known.attrs[0].as_deref(), Some(env!("CARGO_PKG_VERSION")));
        assert_eq!(known.attrs[1].as_deref(), Some("127.0.0.1"));
        assert!(known
            .attrs
            .iter()
            .all(|a| a.as_deref().is_some_and(|v| !v.is_empty())));
        for h in &hbs[1..] {
            assert_eq!(h.flags, 0, "heartbeat {} is short", h.seq);
            assert_eq!(stored(h), known, "after heartbeat {}", h.seq);
            // Short, still: no config statuses, and the health figures.
            assert!(h.pipelines.is_empty() && h.instances.is_empty());
            assert!(h.attrs.contains_key("health.rss_bytes"));
        }
        agent.stop();
    }
}
