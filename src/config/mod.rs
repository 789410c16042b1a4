//! The agent's configuration: a TOML file, every key documented in README.md.
//!
//! This module owns parsing and validation and nothing else; it never opens a log file or the
//! spool. Always true: a [`Config`] that [`Config::parse`] returns has passed [`Config::validate`],
//! and unknown keys are errors, never ignored.

pub mod endpoint;
mod units;

pub use endpoint::Endpoint;

pub use units::{parse_duration, parse_size, Secs, Size};

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The built-in config that `tailbeat run` uses without `--config`: tails the demo logs under
/// `examples/logs/` into a file sink under `./tailbeat-data/`.
pub const DEMO: &str = include_str!("demo.toml");

/// The whole agent config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Identity in every frame; by default generated once and kept in `data_dir/instance_id`.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Where the spool, checkpoints and instance id live.
    pub data_dir: PathBuf,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// How often progress is logged (only when something changed).
    #[serde(default = "default_stats_interval")]
    pub stats_interval: Secs,
    /// Longest sleep between two looks at the files when they are quiet.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Secs,
    /// How long SIGTERM/SIGINT wait for the sink to take the backlog before persisting it.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: Secs,
    /// The files to tail (more can come from the fleet, see [`Fleet`]).
    #[serde(rename = "input", default)]
    pub inputs: Vec<Input>,
    /// How lines become frames.
    #[serde(default)]
    pub batch: Batch,
    /// The buffer on disk.
    #[serde(default)]
    pub spool: Spool,
    /// Where frames go.
    pub sink: Sink,
    /// The ConfigServer that manages this agent, if any.
    #[serde(default)]
    pub fleet: Option<Fleet>,
}

/// `[fleet]`: heartbeats, config status and remote config, over ConfigServer protocol v2.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    /// The ConfigServer: `http(s)://host:port[/prefix]`, requests going to
    /// `{server}/Agent/Heartbeat` and its siblings; or an MQTT broker,
    /// `mqtt(s)://host:port`, the same messages travelling on topics under `topic_prefix`.
    pub server: String,
    /// MQTT: the topics' prefix (README, "MQTT topics").
    #[serde(default = "default_fleet_prefix")]
    pub topic_prefix: String,
    /// MQTT: client id; by default `{instance}-fleet`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// MQTT: user name.
    #[serde(default)]
    pub username: Option<String>,
    /// MQTT: password (never logged).
    #[serde(default)]
    pub password: Option<String>,
    /// Time between heartbeats.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_interval: Secs,
    /// How long each phase of a request (connect, send, receive) may take.
    #[serde(default = "default_fleet_timeout")]
    pub timeout: Secs,
    /// `agent_type` in the heartbeat.
    #[serde(default = "default_agent_type")]
    pub agent_type: String,
    /// Group tags (name = value) in the heartbeat; the server picks configs by them.
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
    /// Bearer token for the server (never logged).
    #[serde(default)]
    pub token: Option<String>,
    /// TLS settings for an `https://` server.
    #[serde(default)]
    pub tls: Tls,
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("server", &self.server)
            .field("topic_prefix", &self.topic_prefix)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("timeout", &self.timeout)
            .field("agent_type", &self.agent_type)
            .field("tags", &self.tags)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// One `[[input]]`: a set of files.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Unique name, for logs and stats.
    pub name: String,
    /// Glob patterns: `*` and `?` within a path component, `**` for any depth.
    pub paths: Vec<String>,
    /// Glob patterns of paths to leave alone (a pattern without `/` matches the file name).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Where to start in a file that exists when the agent first starts: `head` or `tail`.
    #[serde(default)]
    pub start_at: StartAt,
    /// Longer lines are cut here, flagged and counted.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: Size,
    /// A last line with no newline is sent as it is after this long.
    #[serde(default = "default_partial_flush")]
    pub partial_flush: Secs,
    /// How long a rotated file is kept open, read to its end, for late writes.
    #[serde(default = "default_rotate_wait")]
    pub rotate_wait: Secs,
}

/// Where to start reading a file seen for the first time at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// From its first byte.
    Head,
    /// From its current end (files created later are always read from the head).
    #[default]
    Tail,
}

