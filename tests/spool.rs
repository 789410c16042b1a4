//! The spool under damage done while the agent was stopped (issue 9, defects 2, 6, 7) and
//! `drop_oldest` with frames in flight: a damaged or deleted `state`, a directory where a
//! segment should be, a segment emptied or cut in half. Ground truth: the lines written,
//! what the sink holds, and the agent's own log.

mod common;
use common::http::{HttpServer, Reply};
use common::*;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Segment files in the spool, by name, with their lengths.
fn segments(s: &Scratch) -> Vec<(u64, PathBuf, u64)> {
    let mut v: Vec<(u64, PathBuf, u64)> = fs::read_dir(s.path("data/spool"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok()?;
            Some((n, e.path(), e.metadata().ok()?.len()))
        })
        .collect();
    v.sort();
    v
}

/// Sequence numbers of the frames in the sink, in the order they were written.
fn seqs(got: &[Got]) -> Vec<u64> {
    let mut v: Vec<u64> = Vec::new();
    let mut last_frame = 0;
    for g in got {
        if g.frame != last_frame {
            v.push(g.seq);
            last_frame = g.frame;
        }
    }
    v
}

/// A number that follows `what` in the log, e.g. `logged(&log, "lost ", " frames")`.
fn logged(log: &str, before: &str, after: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| {
            let i = l.find(before)?;
            let rest = &l[i + before.len()..];
            let num: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            rest[num.len()..]
                .starts_with(after)
                .then(|| num.parse().ok())?
        })
        .collect()
}

/// Small frames (10 lines, about 800 bytes) and segments (2 KiB): an acknowledged spool lets
/// its active segment go at the next checkpoint, as it does with bigger sizes after 1 MiB.
const SMALL: &str = "[batch]\nmax_lines = 10\nmax_bytes = \"1KiB\"\nlinger = \"50ms\"\n[spool]\nmax_bytes = \"64KiB\"\nsegment_bytes = \"2KiB\"\n";

fn write_lines(f: &std::path::Path, tag: &str, range: std::ops::Range<u64>) -> u64 {
    let text: String = range.map(|i| line(tag, i)).collect();
    append(f, &text);
    text.len() as u64
}

/// What a damage did to the agent's knowledge of its files.
#[derive(PartialEq)]
enum Expect {
    /// `state.1` (the checkpoint before) and the frames after it give the same positions:
    /// nothing lost, nothing read twice.
    Resumed,
    /// No checkpoint left: positions are lost, `start_at` applies and is counted.
    PositionsLost,
}

/// Run, deliver everything, stop; damage the spool; write lines while stopped; run again.
fn lost_state(name: &str, start_at: &str, damage: impl Fn(&std::path::Path), expect: Expect) {
    let s = Scratch::new(name);
    let f = s.path("logs/app.log");
    let inp = format!(
        "[[input]]\nname = \"app\"\npaths = [\"{}\"]\nstart_at = \"{start_at}\"\nmax_line_bytes = 200\n",
        f.display()
    );
    let cfg = s.config("", &inp, SMALL);
    let out = s.path("out.tbf");
    // The file exists before the first start: start_at applies to it then.
    fs::write(&f, "").unwrap();
    let a = Agent::start(&s, &cfg);
    a.wait_log("tailing", 10);
    write_lines(&f, "a", 0..100);
    assert_exactly_once(&numbers(&wait_lines(&out, 100, 20), "a"), 100);
    a.stop();
    let before = seqs(&read_sink(&out));
    damage(&s.path("data/spool"));
    write_lines(&f, "b", 0..50);
    let size = fs::metadata(&f).unwrap().len();

    let a = Agent::start(&s, &cfg);
    a.wait_log("starting as", 10);
    write_lines(&f, "c", 0..100);
    let skip_b = expect == Expect::PositionsLost && start_at == "tail";
    let want_a = if expect == Expect::PositionsLost && start_at == "head" {
        200
    } else {
        100
    };
    wait_until(&out, 20, |g| {
        numbers(g, "c").len() == 100
            && numbers(g, "b").len() == if skip_b { 0 } else { 50 }
            && numbers(g, "a").len() == want_a
    });
    let log = a.stop();
    let raw = read_sink(&out);
    // Sequence numbers never go back: every new frame is numbered after every old one.
    let all = seqs(&raw);
    assert_eq!(&all[..before.len()], &before[..]);
    assert!(
        all.windows(2).all(|w| w[0] < w[1]),
        "sequence numbers went back: {all:?}\n{log}"
    );
    // A consumer dropping repeats by seq loses nothing written after the restart.
    let (got, dups) = dedup(raw);
    assert_eq!(dups, 0);
    assert_exactly_once(&numbers(&got, "c"), 100);
    assert_eq!(numbers(&got, "a").len(), want_a, "{log}");
    let skipped = logged(&log, "position lost: skipped ", " bytes");
    let again = logged(&log, "position lost: reading again ", " bytes");
    match (expect, start_at) {
        (Expect::Resumed, _) => {
            assert_exactly_once(&numbers(&got, "b"), 50);
            assert!(skipped.is_empty() && again.is_empty(), "{log}");
        }
        (Expect::PositionsLost, "tail") => {
            // Skipped to the end, counted: the lines written while stopped are among them
            // (and the lines delivered before: no record says which).
            assert!(numbers(&got, "b").is_empty());
            assert_eq!(skipped, vec![size], "{log}");
            assert_eq!(stat(&log, "positions lost", "B"), size, "{log}");
        }
        (Expect::PositionsLost, _) => {
            // Read again from the head: nothing lost, the repeat is logged with its size.
            assert_exactly_once(&numbers(&got, "b"), 50);
            assert_eq!(again, vec![size], "{log}");
        }
    }
}

