//! A ConfigServer (protocol v2) test double over the test HTTP server.
//!
//! It decodes every request with its own protobuf reader (not tailbeat's), checks the
//! messages' shape, records them, and answers as a server would: config updates for every
//! served config whose version differs from what the agent last reported, full state when
//! asked to, and scripted failures (CommonResponse status, HTTP status, stalls, 404 on the
//! status endpoints, an outage answered 503). Two [`Mode`]s: the seed's design, and the
//! real Go server as it behaves (see [`Mode::Real`]). [`ConfigServer::stored`] shows what
//! the server stored about the agent.

use super::http::{HttpServer, Reply, Req};
use super::{append, input, line, Scratch};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
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

/// A list of config statuses the server received, on whichever channel: a status report
/// (`/Agent/Report*`) or a heartbeat (`/Agent/Heartbeat`).
#[derive(Debug, Clone)]
pub struct Listing {
    pub at: Instant,
    pub path: String,
    /// 0 pipeline, 1 instance.
    pub kind: u8,
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

/// Which server the double plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The project's design: every endpoint (the seed's split status endpoints, upstream's
    /// `/Agent/ReportStatus` and `/Agent/FetchConfig`), updates for every config whose
    /// version differs from the last the agent reported.
    Seed,
    /// As LoongCollector's Go server (branch `ospp_dev`, `config_server/v2/service`) behaves:
    /// only `/Agent/Heartbeat` and `/Agent/FetchPipelineConfig` exist (everything else is
    /// `404 page not found`, `text/plain`); what every heartbeat says about the agent is
    /// stored as sent; a sequence number other than the stored one plus one is answered
    /// with ReportFullState; updates are computed against the statuses in *that* heartbeat,
    /// pipeline configs by name only (FetchPipelineConfigDetail), instance configs with
    /// their detail; an updated config is stored as the version sent plus one; −1 is never
    /// sent unless a test serves it; a fetch naming a config it does not store fails whole
    /// with ConfigNotExist (HTTP 404, a CommonResponse saying so).
    Real,
}

/// What the server stored about the agent, from the heartbeats, as they said it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stored {
    pub instance_id: String,
    pub agent_type: String,
    pub startup_time: i64,
    pub tags: Vec<(String, String)>,
    /// version, ip, hostname, hostid and every extra (empty ones left out), as the last
    /// heartbeat that carried attributes said.
    pub attrs: HashMap<String, String>,
    pub capabilities: u64,
    pub running_status: String,
    pub seq: Option<u64>,
}

const REAL_MISSING: [&str; 5] = [
    "/Agent/ReportPipelineConfig",
    "/Agent/ReportInstanceConfig",
    "/Agent/ReportStatus",
    "/Agent/FetchInstanceConfig",
    "/Agent/FetchConfig",
];

pub struct Cs {
    pub mode: Mode,
    /// Served configs: name → (version, detail).
    pub pipelines: BTreeMap<String, (i64, Vec<u8>)>,
    pub instances: BTreeMap<String, (i64, Vec<u8>)>,
    /// Announce updates by name and version only; the agent must fetch the detail.
    pub fetch_mode: bool,
    /// Answer 404 on the seed's status endpoints, as servers that predate them do.
    pub report_404: bool,
    /// Endpoints answered `404 page not found` (text/plain).
    pub missing: BTreeSet<String>,
    /// Every request is answered 503 until then (an outage behind a proxy).
    pub outage_until: Option<Instant>,
    /// Answers for the next heartbeats.
    pub faults: VecDeque<Fault>,
    /// Answer the heartbeat with this sequence number with ReportFullState.
    pub ask_full_state_at: Option<u64>,
    /// Pipeline configs deleted the moment a fetch names them: deleted between the
    /// heartbeat that announced them and the fetch.
    pub delete_on_fetch: BTreeSet<String>,
    pub heartbeats: Vec<Heartbeat>,
    pub reports: Vec<Report>,
    pub fetches: Vec<(String, Vec<Info>)>,
    /// Every status list received, on any channel.
    pub listings: Vec<Listing>,
    /// What the server stored about the agent.
    pub stored: Stored,
    /// Versions the agent reported, by (kind, name): it gets an update when they differ.
    known: HashMap<(u8, String), i64>,
}

