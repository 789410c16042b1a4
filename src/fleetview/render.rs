//! How the fleet is shown: a JSON object per agent (`--json`, `--once --json`), a plain line
//! per agent (piped), and the live table (a terminal). Pure functions of the state, `now`
//! and the wall clock's seconds: the tests compare their output, no terminal needed.

use super::state::{Agent, Fleet, Status};
use crate::control::proto::ConfigInfo;
use serde_json::{json, Value};
use std::fmt::Write;
use std::time::{Duration, Instant};

/// `d` as people read an age: `850ms`, `42s`, `3m05s`, `2h10m`, `4d`.
pub fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d", s / 86_400),
    }
}

/// Bytes as `512B`, `4.0KiB`, `3.2MiB`, `1.5GiB`.
pub fn bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if n < 1024 {
        format!("{n}B")
    } else if f < K * K {
        format!("{:.1}KiB", f / K)
    } else if f < K * K * K {
        format!("{:.1}MiB", f / K / K)
    } else {
        format!("{:.1}GiB", f / K / K / K)
    }
}

fn configs_json(cs: &[ConfigInfo]) -> Value {
    Value::Array(
        cs.iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "version": c.version,
                    "status": c.status.name(),
                    "message": c.message,
                })
            })
            .collect(),
    )
}

/// An agent as one JSON object (README, "Fleet view", has an example).
pub fn agent_json(f: &Fleet, a: &Agent, now: Instant) -> Value {
    let status = f.status(a, now);
    let interval = a.interval(f.options().interval);
    let heartbeat = a.heard.as_ref().map(|h| {
        json!({
            "seq": h.seq,
            "age_ms": now.saturating_duration_since(h.at).as_millis() as u64,
            "retained": h.retained,
            "interval_ms": interval.as_millis() as u64,
            "interval_observed": a.cadence.is_some(),
        })
    });
    let h = a.health();
    let backlog = h.map(|h| {
        json!({
            "frames": h.spool_frames,
            "bytes": h.spool_bytes,
            "oldest_unacked_age_ms": h.oldest_unacked_age_ms,
        })
    });
    let losses: serde_json::Map<String, Value> = a
        .losses()
        .into_iter()
        .map(|(k, n)| (k.to_string(), json!(n)))
        .collect();
    let tags: serde_json::Map<String, Value> = a
        .tags()
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let e = &a.events;
    json!({
        "instance": a.instance,
        "status": status.name(),
        "since": a.since,
        "session": a.session,
        "late_deaths": a.late_deaths,
        "version": a.version(),
        "startup_time": a.birth.startup_time,
        "tags": tags,
        "running_status": a.beat.as_ref().map(|b| b.running_status.as_str()),
        "heartbeat": heartbeat,
        "pipelines": configs_json(&a.pipelines),
        "instance_configs": configs_json(&a.instance_configs),
        "backlog": backlog,
        "latency_p99_ms": h.and_then(|h| h.latency_p99_ms),
        "disk_full": h.and_then(|h| h.disk_full),
        "losses": losses,
        "alerts": a.alerts.iter().map(|(n, m)| json!({"name": n, "message": m})).collect::<Vec<_>>(),
        "events": {
            "count": e.count,
            "last_seq": e.last_seq,
            "gaps": e.gaps,
            "missing": e.missing,
            "repeats": e.repeats,
            "last": e.last.as_ref().map(|l| json!({
                "seq": l.seq, "kind": l.kind, "at": l.at, "name": l.name,
                "version": l.version, "message": l.message,
            })),
        },
        "garbage": a.garbage,
    })
}

/// The fleet-wide line: `{"fleet":{...}}`.
pub fn fleet_json(f: &Fleet, now: Instant, link: &str) -> Value {
    let s = f.summary(now);
    let garbage: serde_json::Map<String, Value> = f
        .garbage()
        .into_iter()
        .map(|(k, n)| (k.to_string(), json!(n)))
        .collect();
    json!({"fleet": {
        "agents": s.agents,
        "online": s.online,
        "stale": s.stale,
        "offline": s.offline,
        "unknown": s.unknown,
        "garbage": garbage,
        "overflow": f.overflow,
        "link": link,
    }})
}

fn configs_text(cs: &[ConfigInfo]) -> String {
    cs.iter()
        .map(|c| format!("{}:v{}:{}", c.name, c.version, c.status.name()))
        .collect::<Vec<_>>()
        .join(",")
}

fn since_text(a: &Agent, wall: u64) -> String {
    match a.since {
        Some(t) => age(Duration::from_secs(wall.saturating_sub(t))),
        // A retained death: it happened before the viewer started, when is not known.
        None => String::new(),
    }
}

