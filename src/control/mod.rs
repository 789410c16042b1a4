//! The control plane: heartbeats, config status, and remote config, over ConfigServer
//! protocol v2 (protobuf over HTTP POST), or over MQTT topics.
//!
//! Owns the conversation with the fleet server and the remote configs (`remote.rs`,
//! `data_dir/fleet.state`); reaches the pipelines only through `agent::apply_config`.
//!
//! Over HTTP, [`session::Session`] is the protocol as plain state (time passed in, no I/O):
//! it decides what to send next and when, and `over_http.rs` only builds bodies, POSTs
//! them and feeds the answers back. One request at a time, on the fleet's own HTTP worker
//! thread (see [`crate::http`]); each turn the most urgent thing that is due:
//! 1. **status reports** — as soon as a status changes, on the best channel the server has:
//!    the seed's `/Agent/ReportPipelineConfig` and `/Agent/ReportInstanceConfig`; after a
//!    404, upstream's `/Agent/ReportStatus`; after a 404 there too, in every heartbeat
//!    (and a change sends one at once). Remembered per server, found again after a restart
//!    or a change of server, and probed again every [`session::REPROBE`]. A report is built
//!    once and retried byte for byte (same request id, same statuses), so a report that
//!    arrives twice does no harm; changes made while one is pending go in the next;
//! 2. **fetches** — configs that a heartbeat announced by name and version only (the
//!    response's Fetch*ConfigDetail flags) are fetched with `/Agent/Fetch*Config`, or
//!    upstream's `/Agent/FetchConfig` after a 404; after a 404 there too they are FAILED
//!    with what the server lacks. Nothing is reported about them before their detail is
//!    here;
//! 3. **heartbeats** — every `heartbeat_interval`; see `heartbeat.rs`. The sequence number
//!    grows by one per heartbeat the server answered, so a retry reuses it and the server
//!    sees no gap.
//!
//! What always holds: every kind of request backs off on its own after a failure (no
//! answer, an HTTP error, a non-zero CommonResponse status), and nothing — a status change,
//! a re-announced config — sends one sooner than its backoff says (`session.rs` states and
//! tests the bound for a 60 s outage).
//!
//! Applying a config is [`remote::Remote::update`] (parse and validate against the whole
//! config; APPLYING), then `agent::apply_config` (inputs and pipelines added, changed and
//! removed in place), then APPLIED ([`remote::Remote::applied`]) or FAILED, then a save of
//! the last good configs. A deletion (−1) leaves the status list once the server
//! acknowledged it.

#[cfg(test)]
mod fleet_state_tests;
// The metrics endpoint shows the heartbeat's figures: a build with it and no fleet client
// keeps only `health` of this module.
#[cfg(any(feature = "http", feature = "mqtt", feature = "metrics"))]
#[cfg_attr(not(any(feature = "http", feature = "mqtt")), allow(dead_code))]
mod heartbeat;
#[cfg(feature = "metrics")]
pub(crate) use heartbeat::health;
#[cfg(feature = "http")]
mod over_http;
#[cfg(feature = "mqtt")]
mod over_mqtt;
pub mod proto;
pub mod remote;
#[cfg(feature = "http")]
pub mod session;

use crate::agent::{Notify, Shared};
use std::time::Duration;
#[cfg(any(feature = "http", feature = "mqtt"))]
use {crate::agent::apply_config, proto::ConfigDetail, proto::ConfigStatus, remote::Kind};

/// Runs the control plane over the transport `fleet.server` names, until the agent stops;
/// idles while there is no `[fleet]`, and follows a reload that changes it.
pub(crate) async fn run(st: Shared, wake: Notify) {
    loop {
        let server = {
            let s = st.borrow();
            if s.shutdown {
                return;
            }
            s.cfg.fleet.as_ref().map(|f| f.server.clone())
        };
        let ran = match &server {
            #[cfg(feature = "http")]
            Some(s) if s.starts_with("http") => {
                over_http::run(st.clone(), wake.clone()).await;
                true
            }
            #[cfg(feature = "mqtt")]
            Some(s) if s.starts_with("mqtt") => {
                over_mqtt::run(st.clone(), wake.clone()).await;
                true
            }
            _ => false,
        };
        if !ran {
            wake.wait_for(Duration::from_secs(3600)).await;
            continue;
        }
        // A transport returns when the config no longer names its server, or when it could
        // not start at all (e.g. an unreadable CA file): then wait before trying again.
        if st.borrow().cfg.fleet.as_ref().map(|f| &f.server) == server.as_ref() {
            wake.wait_for(Duration::from_secs(30)).await;
        }
    }
}

/// Validates and applies one config, saves the result, and records its status.
#[cfg(any(feature = "http", feature = "mqtt"))]
fn apply(st: &Shared, k: Kind, d: &ConfigDetail) {
    let mut g = st.borrow_mut();
    let s = &mut *g;
    s.remote
        .set_status(k, &d.name, d.version, ConfigStatus::Applying, "");
    let old = s
        .remote
        .entries(k)
        .get(&d.name)
        .and_then(|e| e.good.clone());
    let what = format!("{} config {:?} version {}", k.name(), d.name, d.version);
    match s.remote.update(&s.local, k, &d.name, d.version, &d.detail) {
        Ok(cfg) => match apply_config(s, cfg) {
            Ok(()) => {
                // APPLIED only now: APPLYING → apply → APPLIED or FAILED.
                s.remote.applied(k, &d.name, d.version);
                log::info!("fleet: {what} applied");
            }
            Err(why) => {
                log::error!("fleet: {what} FAILED: {why}; keeping the running config");
                s.remote.undo(k, &d.name, d.version, old, &why);
            }
        },
        Err(why) => log::error!("fleet: {what} FAILED: {why}; keeping the running config"),
    }
    if let Err(e) = s.remote.save() {
        log::error!(
            "fleet: cannot save {}: {e}; a restart would run the configs saved before",
            s.remote.path().display()
        );
    }
}
