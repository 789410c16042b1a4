//! The process as a whole: its threads, reloading on SIGHUP, staying asleep when idle.

mod common;
use common::*;
use std::fs;
use std::time::{Duration, Instant};

fn status(pid: u32, key: &str) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let l = s.lines().find(|l| l.starts_with(key)).unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// HTTP peers cost no thread: an HTTP sink and an HTTP ConfigServer, both in use.
#[test]
fn two_threads_with_an_http_sink_and_an_http_config_server() {
    use common::configserver::ConfigServer;
    use common::http::{HttpServer, Reply};
    let s = Scratch::new("threads-http");
    let sink = HttpServer::start(Box::new(|_| Reply::status(204)));
    let cs = ConfigServer::start();
    let f = s.path("logs/app.log");
    let cfg = s.config(
        "",
        &input("app", &f.display().to_string(), ""),
        &format!(
            "[sink]\ntype = \"http\"\nurl = \"{}\"\n[fleet]\nserver = \"{}\"\n\
             heartbeat_interval = \"1s\"\n",
            sink.url("/in"),
            cs.url()
        ),
    );
    let a = Agent::start(&s, &cfg);
    for i in 0..100 {
        append(&f, &line("h", i));
    }
    cs.wait_heartbeats(2, 20);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while sink.requests().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing reached the HTTP sink"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Main (the executor, HTTP included) and async-io's reactor thread.
    assert_eq!(status(a.pid(), "Threads:"), 2);
    a.stop();
}

/// A figure from /proc/PID/io: `syscw` (write system calls, to anything: files, the log,
/// the reactor's own wake-up pipe), `write_bytes` (bytes sent to the storage layer).
fn io(pid: u32, key: &str) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    let l = s.lines().find(|l| l.starts_with(key)).unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn two_threads_and_no_wakeups_or_writes_when_idle() {
    let s = Scratch::new("threads");
    let f = s.path("logs/app.log");
    // The defaults for both: the poll (the fallback where inotify cannot tell) and the
    // progress line, here 1 s (a line only when something moved).
    let cfg = s.config(
        "poll_interval = \"1s\"",
        &input("app", &f.display().to_string(), ""),
        "",
    );
    let a = Agent::start(&s, &cfg);
    for i in 0..1000 {
        append(&f, &line("t", i));
    }
    wait_lines(&s.path("out.tbf"), 1000, 10);
    // Main (the executor) and async-io's reactor thread; see "Threads" in src/lib.rs.
    assert_eq!(status(a.pid(), "Threads:"), 2);
    // What follows the last line: its frame acknowledged, the checkpoint that records it
    // (about 5 s later), the last progress line. Settled once that is past and 2 s pass
    // without a write call (30 s at most: an agent that never settles is measured anyway,
    // and fails below).
    let pid = a.pid();
    let delivered = Instant::now();
    let deadline = delivered + Duration::from_secs(30);
    let mut last = (io(pid, "syscw"), Instant::now());
    while Instant::now() < deadline
        && (delivered.elapsed() < Duration::from_secs(6)
            || last.1.elapsed() < Duration::from_secs(2))
    {
        std::thread::sleep(Duration::from_millis(100));
        let w = io(pid, "syscw");
        if w != last.0 {
            last = (w, Instant::now());
        }
    }
    let before = (wakeups(pid), io(pid, "syscw"), io(pid, "write_bytes"));
    std::thread::sleep(Duration::from_secs(10));
    let after = (wakeups(pid), io(pid, "syscw"), io(pid, "write_bytes"));
    let (woke, writes, bytes) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    eprintln!("10 idle seconds: {woke} context switches (all threads), {writes} write calls, {bytes} bytes written");
    // Polling once a second cost about 4 switches a second (two per thread: the timer, and
    // the next timer's registration waking the reactor). Told of changes by inotify, the
    // agent only wakes for its one-a-minute look, the deliver task's idle minute and the
    // fleet: at most a handful in 10 s. The bound is 1/s.
    assert!(woke <= 10, "{woke} wake-ups in 10 idle seconds");
    // Flash wear: an idle agent rewrites no checkpoint and logs no progress that did not
    // happen; no write system call at all.
    assert_eq!(writes, 0, "{writes} write calls in 10 idle seconds");
    assert_eq!(bytes, 0, "{bytes} bytes written in 10 idle seconds");
    assert_eq!(status(a.pid(), "Threads:"), 2);
    let log = a.stop();
    assert!(log.contains("watched with inotify"), "{log}");
}

