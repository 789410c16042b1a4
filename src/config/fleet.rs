//! `[fleet]`, and the instance configs a fleet sends (agent-wide settings; pipeline configs
//! are in `pipeline.rs`).

use super::endpoint::Server;
use super::read::{self, Value};
use super::{clip, Config, ConfigError, KeyPath, LogLevel, Secret, Secs, Sink, Size, Spool, Tls};
use std::collections::BTreeMap;

/// `[fleet]`: heartbeats, config status and remote config, over ConfigServer protocol v2.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    /// The ConfigServer: `http(s)://host:port[/prefix]`, requests going to
    /// `{server}/Agent/Heartbeat` and its siblings; or an MQTT broker,
    /// `mqtt(s)://host:port`, the same messages travelling on topics under `topic_prefix`.
    /// Taken apart when the config is read.
    pub server: Server,
    /// MQTT: the topics' prefix (README, "MQTT topics"); a template: `{tag}` becomes that
    /// tag's value in `tags` when the config is read (`fill_templates`).
    pub topic_prefix: String,
    /// MQTT: client id; by default `{instance}-fleet`.
    pub client_id: Option<String>,
    /// MQTT: user name.
    pub username: Option<String>,
    /// MQTT: password.
    pub password: Option<Secret>,
    /// Time between heartbeats.
    pub heartbeat_interval: Secs,
    /// How long each phase of a request (connect, send, receive) may take.
    pub timeout: Secs,
    /// `agent_type` in the heartbeat.
    pub agent_type: String,
    /// Group tags (name = value) in the heartbeat; the server picks configs by them.
    pub tags: BTreeMap<String, String>,
    /// Bearer token for the server.
    pub token: Option<Secret>,
    /// TLS settings for an `https://` server.
    pub tls: Tls,
    /// MQTT: the largest control message accepted; what bounds the control plane's memory
    /// (a message is held once as received and once decoded). A larger one is skipped
    /// without being held, counted and logged.
    pub max_message_bytes: Size,
    /// MQTT: a rebirth request (`P/I/rebirth`, `P/rebirth`) is answered at most once per this
    /// long; a new connection counts as one (README, "MQTT topics").
    pub rebirth_min_interval: Secs,
    /// MQTT: the spools' bytes at which a `spool_high` event is raised (`spool_ok` once
    /// back under 90 % of it); by default 80 % of `spool.max_bytes`.
    pub spool_high_bytes: Option<Size>,
}

/// An instance config from the fleet: agent-wide settings laid over the local file.
#[derive(Debug, Clone, PartialEq, Default)]
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

impl Fleet {
    pub(super) fn read(v: Value<'_>) -> Result<Fleet, ConfigError> {
        read::sub(v, |t| {
            t.keys(&[&[
                "server",
                "topic_prefix",
                "client_id",
                "username",
                "password",
                "heartbeat_interval",
                "timeout",
                "agent_type",
                "tags",
                "token",
                "tls",
                "max_message_bytes",
                "rebirth_min_interval",
                "spool_high_bytes",
            ]])?;
            Ok(Fleet {
                server: t.need("server")?.parse(Server::parse)?,
                topic_prefix: t.or("topic_prefix", Value::string, "tailbeat".into())?,
                client_id: t.opt("client_id", Value::string)?,
                username: t.opt("username", Value::string)?,
                password: t.opt("password", Value::secret)?,
                heartbeat_interval: t.or("heartbeat_interval", Value::secs, Secs::s(10))?,
                timeout: t.or("timeout", Value::secs, Secs::s(5))?,
                agent_type: t.or("agent_type", Value::string, "tailbeat".into())?,
                tags: t.or("tags", Value::string_map, BTreeMap::new())?,
                token: t.opt("token", Value::secret)?,
                tls: t.or("tls", Tls::read, Tls::default())?,
                max_message_bytes: t.or("max_message_bytes", Value::size, Size(4 << 20))?,
                rebirth_min_interval: t.or("rebirth_min_interval", Value::secs, Secs::s(10))?,
                spool_high_bytes: t.opt("spool_high_bytes", Value::size)?,
            })
        })
    }

    /// A `[fleet]` table's keys, alone (tests).
    #[cfg(test)]
    pub(crate) fn from_toml(text: &str) -> Result<Fleet, ConfigError> {
        read::document(&format!("[fleet]\n{text}"), |t| {
            t.keys(&[&["fleet"]])?;
            Fleet::read(t.need("fleet")?)
        })
    }
}