impl Cs {
    fn new(mode: Mode) -> Cs {
        Cs {
            mode,
            pipelines: BTreeMap::new(),
            instances: BTreeMap::new(),
            fetch_mode: mode == Mode::Real,
            report_404: false,
            missing: match mode {
                Mode::Seed => BTreeSet::new(),
                Mode::Real => REAL_MISSING.iter().map(|p| p.to_string()).collect(),
            },
            outage_until: None,
            faults: VecDeque::new(),
            ask_full_state_at: None,
            delete_on_fetch: BTreeSet::new(),
            heartbeats: Vec::new(),
            reports: Vec::new(),
            fetches: Vec::new(),
            listings: Vec::new(),
            stored: Stored::default(),
            known: HashMap::new(),
        }
    }

    fn learn(&mut self, kind: u8, infos: &[Info]) {
        for i in infos {
            self.known.insert((kind, i.name.clone()), i.version);
        }
    }

    fn listing(&mut self, path: &str, kind: u8, infos: &[Info]) {
        self.listings.push(Listing {
            at: Instant::now(),
            path: path.to_string(),
            kind,
            infos: infos.to_vec(),
        });
    }

    /// The update list of a heartbeat response; `reported` = the statuses the heartbeat
    /// carried (the real server compares with those only).
    fn updates(&self, kind: u8, reported: &[Info]) -> (Vec<u8>, bool) {
        let set = if kind == 0 {
            &self.pipelines
        } else {
            &self.instances
        };
        let field = 4 + kind as u32;
        let by_name = match self.mode {
            Mode::Seed => self.fetch_mode,
            Mode::Real => kind == 0,
        };
        let mut out = W::default();
        let mut any = false;
        for (name, (version, text)) in set {
            let has = match self.mode {
                Mode::Seed => self.known.get(&(kind, name.clone())).copied(),
                Mode::Real => reported.iter().find(|i| &i.name == name).map(|i| i.version),
            };
            let offer = if *version == -1 {
                has.is_some_and(|v| v != -1)
            } else {
                has != Some(*version)
            };
            if !offer {
                continue;
            }
            let mut d = W::default()
                .bytes(1, name.as_bytes())
                .int(2, *version as u64);
            if !by_name || *version == -1 {
                d = d.bytes(3, text);
            }
            out = out.bytes(field, &d.0);
            any = true;
        }
        (out.0, any && by_name)
    }

    fn not_found() -> Reply {
        Reply {
            body: b"404 page not found".to_vec(),
            ..Reply::status(404)
        }
        .header("content-type", "text/plain")
    }