#[test]
fn sighup_adds_and_removes_inputs_and_a_bad_config_changes_nothing() {
    let s = Scratch::new("reload");
    let (fa, fb) = (s.path("logs/a.log"), s.path("logs/b.log"));
    let only_a = input("a", &fa.display().to_string(), "");
    let only_b = input("b", &fb.display().to_string(), "");
    let cfg = s.config("", &only_a, "");
    let a = Agent::start(&s, &cfg);
    append(&fa, &line("a", 0));
    append(&fb, &line("b", 0));
    wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "a").len() == 1);

    // A broken config: the agent says why and keeps running the old one.
    fs::write(
        &cfg,
        fs::read_to_string(&cfg)
            .unwrap()
            .replace("[[input]]", "bogus = 1\n[[input]]"),
    )
    .unwrap();
    a.signal("HUP");
    a.wait_log("keeping the running config", 5);
    assert!(a.log().contains("unknown field `bogus`"), "{}", a.log());
    append(&fa, &line("a", 1));
    wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "a").len() == 2);

    // Input a out, input b in.
    s.config("", &only_b, "");
    a.signal("HUP");
    a.wait_log("reloaded", 5);
    append(&fa, &line("a", 2));
    append(&fb, &line("b", 1));
    let got = wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "b").len() == 2);
    std::thread::sleep(Duration::from_millis(500));
    let got = if got.len() < 4 {
        read_sink(&s.path("out.tbf"))
    } else {
        got
    };
    assert_eq!(
        numbers(&got, "b"),
        vec![0, 1],
        "b is read from its start once added"
    );
    assert_eq!(numbers(&got, "a"), vec![0, 1], "a is no longer read");

    // And back: a resumes where it stopped, so the line written meanwhile arrives once.
    s.config("", &format!("{only_a}{only_b}"), "");
    a.signal("HUP");
    a.wait_log("reloaded", 5);
    let got = wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "a").len() == 3);
    assert_eq!(numbers(&got, "a"), vec![0, 1, 2]);
    let log = a.stop();
    assert_eq!(status_lines(&log, "tailing"), 3, "{log}");
}

