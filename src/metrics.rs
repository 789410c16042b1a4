//! The metrics endpoint (`[metrics] listen`): the agent's figures in Prometheus' text
//! exposition format at `/metrics`, and its condition at `/healthz`.
//!
//! Owns one listening socket, served by one task on the agent's executor: no thread. What
//! always holds:
//! - connections are answered one at a time, each within [`READ_TIMEOUT`] for its request
//!   head and [`WRITE_TIMEOUT`] for the answer, so a client that stalls holds the endpoint
//!   for seconds at most and the agent never; the others wait in the kernel's backlog;
//! - a request head is at most [`MAX_HEAD`] bytes; every answer closes its connection;
//! - the figures are the heartbeat's (`control::heartbeat::health`), taken when the request
//!   arrives: the two views never disagree. Rendering is a pure function ([`render`]),
//!   tested without a socket; `promtool check metrics` checks its output in CI.

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Async;
use std::fmt::Write as _;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// Longest wait for a request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait to write an answer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read (a scrape's is about 200 bytes).
pub const MAX_HEAD: usize = 4096;

/// What an answer shows, taken when the request arrives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// The heartbeat's health figures, by key (`control::heartbeat::health`).
    pub health: Vec<(&'static str, u64)>,
    /// Per pipeline: its name ("" for the local one), frames and bytes waiting in its spool.
    pub pipelines: Vec<(String, u64, u64)>,
    /// What is wrong, one phrase each; empty when healthy.
    pub problems: Vec<String>,
    /// Per stage (`stats::latency::STAGE_NAMES`): p50, p90, p99 in ms over the window;
    /// a stage with no figure in the window is left out.
    pub stages: Vec<(&'static str, [u32; 3])>,
    /// Every alert by name, and whether it is raised.
    pub alerts: Vec<(&'static str, bool)>,
}

/// Heartbeat keys shown otherwise here: the stages' p99 in `tailbeat_stage_latency_seconds`,
/// the alerts' bits in `tailbeat_alert`.
const SHOWN_ELSEWHERE: &[&str] = &[
    "read_closed_p99_ms",
    "closed_spooled_p99_ms",
    "spooled_sent_p99_ms",
    "sent_acked_p99_ms",
    "alerts",
];

/// Counter, gauge, or the quantiles of a summary.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Summary,
}

/// A health key's metric: name (`_total` for counters), kind, help; `ms` for a figure in
/// milliseconds, exposed in seconds (Prometheus' base unit). Keys not listed are exposed as
/// gauges under `tailbeat_<key>`, so a figure added to the heartbeat is never left out.
struct Def {
    key: &'static str,
    name: &'static str,
    kind: Kind,
    help: &'static str,
    ms: bool,
}

const fn d(key: &'static str, name: &'static str, kind: Kind, help: &'static str) -> Def {
    Def {
        key,
        name,
        kind,
        help,
        ms: false,
    }
}

use Kind::{Counter as C, Gauge as G, Summary as S};

#[rustfmt::skip]
const DEFS: &[Def] = &[
    d("lines_read", "tailbeat_lines_read_total", C, "Lines taken into frames."),
    d("bytes_read", "tailbeat_read_bytes_total", C, "Bytes consumed from files, newlines included."),
    d("files_open", "tailbeat_files_open", G, "Files open for tailing."),
    d("files_waiting", "tailbeat_files_waiting", G, "Files found that wait for a turn (over the open-file limit)."),
    d("frames_spooled", "tailbeat_frames_spooled_total", C, "Frames written to the spool."),
    d("frames_sent", "tailbeat_frames_sent_total", C, "Frames handed to the sink, retransmissions included."),
    d("frames_acked", "tailbeat_frames_acked_total", C, "Frames the sink acknowledged."),
    d("lines_acked", "tailbeat_lines_acked_total", C, "Lines in acknowledged frames."),
    d("retries", "tailbeat_send_errors_total", C, "Failed sink operations, each retried after a backoff."),
    d("pipelines", "tailbeat_pipelines", G, "Pipelines running."),
    d("spool_bytes", "tailbeat_spool_bytes", G, "Bytes in the spools."),
    d("spool_frames", "tailbeat_spool_frames", G, "Frames waiting in the spools."),
    Def { key: "oldest_unacked_age_ms", name: "tailbeat_oldest_unacked_age_seconds", kind: G, help: "Age of the oldest line not yet acknowledged (0: none).", ms: true },
    d("dropped_frames", "tailbeat_dropped_frames_total", C, "Frames deleted unsent by on_full = drop_oldest."),
    d("dropped_lines", "tailbeat_dropped_lines_total", C, "Lines in those frames."),
    d("lines_cut", "tailbeat_lines_cut_total", C, "Lines cut at max_line_bytes."),
    d("cut_bytes", "tailbeat_cut_bytes_total", C, "Bytes thrown away from cut lines."),
    d("partial_lines", "tailbeat_partial_lines_total", C, "Last lines sent without a newline after partial_flush."),
    d("files_opened", "tailbeat_files_opened_total", C, "Files opened for tailing."),
    d("files_rotated", "tailbeat_files_rotated_total", C, "Files seen renamed or deleted."),
    d("files_truncated", "tailbeat_files_truncated_total", C, "Files seen truncated."),
    d("truncated_lost_bytes", "tailbeat_truncated_lost_bytes_total", C, "Unread bytes lost to a truncation with no copy."),
    d("vanished_lost_bytes", "tailbeat_vanished_lost_bytes_total", C, "Unread bytes lost because a file vanished."),
    d("corrupt_records", "tailbeat_corrupt_records_total", C, "Spool records found corrupt or torn."),
    d("corrupt_bytes", "tailbeat_corrupt_bytes_total", C, "Bytes in those records."),
    d("spool_lost_frames", "tailbeat_spool_lost_frames_total", C, "Frames found missing from the spool at start-up."),
    d("positions_lost_bytes", "tailbeat_positions_lost_bytes_total", C, "Bytes skipped because their position was lost (upper bound)."),
    d("dead_letters", "tailbeat_dead_letters_total", C, "Frames the HTTP sink set aside, refused."),
    d("frames_split", "tailbeat_frames_split_total", C, "Frames refused as too large (HTTP 413) and cut into smaller ones."),
    d("frame_limit_bytes", "tailbeat_frame_limit_bytes", G, "The smallest frame size a sink asked for by refusing a frame as too large (0: none)."),
    d("bad_control_messages", "tailbeat_bad_control_messages_total", C, "Control messages refused as malformed or oversized."),
    d("spool_write_errors", "tailbeat_spool_write_errors_total", C, "Writes to the spool that failed."),
    d("spool_full_waits", "tailbeat_spool_full_waits_total", C, "Times reading stopped because the spool was full (block)."),
    d("disk_full_waits", "tailbeat_disk_full_waits_total", C, "Times reading stopped because the disk under data_dir was full."),
    d("disk_full", "tailbeat_disk_full", G, "Pipelines whose reading is paused now because the disk under data_dir is full."),
    Def { key: "latency_p50_ms", name: "tailbeat_read_to_ack_seconds{quantile=\"0.5\"}", kind: S, help: "Read to acknowledgement latency over the window (alerts.window), by quantile.", ms: true },
    Def { key: "latency_p90_ms", name: "tailbeat_read_to_ack_seconds{quantile=\"0.9\"}", kind: S, help: "", ms: true },
    Def { key: "latency_p99_ms", name: "tailbeat_read_to_ack_seconds{quantile=\"0.99\"}", kind: S, help: "", ms: true },
    d("rss_bytes", "tailbeat_resident_memory_bytes", G, "Resident memory of the process."),
    d("disk_free_bytes", "tailbeat_data_dir_free_bytes", G, "Free bytes on the file system under data_dir."),
    d("uptime_s", "tailbeat_uptime_seconds", G, "Seconds since the agent started."),
];

/// The exposition (text format 0.0.4) of `f`.
pub fn render(f: &Figures) -> String {
    let mut out = String::with_capacity(4096);
    let mut last_family = String::new();
    for &(key, v) in &f.health {
        if SHOWN_ELSEWHERE.contains(&key) {
            continue;
        }
        let (name, kind, help, ms) = match DEFS.iter().find(|d| d.key == key) {
            Some(d) => (d.name.to_string(), d.kind, d.help, d.ms),
            None => (format!("tailbeat_{key}"), G, "", false),
        };
        // Quantiles of one family share its HELP and TYPE lines.
        let family = name.split('{').next().unwrap_or_default().to_string();
        if family != last_family {
            let t = match kind {
                C => "counter",
                G => "gauge",
                S => "summary",
            };
            if !help.is_empty() {
                let _ = writeln!(out, "# HELP {family} {help}");
            }
            let _ = writeln!(out, "# TYPE {family} {t}");
        }
        if ms {
            let _ = writeln!(out, "{name} {}.{:03}", v / 1000, v % 1000);
        } else {
            let _ = writeln!(out, "{name} {v}");
        }
        last_family = family;
    }
    for (family, help, col) in [
        (
            "tailbeat_pipeline_spool_frames",
            "Frames waiting in a pipeline's spool.",
            0,
        ),
        (
            "tailbeat_pipeline_spool_bytes",
            "Bytes in a pipeline's spool.",
            1,
        ),
    ] {
        let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} gauge");
        for (name, frames, bytes) in &f.pipelines {
            let v = if col == 0 { frames } else { bytes };
            let label = if name.is_empty() { "local" } else { name };
            let _ = writeln!(out, "{family}{{pipeline=\"{}\"}} {v}", escape(label));
        }
    }
    let family = "tailbeat_stage_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {family} Latency of each stage over the window (alerts.window), by quantile: read_closed, closed_spooled, spooled_sent, sent_acked, read_acked.\n# TYPE {family} summary"
    );
    for (stage, q) in &f.stages {
        for (label, v) in ["0.5", "0.9", "0.99"].iter().zip(q) {
            let _ = writeln!(
                out,
                "{family}{{stage=\"{stage}\",quantile=\"{label}\"}} {}.{:03}",
                v / 1000,
                v % 1000
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP tailbeat_alert 1 while the alert is raised ([alerts]).\n# TYPE tailbeat_alert gauge"
    );
    for (name, on) in &f.alerts {
        let _ = writeln!(out, "tailbeat_alert{{name=\"{name}\"}} {}", u8::from(*on));
    }
    let _ = writeln!(
        out,
        "# HELP tailbeat_healthy 1 when /healthz answers 200.\n# TYPE tailbeat_healthy gauge\ntailbeat_healthy {}",
        u8::from(f.problems.is_empty())
    );
    out
}

/// A label value: backslash, double quote and newline escaped (exposition format).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The answer to one request head: status line's code and reason, content type, body.
pub fn answer(head: &[u8], figures: impl FnOnce() -> Figures) -> (u16, &'static str, String) {
    let line = head
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(b"");
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next().unwrap_or(b""), parts.next().unwrap_or(b""));
    let path = target.split(|&b| b == b'?').next().unwrap_or(b"");
    if method != b"GET" && method != b"HEAD" {
        return (405, "text/plain", "only GET\n".into());
    }
    match path {
        b"/metrics" => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            render(&figures()),
        ),
        b"/healthz" => {
            let f = figures();
            if f.problems.is_empty() {
                (200, "text/plain", "ok\n".into())
            } else {
                (503, "text/plain", f.problems.join("\n") + "\n")
            }
        }
        _ => (404, "text/plain", "/metrics or /healthz\n".into()),
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Bad Request",
    }
}

