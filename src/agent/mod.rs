//! The running agent: the tasks that move lines from files to the sink, on one thread.
//!
//! Owns the pipeline's state (tailer, open batch, spool, counters) behind one `RefCell` that
//! no task holds across an `.await`. Tasks:
//! - **collect**: scan and read files → batch → spool, sleeping when the files are quiet;
//! - **deliver**: spool → sink → acknowledgement → release, backing off when the sink fails;
//! - **signals**: SIGHUP reloads the config file, SIGTERM/SIGINT shut down.
//!
//! The main thread parks on a futex (`future::block_on`), not in the reactor: the reactor is
//! left to async-io's own thread, which blocks in epoll until the next timer or signal.
//! Measured idle: with `async_io::block_on` on the main thread, the async-io thread woke
//! about ten times after each of the main thread's wake-ups (its spin-then-sleep back-off);
//! this way each timer costs one wake-up per thread.
//!
//! Shutdown: the open batch goes to the spool, the sink gets `shutdown_timeout` to take the
//! backlog, and whatever is left stays in the spool for the next start, behind a checkpoint.

use crate::config::Config;
use crate::control::remote::Remote;
use crate::frame::BatchBuilder;
use crate::input::Tailer;
use crate::sink::AnySink;
use crate::spool::{Limits, Spool};
use crate::stats::{Counters, Latency};
use crate::Error;

mod collect;
mod deliver;

use collect::collect;
use deliver::deliver;
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;
use smol::{LocalExecutor, Timer};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Shortest sleep between polls while data is flowing; it doubles up to `poll_interval`
/// while the files stay quiet, so an idle agent wakes about once a second.
const MIN_POLL: Duration = Duration::from_millis(20);
/// A checkpoint is written at least this often while anything changes.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A wake-up that coalesces: many notifications before a wait count as one.
#[derive(Clone)]
pub(crate) struct Notify(Sender<()>, Receiver<()>);

impl Notify {
    fn new() -> Notify {
        let (s, r) = smol::channel::bounded(1);
        Notify(s, r)
    }
    pub(crate) fn notify(&self) {
        let _ = self.0.try_send(());
    }
    pub(crate) async fn wait_for(&self, d: Duration) {
        let _ = self
            .1
            .recv()
            .or(async {
                Timer::after(d).await;
                Ok(())
            })
            .await;
    }
}

/// Everything the tasks share. No task holds a borrow across an `.await`.
pub(crate) struct State {
    /// The running config: the local file with the fleet's configs laid over it.
    pub(crate) cfg: Config,
    /// The local file as last read.
    pub(crate) local: Config,
    /// Configs from the fleet.
    pub(crate) remote: Remote,
    pub(crate) instance: String,
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) started: Instant,
    pub(crate) tailer: Tailer,
    batch: BatchBuilder,
    pub(crate) spool: Spool,
    pub(crate) c: Counters,
    pub(crate) lat: Latency,
    /// A frame built but not yet in the spool (the disk was full): appended before anything new.
    pending: Option<Built>,
    new_sink: Option<AnySink>,
    /// `--once`: stop when every file is read to its end and the sink has everything.
    once: bool,
    pub(crate) shutdown: bool,
    collecting: bool,
    last_checkpoint: Instant,
    changed: bool,
}

pub(crate) type Shared = Rc<RefCell<State>>;

/// A finished frame, and for each file in it the offset it reaches: what to commit once the
/// frame is in the spool.
struct Built {
    frame: Vec<u8>,
    ends: Vec<(u64, u64, u64)>,
}

fn limits(cfg: &Config) -> Limits {
    Limits {
        max_bytes: cfg.spool.max_bytes.0,
        segment_bytes: cfg.spool.segment_bytes.0,
        on_full: cfg.spool.on_full,
        fsync: cfg.spool.fsync,
    }
}

fn max_payload(cfg: &Config) -> usize {
    // A frame holds at most batch.max_bytes, or one line of max_line_bytes plus overhead;
    // accept anything written under a larger past config, up to the format's hard limit.
    (cfg.batch.max_bytes.0 as usize * 4).max(1 << 20)
}

/// The instance id: from the config, else the one kept in `data_dir`, else a new one.
fn instance_id(cfg: &Config) -> Result<String, Error> {
    if let Some(id) = &cfg.instance_id {
        return Ok(id.clone());
    }
    let path = cfg.data_dir.join("instance_id");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if !s.is_empty() {
            return Ok(s.to_string());
        }
    }
    let raw = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .unwrap_or_else(|_| format!("{:x}{:x}", now_ms(), std::process::id()));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let id = format!(
        "{}-{}",
        if host.is_empty() { "tailbeat" } else { &host },
        &raw.trim()[..8.min(raw.trim().len())]
    );
    std::fs::write(&path, format!("{id}\n")).map_err(|e| Error::Io {
        what: "write",
        path: path.clone(),
        source: e,
    })?;
    Ok(id)
}