#[test]
fn a_deleted_state_never_restarts_sequence_numbers_nor_loses_positions() {
    lost_state(
        "state-deleted",
        "tail",
        |d| fs::remove_file(d.join("state")).unwrap(),
        Expect::Resumed,
    );
}

#[test]
fn a_corrupt_state_never_restarts_sequence_numbers_nor_loses_positions() {
    lost_state(
        "state-corrupt",
        "tail",
        |d| {
            let p = d.join("state");
            let mut b = fs::read(&p).unwrap();
            let n = b.len();
            b[n - 1] ^= 0x55;
            fs::write(&p, b).unwrap();
        },
        Expect::Resumed,
    );
}

#[test]
fn a_removed_spool_continues_the_sinks_numbers_and_counts_what_it_skips() {
    lost_state(
        "spool-removed-tail",
        "tail",
        |d| fs::remove_dir_all(d).unwrap(),
        Expect::PositionsLost,
    );
}

#[test]
fn a_removed_spool_with_start_at_head_reads_the_files_again_under_new_numbers() {
    lost_state(
        "spool-removed-head",
        "head",
        |d| fs::remove_dir_all(d).unwrap(),
        Expect::PositionsLost,
    );
}

#[test]
fn both_checkpoints_damaged_and_the_spool_emptied_count_what_is_skipped() {
    lost_state(
        "state-both",
        "tail",
        |d| {
            for e in fs::read_dir(d).unwrap().flatten() {
                let p = e.path();
                let name = e.file_name().to_str().unwrap().to_string();
                if name.starts_with("state") {
                    fs::write(&p, b"garbage").unwrap();
                } else if name.ends_with(".seg") {
                    // The frames are gone with it, but not the segment's name.
                    truncate(&p);
                }
            }
        },
        Expect::PositionsLost,
    );
}

/// `tailbeat run --once` on `cfg`, which must exit 0 within 20 s; its log.
fn once(s: &Scratch, cfg: &std::path::Path) -> String {
    let mut child = std::process::Command::new(BIN)
        .args(["run", "--once", "--config"])
        .arg(cfg)
        .stderr(fs::File::create(s.path("once.log")).unwrap())
        .spawn()
        .unwrap();
    let st = wait_exit(&mut child, 20);
    let _ = child.kill();
    let log = fs::read_to_string(s.path("once.log")).unwrap();
    assert!(st.is_some_and(|st| st.success()), "{st:?}\n{log}");
    log
}

/// What a power cut leaves of segments the spool never fsynced: every one emptied.
fn empty_segments(s: &Scratch) {
    for (_, seg, _) in segments(s) {
        truncate(&seg);
    }
}

