//! The running agent: the tasks that move lines from files to sinks, on one thread.
//!
//! Owns the agent's state (config, counters, the fleet's configs) and its pipelines
//! (pipe.rs: tailer, open batch, spool, and where each is in its life, `pipe::Life`:
//! Running, Draining, Closing, Stopped), each a [`Local`] (local.rs): shared by the tasks
//! of this thread and reached only inside a synchronous closure (`with`, `with_mut`), never
//! through a guard. What always holds: no task holds a borrow of the state or of a pipeline
//! across an `.await`. Why it holds: a closure is not `async`, so an `.await` inside one
//! does not compile, and what it returns cannot borrow from the state; `Local` has no other
//! way in (its doc test shows the refusal). This is the compiler's type and borrow check,
//! not a lint (`lib.rs` still denies `clippy::await_holding_refcell_ref`, for any other
//! `RefCell`). What remains of `RefCell`'s rules: a closure that reaches the same `Local`
//! again inside itself panics, so access nests one way, the state outside, a pipeline
//! inside (the state's own figures, `State::backlog` and the like, borrow each pipeline:
//! they are not called inside a pipeline's closure). Tasks:
//! - per pipeline, **collect**: scan and read files → batch → spool, sleeping when the files
//!   are quiet; and **deliver**: spool → sink → acknowledgement → release, backing off when
//!   the sink fails. Each has a command channel from the pipe (pipe.rs: `ToCollect`,
//!   `ToDeliver`): collect learns of every change of its life there (taken out of the
//!   config, put back, stop), deliver of a new sink and of a stop;
//! - **control**: the fleet (src/control), which may add, change and remove pipelines. It
//!   sees the agent through `Handle` alone (handle.rs): settings, a `Health` snapshot,
//!   the fleet's configs, "apply this effective config". The state is private to this
//!   module, and every method of the handle is synchronous, so the control plane cannot
//!   hold a borrow of it across an `.await`;
//! - **signals**: SIGHUP reloads the config file, SIGTERM/SIGINT shut down;
//! - the run loop itself starts the tasks of pipelines added at run time.
//!
//! The main thread parks on a futex (`future::block_on`), not in the reactor: the reactor is
//! left to async-io's own thread, which blocks in epoll until the next timer or signal.
//! Measured idle: with `async_io::block_on` on the main thread, the async-io thread woke
//! about ten times after each of the main thread's wake-ups (its spin-then-sleep back-off);
//! this way each timer costs one wake-up per thread.
//!
//! Shutdown: the open batch goes to the spool, the sink gets `shutdown_timeout` to take the
//! backlog, and whatever is left stays in the spool for the next start, behind a checkpoint.
//! A full disk does not change that: collect pauses reading and sleeps between looks
//! (collect.rs), so signals and delivery go on.
//!
//! Files: everything the agent creates is private, whatever the umask it was started with
//! (`run` sets umask 077; the files made here also ask for 0600, directories 0700): the
//! spool holds every shipped line, `fleet.state` the fleet's sink tokens.

use crate::config::Config;
use crate::control::remote::{Kind, Remote};
use crate::stats::latency::{Alerts, Window, READ_ACKED};
use crate::stats::Counters;
use crate::Error;

mod collect;
mod deliver;
mod handle;
mod local;
mod pipe;

use collect::collect;
use deliver::deliver;
#[cfg_attr(not(any(feature = "http", feature = "mqtt")), allow(unused_imports))]
pub(crate) use handle::{Handle, Health};
pub use local::Local;
use pipe::{pipelines, Outbox, Pipe, PipeRef};
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;
use smol::{LocalExecutor, Task, Timer};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Shortest sleep between polls while data is flowing; it doubles up to `poll_interval`
/// while the files stay quiet. With inotify watching every directory and nothing waiting on
/// the clock, a pipeline sleeps longer still (collect.rs), so an idle agent wakes about once
/// a minute.
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
struct Notify(Sender<()>, Receiver<()>);

