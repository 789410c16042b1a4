//! The client against real servers on 127.0.0.1: a scripted raw TCP server for the edge
//! cases, and python3's `http.server`.

use super::response::{ParseError, Part};
use super::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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
fn urls_are_taken_apart_and_credentials_refused() {
    let t = Target::parse("http://[::1]:8080?q=1#frag").unwrap();
    assert_eq!(
        (
            t.origin.host.as_str(),
            t.origin.port,
            t.authority,
            &t.path[..]
        ),
        ("::1", 8080, "[::1]:8080", "/?q=1")
    );
    let t = Target::parse("https://fleet.example/a/b").unwrap();
    assert_eq!(
        (t.origin.tls, t.origin.port, &t.path[..]),
        (true, 443, "/a/b")
    );
    assert_eq!(Target::parse("http://h").unwrap().path, "/");
    for bad in [
        "ftp://h/",
        "http://:80/",
        "http://h:x/",
        "http://h/a b",
        "http://u:p@h/",
    ] {
        assert!(Target::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(
        redact("http://u:secret@127.0.0.1:1/x@y"),
        "http://***@127.0.0.1:1/x@y"
    );
    assert_eq!(redact("http://h/x@y"), "http://h/x@y");
    let e = smol::block_on(client(300).post(req("http://u:secret@127.0.0.1:1/"))).unwrap_err();
    assert!(matches!(e, HttpError::Url { .. }), "{e:?}");
    assert!(!format!("{e} {e:?}").contains("secret"), "{e:?}");
}

#[test]
fn a_header_cannot_smuggle_another() {
    let mut r = req("http://127.0.0.1:1/");
    r.authorization = Some(Secret::new("Bearer x\r\nX-Evil: 1"));
    let e = smol::block_on(client(300).post(r)).unwrap_err();
    assert!(
        matches!(
            e,
            HttpError::Header {
                name: "Authorization"
            }
        ),
        "{e:?}"
    );
    assert!(!format!("{e} {e:?}").contains("Evil"), "{e:?}");
}

/// What the scripted server does with each request on a connection.
#[derive(Clone, Copy)]
enum Step {
    /// Writes these bytes and waits for the next request on the connection (after the
    /// last step, keeps the connection open and unread until the server ends).
    Answer(&'static [u8]),
    /// Writes these bytes and closes.
    AnswerClose(&'static [u8]),
    /// Closes without a byte of answer.
    Drop,
    /// Never answers; waits until the client goes.
    Hold,
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A server on loopback that accepts one connection per entry of `script`, in order, and
/// plays its steps; then stops listening. Counts connections accepted and requests read.
struct Scripted {
    url: String,
    accepted: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scripted {
    fn start(script: Vec<Vec<Step>>) -> Scripted {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ingest", l.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (a, r) = (accepted.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for steps in script {
                let (mut c, _) = l.accept().unwrap();
                a.fetch_add(1, Ordering::SeqCst);
                let mut reader = BufReader::new(c.try_clone().unwrap());
                let mut keep = true;
                for step in steps {
                    if !read_request(&mut reader) {
                        keep = false;
                        break;
                    }
                    r.fetch_add(1, Ordering::SeqCst);
                    match step {
                        Step::Answer(b) => c.write_all(b).unwrap(),
                        Step::AnswerClose(b) => {
                            c.write_all(b).unwrap();
                            keep = false;
                            break;
                        }
                        Step::Drop => {
                            keep = false;
                            break;
                        }
                        Step::Hold => {
                            let _ = reader.read_to_end(&mut Vec::new());
                            keep = false;
                            break;
                        }
                    }
                }
                if keep {
                    held.push(c);
                }
            }
        });
        Scripted {
            url,
            accepted,
            requests,
            thread: Some(thread),
        }
    }

    /// Waits for the script to end; (connections accepted, requests read).
    fn counts(mut self) -> (usize, usize) {
        self.thread.take().unwrap().join().unwrap();
        (
            self.accepted.load(Ordering::SeqCst),
            self.requests.load(Ordering::SeqCst),
        )
    }
}

/// Reads one request (head, then a `Content-Length` body); false at the end.
fn read_request(r: &mut impl BufRead) -> bool {
    let mut len = 0;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return false;
        }
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).is_ok()
}

fn client(timeout_ms: u64) -> Client {
    Client::new("test-http", Duration::from_millis(timeout_ms), None).unwrap()
}

fn req(url: &str) -> Request {
    Request {
        url: url.to_string(),
        content_type: "text/plain",
        authorization: Some(Secret::new("Bearer hunter2")),
        headers: vec![("X-Test", "1".into())],
        body: b"body".to_vec(),
    }
}

fn post(c: &Client, url: &str) -> Result<Response, HttpError> {
    smol::block_on(c.post(req(url)))
}

fn answer_error(e: &HttpError) -> &ParseError {
    match e {
        HttpError::Answer { source, .. } => source,
        other => panic!("{other:?}"),
    }
}

#[test]
fn kept_alive_connection_carries_every_request() {
    let chunked: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        2;x=y\r\nch\r\n0\r\nX-Trailer: t\r\n\r\n";
    let cont: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\nRetry-After: 3\r\n\
        Content-Length: 0\r\n\r\n";
    let srv = Scripted::start(vec![vec![
        Step::Answer(OK),
        Step::Answer(chunked),
        Step::Answer(cont),
    ]]);
    let c = client(2000);
    let r = post(&c, &srv.url).unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
    // Were the connection not reused, this request would wait in the listen backlog of a
    // server that accepts no more, and time out.
    let r = post(&c, &srv.url).unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"ch"[..]));
    let r = post(&c, &srv.url).unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.retry_after, Some(Duration::from_secs(3)));
    drop(c);
    assert_eq!(srv.counts(), (1, 3));
}

