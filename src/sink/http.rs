//! The HTTP sink: each frame is one POST, released from the spool on a 2xx.
//!
//! The body is the frame exactly as `src/frame/FORMAT.md` describes it, with
//! `Content-Type: application/vnd.tailbeat.frame` and the headers `X-Tailbeat-Instance` and
//! `X-Tailbeat-Seq`, which a receiver can use to drop repeats without decoding.
//!
//! What an answer means:
//! - 2xx: the frame is delivered;
//! - 408, 429, 5xx, or no answer: retried with the deliver loop's backoff, stretched to the
//!   server's `Retry-After` when it gives one;
//! - 3xx, and a status outside 200-599: retried the same way, never followed. A redirect
//!   (`http://` answered with a move to `https://`) says the URL is wrong, not the frame:
//!   dead-lettered, a whole backlog would go to the dead letters until someone mends the
//!   URL; retried, it waits in the spool, and the log says what to mend;
//! - 413 (Content Too Large, a proxy's body limit): the frame is cut into smaller frames
//!   under new sequence numbers and the pipeline's frames are made smaller from then on
//!   (`agent::deliver`); a frame of one line that is still refused is a dead letter;
//! - any other 4xx: the server will never take this frame, so retrying would block the
//!   spool for ever. The frame goes to `dead-letter.frames` in the data dir (readable with
//!   `tailbeat decode`), is counted in `dead_letters` and logged with the status, and
//!   delivery goes on.
//!
//! One frame in flight: one request at a time, on the pipeline thread, over one kept-alive
//! connection (see [`crate::http`]).

use super::failover::{Failover, SWITCH_AFTER};
use super::{Sink, SinkError};
use crate::config::HttpSink as Cfg;
use crate::http::{Client, HttpError, Request, Response};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The content type of a frame body.
pub const FRAME_CONTENT_TYPE: &str = "application/vnd.tailbeat.frame";

/// Frames to an HTTP endpoint.
#[derive(Debug)]
pub struct HttpSink {
    client: Client,
    urls: Vec<String>,
    failover: Failover,
    authorization: Option<crate::config::Secret>,
    instance: String,
    frame: Option<(u64, Vec<u8>)>,
    dead_letters: DeadLetters,
    dead_lettered: u64,
}

impl HttpSink {
    /// A sink for `cfg`, identifying as `instance`, keeping dead letters under `data_dir`
    /// (at most `dead_letter_bytes` in the current file, one older file beside it).
    pub fn new(
        cfg: &Cfg,
        instance: &str,
        data_dir: &Path,
        dead_letter_bytes: u64,
    ) -> Result<HttpSink, SinkError> {
        let https = cfg.urls().any(|u| u.tls);
        let client = Client::new(
            "tailbeat-http-sink",
            cfg.timeout.0,
            https.then_some(&cfg.tls),
        )
        .map_err(|msg| SinkError::Http {
            msg,
            retry_after: None,
        })?;
        Ok(HttpSink {
            client,
            urls: cfg.urls().map(|u| u.as_str().to_string()).collect(),
            failover: Failover::new(1 + cfg.failover.len(), cfg.failback_after.0, Instant::now()),
            authorization: crate::http::authorization(
                cfg.token.as_ref(),
                cfg.username.as_deref(),
                cfg.password.as_ref(),
            ),
            instance: instance.to_string(),
            frame: None,
            dead_letters: DeadLetters {
                path: data_dir.join("dead-letter.frames"),
                max_bytes: dead_letter_bytes,
            },
            dead_lettered: 0,
        })
    }
}

/// How many lines `frame` holds (0 if it does not decode: set aside as it is).
fn lines(frame: &[u8]) -> u64 {
    crate::frame::Decoder::default()
        .head(frame)
        .map_or(0, |h| h.line_count)
}

/// Worth trying again: the server may take the same frame later. Only 2xx and the 4xx
/// that refuse the frame itself (not 408 and 429, which are about the moment) are final.
fn retryable(status: u16) -> bool {
    !(200..500).contains(&status) || (300..400).contains(&status) || matches!(status, 408 | 429)
}

impl HttpSink {
    async fn post(&self, i: usize, seq: u64, frame: &[u8]) -> Result<Response, HttpError> {
        self.client
            .post(Request {
                url: self.urls[i].clone(),
                content_type: FRAME_CONTENT_TYPE,
                authorization: self.authorization.clone(),
                headers: vec![
                    ("X-Tailbeat-Instance", self.instance.clone()),
                    ("X-Tailbeat-Seq", seq.to_string()),
                ],
                body: frame.to_vec(),
            })
            .await
    }

