//! Tailing against real files: late files, long and partial lines, rotation by rename and by
//! copytruncate under a writer going full speed, with the agent keeping up and far behind.

mod common;
use common::*;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tailbeat::frame::{LINE_CUT, LINE_PARTIAL};

#[test]
fn late_files_long_lines_and_partial_lines() {
    let s = Scratch::new("late");
    let cfg = s.config(
        "",
        &input(
            "app",
            &format!("{}/logs/**/*.log", s.0.display()),
            "max_line_bytes = 100\npartial_flush = \"300ms\"",
        ),
        "",
    );
    let a = Agent::start(&s, &cfg);
    std::thread::sleep(Duration::from_millis(300));
    fs::create_dir_all(s.path("logs/sub")).unwrap();
    let late = s.path("logs/sub/late.log");
    append(&late, "first\r\n");
    append(&late, &format!("{}\n", "L".repeat(250)));
    append(&late, &format!("{}\n", "M".repeat(100)));
    append(&late, "no newline yet");
    let got = wait_lines(&s.path("out.tbf"), 4, 10);
    assert_eq!(got.len(), 4, "{got:?}");
    // A line's exact bytes: a CR before the newline is part of it.
    assert_eq!(got[0].text, b"first\r");
    assert_eq!((got[1].text.len(), got[1].flags), (100, LINE_CUT));
    assert_eq!((got[2].text.len(), got[2].flags), (100, 0));
    assert_eq!(
        (&got[3].text[..], got[3].flags),
        (&b"no newline yet"[..], LINE_PARTIAL)
    );
    assert_eq!(got[1].offset, 7);
    assert!(got[0].path.ends_with("logs/sub/late.log"));
    let log = a.stop();
    assert_eq!(stat(&log, "cut", "lines"), 1);
}

#[test]
fn start_at_tail_skips_what_was_there_on_the_first_run_only() {
    let s = Scratch::new("startat");
    let f = s.path("logs/app.log");
    append(&f, &line("old", 0));
    let inp = input("app", &f.display().to_string(), "").replace("\"head\"", "\"tail\"");
    let cfg = s.config("", &inp, "");
    let a = Agent::start(&s, &cfg);
    a.wait_log("tailing", 5);
    append(&f, &line("new", 1));
    wait_lines(&s.path("out.tbf"), 1, 10);
    a.stop();
    append(&f, &line("new", 2));
    let a = Agent::start(&s, &cfg);
    let got = wait_lines(&s.path("out.tbf"), 2, 10);
    a.stop();
    assert_eq!(numbers(&got, "old"), Vec::<u64>::new());
    assert_eq!(numbers(&got, "new"), vec![1, 2]);
}

#[test]
fn a_file_rotated_while_the_agent_was_down_keeps_its_inputs_settings() {
    let s = Scratch::new("rotated-down");
    let (a_log, b_log) = (s.path("logs/a.log"), s.path("logs/b.log"));
    append(&a_log, "a0\n");
    append(&b_log, "b0\n");
    // Only the live names match: the rotated file is found from its mark alone.
    let inputs = format!(
        "{}{}",
        input("a", &a_log.display().to_string(), ""),
        input("b", &b_log.display().to_string(), "max_line_bytes = 64")
    );
    let cfg = s.config("", &inputs, "");
    let agent = Agent::start(&s, &cfg);
    wait_lines(&s.path("out.tbf"), 2, 10);
    agent.stop();
    append(&b_log, &format!("{}\n", "B".repeat(200)));
    fs::rename(&b_log, s.path("logs/b.log.1")).unwrap();
    let agent = Agent::start(&s, &cfg);
    agent.wait_log("while not open", 10);
    let got = wait_lines(&s.path("out.tbf"), 3, 10);
    agent.stop();
    let long = got
        .iter()
        .find(|g| g.text.starts_with(b"BBB"))
        .expect("the long line");
    // Input "b"'s limit (64), not the first input's (16 KiB).
    assert_eq!((long.text.len(), long.flags), (64, LINE_CUT));
}

/// Writes `total` numbered lines to `path`, calling `rotate` every `every` lines, at about
/// `rate` lines per second.
fn writer(
    path: std::path::PathBuf,
    total: u64,
    every: u64,
    rate: u64,
    rotate: impl Fn(&std::path::Path, u64) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        use std::io::Write;
        let open = || {
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap()
        };
        let mut f = open();
        let start = std::time::Instant::now();
        let mut buf = String::new();
        for i in 0..total {
            buf.push_str(&line("w", i));
            if i % 100 == 99 || i + 1 == total {
                f.write_all(buf.as_bytes()).unwrap();
                buf.clear();
                let due = Duration::from_secs_f64((i + 1) as f64 / rate as f64);
                if let Some(d) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(d);
                }
            }
            if i % every == every - 1 && i + 1 < total {
                drop(f);
                rotate(&path, i / every);
                f = open();
            }
        }
    })
}

fn rename_to_numbered(p: &std::path::Path, k: u64) {
    fs::rename(p, p.with_extension(format!("log.{k:04}"))).unwrap();
}

