//! The agent's configuration: a TOML file, every key documented in README.md.
//!
//! This module owns parsing and validation and nothing else; it never opens a log file or the
//! spool. Always true: a [`Config`] that [`Config::parse`] returns has passed [`Config::validate`],
//! and unknown keys are errors, never ignored; every URL in it is parsed ([`Endpoint`],
//! [`HttpUrl`], [`Server`]), a bad one named by its key and line; every credential (token,
//! password) is a [`Secret`], which formats as `***`, and no URL carries `user:password@`.

mod alerts;
pub mod endpoint;
mod error;
mod fleet;
mod pipeline;
mod read;
mod secret;
mod sink;
mod units;

pub use alerts::Alerts;
pub use endpoint::{Endpoint, HttpUrl, Server};
pub use error::{clip, from_utf8, ConfigError, KeyPath, Seg};
pub(crate) use fleet::fill_sink;
pub use fleet::{Fleet, InstanceConfig};
pub use pipeline::{parse_pipeline, FleetPipeline, Pipeline};
pub(crate) use read::line_of_key;
use read::{Table, Value};
pub use secret::Secret;
pub use sink::{HttpSink, MqttSink, Sink, Tls};

pub use units::{parse_duration, parse_size, Secs, Size};

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The built-in config that `tailbeat run` uses without `--config`: tails the demo logs under
/// `examples/logs/` into a file sink under `./tailbeat-data/`.
pub const DEMO: &str = include_str!("demo.toml");

/// The whole agent config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Identity in every frame; by default generated once and kept in `data_dir/instance_id`.
    pub instance_id: Option<String>,
    /// Where the spool, checkpoints and instance id live.
    pub data_dir: PathBuf,
    /// `off`, `error`, `warn`, `info`, `debug` or `trace`; parsed when the file is read.
    pub log_level: LogLevel,
    /// How often progress is logged (only when something changed).
    pub stats_interval: Secs,
    /// Longest sleep between two looks at the files when they are quiet.
    pub poll_interval: Secs,
    /// How long SIGTERM/SIGINT wait for the sink to take the backlog before persisting it.
    pub shutdown_timeout: Secs,
    /// The files to tail (more can come from the fleet, see [`Fleet`]).
    pub inputs: Vec<Input>,
    /// How lines become frames.
    pub batch: Batch,
    /// The buffer on disk.
    pub spool: Spool,
    /// Where frames go.
    pub sink: Sink,
    /// The ConfigServer that manages this agent, if any.
    pub fleet: Option<Fleet>,
    /// The metrics endpoint, if any.
    pub metrics: Option<Metrics>,
    /// Alert thresholds and the latency window (all optional).
    pub alerts: Alerts,
    /// Pipelines of their own, from the fleet (never in the file).
    pub pipelines: Vec<Pipeline>,
}

/// One `[[input]]`: a set of files.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// Unique name, for logs and stats.
    pub name: String,
    /// Glob patterns: `*` and `?` within a path component, `**` for any depth.
    pub paths: Vec<String>,
    /// Glob patterns of paths to leave alone (a pattern without `/` matches the file name).
    pub exclude: Vec<String>,
    /// Where to start in a file that exists when the agent first starts: `head` or `tail`.
    pub start_at: StartAt,
    /// Longer lines are cut here, flagged and counted.
    pub max_line_bytes: Size,
    /// A last line with no newline is sent as it is after this long.
    pub partial_flush: Secs,
    /// How long a rotated file is kept open, read to its end, for late writes.
    pub rotate_wait: Secs,
}

/// Where to start reading a file seen for the first time at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// From its first byte.
    Head,
    /// From its current end (files created later are always read from the head).
    #[default]
    Tail,
}

/// `[batch]`: when a frame closes.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Lines per frame at most.
    pub max_lines: u32,
    /// Encoded bytes per frame at most.
    pub max_bytes: Size,
    /// How long the first line of a frame may wait for more.
    pub linger: Secs,
    /// How a frame's payload over 1 KiB is stored: `none`, `deflate` or `lz4`.
    pub compression: crate::frame::Codec,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            max_lines: 1000,
            max_bytes: Size(64 << 10),
            linger: Secs::s(1),
            compression: crate::frame::Codec::default(),
        }
    }
}

