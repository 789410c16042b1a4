//! What a heartbeat says: identity, attributes, and the agent's health.
//!
//! **Every** heartbeat carries the agent's identity: `agent_type`, `startup_time`, `tags`,
//! `running_status`, and the whole `AgentAttributes` (version, ip, hostname, host id, extras
//! `os` and `arch`). Servers store what each heartbeat says: LoongCollector's Go
//! ConfigServer upserts agent_type, startup_time, tags and the attributes column from every
//! request, as sent, so a field left empty erases what it knew; another public server
//! matches configs against each heartbeat's tags and ip. Upstream's own agent sends its
//! identity every time, and upstream's protocol README says attributes must never be left
//! out for a server that does not remember them. About 200 bytes buy a server that always
//! knows who it talks to.
//!
//! **Health** (`health.*` extras, each value a decimal number in ASCII; README, "Fleet",
//! lists them) travels inside those attributes, in every heartbeat: that is where the real
//! server keeps them and shows them to operators (`/User/ListAgents`). Upstream's rule is
//! "any attribute changed → report in full"; the attributes *are* reported in full in every
//! heartbeat, so no change is ever held back.
//!
//! What a **full** heartbeat adds is the part the server keeps between heartbeats and that
//! does not change every time: the FullState flag and the status of every remote config.
//! It is sent first, after ReportFullState, and on a new MQTT connection. The identity's
//! file and network look-ups (hostname, machine id, the address that reaches the server)
//! are made then, and again in a short heartbeat once [`IDENTITY_MAX_AGE`] has passed (an
//! address handed out again by DHCP reaches the server within that); other short ones
//! repeat the last, so they cost no I/O beyond the health figures. Config statuses ride in short heartbeats only when the server has no
//! status endpoints (the 404 fallback): otherwise they travel on their own channel as soon
//! as they change.

use super::proto::{agent_caps, Attributes, ConfigInfo, HeartbeatRequest, REQUEST_FULL_STATE};
use crate::agent::{Handle, Health};
use crate::config::Fleet;
use std::cell::RefCell;
use std::path::Path;
use std::time::{Duration, Instant};

/// The attributes that say who the agent is, looked up at each full heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Identity {
    /// The agent's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// The local address that reaches the server.
    pub ip: String,
    /// `/proc/sys/kernel/hostname`.
    pub hostname: String,
    /// `/etc/machine-id`, else the instance id.
    pub hostid: String,
}

impl Identity {
    /// Looks the identity up (files and a UDP socket "connected" to the server).
    fn look_up(fleet: Option<&Fleet>, instance: &str) -> Identity {
        Identity {
            version: env!("CARGO_PKG_VERSION").into(),
            ip: fleet
                .map(|f| {
                    let (host, port) = f.server.host_port();
                    local_ip(host, port)
                })
                .unwrap_or_default(),
            hostname: read_trim("/proc/sys/kernel/hostname"),
            hostid: ["/etc/machine-id", "/var/lib/dbus/machine-id"]
                .iter()
                .map(|p| read_trim(p))
                .find(|s| !s.is_empty())
                .unwrap_or_else(|| instance.to_string()),
        }
    }
}

/// How long a short heartbeat repeats the identity looked up before.
pub(crate) const IDENTITY_MAX_AGE: Duration = Duration::from_secs(600);

thread_local! {
    /// The identity last looked up, for which server, and when. The transports call
    /// [`request`] with the agent's [`Handle`] only, so the cache lives here; the control plane runs on
    /// the pipeline thread alone, so one per thread is one per agent.
    static IDENTITY: RefCell<Option<(String, Instant, Identity)>> = const { RefCell::new(None) };
}

/// Builds heartbeat `seq` from what the agent says now: the identity (looked up again when
/// `full` or older than [`IDENTITY_MAX_AGE`], else the last one), the health figures, and
/// `statuses` (pipeline, instance) if this heartbeat carries them.
pub(crate) fn request(
    agent: &Handle,
    seq: u64,
    request_id: Vec<u8>,
    full: bool,
    statuses: Option<[Vec<ConfigInfo>; 2]>,
    startup_time: i64,
) -> HeartbeatRequest {
    let fleet = agent.fleet();
    let fleet = fleet.as_ref();
    let instance = agent.instance();
    let server = fleet.map(|f| f.server.to_string()).unwrap_or_default();
    let now = Instant::now();
    let id = IDENTITY.with(|c| {
        let mut c = c.borrow_mut();
        match &*c {
            Some((for_server, at, id))
                if !full
                    && *for_server == server
                    && now.saturating_duration_since(*at) < IDENTITY_MAX_AGE =>
            {
                id.clone()
            }
            _ => {
                let id = Identity::look_up(fleet, &instance);
                *c = Some((server, now, id.clone()));
                id
            }
        }
    });
    build(&Beat {
        instance: &instance,
        fleet,
        id: &id,
        health: &health(&agent.health()),
        statuses,
        seq,
        request_id,
        full,
        startup_time,
    })
}