/// A SIGHUP or SIGTERM during start-up (logrotate's postrotate, a service manager) is
/// handled once the agent runs; it does not end the process by default. The agent is held
/// in start-up without a clock: its fleet state file is a FIFO, which `open` blocks on until
/// the test opens the other end. The test knows the agent is there when a non-blocking open
/// for writing succeeds (it fails while no reader has the FIFO open).
#[test]
fn a_signal_during_start_up_is_handled_once_running() {
    use std::os::unix::fs::OpenOptionsExt;
    for sig in ["HUP", "TERM"] {
        let s = Scratch::new(&format!("start-signal-{sig}"));
        let f = s.path("logs/app.log");
        append(&f, &line("s", 0));
        let cfg = s.config("", &input("app", &f.display().to_string(), ""), "");
        std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o700)
            .create(s.path("data"))
            .unwrap();
        let fifo = s.path("data/fleet.state");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let mut a = Agent::start(&s, &cfg);
        let deadline = Instant::now() + Duration::from_secs(20);
        let writer = loop {
            // O_NONBLOCK (0o4000 on Linux): fails with ENXIO until the agent opens to read.
            match fs::OpenOptions::new()
                .write(true)
                .custom_flags(0o4000)
                .open(&fifo)
            {
                Ok(w) => break w,
                Err(e) => {
                    assert!(a.child.try_wait().unwrap().is_none(), "{}", a.log());
                    assert!(Instant::now() < deadline, "agent never read {fifo:?}: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        // The agent is inside start-up, blocked reading the FIFO.
        a.signal(sig);
        // Let a moment pass for the signal's default action, were it still in place.
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            a.child.try_wait().unwrap().is_none(),
            "SIGHUP/SIGTERM during start-up ended the agent: {}",
            a.log()
        );
        drop(writer); // end of file: the agent reads an empty state and goes on
        if sig == "HUP" {
            a.wait_log("reloaded", 20);
            append(&f, &line("s", 1));
            let got = wait_until(&s.path("out.tbf"), 20, |g| numbers(g, "s").len() == 2);
            assert_eq!(numbers(&got, "s"), vec![0, 1]);
            a.stop();
        } else {
            let deadline = Instant::now() + Duration::from_secs(20);
            let st = loop {
                if let Some(st) = a.child.try_wait().unwrap() {
                    break st;
                }
                assert!(Instant::now() < deadline, "no stop: {}", a.log());
                std::thread::sleep(Duration::from_millis(20));
            };
            assert!(st.success(), "{st}: {}", a.log());
            assert!(a.log().contains("shutting down"), "{}", a.log());
        }
    }
}

/// An input taken out while its lines wait in the open batch (a long linger), then put back
/// under its name and under another: the agent spools the batch before closing the file, so
/// the input added back goes on past those lines. Before, they came twice, inside one frame
/// (one sequence number: not even a consumer could drop the repeats).
#[test]
fn an_input_removed_with_lines_in_the_open_batch_and_added_back_reads_them_once() {
    let s = Scratch::new("reload-batch");
    let (fa, fc) = (s.path("logs/a.log"), s.path("logs/c.log"));
    let a_in = input("a", &fa.display().to_string(), "");
    let c_in = |name: &str| input(name, &fc.display().to_string(), "");
    let batch = "[batch]\nlinger = \"1h\"\n";
    let cfg = s.config("", &format!("{a_in}{}", c_in("c")), batch);
    fs::write(&fa, "").unwrap();
    fs::write(&fc, "").unwrap();
    let a = Agent::start(&s, &cfg);
    a.wait_log("tailing", 5);
    let mut n = 0;
    for back in ["c", "c2"] {
        for _ in 0..10 {
            append(&fc, &line("c", n));
            n += 1;
        }
        a.wait_log(&format!("read {n} lines"), 5);
        s.config("", &a_in, batch);
        a.signal("HUP");
        a.wait_log_count("reloaded", if back == "c" { 1 } else { 3 }, 5);
        s.config("", &format!("{a_in}{}", c_in(back)), batch);
        a.signal("HUP");
        a.wait_log_count("reloaded", if back == "c" { 2 } else { 4 }, 5);
    }
    a.stop();
    assert_eq!(
        numbers(&read_sink(&s.path("out.tbf")), "c"),
        (0..20).collect::<Vec<_>>()
    );
}

fn status_lines(log: &str, what: &str) -> usize {
    log.lines().filter(|l| l.contains(what)).count()
}

#[test]
fn sigterm_flushes_the_open_batch_before_exiting() {
    let s = Scratch::new("term");
    let f = s.path("logs/app.log");
    // A linger far longer than the test: only shutdown can close this batch.
    let cfg = s.config(
        "",
        &input("app", &f.display().to_string(), ""),
        "[batch]\nlinger = \"1h\"\n",
    );
    fs::write(&f, "").unwrap();
    let a = Agent::start(&s, &cfg);
    a.wait_log("tailing", 5);
    for i in 0..10 {
        append(&f, &line("t", i));
    }
    // Read (the progress line says so), and still held by the linger.
    a.wait_log("read 10 lines", 5);
    assert!(read_sink(&s.path("out.tbf")).is_empty());
    a.stop();
    assert_eq!(
        numbers(&read_sink(&s.path("out.tbf")), "t"),
        (0..10).collect::<Vec<_>>()
    );
}

/// `GET path` on the metrics endpoint: status code and body.
fn scrape(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(body.len(), len, "{answer}");
    (code, body.to_string())
}

/// The address the agent's log says the metrics endpoint listens on.
fn metrics_addr(a: &Agent) -> String {
    a.wait_log("metrics: serving /metrics and /healthz on ", 10);
    let log = a.log();
    let at = log
        .find("metrics: serving /metrics and /healthz on ")
        .unwrap();
    log[at..]
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string()
}

/// Issue 12: `[metrics]` serves every heartbeat figure in Prometheus' text format, and
/// `/healthz` says 503, and why, once the oldest unacknowledged line is older than
/// `stale_after`. With `TAILBEAT_TEST_PROMTOOL=1` (CI), `promtool check metrics` lints it.
#[test]
fn the_metrics_endpoint_shows_the_figures_and_healthz_says_what_is_wrong() {
    let s = Scratch::new("metrics");
    let f = s.path("logs/app.log");
    let cfg = s.config(
        "",
        &input("app", &f.display().to_string(), ""),
        "[metrics]\nlisten = \"127.0.0.1:0\"\nstale_after = \"2s\"\n",
    );
    let a = Agent::start(&s, &cfg);
    let addr = metrics_addr(&a);
    for i in 0..10 {
        append(&f, &line("m", i));
    }
    wait_lines(&s.path("out.tbf"), 10, 10);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (code, body) = scrape(&addr, "/metrics");
        assert_eq!(code, 200, "{body}");
        if body.contains("\ntailbeat_lines_acked_total 10\n") {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    for want in [
        "# TYPE tailbeat_lines_read_total counter\ntailbeat_lines_read_total 10\n",
        "tailbeat_pipeline_spool_frames{pipeline=\"local\"} ",
        "tailbeat_read_to_ack_seconds{quantile=\"0.99\"} ",
        "tailbeat_healthy 1\n",
    ] {
        assert!(body.contains(want), "{want:?} not in\n{body}");
    }
    assert_eq!(scrape(&addr, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(scrape(&addr, "/nothing").0, 404);
    if std::env::var_os("TAILBEAT_TEST_PROMTOOL").is_some() {
        use std::io::Write;
        let mut p = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("TAILBEAT_TEST_PROMTOOL is set but promtool is missing (apt-get install prometheus)");
        p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
        let out = p.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && said.trim().is_empty(),
            "promtool: {said}\n{body}"
        );
    }
    a.stop();
}

#[test]
fn healthz_answers_503_once_the_oldest_unacknowledged_line_is_older_than_stale_after() {
    let s = Scratch::new("metrics-stale");
    let f = s.path("logs/app.log");
    // A sink that never answers: nothing read is ever acknowledged.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let cfg = s.config(
        "",
        &input("app", &f.display().to_string(), "[batch]\nlinger = \"50ms\"\n"),
        &format!(
            "[sink]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{port}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\nstale_after = \"1s\"\n"
        ),
    );
    let a = Agent::start(&s, &cfg);
    let addr = metrics_addr(&a);
    assert_eq!(scrape(&addr, "/healthz"), (200, "ok\n".to_string()));
    append(&f, &line("s", 0));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let (code, body) = loop {
        let got = scrape(&addr, "/healthz");
        if got.0 != 200 {
            break got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still healthy:\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("the oldest line not yet acknowledged was read")
            && body.contains("metrics.stale_after: 1 s"),
        "{body}"
    );
    assert!(scrape(&addr, "/metrics").1.contains("tailbeat_healthy 0\n"));
    a.stop();
}

/// A port already taken: the agent says which key and address, and does not start.
#[test]
fn a_metrics_address_in_use_is_refused_at_start_by_its_key() {
    let s = Scratch::new("metrics-busy");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let cfg = s.config(
        "",
        &input("app", &s.path("logs/app.log").display().to_string(), ""),
        &format!("[metrics]\nlisten = \"{addr}\"\n"),
    );
    let out = std::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("metrics.listen: cannot listen on {addr}: ")),
        "{err}"
    );
}