/// `[batch]`: when a frame closes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Batch {
    /// Lines per frame at most.
    pub max_lines: u32,
    /// Encoded bytes per frame at most.
    pub max_bytes: Size,
    /// How long the first line of a frame may wait for more.
    pub linger: Secs,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            max_lines: 1000,
            max_bytes: Size(64 << 10),
            linger: Secs(Duration::from_secs(1)),
        }
    }
}

/// `[spool]`: the bounded buffer on disk.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Spool {
    /// Disk the spool may use, all segments together.
    pub max_bytes: Size,
    /// Size at which a segment file is closed and a new one started.
    pub segment_bytes: Size,
    /// What happens when the spool is full: `block` or `drop_oldest`.
    pub on_full: OnFull,
    /// fsync frames before they are sent (off: survives kill -9 but not power loss).
    pub fsync: bool,
}

impl Default for Spool {
    fn default() -> Self {
        Spool {
            max_bytes: Size(64 << 20),
            segment_bytes: Size(4 << 20),
            on_full: OnFull::Block,
            fsync: true,
        }
    }
}

/// The spool's policy when full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Stop reading files until the sink catches up: lossless while the files stay on disk.
    Block,
    /// Delete the oldest frames to make room, and count them.
    DropOldest,
}

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
    fn validate(&self, table: &str) -> Result<(), (String, String)> {
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err((
                format!("{table}.tls.client_cert"),
                "client_cert and client_key go together".into(),
            ));
        }
        Ok(())
    }
}

/// `[sink]` with `type = "http"`.
#[derive(Clone, PartialEq, Deserialize)]
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
    /// Bearer token (never logged).
    #[serde(default)]
    pub token: Option<String>,
    /// Basic auth user name.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic auth password (never logged).
    #[serde(default)]
    pub password: Option<String>,
    /// How long each phase of a request (connect, send, receive) may take.
    #[serde(default = "default_net_timeout")]
    pub timeout: Secs,
    /// TLS settings for `https://` URLs.
    #[serde(default)]
    pub tls: Tls,
}

impl fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSink")
            .field("url", &self.url)
            .field("failover", &self.failover)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

/// `[sink]` with `type = "mqtt"`.
#[derive(Clone, PartialEq, Deserialize)]
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
    /// Topic for frames; `{instance}` becomes the instance id.
    #[serde(default = "default_frames_topic")]
    pub topic: String,
    /// Retained birth/death topic: `online` after each connect, `offline` as the Last Will
    /// and on a clean stop.
    #[serde(default = "default_state_topic")]
    pub state_topic: String,
    /// Client id; by default the instance id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// User name, if the broker wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password (never logged).
    #[serde(default)]
    pub password: Option<String>,
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
}

impl std::fmt::Debug for MqttSink {
    // By hand, so that the password never reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttSink")
            .field("url", &self.url)
            .field("failover", &self.failover)
            .field("topic", &self.topic)
            .field("state_topic", &self.state_topic)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("keep_alive", &self.keep_alive)
            .field("window", &self.window)
            .field("tls", &self.tls)
            .finish()
    }
}