impl Notify {
    fn new() -> Notify {
        let (s, r) = smol::channel::bounded(1);
        Notify(s, r)
    }
    fn notify(&self) {
        let _ = self.0.try_send(());
    }
    async fn wait_for(&self, d: Duration) {
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

/// Everything the tasks share, as a [`Local`] (`Shared`): no task can hold a borrow of it
/// across an `.await` (module doc). Private to the agent: the control plane sees it through
/// [`Handle`] alone.
struct State {
    /// The running config: the local file with the fleet's configs laid over it.
    pub(crate) cfg: Config,
    /// The local file as last read.
    pub(crate) local: Config,
    /// Configs from the fleet.
    pub(crate) remote: Remote,
    pub(crate) instance: String,
    #[cfg_attr(not(any(feature = "http", feature = "mqtt")), allow(dead_code))]
    pub(crate) started: Instant,
    /// The local file's pipeline first, then the fleet's; one that was taken out of the
    /// config stays here until its backlog is delivered.
    pub(crate) pipes: Vec<PipeRef>,
    /// Pipelines added at run time, for the run loop to start.
    to_start: Vec<(PipeRef, Outbox)>,
    /// Rung when `to_start` has something, a collect task ended, or at shutdown.
    starter: Notify,
    pub(crate) c: Counters,
    /// Pipelines whose reading is paused now because the disk under `data_dir` is full (or
    /// refuses spool writes): the heartbeat's `disk_full`.
    pub(crate) disk_full: u32,
    /// Wall-clock read→ack samples the spool records at each ack; nothing reads them since
    /// State events for the fleet (`control::events`): raise an alert with
    /// `s.events.alert(name, raised, message)`.
    pub(crate) events: Rc<crate::control::events::Bus>,
    /// Per-stage latency over `alerts.window` (`stats::latency`).
    pub(crate) window: Window,
    /// The alerts' state, and when it last looked.
    pub(crate) alerts: Alerts,
    pub(crate) alerts_looked: Option<Instant>,
    /// The raised alerts last logged (bits).
    pub(crate) alerts_bits_logged: u64,
    /// `--once`: stop when every file is read to its end and the sinks have everything.
    once: bool,
    pub(crate) shutdown: bool,
}

impl State {
    /// Files open for reading, all pipelines together.
    pub(crate) fn files_open(&self) -> usize {
        self.pipes
            .iter()
            .map(|p| p.with(|p| p.tailer.open_files()))
            .sum()
    }
    /// Files found that wait for a turn (more than `MAX_OPEN_FILES` in a pipeline).
    pub(crate) fn files_waiting(&self) -> usize {
        self.pipes
            .iter()
            .map(|p| p.with(|p| p.tailer.waiting_files()))
            .sum()
    }
    /// Bytes in the spools.
    pub(crate) fn spool_bytes(&self) -> u64 {
        self.pipes.iter().map(|p| p.with(|p| p.spool.bytes())).sum()
    }
    /// Bytes not yet acknowledged in the spools (to within a segment each).
    pub(crate) fn unacked_bytes(&self) -> u64 {
        self.pipes
            .iter()
            .map(|p| p.with(|p| p.spool.unacked_bytes()))
            .sum()
    }
    /// Frames waiting in the spools.
    pub(crate) fn backlog(&self) -> u64 {
        self.pipes
            .iter()
            .map(|p| p.with(|p| p.spool.backlog()))
            .sum()
    }
    /// When the oldest frame not yet acknowledged was read, in any pipeline.
    #[cfg_attr(not(any(feature = "http", feature = "mqtt")), allow(dead_code))]
    pub(crate) fn oldest_unacked_ms(&self) -> Option<u64> {
        self.pipes
            .iter()
            .filter_map(|p| p.with(|p| p.spool.oldest_unacked_ms()))
            .min()
    }
}

type Shared = Local<State>;

/// A finished frame, and for each file in it the offset it reaches: what to commit once the
/// frame is in the spool.
struct Built {
    frame: Vec<u8>,
    ends: Vec<(u64, u64, u64)>,
    /// Its head as the spool's sender needs it (line count, base time), so the spool need
    /// not inflate the frame to read it back.
    head: crate::spool::Head,
}

/// What the metrics endpoint shows: the heartbeat's figures, each pipeline's spool, and what
/// makes `/healthz` answer 503.
#[cfg(feature = "metrics")]
fn figures(s: &mut State) -> crate::metrics::Figures {
    handle::look(s, Instant::now());
    let s = &*s;
    let health = handle::health_of(s);
    let mut problems = Vec::new();
    if s.disk_full > 0 {
        problems.push(format!(
            "the disk under data_dir is full: reading paused in {} pipeline(s)",
            s.disk_full
        ));
    }
    if let (Some(m), Some(t)) = (&s.cfg.metrics, s.oldest_unacked_ms()) {
        let age = Duration::from_millis(now_ms().saturating_sub(t));
        if age > m.stale_after.0 {
            problems.push(format!(
                "the oldest line not yet acknowledged was read {} s ago (metrics.stale_after: {} s)",
                age.as_secs(),
                m.stale_after.0.as_secs()
            ));
        }
    }
    crate::metrics::Figures {
        health: crate::control::health(&health).to_vec(),
        stages: crate::stats::latency::STAGE_NAMES
            .iter()
            .zip(health.stages)
            .filter_map(|(n, q)| Some((*n, q?)))
            .collect(),
        alerts: crate::stats::latency::ALERT_NAMES
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, health.alerts >> i & 1 == 1))
            .collect(),
        pipelines: s
            .pipes
            .iter()
            .map(|p| p.with(|p| (p.name.clone(), p.spool.backlog(), p.spool.bytes())))
            .collect(),
        problems,
    }
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
    write_private(&path, format!("{id}\n").as_bytes()).map_err(|e| Error::Io {
        what: "write",
        path: path.clone(),
        source: e,
    })?;
    Ok(id)
}