fn copytruncate(p: &std::path::Path, k: u64) {
    // logrotate's copytruncate: copy, then truncate in place (the writer pauses meanwhile).
    fs::copy(p, p.with_extension(format!("log.{k:04}"))).unwrap();
    truncate(p);
}

/// Stops the agent (SIGSTOP) for `pause` every `period` while `running`, so it falls behind.
fn stall(
    pid: u32,
    period: Duration,
    pause: Duration,
    running: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while running.load(Ordering::Relaxed) {
            std::thread::sleep(period);
            let _ = std::process::Command::new("kill")
                .args(["-STOP", &pid.to_string()])
                .status();
            std::thread::sleep(pause);
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .status();
        }
    })
}

/// `every` lines per generation at `rate` lines/s. Falling behind: the agent is stopped for
/// 400 ms every 700 ms. Under copytruncate, a generation that is copied and truncated away
/// entirely while the agent is stopped cannot be found by any agent (its copy's first bytes
/// match nothing it has seen), so those runs keep a generation longer than a stall.
fn run_rotation(
    name: &str,
    glob_suffix: &str,
    rotate: fn(&std::path::Path, u64),
    behind: bool,
    every: u64,
    rate: u64,
) {
    let s = Scratch::new(name);
    let f = s.path("logs/app.log");
    let cfg = s.config(
        "",
        &input("app", &format!("{}{glob_suffix}", f.display()), ""),
        "",
    );
    let a = Agent::start(&s, &cfg);
    a.wait_log("starting", 5);
    let total = 60_000;
    let running = Arc::new(AtomicBool::new(true));
    let staller = behind.then(|| {
        stall(
            a.pid(),
            Duration::from_millis(700),
            Duration::from_millis(400),
            running.clone(),
        )
    });
    writer(f.clone(), total, every, rate, rotate)
        .join()
        .unwrap();
    running.store(false, Ordering::Relaxed);
    if let Some(t) = staller {
        t.join().unwrap();
    }
    let got = wait_lines(&s.path("out.tbf"), total as usize, 60);
    let log = a.stop();
    let nums = numbers(&got, "w");
    assert_exactly_once(&nums, total);
    if glob_suffix.is_empty() {
        // One name, read generation by generation: the whole stream is in order.
        assert!(nums.windows(2).all(|w| w[0] < w[1]), "out of order");
    } else {
        // In order within each file.
        let mut per: std::collections::HashMap<u64, u64> = Default::default();
        for g in &got {
            let n = numbers(std::slice::from_ref(g), "w")[0];
            let last = per.insert(g.ino, n);
            assert!(
                last.is_none_or(|l| l < n),
                "out of order in inode {}",
                g.ino
            );
        }
    }
    assert_eq!(stat(&log, "truncated", "B"), 0, "{log}");
}

#[test]
fn rename_rotation_keeping_up() {
    run_rotation("rename-up", "", rename_to_numbered, false, 6_000, 10_000);
}

#[test]
fn rename_rotation_far_behind() {
    // The glob also matches the rotated names, so generations the agent never saw under
    // `app.log` are still found; the ones it did see are not read twice.
    run_rotation(
        "rename-behind",
        "*",
        rename_to_numbered,
        true,
        3_000,
        40_000,
    );
}

#[test]
fn copytruncate_keeping_up() {
    run_rotation("ct-up", "", copytruncate, false, 6_000, 10_000);
}

#[test]
fn copytruncate_far_behind() {
    run_rotation("ct-behind", "", copytruncate, true, 6_000, 10_000);
}

#[test]
fn truncation_with_nothing_to_recover_from_is_counted_exactly() {
    let s = Scratch::new("trunc-loss");
    // The sink cannot write (a full disk), the spool is tiny: the agent falls behind.
    let (a, f, size, inp) = stuck_behind(&s, "old");
    truncate(&f);
    s.config("", &inp, TINY_SPOOL);
    a.signal("HUP");
    a.wait_log("reloaded", 5);
    a.wait_log("truncated at byte", 10);
    for i in 0..10 {
        append(&f, &line("new", i));
    }
    let got = wait_until(&s.path("out.tbf"), 10, |g| numbers(g, "new").len() == 10);
    let olds = numbers(&got, "old");
    let news = numbers(&got, "new");
    std::thread::sleep(Duration::from_millis(1500));
    let log = a.stop();
    assert_eq!(news, (0..10).collect::<Vec<_>>());
    assert_eq!(olds, (0..olds.len() as u64).collect::<Vec<_>>());
    let delivered: u64 = (0..olds.len() as u64)
        .map(|i| line("old", i).len() as u64)
        .sum();
    assert!(delivered < size);
    assert_eq!(stat(&log, "truncated", "B"), size - delivered, "{log}");
}