/// Everything one heartbeat is made of.
pub(crate) struct Beat<'a> {
    pub instance: &'a str,
    pub fleet: Option<&'a Fleet>,
    pub id: &'a Identity,
    pub health: &'a [(&'static str, u64)],
    /// Pipeline and instance config statuses, if this heartbeat carries them.
    pub statuses: Option<[Vec<ConfigInfo>; 2]>,
    pub seq: u64,
    pub request_id: Vec<u8>,
    pub full: bool,
    pub startup_time: i64,
}

/// The heartbeat `b` describes; no I/O.
pub(crate) fn build(b: &Beat<'_>) -> HeartbeatRequest {
    let mut extras = vec![
        ("os".to_string(), std::env::consts::OS.as_bytes().to_vec()),
        (
            "arch".to_string(),
            std::env::consts::ARCH.as_bytes().to_vec(),
        ),
    ];
    for (k, v) in b.health {
        extras.push((format!("health.{k}"), v.to_string().into_bytes()));
    }
    let [pipeline_configs, instance_configs] = b.statuses.clone().unwrap_or_default();
    HeartbeatRequest {
        request_id: b.request_id.clone(),
        sequence_num: b.seq,
        capabilities: agent_caps::PIPELINE_CONFIG | agent_caps::INSTANCE_CONFIG,
        instance_id: b.instance.to_string(),
        agent_type: b.fleet.map(|f| f.agent_type.clone()).unwrap_or_default(),
        attributes: Some(Attributes {
            version: b.id.version.clone(),
            ip: b.id.ip.clone(),
            hostname: b.id.hostname.clone(),
            hostid: b.id.hostid.clone(),
            extras,
        }),
        tags: b
            .fleet
            .map(|f| f.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        // An alert raised (`health.alerts` not 0) shows in the running status.
        running_status: if b.health.iter().any(|&(k, v)| k == "alerts" && v != 0) {
            "alerting"
        } else {
            "running"
        }
        .into(),
        startup_time: b.startup_time,
        pipeline_configs,
        instance_configs,
        flags: if b.full { REQUEST_FULL_STATE } else { 0 },
    }
}

/// The health figures, by key (without the `health.` prefix). Fixed in number.
pub(crate) fn health(s: &Health) -> [(&'static str, u64); 46] {
    let c = &s.c;
    let [p50, p90, p99] = s.latency.unwrap_or([0; 3]);
    // Per stage, the p99 only (about 150 bytes for the four); /metrics has every quantile.
    let stage_p99 = |i: usize| s.stages[i].map_or(0, |q| q[2].into());
    [
        ("lines_read", c.lines_read),
        ("bytes_read", c.bytes_read),
        ("files_open", s.files_open),
        ("files_waiting", s.files_waiting),
        ("frames_spooled", c.frames_spooled),
        ("frames_sent", c.frames_sent),
        ("frames_acked", c.frames_acked),
        ("lines_acked", c.lines_acked),
        ("retries", c.send_errors),
        ("pipelines", s.pipelines),
        ("spool_bytes", s.spool_bytes),
        ("spool_frames", s.spool_frames),
        ("oldest_unacked_age_ms", s.oldest_unacked_age_ms),
        ("dropped_frames", c.dropped_frames),
        ("dropped_lines", c.dropped_lines),
        ("lines_cut", c.lines_cut),
        ("cut_bytes", c.cut_bytes),
        ("partial_lines", c.partial_lines),
        ("files_opened", c.files_opened),
        ("files_rotated", c.files_rotated),
        ("files_truncated", c.files_truncated),
        ("truncated_lost_bytes", c.truncated_lost_bytes),
        ("vanished_lost_bytes", c.vanished_lost_bytes),
        ("corrupt_records", c.corrupt_records),
        ("corrupt_bytes", c.corrupt_bytes),
        ("spool_lost_frames", c.spool_lost_frames),
        ("positions_lost_bytes", c.positions_lost_bytes),
        ("dead_letters", c.dead_letters),
        ("frames_split", c.frames_split),
        ("frame_limit_bytes", s.frame_limit),
        ("bad_control_messages", c.bad_control_messages),
        ("spool_write_errors", c.spool_write_errors),
        ("spool_full_waits", c.spool_full_waits),
        ("disk_full_waits", c.disk_full_waits),
        ("disk_full", s.disk_full.into()),
        ("latency_p50_ms", p50.into()),
        ("latency_p90_ms", p90.into()),
        ("latency_p99_ms", p99.into()),
        ("read_closed_p99_ms", stage_p99(0)),
        ("closed_spooled_p99_ms", stage_p99(1)),
        ("spooled_sent_p99_ms", stage_p99(2)),
        ("sent_acked_p99_ms", stage_p99(3)),
        ("alerts", s.alerts),
        ("rss_bytes", rss_bytes()),
        ("disk_free_bytes", disk_free(&s.data_dir)),
        ("uptime_s", s.uptime.as_secs()),
    ]
}

fn read_trim(p: &str) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Resident memory, from `/proc/self/status` (no page size to guess).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Bytes available to the agent on the data dir's file system.
fn disk_free(dir: &Path) -> u64 {
    rustix::fs::statvfs(dir).map_or(0, |v| v.f_bavail.saturating_mul(v.f_frsize))
}

/// The address this host would use to reach the server: a UDP socket "connected" to it
/// (no packet is sent). The server name is resolved on the pipeline thread; this runs only
/// for full heartbeats (see [`IDENTITY`]).
fn local_ip(host: &str, port: u16) -> String {
    use std::net::{ToSocketAddrs, UdpSocket};
    // The port does not matter (nothing is sent), but the server's is at hand.
    let Some(addr) = (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
    else {
        return String::new();
    };
    let bind = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    UdpSocket::bind(bind)
        .and_then(|s| {
            s.connect(addr)?;
            s.local_addr()
        })
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::proto::ConfigStatus;

    fn fleet() -> Fleet {
        Fleet::from_toml(
            "server = \"http://127.0.0.1:8899\"\nagent_type = \"tailbeat\"\n\
             tags = { site = \"plant-7\", role = \"gw\" }",
        )
        .unwrap()
    }

    fn id() -> Identity {
        Identity {
            version: "0.1.0".into(),
            ip: "10.0.0.7".into(),
            hostname: "gw-7".into(),
            hostid: "0123abcd".into(),
        }
    }

    fn statuses() -> [Vec<ConfigInfo>; 2] {
        let i = ConfigInfo {
            name: "remote".into(),
            version: 3,
            status: ConfigStatus::Applied,
            message: String::new(),
        };
        [vec![i], Vec::new()]
    }

    fn beat(
        f: &Fleet,
        id: &Identity,
        seq: u64,
        full: bool,
        with_statuses: bool,
    ) -> HeartbeatRequest {
        build(&Beat {
            instance: "gw-0001",
            fleet: Some(f),
            id,
            health: &[("lines_read", 42), ("bad_control_messages", seq)],
            statuses: (full || with_statuses).then(statuses),
            seq,
            request_id: format!("r{seq}").into_bytes(),
            full,
            startup_time: 1_795_378_643,
        })
    }

    /// What a server that stores every heartbeat as sent (LoongCollector's) keeps of the
    /// agent's identity after heartbeat `h`.
    fn stored(h: &HeartbeatRequest) -> (String, i64, Vec<(String, String)>, [String; 4]) {
        let a = h.attributes.clone().unwrap_or_default();
        (
            h.agent_type.clone(),
            h.startup_time,
            h.tags.clone(),
            [a.version, a.ip, a.hostname, a.hostid],
        )
    }

    #[test]
    fn a_short_heartbeat_leaves_the_identity_a_server_stored_from_the_full_one() {
        let (f, id) = (fleet(), id());
        let full = beat(&f, &id, 1, true, false);
        let after_full = stored(&full);
        assert_eq!(after_full.0, "tailbeat");
        assert_eq!(after_full.1, 1_795_378_643);
        assert_eq!(after_full.2.len(), 2);
        assert_eq!(after_full.3, ["0.1.0", "10.0.0.7", "gw-7", "0123abcd"]);
        for seq in 2..5 {
            let short = beat(&f, &id, seq, false, false);
            assert_eq!(short.flags, 0);
            assert_eq!(stored(&short), after_full, "heartbeat {seq}");
            let extras = &short.attributes.as_ref().unwrap().extras;
            assert!(extras.contains(&("os".into(), std::env::consts::OS.into())));
            assert!(extras.contains(&("arch".into(), std::env::consts::ARCH.into())));
        }
    }

    #[test]
    fn a_short_heartbeat_differs_from_a_full_one_only_in_the_flag_and_the_statuses() {
        let (f, id) = (fleet(), id());
        let full = beat(&f, &id, 7, true, false);
        let mut short = beat(&f, &id, 7, false, false);
        assert!(short.pipeline_configs.is_empty() && short.instance_configs.is_empty());
        assert!(short.encode().len() < full.encode().len());
        short.flags = REQUEST_FULL_STATE;
        [short.pipeline_configs, short.instance_configs] = statuses();
        assert_eq!(short, full);
    }

    #[test]
    fn health_rides_in_the_attributes_of_every_heartbeat() {
        let (f, id) = (fleet(), id());
        for full in [true, false] {
            let h = beat(&f, &id, 9, full, false);
            let extras = h.attributes.unwrap().extras;
            assert!(extras.contains(&("health.lines_read".into(), b"42".to_vec())));
            assert!(extras.contains(&("health.bad_control_messages".into(), b"9".to_vec())));
        }
    }

    #[test]
    fn statuses_ride_in_a_short_heartbeat_only_when_asked_for_the_fallback() {
        let (f, id) = (fleet(), id());
        let h = beat(&f, &id, 3, false, true);
        assert_eq!(h.flags, 0);
        assert_eq!(h.pipeline_configs, statuses()[0]);
    }
}
