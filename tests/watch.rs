//! Told by inotify: a line written to a quiet file arrives in milliseconds, not at the next
//! poll, a file that lives for less than a poll interval is still read, and another file's
//! writes in the same directory wake nothing.

mod common;
use common::*;
use std::fs;
use std::io::Write;
use std::time::{Duration, Instant};

/// Polls so rarely that only inotify can explain a prompt delivery.
const TOP: &str = "poll_interval = \"30s\"";
const FAST_BATCH: &str = "[batch]\nlinger = \"10ms\"\n";

#[test]
fn a_line_written_to_a_quiet_file_arrives_in_milliseconds() {
    let s = Scratch::new("watch-latency");
    let f = s.path("logs/app.log");
    append(&f, &line("q", 0));
    let cfg = s.config(TOP, &input("app", &f.display().to_string(), ""), FAST_BATCH);
    let a = Agent::start(&s, &cfg);
    wait_lines(&s.path("out.tbf"), 1, 10);
    // Quiet for a while: a polling agent's sleep has grown to seconds by now.
    std::thread::sleep(Duration::from_secs(4));
    let mut worst = Duration::ZERO;
    for i in 1..=3 {
        let t = Instant::now();
        append(&f, &line("q", i));
        wait_lines(&s.path("out.tbf"), 1 + i as usize, 40);
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(1500));
    }
    eprintln!("slowest of three lines written to a quiet file: {worst:?}");
    assert!(
        worst < Duration::from_millis(800),
        "a line took {worst:?} with poll_interval 30s"
    );
    let got = read_sink(&s.path("out.tbf"));
    assert_eq!(numbers(&got, "q"), vec![0, 1, 2, 3]);
    a.stop();
}