/// How [`run`] runs.
#[derive(Debug, Clone, Default)]
pub struct RunOpts {
    /// The config file, re-read on SIGHUP (`None`: the built-in demo).
    pub config_path: Option<PathBuf>,
    /// Read every file to its end, deliver everything, checkpoint, and exit.
    pub once: bool,
}

/// Runs the agent until SIGTERM or SIGINT (or, with `once`, until everything is delivered).
pub fn run(local: Config, opts: RunOpts) -> Result<(), Error> {
    let RunOpts { config_path, once } = opts;
    std::fs::create_dir_all(&local.data_dir).map_err(|e| Error::Io {
        what: "create",
        path: local.data_dir.clone(),
        source: e,
    })?;
    let mut remote = Remote::load(&local.data_dir);
    let cfg = effective_at_start(&local, &mut remote);
    log::set_max_level(cfg.level());
    let instance = instance_id(&cfg)?;
    let mut c = Counters::default();
    let rec = Spool::open(
        &cfg.data_dir.join("spool"),
        limits(&cfg),
        max_payload(&cfg),
        &mut c,
    )
    .map_err(Error::Spool)?;
    let sink = AnySink::new(&cfg, &instance).map_err(Error::Sink)?;
    log::info!(
        "tailbeat {} starting as {instance:?}: {} input(s), spool {} ({} frames waiting), sink {}",
        env!("CARGO_PKG_VERSION"),
        cfg.inputs.len(),
        cfg.data_dir.join("spool").display(),
        rec.spool.backlog(),
        sink_name(&cfg),
    );
    let tailer = Tailer::new(cfg.inputs.clone(), rec.marks, rec.first_run);
    let batch = BatchBuilder::new(cfg.batch.max_lines, cfg.batch.max_bytes.0 as usize);
    let st: Shared = Rc::new(RefCell::new(State {
        cfg,
        local,
        remote,
        instance,
        started: Instant::now(),
        tailer,
        batch,
        spool: rec.spool,
        c,
        lat: Latency::default(),
        pending: None,
        new_sink: None,
        once,
        shutdown: false,
        collecting: true,
        last_checkpoint: Instant::now(),
        changed: false,
    }));
    let ex = LocalExecutor::new();
    let spooled = Notify::new();
    let space = Notify::new();
    let wake = Notify::new();
    // Only shutdown rings this one: it cuts a retry backoff short, new frames must not.
    let stop = Notify::new();
    let signals = async_signal::Signals::new([
        async_signal::Signal::Hup,
        async_signal::Signal::Term,
        async_signal::Signal::Int,
    ])
    .map_err(|e| Error::Io {
        what: "install signal handlers for",
        path: PathBuf::from("SIGHUP/SIGTERM/SIGINT"),
        source: e,
    })?;
    smol::future::block_on(ex.run(async {
        let collector = ex.spawn(collect(
            st.clone(),
            spooled.clone(),
            space.clone(),
            wake.clone(),
        ));
        let deliverer = ex.spawn(deliver(
            st.clone(),
            sink,
            spooled.clone(),
            space.clone(),
            stop.clone(),
        ));
        let control_wake = Notify::new();
        let _control = ex.spawn(crate::control::run(st.clone(), control_wake.clone()));
        let _signals = ex.spawn(handle_signals(
            st.clone(),
            signals,
            config_path,
            [
                spooled.clone(),
                space.clone(),
                wake.clone(),
                stop.clone(),
                control_wake,
            ],
        ));
        collector.await;
        // `--once` waits for the sink however long it takes; a signal still stops it.
        let timeout = if once {
            Duration::MAX
        } else {
            st.borrow().cfg.shutdown_timeout.0
        };
        spooled.notify();
        let drained = async {
            deliverer.await;
            true
        }
        .or(async {
            Timer::after(timeout).await;
            false
        })
        .await;
        let mut s = st.borrow_mut();
        let s = &mut *s;
        let marks = s.tailer.marks(&s.batch);
        if let Err(e) = s.spool.checkpoint(marks) {
            log::error!("final checkpoint: {e}");
        }
        log_stats(s);
        log::info!(
            "stopped{}; {} frames left in the spool for the next start",
            if drained {
                ""
            } else {
                " (shutdown_timeout reached)"
            },
            s.spool.backlog()
        );
        if once && s.spool.backlog() > 0 {
            return Err(Error::Undelivered(s.spool.backlog()));
        }
        Ok(())
    }))
}

