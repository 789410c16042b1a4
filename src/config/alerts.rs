//! `[alerts]`: thresholds on the latency and backlog figures, the window they are read over,
//! and how many frames a second are timed for them.

use super::read::{self, Value};
use super::{ConfigError, Secs, Size};
use crate::stats::latency::Thresholds;
use std::time::Duration;

/// `[alerts]`: every threshold is optional; unset, that alert is never raised. README,
/// "Latency", says when one is raised and cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alerts {
    /// read→ack p99 over `window` above which `read_to_ack_p99` is raised.
    pub read_to_ack_p99: Option<Secs>,
    /// Bytes not yet acknowledged in the spools above which `backlog_bytes` is raised.
    pub backlog_bytes: Option<Size>,
    /// Age of the oldest line not yet acknowledged above which `oldest_unacked` is raised.
    pub oldest_unacked: Option<Secs>,
    /// Free bytes under `data_dir` below which `free_disk` is raised.
    pub free_disk: Option<Size>,
    /// How long a figure must stay back past its clear level before its alert clears.
    pub hold: Secs,
    /// The sliding window the latency percentiles (heartbeat, metrics, alerts) cover, in
    /// six sub-windows.
    pub window: Secs,
    /// Frames timed per second and pipeline, about: above that rate one in k is.
    /// 0 times none (no latency figures).
    pub samples_per_sec: u32,
}

impl Default for Alerts {
    fn default() -> Alerts {
        Alerts {
            read_to_ack_p99: None,
            backlog_bytes: None,
            oldest_unacked: None,
            free_disk: None,
            hold: Secs::s(30),
            window: Secs::s(60),
            samples_per_sec: 100,
        }
    }
}

impl Alerts {
    /// Reads an `[alerts]` table; keys left out keep their defaults.
    pub(super) fn read(v: Value<'_>) -> Result<Alerts, ConfigError> {
        read::sub(v, |t| {
            t.keys(&[&[
                "read_to_ack_p99",
                "backlog_bytes",
                "oldest_unacked",
                "free_disk",
                "hold",
                "window",
                "samples_per_sec",
            ]])?;
            let d = Alerts::default();
            Ok(Alerts {
                read_to_ack_p99: t.opt("read_to_ack_p99", Value::secs)?,
                backlog_bytes: t.opt("backlog_bytes", Value::size)?,
                oldest_unacked: t.opt("oldest_unacked", Value::secs)?,
                free_disk: t.opt("free_disk", Value::size)?,
                hold: t.or("hold", Value::secs, d.hold)?,
                window: t.or("window", Value::secs, d.window)?,
                samples_per_sec: t.or("samples_per_sec", Value::u32, d.samples_per_sec)?,
            })
        })
    }

    /// Checks ranges; on failure the key (under `alerts.`) and the reason.
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        let w = self.window.0;
        if w < Duration::from_secs(1) || w > Duration::from_secs(3600) {
            return Err(("window", "must be between 1s and 1h".into()));
        }
        if self.hold.0 > Duration::from_secs(3600) {
            return Err(("hold", "must be at most 1h".into()));
        }
        for (k, v) in [
            ("read_to_ack_p99", self.read_to_ack_p99),
            ("oldest_unacked", self.oldest_unacked),
        ] {
            if v.is_some_and(|v| v.0.is_zero()) {
                return Err((k, "must be more than 0 (leave it out for no alert)".into()));
            }
        }
        Ok(())
    }

    /// The thresholds as the alert state reads them.
    pub fn thresholds(&self) -> Thresholds {
        let ms = |s: Option<Secs>| s.map(|s| s.0.as_millis().min(u64::MAX.into()) as u64);
        Thresholds {
            read_to_ack_p99_ms: ms(self.read_to_ack_p99),
            backlog_bytes: self.backlog_bytes.map(|s| s.0),
            oldest_unacked_ms: ms(self.oldest_unacked),
            free_disk: self.free_disk.map(|s| s.0),
            hold: self.hold.0,
        }
    }
}
