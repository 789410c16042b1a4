//! What the agents' messages say, taken apart: the protobuf ones through
//! [`crate::control::proto`] (the agent's own decoders, the heartbeat's beside its encoder;
//! no second protobuf stack), the JSON ones through serde_json. Every decoder returns an
//! error for bytes that are not its message, never panics, and cuts what it keeps to fixed
//! limits ([`MAX_TEXT`], [`MAX_CONFIGS`], [`MAX_TAGS`], [`MAX_LIST`] while decoding), so a
//! hostile message costs at most a few KiB once decoded.

use crate::control::proto::{
    decode_config_info, ConfigInfo, DecodeError, Fields, HeartbeatRequest, Value,
};

/// Bytes of any text kept (names, messages, versions), cut at a character boundary.
pub const MAX_TEXT: usize = 256;
/// Configs kept per list (pipeline, instance) of one agent; more are counted, not kept.
pub const MAX_CONFIGS: usize = 64;
/// Tags kept per agent.
pub const MAX_TAGS: usize = 32;

/// `s` cut to [`MAX_TEXT`] bytes at a character boundary.
pub fn clip(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut n = MAX_TEXT;
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        s.truncate(n);
        s.push('…');
    }
    s
}

/// The losses a heartbeat reports, by `health.*` key: each is something that did not reach
/// the sink, or reached it cut (README, "Fleet", Health).
pub const LOSS_KEYS: [&str; 8] = [
    "dropped_frames",
    "dropped_lines",
    "lines_cut",
    "truncated_lost_bytes",
    "vanished_lost_bytes",
    "corrupt_records",
    "spool_lost_frames",
    "dead_letters",
];

/// The health figures the viewer shows, from a heartbeat's `health.*` extras; `None` when
/// the heartbeat did not carry that key (an older agent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// `spool_frames`: frames not yet acknowledged.
    pub spool_frames: Option<u64>,
    /// `spool_bytes`.
    pub spool_bytes: Option<u64>,
    /// `oldest_unacked_age_ms`.
    pub oldest_unacked_age_ms: Option<u64>,
    /// `latency_p99_ms`: read → acknowledged.
    pub latency_p99_ms: Option<u64>,
    /// `disk_full`: pipelines paused for lack of disk.
    pub disk_full: Option<u64>,
    /// The [`LOSS_KEYS`] counters, in that order (0 when absent).
    pub losses: [u64; LOSS_KEYS.len()],
}

/// What the viewer keeps of a `HeartbeatRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Beat {
    /// `sequence_num`.
    pub seq: u64,
    /// `instance_id`.
    pub instance: String,
    /// `attributes.version`.
    pub version: String,
    /// `tags`, at most [`MAX_TAGS`].
    pub tags: Vec<(String, String)>,
    /// `running_status`.
    pub running_status: String,
    /// `startup_time`, Unix seconds.
    pub startup_time: i64,
    /// The `health.*` figures shown.
    pub health: Health,
    /// `pipeline_configs`, `instance_configs`: only a full heartbeat (or one to a server
    /// without a status channel) carries them; `None` when the heartbeat had neither.
    pub configs: Option<[Vec<ConfigInfo>; 2]>,
}

fn raw(v: Value<'_>) -> Result<&[u8], DecodeError> {
    match v {
        Value::Bytes(b) => Ok(b),
        _ => Err(DecodeError("expected a length-delimited field")),
    }
}

/// Entries of each repeated field of a heartbeat the decode keeps
/// ([`HeartbeatRequest::decode`]): more than any list an agent sends (about forty extras),
/// few enough that a hostile 1 MiB message of empty entries costs some KiB while it is read.
pub const MAX_LIST: usize = 256;

/// `c` with its texts clipped.
fn clip_config(mut c: ConfigInfo) -> ConfigInfo {
    c.name = clip(c.name);
    c.message = clip(c.message);
    c
}

/// A decoded config, its texts clipped.
fn config(b: &[u8]) -> Result<ConfigInfo, DecodeError> {
    decode_config_info(b).map(clip_config)
}