/// Creates `data_dir` and reads or makes the instance id ([`instance_id`]), waiting for
/// room when the disk is too full for either: exiting there would have a service manager
/// restart the agent in a loop on a device whose disk someone else filled. Looked at again
/// after 1 s, then twice as long each time up to 30 s, or at once on SIGHUP, which is also
/// returned (`true`): the reload it asks for is made once the tasks run, as for a SIGHUP
/// at any other moment of start-up (`instance_id` and `data_dir` themselves need a
/// restart). `None`: SIGTERM or SIGINT came meanwhile. The main thread parks while it
/// waits; async-io's thread keeps the timer.
fn instance_id_when_room(
    cfg: &Config,
    signals: &mut async_signal::Signals,
) -> Result<Option<(String, bool)>, Error> {
    use smol::stream::StreamExt;
    let mut wait = Duration::from_secs(1);
    let mut waited = false;
    let mut hup = false;
    // Once made, not again: create_private_dir warns of a directory others can read.
    let mut dir_made = false;
    loop {
        let made = if dir_made {
            Ok(())
        } else {
            create_private_dir(&cfg.data_dir).map_err(|e| Error::Io {
                what: "create",
                path: cfg.data_dir.clone(),
                source: e,
            })
        };
        dir_made = made.is_ok();
        let made = made.and_then(|()| instance_id(cfg));
        match made {
            Ok(id) => {
                if waited {
                    log::info!("instance id {id:?} kept: starting");
                }
                return Ok(Some((id, hup)));
            }
            Err(Error::Io { what, path, source }) if crate::spool::is_full(&source) => {
                if !waited {
                    log::warn!(
                        "cannot {what} {}: {source}; waiting for room to keep the instance \
                         id (or set instance_id in the config and restart)",
                        path.display()
                    );
                    waited = true;
                }
            }
            Err(e) => return Err(e),
        }
        let woken = smol::future::block_on(async { signals.next().await.and_then(Result::ok) }.or(
            async {
                Timer::after(wait).await;
                None
            },
        ));
        match woken {
            Some(async_signal::Signal::Term | async_signal::Signal::Int) => return Ok(None),
            Some(async_signal::Signal::Hup) => hup = true,
            _ => {}
        }
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

/// Creates `dir` and its missing parents with mode 0700. An existing directory keeps its
/// mode (it may be shared on purpose), but one that others can read is logged.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        log::warn!(
            "{}: mode {:o}, others can read the spool (every shipped line); chmod 700 it",
            dir.display(),
            mode & 0o777
        );
    }
    Ok(())
}

