//! The process as a whole: its threads, reloading on SIGHUP, staying asleep when idle.

mod common;
use common::*;
use std::fs;
use std::time::Duration;

fn status(pid: u32, key: &str) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let l = s.lines().find(|l| l.starts_with(key)).unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Voluntary context switches of every thread: how often the process went to sleep.
fn wakeups(pid: u32) -> u64 {
    fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| {
            let s = fs::read_to_string(t.path().join("status")).unwrap();
            let l = s
                .lines()
                .find(|l| l.starts_with("voluntary_ctxt_switches"))
                .unwrap();
            l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
        })
        .sum()
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

#[test]
fn two_threads_and_about_one_wakeup_a_second_when_idle() {
    let s = Scratch::new("threads");
    let f = s.path("logs/app.log");
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
    // Idle: let the poll interval back off, then count how often the process wakes up.
    std::thread::sleep(Duration::from_secs(3));
    let before = wakeups(a.pid());
    std::thread::sleep(Duration::from_secs(5));
    let woke = wakeups(a.pid()) - before;
    // One poll a second costs two switches on each thread (the timer firing, and the next
    // timer's registration waking the reactor): about 20 in 5 s. Busy polling, or async-io's
    // spinning back-off when the main thread drives the reactor, gives 70 and more.
    eprintln!("{woke} voluntary context switches in 5 idle seconds (both threads)");
    assert!(woke <= 30, "{woke} wake-ups in 5 idle seconds");
    assert_eq!(status(a.pid(), "Threads:"), 2);
    a.stop();
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
    std::thread::sleep(Duration::from_millis(500));
    assert!(read_sink(&s.path("out.tbf")).is_empty());
    a.stop();
    assert_eq!(
        numbers(&read_sink(&s.path("out.tbf")), "t"),
        (0..10).collect::<Vec<_>>()
    );
}
