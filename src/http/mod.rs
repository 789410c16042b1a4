//! HTTP/1.1 POSTs on the pipeline thread: tailbeat's own client, over async-io's
//! `Async<TcpStream>` as the MQTT connection is, with TLS through futures-rustls for
//! `https://` (the `tls` feature, `crate::tls::client_config` as for `mqtts://`).
//!
//! Owns the connections of one HTTP peer (the HTTP sink, the ConfigServer client): each
//! makes a [`Client`]. It must not block: a request waits on the reactor like every other
//! task, so a slow server never stops tailing, and no thread is started for it.
//!
//! What always holds:
//! - **Keep-alive, one idle connection per client.** After an answer whose end was announced
//!   (a length, or chunked) and that did not say `Connection: close`, the connection is kept
//!   for the next request to the same scheme, host and port; any other answer, and any
//!   failure, drops it. An idle connection on which anything arrived (bytes the last answer
//!   did not announce, or the server's close) is dropped before use.
//! - **One retry, and only one kind.** A POST is not idempotent, so a request that may have
//!   reached the server is never sent again here: the caller decides (the sink retries
//!   with backoff and receivers drop repeats by `X-Tailbeat-Seq`; the fleet's requests
//!   repeat by design). The exception is a *reused* connection that fails before a single
//!   byte of answer — a write error, a reset, or the end — which is what a server's idle
//!   timeout closing the connection while our request is in flight looks like: that request
//!   is sent once more on a fresh connection. It does not widen what the caller already
//!   accepts (a request whose answer was lost), and without it every request after a
//!   server's keep-alive timeout would fail and wait a backoff. A fresh connection that
//!   fails, a timeout (the server may be working on it), or a failure after answer bytes
//!   (it did work on it) is returned as it is.
//! - **Per-phase timeouts**, each `timeout` on the monotonic clock (async-io's timers):
//!   connect (TCP and TLS handshake, all addresses), send (head and body), head (from the
//!   end of the send to the end of the answer's head), body (from there to its end). A
//!   server that trickles a byte a second still meets the phase's limit.
//! - **Bounded answers.** The answer is read by [`response::Parser`], a state machine fed
//!   bytes with no I/O (unit-tested, and fuzzed by `fuzz/fuzz_targets/http_response.rs`):
//!   its head by `httparse`, bodies by `Content-Length`, chunked (extensions and trailers
//!   ignored) or to the end of the connection, at most [`MAX_BODY`]; a server that closes
//!   early or sends more than it announced is a [`HttpError::Answer`], and the connection
//!   is not reused. `Retry-After` is read when in seconds.
//! - **Name resolution** is `to_socket_addrs` on the pipeline thread, as for MQTT brokers:
//!   an IP literal costs nothing, a name blocks the thread for as long as the system
//!   resolver takes (it has no timeout of its own; `/etc/hosts` and a local cache answer
//!   at once). Every address is tried in order within the connect timeout.
//! - **No secret in a message**: the `Authorization` value is a [`Secret`] written only
//!   into the request head; URLs cannot hold credentials (the config refuses them, and so
//!   does [`Client::post`]); errors never quote the request.

mod conn;
pub mod response;

use crate::config::Secret;
use conn::Conn;
use response::Parser;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Async;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// One POST.
#[derive(Debug)]
pub struct Request {
    /// Absolute `http://` or `https://` URL.
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

/// A phase of a request, each with its own timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TCP connect and TLS handshake.
    Connect,
    /// Writing the request.
    Send,
    /// Waiting for and reading the answer's head.
    Head,
    /// Reading the answer's body.
    Body,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connecting",
            Phase::Send => "sending the request",
            Phase::Head => "waiting for the answer",
            Phase::Body => "reading the answer's body",
        })
    }
}

