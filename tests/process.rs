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

/// Context switches of every thread, voluntary and not: how often the process woke up.
fn wakeups(pid: u32) -> u64 {
    fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| {
            let s = fs::read_to_string(t.path().join("status")).unwrap();
            s.lines()
                .filter(|l| {
                    l.starts_with("voluntary_ctxt_switches")
                        || l.starts_with("nonvoluntary_ctxt_switches")
                })
                .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
                .sum::<u64>()
        })
        .sum()
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