/// Creates (or truncates) `path` with mode 0600 and writes `bytes`.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
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
    // First of all: start-up can take a while (a large spool to check, a slow disk), and a
    // SIGHUP or SIGTERM sent meanwhile (logrotate's postrotate, a service manager) would end
    // the process by default. Installed here, it waits in the self-pipe and is handled once
    // the tasks run: a reload after start-up, or a clean stop.
    let mut signals = async_signal::Signals::new([
        async_signal::Signal::Hup,
        async_signal::Signal::Term,
        async_signal::Signal::Int,
    ])
    .map_err(|e| Error::Io {
        what: "install signal handlers for",
        path: PathBuf::from("SIGHUP/SIGTERM/SIGINT"),
        source: e,
    })?;
    // Everything the agent writes is private, whatever umask it was started with: segments
    // hold every shipped line (which may come from a 0640 auth.log), `fleet.state` holds the
    // fleet's sink tokens. The umask covers files made anywhere in the agent (spool, dead
    // letters, the file sink's output); the places that create files here also ask for
    // 0600/0700 themselves.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    log::set_max_level(local.level());
    let Some((instance, hup_waiting)) = instance_id_when_room(&local, &mut signals)? else {
        log::info!("stopped while waiting for room on the disk");
        return Ok(());
    };
    let mut remote = Remote::load(&local.data_dir);
    let mut c = Counters::default();
    // A fleet pipeline that cannot open (its sink's CA file went away, its sink file's
    // directory is a file now) is set aside and reported FAILED, like one that no longer
    // validates: a remote config never keeps the agent from starting.
    let (cfg, pipes, sinks) = loop {
        let cfg = effective_at_start(&local, &mut remote);
        match open_pipes(&cfg, &instance, &mut c) {
            Ok((pipes, sinks)) => break (cfg, pipes, sinks),
            Err((name, e)) if !name.is_empty() => {
                log::error!("fleet: pipeline {name:?} cannot start: {e}; starting without it");
                if !remote.disable(Kind::Pipeline, &name, &e.to_string()) {
                    return Err(e);
                }
            }
            Err((_, e)) => return Err(e),
        }
    };
    log::set_max_level(cfg.level());
    log::info!(
        "tailbeat {} starting as {instance:?}: {} pipeline(s), data in {}",
        env!("CARGO_PKG_VERSION"),
        pipes.len(),
        cfg.data_dir.display(),
    );
    let starter = Notify::new();
    let cfg_data_dir = cfg.data_dir.clone();
    let alerts_window = cfg.alerts.window.0;
    let st: Shared = Local::new(State {
        cfg,
        local,
        remote,
        instance,
        started: Instant::now(),
        to_start: pipes.iter().cloned().zip(sinks).collect(),
        pipes,
        starter: starter.clone(),
        c,
        disk_full: 0,
        events: Rc::new(crate::control::events::Bus::open(&cfg_data_dir)),
        window: Window::new(alerts_window, Instant::now()),
        alerts: Alerts::default(),
        alerts_looked: None,
        alerts_bits_logged: 0,
        once,
        shutdown: false,
    });
    let ex = LocalExecutor::new();
    #[cfg(feature = "metrics")]
    let metrics_socket = match st.with(|s| s.cfg.metrics.as_ref().map(|m| m.listen)) {
        Some(listen) => Some(
            smol::Async::<std::net::TcpListener>::bind(listen).map_err(|e| Error::Listen {
                key: "metrics.listen",
                addr: listen,
                source: e,
            })?,
        ),
        None => None,
    };
    smol::future::block_on(ex.run(async {
        #[cfg(feature = "metrics")]
        let _metrics = metrics_socket.map(|l| {
            log::info!(
                "metrics: serving /metrics and /healthz on {}",
                l.get_ref()
                    .local_addr()
                    .map_or_else(|e| e.to_string(), |a| a.to_string())
            );
            let st = st.clone();
            ex.spawn(crate::metrics::serve(l, move || st.with_mut(figures)))
        });
        let control_wake = Notify::new();
        let _control = ex.spawn(crate::control::run(Handle::new(
            st.clone(),
            control_wake.clone(),
        )));
        let _signals = ex.spawn(handle_signals(
            st.clone(),
            signals,
            config_path,
            control_wake,
            hup_waiting,
        ));
        // Starts the tasks of every pipeline, at start and when the config adds one, until
        // shutdown (or, with `--once`, until every pipeline has read its files).
        let mut running: Vec<(Task<()>, Task<()>)> = Vec::new();
        loop {
            let (start, shutdown) = st.with_mut(|s| (std::mem::take(&mut s.to_start), s.shutdown));
            for (p, out) in start {
                running.push((
                    ex.spawn(collect(st.clone(), p.clone(), out.collect.clone())),
                    ex.spawn(deliver(st.clone(), p, out)),
                ));
            }
            running.retain(|(c, d)| !(c.is_finished() && d.is_finished()));
            if shutdown || (once && running.iter().all(|(c, _)| c.is_finished())) {
                break;
            }
            starter.wait_for(Duration::from_secs(3600)).await;
        }
        let mut deliverers = Vec::new();
        for (c, d) in running {
            c.await;
            deliverers.push(d);
        }
        // `--once` waits for the sinks however long it takes; a signal still stops it.
        let timeout = if once {
            Duration::MAX
        } else {
            st.with(|s| s.cfg.shutdown_timeout.0)
        };
        let drained = async {
            for d in deliverers {
                d.await;
            }
            true
        }
        .or(async {
            Timer::after(timeout).await;
            false
        })
        .await;
        let left = st.with(|s| {
            for p in &s.pipes {
                p.with_mut(|p| p.checkpoint());
            }
            log_stats(s);
            s.backlog()
        });
        log::info!(
            "stopped{}; {left} frames left in the spool for the next start",
            if drained {
                ""
            } else {
                " (shutdown_timeout reached)"
            },
        );
        if once && left > 0 {
            return Err(Error::Undelivered(left));
        }
        Ok(())
    }))
}