/// `[spool]`: the bounded buffer on disk.
#[derive(Debug, Clone, PartialEq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// Stop reading files until the sink catches up: lossless while the files stay on disk.
    Block,
    /// Delete the oldest frames to make room, and count them.
    DropOldest,
}

/// `[metrics]`: Prometheus text exposition at `/metrics`, and `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    /// Address and port to listen on, e.g. `127.0.0.1:9464`.
    pub listen: std::net::SocketAddr,
    /// `/healthz` answers 503 once the oldest line not yet acknowledged is older than this.
    pub stale_after: Secs,
}

impl Config {
    /// Reads the document's keys (`read.rs`); `validate` checks them after.
    fn read(t: &mut Table<'_>) -> Result<Config, ConfigError> {
        t.keys(&[&[
            "instance_id",
            "data_dir",
            "log_level",
            "stats_interval",
            "poll_interval",
            "shutdown_timeout",
            "input",
            "batch",
            "spool",
            "sink",
            "fleet",
            "metrics",
            "alerts",
        ]])?;
        Ok(Config {
            instance_id: t.opt("instance_id", Value::string)?,
            data_dir: t.need("data_dir")?.path()?,
            log_level: t.or("log_level", LogLevel::read, LogLevel::default())?,
            stats_interval: t.or("stats_interval", Value::secs, Secs::s(10))?,
            poll_interval: t.or("poll_interval", Value::secs, Secs::s(1))?,
            shutdown_timeout: t.or("shutdown_timeout", Value::secs, Secs::s(5))?,
            inputs: t.or(
                "input",
                |v| {
                    v.tables(|t| {
                        t.keys(&[&["name"], Input::KEYS])?;
                        Input::read(t, None)
                    })
                },
                Vec::new(),
            )?,
            batch: t.or("batch", Batch::read, Batch::default())?,
            spool: t.or("spool", Spool::read, Spool::default())?,
            sink: read::sub(t.need("sink")?, Sink::read)?,
            fleet: t.opt("fleet", Fleet::read)?,
            metrics: t.opt("metrics", Metrics::read)?,
            alerts: t.or("alerts", Alerts::read, Alerts::default())?,
            pipelines: Vec::new(),
        })
    }
}

impl Input {
    /// The keys of an `[[input]]` table but `name` (a fleet pipeline's detail has them, and
    /// its name from the fleet).
    pub(crate) const KEYS: &'static [&'static str] = &[
        "paths",
        "exclude",
        "start_at",
        "max_line_bytes",
        "partial_flush",
        "rotate_wait",
    ];

    /// Reads an input's keys, [`KEYS`](Self::KEYS) and, unless `name` is given (a fleet
    /// pipeline's), `name`; the caller has named the table's keys.
    pub(crate) fn read(t: &mut Table<'_>, name: Option<&str>) -> Result<Input, ConfigError> {
        Ok(Input {
            name: match name {
                Some(n) => n.to_string(),
                None => t.need("name")?.string()?,
            },
            paths: t.need("paths")?.strings()?,
            exclude: t.or("exclude", Value::strings, Vec::new())?,
            start_at: t.or("start_at", StartAt::read, StartAt::default())?,
            max_line_bytes: t.or("max_line_bytes", Value::size, Size(16 << 10))?,
            partial_flush: t.or("partial_flush", Value::secs, Secs::s(5))?,
            rotate_wait: t.or("rotate_wait", Value::secs, Secs::s(5))?,
        })
    }

    /// An input from the TOML of one `[[input]]` table (tests).
    #[cfg(test)]
    pub(crate) fn from_toml(text: &str) -> Result<Input, ConfigError> {
        read::document(text, |t| {
            t.keys(&[&["name"], Input::KEYS])?;
            Input::read(t, None)
        })
    }
}

impl StartAt {
    fn read(v: Value<'_>) -> Result<StartAt, ConfigError> {
        v.one_of(&[("head", StartAt::Head), ("tail", StartAt::Tail)])
    }
}

