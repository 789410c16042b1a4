//! The `tailbeat` command line: parses arguments, calls the library, maps errors to exit
//! codes (0 ok, 1 runtime error, 2 bad usage or config).

#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tailbeat::config::{self, Config};
use tailbeat::frame::{self, FrameReader, Item, Kind};

const USAGE: &str = "\
tailbeat: tails log files and ships them as checksummed frames

usage:
  tailbeat run [--config FILE] [--log-level LEVEL] [--once]
      Run the agent. Without --config, runs the built-in demo: tails examples/logs/*.log
      into tailbeat-data/frames.tbf. SIGHUP reloads FILE; SIGTERM/SIGINT stop cleanly.
      --once: read every file to its end, deliver everything, and exit.
  tailbeat check --config FILE
      Validate a config; prints the file, line and key at fault.
  tailbeat decode [FILE|DIR|-]...
      Print frames (a sink file, a spool segment or directory, stdin) as JSON lines.
";

/// The consumer's usage, in builds that have it (cargo feature `consume`).
#[cfg(feature = "consume")]
const CONSUME_USAGE: &str =
    "  tailbeat consume --broker mqtt://HOST:PORT [--topic T]... [--group G] [--client-id ID]
                   [--out DIR|-] [--state DIR]
      Read the frames agents publish (default topics tailbeat/+/frames and
      tailbeat/+/+/frames) as JSON lines on stdout or one file per stream in DIR, each
      line once: a persistent session, repeats dropped by per-stream marks kept in
      --state (default ./tailbeat-consume), gaps reported. --group G shares the load
      ($share/G/...) between consumers. See README, Consuming.
";
#[cfg(not(feature = "consume"))]
const CONSUME_USAGE: &str = "";
/// The fleet viewer's usage, in builds that have it (cargo feature `fleet`).
#[cfg(feature = "fleet")]
const FLEET_USAGE: &str =
    "  tailbeat fleet --broker mqtt://HOST:PORT [--prefix P] [--filter TAG=VALUE]... [--json]
                 [--once [--for D]] [--interval D] [--max-agents N]
      Show every agent of the fleet (topics P/+/state, heartbeat, status/+, events; P
      defaults to tailbeat): a live table in a terminal, a line per change when piped, a
      JSON line per change with --json. --once: a snapshot once the retained messages are
      in (and D more), then exit. See README, Fleet view.
";
#[cfg(not(feature = "fleet"))]
const FLEET_USAGE: &str = "";
const USAGE_END: &str = "  tailbeat --version | --help\n";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("check") => check(&args[1..]),
        Some("decode") => decode(&args[1..]),
        #[cfg(feature = "consume")]
        Some("consume") => consume(&args[1..]),
        #[cfg(feature = "fleet")]
        Some("fleet") => fleet(&args[1..]),
        Some("--version" | "-V") => {
            println!("tailbeat {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--help" | "-h" | "help") => {
            print!("{USAGE}{CONSUME_USAGE}{FLEET_USAGE}{USAGE_END}");
            ExitCode::SUCCESS
        }
        Some(other) => usage(&format!("unknown command {other:?}")),
        None => usage("a command is needed"),
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("tailbeat: {msg}\n\n{USAGE}{CONSUME_USAGE}{FLEET_USAGE}{USAGE_END}");
    ExitCode::from(2)
}

struct Opts {
    config: Option<PathBuf>,
    log_level: Option<config::LogLevel>,
    once: bool,
}

fn opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        config: None,
        log_level: None,
        once: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (k, inline) = match a.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        let mut val = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or(format!("{k} needs a value"))
        };
        match k {
            "--config" | "-c" => o.config = Some(PathBuf::from(val()?)),
            "--log-level" => {
                o.log_level = Some(val()?.parse().map_err(|e| format!("--log-level: {e}"))?)
            }
            "--once" => o.once = true,
            _ => return Err(format!("unknown option {a:?}")),
        }
    }
    Ok(o)
}

fn load(o: &Opts) -> Result<Config, ExitCode> {
    let r = match &o.config {
        Some(p) => Config::load(p),
        None => Config::parse(config::DEMO).map_err(|mut e| {
            e.path = Some("<built-in demo config>".into());
            e
        }),
    };
    r.map_err(|e| {
        eprintln!("tailbeat: {e}");
        ExitCode::from(2)
    })
}

fn run(args: &[String]) -> ExitCode {
    let o = match opts(args) {
        Ok(o) => o,
        Err(e) => return usage(&e),
    };
    let mut cfg = match load(&o) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(l) = o.log_level {
        cfg.log_level = l;
    }
    tailbeat::logger::init(cfg.level());
    if o.config.is_none() {
        log::info!(
            "no --config: running the built-in demo (tail examples/logs/*.log into tailbeat-data/frames.tbf; read it with `tailbeat decode tailbeat-data/frames.tbf`)"
        );
    }
    let opts = tailbeat::RunOpts {
        config_path: o.config,
        once: o.once,
    };
    match tailbeat::run(cfg, opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("tailbeat: {e}");
            ExitCode::from(1)
        }
    }
}

fn check(args: &[String]) -> ExitCode {
    let o = match opts(args) {
        Ok(o) => o,
        Err(e) => return usage(&e),
    };
    if o.config.is_none() {
        return usage("check needs --config FILE");
    }
    match load(&o) {
        Ok(c) => {
            println!(
                "{}: ok: {} input(s), spool {} bytes ({:?} when full)",
                o.config.as_deref().unwrap_or(Path::new("-")).display(),
                c.inputs.len(),
                c.spool.max_bytes.0,
                c.spool.on_full
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

#[cfg(feature = "consume")]
fn consume(args: &[String]) -> ExitCode {
    let a = match tailbeat::consume::Args::parse(args) {
        Ok(a) => a,
        Err(e) => return usage(&e),
    };
    tailbeat::logger::init(log::LevelFilter::Info);
    match tailbeat::consume::run(a) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tailbeat: consume: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(feature = "fleet")]
fn fleet(args: &[String]) -> ExitCode {
    let a = match tailbeat::fleetview::Args::parse(args) {
        Ok(a) => a,
        Err(e) => return usage(&e),
    };
    tailbeat::logger::init(log::LevelFilter::Warn);
    match tailbeat::fleetview::run(a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tailbeat: fleet: {e}");
            ExitCode::from(1)
        }
    }
}

fn decode(args: &[String]) -> ExitCode {
    let mut inputs: Vec<PathBuf> = Vec::new();
    for a in args {
        let p = PathBuf::from(a);
        if p.is_dir() {
            // A spool directory: its segments in order.
            let mut segs: Vec<PathBuf> = std::fs::read_dir(&p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "seg"))
                .collect();
            tailbeat::sort::sort(&mut segs);
            inputs.extend(segs);
        } else {
            inputs.push(p);
        }
    }
    if inputs.is_empty() {
        inputs.push("-".into());
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut bad = 0u64;
    for p in &inputs {
        let r: Box<dyn Read> = if p.as_os_str() == "-" {
            Box::new(io::stdin().lock())
        } else {
            match std::fs::File::open(p) {
                Ok(f) => Box::new(f),
                Err(e) => {
                    eprintln!("tailbeat: {}: {e}", p.display());
                    return ExitCode::from(1);
                }
            }
        };
        match decode_one(r, p, &mut out, &mut bad) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tailbeat: {}: {e}", p.display());
                return ExitCode::from(1);
            }
        }
    }
    match out.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            eprintln!("tailbeat: {e}");
            return ExitCode::from(1);
        }
        _ => {}
    }
    if bad > 0 {
        eprintln!("tailbeat: {bad} damaged region(s) skipped");
    }
    ExitCode::SUCCESS
}

fn decode_one(r: impl Read, p: &Path, out: &mut impl Write, bad: &mut u64) -> io::Result<()> {
    let mut fr = FrameReader::new(r, frame::MAX_PAYLOAD);
    let mut dec = frame::Decoder::default();
    while let Some(item) = fr.next_item()? {
        match item {
            Item::Frame { pos, bytes } => {
                let kind = frame::Header::parse(bytes, frame::MAX_PAYLOAD).map(|h| h.kind);
                let res = match kind {
                    Ok(Kind::Checkpoint) => frame::decode_checkpoint(bytes)
                        .map(|c| frame::json::write_checkpoint(out, &c)),
                    _ => dec.batch(bytes).map(|b| frame::json::write_batch(out, &b)),
                };
                match res {
                    Ok(w) => w?,
                    Err(e) => {
                        *bad += 1;
                        eprintln!("tailbeat: {}: byte {pos}: {e}", p.display());
                    }
                }
            }
            Item::Skipped { pos, len, why } => {
                *bad += 1;
                eprintln!(
                    "tailbeat: {}: byte {pos}: {why}; skipped {len} bytes",
                    p.display()
                );
            }
            Item::Torn { pos, len, why } => {
                *bad += 1;
                eprintln!(
                    "tailbeat: {}: byte {pos}: {why}; {len} bytes at the end are not a whole frame",
                    p.display()
                );
            }
        }
    }
    Ok(())
}
