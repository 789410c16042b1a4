//! `[fleet]`, and the instance configs a fleet sends (agent-wide settings; pipeline configs
//! are in `pipeline.rs`).

use super::endpoint::Server;
use super::error::parse_toml;
use super::{Config, ConfigError, LogLevel, Secret, Secs, Size, Spool, Tls};
use serde::Deserialize;
use std::time::Duration;

/// `[fleet]`: heartbeats, config status and remote config, over ConfigServer protocol v2.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    /// The ConfigServer: `http(s)://host:port[/prefix]`, requests going to
    /// `{server}/Agent/Heartbeat` and its siblings; or an MQTT broker,
    /// `mqtt(s)://host:port`, the same messages travelling on topics under `topic_prefix`.
    /// Taken apart when the config is read.
    pub server: Server,
    /// MQTT: the topics' prefix (README, "MQTT topics").
    #[serde(default = "default_fleet_prefix")]
    pub topic_prefix: String,
    /// MQTT: client id; by default `{instance}-fleet`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// MQTT: user name.
    #[serde(default)]
    pub username: Option<String>,
    /// MQTT: password.
    #[serde(default)]
    pub password: Option<Secret>,
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
    /// Bearer token for the server.
    #[serde(default)]
    pub token: Option<Secret>,
    /// TLS settings for an `https://` server.
    #[serde(default)]
    pub tls: Tls,
    /// MQTT: the largest control message accepted; what bounds the control plane's memory
    /// (a message is held once as received and once decoded). A larger one is skipped
    /// without being held, counted and logged.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: Size,
}

/// An instance config from the fleet: agent-wide settings laid over the local file.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// Replaces `fleet.heartbeat_interval`.
    pub heartbeat_interval: Option<Secs>,
    /// Replaces `log_level`.
    pub log_level: Option<LogLevel>,
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
        if let Some(l) = self.log_level {
            cfg.log_level = l;
        }
        if let Some(s) = self.stats_interval {
            cfg.stats_interval = s;
        }
        if let Some(s) = &self.spool {
            cfg.spool = s.clone();
        }
    }
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
fn default_max_message() -> Size {
    Size(4 << 20)
}
fn default_agent_type() -> String {
    "tailbeat".into()
}