impl MqttSink {
    /// The brokers: `url`, then `failover` (all validated by [`Config::validate`]).
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
fn default_fleet_prefix() -> String {
    "tailbeat".into()
}
fn default_heartbeat() -> Secs {
    Secs(Duration::from_secs(10))
}
fn default_fleet_timeout() -> Secs {
    Secs(Duration::from_secs(5))
}
fn default_agent_type() -> String {
    "tailbeat".into()
}
fn yes() -> bool {
    true
}
fn default_log_level() -> String {
    "info".into()
}
fn default_stats_interval() -> Secs {
    Secs(Duration::from_secs(10))
}
fn default_poll_interval() -> Secs {
    Secs(Duration::from_secs(1))
}
fn default_shutdown_timeout() -> Secs {
    Secs(Duration::from_secs(5))
}
fn default_max_line() -> Size {
    Size(16 << 10)
}
fn default_partial_flush() -> Secs {
    Secs(Duration::from_secs(5))
}
fn default_rotate_wait() -> Secs {
    Secs(Duration::from_secs(5))
}

/// A config that could not be read: the file, line and key at fault, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, when there is one.
    pub path: Option<PathBuf>,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted key, e.g. `spool.max_bytes` or `input[1].paths`.
    pub key: Option<String>,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.path, self.line) {
            (Some(p), Some(l)) => write!(f, "{}:{}: ", p.display(), l)?,
            (Some(p), None) => write!(f, "{}: ", p.display())?,
            (None, Some(l)) => write!(f, "line {l}: ")?,
            (None, None) => {}
        }
        if let Some(k) = &self.key {
            write!(f, "{k}: ")?;
        }
        f.write_str(&self.msg)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: Some(path.into()),
            line: None,
            key: None,
            msg: format!("cannot read: {e}"),
        })?;
        Config::parse(&text).map_err(|mut e| {
            e.path = Some(path.into());
            e
        })
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = parse_toml(text)?;
        cfg.validate().map_err(|(key, msg)| ConfigError {
            path: None,
            line: find_key(text, &key),
            key: Some(key),
            msg,
        })?;
        Ok(cfg)
    }

    /// Checks what types cannot: ranges, relations between keys, unique names.
    /// On failure returns the dotted key and the reason.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: String| Err((k.to_string(), m));
        if log_level(&self.log_level).is_none() {
            return err(
                "log_level",
                format!(
                    "expected one of error, warn, info, debug, trace, got {:?}",
                    self.log_level
                ),
            );
        }
        if let Some(id) = &self.instance_id {
            if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control() || c == '/') {
                return err(
                    "instance_id",
                    "must be 1 to 128 characters, no '/' nor control characters".into(),
                );
            }
        }
        if self.poll_interval.0 < Duration::from_millis(10) {
            return err("poll_interval", "must be at least 10ms".into());
        }
        if self.inputs.is_empty() && self.fleet.is_none() {
            return err(
                "input",
                "at least one [[input]] is needed (or a [fleet] that sends pipelines)".into(),
            );
        }
        if let Some(f) = &self.fleet {
            let checked = if f.server.starts_with("mqtt") {
                if !cfg!(feature = "mqtt") {
                    Err("MQTT is left out of this build (cargo feature mqtt)".to_string())
                } else {
                    endpoint::mqtt(&f.server).and_then(|e| {
                        if e.tls && !cfg!(feature = "tls") {
                            Err("mqtts:// needs TLS, which this build leaves out (cargo feature tls)".into())
                        } else {
                            Ok(())
                        }
                    })
                }
            } else {
                check_http_url(&f.server)
            };
            if let Err(m) = checked {
                return err("fleet.server", m);
            }
            if f.topic_prefix.is_empty() || f.topic_prefix.contains(['+', '#']) {
                return err(
                    "fleet.topic_prefix",
                    "must be a topic name, without wildcards".into(),
                );
            }
            for (k, v) in &f.tags {
                if v.is_empty() || v.contains(['+', '#', '/']) {
                    return err(
                        "fleet.tags",
                        format!("{k} = {v:?}: a tag value names an MQTT group topic: no '/', '+' or '#'"),
                    );
                }
            }
            f.tls.validate("fleet")?;
            if f.heartbeat_interval.0 < Duration::from_secs(1) {
                return err("fleet.heartbeat_interval", "must be at least 1s".into());
            }
            if f.timeout.0.is_zero() {
                return err("fleet.timeout", "must be more than 0".into());
            }
        }
        let batch_max = self.batch.max_bytes.0;
        if !(1024..=(8 << 20)).contains(&batch_max) {
            return err("batch.max_bytes", "must be between 1KiB and 8MiB".into());
        }
        if self.batch.max_lines == 0 {
            return err("batch.max_lines", "must be at least 1".into());
        }
        for (i, inp) in self.inputs.iter().enumerate() {
            let k = |f: &str| format!("input[{i}].{f}");
            if inp.name.is_empty() {
                return err(&k("name"), "must not be empty".into());
            }
            if self.inputs[..i].iter().any(|o| o.name == inp.name) {
                return err(
                    &k("name"),
                    format!("{:?} is used by another input", inp.name),
                );
            }
            if inp.paths.is_empty() {
                return err(&k("paths"), "needs at least one pattern".into());
            }
            for p in inp.paths.iter().chain(&inp.exclude) {
                if p.is_empty() {
                    return err(&k("paths"), "empty pattern".into());
                }
            }
            let m = inp.max_line_bytes.0;
            if m < 16 || m + 512 > batch_max {
                return err(
                    &k("max_line_bytes"),
                    format!(
                        "must be at least 16 and leave 512 bytes of batch.max_bytes ({batch_max}), got {m}"
                    ),
                );
            }
        }
        let s = &self.spool;
        if s.segment_bytes.0 < batch_max + 1024 {
            return err(
                "spool.segment_bytes",
                format!(
                    "must hold a whole frame: at least batch.max_bytes + 1KiB ({}), got {}",
                    batch_max + 1024,
                    s.segment_bytes.0
                ),
            );
        }
        if s.max_bytes.0 < 2 * s.segment_bytes.0 {
            return err(
                "spool.max_bytes",
                format!(
                    "must hold at least two segments (2 x spool.segment_bytes = {}), got {}",
                    2 * s.segment_bytes.0,
                    s.max_bytes.0
                ),
            );
        }
        match &self.sink {
            Sink::File { path, .. } if path.as_os_str().is_empty() => {
                return err("sink.path", "must not be empty".into());
            }
            Sink::Mqtt(_) if !cfg!(feature = "mqtt") => {
                return err(
                    "sink.type",
                    "the MQTT sink is left out of this build (cargo feature mqtt)".into(),
                );
            }
            Sink::Mqtt(m) => {
                for (key, url) in std::iter::once(("sink.url", &m.url))
                    .chain(m.failover.iter().map(|u| ("sink.failover", u)))
                {
                    match endpoint::mqtt(url) {
                        Ok(e) if e.tls && !cfg!(feature = "tls") => return err(
                            key,
                            "mqtts:// needs TLS, which this build leaves out (cargo feature tls)"
                                .into(),
                        ),
                        Ok(_) => {}
                        Err(m) => return err(key, m),
                    }
                }
                m.tls.validate("sink")?;
                for (key, t) in [
                    ("sink.topic", &m.topic),
                    ("sink.state_topic", &m.state_topic),
                ] {
                    if t.is_empty() || t.contains(['+', '#']) {
                        return err(key, "must be a topic name, without wildcards".into());
                    }
                }
                if !(1..=1024).contains(&m.window) {
                    return err("sink.window", "must be between 1 and 1024".into());
                }
                // A frame that the broker would refuse must be refused here, not lost later.
                let need = batch_max + 1024 + m.topic.len() as u64 + 128;
                if m.max_packet_bytes.0 < need {
                    return err(
                        "sink.max_packet_bytes",
                        format!(
                            "{} is too small for frames of batch.max_bytes = {batch_max}: at least {need}",
                            m.max_packet_bytes.0
                        ),
                    );
                }
            }
            Sink::Http(h) => {
                for (key, url) in std::iter::once(("sink.url", &h.url))
                    .chain(h.failover.iter().map(|u| ("sink.failover", u)))
                {
                    if let Err(m) = check_http_url(url) {
                        return err(key, m);
                    }
                }
                h.tls.validate("sink")?;
                if h.token.is_some() && h.username.is_some() {
                    return err("sink.token", "give a token or a username, not both".into());
                }
                if h.timeout.0.is_zero() {
                    return err("sink.timeout", "must be more than 0".into());
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The log level filter this config asks for.
    pub fn level(&self) -> log::LevelFilter {
        log_level(&self.log_level).unwrap_or(log::LevelFilter::Info)
    }
}

/// An `http://` URL this build can use.
fn check_http_url(url: &str) -> Result<(), String> {
    if !cfg!(feature = "http") {
        return Err("HTTP is left out of this build (cargo feature http)".into());
    }
    if url.starts_with("https://") && !cfg!(feature = "tls") {
        return Err("https:// needs TLS, which this build leaves out (cargo feature tls)".into());
    }
    endpoint::http(url)
}

/// TOML text into `T`, errors with the line and key at fault.
fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        let msg = e.message().trim().to_string();
        let key = line.and_then(|l| key_at(text, l, &msg));
        ConfigError {
            path: None,
            line,
            key,
            msg,
        }
    })
}