/// The cells of one agent's row, in [`COLUMNS`] order.
fn cells(f: &Fleet, a: &Agent, now: Instant, wall: u64) -> [String; 11] {
    let status = f.status(a, now);
    let tags = a
        .tags()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let hb = a.heard.as_ref().map_or("-".into(), |h| {
        let mut s = age(now.saturating_duration_since(h.at));
        if h.retained {
            s.push_str(" (r)");
        }
        s
    });
    let mut pipelines = configs_text(&a.pipelines);
    if !a.instance_configs.is_empty() {
        if !pipelines.is_empty() {
            pipelines.push(' ');
        }
        pipelines.push_str(&format!("inst {}", configs_text(&a.instance_configs)));
    }
    let backlog = a.health().map_or("-".into(), |h| {
        let mut s = format!(
            "{}f {}",
            h.spool_frames.unwrap_or(0),
            bytes(h.spool_bytes.unwrap_or(0))
        );
        if let Some(o) = h.oldest_unacked_age_ms.filter(|o| *o > 0) {
            s.push_str(&format!(" {}", age(Duration::from_millis(o))));
        }
        s
    });
    let p99 = a
        .health()
        .and_then(|h| h.latency_p99_ms)
        .map_or(String::new(), |ms| age(Duration::from_millis(ms)));
    let losses = a
        .losses()
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(",");
    let alerts = a
        .alerts
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let mut gaps = a.events.gaps.to_string();
    if a.garbage > 0 {
        gaps.push_str(&format!(" bad {}", a.garbage));
    }
    [
        a.instance.clone(),
        format!("{} {}", status.name(), since_text(a, wall))
            .trim_end()
            .to_string(),
        hb,
        a.version().to_string(),
        tags,
        pipelines,
        backlog,
        p99,
        losses,
        alerts,
        gaps,
    ]
}

/// The table's columns.
pub const COLUMNS: [&str; 11] = [
    "AGENT",
    "STATE",
    "HB",
    "VERSION",
    "TAGS",
    "PIPELINES",
    "BACKLOG",
    "P99",
    "LOSSES",
    "ALERTS",
    "GAPS",
];

/// One plain line for an agent (piped output): `gw-1 online 5m hb 2s v0.1.0 ...`, empty
/// parts left out.
pub fn agent_line(f: &Fleet, a: &Agent, now: Instant, wall: u64) -> String {
    let c = cells(f, a, now, wall);
    let mut s = format!("{} {}", c[0], c[1]);
    let named = [
        ("hb", &c[2]),
        ("version", &c[3]),
        ("tags", &c[4]),
        ("pipelines", &c[5]),
        ("backlog", &c[6]),
        ("p99", &c[7]),
        ("losses", &c[8]),
        ("alerts", &c[9]),
    ];
    for (k, v) in named {
        if !v.is_empty() && v != "-" {
            let _ = write!(s, " {k} {v}");
        }
    }
    let e = &a.events;
    if e.gaps > 0 {
        let _ = write!(s, " gaps {} ({} missing)", e.gaps, e.missing);
    }
    if let Some(l) = &e.last {
        let _ = write!(s, " event #{} {}", l.seq, l.kind);
        if let Some(n) = &l.name {
            let _ = write!(s, " {n}");
        }
    }
    if a.garbage > 0 {
        let _ = write!(s, " garbage {}", a.garbage);
    }
    s
}

/// The fleet's one-line summary: counts, garbage, overflow, the link.
pub fn summary_line(f: &Fleet, now: Instant, link: &str) -> String {
    let s = f.summary(now);
    let mut out = format!(
        "{} agents: {} online, {} stale, {} offline",
        s.agents, s.online, s.stale, s.offline
    );
    if s.unknown > 0 {
        let _ = write!(out, ", {} unknown", s.unknown);
    }
    let g = f.garbage();
    if !g.is_empty() {
        let parts: Vec<String> = g.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = write!(out, "; garbage: {}", parts.join(", "));
    }
    if f.overflow > 0 {
        let _ = write!(out, "; {} messages over the agent cap", f.overflow);
    }
    let _ = write!(out, "; {link}");
    out
}