/// A request that got no HTTP answer (any answer, 4xx and 5xx included, is a [`Response`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum HttpError {
    /// A URL this client cannot use (credentials in it are shown as `***`).
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A header value with a line break in it (it would start a header of its own).
    Header {
        /// The header's name (its value is not shown: it may be a credential).
        name: &'static str,
    },
    /// The host name did not resolve.
    Resolve {
        /// The name.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// A phase did not finish within the timeout.
    Timeout {
        /// Where the POST went.
        url: String,
        /// The phase.
        phase: Phase,
        /// The timeout.
        after: Duration,
    },
    /// The connection failed in a phase: refused, reset, unreachable.
    Io {
        /// Where the POST went.
        url: String,
        /// The phase.
        phase: Phase,
        /// The socket's error.
        source: io::Error,
    },
    /// The TLS handshake failed (the certificate, the protocol); `source` holds rustls's
    /// error.
    Tls {
        /// Where the POST went.
        url: String,
        /// futures-rustls's error.
        source: io::Error,
    },
    /// The answer was not one: a broken head, cut short, longer than announced, too large.
    Answer {
        /// Where the POST went.
        url: String,
        /// What the parser saw.
        source: response::ParseError,
    },
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Url { url, reason } => write!(f, "{url}: {reason}"),
            HttpError::Header { name } => {
                write!(f, "the {name} header's value holds a line break")
            }
            HttpError::Resolve { host, source } => write!(f, "resolve {host}: {source}"),
            HttpError::Timeout { url, phase, after } => {
                write!(
                    f,
                    "POST {url}: timed out {phase} ({} ms)",
                    after.as_millis()
                )
            }
            HttpError::Io { url, phase, source } => write!(f, "POST {url}: {phase}: {source}"),
            HttpError::Tls { url, source } => write!(f, "POST {url}: TLS handshake: {source}"),
            HttpError::Answer { url, source } => {
                write!(f, "POST {url}: reading the answer: {source}")
            }
        }
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HttpError::Resolve { source, .. }
            | HttpError::Io { source, .. }
            | HttpError::Tls { source, .. } => Some(source),
            HttpError::Answer { source, .. } => Some(source),
            HttpError::Url { .. } | HttpError::Header { .. } | HttpError::Timeout { .. } => None,
        }
    }
}

/// Where a connection goes: requests to the same origin share it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    tls: bool,
    /// Without brackets for IPv6.
    host: String,
    port: u16,
}

/// A URL taken apart.
#[derive(Debug, PartialEq, Eq)]
struct Target<'a> {
    origin: Origin,
    /// `host[:port]` as written: the `Host` header.
    authority: &'a str,
    /// Path and query, `/` when empty.
    path: String,
}

impl<'a> Target<'a> {
    fn parse(url: &'a str) -> Result<Target<'a>, &'static str> {
        let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(r), _) => (false, r),
            (_, Some(r)) => (true, r),
            _ => return Err("not an http:// or https:// URL"),
        };
        let rest = rest.split('#').next().unwrap_or("");
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.contains('@') {
            return Err("a URL must not hold credentials");
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(r) => match r.split_once(']') {
                Some((h, "")) => (h, None),
                Some((h, p)) => (h, Some(p.strip_prefix(':').ok_or("bad port")?)),
                None => return Err("no closing ] in the host"),
            },
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err("no host");
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| "bad port")?,
            None if tls => 443,
            None => 80,
        };
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("a space or control character in the path");
        }
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        Ok(Target {
            origin: Origin {
                tls,
                host: host.to_string(),
                port,
            },
            authority,
            path,
        })
    }
}

/// The request head: the request line, then `Host`, `User-Agent`, `Content-Type`,
/// `Content-Length`, `Authorization` and the caller's headers.
fn request_head(t: &Target<'_>, req: &Request) -> Result<Vec<u8>, HttpError> {
    let mut h = Vec::with_capacity(256);
    // Writes to a Vec cannot fail.
    let _ = write!(
        h,
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tailbeat/{}\r\nContent-Type: {}\r\n\
         Content-Length: {}\r\n",
        t.path,
        t.authority,
        env!("CARGO_PKG_VERSION"),
        req.content_type,
        req.body.len()
    );
    let auth = req
        .authorization
        .as_ref()
        .map(|a| ("Authorization", a.expose()));
    let others = req.headers.iter().map(|(k, v)| (*k, v.as_str()));
    for (name, value) in auth.into_iter().chain(others) {
        if value.contains(['\r', '\n', '\0']) {
            return Err(HttpError::Header { name });
        }
        let _ = write!(h, "{name}: {value}\r\n");
    }
    h.extend_from_slice(b"\r\n");
    Ok(h)
}

