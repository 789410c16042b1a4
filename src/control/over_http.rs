//! The control plane over HTTP: see the module docs of [`crate::control`].

use super::apply;
use super::heartbeat;
use super::proto::{
    self, response_flags as rf, ConfigDetail, ConfigInfo, ConfigStatus, ResponseKind,
    ServerResponse,
};
use super::remote::Kind;
use crate::agent::{Notify, Shared};
use crate::backoff::Backoff;
use crate::http::{Client, HttpError, Request, Response};
use std::time::{Duration, Instant};

const CONTENT_TYPE: &str = "application/x-protobuf";

/// A status report being delivered: the same bytes until the server takes them.
struct Pending {
    body: Vec<u8>,
    summary: String,
}

struct Control {
    client: Option<(String, Duration, Client)>,
    authorization: Option<String>,
    instance: String,
    startup_s: i64,
    requests: u64,
    seq: u64,
    full: bool,
    interval: Duration,
    next_heartbeat: Instant,
    heartbeat_backoff: Backoff,
    reports: [Option<Pending>; 2],
    report_at: Instant,
    report_backoff: Backoff,
    /// The server has no status endpoints: statuses go in the heartbeat.
    fallback: bool,
    fetch: [Vec<ConfigInfo>; 2],
    fetch_at: Instant,
    fetch_backoff: Backoff,
}

fn backoff() -> Backoff {
    Backoff::new(Duration::from_millis(500), Duration::from_secs(60))
}

/// Runs the control plane while the config names an `http(s)://` ConfigServer.
pub(crate) async fn run(st: Shared, wake: Notify) {
    let now = Instant::now();
    let mut c = Control {
        client: None,
        authorization: None,
        instance: st.borrow().instance.clone(),
        startup_s: (crate::agent::now_ms() / 1000) as i64,
        requests: 0,
        seq: 1,
        full: true,
        interval: Duration::MAX,
        next_heartbeat: now,
        heartbeat_backoff: backoff(),
        reports: [None, None],
        report_at: now,
        report_backoff: backoff(),
        fallback: false,
        fetch: [Vec::new(), Vec::new()],
        fetch_at: now,
        fetch_backoff: backoff(),
    };
    loop {
        if st.borrow().shutdown {
            return;
        }
        let Some(interval) = c.connect(&st) else {
            return;
        };
        let now = Instant::now();
        if interval != c.interval {
            // A shorter interval from a reload or an instance config counts from now.
            c.next_heartbeat = c.next_heartbeat.min(now + interval);
            c.interval = interval;
        }
        if !c.fallback && now >= c.report_at {
            if let Some(k) = c.report_due(&st) {
                c.report(&st, k).await;
                continue;
            }
        }
        if c.fallback && st.borrow().remote.dirty.iter().any(|&d| d) {
            c.next_heartbeat = c.next_heartbeat.min(now);
        }
        if now >= c.fetch_at {
            if let Some(k) = Kind::ALL
                .into_iter()
                .find(|&k| !c.fetch[k as usize].is_empty())
            {
                c.fetch(&st, k).await;
                continue;
            }
        }
        if now >= c.next_heartbeat {
            c.heartbeat(&st, interval).await;
            continue;
        }
        let mut until = c.next_heartbeat;
        if c.fetch.iter().any(|f| !f.is_empty()) {
            until = until.min(c.fetch_at);
        }
        if !c.fallback
            && (c.reports.iter().any(Option::is_some)
                || st.borrow().remote.dirty.iter().any(|&d| d))
        {
            until = until.min(c.report_at);
        }
        wake.wait_for(until.saturating_duration_since(now)).await;
    }
}

