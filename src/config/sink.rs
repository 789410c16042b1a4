//! `[sink]`: where frames go, and how the network sinks connect.
//!
//! Read in two steps, because serde reads an internally tagged enum (`type = "mqtt"`) from
//! a copy that has lost where each value was in the file: an error raised while reading
//! `url` there would name only `[sink]`. So serde reads a [`RawSink`], URLs as written, and
//! [`RawSink::check`] parses each URL once into an [`Endpoint`] or [`HttpUrl`], naming the
//! key at fault (`sink.url`, `sink.failover[1]`) as a [`KeyPath`]. A [`Sink`] holds parsed
//! URLs only: nothing downstream parses one again or handles a bad one.

use super::endpoint::{self, Endpoint, HttpUrl};
use super::{KeyPath, Secret, Secs, Size};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `[sink]`: where frames go. `M` and `H` are how an MQTT and an HTTP URL are held: parsed
/// (the default, what a [`Config`](super::Config) holds), or as written ([`RawSink`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Sink<M = Endpoint, H = HttpUrl> {
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
    Mqtt(MqttSink<M>),
    /// POST frames to a URL; acknowledged by a 2xx.
    Http(HttpSink<H>),
}

/// `[sink]` as serde reads it: URLs as written, not yet parsed (module doc).
pub type RawSink = Sink<String, String>;

impl RawSink {
    /// Parses every URL (`url`, then each of `failover`) once; `Err` names the key at fault,
    /// under `sink`, and what is wrong with its value.
    pub fn check(self) -> Result<Sink, (KeyPath, String)> {
        Ok(match self {
            Sink::File { path, fsync } => Sink::File { path, fsync },
            Sink::Stdout {} => Sink::Stdout {},
            Sink::Mqtt(m) => {
                let (url, failover) = urls(&m.url, &m.failover, endpoint::mqtt)?;
                Sink::Mqtt(MqttSink {
                    url,
                    failover,
                    failback_after: m.failback_after,
                    topic: m.topic,
                    state_topic: m.state_topic,
                    client_id: m.client_id,
                    username: m.username,
                    password: m.password,
                    keep_alive: m.keep_alive,
                    window: m.window,
                    max_packet_bytes: m.max_packet_bytes,
                    timeout: m.timeout,
                    tls: m.tls,
                    rebirth: m.rebirth,
                })
            }
            Sink::Http(h) => {
                let (url, failover) = urls(&h.url, &h.failover, endpoint::http)?;
                Sink::Http(HttpSink {
                    url,
                    failover,
                    failback_after: h.failback_after,
                    token: h.token,
                    username: h.username,
                    password: h.password,
                    timeout: h.timeout,
                    tls: h.tls,
                })
            }
        })
    }
}

/// `url` and `failover` parsed by `parse`; `Err` names `sink.url` or `sink.failover[i]`.
// Not inlined into `check` with the parsers: 0.5 KiB less code (cargo bloat, x86_64).
#[inline(never)]
fn urls<U>(
    url: &str,
    failover: &[String],
    parse: fn(&str) -> Result<U, String>,
) -> Result<(U, Vec<U>), (KeyPath, String)> {
    let first = parse(url).map_err(|m| (KeyPath::dotted("sink.url"), m))?;
    // A loop rather than `collect::<Result<..>>`: the same, in less code.
    let mut rest = Vec::with_capacity(failover.len());
    for (i, u) in failover.iter().enumerate() {
        rest.push(parse(u).map_err(|m| (KeyPath::dotted("sink.failover").index(i), m))?);
    }
    Ok((first, rest))
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

/// `[sink]` with `type = "http"`; `U`: see [`Sink`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSink<U = HttpUrl> {
    /// `http://host:port/path` that takes one frame per POST.
    pub url: U,
    /// More URLs, tried in turn after repeated failures.
    #[serde(default = "Vec::new")]
    pub failover: Vec<U>,
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

/// `[sink]` with `type = "mqtt"`; `U`: see [`Sink`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSink<U = Endpoint> {
    /// `mqtt://host:port` (port 1883 by default).
    pub url: U,
    /// More brokers, tried in turn after repeated failures.
    #[serde(default = "Vec::new")]
    pub failover: Vec<U>,
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
    /// The brokers: `url`, then `failover`.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        std::iter::once(&self.url)
            .chain(&self.failover)
            .cloned()
            .collect()
    }
}

impl HttpSink {
    /// The URLs: `url`, then `failover`.
    pub fn urls(&self) -> impl Iterator<Item = &HttpUrl> {
        std::iter::once(&self.url).chain(&self.failover)
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
