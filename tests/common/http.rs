//! A real HTTP/1.1 server on loopback for the tests: keep-alive, Content-Length bodies, a
//! handler that decides each answer (status, headers, body, or a stall), every request
//! recorded, and a real stop (listener and connections closed) and restart on the same port.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Req {
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

/// What to answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering (a stalled server).
    pub stall: Option<Duration>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            stall: None,
        }
    }
    pub fn ok(body: Vec<u8>) -> Reply {
        Reply {
            body,
            ..Reply::status(200)
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
}

pub type Handler = Box<dyn FnMut(&Req) -> Reply + Send>;

struct Shared {
    handler: Handler,
    requests: Vec<Req>,
}

pub struct HttpServer {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    pub fn start(handler: Handler) -> HttpServer {
        let mut s = HttpServer {
            addr: "127.0.0.1:0".parse().unwrap(),
            shared: Arc::new(Mutex::new(Shared {
                handler,
                requests: Vec::new(),
            })),
            stop: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
            thread: None,
        };
        s.listen();
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn listen(&mut self) {
        // A restart binds the port it had. Between the stop and now, the port is free for
        // anyone: another test's connection may have taken it as its own local port for a
        // while. Wait for it (std sets SO_REUSEADDR, so TIME_WAIT is no obstacle).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let l = loop {
            match TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                Err(e) => panic!("test HTTP server: cannot listen on {}: {e}", self.addr),
            }
        };
        self.addr = l.local_addr().unwrap();
        self.stop.store(false, Ordering::SeqCst);
        let (shared, stop, conns) = (self.shared.clone(), self.stop.clone(), self.conns.clone());
        self.thread = Some(std::thread::spawn(move || {
            for c in l.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(c) = c else { continue };
                conns.lock().unwrap().push(c.try_clone().unwrap());
                let (shared, stop) = (shared.clone(), stop.clone());
                std::thread::spawn(move || serve(c, shared, stop));
            }
        }));
    }

    /// Stops listening and closes every connection: the agent sees connection refused.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Listens again on the same port.
    pub fn restart(&mut self) {
        self.listen();
    }

    pub fn set_handler(&self, h: Handler) {
        self.shared.lock().unwrap().handler = h;
    }

    pub fn requests(&self) -> Vec<Req> {
        self.shared.lock().unwrap().requests.clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Req> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until some request satisfies `f`; returns it.
    pub fn wait_for(&self, secs: u64, f: impl Fn(&Req) -> bool) -> Option<Req> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Some(r) = self.requests().into_iter().find(|r| f(r)) {
                return Some(r);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(c: TcpStream, shared: Arc<Mutex<Shared>>, stop: Arc<AtomicBool>) {
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || stop.load(Ordering::SeqCst) {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let req = Req {
            path,
            headers,
            body,
            at: Instant::now(),
        };
        let reply = {
            let mut s = shared.lock().unwrap();
            s.requests.push(req.clone());
            (s.handler)(&req)
        };
        if let Some(d) = reply.stall {
            std::thread::sleep(d);
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let mut out = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
            reply.status,
            reply.body.len()
        );
        for (k, v) in &reply.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&reply.body);
        if w.write_all(&bytes).is_err() {
            return;
        }
    }
}

/// A real nginx (Debian's `nginx-light`) as a reverse proxy in front of `upstream` on
/// loopback, with `client_max_body_size` set to `max_body`: it answers 413 to a larger body
/// itself, from the request's head, and closes the connection, as a device's users meet it.
/// `None` when nginx is not installed and `TAILBEAT_TEST_NGINX` is not set (CI sets it, and
/// installs nginx): then the caller says so and skips.
pub struct Nginx {
    child: std::process::Child,
    pub addr: SocketAddr,
}

impl Nginx {
    pub fn start(dir: &std::path::Path, upstream: SocketAddr, max_body: &str) -> Option<Nginx> {
        let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let bin = match bin {
            Some(b) => b,
            None if std::env::var_os("TAILBEAT_TEST_NGINX").is_some() => {
                panic!(
                    "TAILBEAT_TEST_NGINX is set but nginx is missing (apt-get install nginx-light)"
                )
            }
            None => return None,
        };
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n access_log {d}/access.log;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
             server {{\n  listen 127.0.0.1:{port};\n  client_max_body_size {max_body};\n\
             location / {{ proxy_pass http://{upstream}; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n }}\n}}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = std::process::Command::new(bin)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx does not start");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "nginx did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Nginx { child, addr })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
