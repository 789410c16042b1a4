//! The control plane's door into the running agent, and the only one: [`Handle`].
//!
//! What the fleet client may do, all of it: read the settings it runs by (`[fleet]`, the
//! instance id), read a [`Health`] snapshot, count a refused control message, read and
//! change the fleet's configs ([`Remote`]) against the local file, apply an effective
//! config and get the result, and wait for a wake-up (shutdown, a reload, a status change).
//!
//! Why a door and not the agent's state: every method is synchronous and takes what it
//! needs from the shared state inside itself (a closure on the agent's
//! [`Local`](super::Local)), so the control plane cannot hold a borrow of the agent across
//! an `.await` — by construction, not by convention. The state and the pipelines are not
//! reachable from `crate::control` at all.

// A build without a fleet transport (no `http`, no `mqtt`) only idles in the control task.
#![cfg_attr(not(any(feature = "http", feature = "mqtt")), allow(dead_code))]

use super::{apply_config, Notify, Shared};
use crate::config::{Config, Fleet};
use crate::control::remote::Remote;
use crate::stats::latency::{self, READ_ACKED, STAGES};
use crate::stats::Counters;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The agent as the control plane sees it (module doc). One per agent, owned by the
/// control task.
pub(crate) struct Handle {
    st: Shared,
    wake: Notify,
}

/// The agent's health at one moment: what a heartbeat reports. A copy: reading it holds
/// nothing.
#[derive(Debug, Clone, Default)]
pub(crate) struct Health {
    /// Every counter.
    pub c: Counters,
    /// read→ack latency percentiles (p50, p90, p99) in ms over `alerts.window`, if a timed
    /// frame was acknowledged in it.
    pub latency: Option<[u32; 3]>,
    /// The same for every stage, in the order of `stats::latency::STAGE_NAMES`.
    pub stages: [Option<[u32; 3]>; STAGES],
    /// The raised alerts, one bit each in the order of `stats::latency::ALERT_NAMES`.
    pub alerts: u64,
    /// Files open for reading, all pipelines together.
    pub files_open: u64,
    /// Files found that wait for a turn.
    pub files_waiting: u64,
    /// Pipelines, the local one included, and removed ones still delivering.
    pub pipelines: u64,
    /// Bytes in the spools.
    pub spool_bytes: u64,
    /// Frames waiting in the spools.
    pub spool_frames: u64,
    /// How long ago the oldest frame not yet acknowledged was read, in ms (0: none).
    pub oldest_unacked_age_ms: u64,
    /// Pipelines whose reading is paused now for lack of disk.
    pub disk_full: u32,
    /// The smallest frame size a sink asked for by refusing a frame as too large (plain
    /// bytes, below `batch.max_bytes`); 0 when none did.
    pub frame_limit: u64,
    /// `data_dir`, for the free space under it.
    pub data_dir: PathBuf,
    /// Since the agent started.
    pub uptime: Duration,
}

impl Handle {
    pub(super) fn new(st: Shared, wake: Notify) -> Handle {
        Handle { st, wake }
    }

    /// The instance id.
    pub(crate) fn instance(&self) -> String {
        self.st.with(|s| s.instance.clone())
    }

    /// The running `[fleet]` section (the local file's, with the fleet's instance configs
    /// laid over it), if any.
    pub(crate) fn fleet(&self) -> Option<Fleet> {
        self.st.with(|s| s.cfg.fleet.clone())
    }

    /// Whether the agent is shutting down: the control plane stops.
    pub(crate) fn stopping(&self) -> bool {
        self.st.with(|s| s.shutdown)
    }

    /// Waits for `d`, or less when woken (shutdown, a reload, a status change).
    pub(crate) async fn wait_for(&self, d: Duration) {
        self.wake.wait_for(d).await
    }

    /// The health figures now, the alerts looked at first.
    pub(crate) fn health(&self) -> Health {
        self.st.with_mut(|s| {
            look(s, Instant::now());
            health_of(s)
        })
    }

    /// Counts a control message that was refused (`health.bad_control_messages`).
    #[cfg_attr(not(feature = "mqtt"), allow(dead_code))]
    pub(crate) fn bad_control_message(&self) {
        self.st.with_mut(|s| s.c.bad_control_messages += 1);
    }