#[test]
fn connection_close_is_honoured() {
    // The server says close but leaves the socket open: only the header tells.
    let close: &[u8] = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok";
    let srv = Scripted::start(vec![vec![Step::Answer(close)], vec![Step::Answer(OK)]]);
    let c = client(2000);
    post(&c, &srv.url).unwrap();
    post(&c, &srv.url).unwrap();
    drop(c);
    assert_eq!(srv.counts(), (2, 2));
}

#[test]
fn an_answer_without_length_runs_to_the_close_and_is_not_reused() {
    let srv = Scripted::start(vec![
        vec![Step::AnswerClose(b"HTTP/1.1 200 OK\r\n\r\nto the end")],
        vec![Step::Answer(OK)],
    ]);
    let c = client(2000);
    assert_eq!(post(&c, &srv.url).unwrap().body, b"to the end");
    post(&c, &srv.url).unwrap();
    assert_eq!(srv.counts(), (2, 2));
}

#[test]
fn a_server_closing_its_idle_connection_costs_no_request() {
    // Closed between requests (seen on the idle connection, or found by the request).
    let srv = Scripted::start(vec![vec![Step::AnswerClose(OK)], vec![Step::Answer(OK)]]);
    let c = client(2000);
    post(&c, &srv.url).unwrap();
    post(&c, &srv.url).unwrap();
    drop(c);
    assert_eq!(srv.counts(), (2, 2));
    // Closed as the request arrives (the race of a keep-alive timeout): the request is
    // sent again, once, on a new connection.
    let srv = Scripted::start(vec![
        vec![Step::Answer(OK), Step::Drop],
        vec![Step::Answer(OK)],
    ]);
    let c = client(2000);
    post(&c, &srv.url).unwrap();
    assert_eq!(post(&c, &srv.url).unwrap().body, b"ok");
    drop(c);
    assert_eq!(srv.counts(), (2, 3));
}

#[test]
fn a_fresh_connection_that_fails_is_not_retried() {
    let srv = Scripted::start(vec![vec![Step::Drop]]);
    let url = srv.url.clone();
    let e = post(&client(2000), &url).unwrap_err();
    assert_eq!(
        answer_error(&e),
        &ParseError::Closed {
            part: Part::Head,
            received: 0,
            announced: None
        }
    );
    assert_eq!(srv.counts(), (1, 1));
}

#[test]
fn a_server_that_closes_early_or_says_too_much_is_an_error() {
    let short: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    let long: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA";
    let srv = Scripted::start(vec![
        vec![Step::AnswerClose(short)],
        vec![Step::Answer(long)],
        vec![Step::Answer(OK)],
    ]);
    let c = client(2000);
    let e = post(&c, &srv.url).unwrap_err();
    assert_eq!(
        answer_error(&e),
        &ParseError::Closed {
            part: Part::Body,
            received: 3,
            announced: Some(10)
        }
    );
    assert!(e.to_string().contains("after 3 bytes of the body"), "{e}");
    let e = post(&c, &srv.url).unwrap_err();
    assert_eq!(answer_error(&e), &ParseError::Extra { bytes: 5 });
    // Not reused after that: the third request is the third connection.
    post(&c, &srv.url).unwrap();
    drop(c);
    assert_eq!(srv.counts(), (3, 3));
}