impl Batch {
    /// Reads a `[batch]` table; keys left out keep their defaults.
    pub(super) fn read(v: Value<'_>) -> Result<Batch, ConfigError> {
        read::sub(v, |t| {
            t.keys(&[&["max_lines", "max_bytes", "linger", "compression"]])?;
            let d = Batch::default();
            Ok(Batch {
                max_lines: t.or("max_lines", Value::u32, d.max_lines)?,
                max_bytes: t.or("max_bytes", Value::size, d.max_bytes)?,
                linger: t.or("linger", Value::secs, d.linger)?,
                compression: t.or(
                    "compression",
                    |v| v.parse(crate::frame::Codec::named),
                    d.compression,
                )?,
            })
        })
    }
}

impl Spool {
    /// Reads a `[spool]` table; keys left out keep their defaults.
    pub(super) fn read(v: Value<'_>) -> Result<Spool, ConfigError> {
        read::sub(v, |t| {
            t.keys(&[&["max_bytes", "segment_bytes", "on_full", "fsync"]])?;
            let d = Spool::default();
            Ok(Spool {
                max_bytes: t.or("max_bytes", Value::size, d.max_bytes)?,
                segment_bytes: t.or("segment_bytes", Value::size, d.segment_bytes)?,
                on_full: t.or(
                    "on_full",
                    |v| {
                        v.one_of(&[
                            ("block", OnFull::Block),
                            ("drop_oldest", OnFull::DropOldest),
                        ])
                    },
                    d.on_full,
                )?,
                fsync: t.or("fsync", Value::bool, d.fsync)?,
            })
        })
    }
}

impl Metrics {
    fn read(v: Value<'_>) -> Result<Metrics, ConfigError> {
        read::sub(v, |t| {
            t.keys(&[&["listen", "stale_after"]])?;
            Ok(Metrics {
                listen: t.need("listen")?.parse(|s| {
                    s.parse().map_err(|_| {
                        format!(
                            "expected an address and port like 127.0.0.1:9464, got {}",
                            clip(s)
                        )
                    })
                })?,
                stale_after: t.or("stale_after", Value::secs, Secs::s(300))?,
            })
        })
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let with_path = |mut e: ConfigError| {
            e.path = Some(path.into());
            e
        };
        let bytes = std::fs::read(path).map_err(|e| ConfigError {
            path: Some(path.into()),
            line: None,
            column: None,
            key: None,
            msg: format!("cannot read: {e}"),
        })?;
        let text = from_utf8(&bytes).map_err(with_path)?;
        Config::parse(text).map_err(with_path)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut cfg = read::document(text, Config::read)?;
        let at = |(key, msg): (KeyPath, String)| ConfigError {
            path: None,
            line: read::line_of_key(text, &key),
            column: None,
            key: Some(key),
            msg,
        };
        // One `at` for every step: it is inlined where it is called.
        fleet::fill_templates(&mut cfg)
            .and_then(|()| cfg.validate())
            .map_err(at)?;
        Ok(cfg)
    }

