//! The control plane over HTTP: the transport around [`super::session::Session`], which
//! decides what to send and when. This file builds the bodies, POSTs them, classifies the
//! answers and applies the configs they carry; see the module docs of [`crate::control`].

use super::apply;
use super::heartbeat;
use super::proto::{
    self, response_flags as rf, ConfigDetail, ConfigInfo, ConfigStatus, ResponseKind,
    ServerResponse,
};
use super::remote::Kind;
use super::session::{Answer, Fetched, Next, ReportTo, Session};
use crate::agent::Handle;
use crate::config::{HttpUrl, Server};
use crate::http::{Client, HttpError, Request, Response};
use std::time::{Duration, Instant};

const CONTENT_TYPE: &str = "application/x-protobuf";

/// A status report being delivered: the same bytes until the server takes them.
struct Pending {
    body: Vec<u8>,
    /// What it says, per kind: deletions leave the list once it is acknowledged.
    sent: [Vec<ConfigInfo>; 2],
}

struct Control {
    client: Option<(HttpUrl, Duration, Client)>,
    authorization: Option<crate::config::Secret>,
    instance: String,
    startup_s: i64,
    requests: u64,
    session: Session,
    report: Option<Pending>,
}

/// Runs the control plane while the config names an `http(s)://` ConfigServer.
pub(crate) async fn run(agent: &Handle) {
    let mut c = Control {
        client: None,
        authorization: None,
        instance: agent.instance(),
        startup_s: super::unix_s(),
        requests: 0,
        session: Session::new(Instant::now(), Duration::MAX),
        report: None,
    };
    loop {
        if agent.stopping() {
            return;
        }
        let Some(interval) = c.connect(agent) else {
            return;
        };
        let now = Instant::now();
        c.session.set_interval(now, interval);
        for k in Kind::ALL {
            if agent.remote(|r, _| std::mem::take(&mut r.dirty[k as usize])) {
                c.session.changed(k);
            }
        }
        match c.session.next(now) {
            Next::Wait(until) => agent.wait_for(until.saturating_duration_since(now)).await,
            Next::Report { to, fresh } => c.report(agent, to, fresh).await,
            Next::Fetch { kind, path } => c.fetch(agent, kind, path).await,
            Next::Heartbeat {
                seq,
                full,
                statuses,
            } => c.heartbeat(agent, seq, full, statuses).await,
        }
    }
}

/// CommonResponse status for "what the request names does not exist" (upstream's
/// `ConfigNotExist`, `AgentNotExist`).
const NOT_EXIST: i32 = 404;

/// 2xx with CommonResponse status 0 → the decoded answer; a CommonResponse with status 404,
/// whatever the HTTP status → [`Answer::Refused`] (the endpoint is there: the Go server
/// answers a fetch naming a deleted config so); any other 404 → [`Answer::NotFound`] (no
/// such endpoint: `404 page not found`, `text/plain`); anything else → why.
fn classify(
    path: &str,
    kind: ResponseKind,
    r: Result<Response, HttpError>,
) -> Result<ServerResponse, (Answer, String)> {
    let r = r.map_err(|e| (Answer::Failed, format!("{path}: {e}")))?;
    let decoded = ServerResponse::decode(kind, &r.body);
    // The Go server answers "config not found" with HTTP 404 and a CommonResponse saying
    // so: the endpoint is there. Only a 404 without one (`404 page not found`) means the
    // server has no such endpoint.
    let refused = decoded.as_ref().ok().filter(|d| d.status == NOT_EXIST);
    if let Some(d) = refused {
        return Err((
            Answer::Refused,
            format!(
                "{path}: HTTP {}: server status {}: {}",
                r.status, d.status, d.error_message
            ),
        ));
    }
    if r.status == 404 {
        return Err((Answer::NotFound, format!("{path}: HTTP 404")));
    }
    if !(200..300).contains(&r.status) {
        let why = decoded
            .ok()
            .map(|d| d.error_message)
            .filter(|m| !m.is_empty());
        return Err((
            Answer::Failed,
            format!(
                "{path}: HTTP {}{}",
                r.status,
                why.map(|m| format!(": {m}")).unwrap_or_default()
            ),
        ));
    }
    let d = decoded.map_err(|e| (Answer::Failed, format!("{path}: {e}")))?;
    if d.status != 0 {
        return Err((
            Answer::Failed,
            format!("{path}: server status {}: {}", d.status, d.error_message),
        ));
    }
    Ok(d)
}

