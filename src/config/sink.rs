//! `[sink]`: where frames go, and how the network sinks connect.

use super::endpoint::{self, Endpoint};
use super::{Secret, Secs, Size};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `[sink]`: where frames go.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Sink {
    /// Append frames to a file; acknowledged once written (and fsynced, if `fsync`).
    File {
        /// The file to append to.
        path: PathBuf,
        /// fsync before acknowledging.
        #[serde(default = "yes")]
        fsync: bool,
    },
    /// Print lines as JSON to standard output; acknowledged once written.
    Stdout {},
    /// Publish frames to an MQTT broker at QoS 1; acknowledged by PUBACK.
    Mqtt(MqttSink),
    /// POST frames to a URL; acknowledged by a 2xx.
    Http(HttpSink),
}

/// `tls`: how a `mqtts://` or `https://` peer is checked, and who we are to it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM file of the CAs to trust; by default the system bundle
    /// (`/etc/ssl/certs/ca-certificates.crt` and the usual other places).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain to present (mutual TLS); needs `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Accept any server certificate. For a test bench only: logged as a warning at start.
    #[serde(default)]
    pub insecure: bool,
}

impl Tls {
    pub(super) fn validate(&self, table: &str) -> Result<(), (super::KeyPath, String)> {
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err((
                super::KeyPath::dotted(table).then("tls.client_cert"),
                "client_cert and client_key go together".into(),
            ));
        }
        Ok(())
    }
}

/// `[sink]` with `type = "http"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSink {
    /// `http://host:port/path` that takes one frame per POST.
    pub url: String,
    /// More URLs, tried in turn after repeated failures.
    #[serde(default)]
    pub failover: Vec<String>,
    /// While on a failover URL, how often to try the first one again.
    #[serde(default = "default_failback")]
    pub failback_after: Secs,
    /// Bearer token.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Basic auth user name.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic auth password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// How long each phase of a request (connect, send, receive) may take.
    #[serde(default = "default_net_timeout")]
    pub timeout: Secs,
    /// TLS settings for `https://` URLs.
    #[serde(default)]
    pub tls: Tls,
}

/// `[sink]` with `type = "mqtt"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSink {
    /// `mqtt://host:port` (port 1883 by default).
    pub url: String,
    /// More brokers, tried in turn after repeated failures.
    #[serde(default)]
    pub failover: Vec<String>,
    /// While on a failover broker, how often to try the first one again.
    #[serde(default = "default_failback")]
    pub failback_after: Secs,
    /// Topic for frames; `{instance}` becomes the instance id, and `{tag}` the value of that
    /// tag in `fleet.tags` (filled when the config is read: `fleet::fill_templates`).
    #[serde(default = "default_frames_topic")]
    pub topic: String,
    /// Retained birth/death topic: `online` after each connect, `offline` as the Last Will
    /// and on a clean stop. A template as `topic` is.
    #[serde(default = "default_state_topic")]
    pub state_topic: String,
    /// Client id; by default the instance id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// User name, if the broker wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// MQTT keep-alive: a PINGREQ after this long without writing.
    #[serde(default = "default_keep_alive")]
    pub keep_alive: Secs,
    /// Frames published and not yet acknowledged, at most.
    #[serde(default = "default_window")]
    pub window: usize,
    /// The largest packet the broker accepts (mosquitto: `max_packet_size`).
    #[serde(default = "default_max_packet")]
    pub max_packet_bytes: Size,
    /// How long to wait for the broker to connect, take a write, or answer.
    #[serde(default = "default_net_timeout")]
    pub timeout: Secs,
    /// TLS settings for `mqtts://` brokers.
    #[serde(default)]
    pub tls: Tls,
    /// Not a key: where rebirth requests come (`P/I/rebirth`, `P/rebirth`, P being
    /// `fleet.topic_prefix`, or `tailbeat` without a `[fleet]`), and how often one is
    /// answered at most (`fleet.rebirth_min_interval`). Set when the config is read.
    #[serde(skip, default = "default_rebirth")]
    pub rebirth: (String, Duration),
}

fn default_rebirth() -> (String, Duration) {
    ("tailbeat".into(), Duration::from_secs(10))
}

impl MqttSink {
    /// The brokers: `url`, then `failover` (all validated by [`Config::validate`](super::Config::validate)).
    pub fn endpoints(&self) -> Vec<Endpoint> {
        std::iter::once(&self.url)
            .chain(&self.failover)
            .filter_map(|u| endpoint::mqtt(u).ok())
            .collect()
    }
}

fn default_frames_topic() -> String {
    "tailbeat/{instance}/frames".into()
}
fn default_state_topic() -> String {
    "tailbeat/{instance}/state".into()
}
fn default_keep_alive() -> Secs {
    Secs(Duration::from_secs(30))
}
fn default_window() -> usize {
    16
}
fn default_max_packet() -> Size {
    Size(256 << 10)
}
fn default_net_timeout() -> Secs {
    Secs(Duration::from_secs(10))
}
fn default_failback() -> Secs {
    Secs(Duration::from_secs(60))
}
fn yes() -> bool {
    true
}