/// Decodes a `HeartbeatRequest` with the agent's own decoder
/// ([`HeartbeatRequest::decode`]), and keeps what the viewer shows, cut to its limits.
pub fn heartbeat(b: &[u8]) -> Result<Beat, DecodeError> {
    let r = HeartbeatRequest::decode(b, MAX_LIST)?;
    let mut h = Beat {
        seq: r.sequence_num,
        instance: clip(r.instance_id),
        running_status: clip(r.running_status),
        startup_time: r.startup_time,
        ..Beat::default()
    };
    if let Some(a) = r.attributes {
        h.version = clip(a.version);
        for (k, v) in &a.extras {
            health(&mut h.health, k.as_bytes(), v);
        }
    }
    h.tags = (r.tags.into_iter())
        .take(MAX_TAGS)
        .map(|(k, v)| (clip(k), clip(v)))
        .collect();
    if !r.pipeline_configs.is_empty() || !r.instance_configs.is_empty() {
        let cut = |cs: Vec<ConfigInfo>| -> Vec<ConfigInfo> {
            cs.into_iter().take(MAX_CONFIGS).map(clip_config).collect()
        };
        h.configs = Some([cut(r.pipeline_configs), cut(r.instance_configs)]);
    }
    Ok(h)
}

/// Takes one `health.*` extra into `h`; other extras, and values that are not decimal
/// ASCII, are left out (an extra is the agent's to add; it does not make a heartbeat bad).
fn health(h: &mut Health, key: &[u8], val: &[u8]) {
    let Some(key) = key.strip_prefix(b"health.") else {
        return;
    };
    let Some(n) = std::str::from_utf8(val)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    match key {
        b"spool_frames" => h.spool_frames = Some(n),
        b"spool_bytes" => h.spool_bytes = Some(n),
        b"oldest_unacked_age_ms" => h.oldest_unacked_age_ms = Some(n),
        b"latency_p99_ms" => h.latency_p99_ms = Some(n),
        b"disk_full" => h.disk_full = Some(n),
        k => {
            if let Some(i) = LOSS_KEYS.iter().position(|l| l.as_bytes() == k) {
                h.losses[i] = n;
            }
        }
    }
}

/// Decodes a `ReportConfigRequest` (request_id 1, instance_id 2, config_infos 3): the
/// configs, at most [`MAX_CONFIGS`], and how many more there were.
pub fn report(b: &[u8]) -> Result<(Vec<ConfigInfo>, usize), DecodeError> {
    let mut cs = Vec::new();
    let mut more = 0;
    for f in Fields(b) {
        match f? {
            (1 | 2, v) => {
                raw(v)?;
            }
            (3, v) => {
                let c = config(raw(v)?)?;
                if cs.len() < MAX_CONFIGS {
                    cs.push(c);
                } else {
                    more += 1;
                }
            }
            _ => {}
        }
    }
    Ok((cs, more))
}

/// A message on the state topic (README, "MQTT topics"). Fields other than `state` may be
/// missing (an agent from before sessions: `session` 0).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
pub struct Birth {
    /// `"online"` or `"offline"`.
    pub state: String,
    /// The agent's instance id.
    pub instance: String,
    /// The agent's version.
    pub version: String,
    /// When the process started, Unix seconds.
    pub startup_time: u64,
    /// The MQTT session number (grows with every CONNECT).
    pub session: u64,
    /// When this session connected, Unix seconds.
    pub connected_at: u64,
}

/// Why a JSON message was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError(pub String);

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JsonError {}

/// Decodes a state message: `Ok((online, birth))`.
pub fn birth(b: &[u8]) -> Result<(bool, Birth), JsonError> {
    let mut m: Birth = serde_json::from_slice(b).map_err(|e| JsonError(e.to_string()))?;
    let online = match m.state.as_str() {
        "online" => true,
        "offline" => false,
        s => return Err(JsonError(format!("state {:?}", clip(s.to_string())))),
    };
    m.instance = clip(m.instance);
    m.version = clip(m.version);
    Ok((online, m))
}

/// A state event (the events topic): unknown fields are ignored, any `kind` is taken.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Event {
    /// The agent's number for it; grows by one per event.
    pub seq: u64,
    /// What happened: `config_applied`, `alert_raised`, ... or a kind this viewer does not
    /// know yet.
    pub kind: String,
    /// When, Unix seconds.
    #[serde(default)]
    pub at: Option<u64>,
    /// The config, pipeline or alert it is about.
    #[serde(default)]
    pub name: Option<String>,
    /// The config's version.
    #[serde(default)]
    pub version: Option<i64>,
    /// Words for a person.
    #[serde(default)]
    pub message: Option<String>,
}

