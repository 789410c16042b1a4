//! A ConfigServer (protocol v2) test double over the test HTTP server.
//!
//! It decodes every request with its own protobuf reader (not tailbeat's), checks the
//! messages' shape, records them, and answers as a server would: config updates for every
//! served config whose version differs from what the agent last reported, full state when
//! asked to, and scripted failures (CommonResponse status, HTTP status, stalls, 404 on the
//! status endpoints).

use super::http::{HttpServer, Reply, Req};
use super::{append, input, line, Scratch};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---- a protobuf reader and writer of its own ----

#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Int(u64),
    Bytes(Vec<u8>),
}

fn varint(b: &[u8], i: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = b[*i];
        *i += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return v;
        }
    }
}

/// Every field of a message; panics on anything but varint and length-delimited fields,
/// which is all protocol v2 uses.
pub fn fields(b: &[u8]) -> Vec<(u32, Val)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i);
        let v = match key & 7 {
            0 => Val::Int(varint(b, &mut i)),
            2 => {
                let n = varint(b, &mut i) as usize;
                i += n;
                Val::Bytes(b[i - n..i].to_vec())
            }
            w => panic!("wire type {w} in {b:02x?}"),
        };
        out.push(((key >> 3) as u32, v));
    }
    out
}

fn int(fs: &[(u32, Val)], n: u32) -> u64 {
    fs.iter()
        .rev()
        .find_map(|(f, v)| match v {
            Val::Int(x) if *f == n => Some(*x),
            _ => None,
        })
        .unwrap_or(0)
}

