//! What a heartbeat says: identity, attributes, and the agent's health.
//!
//! A full heartbeat (the first one, and whenever the server asks with ReportFullState)
//! carries everything: agent type, attributes (version, ip, hostname, host id, os, arch),
//! tags, startup time, and the status of every remote config. The short one carries
//! request id, sequence number, capabilities, instance id, running status, and the health
//! extras — the part that changes between heartbeats. Config statuses ride in every
//! heartbeat only when the server has no status endpoints (the 404 fallback).
//!
//! Health is in `AgentAttributes.extras`, under `health.*` keys, each value a decimal number
//! in ASCII (README, "Fleet", lists them).

use super::proto::{agent_caps, Attributes, HeartbeatRequest, REQUEST_FULL_STATE};
use super::remote::Kind;
use crate::agent::State;
use std::path::Path;

/// Builds heartbeat `seq`.
pub(crate) fn request(
    s: &State,
    seq: u64,
    request_id: Vec<u8>,
    full: bool,
    with_statuses: bool,
    startup_time: i64,
) -> HeartbeatRequest {
    let fleet = s.cfg.fleet.as_ref();
    let mut extras = Vec::new();
    let mut attributes = Attributes::default();
    if full {
        attributes.version = env!("CARGO_PKG_VERSION").into();
        attributes.ip = fleet.map(|f| local_ip(&f.server)).unwrap_or_default();
        attributes.hostname = read_trim("/proc/sys/kernel/hostname");
        attributes.hostid = ["/etc/machine-id", "/var/lib/dbus/machine-id"]
            .iter()
            .map(|p| read_trim(p))
            .find(|s| !s.is_empty())
            .unwrap_or_else(|| s.instance.clone());
        extras.push(("os".to_string(), std::env::consts::OS.as_bytes().to_vec()));
        extras.push((
            "arch".to_string(),
            std::env::consts::ARCH.as_bytes().to_vec(),
        ));
    }
    for (k, v) in health(s) {
        extras.push((format!("health.{k}"), v.to_string().into_bytes()));
    }
    attributes.extras = extras;
    let statuses = full || with_statuses;
    HeartbeatRequest {
        request_id,
        sequence_num: seq,
        capabilities: agent_caps::PIPELINE_CONFIG | agent_caps::INSTANCE_CONFIG,
        instance_id: s.instance.clone(),
        agent_type: if full {
            fleet.map(|f| f.agent_type.clone()).unwrap_or_default()
        } else {
            String::new()
        },
        attributes: Some(attributes),
        tags: match (full, fleet) {
            (true, Some(f)) => f.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            _ => Vec::new(),
        },
        running_status: "running".into(),
        startup_time: if full { startup_time } else { 0 },
        pipeline_configs: if statuses {
            s.remote.infos(Kind::Pipeline)
        } else {
            Vec::new()
        },
        instance_configs: if statuses {
            s.remote.infos(Kind::Instance)
        } else {
            Vec::new()
        },
        flags: if full { REQUEST_FULL_STATE } else { 0 },
    }
}

/// The health figures, by key (without the `health.` prefix). Fixed in number.
pub(crate) fn health(s: &State) -> [(&'static str, u64); 39] {
    let c = &s.c;
    let [p50, p90, p99] = s.lat.percentiles().unwrap_or([0; 3]);
    let oldest = s
        .oldest_unacked_ms()
        .map_or(0, |t| crate::agent::now_ms().saturating_sub(t));
    [
        ("lines_read", c.lines_read),
        ("bytes_read", c.bytes_read),
        ("files_open", s.files_open() as u64),
        ("files_waiting", s.files_waiting() as u64),
        ("frames_spooled", c.frames_spooled),
        ("frames_sent", c.frames_sent),
        ("frames_acked", c.frames_acked),
        ("lines_acked", c.lines_acked),
        ("retries", c.send_errors),
        ("pipelines", s.pipes.len() as u64),
        ("spool_bytes", s.spool_bytes()),
        ("spool_frames", s.backlog()),
        ("oldest_unacked_age_ms", oldest),
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
        ("bad_control_messages", c.bad_control_messages),
        ("spool_write_errors", c.spool_write_errors),
        ("spool_full_waits", c.spool_full_waits),
        ("disk_full_waits", c.disk_full_waits),
        ("disk_full", s.disk_full.into()),
        ("latency_p50_ms", p50.into()),
        ("latency_p90_ms", p90.into()),
        ("latency_p99_ms", p99.into()),
        ("rss_bytes", rss_bytes()),
        ("disk_free_bytes", disk_free(&s.cfg.data_dir)),
        ("uptime_s", s.started.elapsed().as_secs()),
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
/// for full heartbeats.
fn local_ip(server: &str) -> String {
    use std::net::{ToSocketAddrs, UdpSocket};
    let hostport = server
        .split_once("://")
        .map_or(server, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or("");
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    let with_port = if hostport.ends_with(']') || !hostport.contains(':') {
        // The port does not matter: nothing is sent.
        format!("{hostport}:80")
    } else {
        hostport.to_string()
    };
    let Some(addr) = with_port.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
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
