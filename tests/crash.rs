//! Faults: kill -9 at random points under load, a damaged spool, a full spool under both
//! policies, a sink that cannot write.

mod common;
use common::*;
use std::fs;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// xorshift: reproducible "random" kill points, printed so a failure can be replayed.
fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn kill_9_at_random_points_loses_nothing_and_repeats_are_detectable() {
    let s = Scratch::new("kill9");
    let f = s.path("logs/app.log");
    let g = s.path("logs/other.log");
    let inp = format!(
        "{}{}",
        input("app", &f.display().to_string(), ""),
        input("other", &g.display().to_string(), "")
    );
    // fsync on in the sink as well: what the sink acknowledged must survive.
    let cfg = s.config(
        "",
        &inp,
        &format!(
            "[batch]\nmax_lines = 200\nlinger = \"50ms\"\n[spool]\nmax_bytes = \"2MiB\"\nsegment_bytes = \"256KiB\"\n[sink]\ntype = \"file\"\npath = \"{}\"\n",
            s.path("out.tbf").display()
        ),
    );
    let running = Arc::new(AtomicBool::new(true));
    let written = Arc::new(AtomicU64::new(0));
    let w = {
        let (running, written, f, g) = (running.clone(), written.clone(), f.clone(), g.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while running.load(Ordering::Relaxed) {
                let mut a = String::new();
                let mut b = String::new();
                for _ in 0..50 {
                    a.push_str(&line("a", i));
                    b.push_str(&line("b", i));
                    i += 1;
                }
                append(&f, &a);
                append(&g, &b);
                written.store(i, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ std::process::id() as u64;
    eprintln!("seed {seed:#x}");
    let kills = 25;
    for _ in 0..kills {
        let a = Agent::start(&s, &cfg);
        std::thread::sleep(Duration::from_millis(50 + rng(&mut seed) % 300));
        a.kill9();
    }
    running.store(false, Ordering::Relaxed);
    w.join().unwrap();
    let n = written.load(Ordering::Relaxed);
    let a = Agent::start(&s, &cfg);
    let got = wait_until(&s.path("out.tbf"), 60, |g| g.len() as u64 >= 2 * n);
    let log = a.stop();
    let raw = read_sink(&s.path("out.tbf"));
    let (got2, dup_frames) = dedup(raw.clone());
    assert_eq!(got.len(), got2.len());
    assert_exactly_once(&numbers(&got2, "a"), n);
    assert_exactly_once(&numbers(&got2, "b"), n);
    // A repeated frame is byte-for-byte the same lines: the sequence number identifies it.
    let mut by_seq: std::collections::HashMap<u64, Vec<&Got>> = Default::default();
    for g in &raw {
        by_seq.entry(g.seq).or_default().push(g);
    }
    for (seq, lines) in by_seq {
        let frames: std::collections::BTreeSet<usize> = lines.iter().map(|g| g.frame).collect();
        let first: Vec<_> = lines
            .iter()
            .filter(|g| g.frame == *frames.first().unwrap())
            .map(|g| (&g.text, g.offset))
            .collect();
        for fr in &frames {
            let these: Vec<_> = lines
                .iter()
                .filter(|g| g.frame == *fr)
                .map(|g| (&g.text, g.offset))
                .collect();
            assert_eq!(these, first, "seq {seq} was reused for other lines");
        }
    }
    eprintln!("{kills} kills, {n} lines per file, {dup_frames} frames delivered twice (same seq)");
    // The file sink reads back its last frame at start-up: not even a repeat.
    assert_eq!(dup_frames, 0);
    // The only damage a kill -9 leaves is a torn tail: the kernel stops a write between two
    // pages for a fatal signal (most often one throttled by dirty-page balancing, on a loaded
    // machine), leaving part of the last frame. The next start cuts it off and counts it; its
    // lines are read again from the log, which the exactly-once checks above show. Only the
    // last kill's tail is in this start's counters: nothing else may be counted damaged.
    let torn = log.matches("torn record at the end").count() as u64;
    assert!(torn <= 1, "{log}");
    assert_eq!(stat(&log, "corrupt", "records"), torn, "{log}");
}

#[test]
fn a_damaged_spool_is_skipped_counted_and_the_rest_delivered() {
    let s = Scratch::new("damaged");
    let f = s.path("logs/app.log");
    let n = 400;
    for i in 0..n {
        append(&f, &line("d", i));
    }
    let tables = "[batch]\nmax_lines = 20\n";
    let full = "[sink]\ntype = \"file\"\npath = \"/dev/full\"\n";
    let inp = input("app", &f.display().to_string(), "");
    // First run: the sink cannot take anything, so every frame stays in the spool.
    let a = Agent::start(&s, &s.config("", &inp, &format!("{tables}{full}")));
    a.wait_log("frames spooled 20 ", 10);
    a.stop();
    let seg = fs::read_dir(s.path("data/spool"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let len = bytes.len();
    bytes[len / 2] ^= 0x40; // a record in the middle
    bytes.extend_from_within(..100); // a torn record at the end
    fs::write(&seg, &bytes).unwrap();

    let a = Agent::start(&s, &s.config("", &inp, tables));
    let got = wait_until(&s.path("out.tbf"), 10, |g| g.len() >= (n - 20) as usize);
    std::thread::sleep(Duration::from_millis(500));
    let log = a.stop();
    assert!(log.contains("skipped"), "{log}");
    assert!(log.contains("torn record at the end"), "{log}");
    assert_eq!(stat(&log, "corrupt", "records"), 2, "{log}");
    // Exactly the 20 lines of the damaged frame are missing, nothing else.
    let nums = numbers(&got, "d");
    assert_eq!(nums.len(), (n - 20) as usize);
    let missing: Vec<u64> = (0..n).filter(|i| !nums.contains(i)).collect();
    assert_eq!(missing.len(), 20);
    assert!(missing.windows(2).all(|w| w[1] == w[0] + 1), "{missing:?}");
    // And the damaged lines are not read again from the file: they were checkpointed.
    assert!(nums.windows(2).all(|w| w[0] < w[1]));
}

fn full_spool(policy: &str) -> (Vec<Got>, String, u64) {
    let s = Scratch::new(&format!("full-{policy}"));
    let f = s.path("logs/app.log");
    let n = 2000;
    for i in 0..n {
        append(&f, &line("f", i));
    }
    let tables = format!(
        "[batch]\nmax_bytes = \"2KiB\"\nmax_lines = 10\n[spool]\nmax_bytes = \"16KiB\"\nsegment_bytes = \"4KiB\"\non_full = \"{policy}\"\n"
    );
    let full = "[sink]\ntype = \"file\"\npath = \"/dev/full\"\n";
    let inp = input("app", &f.display().to_string(), "max_line_bytes = 500");
    let a = Agent::start(&s, &s.config("", &inp, &format!("{tables}{full}")));
    // Let it run into the limit and, for drop_oldest, well past it.
    a.wait_log("spool full", 10);
    std::thread::sleep(Duration::from_millis(1500));
    let spool_bytes: u64 = fs::read_dir(s.path("data/spool"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(
        spool_bytes <= 16 << 10,
        "spool holds {spool_bytes} bytes, over its 16KiB limit"
    );
    s.config("", &inp, &tables);
    a.signal("HUP");
    let got = wait_until(&s.path("out.tbf"), 20, |g| {
        numbers(g, "f").last() == Some(&(n - 1))
    });
    std::thread::sleep(Duration::from_millis(1200));
    let log = a.stop();
    (got, log, n)
}

#[test]
fn spool_full_with_block_loses_nothing() {
    let (got, log, n) = full_spool("block");
    assert_exactly_once(&numbers(&got, "f"), n);
    assert_eq!(stat(&log, "dropped", "frames"), 0);
}

#[test]
fn spool_full_with_drop_oldest_drops_exactly_what_it_reports() {
    let (got, log, n) = full_spool("drop_oldest");
    let nums = numbers(&got, "f");
    let dropped_lines = stat(&log, "frames (", "lines)");
    assert!(stat(&log, "dropped", "frames") > 0, "{log}");
    assert!(dropped_lines > 0);
    assert_eq!(nums.len() as u64 + dropped_lines, n, "{log}");
    // Nothing delivered twice, what is kept is in order.
    assert!(nums.windows(2).all(|w| w[0] < w[1]));
}

/// The loss is counted once: the start that counts it writes the checkpoint without the
/// file's mark at once, so an agent killed soon after (a crash loop, before the 5 s
/// checkpoint) does not count it again at its next start.
#[test]
fn a_file_deleted_unread_while_down_is_counted_once_across_a_crash_loop() {
    let s = Scratch::new("vanished-once");
    let (a, f, _, inp) = stuck_behind(&s, "v");
    a.stop();
    fs::remove_file(&f).unwrap();
    // The sink still fails: nothing is acknowledged, so no checkpoint comes of delivery.
    let stuck = s.config("", &inp, &format!("{TINY_SPOOL}{FULL_DISK_SINK}"));
    let a = Agent::start(&s, &stuck);
    a.wait_log("is gone with", 10);
    std::thread::sleep(Duration::from_millis(300));
    a.kill9();
    let a = Agent::start(&s, &s.config("", &inp, TINY_SPOOL));
    wait_until(&s.path("out.tbf"), 10, |g| !g.is_empty());
    std::thread::sleep(Duration::from_millis(1200));
    let log = a.stop();
    assert!(!log.contains("is gone with"), "counted again: {log}");
    assert_eq!(stat(&log, "vanished", "B"), 0, "{log}");
}

#[test]
fn a_file_deleted_unread_while_the_agent_was_down_is_counted() {
    let s = Scratch::new("vanished");
    let (a, f, size, inp) = stuck_behind(&s, "v");
    a.stop();
    fs::remove_file(&f).unwrap();
    let a = Agent::start(&s, &s.config("", &inp, TINY_SPOOL));
    a.wait_log("is gone with", 10);
    wait_until(&s.path("out.tbf"), 10, |g| !g.is_empty());
    std::thread::sleep(Duration::from_millis(1200));
    let log = a.stop();
    // What was spooled before the stop is delivered; the rest of the file is counted lost.
    let got = read_sink(&s.path("out.tbf"));
    let nums = numbers(&got, "v");
    assert_eq!(nums, (0..nums.len() as u64).collect::<Vec<_>>());
    let delivered: u64 = (0..nums.len() as u64)
        .map(|i| line("v", i).len() as u64)
        .sum();
    assert_eq!(stat(&log, "vanished", "B"), size - delivered, "{log}");
}

/// A generation of a log last written an hour ago, holding line `z 0`.
fn hour_old(p: &std::path::Path) {
    append(p, &line("z", 0));
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let f = fs::File::options().write(true).open(p).unwrap();
    f.set_modified(hour_ago).unwrap();
}

/// logrotate's `copytruncate` with `rotate 1`: the previous copy deleted, the file copied,
/// then truncated in place.
fn copytruncate_rotate_1(f: &std::path::Path) {
    let copy = f.with_extension("log.1");
    let _ = fs::remove_file(&copy);
    fs::copy(f, &copy).unwrap();
    truncate(f);
}

#[test]
fn lines_copied_away_while_down_right_after_a_claimed_copy_are_read() {
    // A glob on the live name only. The live file is read to its end and copied away, its
    // copy claimed with nothing left to read; then the agent stops (kill -9 at once, or a
    // clean stop). While it is down the file is written, copied away again and truncated,
    // and written once more. Nothing but the time of the checkpoint tells the new copy from
    // the generations before it: every line arrives, exactly once.
    for kill in [true, false] {
        let s = Scratch::new(&format!("down-after-claim-{kill}"));
        let f = s.path("logs/app.log");
        // An old generation: read long ago, or not this agent's; not to be read now.
        hour_old(&s.path("logs/app.log.2"));
        let cfg = s.config("", &input("app", &f.display().to_string(), ""), "");
        let a = Agent::start(&s, &cfg);
        for i in 0..40 {
            append(&f, &line("v", i));
        }
        wait_lines(&s.path("out.tbf"), 40, 10);
        copytruncate_rotate_1(&f);
        a.wait_log("truncated at byte", 10);
        std::thread::sleep(Duration::from_millis(300));
        if kill {
            a.kill9();
        } else {
            a.stop();
        }
        for i in 40..90 {
            append(&f, &line("v", i));
        }
        copytruncate_rotate_1(&f);
        for i in 90..95 {
            append(&f, &line("v", i));
        }
        let a = Agent::start(&s, &cfg);
        let got = wait_lines(&s.path("out.tbf"), 95, 10);
        std::thread::sleep(Duration::from_millis(500));
        let log = a.stop();
        let got_after = read_sink(&s.path("out.tbf"));
        assert_eq!(got_after.len(), got.len(), "{log}");
        assert_eq!(numbers(&got, "v"), (0..95).collect::<Vec<_>>(), "{log}");
        assert!(numbers(&got, "z").is_empty(), "{log}");
        assert_eq!(stat(&log, "truncated", "B"), 0, "{log}");
    }
}

#[test]
fn a_file_read_whole_and_truncated_before_a_crash_counts_no_loss_at_the_restart() {
    // The checkpoint saw the log long; it was copied away and truncated (the copy claimed),
    // written again and read to its end, and the agent killed before the next checkpoint:
    // the restart has the position from the frames, of the new content. The file then
    // deleted (or truncated with no copy) while down lost nothing unread, and the counters
    // say so, not the old content's size again.
    for delete in [true, false] {
        let s = Scratch::new(&format!("no-overcount-{delete}"));
        let f = s.path("logs/app.log");
        let cfg = s.config("", &input("app", &f.display().to_string(), ""), "");
        let a = Agent::start(&s, &cfg);
        for i in 0..100 {
            append(&f, &line("w", i));
        }
        wait_lines(&s.path("out.tbf"), 100, 10);
        // The 5 s checkpoint, with the log 100 lines long.
        std::thread::sleep(Duration::from_millis(5500));
        copytruncate_rotate_1(&f);
        a.wait_log("truncated at byte", 10);
        for i in 100..105 {
            append(&f, &line("w", i));
        }
        wait_lines(&s.path("out.tbf"), 105, 10);
        a.kill9();
        if delete {
            fs::remove_file(&f).unwrap();
        } else {
            truncate(&f);
        }
        let a = Agent::start(&s, &cfg);
        std::thread::sleep(Duration::from_millis(1500));
        let log = a.stop();
        let got = read_sink(&s.path("out.tbf"));
        assert_eq!(numbers(&got, "w"), (0..105).collect::<Vec<_>>(), "{log}");
        assert_eq!(stat(&log, "vanished", "B"), 0, "{log}");
        assert_eq!(stat(&log, "truncated", "B"), 0, "{log}");
    }
}

#[test]
fn generations_whose_lines_all_begin_alike_are_each_read_once_after_a_restart() {
    // Lines longer than the agent's fingerprint that all begin with the same 300 bytes (a
    // banner, no timestamp first): every generation of the log starts the same. The agent
    // is down across two copytruncates (`rotate 2`); at the restart the copy that holds
    // what its checkpoint knew is the older one, the newer and the live file come after.
    let banner = "B".repeat(300);
    for (glob, more) in [("app.log", 2), ("app.log", 8), ("app.log*", 8)] {
        let s = Scratch::new(&format!("same-head-{}-{more}", glob.len()));
        let f = s.path("logs/app.log");
        let put = |tag: &str, r: std::ops::Range<u64>| {
            for i in r {
                append(&f, &format!("{banner} {}", line(tag, i)));
            }
        };
        let cfg = s.config(
            "",
            &input(
                "app",
                &format!("{}/{glob}", f.parent().unwrap().display()),
                "",
            ),
            "",
        );
        let a = Agent::start(&s, &cfg);
        put("a", 0..5);
        wait_lines(&s.path("out.tbf"), 5, 10);
        a.stop();
        put("b", 0..3);
        let (one, two) = (s.path("logs/app.log.1"), s.path("logs/app.log.2"));
        fs::copy(&f, &one).unwrap();
        truncate(&f);
        put("c", 0..3);
        std::thread::sleep(Duration::from_millis(20));
        fs::rename(&one, &two).unwrap();
        fs::copy(&f, &one).unwrap();
        truncate(&f);
        put("d", 0..more);
        let a = Agent::start(&s, &cfg);
        let got = wait_lines(&s.path("out.tbf"), 11 + more as usize, 10);
        std::thread::sleep(Duration::from_millis(800));
        let log = a.stop();
        let texts: Vec<String> = read_sink(&s.path("out.tbf"))
            .iter()
            .map(|g| {
                String::from_utf8_lossy(&g.text)
                    .trim_start_matches('B')
                    .to_string()
            })
            .collect();
        assert_eq!(texts.len(), got.len(), "{texts:?}\n{log}");
        for (tag, n) in [("a", 5), ("b", 3), ("c", 3), ("d", more)] {
            let want: Vec<String> = (0..n)
                .map(|i| format!(" {}", line(tag, i).trim_end_matches('\n')))
                .collect();
            let have: Vec<String> = texts
                .iter()
                .filter(|t| t.starts_with(&format!(" {tag} ")))
                .cloned()
                .collect();
            assert_eq!(have, want, "{glob} {more}: {texts:?}\n{log}");
        }
    }
}

#[test]
fn lines_that_begin_alike_are_read_once_across_cycles_of_stop_and_rotate() {
    // Lines that all begin with the same 300 bytes, so every generation of the log starts
    // the same. Three stops (clean, or kill -9: the positions then come partly from frames
    // after the checkpoint), each followed while the agent is down by: a copytruncate
    // (`rotate 1`); another, the previous copy deleted first, the new one on its inode
    // number as ext4 hands it out again at once; the log emptied with no copy and written
    // past the position. Every line arrives, once, but those written and emptied while the
    // agent was down with no copy kept (`g`), which nothing holds any more.
    let banner = "B".repeat(300);
    for (glob, kill) in [
        ("app.log", false),
        ("app.log", true),
        ("app.log*", false),
        ("app.log*", true),
    ] {
        let s = Scratch::new(&format!("alike-cycles-{}-{kill}", glob.len()));
        let f = s.path("logs/app.log");
        let out = s.path("out.tbf");
        let put = |tag: &str, r: std::ops::Range<u64>| {
            for i in r {
                append(&f, &format!("{banner} {}", line(tag, i)));
            }
        };
        let dir = f.parent().unwrap().display();
        let cfg = s.config("", &input("app", &format!("{dir}/{glob}"), ""), "");
        let down = |a: Agent| {
            if kill {
                let log = a.log();
                a.kill9();
                log
            } else {
                a.stop()
            }
        };
        let mut logs = String::new();
        let a = Agent::start(&s, &cfg);
        put("a", 0..5);
        wait_lines(&out, 5, 10);
        logs += &down(a);
        put("b", 0..3);
        copytruncate_rotate_1(&f);
        put("c", 0..3);
        let a = Agent::start(&s, &cfg);
        wait_lines(&out, 11, 10);
        logs += &down(a);
        put("d", 0..9);
        copytruncate_rotate_1(&f);
        put("e", 0..2);
        let a = Agent::start(&s, &cfg);
        wait_lines(&out, 22, 10);
        logs += &down(a);
        put("g", 0..2);
        truncate(&f);
        put("h", 0..12);
        let a = Agent::start(&s, &cfg);
        let got = wait_lines(&out, 34, 10);
        std::thread::sleep(Duration::from_millis(800));
        logs += &a.stop();
        let texts: Vec<String> = dedup(read_sink(&out))
            .0
            .iter()
            .map(|g| {
                String::from_utf8_lossy(&g.text)
                    .trim_start_matches('B')
                    .to_string()
            })
            .collect();
        let short: Vec<&str> = texts.iter().map(|t| t.get(..12).unwrap_or(t)).collect();
        let case = format!("{glob} kill {kill}: {short:?}\n{logs}");
        assert_eq!(texts.len(), got.len(), "{case}");
        for (tag, n) in [
            ("a", 5),
            ("b", 3),
            ("c", 3),
            ("d", 9),
            ("e", 2),
            ("g", 0),
            ("h", 12),
        ] {
            let want: Vec<String> = (0..n)
                .map(|i| format!(" {}", line(tag, i).trim_end_matches('\n')))
                .collect();
            let have: Vec<&String> = texts
                .iter()
                .filter(|t| t.starts_with(&format!(" {tag} ")))
                .collect();
            assert_eq!(have, want.iter().collect::<Vec<_>>(), "{tag}: {case}");
        }
    }
}

#[test]
fn a_first_run_killed_before_its_first_frame_loses_no_copy_made_since() {
    // The first run claims a copytruncate's copy and is killed before any frame reached the
    // spool: no checkpoint, no frame, the positions are lost. While it is down the log is
    // written and copied away again (`rotate 3`). The restart reads the live file from its
    // head, as start_at = "head" says, and before it the generations modified since that
    // run began: every line arrives.
    let s = Scratch::new("first-run-no-frame");
    let f = s.path("logs/app.log");
    hour_old(&s.path("logs/app.log.9"));
    let inp = input("app", &f.display().to_string(), "");
    let cfg = s.config("", &inp, "[batch]\nlinger = \"30s\"\n");
    for i in 0..50 {
        append(&f, &line("v", i));
    }
    let a = Agent::start(&s, &cfg);
    a.wait_log("tailing", 10);
    let rotate = |f: &std::path::Path| {
        let n = |k: u32| f.with_extension(format!("log.{k}"));
        let _ = fs::remove_file(n(3));
        for k in [2, 1] {
            if n(k).exists() {
                fs::rename(n(k), n(k + 1)).unwrap();
            }
        }
        fs::copy(f, n(1)).unwrap();
        truncate(f);
    };
    rotate(&f);
    a.wait_log("truncated at byte", 10);
    a.kill9();
    assert!(read_sink(&s.path("out.tbf")).is_empty());
    for i in 50..90 {
        append(&f, &line("v", i));
    }
    rotate(&f);
    for i in 90..100 {
        append(&f, &line("v", i));
    }
    let a = Agent::start(&s, &s.config("", &inp, ""));
    let got = wait_lines(&s.path("out.tbf"), 100, 10);
    std::thread::sleep(Duration::from_millis(800));
    let log = a.stop();
    assert_eq!(read_sink(&s.path("out.tbf")).len(), got.len(), "{log}");
    assert_eq!(numbers(&got, "v"), (0..100).collect::<Vec<_>>(), "{log}");
    assert!(numbers(&got, "z").is_empty(), "{log}");
}

#[test]
fn a_sink_switched_away_and_back_across_kills_repeats_no_line_under_new_numbers() {
    // A tester's sequence: a writer at about 200 lines a second, the log renamed away every
    // 200 lines; the file sink switched by a reload from `s.tbf` to `s2.tbf`, a `kill -9`,
    // a start, switched back to `s.tbf`, another `kill -9`, a start, two seconds apart.
    // `s.tbf` then holds frames from before the first switch and after the second, not
    // those between (in `s2.tbf`), and no checkpoint came after them: positions from its
    // frames alone sent a rotated generation again from where an older frame left it (28
    // to 400 lines twice under new sequence numbers, 5 of 5 runs). Across both files every
    // line arrives once, by (instance, seq).
    let s = Scratch::new("sink-away-and-back");
    let f = s.path("logs/app.log");
    let inp = input("app", &f.display().to_string(), "");
    let cfg = |name: &str| {
        let p = s.path(name);
        let sink = format!(
            "[sink]\ntype = \"file\"\npath = \"{}\"\nfsync = false\n",
            p.display()
        );
        s.config("", &inp, &sink)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (f, stop, written) = (f.clone(), stop.clone(), written.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                append(&f, &line("w", i));
                i += 1;
                written.store(i, Ordering::Relaxed);
                if i % 200 == 0 {
                    fs::rename(&f, f.with_extension(format!("log.{i}"))).unwrap();
                    append(&f, "");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let pause = || std::thread::sleep(Duration::from_secs(2));
    let a = Agent::start(&s, &cfg("s.tbf"));
    pause();
    cfg("s2.tbf");
    a.signal("HUP");
    pause();
    a.kill9();
    let a = Agent::start(&s, &cfg("s2.tbf"));
    pause();
    cfg("s.tbf");
    a.signal("HUP");
    pause();
    a.kill9();
    let a = Agent::start(&s, &cfg("s.tbf"));
    pause();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let n = written.load(Ordering::Relaxed);
    let both = || {
        let mut all = read_sink(&s.path("s.tbf"));
        let frames = all.iter().map(|g| g.frame).max().unwrap_or(0);
        all.extend(read_sink(&s.path("s2.tbf")).into_iter().map(|mut g| {
            g.frame += frames;
            g
        }));
        dedup(all).0
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while (both().len() as u64) < n && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let log = a.stop();
    let got = both();
    assert!(numbers(&got, "w").len() as u64 >= n, "{n} written\n{log}");
    assert_exactly_once(&numbers(&got, "w"), n);
}