    fn handle(&mut self, r: &Req) -> Reply {
        assert_eq!(r.headers["content-type"], "application/x-protobuf");
        if self.outage_until.is_some_and(|t| Instant::now() < t) {
            return Reply::status(503);
        }
        let split_report = matches!(
            r.path.as_str(),
            "/Agent/ReportPipelineConfig" | "/Agent/ReportInstanceConfig"
        );
        if self.missing.contains(&r.path) || (self.report_404 && split_report) {
            return Cs::not_found();
        }
        let fs = fields(&r.body);
        let rid = bytes(&fs, 1);
        match r.path.as_str() {
            "/Agent/Heartbeat" => {
                let hb = Heartbeat::decode(&r.body);
                match self.faults.pop_front() {
                    Some(Fault::Status(s)) => {
                        self.heartbeats.push(hb);
                        let common = W::default().int(1, s as u64).bytes(2, b"try later");
                        return Reply::ok(W::default().bytes(1, &rid).bytes(2, &common.0).0);
                    }
                    Some(Fault::Http(code)) => {
                        self.heartbeats.push(hb);
                        let common = W::default().int(1, 1).bytes(2, b"unavailable");
                        return Reply {
                            body: W::default().bytes(1, &rid).bytes(2, &common.0).0,
                            ..Reply::status(code)
                        };
                    }
                    Some(Fault::Stall(d)) => {
                        self.heartbeats.push(hb);
                        return Reply {
                            stall: Some(d),
                            ..Reply::ok(W::default().bytes(1, &rid).0)
                        };
                    }
                    None => {}
                }
                self.learn(0, &hb.pipelines);
                self.learn(1, &hb.instances);
                if !hb.pipelines.is_empty() {
                    self.listing(&r.path, 0, &hb.pipelines);
                }
                if !hb.instances.is_empty() {
                    self.listing(&r.path, 1, &hb.instances);
                }
                let mut flags = 0;
                if self.ask_full_state_at == Some(hb.seq) {
                    flags |= 1;
                }
                // The real server asks for full state when the number is not the stored
                // one plus one (JudgeSequenceNumRationality).
                if self.mode == Mode::Real && self.stored.seq.is_some_and(|s| hb.seq != s + 1) {
                    flags |= 1;
                }
                // Stored as sent, whatever it says (the real server's CreateOrUpdate).
                let st = &mut self.stored;
                st.instance_id = hb.instance_id.clone();
                st.agent_type = hb.agent_type.clone();
                st.startup_time = hb.startup_time;
                st.tags = hb.tags.clone();
                st.attrs = hb.attrs.clone();
                st.capabilities = hb.capabilities;
                st.running_status = hb.running_status.clone();
                st.seq = Some(hb.seq);
                let mut body = W::default().bytes(1, &rid).bytes(2, &[]).int(3, 7).0;
                for (kind, reported) in [(0u8, &hb.pipelines), (1, &hb.instances)] {
                    let (u, by_name) = self.updates(kind, reported);
                    if by_name {
                        flags |= 2 << kind;
                    }
                    body.extend_from_slice(&u);
                }
                self.heartbeats.push(hb);
                Reply::ok(W(body).int(7, flags).0)
            }
            p @ ("/Agent/ReportPipelineConfig" | "/Agent/ReportInstanceConfig") => {
                let infos: Vec<Info> = all(&fs, 3).iter().map(|b| info(b)).collect();
                let kind = (p == "/Agent/ReportInstanceConfig") as u8;
                self.learn(kind, &infos);
                self.listing(p, kind, &infos);
                self.reports.push(Report {
                    at: Instant::now(),
                    path: p.to_string(),
                    request_id: rid.clone(),
                    instance_id: string(&fs, 2),
                    infos,
                });
                Reply::ok(W::default().bytes(1, &rid).bytes(2, &[]).0)
            }
            "/Agent/ReportStatus" => {
                let mut every = Vec::new();
                for kind in [0u8, 1] {
                    let infos: Vec<Info> =
                        all(&fs, 3 + kind as u32).iter().map(|b| info(b)).collect();
                    self.learn(kind, &infos);
                    self.listing(&r.path, kind, &infos);
                    every.extend(infos);
                }
                self.reports.push(Report {
                    at: Instant::now(),
                    path: r.path.clone(),
                    request_id: rid.clone(),
                    instance_id: string(&fs, 2),
                    infos: every,
                });
                Reply::ok(W::default().bytes(1, &rid).bytes(2, &[]).0)
            }
            p @ ("/Agent/FetchPipelineConfig"
            | "/Agent/FetchInstanceConfig"
            | "/Agent/FetchConfig") => {
                let kinds: &[u8] = match p {
                    "/Agent/FetchPipelineConfig" => &[0],
                    "/Agent/FetchInstanceConfig" => &[1],
                    _ => &[0, 1],
                };
                let mut body = W::default().bytes(1, &rid).bytes(2, &[]);
                let mut asked = Vec::new();
                let mut gone = false;
                for &kind in kinds {
                    let infos: Vec<Info> =
                        all(&fs, 3 + kind as u32).iter().map(|b| info(b)).collect();
                    if kind == 0 {
                        for i in &infos {
                            if self.delete_on_fetch.remove(&i.name) {
                                self.pipelines.remove(&i.name);
                            }
                        }
                    }
                    let set = if kind == 0 {
                        &self.pipelines
                    } else {
                        &self.instances
                    };
                    for i in &infos {
                        if let Some((version, text)) = set.get(&i.name) {
                            let d = W::default()
                                .bytes(1, i.name.as_bytes())
                                .int(2, *version as u64)
                                .bytes(3, text);
                            body = body.bytes(3 + kind as u32, &d.0);
                        } else {
                            gone = true;
                        }
                    }
                    asked.extend(infos);
                }
                self.fetches.push((p.to_string(), asked));
                if gone && self.mode == Mode::Real {
                    // The Go server fails the whole request when a name is not stored
                    // (GetPipelineConfigByNames): ConfigNotExist, in a CommonResponse, with
                    // HTTP 404.
                    let common = W::default().int(1, 404).bytes(2, b"ConfigNotExist");
                    let body = W::default().bytes(1, &rid).bytes(2, &common.0);
                    return Reply {
                        body: body.0,
                        ..Reply::status(404)
                    }
                    .header("content-type", "application/x-protobuf");
                }
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
    /// The seed's design ([`Mode::Seed`]).
    pub fn start() -> ConfigServer {
        ConfigServer::start_as(Mode::Seed)
    }

    pub fn start_as(mode: Mode) -> ConfigServer {
        let cs = Arc::new(Mutex::new(Cs::new(mode)));
        let c = cs.clone();
        let http = HttpServer::start(Box::new(move |r: &Req| c.lock().unwrap().handle(r)));
        ConfigServer { http, cs }
    }

    pub fn mode(&self) -> Mode {
        self.with(|c| c.mode)
    }

    pub fn url(&self) -> String {
        self.http.url("")
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Cs) -> T) -> T {
        f(&mut self.cs.lock().unwrap())
    }

    /// Serves `name`; returns the version the agent will be offered: `version` (the seed),
    /// or `version + 1` (the real server stores an update as the version it was sent plus
    /// one). −1 is served as is: the test tells the server to send a deletion.
    pub fn serve_pipeline(&self, name: &str, version: i64, detail: &str) -> i64 {
        self.with(|c| {
            let v = c.stored_version(version);
            c.pipelines
                .insert(name.into(), (v, detail.as_bytes().to_vec()));
            v
        })
    }

    pub fn serve_instance(&self, name: &str, version: i64, detail: &str) -> i64 {
        self.with(|c| {
            let v = c.stored_version(version);
            c.instances
                .insert(name.into(), (v, detail.as_bytes().to_vec()));
            v
        })
    }

    pub fn heartbeats(&self) -> Vec<Heartbeat> {
        self.with(|c| c.heartbeats.clone())
    }

    pub fn reports(&self) -> Vec<Report> {
        self.with(|c| c.reports.clone())
    }

    /// What the server stored about the agent (identity, tags, attributes), from the
    /// heartbeats as they said it.
    pub fn stored(&self) -> Stored {
        self.with(|c| c.stored.clone())
    }

    pub fn listings(&self) -> Vec<Listing> {
        self.with(|c| c.listings.clone())
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

    /// Waits until the server heard, on any channel (a report or a heartbeat), that `name`
    /// is at `version` with `status`; returns the first list that said so.
    pub fn wait_status(&self, name: &str, version: i64, status: u64, secs: u64) -> Option<Listing> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            let found = self.listings().into_iter().find(|l| {
                l.infos
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

impl Cs {
    fn stored_version(&self, version: i64) -> i64 {
        match self.mode {
            Mode::Real if version != -1 => version + 1,
            _ => version,
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