#[test]
fn each_phase_times_out() {
    use std::error::Error;
    let srv = Scripted::start(vec![vec![Step::Hold]]);
    let c = client(300);
    let started = Instant::now();
    let e = post(&c, &srv.url).unwrap_err();
    assert!(
        matches!(
            e,
            HttpError::Timeout {
                phase: Phase::Head,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(e.source().is_none());
    drop(c);
    // The body phase: an answer that starts and stops, the connection left open.
    let srv2 = Scripted::start(vec![vec![
        Step::Answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
        Step::Hold,
    ]]);
    let c = client(300);
    let e = post(&c, &srv2.url).unwrap_err();
    assert!(
        matches!(
            e,
            HttpError::Timeout {
                phase: Phase::Body,
                ..
            }
        ),
        "{e:?}"
    );
    drop(c);
    assert_eq!(srv.counts(), (1, 1));
    assert_eq!(srv2.counts(), (1, 1));
    // Refused: a connect error, with the socket's error as the source.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/x", l.local_addr().unwrap());
    drop(l);
    let e = post(&client(300), &url).unwrap_err();
    assert!(
        matches!(&e, HttpError::Io { phase: Phase::Connect, source, .. }
            if source.kind() == io::ErrorKind::ConnectionRefused),
        "{e:?}"
    );
    assert!(e.source().is_some());
    assert!(
        e.to_string()
            .starts_with(&format!("POST {url}: connecting: ")),
        "{e}"
    );
}

/// A server that answers `100 Continue` for ever, as fast as it can (a tester's: the agent
/// spun on one core for 7 to 40 s past a 3 s timeout, everything else on its thread
/// stopped). The interim heads count toward the answer head's limit: the request fails at
/// once, with an error that says so, and the connection is not kept.
#[test]
fn a_server_sending_100_continue_for_ever_is_an_error_at_once() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ingest", l.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        assert!(read_request(&mut BufReader::new(c.try_clone().unwrap())));
        while c.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_ok() {}
    });
    let c = client(3000);
    let started = Instant::now();
    let e = post(&c, &url).unwrap_err();
    assert!(
        matches!(answer_error(&e), ParseError::TooLong { .. }),
        "{e:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2), "{e}");
    drop(c);
    server.join().unwrap();
}

/// python3's `http.server`, one connection at a time (so a second request on a new
/// connection while the first is open would wait): it answers with the client's port, so
/// a reused connection shows.
const PYTHON_SERVER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        out = ("%d %s %s" % (self.client_address[1], self.headers["Authorization"], body.decode())).encode()
        self.send_response(200)
        if self.path == "/chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x;ext=1\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (len(out), out))
            return
        if self.path == "/close":
            self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

struct Python(std::process::Child);

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn python_http_server_round_trips_on_one_connection() {
    let mut child = std::process::Command::new("python3")
        .args(["-c", PYTHON_SERVER])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (apt install python3) runs the real HTTP server of this test");
    let out = child.stdout.take().unwrap();
    let py = Python(child);
    let mut port = String::new();
    BufReader::new(out).read_line(&mut port).unwrap();
    let base = format!("http://127.0.0.1:{}", port.trim());
    let c = client(5000);
    let answer = |path: &str| {
        let r = post(&c, &format!("{base}{path}")).unwrap();
        assert_eq!(r.status, 200);
        let text = String::from_utf8(r.body).unwrap();
        let (port, rest) = text.split_once(' ').unwrap();
        assert_eq!(rest, "Bearer hunter2 body");
        port.parse::<u16>().unwrap()
    };
    let first = answer("/a");
    assert_eq!(answer("/chunked"), first, "a new connection");
    assert_eq!(answer("/close"), first, "a new connection");
    let after_close = answer("/b");
    assert_ne!(after_close, first, "reused after Connection: close");
    assert_eq!(answer("/c"), after_close);
    drop(py);
}
