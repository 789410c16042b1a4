//! The command line: `check`, `decode`, exit codes, and README's demo command.

mod common;
use common::*;
use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn check_names_the_file_line_and_key_and_exits_2() {
    let s = Scratch::new("check");
    let cfg = s.config(
        "",
        &input("app", "/var/log/*.log", ""),
        "[spool]\nmax_bytes = \"lots\"\n",
    );
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    let line = fs::read_to_string(&cfg)
        .unwrap()
        .lines()
        .position(|l| l.contains("lots"))
        .unwrap()
        + 1;
    assert_eq!(
        err.trim(),
        format!(
            "tailbeat: {}:{line}: spool.max_bytes: expected a size like 8MiB, got \"lots\"",
            cfg.display()
        )
    );
    let cfg = s.config("", &input("app", "/var/log/*.log", ""), "");
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = Command::new(BIN)
        .args(["check", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.toml: cannot read"));
    let out = Command::new(BIN)
        .args(["run", "--frobnicate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_example_config_is_valid() {
    let out = Command::new(BIN)
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tailbeat.toml"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The commented-out alternatives in the example (MQTT sink, HTTP sink, fleet) are valid too,
/// once uncommented in place of the file sink (or beside it, for `[fleet]`).
#[test]
fn the_example_configs_alternatives_are_valid() {
    let s = Scratch::new("example-alts");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/tailbeat.toml"
    ))
    .unwrap();
    let sink_at = text.find("\n[sink]").unwrap() + 1;
    let sink_end = sink_at + text[sink_at..].find("\n\n").unwrap();
    let mut checked = 0;
    for block in text[sink_end..].split("\n\n") {
        let mut lines = block.trim().lines();
        let Some(title) = lines.next().filter(|l| l.starts_with("# ")) else {
            continue;
        };
        let body: String = lines
            .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l)))
            .collect();
        let cfg = if body.starts_with("[fleet]") {
            format!("{}\n{body}", &text[..sink_end])
        } else {
            format!("{}{body}", &text[..sink_at])
        };
        let p = s.path("alt.toml");
        std::fs::write(&p, &cfg).unwrap();
        let out = Command::new(BIN)
            .args(["check", "--config"])
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{title}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert_eq!(checked, 3, "the MQTT sink, the HTTP sink and the fleet");
}

#[test]
fn decode_reports_damage_with_its_position_and_carries_on() {
    let s = Scratch::new("decode");
    let f = app_log(&s, "d", 30);
    let cfg = s.config(
        "",
        &input("app", &f.display().to_string(), ""),
        "[batch]\nmax_lines = 10\n",
    );
    let a = Agent::start(&s, &cfg);
    wait_lines(&s.path("out.tbf"), 30, 10);
    a.stop();
    let mut bytes = fs::read(s.path("out.tbf")).unwrap();
    let third = bytes.len() / 3;
    bytes[third + 100] ^= 0xff;
    bytes.extend_from_slice(b"tbFR\x01\x01");
    // Through stdin, to exercise `-`.
    let mut child = Command::new(BIN)
        .args(["decode", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stdout.lines().count(), 20, "{stderr}");
    assert!(stdout
        .lines()
        .all(|l| l.starts_with("{\"instance\":\"it\",\"seq\":")));
    assert!(
        stderr.contains("bad CRC-32") || stderr.contains("payload does not decode"),
        "{stderr}"
    );
    assert!(stderr.contains("not a whole frame"), "{stderr}");
    assert!(stderr.contains("2 damaged region(s) skipped"), "{stderr}");
}

#[test]
fn decode_into_a_closed_pipe_exits_0() {
    let s = Scratch::new("pipe");
    let f = app_log(&s, "p", 5000);
    let a = Agent::start(
        &s,
        &s.config("", &input("app", &f.display().to_string(), ""), ""),
    );
    wait_lines(&s.path("out.tbf"), 5000, 20);
    a.stop();
    // The first line on stdout, then the exit status of `decode` itself.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{BIN}' decode '{}' | head -n 1; echo \"${{PIPESTATUS[0]}}\"",
            s.path("out.tbf").display()
        ))
        .output()
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("{\"instance\""), "{out}");
    assert_eq!(lines[1], "0", "decode into a closed pipe must exit 0");
}