/// With a file sink that fsyncs, the spool sends frames without an fsync of its own (the
/// sink's makes them durable), so a power cut may take the spool's copies of frames the
/// sink holds, and the checkpoint written after them. The sink's frames say where their
/// lines ended: nothing is read again, nothing is counted lost, numbering goes on after
/// them. (The cut is made by hand: the checkpoint put back to the one before those frames,
/// the segments emptied.)
#[test]
fn a_spool_that_lost_frames_its_file_sink_holds_reads_none_of_them_again() {
    let s = Scratch::new("sink-holds");
    let f = s.path("logs/app.log");
    let inp = input("app", &f.display().to_string(), "max_line_bytes = 200");
    let out = s.path("out.tbf");
    let sink = format!("[sink]\ntype = \"file\"\npath = \"{}\"\n", out.display());
    let cfg = s.config("", &inp, &format!("{SMALL}{sink}"));
    let spool = s.path("data/spool");
    write_lines(&f, "a", 0..100);
    once(&s, &cfg);
    let older = fs::read(spool.join("state")).unwrap();
    write_lines(&f, "b", 0..300);
    once(&s, &cfg);
    let before = seqs(&read_sink(&out));
    fs::write(spool.join("state"), &older).unwrap();
    let _ = fs::remove_file(spool.join("state.1"));
    empty_segments(&s);
    write_lines(&f, "c", 0..50);
    let log = once(&s, &cfg);
    let got = read_sink(&out);
    let all = seqs(&got);
    assert_eq!(&all[..before.len()], &before[..]);
    assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}\n{log}");
    assert_exactly_once(&numbers(&got, "a"), 100);
    assert_exactly_once(&numbers(&got, "b"), 300);
    assert_exactly_once(&numbers(&got, "c"), 50);
    assert_eq!(stat(&log, "spool frames lost ", ","), 0, "{log}");
}

/// A power cut before a new spool's first checkpoint, behind a file sink that fsyncs: the
/// spool never fsynced its frames (the sink's fsync made them durable), so the cut leaves
/// no checkpoint and emptied segments. The sink's frames are the record of where the lines
/// ended: nothing is read again (`start_at = "head"`), nothing written meanwhile is skipped
/// (`"tail"`).
#[test]
fn a_power_cut_before_the_first_checkpoint_reads_nothing_again() {
    for start_at in ["head", "tail"] {
        let s = Scratch::new(&format!("first-ck-{start_at}"));
        let f = s.path("logs/app.log");
        // The file exists at the very first start: `start_at` applies to it.
        fs::write(&f, "").unwrap();
        let inp = format!(
            "[[input]]\nname = \"app\"\npaths = [\"{}\"]\nstart_at = \"{start_at}\"\n",
            f.display()
        );
        let out = s.path("out.tbf");
        let sink = format!("[sink]\ntype = \"file\"\npath = \"{}\"\n", out.display());
        let cfg = s.config(
            "",
            &inp,
            &format!("[batch]\nmax_lines = 10\nlinger = \"50ms\"\n{sink}"),
        );
        let a = Agent::start(&s, &cfg);
        a.wait_log("tailing", 10);
        write_lines(&f, "a", 0..300);
        wait_lines(&out, 300, 20);
        // 30 frames, under 64, within the first 5 s: no checkpoint yet.
        let state = s.path("data/spool/state");
        assert!(!state.exists(), "a checkpoint was written already");
        a.kill9();
        empty_segments(&s);
        write_lines(&f, "c", 0..100);
        let log = once(&s, &cfg);
        let got = read_sink(&out);
        let all = seqs(&got);
        assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}\n{log}");
        assert_exactly_once(&numbers(&got, "a"), 300);
        assert_exactly_once(&numbers(&got, "c"), 100);
    }
}

#[test]
fn run_once_after_a_lost_state_returns() {
    let s = Scratch::new("state-once");
    let f = s.path("logs/app.log");
    let inp = input("app", &f.display().to_string(), "max_line_bytes = 200");
    let cfg = s.config("", &inp, SMALL);
    let out = s.path("out.tbf");
    write_lines(&f, "a", 0..100);
    once(&s, &cfg);
    fs::remove_file(s.path("data/spool/state")).unwrap();
    write_lines(&f, "b", 0..300);
    once(&s, &cfg);
    let raw = read_sink(&out);
    let all = seqs(&raw);
    assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
    let (got, _) = dedup(raw);
    assert_exactly_once(&numbers(&got, "b"), 300);
}

#[test]
fn a_directory_where_a_segment_should_be_is_set_aside() {
    let s = Scratch::new("seg-dir");
    let f = s.path("logs/app.log");
    let inp = input("app", &f.display().to_string(), "max_line_bytes = 200");
    let cfg = s.config("", &inp, SMALL);
    let out = s.path("out.tbf");
    write_lines(&f, "a", 0..50);
    let a = Agent::start(&s, &cfg);
    wait_lines(&out, 50, 20);
    a.stop();
    let dir = s.path("data/spool/00000000000000000099.seg");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("x"), "x").unwrap();
    let a = Agent::start(&s, &cfg);
    write_lines(&f, "a", 50..100);
    let got = wait_lines(&out, 100, 20);
    let log = a.stop();
    assert!(log.contains("is not a segment (a directory)"), "{log}");
    assert!(!dir.exists());
    assert!(s
        .path("data/spool/00000000000000000099.seg.corrupt")
        .is_dir());
    assert_exactly_once(&numbers(&got, "a"), 100);
    // The name said frames from 99 on existed: new frames are numbered after them.
    let all = seqs(&read_sink(&out));
    assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
    assert!(*all.last().unwrap() >= 99, "{all:?}");
    assert_eq!(stat(&log, "corrupt", "records"), 1, "{log}");
}