/// `f`, or `None` once `deadline` passes.
async fn until<T>(
    deadline: Instant,
    f: impl Future<Output = io::Result<T>>,
) -> Option<io::Result<T>> {
    smol::future::or(async { Some(f.await) }, async {
        smol::Timer::at(deadline).await;
        None
    })
    .await
}

/// A request that failed, and whether it may go once more on a fresh connection (see the
/// module doc: no answer byte, and not a timeout).
struct Failed {
    error: HttpError,
    retry: bool,
}

/// One HTTP peer's client: its settings and its one idle connection.
#[derive(Debug)]
pub struct Client {
    /// Who uses it, for the log.
    name: String,
    /// Each phase's limit.
    timeout: Duration,
    /// For `https://`: made once per client, so that TLS sessions resume across
    /// connections; the files are read again when the config is (a new client).
    #[cfg(feature = "tls")]
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// The kept-alive connection; `None` while a request has it, or when there is none.
    idle: RefCell<Option<(Origin, Conn)>>,
}

impl Client {
    /// A client named `name` (in the log) whose every phase (connect, send, head, body)
    /// times out after `timeout`, with TLS settings `tls` for `https://` URLs (`None`: no
    /// https URL). Nothing connects yet; TLS files are read now, and their errors returned.
    pub fn new(
        name: &str,
        timeout: Duration,
        tls: Option<&crate::config::Tls>,
    ) -> Result<Client, String> {
        #[cfg(feature = "tls")]
        let tls = tls.map(crate::tls::client_config).transpose()?;
        #[cfg(not(feature = "tls"))]
        if tls.is_some() {
            return Err("https:// needs the tls feature".into());
        }
        Ok(Client {
            name: name.to_string(),
            timeout,
            #[cfg(feature = "tls")]
            tls,
            idle: RefCell::new(None),
        })
    }

    /// Sends `req` and waits for the answer; see the module doc for the connection kept,
    /// the one retry and the timeouts. Dropping the future drops its connection.
    pub async fn post(&self, req: Request) -> Result<Response, HttpError> {
        let t = Target::parse(&req.url).map_err(|reason| HttpError::Url {
            url: redact(&req.url),
            reason,
        })?;
        let head = request_head(&t, &req)?;
        // Taken out for the request: a request abandoned half-way drops it with its future.
        let idle = self.idle.borrow_mut().take();
        if let Some((origin, conn)) = idle {
            if origin == t.origin && conn.idle_and_open() {
                match self.exchange(conn, &req.url, &head, &req.body).await {
                    Err(f) if f.retry => log::debug!(
                        "{}: {}; once more on a new connection (the kept-alive one had closed)",
                        self.name,
                        f.error
                    ),
                    r => return self.settle(t.origin, r),
                }
            } else {
                log::debug!("{}: not reusing the idle connection", self.name);
            }
        }
        let conn = self.connect(&t, &req.url).await?;
        let r = self.exchange(conn, &req.url, &head, &req.body).await;
        self.settle(t.origin, r)
    }

    fn settle(
        &self,
        origin: Origin,
        r: Result<(Response, Option<Conn>), Failed>,
    ) -> Result<Response, HttpError> {
        let (resp, keep) = r.map_err(|f| f.error)?;
        if let Some(conn) = keep {
            *self.idle.borrow_mut() = Some((origin, conn));
        }
        Ok(resp)
    }

