//! HTTP requests, made by ureq on a worker thread of their own.
//!
//! ureq is blocking. Calling it on the pipeline thread would stop tailing for as long as a
//! server takes to answer (or to time out), so each HTTP peer gets one worker thread that
//! owns a `ureq::Agent` and runs one request at a time; the pipeline hands it requests and
//! awaits the answers over a pair of one-slot channels. A worker is started only when a
//! config names an HTTP peer (the ConfigServer, an HTTP sink) and ends when its client is
//! dropped. Its stack is 256 KiB: a request needs far less, and the default 2 MiB would be
//! address space, not memory, but counts against a small device's overcommit limits.
//!
//! Only per-phase timeouts are set (connect, send, receive): ureq's global and resolve
//! timeouts run DNS resolution on a throwaway thread per request.

use crate::config::Secret;
use smol::channel::{Receiver, Sender};
use std::fmt;
use std::time::Duration;

/// One POST.
#[derive(Debug)]
pub struct Request {
    /// Absolute `http://` URL.
    pub url: String,
    /// `Content-Type` of `body`.
    pub content_type: &'static str,
    /// `Authorization` header value, if any.
    pub authorization: Option<Secret>,
    /// Other headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// What the server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// `Retry-After`, when given in seconds.
    pub retry_after: Option<Duration>,
    /// The body, up to [`MAX_BODY`] bytes.
    pub body: Vec<u8>,
}

/// Largest response body read; a longer one is an error (config bodies are small).
pub const MAX_BODY: u64 = 4 << 20;

/// A request that got no HTTP answer: connection refused, timeout, broken response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError(pub String);

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

type Reply = Result<Response, HttpError>;

/// The pipeline's handle on one worker thread.
#[derive(Debug)]
pub struct Client {
    tx: Sender<(u64, Request)>,
    rx: Receiver<(u64, Reply)>,
    /// Numbers requests, so that an answer to an abandoned one is never taken for another's.
    next: std::cell::Cell<u64>,
    /// How long one request may take in all, worker side; the pipeline waits a little more.
    timeout: Duration,
}

impl Client {
    /// Starts a worker named `name` whose every phase (connect, send, receive) times out after
    /// `timeout`, with TLS settings `tls` for `https://` URLs (`None`: no https URL).
    pub fn new(
        name: &str,
        timeout: Duration,
        tls: Option<&crate::config::Tls>,
    ) -> Result<Client, String> {
        let (tx, jobs) = smol::channel::bounded::<(u64, Request)>(1);
        let (done, rx) = smol::channel::bounded::<(u64, Reply)>(1);
        #[allow(unused_mut)]
        let mut b = ureq::Agent::config_builder();
        #[cfg(feature = "tls")]
        if let Some(t) = tls {
            b = b.tls_config(crate::tls::ureq_config(t)?);
        }
        #[cfg(not(feature = "tls"))]
        if tls.is_some() {
            return Err("https:// needs the tls feature".into());
        }
        let agent: ureq::Agent = b
            .http_status_as_error(false)
            .timeout_connect(Some(timeout))
            .timeout_send_request(Some(timeout))
            .timeout_send_body(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .timeout_recv_body(Some(timeout))
            .user_agent(concat!("tailbeat/", env!("CARGO_PKG_VERSION")))
            .max_idle_connections(1)
            .max_idle_connections_per_host(1)
            .build()
            .into();
        std::thread::Builder::new()
            .name(name.into())
            .stack_size(256 << 10)
            .spawn(move || {
                while let Ok((id, req)) = jobs.recv_blocking() {
                    if done.send_blocking((id, call(&agent, req))).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("cannot start the HTTP worker thread: {e}"))?;
        Ok(Client {
            tx,
            rx,
            next: std::cell::Cell::new(0),
            timeout,
        })
    }

    /// Sends `req` and waits for the answer.
    ///
    /// A request abandoned (this future dropped, or given up on after the limit below) still
    /// runs to its end on the worker; its answer is recognised by its number and dropped.
    pub async fn post(&self, req: Request) -> Reply {
        let id = self.next.get() + 1;
        self.next.set(id);
        let gone = || HttpError("HTTP worker thread is gone".into());
        self.tx.send((id, req)).await.map_err(|_| gone())?;
        // Five phases each bounded by `timeout`: the worker answers well within this, unless
        // name resolution (which has no timeout of its own) hangs.
        let limit = self.timeout * 6;
        smol::future::or(
            async {
                loop {
                    match self.rx.recv().await {
                        Ok((n, reply)) if n == id => return reply,
                        Ok(_) => continue,
                        Err(_) => return Err(gone()),
                    }
                }
            },
            async {
                smol::Timer::after(limit).await;
                Err(HttpError(format!("no answer in {} s", limit.as_secs())))
            },
        )
        .await
    }
}

fn call(agent: &ureq::Agent, req: Request) -> Reply {
    let mut r = agent
        .post(&req.url)
        .header("Content-Type", req.content_type);
    if let Some(a) = &req.authorization {
        r = r.header("Authorization", a.expose());
    }
    for (k, v) in &req.headers {
        r = r.header(*k, v);
    }
    let mut resp = r
        .send(&req.body[..])
        .map_err(|e| HttpError(format!("POST {}: {}", req.url, redact(&e.to_string()))))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|e| HttpError(format!("POST {}: reading the answer: {e}", req.url)))?;
    Ok(Response {
        status,
        retry_after,
        body,
    })
}

/// ureq errors can quote the URL, which may hold `user:password@`.
fn redact(msg: &str) -> String {
    match (msg.find("://"), msg.find('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &msg[..s], &msg[at..]),
        _ => msg.to_string(),
    }
}

/// `Authorization` for a bearer token or a user and password: a [`Secret`] too, since it
/// carries one.
pub fn authorization(
    bearer: Option<&Secret>,
    user: Option<&str>,
    password: Option<&Secret>,
) -> Option<Secret> {
    if let Some(t) = bearer {
        return Some(Secret::new(format!("Bearer {}", t.expose())));
    }
    let user = user?;
    let raw = format!("{user}:{}", password.map_or("", Secret::expose));
    Some(Secret::new(format!("Basic {}", base64(raw.as_bytes()))))
}

fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_is_rfc_7617() {
        let s = Secret::new;
        let basic = authorization(None, Some("Aladdin"), Some(&s("open sesame"))).unwrap();
        assert_eq!(basic.expose(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        let bearer = authorization(Some(&s("t0k")), Some("u"), None).unwrap();
        assert_eq!(bearer.expose(), "Bearer t0k");
        assert_eq!(authorization(None, None, Some(&s("p"))), None);
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact("http://u:secret@127.0.0.1:1/x: refused"),
            "http://***@127.0.0.1:1/x: refused"
        );
        assert_eq!(redact("plain"), "plain");
    }
}