impl InstanceConfig {
    /// Parses an instance config's detail.
    pub fn parse(text: &str) -> Result<InstanceConfig, ConfigError> {
        read::document(text, |t| {
            t.keys(&[&["heartbeat_interval", "log_level", "stats_interval", "spool"]])?;
            Ok(InstanceConfig {
                heartbeat_interval: t.opt("heartbeat_interval", Value::secs)?,
                log_level: t.opt("log_level", LogLevel::read)?,
                stats_interval: t.opt("stats_interval", Value::secs)?,
                spool: t.opt("spool", Spool::read)?,
            })
        })
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

/// Fills the topic templates of a config just read: in `fleet.topic_prefix` and the local
/// `[sink]`'s `topic` and `state_topic`, each `{tag}` becomes the value of that tag in
/// `fleet.tags` (`{instance}` in the sink's topics stays, the sink fills it). So that a
/// subscriber can watch one region with a wildcard (`tailbeat/eu-west/+/...`), a value goes
/// into a topic as one level: an unknown tag, or a value with `/`, `+` or `#`, is an error
/// naming the template's key. Topics without `{` are left as they are (the defaults).
pub(super) fn fill_templates(cfg: &mut Config) -> Result<(), (KeyPath, String)> {
    let empty = BTreeMap::new();
    let tags = cfg.fleet.as_ref().map_or(&empty, |f| &f.tags).clone();
    if let Some(f) = &mut cfg.fleet {
        f.topic_prefix = fill(&f.topic_prefix, &tags, &[])
            .map_err(|m| (KeyPath::dotted("fleet.topic_prefix"), m))?;
    }
    fill_sink(&mut cfg.sink, cfg.fleet.as_ref())
}

/// The same for a sink: its `topic` and `state_topic` from `fleet.tags`, and where the
/// fleet's rebirth requests come, which the MQTT sink answers with its birth (sink/mqtt).
/// Used for the local `[sink]` and for the `[sink]` of a fleet pipeline of its own.
pub(crate) fn fill_sink(sink: &mut Sink, fleet: Option<&Fleet>) -> Result<(), (KeyPath, String)> {
    let empty = BTreeMap::new();
    let tags = fleet.map_or(&empty, |f| &f.tags);
    if let Sink::Mqtt(m) = sink {
        m.topic =
            fill(&m.topic, tags, &["instance"]).map_err(|e| (KeyPath::dotted("sink.topic"), e))?;
        m.state_topic = fill(&m.state_topic, tags, &["instance"])
            .map_err(|e| (KeyPath::dotted("sink.state_topic"), e))?;
        if let Some(f) = fleet {
            m.rebirth = (f.topic_prefix.clone(), f.rebirth_min_interval.0);
        }
    }
    Ok(())
}

/// `template` with each `{name}` replaced by `tags[name]`, except the names in `keep`.
pub(super) fn fill(
    template: &str,
    tags: &BTreeMap<String, String>,
    keep: &[&str],
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!("{}: a '{{' without its '}}'", clip(template)));
        };
        let name = &after[..close];
        // The name as the template writes it, cut like a quoted value.
        let shown = match name.char_indices().nth(64) {
            None => format!("{{{name}}}"),
            Some((cut, _)) => format!("{{{}…}} ({} bytes)", &name[..cut], name.len()),
        };
        if keep.contains(&name) {
            out.push_str(&rest[open..open + close + 2]);
        } else {
            let Some(v) = tags.get(name) else {
                let known: Vec<&str> = tags.keys().map(String::as_str).collect();
                return Err(format!(
                    "{shown} names no tag in fleet.tags (it has: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            };
            if v.is_empty() || v.contains(['/', '+', '#']) {
                return Err(format!(
                    "{shown}: tag value {} goes into a topic as one level: not empty, no '/', '+' or '#'",
                    clip(v)
                ));
            }
            out.push_str(v);
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "data_dir = \"/tmp/x\"\n[[input]]\nname = \"app\"\npaths = [\"/a/*.log\"]\n";

    fn parse(fleet: &str, sink: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{BASE}[sink]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\n{sink}[fleet]\nserver = \"mqtt://127.0.0.1:1883\"\n{fleet}"))
    }

    #[test]
    fn tags_fill_the_topic_templates_and_the_defaults_stay() {
        let tags = "tags = { region = \"eu-west\", type = \"gateway\" }\n";
        let c = parse(
            &format!("topic_prefix = \"tailbeat/{{region}}/{{type}}\"\n{tags}"),
            "topic = \"logs/{region}/{instance}/frames\"\nstate_topic = \"st/{type}/{instance}\"\n",
        )
        .unwrap();
        assert_eq!(c.fleet.unwrap().topic_prefix, "tailbeat/eu-west/gateway");
        let Sink::Mqtt(m) = c.sink else { panic!() };
        assert_eq!(m.topic, "logs/eu-west/{instance}/frames");
        assert_eq!(m.state_topic, "st/gateway/{instance}");
        let c = parse(tags, "").unwrap();
        assert_eq!(c.fleet.unwrap().topic_prefix, "tailbeat");
        let Sink::Mqtt(m) = c.sink else { panic!() };
        assert_eq!(m.topic, "tailbeat/{instance}/frames");
        assert_eq!(m.state_topic, "tailbeat/{instance}/state");
    }

    #[test]
    fn an_unknown_tag_or_a_wildcard_in_a_value_names_the_key_and_its_line() {
        let e = parse(
            "topic_prefix = \"tailbeat/{regoin}\"\ntags = { region = \"eu\" }\n",
            "",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 10: fleet.topic_prefix: {regoin} names no tag in fleet.tags (it has: region)"
        );
        let e = parse("", "topic = \"x/{site}/{instance}\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 8: sink.topic: {site} names no tag in fleet.tags (it has: none)"
        );
        let e = parse(
            "tags = { region = \"eu+1\" }\n",
            "state_topic = \"s/{region}\"\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 8: sink.state_topic: {region}: tag value \"eu+1\" goes into a topic as one level: not empty, no '/', '+' or '#'"
        );
        let e = parse("topic_prefix = \"t/{region\"\n", "").unwrap_err();
        assert!(e.to_string().contains("a '{' without its '}'"), "{e}");
    }
}