/// A pipeline config from the fleet: the keys of one `[[input]]` table, without `name`
/// (the config's name is the input's name). Checked alone here; against the rest of the
/// config by [`Config::validate`].
pub fn parse_pipeline(name: &str, text: &str) -> Result<Input, ConfigError> {
    if name.is_empty() || name.len() > 128 || name.chars().any(|c| c.is_control()) {
        return Err(ConfigError {
            path: None,
            line: None,
            key: Some("name".into()),
            msg: "a pipeline name must be 1 to 128 characters, no control characters".into(),
        });
    }
    let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
    // The name goes on a line of its own in front, so the detail's own lines keep their
    // numbers after the shift below.
    let full = format!("name = \"{escaped}\"\n{text}");
    let shift = |mut e: ConfigError| {
        e.line = e.line.map(|l| l.saturating_sub(1)).filter(|&l| l > 0);
        e
    };
    parse_toml(&full).map_err(shift)
}

/// An instance config from the fleet: agent-wide settings laid over the local file.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// Replaces `fleet.heartbeat_interval`.
    pub heartbeat_interval: Option<Secs>,
    /// Replaces `log_level`.
    pub log_level: Option<String>,
    /// Replaces `stats_interval`.
    pub stats_interval: Option<Secs>,
    /// Replaces the whole `[spool]` table (keys left out take their defaults).
    pub spool: Option<Spool>,
}