fn bytes(fs: &[(u32, Val)], n: u32) -> Vec<u8> {
    fs.iter()
        .rev()
        .find_map(|(f, v)| match v {
            Val::Bytes(x) if *f == n => Some(x.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

pub fn all(fs: &[(u32, Val)], n: u32) -> Vec<Vec<u8>> {
    fs.iter()
        .filter_map(|(f, v)| match v {
            Val::Bytes(x) if *f == n => Some(x.clone()),
            _ => None,
        })
        .collect()
}

fn string(fs: &[(u32, Val)], n: u32) -> String {
    String::from_utf8(bytes(fs, n)).expect("UTF-8 string field")
}

#[derive(Default)]
pub struct W(pub Vec<u8>);

impl W {
    fn v(&mut self, x: u64) {
        let mut x = x;
        while x >= 0x80 {
            self.0.push(x as u8 | 0x80);
            x >>= 7;
        }
        self.0.push(x as u8);
    }
    pub fn int(mut self, f: u32, x: u64) -> W {
        self.v((f as u64) << 3);
        self.v(x);
        self
    }
    pub fn bytes(mut self, f: u32, b: &[u8]) -> W {
        self.v((f as u64) << 3 | 2);
        self.v(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
}

// ---- the messages ----

#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    pub name: String,
    pub version: i64,
    pub status: u64,
    pub message: String,
}

pub const APPLYING: u64 = 1;
pub const APPLIED: u64 = 2;
pub const FAILED: u64 = 3;

pub fn info(b: &[u8]) -> Info {
    let fs = fields(b);
    Info {
        name: string(&fs, 1),
        version: int(&fs, 2) as i64,
        status: int(&fs, 3),
        message: string(&fs, 4),
    }
}

#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub at: Instant,
    pub request_id: Vec<u8>,
    pub seq: u64,
    pub capabilities: u64,
    pub instance_id: String,
    pub agent_type: String,
    /// version, ip, hostname, hostid, and every extra, by name.
    pub attrs: HashMap<String, String>,
    pub tags: Vec<(String, String)>,
    pub running_status: String,
    pub startup_time: i64,
    pub pipelines: Vec<Info>,
    pub instances: Vec<Info>,
    pub flags: u64,
}

impl Heartbeat {
    pub fn decode(b: &[u8]) -> Heartbeat {
        let fs = fields(b);
        let mut attrs = HashMap::new();
        let a = fields(&bytes(&fs, 6));
        for (n, k) in [(1, "version"), (2, "ip"), (3, "hostname"), (4, "hostid")] {
            let v = string(&a, n);
            if !v.is_empty() {
                attrs.insert(k.to_string(), v);
            }
        }
        for e in all(&a, 100) {
            let e = fields(&e);
            attrs.insert(string(&e, 1), string(&e, 2));
        }
        Heartbeat {
            at: Instant::now(),
            request_id: bytes(&fs, 1),
            seq: int(&fs, 2),
            capabilities: int(&fs, 3),
            instance_id: string(&fs, 4),
            agent_type: string(&fs, 5),
            attrs,
            tags: all(&fs, 7)
                .iter()
                .map(|t| {
                    let t = fields(t);
                    (string(&t, 1), string(&t, 2))
                })
                .collect(),
            running_status: string(&fs, 8),
            startup_time: int(&fs, 9) as i64,
            pipelines: all(&fs, 10).iter().map(|b| info(b)).collect(),
            instances: all(&fs, 11).iter().map(|b| info(b)).collect(),
            flags: int(&fs, 13),
        }
    }
    pub fn health(&self, key: &str) -> u64 {
        self.attrs[&format!("health.{key}")].parse().unwrap()
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub at: Instant,
    pub path: String,
    pub request_id: Vec<u8>,
    pub instance_id: String,
    pub infos: Vec<Info>,
}

/// A scripted answer to the next heartbeat.
#[derive(Debug, Clone)]
pub enum Fault {
    /// CommonResponse{status}.
    Status(i32),
    /// An HTTP error status.
    Http(u16),
    /// No answer for this long.
    Stall(Duration),
}

#[derive(Default)]
pub struct Cs {
    /// Served configs: name → (version, detail).
    pub pipelines: BTreeMap<String, (i64, Vec<u8>)>,
    pub instances: BTreeMap<String, (i64, Vec<u8>)>,
    /// Announce updates by name and version only; the agent must fetch the detail.
    pub fetch_mode: bool,
    /// Answer 404 on the status endpoints, as servers that predate them do.
    pub report_404: bool,
    /// Answers for the next heartbeats.
    pub faults: VecDeque<Fault>,
    /// Answer the heartbeat with this sequence number with ReportFullState.
    pub ask_full_state_at: Option<u64>,
    pub heartbeats: Vec<Heartbeat>,
    pub reports: Vec<Report>,
    pub fetches: Vec<(String, Vec<Info>)>,
    /// Versions the agent reported, by (kind, name): it gets an update when they differ.
    known: HashMap<(u8, String), i64>,
}

impl Cs {
    fn learn(&mut self, kind: u8, infos: &[Info]) {
        for i in infos {
            self.known.insert((kind, i.name.clone()), i.version);
        }
    }

    /// The update list of a heartbeat response.
    fn updates(&self, kind: u8) -> Vec<u8> {
        let set = if kind == 0 {
            &self.pipelines
        } else {
            &self.instances
        };
        let field = 4 + kind as u32;
        let mut out = W::default();
        for (name, (version, text)) in set {
            if self.known.get(&(kind, name.clone())) == Some(version) {
                continue;
            }
            let mut d = W::default()
                .bytes(1, name.as_bytes())
                .int(2, *version as u64);
            if !self.fetch_mode || *version == -1 {
                d = d.bytes(3, text);
            }
            out = out.bytes(field, &d.0);
        }
        out.0
    }

    fn handle(&mut self, r: &Req) -> Reply {
        assert_eq!(r.headers["content-type"], "application/x-protobuf");
        let fs = fields(&r.body);
        let rid = bytes(&fs, 1);
        match r.path.as_str() {
            "/Agent/Heartbeat" => {
                let hb = Heartbeat::decode(&r.body);
                self.learn(0, &hb.pipelines);
                self.learn(1, &hb.instances);
                let seq = hb.seq;
                self.heartbeats.push(hb);
                match self.faults.pop_front() {
                    Some(Fault::Status(s)) => {
                        let common = W::default().int(1, s as u64).bytes(2, b"try later");
                        return Reply::ok(W::default().bytes(1, &rid).bytes(2, &common.0).0);
                    }
                    Some(Fault::Http(code)) => {
                        let common = W::default().int(1, 1).bytes(2, b"unavailable");
                        return Reply {
                            body: W::default().bytes(1, &rid).bytes(2, &common.0).0,
                            ..Reply::status(code)
                        };
                    }
                    Some(Fault::Stall(d)) => {
                        return Reply {
                            stall: Some(d),
                            ..Reply::ok(W::default().bytes(1, &rid).0)
                        }
                    }
                    None => {}
                }
                let mut flags = 0;
                if self.ask_full_state_at == Some(seq) {
                    flags |= 1;
                }
                let mut body = W::default().bytes(1, &rid).bytes(2, &[]).int(3, 7).0;
                for kind in [0u8, 1] {
                    let u = self.updates(kind);
                    if self.fetch_mode && !u.is_empty() {
                        flags |= 2 << kind;
                    }
                    body.extend_from_slice(&u);
                }
                Reply::ok(W(body).int(7, flags).0)
            }
            p @ ("/Agent/ReportPipelineConfig" | "/Agent/ReportInstanceConfig") => {
                if self.report_404 {
                    return Reply::status(404);
                }
                let infos: Vec<Info> = all(&fs, 3).iter().map(|b| info(b)).collect();
                self.learn((p == "/Agent/ReportInstanceConfig") as u8, &infos);
                self.reports.push(Report {
                    at: Instant::now(),
                    path: p.to_string(),
                    request_id: rid.clone(),
                    instance_id: string(&fs, 2),
                    infos,
                });
                Reply::ok(W::default().bytes(1, &rid).bytes(2, &[]).0)
            }
            p @ ("/Agent/FetchPipelineConfig" | "/Agent/FetchInstanceConfig") => {
                let kind = (p == "/Agent/FetchInstanceConfig") as u8;
                let infos: Vec<Info> = all(&fs, 3 + kind as u32).iter().map(|b| info(b)).collect();
                let set = if kind == 0 {
                    &self.pipelines
                } else {
                    &self.instances
                };
                let mut body = W::default().bytes(1, &rid).bytes(2, &[]);
                for i in &infos {
                    if let Some((version, text)) = set.get(&i.name) {
                        let d = W::default()
                            .bytes(1, i.name.as_bytes())
                            .int(2, *version as u64)
                            .bytes(3, text);
                        body = body.bytes(3 + kind as u32, &d.0);
                    }
                }
                self.fetches.push((p.to_string(), infos));
                Reply::ok(body.0)
            }
            other => panic!("unexpected request to {other}"),
        }
    }
}

pub struct ConfigServer {
    pub http: HttpServer,
    pub cs: Arc<Mutex<Cs>>,
}

impl ConfigServer {
    pub fn start() -> ConfigServer {
        let cs = Arc::new(Mutex::new(Cs::default()));
        let c = cs.clone();
        let http = HttpServer::start(Box::new(move |r: &Req| c.lock().unwrap().handle(r)));
        ConfigServer { http, cs }
    }

    pub fn url(&self) -> String {
        self.http.url("")
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Cs) -> T) -> T {
        f(&mut self.cs.lock().unwrap())
    }

    pub fn serve_pipeline(&self, name: &str, version: i64, detail: &str) {
        self.with(|c| {
            c.pipelines
                .insert(name.into(), (version, detail.as_bytes().to_vec()))
        });
    }

    pub fn serve_instance(&self, name: &str, version: i64, detail: &str) {
        self.with(|c| {
            c.instances
                .insert(name.into(), (version, detail.as_bytes().to_vec()))
        });
    }

    pub fn heartbeats(&self) -> Vec<Heartbeat> {
        self.with(|c| c.heartbeats.clone())
    }

    pub fn reports(&self) -> Vec<Report> {
        self.with(|c| c.reports.clone())
    }

    /// Waits until a status report (on the status endpoints) says `name` is at `version`
    /// with `status`; returns that report.
    pub fn wait_report(&self, name: &str, version: i64, status: u64, secs: u64) -> Option<Report> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            let found = self.reports().into_iter().find(|r| {
                r.infos
                    .iter()
                    .any(|i| i.name == name && i.version == version && i.status == status)
            });
            if found.is_some() {
                return found;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Waits until `n` heartbeats have arrived.
    pub fn wait_heartbeats(&self, n: usize, secs: u64) -> Vec<Heartbeat> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let h = self.heartbeats();
            if h.len() >= n || Instant::now() > deadline {
                return h;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

// ---- agent configs for fleet tests ----

/// A config with one local input (`app.log`), a file sink, and `[fleet]` at `server`.
pub fn fleet_config(s: &Scratch, server: &str, fleet_extra: &str, top: &str) -> std::path::PathBuf {
    let app = s.path("logs/app.log");
    s.config(
        top,
        &input("app", app.to_str().unwrap(), ""),
        &format!(
            "[batch]\nlinger = \"50ms\"\n[fleet]\nserver = \"{server}\"\ntimeout = \"1s\"\n{fleet_extra}\n"
        ),
    )
}

/// A pipeline config that tails `logs/{file}` from its head.
pub fn pipeline(s: &Scratch, file: &str) -> String {
    format!(
        "paths = [\"{}\"]\nstart_at = \"head\"\n",
        s.path(&format!("logs/{file}")).display()
    )
}

pub fn write_lines(p: &std::path::Path, tag: &str, from: u64, to: u64) {
    let text: String = (from..to).map(|n| line(tag, n)).collect();
    append(p, &text);
}
