//! `tailbeat consume` against a real Mosquitto that the tests start (with persistence, so
//! that a restart keeps the sessions and what they hold): shared subscriptions (`$share`)
//! and persistent sessions are what these tests are about, and Mosquitto has both, kept
//! across its own restart. (rumqttd 0.20 routes `$share` groups, but keeps sessions in
//! memory only: a restart of it would lose what the test restarts it to keep.) They fail,
//! not skip, if Mosquitto is missing (Debian package `mosquitto`; `.ci/run` installs it).

mod common;
use common::broker::{BrokerPort, Mosquitto};
use common::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Mosquitto with persistence in `s/broker` (kept across its restarts), behind `port` (the
/// broker's TCP port, held by the test for its whole life: see common::broker,
/// `BrokerPort`). No queue limit: a consumer killed for a while gets everything that waited
/// for it (the default drops past 1,000 messages).
fn mosquitto(s: &Scratch, port: &BrokerPort) -> Mosquitto {
    let dir = s.path("broker");
    std::fs::create_dir_all(&dir).unwrap();
    let n = std::fs::read_dir(&s.0).unwrap().count();
    Mosquitto::start(
        &dir,
        &format!(
            "persistence true\npersistence_location {}/\nmax_queued_messages 0\n",
            dir.display()
        ),
        Some(&s.path(&format!("mosquitto-{n}.log"))),
    )
    .behind(port)
}

/// A running `tailbeat consume`, writing to `out/` with its state in `state/`.
struct Consumer {
    child: Child,
    log: PathBuf,
    out: PathBuf,
}

impl Consumer {
    /// Starts consumer `name` (its directories are named after it), and waits until it has
    /// subscribed.
    fn start(s: &Scratch, port: u16, name: &str, extra: &[&str]) -> Consumer {
        let out = s.path(&format!("{name}-out"));
        let mut args = vec!["--out".to_string(), out.display().to_string()];
        args.extend(extra.iter().map(|a| a.to_string()));
        Consumer::start_with(s, port, name, &args, Stdio::null(), out)
    }

    /// [`start`](Self::start) with the output flags in `args` and stdout to `stdout`.
    fn start_with(
        s: &Scratch,
        port: u16,
        name: &str,
        args: &[String],
        stdout: Stdio,
        out: PathBuf,
    ) -> Consumer {
        let n = std::fs::read_dir(&s.0).unwrap().count();
        let log = s.path(&format!("{name}-{n}.log"));
        let child = Command::new(BIN)
            .args(["consume", "--broker", &format!("mqtt://127.0.0.1:{port}")])
            .args(["--client-id", name])
            .arg("--state")
            .arg(s.path(&format!("{name}-state")))
            .args(args)
            .stdout(stdout)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let c = Consumer { child, log, out };
        c.wait_log("subscribed to", 15);
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_log(&self, what: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.log().contains(what) {
            assert!(
                Instant::now() < deadline,
                "no {what:?} in the consumer's log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM; waits for a clean exit and returns the log.
    fn stop(mut self) -> String {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let st = wait_exit(&mut self.child, 20).expect("consume did not stop");
        assert!(st.success(), "consume exited with {st}: {}", self.log());
        self.log()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every output line of the `.jsonl` files in `dirs`, as (stream, seq, line text).
fn outputs(dirs: &[&Path]) -> Vec<(String, u64, String)> {
    let mut v = Vec::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        for e in rd.flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap();
            // Whole lines only: a consumer may be halfway through one.
            for l in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
                v.push((
                    field(l, "instance"),
                    field(l, "seq").parse().unwrap(),
                    field(l, "line"),
                ));
            }
        }
    }
    v
}

/// A field of a JSON line, as written by `frame::json` (strings without escapes here).
fn field(l: &str, k: &str) -> String {
    let rest = &l[l
        .find(&format!("\"{k}\":"))
        .unwrap_or_else(|| panic!("{k} in {l}"))
        + k.len()
        + 3..];
    match rest.strip_prefix('"') {
        Some(s) => s[..s.find('"').unwrap()].to_string(),
        None => rest[..rest.find([',', '}']).unwrap()].to_string(),
    }
}

/// The numbers of the `tag` lines in what the consumers wrote.
fn nums(dirs: &[&Path], tag: &str) -> Vec<u64> {
    outputs(dirs)
        .iter()
        .filter_map(|(_, _, l)| {
            l.strip_prefix(tag)?
                .strip_prefix(' ')?
                .get(..8)?
                .parse()
                .ok()
        })
        .collect()
}

/// Waits until the consumers have written at least `n` `tag` lines.
fn wait_nums(dirs: &[&Path], tag: &str, n: usize, secs: u64) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = nums(dirs, tag);
        if v.len() >= n || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs an agent with `--once` on `cfg` until it has delivered everything.
fn agent_once(s: &Scratch, cfg: &Path) -> Child {
    let n = std::fs::read_dir(&s.0).unwrap().count();
    Command::new(BIN)
        .args(["run", "--once", "--config"])
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(s.path(&format!("agent-{n}.log"))).unwrap())
        .spawn()
        .unwrap()
}

#[test]
fn two_consumers_in_a_group_write_every_line_once_through_a_broker_restart_and_a_kill_9() {
    let s = Scratch::new("consume-group");
    let port = BrokerPort::new();
    let broker = mosquitto(&s, &port);
    let group = ["--group", "g"];
    let a = Consumer::start(&s, port.port, "a", &group);
    let b = Consumer::start(&s, port.port, "b", &group);
    let (out_a, out_b) = (a.out.clone(), b.out.clone());
    let dirs = [out_a.as_path(), out_b.as_path()];
    // Small frames (about 10 lines each), so there are many messages to split and a kill
    // lands in the middle of them.
    let f = s.path("logs/app.log");
    let cfg = s.config(
        "[batch]\nmax_bytes = \"1KiB\"\n",
        &input("app", &f.display().to_string(), "max_line_bytes = 200"),
        &format!(
            "[sink]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{}\"\n",
            port.port
        ),
    );
    let half = 3000;
    append(&f, &(0..half).map(|i| line("g", i)).collect::<String>());
    let mut agent = agent_once(&s, &cfg);
    // Consumer a dies mid-stream, at any point of its write → fsync → marks → PUBACK.
    let deadline = Instant::now() + Duration::from_secs(30);
    while nums(&[&out_a], "g").len() < 200 {
        assert!(Instant::now() < deadline, "a wrote nothing: {}", a.log());
        std::thread::sleep(Duration::from_millis(5));
    }
    a.kill9();
    let at_kill = nums(&dirs, "g").len();
    let st = wait_exit(&mut agent, 60).expect("the agent did not deliver everything");
    assert!(st.success());
    // Everything is on the broker now, some of it held for a (dead): the broker restarts
    // and keeps it (persistence), b reconnects. Not while the agent publishes: Mosquitto
    // 2.0 does not restore `$share` subscriptions at a restart, and drops what is published
    // before a member subscribes again (README, Consuming).
    broker.stop();
    let _broker = mosquitto(&s, &port);
    let a = Consumer::start(&s, port.port, "a", &group);
    append(
        &f,
        &(half..2 * half).map(|i| line("g", i)).collect::<String>(),
    );
    let mut agent = agent_once(&s, &cfg);
    assert!(wait_exit(&mut agent, 60)
        .expect("the agent did not finish")
        .success());
    wait_nums(&dirs, "g", 2 * half as usize, 60);
    let (log_a, log_b) = (a.stop(), b.stop());
    let got = nums(&dirs, "g");
    assert_exactly_once(&got, 2 * half);
    let (na, nb) = (nums(&[&out_a], "g").len(), nums(&[&out_b], "g").len());
    eprintln!(
        "{} lines: a wrote {na}, b {nb}; {at_kill} were out when a was killed\na: {}\nb: {}",
        2 * half,
        log_a.lines().last().unwrap_or(""),
        log_b.lines().last().unwrap_or("")
    );
    assert!(
        at_kill < 2 * half as usize,
        "the kill was not in the middle"
    );
    assert!(
        na > 0 && nb > 0,
        "the group did not share the load: a {na}, b {nb}"
    );
    assert!(
        log_b.contains("reconnecting in"),
        "b never saw the broker go: {log_b}"
    );
}

#[test]
fn one_consumer_writes_every_line_once_through_a_broker_restart_while_the_agent_publishes() {
    let s = Scratch::new("consume-restart");
    let port = BrokerPort::new();
    let broker = mosquitto(&s, &port);
    let c = Consumer::start(&s, port.port, "c", &[]);
    let out = c.out.clone();
    let f = s.path("logs/app.log");
    let cfg = s.config(
        "[batch]\nmax_bytes = \"1KiB\"\n",
        &input("app", &f.display().to_string(), "max_line_bytes = 200"),
        &format!(
            "[sink]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{}\"\n",
            port.port
        ),
    );
    let n = 30_000;
    append(&f, &(0..n).map(|i| line("r", i)).collect::<String>());
    let mut agent = agent_once(&s, &cfg);
    let deadline = Instant::now() + Duration::from_secs(30);
    while nums(&[&out], "r").len() < 2000 {
        assert!(Instant::now() < deadline, "nothing written: {}", c.log());
        std::thread::sleep(Duration::from_millis(5));
    }
    // With frames in flight both ways: the agent sends again what lost its PUBACK, the
    // broker delivers again what the consumer had not acknowledged.
    broker.stop();
    let _broker = mosquitto(&s, &port);
    assert!(wait_exit(&mut agent, 60)
        .expect("the agent did not finish")
        .success());
    wait_nums(&[&out], "r", n as usize, 60);
    let log = c.stop();
    eprintln!("{}", log.lines().last().unwrap_or(""));
    assert_exactly_once(&nums(&[&out], "r"), n);
    assert!(log.contains("reconnecting in"), "{log}");
}

/// Publishes one message at QoS 1 with a client of its own and waits for the PUBACK.
fn publish(port: u16, topic: &str, payload: Vec<u8>) {
    publish_paced(port, vec![(topic.to_string(), payload)], 1, Duration::ZERO);
}

/// Publishes `msgs` (topic, payload) at QoS 1 on one connection of its own, in order,
/// `round` at a time with a pause between (so that a consumer takes them over a while), and
/// waits for every PUBACK.
fn publish_paced(port: u16, msgs: Vec<(String, Vec<u8>)>, round: usize, pause: Duration) {
    use rumqttc::mqttbytes::v4::{Connect, Packet, Publish};
    use rumqttc::mqttbytes::QoS;
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut out = bytes::BytesMut::new();
    Packet::Connect(Connect::new(format!("test-pace-{}", std::process::id())))
        .write(&mut out, 1 << 20)
        .unwrap();
    c.write_all(&out).unwrap();
    let n = msgs.len();
    assert!(n < u16::MAX as usize);
    for (k, chunk) in msgs.chunks(round).enumerate() {
        let mut out = bytes::BytesMut::new();
        for (j, (topic, payload)) in chunk.iter().enumerate() {
            let mut p = Publish::new(topic, QoS::AtLeastOnce, payload.clone());
            p.pkid = (k * round + j + 1) as u16;
            Packet::Publish(p).write(&mut out, 16 << 20).unwrap();
        }
        c.write_all(&out).unwrap();
        std::thread::sleep(pause);
    }
    let mut rx = bytes::BytesMut::new();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut acked = 0;
    while acked < n {
        match Packet::read(&mut rx, 1 << 20) {
            Ok(Packet::PubAck(_)) => acked += 1,
            Ok(_) => continue,
            Err(_) => {
                let mut buf = [0u8; 4096];
                let k = c.read(&mut buf).unwrap();
                assert!(k > 0, "the broker closed the publisher's connection");
                rx.extend_from_slice(&buf[..k]);
            }
        }
    }
    let mut out = bytes::BytesMut::new();
    Packet::Disconnect.write(&mut out, 16).unwrap();
    let _ = c.write_all(&out);
}

/// Frame `seq` of `stream`, one line: `t {seq:08}`.
fn frame(stream: &str, seq: u64) -> Vec<u8> {
    let text = format!("t {seq:08}");
    let src = tailbeat::frame::SourceRef {
        path: "/var/log/app.log",
        dev: 1,
        ino: 2,
        fp_len: 0,
        fp: 0,
    };
    let mut b = tailbeat::frame::BatchBuilder::new(10, 4096);
    assert!(b.push(
        &src,
        seq * 100,
        seq * 100 + 11,
        1_764_000_000_000,
        0,
        text.as_bytes()
    ));
    b.finish(stream, seq)
}

#[test]
fn a_restarted_consumer_drops_repeats_gets_what_waited_and_reports_gaps() {
    let s = Scratch::new("consume-one");
    let port = BrokerPort::new();
    let _broker = mosquitto(&s, &port);
    let topic = "tailbeat/site-1/frames";
    let fleet_topic = "tailbeat/site-1/nginx/frames";
    let c = Consumer::start(&s, port.port, "c", &[]);
    let out = c.out.clone();
    for seq in 1..=3 {
        publish(port.port, topic, frame("site-1", seq));
    }
    // A fleet pipeline's stream is its own: same seqs, no repeat.
    publish(port.port, fleet_topic, frame("site-1/nginx", 1));
    wait_nums(&[&out], "t", 4, 20);
    // A repeat (the agent sent it again: its PUBACK was lost), then a gap: 4 and 5 never
    // came.
    publish(port.port, topic, frame("site-1", 3));
    publish(port.port, topic, frame("site-1", 6));
    wait_nums(&[&out], "t", 5, 20);
    c.wait_log("seq 6 after 3: 2 frame(s) missing, possible loss", 10);
    // Killed once 6 is in the saved marks, the snapshot or the journal (killed between its
    // write and its marks, it would be cut at the restart and written again: right, but not
    // what this test is about).
    let saved = || {
        ["c-state/marks", "c-state/marks.journal"]
            .iter()
            .map(|p| std::fs::read_to_string(s.path(p)).unwrap_or_default())
            .collect::<String>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !saved()
        .lines()
        .any(|l| l.starts_with("6 ") && l.ends_with(" site-1"))
    {
        assert!(Instant::now() < deadline, "6 never reached the marks");
        std::thread::sleep(Duration::from_millis(5));
    }
    c.kill9();
    // While it is down: a repeat of 6 and a new 7 wait on the broker for its session.
    publish(port.port, topic, frame("site-1", 6));
    publish(port.port, topic, frame("site-1", 7));
    let c = Consumer::start(&s, port.port, "c", &[]);
    wait_nums(&[&out], "t", 6, 20);
    let log = c.stop();
    let mut got: Vec<(String, u64)> = outputs(&[&out])
        .into_iter()
        .map(|(stream, seq, _)| (stream, seq))
        .collect();
    got.sort();
    let want: Vec<(String, u64)> = [1, 2, 3, 6, 7]
        .into_iter()
        .map(|q| ("site-1".to_string(), q))
        .chain([("site-1/nginx".to_string(), 1)])
        .collect();
    assert_eq!(got, want, "{log}");
    // 7 written; the repeat of 6 dropped (and 6 itself, if the kill came before its
    // PUBACK); no gap: 7 follows 6.
    assert!(
        log.contains("stopped: 1 frames (1 lines) written, ")
            && !log.contains(" 0 repeats dropped")
            && log.contains(" 0 gaps "),
        "{log}"
    );
    let files: HashMap<String, u64> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    assert!(
        files.contains_key("site-1.jsonl") && files.contains_key("site-1%2Fnginx.jsonl"),
        "one file per stream: {files:?}"
    );
    use std::os::unix::fs::PermissionsExt;
    for p in [
        out.join("site-1.jsonl"),
        s.path("c-state/marks"),
        s.path("c-state/marks.journal"),
    ] {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
}

#[test]
fn a_consumer_killed_mid_run_replays_its_journal_and_writes_every_line_once() {
    let s = Scratch::new("consume-journal");
    let port = BrokerPort::new();
    let _broker = mosquitto(&s, &port);
    let c = Consumer::start(&s, port.port, "c", &[]);
    let out = c.out.clone();
    // 40 streams of 50 frames, a round of one frame per stream at a time: each batch
    // moves many streams' marks.
    let (streams, seqs) = (40u64, 50u64);
    let name = |i: u64| format!("gw-{i:02}");
    let msgs: Vec<(String, Vec<u8>)> = (1..=seqs)
        .flat_map(|q| {
            (0..streams).map(move |i| (format!("tailbeat/{}/frames", name(i)), frame(&name(i), q)))
        })
        .collect();
    let publisher = std::thread::spawn(move || {
        publish_paced(port.port, msgs, streams as usize, Duration::from_millis(20))
    });
    // Killed mid-run, at whatever point of write → fsync → journal → PUBACK it is.
    let deadline = Instant::now() + Duration::from_secs(30);
    while outputs(&[&out]).len() < 400 {
        assert!(Instant::now() < deadline, "nothing written: {}", c.log());
        std::thread::sleep(Duration::from_millis(2));
    }
    c.kill9();
    let at_kill = outputs(&[&out]).len();
    // Its marks since the start are in the journal: whole records of the streams each batch
    // moved, not a snapshot of every stream per batch.
    let journal = s.path("c-state/marks.journal");
    let text = std::fs::read_to_string(&journal).unwrap_or_default();
    let records = text.lines().filter(|l| l.starts_with("end ")).count();
    assert!(records > 1, "no journal in use: {text:?}");
    // And a record cut short after them (a crash inside its write): it must not count, or
    // gw-00's frames up to 50 would be dropped as repeats.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .unwrap();
    f.write_all(b"50 0 gw-00\nend 1").unwrap();
    drop(f);
    publisher.join().unwrap();
    let c = Consumer::start(&s, port.port, "c", &[]);
    let n = (streams * seqs) as usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while outputs(&[&out]).len() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n}: {}",
            outputs(&[&out]).len(),
            c.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = c.stop();
    let mut got: Vec<(String, u64)> = outputs(&[&out])
        .into_iter()
        .map(|(stream, seq, _)| (stream, seq))
        .collect();
    got.sort();
    let mut want: Vec<(String, u64)> = (0..streams)
        .flat_map(|i| (1..=seqs).map(move |q| (name(i), q)))
        .collect();
    want.sort();
    assert_eq!(got.len(), want.len(), "{log}");
    assert!(
        got == want,
        "not every line exactly once; {at_kill} out at the kill\n{log}"
    );
    assert!(
        at_kill < n && log.contains("record cut short"),
        "{at_kill} of {n} at the kill; {log}"
    );
    eprintln!(
        "{at_kill} of {n} out at the kill; {}",
        log.lines().last().unwrap_or("")
    );
}

#[test]
fn on_stdout_each_line_is_a_json_object_and_a_message_that_is_not_a_frame_is_counted() {
    let s = Scratch::new("consume-stdout");
    let port = BrokerPort::new();
    let _broker = mosquitto(&s, &port);
    let stdout = s.path("stdout.jsonl");
    let c = Consumer::start_with(
        &s,
        port.port,
        "c",
        &["--out".into(), "-".into()],
        Stdio::from(std::fs::File::create(&stdout).unwrap()),
        stdout.clone(),
    );
    publish(port.port, "tailbeat/gw-9/frames", b"not a frame".to_vec());
    publish(port.port, "tailbeat/gw-9/frames", frame("gw-9", 41));
    c.wait_log("not a frame", 20);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&stdout).unwrap().is_empty() {
        assert!(Instant::now() < deadline, "nothing on stdout: {}", c.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = c.stop();
    assert_eq!(
        std::fs::read_to_string(&stdout).unwrap(),
        "{\"instance\":\"gw-9\",\"seq\":41,\"source\":\"/var/log/app.log\",\"offset\":4100,\"ts\":1764000000000,\"line\":\"t 00000041\"}\n"
    );
    assert!(
        log.contains("stopped: 1 frames (1 lines) written, 0 repeats dropped, 0 gaps (0 frames possibly lost), 1 bad messages"),
        "{log}"
    );
}