impl Control {
    /// The worker for the configured server (a new one when the server or timeout changed);
    /// `None` when the fleet is not (or no longer) an HTTP server. Returns the heartbeat
    /// interval.
    fn connect(&mut self, st: &Shared) -> Option<Duration> {
        let s = st.borrow();
        let f = s
            .cfg
            .fleet
            .as_ref()
            .filter(|f| f.server.starts_with("http"))?;
        let same = self
            .client
            .as_ref()
            .is_some_and(|(url, t, _)| *url == f.server && *t == f.timeout.0);
        if !same {
            let tls = f.server.starts_with("https://").then_some(&f.tls);
            match Client::new("tailbeat-fleet", f.timeout.0, tls) {
                Ok(client) => {
                    log::info!(
                        "fleet: ConfigServer {}, heartbeat every {} s",
                        f.server,
                        f.heartbeat_interval.0.as_secs()
                    );
                    self.client = Some((f.server.clone(), f.timeout.0, client));
                    self.full = true;
                }
                Err(e) => {
                    log::error!("fleet: {e}");
                    return None;
                }
            }
        }
        self.authorization = f.token.as_ref().map(|t| format!("Bearer {t}"));
        Some(f.heartbeat_interval.0)
    }

    fn request_id(&mut self) -> Vec<u8> {
        self.requests += 1;
        format!("{}-{:x}-{}", self.instance, self.startup_s, self.requests).into_bytes()
    }

    async fn call(&self, path: &str, body: Vec<u8>) -> Result<Response, HttpError> {
        let (server, _, client) = self.client.as_ref().expect("connected");
        client
            .post(Request {
                url: format!("{}{path}", server.trim_end_matches('/')),
                content_type: CONTENT_TYPE,
                authorization: self.authorization.clone(),
                headers: Vec::new(),
                body,
            })
            .await
    }

    /// A call that must answer 2xx with a zero CommonResponse status.
    async fn exchange(
        &self,
        path: &str,
        kind: ResponseKind,
        body: Vec<u8>,
    ) -> Result<ServerResponse, String> {
        let r = self.call(path, body).await.map_err(|e| e.to_string())?;
        let decoded = ServerResponse::decode(kind, &r.body);
        if !(200..300).contains(&r.status) {
            let why = decoded
                .ok()
                .map(|d| d.error_message)
                .filter(|m| !m.is_empty());
            return Err(format!(
                "{path}: HTTP {}{}",
                r.status,
                why.map(|m| format!(": {m}")).unwrap_or_default()
            ));
        }
        let d = decoded.map_err(|e| format!("{path}: {e}"))?;
        if d.status != 0 {
            return Err(format!(
                "{path}: server status {}: {}",
                d.status, d.error_message
            ));
        }
        Ok(d)
    }

    /// The kind whose report should go now: one pending, or one with changes.
    fn report_due(&mut self, st: &Shared) -> Option<Kind> {
        for k in Kind::ALL {
            let i = k as usize;
            if self.reports[i].is_none() {
                let mut s = st.borrow_mut();
                if !s.remote.dirty[i] {
                    continue;
                }
                s.remote.dirty[i] = false;
                let infos = s.remote.infos(k);
                drop(s);
                let summary = infos
                    .iter()
                    .map(|c| format!("{} v{} {}", c.name, c.version, c.status.name()))
                    .collect::<Vec<_>>()
                    .join(", ");
                let rid = self.request_id();
                self.reports[i] = Some(Pending {
                    body: proto::report_config_request(&rid, &self.instance, &infos),
                    summary,
                });
            }
            return Some(k);
        }
        None
    }