#[test]
fn a_watched_directory_that_cannot_be_listed_is_named_in_the_log() {
    let s = Scratch::new("unlistable");
    // Root may list any directory whatever its mode; a symlink loop cannot be listed by anyone.
    std::os::unix::fs::symlink("loop", s.path("logs/loop")).unwrap();
    append(&s.path("logs/ok.log"), "fine\n");
    let inputs = format!(
        "{}{}",
        input("loop", &format!("{}/logs/loop/*.log", s.0.display()), ""),
        input("ok", &format!("{}/logs/ok.log", s.0.display()), "")
    );
    let cfg = s.config("", &inputs, "");
    let a = Agent::start(&s, &cfg);
    a.wait_log("cannot list", 5);
    wait_lines(&s.path("out.tbf"), 1, 10);
    let log = a.stop();
    let warned = log.lines().filter(|l| l.contains("cannot list")).count();
    assert_eq!(warned, 1, "warned once, not at every scan:\n{log}");
    assert!(log.contains("logs/loop"), "{log}");
}

fn rename_or_copytruncate(p: &std::path::Path, k: u64) {
    if k % 2 == 0 {
        rename_to_numbered(p, k)
    } else {
        copytruncate(p, k)
    }
}

#[test]
fn fast_rotation_by_rename_and_copytruncate_with_a_glob_matching_rotated_names() {
    // 50,000 lines/s, a rotation every 0.1 s, rename and copytruncate alternating, app.log*:
    // every line exactly once, each file's lines in order, nothing counted lost.
    run_rotation(
        "fast-mixed",
        "*",
        rename_or_copytruncate,
        true,
        5_000,
        50_000,
    );
}

#[test]
fn the_copy_of_a_file_read_to_its_end_is_not_sent_again() {
    let s = Scratch::new("ct-copy-once");
    let f = s.path("logs/app.log");
    let cfg = s.config("", &input("app", &format!("{}*", f.display()), ""), "");
    let a = Agent::start(&s, &cfg);
    for i in 0..3 {
        append(&f, &line("a", i));
    }
    wait_lines(&s.path("out.tbf"), 3, 10);
    copytruncate(&f, 1);
    for i in 0..3 {
        append(&f, &line("b", i));
    }
    let got = wait_lines(&s.path("out.tbf"), 6, 10);
    // Past rotate_wait, when the copy has been let go: still nothing more.
    a.wait_log("done with rotated", 10);
    let log = a.stop();
    let got_after = read_sink(&s.path("out.tbf"));
    assert_eq!(numbers(&got, "a"), [0, 1, 2]);
    assert_eq!(numbers(&got, "b"), [0, 1, 2]);
    assert_eq!(got_after.len(), 6, "{log}");
}

#[test]
fn more_files_than_can_be_open_are_all_read_and_the_wait_is_reported() {
    let s = Scratch::new("many-files");
    let n = tailbeat::input::MAX_OPEN_FILES as u64 + 100;
    for i in 0..n {
        append(
            &s.path(&format!("logs/f{i:04}.log")),
            &line(&format!("f{i:04}"), 0),
        );
    }
    let cfg = s.config(
        "",
        &input("app", &format!("{}/logs/*.log", s.0.display()), ""),
        "",
    );
    let a = Agent::start(&s, &cfg);
    a.wait_log("wait for a turn", 10);
    let got = wait_lines(&s.path("out.tbf"), n as usize, 30);
    // Files let go are reopened where they were: a second line in the first and the last.
    append(&s.path("logs/f0000.log"), &line("f0000", 1));
    append(
        &s.path(&format!("logs/f{:04}.log", n - 1)),
        &line(&format!("f{:04}", n - 1), 1),
    );
    let more = wait_lines(&s.path("out.tbf"), n as usize + 2, 10);
    let log = a.stop();
    assert_eq!(got.len(), n as usize);
    assert_eq!(more.len(), n as usize + 2, "no line twice, none lost");
    assert!(log.contains("files open: 100 more wait"), "{log}");
    assert_eq!(
        stat(&log, "truncations,", "waiting"),
        0,
        "nothing waits at the end"
    );
}

#[test]
fn a_file_that_appears_and_is_renamed_away_while_the_spool_is_full_is_still_read() {
    let s = Scratch::new("blocked-rename");
    // The sink cannot write, the spool is tiny: reading is paused (on_full = "block").
    let (a, f, _size, inp) = stuck_behind(&s, "old");
    let b = s.path("logs/b.log");
    for i in 0..20 {
        append(&b, &line("b", i));
    }
    // The glob is the live name only: once renamed, only its identity finds it.
    let inputs = format!(
        "{inp}{}",
        input(
            "b",
            &format!("{}/logs/b.log", s.0.display()),
            "max_line_bytes = 200"
        )
    );
    s.config("", &inputs, &format!("{TINY_SPOOL}{FULL_DISK_SINK}"));
    a.signal("HUP");
    a.wait_log("reloaded", 5);
    a.wait_log("logs/b.log from byte 0", 10);
    fs::rename(&b, s.path("logs/b.log.1")).unwrap();
    // A working sink: the backlog drains, reading resumes.
    s.config("", &inputs, TINY_SPOOL);
    a.signal("HUP");
    let got = wait_until(&s.path("out.tbf"), 20, |g| numbers(g, "b").len() == 20);
    let log = a.stop();
    assert_eq!(numbers(&got, "b"), (0..20).collect::<Vec<_>>(), "{log}");
    let _ = f;
}