impl Control {
    /// The HTTP client for the configured server (a new one, and a new start of the session's
    /// discovery, when the server or timeout changed); `None` when the fleet is not (or no
    /// longer) an HTTP server. Returns the heartbeat interval.
    fn connect(&mut self, agent: &Handle) -> Option<Duration> {
        let f = agent.fleet()?;
        let Server::Http(server) = &f.server else {
            return None;
        };
        let same = self
            .client
            .as_ref()
            .is_some_and(|(url, t, _)| url == server && *t == f.timeout.0);
        if !same {
            let tls = server.tls.then_some(&f.tls);
            match Client::new("tailbeat-fleet", f.timeout.0, tls) {
                Ok(client) => {
                    log::info!(
                        "fleet: ConfigServer {}, heartbeat every {} s",
                        f.server,
                        f.heartbeat_interval.0.as_secs()
                    );
                    self.client = Some((server.clone(), f.timeout.0, client));
                    self.session.restart(Instant::now());
                    self.report = None;
                }
                Err(e) => {
                    log::error!("fleet: {e}");
                    return None;
                }
            }
        }
        self.authorization = crate::http::authorization(f.token.as_ref(), None, None);
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
                url: format!("{}{path}", server.as_str()),
                content_type: CONTENT_TYPE,
                authorization: self.authorization.clone(),
                headers: Vec::new(),
                body,
            })
            .await
    }

    async fn report(&mut self, agent: &Handle, to: ReportTo, fresh: bool) {
        if fresh || self.report.is_none() {
            let rid = self.request_id();
            let mut sent = [Vec::new(), Vec::new()];
            for &k in to.kinds() {
                sent[k as usize] = agent.remote(|r, _| r.infos(k));
            }
            let body = match to {
                ReportTo::Split(_) => {
                    let k = to.kinds()[0];
                    proto::report_config_request(&rid, &self.instance, &sent[k as usize])
                }
                ReportTo::Combined => {
                    proto::report_status_request(&rid, &self.instance, &sent[0], &sent[1])
                }
            };
            self.report = Some(Pending { body, sent });
        }
        let path = to.path();
        let body = self.report.as_ref().expect("built").body.clone();
        let r = self.call(path, body).await;
        let now = Instant::now();
        match classify(path, ResponseKind::Report, r) {
            Ok(_) => {
                let p = self.report.take().expect("built");
                self.session.report_answered(now, Answer::Ok);
                for &k in to.kinds() {
                    let summary = p.sent[k as usize]
                        .iter()
                        .map(|c| format!("{} v{} {}", c.name, c.version, c.status.name()))
                        .collect::<Vec<_>>()
                        .join(", ");
                    log::info!("fleet: reported {} config status: {summary}", k.name());
                    agent.remote(|r, _| r.forget_told(k, &p.sent[k as usize]));
                }
            }
            Err((a, e)) => {
                if a == Answer::NotFound {
                    self.report = None;
                }
                if let Some(d) = self.session.report_answered(now, a) {
                    log::warn!("fleet: {e}; retrying in {} ms", d.as_millis());
                }
            }
        }
    }

    async fn fetch(&mut self, agent: &Handle, k: Kind, path: &'static str) {
        let rid = self.request_id();
        let body = proto::fetch_config_request(
            &rid,
            &self.instance,
            k == Kind::Instance,
            self.session.wanted(k),
        );
        let r = self.call(path, body).await;
        let now = Instant::now();
        let (answer, got) = match classify(path, ResponseKind::Fetch, r) {
            Ok(r) => (
                Answer::Ok,
                match k {
                    Kind::Pipeline => r.pipeline_updates,
                    Kind::Instance => r.instance_updates,
                },
            ),
            Err((a, e)) => {
                match a {
                    Answer::Failed => log::warn!("fleet: {e}; retrying with backoff"),
                    Answer::Refused => log::warn!(
                        "fleet: {e}: a config it announced is gone; fetching what the next heartbeat announces"
                    ),
                    _ => {}
                }
                (a, Vec::new())
            }
        };
        match self.session.fetch_answered(now, k, answer) {
            Fetched::Apply(wanted) => {
                for w in &wanted {
                    match got.iter().find(|d| d.name == w.name) {
                        Some(d) => apply(agent, k, d),
                        None => agent.remote(|r, _| {
                            r.set_status(
                                k,
                                &w.name,
                                w.version,
                                ConfigStatus::Failed,
                                "the server sent no detail for it",
                            )
                        }),
                    }
                }
            }
            Fetched::Fail(wanted, why) => {
                for w in &wanted {
                    log::error!(
                        "fleet: {} config {:?} version {} FAILED: {why}",
                        k.name(),
                        w.name,
                        w.version
                    );
                    agent.remote(|r, _| {
                        r.set_status(k, &w.name, w.version, ConfigStatus::Failed, &why)
                    });
                }
            }
            Fetched::Later => {}
        }
    }

    async fn heartbeat(&mut self, agent: &Handle, seq: u64, full: bool, statuses: bool) {
        let rid = self.request_id();
        let sent = if statuses || full {
            agent.remote(|r, _| [r.infos(Kind::Pipeline), r.infos(Kind::Instance)])
        } else {
            [Vec::new(), Vec::new()]
        };
        let body = heartbeat::request(
            agent,
            seq,
            rid,
            full,
            (statuses || full).then(|| sent.clone()),
            self.startup_s,
        )
        .encode();
        let r = self.call("/Agent/Heartbeat", body).await;
        let now = Instant::now();
        match classify("/Agent/Heartbeat", ResponseKind::Heartbeat, r) {
            Ok(r) => {
                log::debug!("fleet: heartbeat {seq} answered");
                self.session.heartbeat_answered(
                    now,
                    Answer::Ok,
                    r.flags & rf::REPORT_FULL_STATE != 0,
                );
                if statuses {
                    for k in Kind::ALL {
                        agent.remote(|r, _| r.forget_told(k, &sent[k as usize]));
                    }
                }
                self.updates(
                    agent,
                    Kind::Pipeline,
                    &r.pipeline_updates,
                    r.flags & rf::FETCH_PIPELINE_DETAIL != 0,
                );
                self.updates(
                    agent,
                    Kind::Instance,
                    &r.instance_updates,
                    r.flags & rf::FETCH_INSTANCE_DETAIL != 0,
                );
            }
            Err((a, e)) => {
                // A 404 on the heartbeat is no answer either: backoff like any failure.
                let a = if a == Answer::NotFound || a == Answer::Refused {
                    Answer::Failed
                } else {
                    a
                };
                if let Some(d) = self.session.heartbeat_answered(now, a, false) {
                    log::warn!(
                        "fleet: heartbeat {seq}: {e}; retrying in {} ms",
                        d.as_millis()
                    );
                }
            }
        }
    }

    fn updates(&mut self, agent: &Handle, k: Kind, updates: &[ConfigDetail], fetch: bool) {
        for d in updates {
            // Deleting what the agent does not have is nothing to do (and nothing to
            // report: a deletion leaves the status list once the server knows).
            let nothing_to_do = agent.remote(|r, _| {
                r.settled(k, &d.name, d.version)
                    || (d.version == -1 && !r.entries(k).contains_key(&d.name))
            });
            if nothing_to_do {
                continue;
            }
            if fetch && d.version != -1 && d.detail.is_empty() {
                // Nothing is reported until the detail is here: a status names a version
                // the agent holds, else the server stops offering what the agent lacks.
                if let Err(why) = self.session.announce(Instant::now(), k, &d.name, d.version) {
                    log::error!(
                        "fleet: {} config {:?} version {} FAILED: {why}",
                        k.name(),
                        d.name,
                        d.version
                    );
                    agent.remote(|r, _| {
                        r.set_status(k, &d.name, d.version, ConfigStatus::Failed, &why)
                    });
                }
            } else {
                apply(agent, k, d);
            }
        }
    }
}