/// Serves `listener` until the task is dropped, answering with `figures()` taken per request.
pub async fn serve(listener: Async<TcpListener>, figures: impl Fn() -> Figures) {
    loop {
        let (mut conn, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and the like: wait rather than spin.
                log::warn!("metrics: accept: {e}");
                smol::Timer::after(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(head) = within(READ_TIMEOUT, read_head(&mut conn)).await else {
            continue;
        };
        let (code, ctype, body) = answer(&head, &figures);
        let is_head = head.starts_with(b"HEAD ");
        let mut out = format!(
            "HTTP/1.1 {code} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            reason(code),
            body.len()
        );
        if !is_head {
            out.push_str(&body);
        }
        let _ = within(WRITE_TIMEOUT, async {
            conn.write_all(out.as_bytes()).await.ok()?;
            conn.flush().await.ok()
        })
        .await;
    }
}

/// Reads until the end of a request head; `None` on EOF, an error, or more than [`MAX_HEAD`].
async fn read_head(conn: &mut Async<TcpStream>) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    loop {
        let n = conn.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Some(head);
        }
        if head.len() > MAX_HEAD {
            return None;
        }
    }
}

async fn within<T>(t: Duration, f: impl std::future::Future<Output = Option<T>>) -> Option<T> {
    smol::future::or(f, async {
        smol::Timer::after(t).await;
        None
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> Figures {
        Figures {
            health: vec![
                ("lines_read", 42),
                ("spool_frames", 3),
                ("oldest_unacked_age_ms", 1500),
                ("latency_p50_ms", 21),
                ("latency_p90_ms", 2809),
                ("latency_p99_ms", 5149),
                ("some_new_figure", 7),
                ("sent_acked_p99_ms", 900),
                ("alerts", 1),
            ],
            pipelines: vec![("".into(), 2, 100), ("a\"b".into(), 1, 50)],
            problems: vec![],
            stages: vec![
                ("read_closed", [3, 40, 1500]),
                ("read_acked", [21, 2809, 5149]),
            ],
            alerts: vec![("read_to_ack_p99", true), ("free_disk", false)],
        }
    }

    #[test]
    fn counters_gauges_and_quantiles_render_in_the_text_format() {
        let t = render(&figures());
        for want in [
            "# TYPE tailbeat_lines_read_total counter\ntailbeat_lines_read_total 42\n",
            "# TYPE tailbeat_spool_frames gauge\ntailbeat_spool_frames 3\n",
            "tailbeat_oldest_unacked_age_seconds 1.500\n",
            "# TYPE tailbeat_read_to_ack_seconds summary\ntailbeat_read_to_ack_seconds{quantile=\"0.5\"} 0.021\ntailbeat_read_to_ack_seconds{quantile=\"0.9\"} 2.809\ntailbeat_read_to_ack_seconds{quantile=\"0.99\"} 5.149\n",
            "# TYPE tailbeat_some_new_figure gauge\ntailbeat_some_new_figure 7\n",
            "tailbeat_pipeline_spool_frames{pipeline=\"local\"} 2\n",
            "tailbeat_pipeline_spool_bytes{pipeline=\"a\\\"b\"} 50\n",
            "tailbeat_healthy 1\n",
            "# TYPE tailbeat_stage_latency_seconds summary\ntailbeat_stage_latency_seconds{stage=\"read_closed\",quantile=\"0.5\"} 0.003\n",
            "tailbeat_stage_latency_seconds{stage=\"read_closed\",quantile=\"0.99\"} 1.500\n",
            "tailbeat_stage_latency_seconds{stage=\"read_acked\",quantile=\"0.9\"} 2.809\n",
            "# TYPE tailbeat_alert gauge\ntailbeat_alert{name=\"read_to_ack_p99\"} 1\ntailbeat_alert{name=\"free_disk\"} 0\n",
        ] {
            assert!(t.contains(want), "{want:?} not in\n{t}");
        }
        // Heartbeat keys that have a family of their own here are not shown twice.
        assert!(!t.contains("tailbeat_alerts "), "{t}");
        assert!(!t.contains("p99_ms"), "{t}");
        // One TYPE line per family.
        assert_eq!(
            t.matches("# TYPE tailbeat_read_to_ack_seconds").count(),
            1,
            "{t}"
        );
    }

    #[test]
    fn requests_are_answered_by_path_and_method() {
        let ok = |h: &[u8]| answer(h, figures);
        assert_eq!(ok(b"GET /metrics HTTP/1.1\r\n\r\n").0, 200);
        assert_eq!(ok(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").0, 200);
        assert_eq!(
            ok(b"GET /healthz HTTP/1.1\r\n\r\n"),
            (200, "text/plain", "ok\n".into())
        );
        assert_eq!(ok(b"POST /metrics HTTP/1.1\r\n\r\n").0, 405);
        assert_eq!(ok(b"GET / HTTP/1.1\r\n\r\n").0, 404);
        assert_eq!(ok(b"\xff\xfe garbage").0, 405);
        let sick = || Figures {
            problems: vec!["disk under data_dir full: reading paused".into()],
            ..figures()
        };
        let (code, _, body) = answer(b"GET /healthz HTTP/1.1\r\n\r\n", sick);
        assert_eq!(
            (code, body.as_str()),
            (503, "disk under data_dir full: reading paused\n")
        );
        assert!(render(&sick()).contains("tailbeat_healthy 0\n"));
    }
}