/// Fills a spool with frames the sink cannot take, in several segments, and stops.
fn backlog(name: &str, n: u64) -> (Scratch, String) {
    let s = Scratch::new(name);
    let f = s.path("logs/app.log");
    let inp = input("app", &f.display().to_string(), "max_line_bytes = 200");
    write_lines(&f, "d", 0..n);
    let a = Agent::start(&s, &s.config("", &inp, &format!("{SMALL}{FULL_DISK_SINK}")));
    a.wait_log(&format!("read {n} lines"), 20);
    a.stop();
    (s, inp)
}

#[test]
fn an_emptied_segment_and_a_segment_cut_in_half_are_counted_in_frames() {
    let n = 400;
    let (s, inp) = backlog("seg-cut", n);
    let segs = segments(&s);
    assert!(segs.len() >= 4, "{segs:?}");
    // Empty the second segment, cut the third in half.
    truncate(&segs[1].1);
    let half = segs[2].2 / 2;
    fs::File::options()
        .write(true)
        .open(&segs[2].1)
        .unwrap()
        .set_len(half)
        .unwrap();
    let out = s.path("out.tbf");
    let a = Agent::start(&s, &s.config("", &inp, SMALL));
    // Delivery is done when the last frame arrived.
    wait_until(&out, 20, |g| numbers(g, "d").last() == Some(&(n - 1)));
    let log = a.stop();
    let got = read_sink(&out);
    let all = seqs(&got);
    let missing_frames = (1..=*all.last().unwrap())
        .filter(|q| !all.contains(q))
        .count() as u64;
    assert!(missing_frames >= 3, "{all:?}");
    let nums = numbers(&got, "d");
    assert!(nums.len() as u64 + 10 * missing_frames >= n);
    // Every missing frame is counted as such, once.
    let counted: u64 = logged(&log, "lost ", " frames").iter().sum();
    assert_eq!(counted, missing_frames, "{log}");
    // And the progress line says so (the heartbeat carries the same figure).
    assert_eq!(
        stat(&log, "spool frames lost", ","),
        missing_frames,
        "{log}"
    );
    // Nothing else was read again from the file.
    assert!(nums.windows(2).all(|w| w[0] < w[1]));
    // A second start counts nothing again.
    let a = Agent::start(&s, &s.config("", &inp, SMALL));
    a.wait_log("starting as", 10);
    let log = a.stop();
    assert!(logged(&log, "lost ", " frames").is_empty(), "{log}");
}

#[test]
fn drop_oldest_with_a_frame_in_flight_counts_exactly_what_never_arrives() {
    let s = Scratch::new("drop-inflight");
    let f = s.path("logs/app.log");
    let n = 600u64;
    // The server takes its time over the first requests, long enough for the spool to fill
    // and drop the segment that holds the frame in flight, then answers everything.
    let calls = Arc::new(AtomicUsize::new(0));
    let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let srv = {
        let (calls, bodies) = (calls.clone(), bodies.clone());
        HttpServer::start(Box::new(move |r| {
            let k = calls.fetch_add(1, Ordering::SeqCst);
            bodies.lock().unwrap().push(r.body.clone());
            let mut rep = Reply::status(200);
            if k < 3 {
                rep.stall = Some(Duration::from_millis(1500));
            }
            rep
        }))
    };
    let inp = input("app", &f.display().to_string(), "max_line_bytes = 500");
    let cfg = s.config(
        "",
        &inp,
        &format!(
            "[batch]\nmax_bytes = \"2KiB\"\nmax_lines = 10\nlinger = \"50ms\"\n[spool]\nmax_bytes = \"16KiB\"\nsegment_bytes = \"4KiB\"\non_full = \"drop_oldest\"\n[sink]\ntype = \"http\"\nurl = \"{}\"\ntimeout = \"5s\"\n",
            srv.url("/ingest")
        ),
    );
    fs::write(&f, "").unwrap();
    let a = Agent::start(&s, &cfg);
    a.wait_log("tailing", 10);
    write_lines(&f, "f", 0..n);
    a.wait_log("spool full: dropped", 20);
    // Done when the last line arrived.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let arrived = loop {
        let got: Vec<u64> = bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| {
                let mut dec = tailbeat::frame::Decoder::default();
                let b = dec.batch(b).unwrap();
                b.lines
                    .iter()
                    .map(|l| std::str::from_utf8(l.text).unwrap()[2..10].parse().unwrap())
                    .collect::<Vec<u64>>()
            })
            .collect();
        if got.last() == Some(&(n - 1)) || std::time::Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(1500)); // a stats line after the last ack
    let log = a.stop();
    let mut distinct = arrived.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let dropped_lines = stat(&log, "frames (", "lines)");
    assert!(dropped_lines > 0, "{log}");
    assert_eq!(
        distinct.len() as u64 + dropped_lines,
        n,
        "{} lines arrived, {dropped_lines} counted dropped\n{log}",
        distinct.len()
    );
}

