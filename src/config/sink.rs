//! `[sink]`: where frames go, and how the network sinks connect.
//!
//! Each URL (`url`, each of `failover`) is parsed once, as the config is read, into an
//! [`Endpoint`] or [`HttpUrl`], a bad one named by its key (`sink.url`, `sink.failover[1]`)
//! and line. A [`Sink`] holds parsed URLs only: nothing downstream parses one again or
//! handles a bad one.

use super::endpoint::{self, Endpoint, HttpUrl};
use super::read::{sub, Table, Value};
use super::{ConfigError, Secret, Secs, Size};
use std::path::PathBuf;
use std::time::Duration;

/// `[sink]`: where frames go.
#[derive(Debug, Clone, PartialEq)]
pub enum Sink {
    /// Append frames to a file; acknowledged once written (and fsynced, if `fsync`).
    File {
        /// The file to append to.
        path: PathBuf,
        /// fsync before acknowledging.
        fsync: bool,
    },
    /// Print lines as JSON to standard output; acknowledged once written.
    Stdout {},
    /// Publish frames to an MQTT broker at QoS 1; acknowledged by PUBACK.
    Mqtt(MqttSink),
    /// POST frames to a URL; acknowledged by a 2xx.
    Http(HttpSink),
}

#[derive(Clone, Copy)]
enum Type {
    File,
    Stdout,
    Mqtt,
    Http,
}

impl Sink {
    /// Reads a `[sink]` table: its `type`, then that type's keys.
    pub(super) fn read(t: &mut Table<'_>) -> Result<Sink, ConfigError> {
        use Type::*;
        let kind = t.tag(
            "type",
            &[
                ("file", File),
                ("stdout", Stdout),
                ("mqtt", Mqtt),
                ("http", Http),
            ],
        )?;
        t.keys(&[
            &["type"],
            match kind {
                File => &["path", "fsync"],
                Stdout => &[],
                Mqtt => &[
                    "url",
                    "failover",
                    "failback_after",
                    "topic",
                    "state_topic",
                    "client_id",
                    "username",
                    "password",
                    "keep_alive",
                    "window",
                    "max_packet_bytes",
                    "timeout",
                    "tls",
                ],
                Http => &[
                    "url",
                    "failover",
                    "failback_after",
                    "token",
                    "username",
                    "password",
                    "timeout",
                    "tls",
                ],
            },
        ])?;
        Ok(match kind {
            File => Sink::File {
                path: t.need("path")?.path()?,
                fsync: t.or("fsync", Value::bool, true)?,
            },
            Stdout => Sink::Stdout {},
            Mqtt => {
                let (url, failover) = urls(t, endpoint::mqtt)?;
                Sink::Mqtt(MqttSink {
                    url,
                    failover,
                    failback_after: t.or("failback_after", Value::secs, default_failback())?,
                    topic: t.or("topic", Value::string, "tailbeat/{instance}/frames".into())?,
                    state_topic: t.or(
                        "state_topic",
                        Value::string,
                        "tailbeat/{instance}/state".into(),
                    )?,
                    client_id: t.opt("client_id", Value::string)?,
                    username: t.opt("username", Value::string)?,
                    password: t.opt("password", Value::secret)?,
                    keep_alive: t.or("keep_alive", Value::secs, Secs::s(30))?,
                    window: t.or("window", Value::usize, 16)?,
                    max_packet_bytes: t.or("max_packet_bytes", Value::size, Size(256 << 10))?,
                    timeout: t.or("timeout", Value::secs, default_net_timeout())?,
                    tls: t.or("tls", Tls::read, Tls::default())?,
                    rebirth: ("tailbeat".into(), Duration::from_secs(10)),
                })
            }
            Http => {
                let (url, failover) = urls(t, endpoint::http)?;
                Sink::Http(HttpSink {
                    url,
                    failover,
                    failback_after: t.or("failback_after", Value::secs, default_failback())?,
                    token: t.opt("token", Value::secret)?,
                    username: t.opt("username", Value::string)?,
                    password: t.opt("password", Value::secret)?,
                    timeout: t.or("timeout", Value::secs, default_net_timeout())?,
                    tls: t.or("tls", Tls::read, Tls::default())?,
                })
            }
        })
    }
}