impl InstanceConfig {
    /// Parses an instance config's detail.
    pub fn parse(text: &str) -> Result<InstanceConfig, ConfigError> {
        parse_toml(text)
    }

    /// Lays these settings over `cfg`.
    pub fn apply_to(&self, cfg: &mut Config) {
        if let (Some(h), Some(f)) = (self.heartbeat_interval, cfg.fleet.as_mut()) {
            f.heartbeat_interval = h;
        }
        if let Some(l) = &self.log_level {
            cfg.log_level = l.clone();
        }
        if let Some(s) = self.stats_interval {
            cfg.stats_interval = s;
        }
        if let Some(s) = &self.spool {
            cfg.spool = s.clone();
        }
    }
}

/// Parses a log level name.
pub fn log_level(s: &str) -> Option<log::LevelFilter> {
    Some(match s {
        "off" => log::LevelFilter::Off,
        "error" => log::LevelFilter::Error,
        "warn" => log::LevelFilter::Warn,
        "info" => log::LevelFilter::Info,
        "debug" => log::LevelFilter::Debug,
        "trace" => log::LevelFilter::Trace,
        _ => return None,
    })
}

fn line_of(text: &str, byte: usize) -> usize {
    text.as_bytes()[..byte.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The table a line belongs to (`spool`, `input[1]`), from the headers above it.
fn table_at(text: &str, line: usize) -> String {
    let mut table = String::new();
    let mut arrays: Vec<(String, usize)> = Vec::new();
    for l in text.lines().take(line) {
        let t = l.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_string();
            let n = match arrays.iter_mut().find(|(a, _)| *a == name) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    arrays.push((name.clone(), 0));
                    0
                }
            };
            table = format!("{name}[{n}]");
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = name.trim().to_string();
        }
    }
    table
}

/// The dotted key an error on `line` is about.
fn key_at(text: &str, line: usize, msg: &str) -> Option<String> {
    let table = table_at(text, line);
    let l = text.lines().nth(line - 1)?.trim();
    let key = if l.starts_with('[') {
        // An error on a table header is about a key inside it (e.g. a missing field):
        // name the field if the message quotes one.
        msg.split('`').nth(1).map(str::to_string)
    } else {
        l.split('=')
            .next()
            .map(|k| k.trim().trim_matches('"').to_string())
    };
    match (table.is_empty(), key) {
        (true, k) => k,
        (false, Some(k)) if !k.is_empty() => Some(format!("{table}.{k}")),
        (false, _) => Some(table),
    }
}

/// The line where a dotted key (as `validate` names it) is set, if it is.
fn find_key(text: &str, key: &str) -> Option<usize> {
    let (table, field) = match key.rsplit_once('.') {
        Some((t, f)) => (t.to_string(), f),
        None => (String::new(), key),
    };
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            continue;
        }
        if table_at(text, i + 1) == table
            && t.split('=').next().map(|k| k.trim()) == Some(field)
            && t.contains('=')
        {
            return Some(i + 1);
        }
    }
    // Not set on a line of its own: point at the table's header.
    if table.is_empty() {
        return None;
    }
    (1..=text.lines().count()).find(|&i| {
        text.lines()
            .nth(i - 1)
            .is_some_and(|l| l.trim().starts_with('['))
            && table_at(text, i) == table
    })
}

#[cfg(test)]
mod tests;
