//! Latency per stage and the alerts read from it (issue 12), with a real agent process, a
//! real HTTP sink that holds its answers for a while, a real ConfigServer for the
//! heartbeats, and the metrics endpoint.

mod common;
use common::configserver::{ConfigServer, Heartbeat};
use common::http::{HttpServer, Reply, Req};
use common::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `GET path` on the metrics endpoint: status code and body.
fn scrape(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_string(),
    )
}

/// The address the agent's log says the metrics endpoint listens on.
fn metrics_addr(a: &Agent) -> String {
    let say = "metrics: serving /metrics and /healthz on ";
    a.wait_log(say, 10);
    let log = a.log();
    let at = log.find(say).unwrap();
    log[at + say.len()..].lines().next().unwrap().to_string()
}

/// Scrapes until the exposition contains every one of `want`; returns it.
fn wait_metrics(addr: &str, want: &[&str], secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (code, body) = scrape(addr, "/metrics");
        assert_eq!(code, 200, "{body}");
        if want.iter().all(|w| body.contains(w)) {
            return body;
        }
        assert!(Instant::now() < deadline, "{want:?} not in\n{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A sample's value in the exposition.
fn sample(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} not in\n{body}"))
        .parse()
        .unwrap()
}

/// Waits for a heartbeat received after `since` with running status `status`.
fn wait_status(cs: &ConfigServer, since: Instant, status: &str, secs: u64) -> Heartbeat {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(h) = cs
            .heartbeats()
            .iter()
            .find(|h| h.at > since && h.running_status == status)
        {
            return h.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no heartbeat with running status {status:?}: {:?}",
            cs.heartbeats().last().map(|h| h.running_status.clone())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const ALERT_ON: &str = "tailbeat_alert{name=\"read_to_ack_p99\"} 1\n";
const ALERT_OFF: &str = "tailbeat_alert{name=\"read_to_ack_p99\"} 0\n";

/// A sink that holds its acknowledgements for 1.5 s raises `read_to_ack_p99` (threshold
/// 1 s over a 3 s window): `/metrics` shows the alert and the time in the sent→acked stage,
/// the heartbeat's running status says `alerting` and `health.alerts` has its bit. When the
/// sink answers at once again, the slow figures leave the window, the p99 falls below the
/// clear level and stays there for the hold time, and the alert clears everywhere.
#[test]
fn a_sink_slow_to_ack_raises_the_read_to_ack_alert_and_it_clears_when_it_is_quick_again() {
    let s = Scratch::new("latency-alert");
    let delay = Arc::new(AtomicU64::new(0));
    let d = delay.clone();
    let sink = HttpServer::start(Box::new(move |_: &Req| Reply {
        stall: Some(Duration::from_millis(d.load(Ordering::SeqCst))),
        ..Reply::status(204)
    }));
    let cs = ConfigServer::start();
    let f = s.path("logs/app.log");
    let cfg = s.config(
        "",
        &input("app", &f.display().to_string(), ""),
        &format!(
            "[sink]\ntype = \"http\"\nurl = \"{}\"\ntimeout = \"10s\"\n\
             [fleet]\nserver = \"{}\"\ntimeout = \"2s\"\nheartbeat_interval = \"1s\"\n\
             [batch]\nlinger = \"100ms\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
             [alerts]\nread_to_ack_p99 = \"1s\"\nhold = \"1s\"\nwindow = \"3s\"\n",
            sink.url("/ingest"),
            cs.url()
        ),
    );
    let a = Agent::start(&s, &cfg);
    let addr = metrics_addr(&a);
    // A steady trickle of lines, 20 a second, for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, f) = (stop.clone(), f.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                append(&f, &line("l", n));
                n += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    // Quick acks: every stage has figures, no alert.
    let stage =
        |st: &str| format!("tailbeat_stage_latency_seconds{{stage=\"{st}\",quantile=\"0.99\"}}");
    let body = wait_metrics(
        &addr,
        &[
            ALERT_OFF,
            &stage("read_closed"),
            &stage("sent_acked"),
            &stage("read_acked"),
        ],
        15,
    );
    assert!(sample(&body, &stage("sent_acked")) < 1.0, "{body}");
    assert_eq!(
        wait_status(&cs, Instant::now(), "running", 10).health("alerts"),
        0
    );

    // Slow acks: raised.
    delay.store(1500, Ordering::SeqCst);
    let body = wait_metrics(&addr, &[ALERT_ON], 20);
    assert!(sample(&body, &stage("sent_acked")) >= 1.0, "{body}");
    assert!(
        sample(&body, "tailbeat_read_to_ack_seconds{quantile=\"0.99\"}") > 1.0,
        "{body}"
    );
    let h = wait_status(&cs, Instant::now(), "alerting", 10);
    assert_eq!(h.health("alerts"), 1);
    assert!(h.health("sent_acked_p99_ms") >= 1000, "{:?}", h.attrs);
    assert!(h.health("latency_p99_ms") > 1000, "{:?}", h.attrs);
    // An alert is for people: /healthz does not ask a supervisor for a restart.
    assert_eq!(scrape(&addr, "/healthz"), (200, "ok\n".to_string()));
    a.wait_log("alerts raised: read_to_ack_p99", 5);

    // Quick again: cleared.
    delay.store(0, Ordering::SeqCst);
    let body = wait_metrics(&addr, &[ALERT_OFF], 30);
    if std::env::var_os("TAILBEAT_TEST_PROMTOOL").is_some() {
        promtool(&body);
    }
    assert_eq!(
        wait_status(&cs, Instant::now(), "running", 10).health("alerts"),
        0
    );
    a.wait_log("alerts: all clear", 5);
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    a.stop();
}

fn promtool(body: &str) {
    use std::io::Write;
    let mut p = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect(
            "TAILBEAT_TEST_PROMTOOL is set but promtool is missing (apt-get install prometheus)",
        );
    p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The other three alerts read the agent's real figures: with the sink refusing everything,
/// the spool's bytes pass `backlog_bytes`, the oldest line's age passes `oldest_unacked`,
/// and no disk has a petabyte free (`free_disk`); `health.alerts` and `/metrics` say so.
/// Once the sink takes the backlog, `oldest_unacked` clears after its hold; `free_disk`
/// stays.
#[test]
fn backlog_age_and_free_disk_alerts_follow_the_agents_own_figures() {
    let s = Scratch::new("latency-backlog");
    let refuse = Arc::new(AtomicBool::new(true));
    let r = refuse.clone();
    let sink = HttpServer::start(Box::new(move |_: &Req| {
        Reply::status(if r.load(Ordering::SeqCst) { 503 } else { 204 })
    }));
    let f = s.path("logs/app.log");
    for n in 0..50 {
        append(&f, &line("b", n));
    }
    let cfg = s.config(
        "",
        &input("app", &f.display().to_string(), ""),
        &format!(
            "[sink]\ntype = \"http\"\nurl = \"{}\"\ntimeout = \"2s\"\n\
             [batch]\nlinger = \"100ms\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
             [alerts]\nbacklog_bytes = 100\noldest_unacked = \"1s\"\nfree_disk = \"1000000GiB\"\nhold = \"1s\"\n",
            sink.url("/ingest")
        ),
    );
    let a = Agent::start(&s, &cfg);
    let addr = metrics_addr(&a);
    let on = |n: &str| format!("tailbeat_alert{{name=\"{n}\"}} 1\n");
    let off = |n: &str| format!("tailbeat_alert{{name=\"{n}\"}} 0\n");
    wait_metrics(
        &addr,
        &[
            &on("backlog_bytes"),
            &on("oldest_unacked"),
            &on("free_disk"),
            &off("read_to_ack_p99"),
        ],
        15,
    );
    a.wait_log("alerts raised: ", 5);
    refuse.store(false, Ordering::SeqCst);
    wait_metrics(&addr, &[&off("oldest_unacked"), &on("free_disk")], 30);
    a.stop();
}
