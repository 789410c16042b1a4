//! The control plane: heartbeats, config status, and remote config, over ConfigServer
//! protocol v2 (protobuf over HTTP POST).
//!
//! One task, one request at a time, on the fleet's own HTTP worker thread (see
//! [`crate::http`]). Each turn it does the most urgent thing that is due:
//! 1. **status reports** — `/Agent/ReportPipelineConfig` and `/Agent/ReportInstanceConfig`
//!    as soon as a status changes, retried with backoff until acknowledged. A report is
//!    built once and retried byte for byte (same request id, same statuses), so a report
//!    that arrives twice does no harm; changes made while one is pending go in the next. A
//!    server that answers 404 has no such endpoints: from then on statuses ride in every
//!    heartbeat, and a change triggers a heartbeat at once;
//! 2. **fetches** — configs that a heartbeat announced by name and version only (the
//!    response's Fetch*ConfigDetail flags) are fetched with `/Agent/Fetch*Config`;
//! 3. **heartbeats** — every `heartbeat_interval`; see `heartbeat.rs`. The sequence number
//!    grows by one per heartbeat the server answered, so a retry reuses it and the server
//!    sees no gap. A non-zero CommonResponse status, an HTTP error or no answer is retried
//!    with backoff, never sooner than the backoff says.
//!
//! Applying a config is [`remote::Remote::update`] (parse and validate against the whole
//! config), then `agent::apply_config` (inputs added and removed in place), then a
//! save of the last good configs, then the status.

#[cfg(feature = "http")]
mod heartbeat;
pub mod proto;
pub mod remote;
#[cfg(feature = "http")]
mod task;

#[cfg(feature = "http")]
pub(crate) use task::run;

/// Without HTTP there is no ConfigServer client: the config cannot name one.
#[cfg(not(feature = "http"))]
pub(crate) async fn run(_: crate::agent::Shared, _: crate::agent::Notify) {}