    async fn report(&mut self, st: &Shared, k: Kind) {
        let path = match k {
            Kind::Pipeline => "/Agent/ReportPipelineConfig",
            Kind::Instance => "/Agent/ReportInstanceConfig",
        };
        let p = self.reports[k as usize].as_ref().expect("due");
        let body = p.body.clone();
        let r = self.call(path, body).await;
        match r {
            Ok(r) if r.status == 404 => {
                log::warn!("fleet: the server has no {path}: config status goes in the heartbeat from now on");
                self.fallback = true;
                self.reports = [None, None];
                let mut s = st.borrow_mut();
                s.remote.dirty = [true, true];
            }
            r => {
                let ok = match r {
                    Ok(r) if (200..300).contains(&r.status) => {
                        match ServerResponse::decode(ResponseKind::Report, &r.body) {
                            Ok(d) if d.status == 0 => Ok(()),
                            Ok(d) => {
                                Err(format!("server status {}: {}", d.status, d.error_message))
                            }
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    Ok(r) => Err(format!("HTTP {}", r.status)),
                    Err(e) => Err(e.to_string()),
                };
                match ok {
                    Ok(()) => {
                        let p = self.reports[k as usize].take().expect("due");
                        log::info!("fleet: reported {} config status: {}", k.name(), p.summary);
                        self.report_backoff.reset();
                    }
                    Err(e) => {
                        let d = self.report_backoff.next_delay();
                        log::warn!("fleet: {path}: {e}; retrying in {} ms", d.as_millis());
                        self.report_at = Instant::now() + d;
                    }
                }
            }
        }
    }

    async fn fetch(&mut self, st: &Shared, k: Kind) {
        let (path, instance) = match k {
            Kind::Pipeline => ("/Agent/FetchPipelineConfig", false),
            Kind::Instance => ("/Agent/FetchInstanceConfig", true),
        };
        let rid = self.request_id();
        let body =
            proto::fetch_config_request(&rid, &self.instance, instance, &self.fetch[k as usize]);
        match self.exchange(path, ResponseKind::Fetch, body).await {
            Ok(r) => {
                self.fetch_backoff.reset();
                let wanted = std::mem::take(&mut self.fetch[k as usize]);
                let got = match k {
                    Kind::Pipeline => r.pipeline_updates,
                    Kind::Instance => r.instance_updates,
                };
                for w in &wanted {
                    match got.iter().find(|d| d.name == w.name) {
                        Some(d) => apply(st, k, d),
                        None => st.borrow_mut().remote.set_status(
                            k,
                            &w.name,
                            w.version,
                            ConfigStatus::Failed,
                            "the server sent no detail for it",
                        ),
                    }
                }
            }
            Err(e) => {
                let d = self.fetch_backoff.next_delay();
                log::warn!("fleet: {e}; retrying in {} ms", d.as_millis());
                self.fetch_at = Instant::now() + d;
            }
        }
    }

    async fn heartbeat(&mut self, st: &Shared, interval: Duration) {
        let rid = self.request_id();
        let body = {
            let s = st.borrow();
            heartbeat::request(&s, self.seq, rid, self.full, self.fallback, self.startup_s).encode()
        };
        let sent_statuses = self.fallback;
        if sent_statuses {
            st.borrow_mut().remote.dirty = [false, false];
        }
        match self
            .exchange("/Agent/Heartbeat", ResponseKind::Heartbeat, body)
            .await
        {
            Ok(r) => {
                log::debug!("fleet: heartbeat {} answered", self.seq);
                self.seq += 1;
                self.full = r.flags & rf::REPORT_FULL_STATE != 0;
                self.heartbeat_backoff.reset();
                self.next_heartbeat = Instant::now() + interval;
                self.updates(
                    st,
                    Kind::Pipeline,
                    &r.pipeline_updates,
                    r.flags & rf::FETCH_PIPELINE_DETAIL != 0,
                );
                self.updates(
                    st,
                    Kind::Instance,
                    &r.instance_updates,
                    r.flags & rf::FETCH_INSTANCE_DETAIL != 0,
                );
            }
            Err(e) => {
                if sent_statuses {
                    st.borrow_mut().remote.dirty = [true, true];
                }
                let d = self.heartbeat_backoff.next_delay().min(interval);
                log::warn!(
                    "fleet: heartbeat {}: {e}; retrying in {} ms",
                    self.seq,
                    d.as_millis()
                );
                self.next_heartbeat = Instant::now() + d;
            }
        }
    }

    fn updates(&mut self, st: &Shared, k: Kind, updates: &[ConfigDetail], fetch: bool) {
        for d in updates {
            if st.borrow().remote.settled(k, &d.name, d.version) {
                continue;
            }
            if fetch && d.version != -1 && d.detail.is_empty() {
                st.borrow_mut().remote.set_status(
                    k,
                    &d.name,
                    d.version,
                    ConfigStatus::Applying,
                    "",
                );
                let list = &mut self.fetch[k as usize];
                list.retain(|w| w.name != d.name);
                list.push(ConfigInfo {
                    name: d.name.clone(),
                    version: d.version,
                    ..Default::default()
                });
                self.fetch_at = Instant::now();
            } else {
                apply(st, k, d);
            }
        }
    }
}