fn sink_name(sink: &crate::config::Sink) -> String {
    match sink {
        crate::config::Sink::File { path, .. } => format!("file {}", path.display()),
        crate::config::Sink::Stdout {} => "stdout".into(),
        crate::config::Sink::Mqtt(m) => format!("mqtt {} topic {}", m.url, m.topic),
        crate::config::Sink::Http(h) => format!("http {}", h.url),
    }
}

/// `hup_first`: a SIGHUP came while start-up waited for room on the disk (and was taken
/// from the stream there): its reload is made first.
async fn handle_signals(
    st: Shared,
    mut signals: async_signal::Signals,
    config_path: Option<PathBuf>,
    control_wake: Notify,
    hup_first: bool,
) {
    use smol::stream::StreamExt;
    let first = hup_first.then_some(Ok(async_signal::Signal::Hup));
    let mut signals = smol::stream::iter(first).chain(&mut signals);
    while let Some(sig) = signals.next().await {
        match sig {
            Ok(async_signal::Signal::Hup) => match &config_path {
                Some(p) => {
                    reload(&st, p);
                    // The fleet link reads `[fleet]` again (and samples its levels).
                    control_wake.notify();
                }
                None => log::warn!("SIGHUP: running the built-in demo config, nothing to reload"),
            },
            Ok(sig) => {
                log::info!("{sig:?}: shutting down");
                st.with_mut(|s| {
                    s.shutdown = true;
                    for p in &s.pipes {
                        p.with(|p| p.wake_all());
                    }
                    s.starter.notify();
                });
                control_wake.notify();
            }
            Err(e) => log::error!("signal: {e}"),
        }
    }
}

/// Opens every pipeline of `cfg`; `Err` names the one that failed.
fn open_pipes(
    cfg: &Config,
    instance: &str,
    c: &mut Counters,
) -> Result<(Vec<PipeRef>, Vec<Outbox>), (String, Error)> {
    let mut pipes = Vec::new();
    let mut sinks = Vec::new();
    for p in pipelines(cfg) {
        let name = p.name.clone();
        let (pipe, sink) = Pipe::open(p, &cfg.data_dir, instance, c).map_err(|e| (name, e))?;
        log::info!(
            "{}: {} input(s), spool {} frames waiting, sink {}",
            pipe.label(),
            pipe.cfg.inputs.len(),
            pipe.spool.backlog(),
            sink_name(&pipe.cfg.sink),
        );
        pipes.push(Local::new(pipe));
        sinks.push(sink);
    }
    Ok((pipes, sinks))
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
    st.with_mut(|s| reload_into(s, path, new))
}

/// [`reload`], the file read: `new` laid under the fleet's configs and applied.
fn reload_into(s: &mut State, path: &Path, new: Config) {
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
                "reloaded {}: {} input(s), sink {}; {} pipeline(s) in all",
                path.display(),
                s.cfg.inputs.len(),
                sink_name(&s.cfg.sink),
                s.pipes.len(),
            );
        }
        Err(why) => log::error!("reload: {why}; keeping the running config"),
    }
}