    /// A final answer from `urls[i]`: 2xx delivered, anything else a dead letter.
    fn settle(
        &mut self,
        i: usize,
        seq: u64,
        frame: &[u8],
        resp: Response,
    ) -> Result<u64, SinkError> {
        if (200..300).contains(&resp.status) {
            return Ok(seq);
        }
        let detail = String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)])
            .trim()
            .to_string();
        if resp.status == 413 && lines(frame) > 1 {
            // Too large for the server (a proxy's body limit): the agent cuts it smaller.
            return Err(SinkError::TooLarge {
                seq,
                frame: frame.to_vec(),
                msg: format!("{} answered 413 ({detail:?})", self.urls[i]),
            });
        }
        self.dead_letters.write(frame).map_err(|e| SinkError::Io {
            path: self.dead_letters.path.clone(),
            source: e,
        })?;
        self.dead_lettered += 1;
        log::error!(
            "{} answered {} to frame {seq} ({detail:?}): not retried, kept in {}",
            self.urls[i],
            resp.status,
            self.dead_letters.path.display()
        );
        Ok(seq)
    }
}

impl Sink for HttpSink {
    fn window(&self) -> usize {
        1
    }

    async fn send(&mut self, seq: u64, frame: &[u8]) -> Result<(), SinkError> {
        self.frame = Some((seq, frame.to_vec()));
        Ok(())
    }

    async fn flush(&mut self) -> Result<u64, SinkError> {
        let Some((seq, frame)) = self.frame.take() else {
            return Ok(0);
        };
        let now = Instant::now();
        if self.failover.failback_due(now) {
            match self.post(0, seq, &frame).await {
                Ok(resp) if !retryable(resp.status) => {
                    log::info!("http: {} is back; leaving the failover URL", self.urls[0]);
                    self.failover.failed_back();
                    return self.settle(0, seq, &frame, resp);
                }
                _ => self.failover.failback_failed(now),
            }
        }
        let i = self.failover.current();
        let failure = match self.post(i, seq, &frame).await {
            Ok(resp) if !retryable(resp.status) => {
                self.failover.succeeded();
                return self.settle(i, seq, &frame, resp);
            }
            Ok(resp) => SinkError::Http {
                msg: match resp.status {
                    300..=399 => format!(
                        "{} answered {}, a redirect, which tailbeat does not follow: set \
                         sink.url to where it points",
                        self.urls[i], resp.status
                    ),
                    _ => format!("{} answered {}", self.urls[i], resp.status),
                },
                retry_after: resp.retry_after,
            },
            Err(e) => SinkError::Http {
                msg: e.to_string(),
                retry_after: None,
            },
        };
        if let Some(next) = self.failover.failed(now) {
            log::warn!(
                "http: {} failed {SWITCH_AFTER} times in a row; moving to {}",
                self.urls[i],
                self.urls[next]
            );
        }
        Err(failure)
    }

    fn take_dead_letters(&mut self) -> u64 {
        std::mem::take(&mut self.dead_lettered)
    }
}

/// Frames no server will take, kept for a person to look at.
#[derive(Debug)]
struct DeadLetters {
    path: PathBuf,
    max_bytes: u64,
}

impl DeadLetters {
    fn write(&self, frame: &[u8]) -> std::io::Result<()> {
        let len = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if len > 0 && len + frame.len() as u64 > self.max_bytes {
            let old = self.path.with_extension("frames.1");
            log::warn!(
                "{} is full: moved to {}, replacing what was there",
                self.path.display(),
                old.display()
            );
            std::fs::rename(&self.path, old)?;
        }
        let mut f: File = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(frame)?;
        f.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::retryable;

    /// Final: 2xx, and the 4xx that refuse the frame itself. Everything else waits in the
    /// spool and is tried again: a redirect (a tester: an `http://` URL answered 301 sent a
    /// whole backlog to the dead letters), a status no server should send.
    #[test]
    fn only_2xx_and_the_4xx_about_the_frame_are_final() {
        for s in [200, 204, 299, 400, 401, 403, 404, 410, 418, 422, 499] {
            assert!(!retryable(s), "{s}");
        }
        for s in [
            99, 101, 199, 300, 301, 302, 304, 307, 308, 399, 408, 429, 500, 503, 599, 600, 999,
        ] {
            assert!(retryable(s), "{s}");
        }
    }
}