/// Decodes an event; `seq` and `kind` are required.
pub fn event(b: &[u8]) -> Result<Event, JsonError> {
    let mut e: Event = serde_json::from_slice(b).map_err(|e| JsonError(e.to_string()))?;
    e.kind = clip(e.kind);
    e.name = e.name.map(clip);
    e.message = e.message.map(clip);
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::proto::{
        report_config_request, Attributes, ConfigStatus, HeartbeatRequest,
    };

    fn info(name: &str, version: i64, status: ConfigStatus) -> ConfigInfo {
        ConfigInfo {
            name: name.into(),
            version,
            status,
            message: String::new(),
        }
    }

    #[test]
    fn a_heartbeat_made_by_the_agents_encoder_decodes_with_its_health() {
        let req = HeartbeatRequest {
            sequence_num: 42,
            instance_id: "gw-1".into(),
            attributes: Some(Attributes {
                version: "0.1.0".into(),
                extras: vec![
                    ("os".into(), b"linux".to_vec()),
                    ("health.spool_frames".into(), b"3".to_vec()),
                    ("health.spool_bytes".into(), b"4096".to_vec()),
                    ("health.oldest_unacked_age_ms".into(), b"1500".to_vec()),
                    ("health.dropped_lines".into(), b"7".to_vec()),
                    ("health.latency_p99_ms".into(), b"not a number".to_vec()),
                ],
                ..Default::default()
            }),
            tags: vec![("site".into(), "plant-7".into())],
            running_status: "running".into(),
            startup_time: 1_795_378_643,
            pipeline_configs: vec![info("app", 3, ConfigStatus::Failed)],
            ..Default::default()
        };
        let b = heartbeat(&req.encode()).unwrap();
        assert_eq!((b.seq, b.instance.as_str()), (42, "gw-1"));
        assert_eq!(b.version, "0.1.0");
        assert_eq!(b.tags, vec![("site".to_string(), "plant-7".to_string())]);
        assert_eq!(b.startup_time, 1_795_378_643);
        assert_eq!(b.health.spool_frames, Some(3));
        assert_eq!(b.health.spool_bytes, Some(4096));
        assert_eq!(b.health.oldest_unacked_age_ms, Some(1500));
        assert_eq!(b.health.latency_p99_ms, None);
        assert_eq!(b.health.losses[1], 7);
        let [p, i] = b.configs.unwrap();
        assert_eq!(
            (p[0].name.as_str(), p[0].status),
            ("app", ConfigStatus::Failed)
        );
        assert!(i.is_empty());
        // A short heartbeat carries no configs: "unknown", not "none".
        let short = HeartbeatRequest {
            sequence_num: 43,
            ..Default::default()
        };
        assert_eq!(heartbeat(&short.encode()).unwrap().configs, None);
    }

    #[test]
    fn garbage_is_an_error_and_a_huge_list_is_cut() {
        for g in [
            &b"\xff\xff\xff"[..],
            b"{\"state\":\"online\"}",
            &[0x12, 0x05, 1],
        ] {
            assert!(heartbeat(g).is_err(), "{g:?}");
            assert!(report(g).is_err(), "{g:?}");
        }
        let many: Vec<ConfigInfo> = (0..MAX_CONFIGS + 5)
            .map(|n| info(&format!("c{n}"), 1, ConfigStatus::Applied))
            .collect();
        let (cs, more) = report(&report_config_request(b"r", "gw-1", &many)).unwrap();
        assert_eq!((cs.len(), more), (MAX_CONFIGS, 5));
        let long = "é".repeat(MAX_TEXT);
        let (cs, _) = report(&report_config_request(
            b"r",
            "gw-1",
            &[ConfigInfo {
                message: long,
                ..info("x", 1, ConfigStatus::Failed)
            }],
        ))
        .unwrap();
        assert!(cs[0].message.len() <= MAX_TEXT + 3);
    }

    #[test]
    fn state_and_events_take_what_they_know_and_ignore_the_rest() {
        let (on, b) = birth(br#"{"state":"online","instance":"gw-1","version":"0.1.0","startup_time":1,"session":12,"connected_at":2,"future":[1,2]}"#).unwrap();
        assert!(on);
        assert_eq!((b.session, b.connected_at), (12, 2));
        let (on, b) = birth(br#"{"state":"offline","instance":"gw-1"}"#).unwrap();
        assert!(!on);
        assert_eq!(b.session, 0);
        assert!(birth(br#"{"state":"sleeping"}"#).is_err());
        assert!(birth(b"offline").is_err());
        let e = event(br#"{"instance":"gw-1","seq":42,"at":1795378650,"kind":"config_failed","name":"app","version":7,"message":"bad","coalesced":2}"#).unwrap();
        assert_eq!(
            (e.seq, e.kind.as_str(), e.version),
            (42, "config_failed", Some(7))
        );
        let e = event(br#"{"seq":1,"kind":"kind_from_the_future"}"#).unwrap();
        assert_eq!(e.kind, "kind_from_the_future");
        assert!(event(br#"{"kind":"alert_raised"}"#).is_err(), "no seq");
        assert!(event(b"\x00\x01").is_err());
    }
}
