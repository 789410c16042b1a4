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

/// A request that got no HTTP answer (any answer, 4xx and 5xx included, is a [`Response`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum HttpError {
    /// The worker thread is gone (it panicked).
    WorkerGone,
    /// No answer from the worker within `after` (six times the phase timeout): name
    /// resolution, which has no timeout of its own, hung.
    NoAnswer {
        /// How long the pipeline waited.
        after: Duration,
    },
    /// No answer: the connection was refused, a phase timed out, TLS failed, the answer's
    /// head was broken.
    Send {
        /// Where the POST went.
        url: String,
        /// ureq's error.
        source: ureq::Error,
    },
    /// An answer whose body could not be read: cut short, timed out, or over [`MAX_BODY`].
    Body {
        /// Where the POST went.
        url: String,
        /// ureq's error.
        source: ureq::Error,
    },
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::WorkerGone => f.write_str("HTTP worker thread is gone"),
            HttpError::NoAnswer { after } => write!(f, "no answer in {} s", after.as_secs()),
            HttpError::Send { url, source } => {
                write!(f, "POST {url}: {}", redact(&source.to_string()))
            }
            HttpError::Body { url, source } => {
                write!(
                    f,
                    "POST {url}: reading the answer: {}",
                    redact(&source.to_string())
                )
            }
        }
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HttpError::Send { source, .. } | HttpError::Body { source, .. } => Some(source),
            HttpError::WorkerGone | HttpError::NoAnswer { .. } => None,
        }
    }
}

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
        self.tx
            .send((id, req))
            .await
            .map_err(|_| HttpError::WorkerGone)?;
        // Five phases each bounded by `timeout`: the worker answers well within this, unless
        // name resolution (which has no timeout of its own) hangs.
        let limit = self.timeout * 6;
        smol::future::or(
            async {
                loop {
                    match self.rx.recv().await {
                        Ok((n, reply)) if n == id => return reply,
                        Ok(_) => continue,
                        Err(_) => return Err(HttpError::WorkerGone),
                    }
                }
            },
            async {
                smol::Timer::after(limit).await;
                Err(HttpError::NoAnswer { after: limit })
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
    let mut resp = r.send(&req.body[..]).map_err(|source| HttpError::Send {
        url: req.url.clone(),
        source,
    })?;
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
        .map_err(|source| HttpError::Body {
            url: req.url.clone(),
            source,
        })?;
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

    /// A one-connection server on loopback that reads one request and writes `answer` (or
    /// nothing, holding the connection until the test ends); `None` for a closed port.
    fn server(answer: Option<&'static [u8]>) -> (String, Option<std::thread::JoinHandle<()>>) {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/x", l.local_addr().unwrap());
        let Some(answer) = answer else {
            return (url, None); // dropped: the port refuses connections
        };
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0; 4096];
            // The head, then the 4-byte body the test sends.
            while !req.windows(4).any(|w| w == b"\r\n\r\n") || !req.ends_with(b"body") {
                let n = c.read(&mut buf).unwrap();
                assert!(n > 0, "the client went away");
                req.extend_from_slice(&buf[..n]);
            }
            if answer.is_empty() {
                let _ = c.read(&mut buf); // until the client gives up
            } else {
                c.write_all(answer).unwrap();
            }
        });
        (url, Some(t))
    }

    fn post(url: &str) -> Reply {
        let c = Client::new("test-http", Duration::from_millis(300), None).unwrap();
        smol::block_on(c.post(Request {
            url: url.to_string(),
            content_type: "text/plain",
            authorization: None,
            headers: Vec::new(),
            body: b"body".to_vec(),
        }))
    }

    /// No answer, each way it happens, is its own variant with ureq's error as `source()`.
    #[test]
    fn failures_are_typed_with_their_source() {
        use std::error::Error;
        let ureq_of = |e: &HttpError| {
            e.source()
                .and_then(|s| s.downcast_ref::<ureq::Error>())
                .map(|u| u.to_string())
        };
        // Refused.
        let (url, _) = server(None);
        let e = post(&url).unwrap_err();
        assert!(
            matches!(&e, HttpError::Send { url: u, .. } if *u == url),
            "{e:?}"
        );
        assert!(ureq_of(&e).is_some(), "{e:?}");
        assert!(e.to_string().starts_with(&format!("POST {url}: ")), "{e}");
        // Accepted, never answered: the receive timeout.
        let (url, t) = server(Some(b""));
        let e = post(&url).unwrap_err();
        match &e {
            HttpError::Send { source, .. } => {
                assert!(matches!(source, ureq::Error::Timeout(_)), "{source:?}")
            }
            other => panic!("{other:?}"),
        }
        t.unwrap().join().unwrap();
        // An answer whose body is cut short.
        let (url, t) = server(Some(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"));
        let e = post(&url).unwrap_err();
        assert!(matches!(&e, HttpError::Body { .. }), "{e:?}");
        assert!(ureq_of(&e).is_some(), "{e:?}");
        assert!(e.to_string().contains("reading the answer"), "{e}");
        t.unwrap().join().unwrap();
        // And an answer is an answer, whatever its status.
        let (url, t) = server(Some(b"HTTP/1.1 503 Busy\r\nContent-Length: 2\r\n\r\nno"));
        let r = post(&url).unwrap();
        assert_eq!((r.status, &r.body[..]), (503, &b"no"[..]));
        t.unwrap().join().unwrap();
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