    /// Checks what types cannot: ranges, relations between keys, unique names.
    /// On failure returns the key and the reason.
    pub fn validate(&self) -> Result<(), (KeyPath, String)> {
        let err = |k: &str, m: String| Err((KeyPath::dotted(k), m));
        let at = |k: &KeyPath, m: String| Err((k.clone(), m));
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
        if self.metrics.is_some() && !cfg!(feature = "metrics") {
            return err(
                "metrics",
                "the metrics endpoint is left out of this build (cargo feature metrics)".into(),
            );
        }
        if let Err((k, m)) = self.alerts.validate() {
            return err(&format!("alerts.{k}"), m);
        }
        if let Some(f) = &self.fleet {
            let checked = match &f.server {
                Server::Mqtt(_) if !cfg!(feature = "mqtt") => {
                    Err("MQTT is left out of this build (cargo feature mqtt)".to_string())
                }
                Server::Mqtt(e) if e.tls && !cfg!(feature = "tls") => Err(
                    "mqtts:// needs TLS, which this build leaves out (cargo feature tls)".into(),
                ),
                Server::Mqtt(_) => Ok(()),
                Server::Http(u) => http_features(u.tls),
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
                    let mut key = KeyPath::dotted("fleet.tags");
                    key.0.push(Seg::Key(read::shown(k)));
                    return at(
                        &key,
                        format!(
                            "{} = {}: a tag value names an MQTT group topic: no '/', '+' or '#'",
                            clip(k),
                            clip(v)
                        ),
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
        check_flow(
            &KeyPath::default(),
            false,
            &self.inputs,
            &self.batch,
            &self.spool,
            &self.sink,
        )?;
        // Each sink with the pipeline name its default MQTT client id is made of.
        let mut sinks = vec![(KeyPath::default(), None, &self.sink)];
        for (j, p) in self.pipelines.iter().enumerate() {
            let prefix = KeyPath::dotted("pipeline").index(j);
            if let Err(m) = pipeline::check_own_name(&p.name) {
                return at(&prefix.clone().then("name"), m);
            }
            if self.pipelines[..j].iter().any(|o| o.name == p.name) {
                return at(
                    &prefix.clone().then("name"),
                    format!("{} is used twice", clip(&p.name)),
                );
            }
            if p.inputs.len() != 1 {
                return at(
                    &prefix.clone().then("paths"),
                    "a pipeline has one input".into(),
                );
            }
            check_flow(&prefix, true, &p.inputs, &p.batch, &p.spool, &p.sink)?;
            sinks.push((prefix, Some(p.name.as_str()), &p.sink));
        }
        // Two sinks on one file would interleave their frames; two MQTT connections with one
        // client id would throw each other off the broker. A client id is the sink's own, or
        // its default (the instance id, `INSTANCE.NAME` for a pipeline of its own, as the MQTT
        // sink makes it) when the file sets `instance_id` (else it is only known at start).
        let client_id = |name: Option<&str>, m: &MqttSink| {
            m.client_id.clone().or_else(|| {
                let id = self.instance_id.as_deref()?;
                Some(match name {
                    None => id.to_string(),
                    Some(n) => format!("{id}.{n}").replace('/', "."),
                })
            })
        };
        for (i, (prefix, name, sink)) in sinks.iter().enumerate() {
            for (_, other_name, other) in &sinks[..i] {
                match (sink, other) {
                    (Sink::File { path: a, .. }, Sink::File { path: b, .. }) if a == b => {
                        return at(
                            &prefix.clone().then("sink.path"),
                            format!(
                                "{} is written by another pipeline's sink; give each a [sink] of its own",
                                clip(&a.to_string_lossy())
                            ),
                        )
                    }
                    (Sink::Mqtt(a), Sink::Mqtt(b)) => {
                        let id = client_id(*name, a);
                        if id.is_some() && id == client_id(*other_name, b) {
                            return at(
                                &prefix.clone().then("sink.client_id"),
                                format!(
                                    "another pipeline's MQTT sink uses this client id ({})",
                                    clip(id.as_deref().unwrap_or_default())
                                ),
                            );
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The log level filter this config asks for.
    pub fn level(&self) -> log::LevelFilter {
        self.log_level.0
    }
}

/// Checks one pipeline's inputs, batching, spool and sink, and how they fit together. Keys
/// are under `prefix`; with `one_input`, input keys are bare (`paths`, as a fleet pipeline
/// config writes them), else `input[i].paths`.
fn check_flow(
    prefix: &KeyPath,
    one_input: bool,
    inputs: &[Input],
    batch: &Batch,
    spool: &Spool,
    sink: &Sink,
) -> Result<(), (KeyPath, String)> {
    let err = |k: &str, m: String| Err((prefix.clone().then(k), m));
    let at = |k: KeyPath, m: String| Err((prefix.clone().join(&k), m));
    let tls = |r: Result<(), (KeyPath, String)>| r.map_err(|(k, m)| (prefix.clone().join(&k), m));
    let batch_max = batch.max_bytes.0;
    if !(1024..=(8 << 20)).contains(&batch_max) {
        return err("batch.max_bytes", "must be between 1KiB and 8MiB".into());
    }
    if batch.max_lines == 0 {
        return err("batch.max_lines", "must be at least 1".into());
    }
    for (i, inp) in inputs.iter().enumerate() {
        let k = |f: &str| {
            if one_input {
                KeyPath::dotted(f)
            } else {
                KeyPath::dotted("input").index(i).then(f)
            }
        };
        if inp.name.is_empty() {
            return at(k("name"), "must not be empty".into());
        }
        if inputs[..i].iter().any(|o| o.name == inp.name) {
            return at(
                k("name"),
                format!("{} is used by another input", clip(&inp.name)),
            );
        }
        if inp.paths.is_empty() {
            return at(k("paths"), "needs at least one pattern".into());
        }
        for (list, patterns) in [("paths", &inp.paths), ("exclude", &inp.exclude)] {
            if let Some(j) = patterns.iter().position(String::is_empty) {
                return at(k(list).index(j), "empty pattern".into());
            }
        }
        let m = inp.max_line_bytes.0;
        if m < 16 || m.saturating_add(512) > batch_max {
            return at(
                k("max_line_bytes"),
                format!(
                    "must be at least 16 and leave 512 bytes of batch.max_bytes ({batch_max}), got {m}"
                ),
            );
        }
    }
    let s = spool;
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
    if s.max_bytes.0 < s.segment_bytes.0.saturating_mul(2) {
        return err(
            "spool.max_bytes",
            format!(
                "must hold at least two segments (2 x spool.segment_bytes = {}), got {}",
                2 * s.segment_bytes.0,
                s.max_bytes.0
            ),
        );
    }
    match sink {
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
            if let Some(key) = url_keys(m.endpoints().iter().map(|e| e.tls))
                .find(|(_, tls)| *tls && !cfg!(feature = "tls"))
                .map(|(key, _)| key)
            {
                return at(
                    key,
                    "mqtts:// needs TLS, which this build leaves out (cargo feature tls)".into(),
                );
            }
            tls(m.tls.validate("sink"))?;
            for (key, t) in [
                ("sink.topic", &m.topic),
                ("sink.state_topic", &m.state_topic),
            ] {
                if t.is_empty() || t.contains(['+', '#']) {
                    return err(key, "must be a topic name, without wildcards".into());
                }
            }
            // MQTT's keep-alive field is 16 bits of seconds: more could not be announced,
            // and a broker would drop a link the agent thinks is kept alive.
            // Whole seconds, as CONNECT announces them: `1500ms` would announce 1 s and ping
            // after 1.5, and `500ms` 0, which turns the broker's dead-link check off.
            let ka = m.keep_alive.0;
            if ka > Duration::from_secs(u16::MAX.into()) || ka.subsec_nanos() != 0 {
                return err(
                    "sink.keep_alive",
                    "must be whole seconds, at most 65535s (MQTT's limit)".into(),
                );
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
            for (key, tls) in url_keys(h.urls().map(|u| u.tls)) {
                http_features(tls).or_else(|m| at(key, m))?;
            }
            tls(h.tls.validate("sink"))?;
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

/// Each of a sink's URLs (`url`, then `failover`) with its key under `[sink]`.
fn url_keys<T>(urls: impl Iterator<Item = T>) -> impl Iterator<Item = (KeyPath, T)> {
    urls.enumerate().map(|(i, u)| match i {
        0 => (KeyPath::dotted("sink.url"), u),
        i => (KeyPath::dotted("sink.failover").index(i - 1), u),
    })
}

/// Whether this build speaks HTTP (and, for `tls`, HTTPS).
fn http_features(tls: bool) -> Result<(), String> {
    if !cfg!(feature = "http") {
        return Err("HTTP is left out of this build (cargo feature http)".into());
    }
    if tls && !cfg!(feature = "tls") {
        return Err("https:// needs TLS, which this build leaves out (cargo feature tls)".into());
    }
    Ok(())
}

/// A log level, parsed once where the config (or `--log-level`) names it: a bad name is an
/// error naming the key, never a level guessed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLevel(pub log::LevelFilter);

impl Default for LogLevel {
    fn default() -> Self {
        LogLevel(log::LevelFilter::Info)
    }
}

impl std::str::FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<LogLevel, String> {
        log_level(s).map(LogLevel).ok_or_else(|| {
            format!(
                "expected one of off, error, warn, info, debug, trace, got {}",
                clip(s)
            )
        })
    }
}

impl LogLevel {
    pub(super) fn read(v: Value<'_>) -> Result<LogLevel, ConfigError> {
        v.parse(str::parse)
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

#[cfg(test)]
mod tests;