/// `url` and `failover`, each parsed by `parse`; an error names `sink.url` or
/// `sink.failover[i]`, and its line.
fn urls<U>(
    t: &mut Table<'_>,
    parse: fn(&str) -> Result<U, String>,
) -> Result<(U, Vec<U>), ConfigError> {
    let first = t.need("url")?.parse(parse)?;
    let mut rest = Vec::new();
    if let Some(v) = t.take("failover") {
        for u in v.items("an array of strings")? {
            rest.push(u.parse(parse)?);
        }
    }
    Ok((first, rest))
}

/// `tls`: how a `mqtts://` or `https://` peer is checked, and who we are to it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tls {
    /// PEM file of the CAs to trust; by default the system bundle
    /// (`/etc/ssl/certs/ca-certificates.crt` and the usual other places).
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain to present (mutual TLS); needs `client_key`.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Accept any server certificate. For a test bench only: logged as a warning at start.
    pub insecure: bool,
}

impl Tls {
    /// Reads a `tls` table (`[sink.tls]`, `[fleet.tls]`).
    pub(super) fn read(v: Value<'_>) -> Result<Tls, ConfigError> {
        sub(v, |t| {
            t.keys(&[&["ca_file", "client_cert", "client_key", "insecure"]])?;
            Ok(Tls {
                ca_file: t.opt("ca_file", Value::path)?,
                client_cert: t.opt("client_cert", Value::path)?,
                client_key: t.opt("client_key", Value::path)?,
                insecure: t.or("insecure", Value::bool, false)?,
            })
        })
    }

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
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSink {
    /// `http://host:port/path` that takes one frame per POST.
    pub url: HttpUrl,
    /// More URLs, tried in turn after repeated failures.
    pub failover: Vec<HttpUrl>,
    /// While on a failover URL, how often to try the first one again.
    pub failback_after: Secs,
    /// Bearer token.
    pub token: Option<Secret>,
    /// Basic auth user name.
    pub username: Option<String>,
    /// Basic auth password.
    pub password: Option<Secret>,
    /// How long each phase of a request (connect, send, receive) may take.
    pub timeout: Secs,
    /// TLS settings for `https://` URLs.
    pub tls: Tls,
}

/// `[sink]` with `type = "mqtt"`.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSink {
    /// `mqtt://host:port` (port 1883 by default).
    pub url: Endpoint,
    /// More brokers, tried in turn after repeated failures.
    pub failover: Vec<Endpoint>,
    /// While on a failover broker, how often to try the first one again.
    pub failback_after: Secs,
    /// Topic for frames; `{instance}` becomes the instance id, and `{tag}` the value of that
    /// tag in `fleet.tags` (filled when the config is read: `fleet::fill_templates`).
    pub topic: String,
    /// Retained birth/death topic: `online` after each connect, `offline` as the Last Will
    /// and on a clean stop. A template as `topic` is.
    pub state_topic: String,
    /// Client id; by default the instance id.
    pub client_id: Option<String>,
    /// User name, if the broker wants one.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Secret>,
    /// MQTT keep-alive: a PINGREQ after this long without writing.
    pub keep_alive: Secs,
    /// Frames published and not yet acknowledged, at most.
    pub window: usize,
    /// The largest packet the broker accepts (mosquitto: `max_packet_size`).
    pub max_packet_bytes: Size,
    /// How long to wait for the broker to connect, take a write, or answer.
    pub timeout: Secs,
    /// TLS settings for `mqtts://` brokers.
    pub tls: Tls,
    /// Not a key: where rebirth requests come (`P/I/rebirth`, `P/rebirth`, P being
    /// `fleet.topic_prefix`, or `tailbeat` without a `[fleet]`), and how often one is
    /// answered at most (`fleet.rebirth_min_interval`). Set when the config is read.
    pub rebirth: (String, Duration),
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

fn default_net_timeout() -> Secs {
    Secs::s(10)
}
fn default_failback() -> Secs {
    Secs::s(60)
}