/// The live table for a terminal of `cols` × `rows`: moves the cursor home, draws the
/// summary, the header and as many rows as fit (problems first: offline, stale, then by
/// name), each line cut to the width and cleared to its end, then clears below. Drawing over
/// the last frame instead of clearing the screen first keeps it from flickering.
pub fn table(f: &Fleet, now: Instant, wall: u64, cols: usize, rows: usize, link: &str) -> String {
    let mut agents: Vec<&Agent> = f.agents().collect();
    agents.sort_by_key(|a| (f.status(a, now), a.instance.as_str()));
    let body = rows.saturating_sub(3).max(1);
    let shown = if agents.len() > body {
        body - 1
    } else {
        agents.len()
    };
    let rows_cells: Vec<[String; 11]> = agents[..shown]
        .iter()
        .map(|a| cells(f, a, now, wall))
        .collect();
    // Each column as wide as its widest cell, at most 40.
    let mut w: Vec<usize> = COLUMNS.iter().map(|c| c.chars().count()).collect();
    for r in &rows_cells {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count().min(40));
        }
    }
    let fit = |s: &str, n: usize| -> String {
        let mut t: String = s.chars().take(n).collect();
        if s.chars().count() > n {
            t.pop();
            t.push('…');
        }
        format!("{t:<n$}")
    };
    let line = |cells: &[String]| -> String {
        let l: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| fit(c, w[i]))
            .collect();
        let l = l.join(" ");
        l.trim_end().chars().take(cols).collect()
    };
    let mut out = String::from("\x1b[H");
    let head: String = format!("tailbeat fleet: {}", summary_line(f, now, link))
        .chars()
        .take(cols)
        .collect();
    let _ = write!(out, "\x1b[1m{head}\x1b[0m\x1b[K\r\n");
    let hdr: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    let _ = write!(out, "\x1b[7m{}\x1b[0m\x1b[K\r\n", line(&hdr));
    for (a, c) in agents[..shown].iter().zip(&rows_cells) {
        let color = match f.status(a, now) {
            Status::Offline => "\x1b[31m",
            Status::Stale => "\x1b[33m",
            _ => "",
        };
        let reset = if color.is_empty() { "" } else { "\x1b[0m" };
        let _ = write!(out, "{color}{}{reset}\x1b[K\r\n", line(c));
    }
    if shown < agents.len() {
        let _ = write!(
            out,
            "… {} more (a taller terminal, --filter, or --json)\x1b[K\r\n",
            agents.len() - shown
        );
    }
    out.push_str("\x1b[J");
    out
}

#[cfg(test)]
mod tests {
    use super::super::state::Options;
    use super::*;

    #[test]
    fn ages_and_sizes_read_as_people_write_them() {
        let ms = Duration::from_millis;
        assert_eq!(age(ms(850)), "850ms");
        assert_eq!(age(ms(42_000)), "42s");
        assert_eq!(age(ms(185_000)), "3m05s");
        assert_eq!(age(ms(7_800_000)), "2h10m");
        assert_eq!(age(ms(4 * 86_400_000)), "4d");
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(4096), "4.0KiB");
        assert_eq!(bytes(3 << 20), "3.0MiB");
    }

    #[test]
    fn the_table_puts_problems_first_and_fits_the_terminal() {
        let t0 = Instant::now();
        let mut f = Fleet::new(Options {
            prefix_levels: 1,
            interval: Duration::from_secs(10),
            max_agents: 100,
            filter: Vec::new(),
        });
        let on = br#"{"state":"online","instance":"x","session":1,"connected_at":100}"#;
        let off = br#"{"state":"offline","instance":"x","session":1,"connected_at":100}"#;
        for n in 0..10 {
            f.feed(&format!("tailbeat/gw-{n}/state"), on, true, t0, 160);
        }
        f.feed("tailbeat/gw-7/state", off, false, t0, 160);
        let t = table(&f, t0, 220, 80, 8, "connected");
        let lines: Vec<&str> = t.split("\r\n").collect();
        assert!(
            lines[0].contains("10 agents: 9 online, 0 stale, 1 offline"),
            "{t}"
        );
        assert!(lines[1].contains("AGENT"), "{t}");
        assert!(
            lines[2].contains("gw-7") && lines[2].contains("offline 1m00s"),
            "{t}"
        );
        assert!(
            lines[3].contains("gw-0") && lines[3].contains("online 2m00s"),
            "{t}"
        );
        // 8 rows: summary, header, 4 agents, the "more" line.
        assert!(lines[6].starts_with("… 6 more"), "{t}");
        let l = agent_line(&f, f.get("gw-7").unwrap(), t0, 160);
        assert_eq!(l, "gw-7 offline 0ms");
        let j = agent_json(&f, f.get("gw-7").unwrap(), t0);
        assert_eq!(
            (j["status"].as_str(), j["since"].as_u64()),
            (Some("offline"), Some(160))
        );
    }
}