/// README's first command: `cargo run --release -- run` in a checkout runs the demo.
#[test]
fn the_built_in_demo_runs_on_a_fresh_checkout() {
    let s = Scratch::new("demo");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/logs");
    fs::create_dir_all(s.path("examples/logs")).unwrap();
    let mut total = 0;
    for e in fs::read_dir(src).unwrap().flatten() {
        let text = fs::read_to_string(e.path()).unwrap();
        total += text.lines().count();
        fs::write(s.path("examples/logs").join(e.file_name()), text).unwrap();
    }
    let mut child = Command::new(BIN)
        .arg("run")
        .current_dir(&s.0)
        .stderr(fs::File::create(s.path("demo.log")).unwrap())
        .spawn()
        .unwrap();
    let got = wait_lines(&s.path("tailbeat-data/frames.tbf"), total, 10);
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(got.len(), total);
    let log = fs::read_to_string(s.path("demo.log")).unwrap();
    assert!(log.contains("running the built-in demo"), "{log}");
    let out = Command::new(BIN)
        .args(["decode", "tailbeat-data/frames.tbf"])
        .current_dir(&s.0)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().lines().count(),
        total
    );
}

#[test]
fn run_once_delivers_everything_exits_and_resumes_next_time() {
    let s = Scratch::new("once");
    let f = app_log(&s, "o", 5000);
    let cfg = s.config("", &input("app", &f.display().to_string(), ""), "");
    let once = || {
        let st = Command::new(BIN)
            .args(["run", "--once", "--config"])
            .arg(&cfg)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
    };
    once();
    assert_eq!(
        numbers(&read_sink(&s.path("out.tbf")), "o"),
        (0..5000).collect::<Vec<_>>()
    );
    for i in 5000..5100 {
        append(&f, &line("o", i));
    }
    once();
    once();
    assert_exactly_once(&numbers(&read_sink(&s.path("out.tbf")), "o"), 5100);
}