/// A write to another file of the directory (syslog beside `app.log` in `/var/log`) is none
/// of the agent's business: it queues no event and wakes nothing. The agent's own file is
/// still heard at once, before and after it is renamed away.
#[test]
fn a_busy_neighbour_in_the_directory_wakes_nothing_and_our_file_is_still_heard() {
    let s = Scratch::new("watch-neighbour");
    let f = s.path("logs/app.log");
    append(&f, &line("q", 0));
    let cfg = s.config(TOP, &input("app", &f.display().to_string(), ""), FAST_BATCH);
    let a = Agent::start(&s, &cfg);
    wait_lines(&s.path("out.tbf"), 1, 10);
    // Past the first frame's checkpoint (5 s) and progress line: asleep.
    std::thread::sleep(Duration::from_secs(7));
    let mut neighbour = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(s.path("logs/syslog"))
        .unwrap();
    let before = wakeups(a.pid());
    // 300 writes in about 3 s, each its own system call.
    for i in 0..300 {
        neighbour.write_all(line("n", i).as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    let woke = wakeups(a.pid()) - before;
    eprintln!("300 writes to a neighbour in the directory: {woke} context switches");
    // Heard on the directory, they cost about 2.8 switches each (both threads woke, the
    // events were read and found to be someone else's): some 800 here.
    assert!(woke <= 10, "{woke} wake-ups for 300 writes to another file");
    // The agent's own file: at once (the poll is 30 s away).
    let quick = |n: usize| {
        let t = Instant::now();
        wait_lines(&s.path("out.tbf"), n, 10);
        t.elapsed()
    };
    append(&f, &line("q", 1));
    let took = quick(2);
    assert!(took < Duration::from_millis(800), "own line after {took:?}");
    // Renamed away, still written to by its writer: heard on the file itself.
    let mut writer = fs::OpenOptions::new().append(true).open(&f).unwrap();
    fs::rename(&f, s.path("logs/app.log.1")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    writer.write_all(line("q", 2).as_bytes()).unwrap();
    let took = quick(3);
    assert!(
        took < Duration::from_millis(800),
        "renamed file's line after {took:?}"
    );
    let got = read_sink(&s.path("out.tbf"));
    assert_eq!(numbers(&got, "q"), vec![0, 1, 2]);
    assert!(numbers(&got, "n").is_empty());
    a.stop();
}

/// A truncation in place (copytruncate's second step, with the glob naming the live file
/// only) is heard on the file like a write, though no byte is new to read: the line written
/// right after it arrives as promptly as any other, even within a second of the last scan,
/// and when the rewrite leaves the file just as long as what was read.
#[test]
fn a_line_written_just_after_a_truncation_arrives_in_milliseconds() {
    let s = Scratch::new("watch-truncated");
    let f = s.path("logs/app.log");
    append(&f, &line("q", 0));
    let cfg = s.config(TOP, &input("app", &f.display().to_string(), ""), FAST_BATCH);
    let a = Agent::start(&s, &cfg);
    wait_lines(&s.path("out.tbf"), 1, 10);
    std::thread::sleep(Duration::from_secs(4));
    let mut worst = Duration::ZERO;
    let mut n = 1;
    for i in 1..=3 {
        // A line first: its look scans (the last scan was seconds ago), so the truncation
        // comes well within a second of a scan.
        append(&f, &line("q", i));
        n += 1;
        wait_lines(&s.path("out.tbf"), n, 10);
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        if i < 3 {
            truncate(&f);
            append(&f, &line("t", i));
        } else {
            // Rewritten to just the length read: neither shorter nor longer, only another
            // head tells.
            let len = fs::metadata(&f).unwrap().len() as usize;
            let l = line("t", i);
            fs::write(
                &f,
                format!("{}{}\n", l.trim_end(), " ".repeat(len - l.len())),
            )
            .unwrap();
        }
        n += 1;
        wait_lines(&s.path("out.tbf"), n, 40);
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(1500));
    }
    eprintln!("slowest of three lines written just after a truncation: {worst:?}");
    assert!(
        worst < Duration::from_millis(800),
        "a line after a truncation took {worst:?} with poll_interval 30s"
    );
    let got = read_sink(&s.path("out.tbf"));
    assert_eq!(numbers(&got, "q"), vec![0, 1, 2, 3]);
    assert_eq!(numbers(&got, "t"), vec![1, 2, 3]);
    a.stop();
}

#[test]
fn a_file_created_and_renamed_away_before_any_poll_is_read_whole() {
    let s = Scratch::new("watch-short");
    let f = s.path("logs/app.log");
    append(&f, &line("g0", 0));
    // The glob names the live file only: a renamed generation is found by no scan.
    let cfg = s.config(TOP, &input("app", &f.display().to_string(), ""), FAST_BATCH);
    let a = Agent::start(&s, &cfg);
    wait_lines(&s.path("out.tbf"), 1, 10);
    std::thread::sleep(Duration::from_secs(3));
    // Three generations, each created, written and renamed away within 50 ms.
    for g in 1..=3u64 {
        fs::rename(&f, s.path(&format!("logs/app.log.{g}"))).unwrap();
        let tag = format!("g{g}");
        let text: String = (0..100).map(|i| line(&tag, i)).collect();
        fs::write(&f, text).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    fs::rename(&f, s.path("logs/app.log.4")).unwrap();
    let got = wait_until(&s.path("out.tbf"), 10, |g| {
        (1..=3).all(|n| numbers(g, &format!("g{n}")).len() == 100)
    });
    for g in 1..=3 {
        assert_eq!(
            numbers(&got, &format!("g{g}")),
            (0..100).collect::<Vec<_>>(),
            "generation {g}"
        );
    }
    let log = a.stop();
    assert!(log.contains("watched with inotify"), "{log}");
}

#[test]
fn past_the_watch_limit_directories_are_polled_and_the_log_says_so() {
    let s = Scratch::new("watch-many");
    // 256 directories a pipeline may watch, here 300 and the one above them.
    for i in 0..300 {
        fs::create_dir_all(s.path(&format!("logs/d{i}"))).unwrap();
    }
    let glob = format!("{}/*/app.log", s.path("logs").display());
    let cfg = s.config(
        "poll_interval = \"100ms\"",
        &input("app", &glob, ""),
        FAST_BATCH,
    );
    let a = Agent::start(&s, &cfg);
    a.wait_log("polled every poll_interval", 10);
    append(&s.path("logs/d299/app.log"), &line("p", 0));
    append(&s.path("logs/d0/app.log"), &line("w", 0));
    let got = wait_until(&s.path("out.tbf"), 10, |g| g.len() == 2);
    assert_eq!((numbers(&got, "p"), numbers(&got, "w")), (vec![0], vec![0]));
    let log = a.stop();
    // Said once per directory, and past the first few in one line.
    let said = log.lines().filter(|l| l.contains("polled every")).count();
    assert!(said <= 9, "{said} lines about polled directories:\n{log}");
    assert!(
        log.contains("more directories watched with inotify")
            && log.contains("more directories polled every poll_interval"),
        "{log}"
    );
    assert!(log.contains("256 directories watched already"), "{log}");
}
