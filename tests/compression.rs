//! `batch.compression` end to end: the real binary through the file sink and the HTTP sink,
//! for each codec, and `tailbeat decode` on what arrived gives the lines exactly as written.

mod common;
use common::http::{HttpServer, Reply};
use common::*;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tailbeat::frame::{Codec, FrameReader, Item};

const N: u64 = 3000;

/// Lines that test the bytes: quotes, backslashes, a `\r` kept before the newline, tabs,
/// multi-byte UTF-8, and the usual repetitive syslog text.
fn lines() -> Vec<String> {
    (0..N)
        .map(|i| match i % 5 {
            0 => format!(
                "z {i:08} Nov 30 10:00:00 gw-1 modbusd[42]: poll slave {} ok",
                i % 7
            ),
            1 => format!("z {i:08} quote \" backslash \\ tab \t end"),
            2 => format!("z {i:08} ünïcödé ✓ 温度 {}\r", i * 31),
            3 => line("z", i).trim_end().to_string(),
            _ => format!("z {i:08} {}", "abc".repeat((i % 50) as usize)),
        })
        .collect()
}

fn write_log(s: &Scratch) -> std::path::PathBuf {
    let f = s.path("logs/app.log");
    let text: String = lines().iter().map(|l| format!("{l}\n")).collect();
    append(&f, &text);
    f
}

/// The `"line"` of every object `tailbeat decode` prints for `p`, JSON escapes undone.
fn decoded(p: &Path) -> Vec<String> {
    let out = Command::new(BIN).arg("decode").arg(p).output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let at = l.find("\"line\":\"").expect("a line field") + 8;
            unescape(&l[at..])
        })
        .collect()
}

/// A JSON string body up to its closing quote.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match c {
            '"' => return out,
            '\\' => match it.next().unwrap() {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    let h: String = it.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&h, 16).unwrap()).unwrap());
                }
                c => out.push(c),
            },
            c => out.push(c),
        }
    }
    panic!("unterminated string: {s}")
}

/// How many of the frames in `p` are stored with each codec: (plain, compressed with `codec`).
fn stored_as(p: &Path, codec: Codec) -> (usize, usize) {
    let f = std::fs::File::open(p).unwrap();
    let mut r = FrameReader::new(f, tailbeat::frame::MAX_PAYLOAD);
    let (mut plain, mut packed) = (0, 0);
    while let Some(i) = r.next_item().unwrap() {
        match i {
            Item::Frame { bytes, .. } => {
                let h =
                    tailbeat::frame::Header::parse(bytes, tailbeat::frame::MAX_PAYLOAD).unwrap();
                match h.codec() {
                    Codec::None => plain += 1,
                    c => {
                        assert_eq!(c, codec);
                        packed += 1
                    }
                }
            }
            other => panic!("damage in {}: {other:?}", p.display()),
        }
    }
    (plain, packed)
}

fn check(p: &Path, codec: Codec) {
    let want = lines();
    let got = decoded(p);
    assert_eq!(got.len(), want.len(), "{codec}");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "{codec}: line {i}");
    }
    let (plain, packed) = stored_as(p, codec);
    if codec == Codec::None {
        assert_eq!(packed, 0);
    } else {
        // Full frames (64 KiB) compress; only a short last one may stay plain.
        assert!(
            packed >= 3 && plain <= 1,
            "{codec}: {plain} plain, {packed} compressed"
        );
    }
    let bytes = std::fs::metadata(p).unwrap().len();
    let input: usize = want.iter().map(|l| l.len() + 1).sum();
    eprintln!("{codec}: {bytes} bytes for {input} bytes of lines");
    if codec != Codec::None {
        assert!(bytes * 2 < input as u64, "{codec}: {bytes} of {input}");
    }
}

fn codecs() -> [(Codec, &'static str); 3] {
    [
        (Codec::None, "none"),
        (Codec::Deflate, "deflate"),
        (Codec::Lz4, "lz4"),
    ]
}

#[test]
fn each_codec_through_the_file_sink_decodes_to_the_lines_as_written() {
    for (codec, name) in codecs() {
        let s = Scratch::new(&format!("z-file-{name}"));
        let log = write_log(&s);
        let cfg = s.config(
            "",
            &input("app", log.to_str().unwrap(), ""),
            &format!("[batch]\ncompression = \"{name}\"\n"),
        );
        let agent = Agent::start(&s, &cfg);
        wait_lines(&s.path("out.tbf"), N as usize, 30);
        agent.stop();
        check(&s.path("out.tbf"), codec);
    }
}

#[test]
fn each_codec_through_the_http_sink_decodes_to_the_lines_as_written() {
    for (codec, name) in codecs() {
        let s = Scratch::new(&format!("z-http-{name}"));
        let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let srv = {
            let bodies = bodies.clone();
            HttpServer::start(Box::new(move |r| {
                bodies.lock().unwrap().push(r.body.clone());
                Reply::status(200)
            }))
        };
        let log = write_log(&s);
        let cfg = s.config(
            "",
            &input("app", log.to_str().unwrap(), ""),
            &format!(
                "[batch]\ncompression = \"{name}\"\n[sink]\ntype = \"http\"\nurl = \"{}\"\n",
                srv.url("/ingest")
            ),
        );
        let agent = Agent::start(&s, &cfg);
        let out = s.path("bodies.tbf");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            std::fs::write(&out, bodies.lock().unwrap().concat()).unwrap();
            if read_sink(&out).len() >= N as usize || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        agent.stop();
        std::fs::write(&out, bodies.lock().unwrap().concat()).unwrap();
        check(&out, codec);
    }
}