    /// The agent's state events (`control::events`), to raise and to publish.
    pub(crate) fn events(&self) -> std::rc::Rc<crate::control::events::Bus> {
        self.st.with(|s| s.events.clone())
    }

    /// Runs `f` on the fleet's configs and the local file they are laid over.
    pub(crate) fn remote<R>(&self, f: impl FnOnce(&mut Remote, &Config) -> R) -> R {
        self.st.with_mut(|s| f(&mut s.remote, &s.local))
    }

    /// Switches the running agent to `cfg`, an effective config ([`Remote::update`] made
    /// it): pipelines and inputs added, changed and removed in place. Nothing changes when
    /// it returns `Err`, which says why in words for the FAILED status.
    pub(crate) fn apply(&self, cfg: Config) -> Result<(), String> {
        self.st.with_mut(|s| apply_config(s, cfg))
    }
}

/// The health figures of `s` now (the heartbeat's, and the metrics endpoint's).
pub(super) fn health_of(s: &super::State) -> Health {
    let stages = s.window.percentiles(Instant::now());
    Health {
        c: s.c.clone(),
        latency: stages[READ_ACKED],
        stages,
        alerts: s.alerts.bits(),
        files_open: s.files_open() as u64,
        files_waiting: s.files_waiting() as u64,
        pipelines: s.pipes.len() as u64,
        spool_bytes: s.spool_bytes(),
        spool_frames: s.backlog(),
        oldest_unacked_age_ms: s
            .oldest_unacked_ms()
            .map_or(0, |t| super::now_ms().saturating_sub(t)),
        disk_full: s.disk_full,
        frame_limit: s
            .pipes
            .iter()
            .filter_map(|p| p.with(|p| p.frame_cap))
            .min()
            .map_or(0, |b| b as u64),
        data_dir: s.cfg.data_dir.clone(),
        uptime: s.started.elapsed(),
    }
}

/// Looks at the alerts with the figures of `s` at `now` (the window first follows a changed
/// `alerts.window`). Called by every reader of the figures (heartbeat, metrics) and by the
/// collect tasks at most once a second ([`look_due`]), so an alert changes within a second
/// of its figure, heartbeat or not.
pub(super) fn look(s: &mut super::State, now: Instant) {
    let a = &s.cfg.alerts;
    if s.window.length() != latency::Window::length_for(a.window.0) {
        s.window = latency::Window::new(a.window.0, now);
    }
    let t = a.thresholds();
    let f = latency::Figures {
        read_to_ack_p99_ms: s.window.merged(READ_ACKED, now).quantile(0.99),
        backlog_bytes: s.unacked_bytes(),
        oldest_unacked_ms: s
            .oldest_unacked_ms()
            .map_or(0, |t| super::now_ms().saturating_sub(t)),
        // statvfs only when the alert is set.
        free_disk: t.free_disk.and_then(|_| disk_free(&s.cfg.data_dir)),
    };
    s.alerts.evaluate(&t, &f, now);
    // Each change is a state event for the fleet (`alert_raised` / `alert_cleared`, with the
    // figure and its threshold), in the order it happened.
    for (name, change) in s.alerts.take_changes() {
        let message = latency::alert_message(name, &f, &t);
        s.events
            .alert(name, change == latency::Change::Raised, &message);
    }
    let changes = s.alerts.bits();
    if s.alerts_bits_logged != changes {
        s.alerts_bits_logged = changes;
        let active: Vec<_> = s.alerts.active().collect();
        if active.is_empty() {
            log::info!("alerts: all clear");
        } else {
            log::warn!("alerts raised: {}", active.join(", "));
        }
    }
    s.alerts_looked = Some(now);
}

/// [`look`], if the last look is a second old or more.
pub(super) fn look_due(s: &mut super::State, now: Instant) {
    if s.alerts_looked
        .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
    {
        look(s, now);
    }
}

/// Bytes free for the agent under `dir`, `None` if it cannot be told.
fn disk_free(dir: &Path) -> Option<u64> {
    let v = rustix::fs::statvfs(dir).ok()?;
    Some(v.f_bavail.saturating_mul(v.f_frsize))
}
