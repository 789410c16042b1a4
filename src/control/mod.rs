//! The control plane: heartbeats, config status, and remote config, over ConfigServer
//! protocol v2 (protobuf over HTTP POST), or over MQTT topics.
//!
//! Owns the conversation with the fleet server and the remote configs (`remote.rs`,
//! `data_dir/fleet.state`).
//!
//! **Boundary.** The control plane reaches the running agent through
//! `agent::Handle` and nothing else: the `[fleet]` settings and instance id, a
//! `agent::Health` snapshot for heartbeats, the fleet's configs with the local file
//! they are laid over, "apply this effective config and get the result", and a wake-up.
//! Every method of it is synchronous, so no borrow of the agent's state can be held across
//! an `.await` here; the state itself is private to `agent`. No file in this module may
//! `use crate::agent::` anything else (a test, `boundary_tests`, reads the sources and says
//! so).
//!
//! Over HTTP, [`session::Session`] is the protocol as plain state (time passed in, no I/O):
//! it decides what to send next and when, and `over_http.rs` only builds bodies, POSTs
//! them and feeds the answers back. One request at a time, through the fleet's own HTTP
//! client on the agent's thread (see [`crate::http`]); each turn the most urgent thing that
//! is due:
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
//! **State events** (`events.rs`): config applied/failed and pipeline added/removed are
//! raised by `apply` here, whatever the transport; spool and disk edges by the MQTT link;
//! alerts by whoever evaluates them, through `events::Bus::alert`. Only the MQTT link
//! publishes them (`P/I/events`); the queue they wait in is bounded and coalesces.
//!
//! Applying a config is [`remote::Remote::update`] (parse and validate against the whole
//! config; APPLYING), then `agent::Handle::apply` (inputs and pipelines added,
//! changed and removed in place), then APPLIED ([`remote::Remote::applied`]) or FAILED, then a save of
//! the last good configs. A deletion (−1) leaves the status list once the server
//! acknowledged it.

#[cfg(test)]
mod boundary_tests;
pub mod events;
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

// The one thing the control plane uses from the agent (module doc, "Boundary").
use crate::agent::Handle;
use std::time::Duration;
#[cfg(any(feature = "http", feature = "mqtt"))]
use {crate::config::Server, proto::ConfigDetail, proto::ConfigStatus, remote::Kind};

/// Runs the control plane over the transport `fleet.server` names, until the agent stops;
/// idles while there is no `[fleet]`, and follows a reload that changes it.
pub(crate) async fn run(agent: Handle) {
    loop {
        if agent.stopping() {
            return;
        }
        let server = agent.fleet().map(|f| f.server);
        let ran = match &server {
            #[cfg(feature = "http")]
            Some(Server::Http(_)) => {
                over_http::run(&agent).await;
                true
            }
            #[cfg(feature = "mqtt")]
            Some(Server::Mqtt(_)) => {
                over_mqtt::run(&agent).await;
                true
            }
            _ => false,
        };
        if !ran {
            agent.wait_for(Duration::from_secs(3600)).await;
            continue;
        }
        // A transport returns when the config no longer names its server, or when it could
        // not start at all (e.g. an unreadable CA file): then wait before trying again.
        if agent.fleet().map(|f| f.server) == server {
            agent.wait_for(Duration::from_secs(30)).await;
        }
    }
}

/// Unix time in seconds: the `startup_time` heartbeats carry.
#[cfg(any(feature = "http", feature = "mqtt"))]
fn unix_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Validates and applies one config, saves the result, and records its status.
#[cfg(any(feature = "http", feature = "mqtt"))]
fn apply(agent: &Handle, k: Kind, d: &ConfigDetail) {
    let what = format!("{} config {:?} version {}", k.name(), d.name, d.version);
    let (old, tried) = agent.remote(|r, local| {
        r.set_status(k, &d.name, d.version, ConfigStatus::Applying, "");
        let old = r.entries(k).get(&d.name).and_then(|e| e.good.clone());
        (old, r.update(local, k, &d.name, d.version, &d.detail))
    });
    // No `.await` from here to the save: nothing else runs between the update of the
    // fleet's configs and the agent's answer. `None`: `update` refused it, and recorded
    // FAILED itself.
    let had = old.is_some();
    let mut failed = None;
    let applied = match tried {
        Ok(cfg) => Some(agent.apply(cfg)),
        Err(why) => {
            log::error!("fleet: {what} FAILED: {why}; keeping the running config");
            failed = Some(why.to_string());
            None
        }
    };
    let runs = agent.remote(|r, _| {
        match applied {
            Some(Ok(())) => {
                // APPLIED only now: APPLYING → apply → APPLIED or FAILED.
                r.applied(k, &d.name, d.version);
                log::info!("fleet: {what} applied");
            }
            Some(Err(why)) => {
                log::error!("fleet: {what} FAILED: {why}; keeping the running config");
                r.undo(k, &d.name, d.version, old, &why);
                failed = Some(why);
            }
            None => {}
        }
        if let Err(e) = r.save() {
            log::error!(
                "fleet: cannot save {}: {e}; a restart would run the configs saved before",
                r.path().display()
            );
        }
        r.entries(k).get(&d.name).is_some_and(|e| e.good.is_some())
    });
    // State events (events.rs): the config's outcome, then what it did to the pipelines.
    let events = agent.events();
    let mut e = events::Event::new(
        if failed.is_some() {
            events::Kind::ConfigFailed
        } else {
            events::Kind::ConfigApplied
        },
        Some(&d.name),
        0,
    );
    e.version = Some(d.version);
    e.message = failed;
    events.raise(e);
    if k == Kind::Pipeline && had != runs {
        let kind = if runs {
            events::Kind::PipelineAdded
        } else {
            events::Kind::PipelineRemoved
        };
        events.raise(events::Event::new(kind, Some(&d.name), 0));
    }
}