/// Switches the running agent to `new` in place: pipelines added, changed and removed,
/// inputs added and removed, limits changed, new sinks where they changed. Nothing changes
/// when it returns `Err`.
fn apply_config(s: &mut State, new: Config) -> Result<(), String> {
    if new.data_dir != s.cfg.data_dir
        || new.instance_id != s.cfg.instance_id
        || new.metrics != s.cfg.metrics
    {
        return Err("data_dir, instance_id and [metrics] need a restart".into());
    }
    // Everything that can fail first (new sinks, new spools), then the changes.
    let mut updates = Vec::new();
    let mut starts = Vec::new();
    for p in pipelines(&new) {
        let label = if p.name.is_empty() {
            "sink".to_string()
        } else {
            format!("pipeline {:?}", p.name)
        };
        match s.pipes.iter().find(|x| x.with(|x| x.name == p.name)) {
            Some(x) => {
                let sink = x
                    .with(|x| x.sink_for(&p))
                    .map_err(|e| format!("{label}: {e}"))?;
                updates.push((x.clone(), p, sink));
            }
            None => {
                let (pipe, sink) = Pipe::open(p, &new.data_dir, &s.instance, &mut s.c)
                    .map_err(|e| format!("{label}: {e}"))?;
                starts.push((Local::new(pipe), sink));
            }
        }
    }
    log::set_max_level(new.level());
    for x in &s.pipes {
        x.with_mut(|x| {
            if !x.name.is_empty() && !new.pipelines.iter().any(|p| p.name == x.name) {
                x.remove();
            }
        });
    }
    for (x, p, sink) in updates {
        x.with_mut(|x| {
            if p.inputs != x.cfg.inputs {
                collect::spool_open_batch(x, &mut s.c, &new.data_dir);
            }
            x.update(p, sink)
        });
    }
    for (p, sink) in starts {
        p.with(|p| log::info!("{}: started, sink {}", p.label(), sink_name(&p.cfg.sink)));
        s.pipes.push(p.clone());
        s.to_start.push((p, sink));
        s.starter.notify();
    }
    s.cfg = new;
    Ok(())
}

/// The progress line: every counter, in groups (what was read, what went out, what was
/// lost, what went wrong, why reading paused). Tests read it with `stat()`: keep each
/// counter's words unique in the line.
fn log_stats(s: &State) {
    let c = &s.c;
    // One compact figure: read→ack's quantiles, and each stage's share of its p99.
    let q = s.window.percentiles(Instant::now());
    let mut lat = q[READ_ACKED]
        .map(|[a, b, c]| {
            let p99 = |i: usize| q[i].map_or(0, |q| q[2]);
            format!(
                ", read→ack p50/p90/p99 {a}/{b}/{c} ms (p99 by stage {}+{}+{}+{} ms)",
                p99(0),
                p99(1),
                p99(2),
                p99(3)
            )
        })
        .unwrap_or_default();
    if s.alerts.bits() != 0 {
        let active: Vec<_> = s.alerts.active().collect();
        lat.push_str(&format!("; alerts: {}", active.join(", ")));
    }
    log::info!(
        "read {} lines ({} bytes; {} partial) from {} files ({} opened, {} rotated, {} truncations, {} waiting for a turn); frames spooled {} acked {}; spool {} bytes, {} frames waiting{}; lost: cut {} lines, {} B, truncated {} B, vanished {} B, dropped {} frames ({} lines), corrupt {} records, {} B, spool frames lost {}, positions lost {} B, dead letters {}; frames split {}; send errors {}; spool syncs {}; sink flushes {}; spool write errors {}; paused: spool full {} times, disk full {} times{}{lat}",
        c.lines_read,
        c.bytes_read,
        c.partial_lines,
        s.files_open(),
        c.files_opened,
        c.files_rotated,
        c.files_truncated,
        s.files_waiting(),
        c.frames_spooled,
        c.frames_acked,
        s.spool_bytes(),
        s.backlog(),
        if s.pipes.len() > 1 {
            format!(" ({} pipelines)", s.pipes.len())
        } else {
            String::new()
        },
        c.lines_cut,
        c.cut_bytes,
        c.truncated_lost_bytes,
        c.vanished_lost_bytes,
        c.dropped_frames,
        c.dropped_lines,
        c.corrupt_records,
        c.corrupt_bytes,
        c.spool_lost_frames,
        c.positions_lost_bytes,
        c.dead_letters,
        c.frames_split,
        c.send_errors,
        c.spool_syncs,
        c.sink_flushes,
        c.spool_write_errors,
        c.spool_full_waits,
        c.disk_full_waits,
        if s.disk_full > 0 { " (disk full now)" } else { "" },
    );
}
