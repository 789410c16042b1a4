//! Shared by the integration tests: run the real `tailbeat` binary on a config in a scratch
//! directory, write and rotate logs, read back what the sink got.
#![allow(dead_code)]

/// Needs the MQTT client's packet codec (`rumqttc`), which only the `mqtt` feature brings.
#[cfg(feature = "mqtt")]
pub mod broker;
pub mod configserver;
pub mod disk;
pub mod http;
pub mod tls;

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tailbeat::frame::{self, FrameReader, Item};

pub const BIN: &str = env!("CARGO_BIN_EXE_tailbeat");

/// A scratch directory, removed on drop unless the test failed.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("tailbeat-it-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("logs")).unwrap();
        Scratch(d)
    }
    pub fn path(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
    /// A config with the test's own inputs and extra keys, file sink at `out.tbf`.
    pub fn config(&self, top: &str, inputs: &str, tables: &str) -> PathBuf {
        let poll = if top.contains("poll_interval") {
            ""
        } else {
            "poll_interval = \"50ms\"\n"
        };
        let text = format!(
            "data_dir = \"{d}/data\"\ninstance_id = \"it\"\n{poll}stats_interval = \"1s\"\n{top}\n{inputs}\n{tables}\n",
            d = self.0.display()
        );
        let text = if text.contains("[sink]") {
            text
        } else {
            format!(
                "{text}\n[sink]\ntype = \"file\"\npath = \"{}/out.tbf\"\nfsync = false\n",
                self.0.display()
            )
        };
        let p = self.path("tailbeat.toml");
        fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// One `[[input]]` table.
pub fn input(name: &str, glob: &str, extra: &str) -> String {
    format!("[[input]]\nname = \"{name}\"\npaths = [\"{glob}\"]\nstart_at = \"head\"\nrotate_wait = \"300ms\"\n{extra}\n")
}

/// The running agent.
pub struct Agent {
    pub child: Child,
    pub stderr: PathBuf,
}

impl Agent {
    pub fn start(s: &Scratch, config: &Path) -> Agent {
        let n = fs::read_dir(&s.0).unwrap().count();
        let stderr = s.path(&format!("agent-{n}.log"));
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Agent { child, stderr }
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// The agent's OS thread count.
    pub fn threads(&self) -> u32 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
    /// SIGTERM and wait; returns stderr.
    pub fn stop(mut self) -> String {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "agent exited with {st}: {}", self.log());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "agent did not stop: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.log()
    }
    pub fn log(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }
    /// Waits until the log contains `what` `n` times.
    pub fn wait_log_count(&self, what: &str, n: usize, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.log().matches(what).count() < n {
            assert!(
                Instant::now() < deadline,
                "not {n} of {what:?} in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the log contains `what`.
    pub fn wait_log(&self, what: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.log().contains(what) {
            assert!(
                Instant::now() < deadline,
                "no {what:?} in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One delivered line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    /// Which frame of the sink file it came in.
    pub frame: usize,
    /// The frame's stream: the instance id, `/pipeline` after it for a fleet pipeline.
    pub instance: String,
    pub seq: u64,
    pub path: String,
    pub ino: u64,
    pub offset: u64,
    pub flags: u8,
    pub text: Vec<u8>,
}

/// Every line in a file of frames, in order; panics on damage (sinks never hold any).
pub fn read_sink(p: &Path) -> Vec<Got> {
    let Ok(f) = fs::File::open(p) else {
        return Vec::new();
    };
    let mut r = FrameReader::new(f, frame::MAX_PAYLOAD);
    let mut dec = frame::Decoder::default();
    let mut out = Vec::new();
    let mut n = 0;
    while let Some(i) = r.next_item().unwrap() {
        match i {
            Item::Frame { bytes, .. } => {
                n += 1;
                let b = dec.batch(bytes).unwrap();
                for l in &b.lines {
                    let s = &b.sources[l.source as usize];
                    out.push(Got {
                        frame: n,
                        instance: b.instance.to_string(),
                        seq: b.seq,
                        path: s.path.to_string(),
                        ino: s.ino,
                        offset: l.offset,
                        flags: l.flags,
                        text: l.text.to_vec(),
                    });
                }
            }
            // The agent may be killed mid-write of the sink file: only the tail may be torn.
            Item::Torn { .. } => {}
            Item::Skipped { pos, why, .. } => panic!("damage in the sink at {pos}: {why}"),
        }
    }
    out
}

/// Lines with repeated frames (a seq seen in an earlier frame) removed, as a consumer
/// would; also returns how many frames were repeats.
pub fn dedup(got: Vec<Got>) -> (Vec<Got>, usize) {
    let mut first_frame: HashMap<u64, usize> = HashMap::new();
    let mut dup_frames = std::collections::HashSet::new();
    let mut out = Vec::new();
    for g in got {
        let first = *first_frame.entry(g.seq).or_insert(g.frame);
        if first == g.frame {
            out.push(g);
        } else {
            dup_frames.insert(g.frame);
        }
    }
    (out, dup_frames.len())
}

/// Waits until the sink holds `n` distinct lines (after de-duplication by seq).
pub fn wait_lines(p: &Path, n: usize, secs: u64) -> Vec<Got> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (g, _) = dedup(read_sink(p));
        if g.len() >= n || Instant::now() > deadline {
            return g;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the de-duplicated sink contents satisfy `done`.
pub fn wait_until(p: &Path, secs: u64, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (g, _) = dedup(read_sink(p));
        if done(&g) || Instant::now() > deadline {
            return g;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A test log line: `{tag} {n:08} ` plus padding to about 100 bytes.
pub fn line(tag: &str, n: u64) -> String {
    format!(
        "{tag} {n:08} the quick brown fox jumps over the lazy dog {}\n",
        "x".repeat((n % 40) as usize)
    )
}

/// The numbers of `tag` lines in `got`, in arrival order.
pub fn numbers(got: &[Got], tag: &str) -> Vec<u64> {
    got.iter()
        .filter_map(|g| {
            let t = std::str::from_utf8(&g.text).ok()?;
            let rest = t.strip_prefix(tag)?.strip_prefix(' ')?;
            rest.get(..8)?.parse().ok()
        })
        .collect()
}

/// Asserts every number 0..n arrived exactly once.
pub fn assert_exactly_once(nums: &[u64], n: u64) {
    let mut count: HashMap<u64, usize> = HashMap::new();
    for &x in nums {
        *count.entry(x).or_default() += 1;
    }
    let missing: Vec<u64> = (0..n).filter(|i| !count.contains_key(i)).collect();
    let twice: Vec<u64> = count
        .iter()
        .filter(|(_, &c)| c > 1)
        .map(|(&k, _)| k)
        .collect();
    assert!(
        missing.is_empty() && twice.is_empty() && nums.len() as u64 == n,
        "{} lines, {} missing (first {:?}), {} repeated (e.g. {:?})",
        nums.len(),
        missing.len(),
        &missing[..missing.len().min(10)],
        twice.len(),
        &twice[..twice.len().min(10)]
    );
}

/// Writes lines `tag 0` .. `tag n-1` to `logs/app.log` and returns its path.
pub fn app_log(s: &Scratch, tag: &str, n: u64) -> PathBuf {
    let f = s.path("logs/app.log");
    let text: String = (0..n).map(|i| line(tag, i)).collect();
    append(&f, &text);
    f
}

/// Appends to a file, creating it.
pub fn append(p: &Path, s: &str) {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .unwrap();
    f.write_all(s.as_bytes()).unwrap();
}

/// Truncates a file in place to nothing (`truncate -s0`, the second half of logrotate's
/// copytruncate): the same inode, no bytes.
pub fn truncate(p: &Path) {
    fs::OpenOptions::new()
        .write(true)
        .open(p)
        .unwrap()
        .set_len(0)
        .unwrap();
}

/// A counter from the agent's last stats line, e.g. `stat(&log, "dropped", "frames")`.
pub fn stat(log: &str, before: &str, after: &str) -> u64 {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains(" read ") && l.contains("spooled"))
        .expect("a stats line");
    let i = line
        .find(before)
        .unwrap_or_else(|| panic!("no {before:?} in {line}"));
    let rest = line[i + before.len()..].trim_start();
    let num: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    assert!(rest[num.len()..].trim_start().starts_with(after), "{line}");
    num.parse().unwrap()
}

/// Spool settings so small that an agent whose sink cannot write stops reading after a few
/// frames; add [`FULL_DISK_SINK`] to make the sink fail.
pub const TINY_SPOOL: &str =
    "[batch]\nmax_bytes = \"1KiB\"\n[spool]\nmax_bytes = \"6KiB\"\nsegment_bytes = \"3KiB\"\n";
/// A file sink that fails every write with ENOSPC.
pub const FULL_DISK_SINK: &str = "[sink]\ntype = \"file\"\npath = \"/dev/full\"\n";

/// An agent that has fallen behind: `logs/app.log` holds 300 `tag` lines, the sink cannot
/// write and the spool is full, so most of the file is unread. Returns the agent, the log's
/// path and size, and the input table (to write a working config later with `TINY_SPOOL`).
pub fn stuck_behind(s: &Scratch, tag: &str) -> (Agent, PathBuf, u64, String) {
    let f = s.path("logs/app.log");
    let mut size = 0;
    for i in 0..300 {
        let l = line(tag, i);
        size += l.len() as u64;
        append(&f, &l);
    }
    let inp = input("app", &f.display().to_string(), "max_line_bytes = 200");
    let a = Agent::start(
        s,
        &s.config("", &inp, &format!("{TINY_SPOOL}{FULL_DISK_SINK}")),
    );
    a.wait_log("spool full", 10);
    (a, f, size, inp)
}

/// Waits up to `secs` for a child to exit; `None` if it is still running then.
pub fn wait_exit(child: &mut std::process::Child, secs: u64) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Context switches of every thread, voluntary and not: how often the process woke up.
pub fn wakeups(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| {
            let s = std::fs::read_to_string(t.path().join("status")).unwrap();
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