#[test]
fn drop_oldest_with_a_frame_in_flight_at_a_stop_counts_it_at_the_next_start() {
    let s = Scratch::new("drop-inflight-stop");
    let f = s.path("logs/app.log");
    let n = 600u64;
    // The first request is never answered; the lines of every 2xx are the ground truth.
    let answered: Arc<Mutex<Vec<u64>>> = Arc::default();
    let first = Arc::new(AtomicUsize::new(0));
    let srv = {
        let (answered, first) = (answered.clone(), first.clone());
        HttpServer::start(Box::new(move |r| {
            if first.fetch_add(1, Ordering::SeqCst) == 0 {
                let mut rep = Reply::status(200);
                rep.stall = Some(Duration::from_secs(120));
                return rep;
            }
            let mut dec = tailbeat::frame::Decoder::default();
            let b = dec.batch(&r.body).unwrap();
            answered.lock().unwrap().extend(b.lines.iter().map(|l| {
                std::str::from_utf8(l.text).unwrap()[2..10]
                    .parse::<u64>()
                    .unwrap()
            }));
            Reply::status(200)
        }))
    };
    let inp = input("app", &f.display().to_string(), "max_line_bytes = 500");
    let cfg = s.config(
        "shutdown_timeout = \"1s\"",
        &inp,
        &format!(
            "[batch]\nmax_bytes = \"2KiB\"\nmax_lines = 10\nlinger = \"50ms\"\n[spool]\nmax_bytes = \"16KiB\"\nsegment_bytes = \"4KiB\"\non_full = \"drop_oldest\"\n[sink]\ntype = \"http\"\nurl = \"{}\"\ntimeout = \"60s\"\n",
            srv.url("/ingest")
        ),
    );
    fs::write(&f, "").unwrap();
    let a = Agent::start(&s, &cfg);
    a.wait_log("tailing", 10);
    write_lines(&f, "f", 0..n);
    a.wait_log(&format!("read {n} lines"), 20);
    let log1 = a.stop();
    assert_eq!(
        first.load(Ordering::SeqCst),
        1,
        "one frame in flight, unanswered"
    );
    let dropped_lines = stat(&log1, "frames (", "lines)");
    assert!(dropped_lines > 0, "{log1}");
    // Run again against a server that answers: the rest arrives, and the frame that was in
    // flight when its segment was dropped is counted, once.
    let a = Agent::start(&s, &cfg);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while answered.lock().unwrap().last() != Some(&(n - 1)) {
        assert!(std::time::Instant::now() < deadline, "{}", a.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let log2 = a.stop();
    let mut got = answered.lock().unwrap().clone();
    got.sort_unstable();
    got.dedup();
    // Every frame holds 10 lines (the file was written at once, 10 lines fit a batch).
    let lost_frames: u64 = logged(&log2, "lost ", " frames").iter().sum();
    assert_eq!(
        got.len() as u64 + dropped_lines + 10 * lost_frames,
        n,
        "{} arrived, {dropped_lines} lines dropped, {lost_frames} frames lost\n{log1}\n{log2}",
        got.len()
    );
    assert_eq!(lost_frames, 1, "{log2}");
}

#[test]
fn run_once_ends_when_the_newest_segment_was_cut() {
    let n = 200;
    let (s, inp) = backlog("seg-cut-once", n);
    let segs = segments(&s);
    let last = segs.last().unwrap();
    fs::File::options()
        .write(true)
        .open(&last.1)
        .unwrap()
        .set_len(last.2 / 2)
        .unwrap();
    let log = once(&s, &s.config("", &inp, SMALL));
    let got = read_sink(&s.path("out.tbf"));
    let all = seqs(&got);
    let lost: u64 = logged(&log, "lost ", " frames").iter().sum();
    let missing = (1..=*all.last().unwrap() + lost)
        .filter(|q| !all.contains(q))
        .count() as u64;
    assert!(lost > 0, "{log}");
    assert_eq!(lost, missing, "{all:?}\n{log}");
}