    async fn connect(&self, t: &Target<'_>, url: &str) -> Result<Conn, HttpError> {
        let deadline = Instant::now() + self.timeout;
        let timeout = || HttpError::Timeout {
            url: url.to_string(),
            phase: Phase::Connect,
            after: self.timeout,
        };
        let host = t.origin.host.as_str();
        let addrs: Vec<SocketAddr> = (host, t.origin.port)
            .to_socket_addrs()
            .map_err(|source| HttpError::Resolve {
                host: host.to_string(),
                source,
            })?
            .collect();
        let mut failed = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
        let mut stream = None;
        for addr in addrs {
            // async-io's connect, not async-net's: that one resolves names on a blocking
            // thread pool, which a resolved address does not need.
            match until(deadline, Async::<TcpStream>::connect(addr)).await {
                None => return Err(timeout()),
                Some(Ok(s)) => {
                    stream = Some(s);
                    break;
                }
                Some(Err(e)) => failed = e,
            }
        }
        let stream = stream.ok_or_else(|| HttpError::Io {
            url: url.to_string(),
            phase: Phase::Connect,
            source: failed,
        })?;
        // Head and body go in two writes; Nagle would hold the body for the head's ACK.
        stream.get_ref().set_nodelay(true).ok();
        if !t.origin.tls {
            return Ok(Conn::Plain(stream));
        }
        let no_tls = |reason| HttpError::Url {
            url: url.to_string(),
            reason,
        };
        #[cfg(feature = "tls")]
        {
            let config = self
                .tls
                .clone()
                .ok_or_else(|| no_tls("an https:// URL, but the client was made for http://"))?;
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|_| no_tls("the host is not a TLS server name"))?;
            let connect = futures_rustls::TlsConnector::from(config).connect(name, stream);
            match until(deadline, connect).await {
                None => Err(timeout()),
                Some(Err(source)) => Err(HttpError::Tls {
                    url: url.to_string(),
                    source,
                }),
                Some(Ok(s)) => Ok(Conn::Tls(Box::new(s))),
            }
        }
        #[cfg(not(feature = "tls"))]
        Err(no_tls("https:// needs the tls feature"))
    }

    /// One request and its answer on `conn`; the connection back if it may be reused.
    async fn exchange(
        &self,
        mut conn: Conn,
        url: &str,
        head: &[u8],
        body: &[u8],
    ) -> Result<(Response, Option<Conn>), Failed> {
        let after = self.timeout;
        let timeout = |phase| Failed {
            error: HttpError::Timeout {
                url: url.to_string(),
                phase,
                after,
            },
            retry: false,
        };
        let io = |phase, source, retry| Failed {
            error: HttpError::Io {
                url: url.to_string(),
                phase,
                source,
            },
            retry,
        };
        let send = async {
            conn.write_all(head).await?;
            conn.write_all(body).await?;
            conn.flush().await
        };
        match until(Instant::now() + after, send).await {
            None => return Err(timeout(Phase::Send)),
            Some(Err(e)) => return Err(io(Phase::Send, e, true)),
            Some(Ok(())) => {}
        }
        let mut parser = Parser::new();
        let mut buf = vec![0u8; 8 << 10];
        let mut received = 0u64;
        let mut phase = Phase::Head;
        let mut deadline = Instant::now() + after;
        let answer = |source, received| Failed {
            error: HttpError::Answer {
                url: url.to_string(),
                source,
            },
            retry: received == 0,
        };
        let to_eof = loop {
            let n = match until(deadline, conn.read(&mut buf)).await {
                None => return Err(timeout(phase)),
                Some(Err(e)) => return Err(io(phase, e, received == 0)),
                Some(Ok(n)) => n,
            };
            if n == 0 {
                parser.eof().map_err(|e| answer(e, received))?;
                break true;
            }
            received += n as u64;
            if parser.feed(&buf[..n]).map_err(|e| answer(e, received))? {
                break false;
            }
            if phase == Phase::Head && parser.in_body() {
                phase = Phase::Body;
                deadline = Instant::now() + after;
            } else if Instant::now() >= deadline {
                // A read that is always ready never lets the timer above win the race.
                return Err(timeout(phase));
            }
            // Nor would it let the executor run anything else (tailing, the other sinks,
            // signals) while a server streams bytes as fast as it can.
            smol::future::yield_now().await;
        };
        let a = parser.answer().expect("complete: fed to the end or to EOF");
        let keep = (a.keep_alive && !to_eof).then_some(conn);
        Ok((
            Response {
                status: a.status,
                retry_after: a.retry_after,
                body: a.body,
            },
            keep,
        ))
    }
}

/// `user:password@` in a URL shown as `***@` (the config refuses such URLs; a caller
/// might not).
fn redact(url: &str) -> String {
    let end = url
        .find("://")
        .map(|s| s + 3)
        .and_then(|s| url[s..].find(['/', '?', '#']).map(|e| s + e))
        .unwrap_or(url.len());
    match (url.find("://"), url[..end].rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_string(),
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
mod tests;