fn sink_name(cfg: &Config) -> String {
    match &cfg.sink {
        crate::config::Sink::File { path, .. } => format!("file {}", path.display()),
        crate::config::Sink::Stdout {} => "stdout".into(),
        crate::config::Sink::Mqtt(m) => format!("mqtt {} topic {}", m.url, m.topic),
        crate::config::Sink::Http(h) => format!("http {}", h.url),
    }
}

async fn handle_signals(
    st: Shared,
    mut signals: async_signal::Signals,
    config_path: Option<PathBuf>,
    wakers: [Notify; 5],
) {
    use smol::stream::StreamExt;
    while let Some(sig) = signals.next().await {
        match sig {
            Ok(async_signal::Signal::Hup) => match &config_path {
                Some(p) => reload(&st, p),
                None => log::warn!("SIGHUP: running the built-in demo config, nothing to reload"),
            },
            Ok(sig) => {
                log::info!("{sig:?}: shutting down");
                st.borrow_mut().shutdown = true;
                for w in &wakers {
                    w.notify();
                }
            }
            Err(e) => log::error!("signal: {e}"),
        }
    }
}

/// The config to start with: the local file and the saved remote configs. A remote config
/// that no longer fits (the local file changed under it) is set aside and reported FAILED.
fn effective_at_start(local: &Config, remote: &mut Remote) -> Config {
    loop {
        match remote.effective(local) {
            Ok(cfg) => return cfg,
            Err((k, name, why)) => {
                log::error!(
                    "fleet: saved {} config {name:?} no longer applies: {why}; starting without it",
                    k.name()
                );
                if !remote.disable(k, &name, &why) {
                    return local.clone();
                }
            }
        }
    }
}

/// Re-reads the config file and applies it in place, or keeps the running one and says why.
fn reload(st: &Shared, path: &Path) {
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            log::error!("reload: {e}; keeping the running config");
            return;
        }
    };
    let mut g = st.borrow_mut();
    let s = &mut *g;
    let cfg = match s.remote.effective(&new) {
        Ok(c) => c,
        Err((k, name, why)) => {
            log::error!(
                "reload: {} does not fit the fleet's {} config {name:?}: {why}; keeping the running config",
                path.display(),
                k.name()
            );
            return;
        }
    };
    match apply_config(s, cfg) {
        Ok(()) => {
            s.local = new;
            log::info!(
                "reloaded {}: {} input(s), sink {}",
                path.display(),
                s.cfg.inputs.len(),
                sink_name(&s.cfg)
            );
        }
        Err(why) => log::error!("reload: {why}; keeping the running config"),
    }
}

/// Switches the running agent to `new` in place: inputs added and removed, limits changed,
/// a new sink if it changed. Nothing changes when it returns `Err`.
pub(crate) fn apply_config(s: &mut State, new: Config) -> Result<(), String> {
    if new.data_dir != s.cfg.data_dir || new.instance_id != s.cfg.instance_id {
        return Err("data_dir and instance_id need a restart".into());
    }
    if new.sink != s.cfg.sink {
        match AnySink::new(&new, &s.instance) {
            Ok(sink) => s.new_sink = Some(sink),
            Err(e) => return Err(e.to_string()),
        }
    }
    log::set_max_level(new.level());
    if new.inputs != s.cfg.inputs {
        s.tailer.set_inputs(new.inputs.clone());
    }
    s.batch
        .set_limits(new.batch.max_lines, new.batch.max_bytes.0 as usize);
    s.spool.set_limits(limits(&new));
    s.cfg = new;
    Ok(())
}

fn checkpoint(s: &mut State) {
    let marks = s.tailer.marks(&s.batch);
    if let Err(e) = s.spool.checkpoint(marks) {
        log::error!("checkpoint: {e}");
    }
    s.last_checkpoint = Instant::now();
    s.changed = false;
}

fn log_stats(s: &State) {
    let c = &s.c;
    let lat = s
        .lat
        .percentiles()
        .map(|[a, b, c]| format!(", read→ack p50/p90/p99 {a}/{b}/{c} ms"))
        .unwrap_or_default();
    log::info!(
        "read {} lines ({} bytes) from {} files; frames spooled {} acked {}; spool {} bytes, {} frames waiting; lost: cut {} lines, truncated {} B, vanished {} B, dropped {} frames ({} lines), corrupt {} records, dead letters {}; send errors {}{lat}",
        c.lines_read,
        c.bytes_read,
        s.tailer.open_files(),
        c.frames_spooled,
        c.frames_acked,
        s.spool.bytes(),
        s.spool.backlog(),
        c.lines_cut,
        c.truncated_lost_bytes,
        c.vanished_lost_bytes,
        c.dropped_frames,
        c.dropped_lines,
        c.corrupt_records,
        c.dead_letters,
        c.send_errors,
    );
}