/// `tailbeat run --once` on `cfg`, which must succeed; its log.
fn run_once(cfg: &std::path::Path) -> String {
    let out = Command::new(BIN)
        .args(["run", "--once", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A backlog goes to the spool with one fsync per group of frames, not one per frame: the
/// reader adds frames while it works through the backlog, and the sender syncs them all at
/// once (group commit); the file sink flushes (fsyncs) once per group too, with the spool's
/// fsync on or off. Every line still arrives once and in order.
#[test]
fn a_backlog_is_made_durable_one_group_of_frames_at_a_time() {
    for fsync in [true, false] {
        let s = Scratch::new(&format!("group-commit-{fsync}"));
        let f = app_log(&s, "g", 40_000);
        let cfg = s.config(
            "",
            &input("app", &f.display().to_string(), ""),
            &format!(
                "[batch]\ncompression = \"none\"\nmax_lines = 100000\n[spool]\nfsync = {fsync}"
            ),
        );
        let log = run_once(&cfg);
        assert_eq!(
            numbers(&read_sink(&s.path("out.tbf")), "g"),
            (0..40_000).collect::<Vec<_>>()
        );
        let frames = stat(&log, "frames spooled ", "acked");
        let syncs = stat(&log, "spool syncs ", ";");
        let flushes = stat(&log, "sink flushes ", ";");
        // About 3.6 MB of lines in frames of 64 KiB: over 50 frames, in groups of 1 MiB.
        assert!(frames > 50, "{log}");
        if fsync {
            assert!(
                syncs >= 1 && syncs * 4 <= frames,
                "{syncs} syncs for {frames} frames: {log}"
            );
        } else {
            assert_eq!(syncs, 0, "{log}");
        }
        assert!(
            flushes >= 1 && flushes * 4 <= frames,
            "fsync = {fsync}: {flushes} sink flushes for {frames} frames: {log}"
        );
    }
}

/// Group commit never holds the sender back for a whole backlog: behind a sink as fast as
/// the reader (a file), a spool much smaller than the backlog (`drop_oldest`, segments that
/// each fit well under a group, fsync on and off) drops nothing. (Behind a sink slower than
/// the reader, `drop_oldest` drops by its nature: it never makes the reader wait.)
#[test]
fn a_backlog_larger_than_the_spool_drops_nothing_behind_a_healthy_sink() {
    for fsync in [false, true] {
        let s = Scratch::new(&format!("group-drop-{fsync}"));
        let f = app_log(&s, "h", 160_000);
        let cfg = s.config(
            "",
            &input("app", &f.display().to_string(), ""),
            &format!(
                "[batch]\ncompression = \"none\"\nmax_lines = 100000\n[spool]\nmax_bytes = \"4MiB\"\nsegment_bytes = \"128KiB\"\non_full = \"drop_oldest\"\nfsync = {fsync}"
            ),
        );
        let log = run_once(&cfg);
        assert_eq!(
            stat(&log, "dropped ", "frames"),
            0,
            "fsync = {fsync}: {log}"
        );
        assert_eq!(
            numbers(&read_sink(&s.path("out.tbf")), "h"),
            (0..160_000).collect::<Vec<_>>(),
            "fsync = {fsync}"
        );
    }
}

#[test]
fn the_stdout_sink_prints_json_lines() {
    let s = Scratch::new("stdout");
    let f = s.path("logs/app.log");
    append(&f, "plain line\n");
    append(&f, "tab\there \"quoted\"\n");
    fs::OpenOptions::new()
        .append(true)
        .open(&f)
        .unwrap()
        .write_all(b"bad \xff byte\n")
        .unwrap();
    let cfg = s.config(
        "",
        &input("app", &f.display().to_string(), ""),
        "[sink]\ntype = \"stdout\"\n",
    );
    let out = Command::new(BIN)
        .args(["run", "--once", "--config"])
        .arg(&cfg)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let path = f.display().to_string();
    assert!(lines[0].starts_with(&format!(
        "{{\"instance\":\"it\",\"seq\":1,\"source\":\"{path}\",\"offset\":0,\"ts\":"
    )));
    assert!(
        lines[0].ends_with(",\"line\":\"plain line\"}"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].ends_with(r#","line":"tab\there \"quoted\""}"#),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].ends_with(",\"line\":\"bad \u{fffd} byte\",\"raw\":\"YmFkIP8gYnl0ZQ==\"}"),
        "{}",
        lines[2]
    );
}

/// The kernel's account of what a process has it write to the disk: bytes it dirtied, less
/// those it truncated or deleted before they were written back (`/proc/PID/io`).
fn disk_writes(pid: u32) -> Option<u64> {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let field = |k: &str| -> Option<u64> {
        io.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().parse().ok())
    };
    Some(field("write_bytes:")?.saturating_sub(field("cancelled_write_bytes:")?))
}

/// Behind a file sink that fsyncs (the defaults), each byte reaches the disk once, not once in
/// the spool and again in the sink: the spool hands frames over without an fsync of its own
/// (the sink's makes them durable), and a segment deleted before the kernel writes it back
/// never reaches the disk. Measured on the build directory's file system (a tmpfs, where
/// `/tmp` may be, accounts no writes), read until the agent exits: its last deletions may
/// come after the last look, which only over-counts. Before the change: 2.0 times the sink.
#[test]
fn a_file_sink_that_fsyncs_gets_each_byte_written_to_the_disk_once() {
    let d = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("tailbeat-it-disk-once-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(d.join("logs")).unwrap();
    let s = Scratch(d);
    let f = app_log(&s, "w", 300_000);
    let out = s.path("out.tbf");
    let cfg = s.config(
        "",
        &input("app", &f.display().to_string(), ""),
        &format!(
            "[batch]\ncompression = \"none\"\n[sink]\ntype = \"file\"\npath = \"{}\"\n",
            out.display()
        ),
    );
    let mut once = Command::new(BIN)
        .args(["run", "--once", "--config"])
        .arg(&cfg)
        .stderr(fs::File::create(s.path("once.log")).unwrap())
        .spawn()
        .unwrap();
    let mut written = None;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let st = loop {
        if let Some(st) = once.try_wait().unwrap() {
            break Some(st);
        }
        if std::time::Instant::now() > deadline {
            let _ = once.kill();
            break None;
        }
        written = disk_writes(once.id()).or(written);
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let log = fs::read_to_string(s.path("once.log")).unwrap();
    assert!(st.is_some_and(|s| s.success()), "{st:?}\n{log}");
    assert_exactly_once(&numbers(&read_sink(&out), "w"), 300_000);
    let sink = fs::metadata(&out).unwrap().len();
    let written = written.expect("/proc/PID/io could not be read");
    eprintln!("{written} bytes written to the disk for a sink of {sink}");
    assert!(
        written > sink / 2,
        "{written} bytes written for a sink of {sink}: this file system does not account writes"
    );
    assert!(
        written * 10 < sink * 13,
        "{written} bytes written to the disk for a sink of {sink} bytes\n{log}"
    );
}

#[test]
fn a_file_sink_on_a_device_is_written_without_fsync() {
    let s = Scratch::new("devnull");
    let f = app_log(&s, "n", 100);
    let cfg = s.config(
        "",
        &input("app", &f.display().to_string(), ""),
        "[sink]\ntype = \"file\"\npath = \"/dev/null\"\n",
    );
    let mut once = Command::new(BIN)
        .args(["run", "--once", "--config"])
        .arg(&cfg)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let st = wait_exit(&mut once, 10);
    if st.is_none() {
        once.kill().unwrap();
    }
    assert!(
        st.is_some_and(|s| s.success()),
        "delivery to /dev/null stalled: {st:?}"
    );
}

/// `tailbeat check` on `text` (bytes): exit code 2 and the whole of stderr.
fn check_fails(s: &Scratch, text: &[u8]) -> (std::path::PathBuf, String) {
    let p = s.path("bad.toml");
    fs::write(&p, text).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    (p, String::from_utf8(out.stderr).unwrap())
}

const MINIMAL: &str = "data_dir = \"/tmp/x\"\n[[input]]\nname = \"a\"\npaths = [\"/x\"]\n";

#[test]
fn a_config_that_is_not_utf8_is_named_with_the_line_and_column_of_the_bad_byte() {
    let s = Scratch::new("not-utf8");
    let mut text = MINIMAL.as_bytes().to_vec();
    // Line 5, after "# é " (é is one character, two bytes).
    text.extend_from_slice("# é ".as_bytes());
    text.extend_from_slice(b"\xff bad\n[sink]\ntype = \"stdout\"\n");
    let (p, err) = check_fails(&s, &text);
    assert_eq!(
        err,
        format!(
            "tailbeat: {}:5:5: not UTF-8 (byte 0xff): a config file must be UTF-8 text\n",
            p.display()
        )
    );
}

#[test]
fn a_missing_sink_table_is_named_sink_never_a_comment() {
    let s = Scratch::new("no-sink");
    for text in [
        format!("# my agent's config\n{MINIMAL}"),
        MINIMAL.to_string(),
    ] {
        let (p, err) = check_fails(&s, text.as_bytes());
        assert_eq!(
            err,
            format!("tailbeat: {}: sink: missing field `sink`\n", p.display())
        );
    }
}

#[test]
fn a_huge_bad_value_is_echoed_in_a_few_dozen_bytes() {
    let s = Scratch::new("huge-value");
    // Just under the 256 KiB a config may have (a larger one is refused whole, below).
    let big = "x".repeat(200 << 10);
    let head: String = big.chars().take(64).collect();
    let sink = "[sink]\ntype = \"stdout\"\n";
    for (text, line, want) in [
        (
            format!("log_level = \"{big}\"\n{MINIMAL}{sink}"),
            1,
            format!("log_level: expected one of off, error, warn, info, debug, trace, got \"{head}\"… (204800 bytes)"),
        ),
        (
            format!("{MINIMAL}[spool]\nmax_bytes = \"{big}\"\n{sink}"),
            6,
            format!("spool.max_bytes: expected a size like 8MiB, got \"{head}\"… (204800 bytes)"),
        ),
        (
            format!("{MINIMAL}[sink]\ntype = \"{big}\"\n"),
            6,
            format!("sink.type: unknown variant \"{head}\"… (204800 bytes), expected one of `file`, `stdout`, `mqtt`, `http`"),
        ),
        (
            format!("{big} = 1\n{MINIMAL}{sink}"),
            1,
            format!("{head}… (204800 bytes): unknown field `{head}`… (204800 bytes), expected one of"),
        ),
    ] {
        let (p, err) = check_fails(&s, text.as_bytes());
        let prefix = format!("tailbeat: {}:{line}: {want}", p.display());
        assert!(err.starts_with(&prefix), "{}", &err[..err.len().min(600)]);
        assert_eq!(err.lines().count(), 1, "{}", &err[..err.len().min(600)]);
        assert!(err.len() < prefix.len() + 300, "{} bytes: {}", err.len(), &err[..err.len().min(600)]);
    }
    // Over 256 KiB: refused whole, by its size, in one short line naming the file.
    let text = format!("log_level = \"{}\"\n{MINIMAL}{sink}", "x".repeat(8 << 20));
    let (p, err) = check_fails(&s, text.as_bytes());
    assert_eq!(
        err.trim_end(),
        format!(
            "tailbeat: {}: {} bytes of config, over the limit of 256 KiB",
            p.display(),
            text.len()
        )
    );
}

/// A sink's URLs are parsed once, when the config is read (issue 10): one that does not
/// parse is named by its key, down to the failover entry, and the line of the value, which
/// for an entry of a list written over several lines is the entry's own.
#[test]
fn a_bad_sink_url_is_named_with_its_line_and_key() {
    let s = Scratch::new("bad-url");
    for (sink, key, bad, what) in [
        (
            "[sink]\ntype = \"mqtt\"\nurl = \"mqtt://broker:notaport\"\n",
            "sink.url",
            "notaport",
            "bad port \"notaport\" in \"mqtt://broker:notaport\"",
        ),
        (
            "[sink]\ntype = \"http\"\nfailover = [\"http://ok:8080\",\n  \"ftp://x\"]\nurl = \"http://h/x\"\n",
            "sink.failover[1]",
            "ftp://x",
            "expected http://host:port/path, got \"ftp://x\"",
        ),
    ] {
        let text = format!("{MINIMAL}{sink}");
        let line = 1 + text.lines().position(|l| l.contains(bad)).unwrap();
        let (p, err) = check_fails(&s, text.as_bytes());
        assert_eq!(
            err,
            format!("tailbeat: {}:{line}: {key}: {what}\n", p.display())
        );
    }
}
