//! Configs from the fleet: what was received, what runs, what to report, and the copy on
//! disk that a restart runs again.
//!
//! Two kinds, each a set of named, versioned configs:
//! - a **pipeline** config is one input (the keys of an `[[input]]` table, without `name`:
//!   the config's name is the input's), joining the local file's pipeline; or, with its own
//!   `[batch]`, `[spool]` or `[sink]`, a pipeline of its own ([`parse_pipeline`]);
//! - an **instance** config holds agent-wide settings ([`InstanceConfig`]) laid over the
//!   local file, in name order.
//!
//! The running config is always `local file + every config's last good version`, computed
//! by [`Remote::effective`] and validated as a whole. An update is tried by computing that
//! with the new version in place: if it parses and validates, it becomes the last good one;
//! if not, nothing changes and the config is FAILED with the reason.
//!
//! Kept in `data_dir/fleet.state`: magic, format version, postcard body, CRC-32; written to
//! a temporary file, fsynced and renamed over the old one, so a crash leaves either.

use super::proto::{ConfigInfo, ConfigStatus};
use crate::config::{parse_pipeline, Config, ConfigError, InstanceConfig, KeyPath};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Which set a config belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One input.
    Pipeline = 0,
    /// Agent-wide settings.
    Instance = 1,
}

impl Kind {
    /// Both kinds, in report order.
    pub const ALL: [Kind; 2] = [Kind::Pipeline, Kind::Instance];
    /// For logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pipeline => "pipeline",
            Kind::Instance => "instance",
        }
    }
}

/// One named config.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The last version received (the one the status is about); −1 once deleted.
    pub version: i64,
    /// Its status.
    pub status: u8,
    /// Why it failed, or a note.
    pub message: String,
    /// The version that runs and its text, if any.
    pub good: Option<(i64, String)>,
}

/// By hand: `good` is the text the fleet sent, with any sink token or password in it (they
/// become [`Secret`](crate::config::Secret)s only once parsed), so it shows as its size.
impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let good = self
            .good
            .as_ref()
            .map(|(v, text)| (v, format!("<{} bytes of config text>", text.len())));
        f.debug_struct("Entry")
            .field("version", &self.version)
            .field("status", &self.status())
            .field("message", &self.message)
            .field("good", &good)
            .finish()
    }
}

impl Entry {
    /// A config seen for the first time, at `version`, with no status yet.
    fn unset(version: i64) -> Entry {
        Entry {
            version,
            status: ConfigStatus::Unset as u8,
            message: String::new(),
            good: None,
        }
    }

    /// The status as the protocol's enum.
    pub fn status(&self) -> ConfigStatus {
        match self.status {
            1 => ConfigStatus::Applying,
            2 => ConfigStatus::Applied,
            3 => ConfigStatus::Failed,
            _ => ConfigStatus::Unset,
        }
    }
}

/// Every config from the fleet.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Remote {
    sets: [BTreeMap<String, Entry>; 2],
    /// Statuses changed since the last report, per kind.
    #[serde(skip)]
    pub dirty: [bool; 2],
    #[serde(skip)]
    path: PathBuf,
}

const MAGIC: &[u8; 4] = b"TBFL";
const FORMAT: u8 = 1;

/// Why an update was refused: the text a person reads in the FAILED status.
pub type Refusal = String;

impl Remote {
    /// Loads `data_dir/fleet.state`; a missing file is an empty set, a damaged one is logged
    /// and treated as empty (the server sends its configs again).
    pub fn load(data_dir: &Path) -> Remote {
        let path = data_dir.join("fleet.state");
        let mut r = match std::fs::read(&path) {
            Ok(b) => match decode(&b) {
                Some(r) => r,
                None => {
                    log::error!(
                        "{}: damaged; starting without remote configs until the server sends them again",
                        path.display()
                    );
                    Remote::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Remote::default(),
            Err(e) => {
                log::error!("{}: {e}; starting without remote configs", path.display());
                Remote::default()
            }
        };
        r.path = path;
        // Re-report everything after a restart: the server may have missed the last report.
        r.dirty = [!r.sets[0].is_empty(), !r.sets[1].is_empty()];
        for set in &mut r.sets {
            for e in set.values_mut() {
                // An update that was being applied when the agent died did not apply.
                if e.status() == ConfigStatus::Applying {
                    e.status = ConfigStatus::Failed as u8;
                    e.message = "the agent stopped while applying it".into();
                }
            }
        }
        r
    }

    /// The configs of one kind.
    pub fn entries(&self, k: Kind) -> &BTreeMap<String, Entry> {
        &self.sets[k as usize]
    }

    /// The status of every config of `k`, as the protocol reports it.
    pub fn infos(&self, k: Kind) -> Vec<ConfigInfo> {
        self.sets[k as usize]
            .iter()
            .map(|(name, e)| ConfigInfo {
                name: name.clone(),
                version: e.version,
                status: e.status(),
                message: e.message.clone(),
            })
            .collect()
    }

    /// Whether `name` at `version` is already settled (applied or failed): a server that
    /// sends it again gets the same status and nothing is re-applied.
    pub fn settled(&self, k: Kind, name: &str, version: i64) -> bool {
        self.sets[k as usize].get(name).is_some_and(|e| {
            e.version == version
                && matches!(e.status(), ConfigStatus::Applied | ConfigStatus::Failed)
        })
    }

    /// Records a status, marking the kind for a report when it changes.
    pub fn set_status(&mut self, k: Kind, name: &str, version: i64, s: ConfigStatus, msg: &str) {
        let e = self.sets[k as usize]
            .entry(name.to_string())
            .or_insert_with(|| Entry::unset(version));
        if e.version != version || e.status != s as u8 || e.message != msg {
            e.version = version;
            e.status = s as u8;
            e.message = msg.to_string();
            self.dirty[k as usize] = true;
        }
    }

    /// The running config: `local` with every last good remote config laid over it.
    /// `Err` names the remote config at fault.
    pub fn effective(&self, local: &Config) -> Result<Config, (Kind, String, Refusal)> {
        let mut cfg = local.clone();
        for (name, e) in self.entries(Kind::Instance) {
            if let Some((_, text)) = &e.good {
                let ic = InstanceConfig::parse(text)
                    .map_err(|err| (Kind::Instance, name.clone(), err.to_string()))?;
                ic.apply_to(&mut cfg);
            }
        }
        // A pipeline's error by its own key, on its line in its own text when it has one.
        let in_pipeline = |name: &str, field: &KeyPath, msg: &str| {
            let text = self
                .entries(Kind::Pipeline)
                .get(name)
                .and_then(|e| e.good.as_ref());
            let line = text.and_then(|(_, t)| crate::config::line_of_key(t, field));
            // Shown as a config error is: one line, bounded.
            let why = ConfigError {
                path: None,
                line,
                column: None,
                key: Some(field.clone()),
                msg: msg.to_string(),
            };
            (Kind::Pipeline, name.to_string(), why.to_string())
        };
        let locals = cfg.inputs.len();
        let mut names = Vec::new();
        for (name, e) in self.entries(Kind::Pipeline) {
            if let Some((_, text)) = &e.good {
                let p = parse_pipeline(name, text)
                    .map_err(|err| (Kind::Pipeline, name.clone(), err.to_string()))?;
                match p.own(&cfg.batch, &cfg.spool, &cfg.sink) {
                    Ok(mut own) => {
                        // Its own [sink]'s topic templates take the agent's tags, as the
                        // local [sink]'s do.
                        crate::config::fill_sink(&mut own.sink, cfg.fleet.as_ref())
                            .map_err(|(key, msg)| in_pipeline(name, &key, &msg))?;
                        cfg.pipelines.push(own)
                    }
                    Err(input) => {
                        if cfg.inputs.iter().any(|i| &i.name == name) {
                            return Err((
                                Kind::Pipeline,
                                name.clone(),
                                format!(
                                    "the local config already has an input named {}",
                                    crate::config::clip(name)
                                ),
                            ));
                        }
                        cfg.inputs.push(input);
                        names.push(name.clone());
                    }
                }
            }
        }
        cfg.validate().map_err(|(key, msg)| {
            // `input[i].field` of a joined pipeline, `pipeline[j].key` of one of its own:
            // say which, by its own key.
            if let Some((j, field)) = key.in_array("pipeline") {
                let name = &cfg.pipelines[j].name;
                return self
                    .inherited(name, &field, &msg)
                    .unwrap_or_else(|| in_pipeline(name, &field, &msg));
            }
            match key.in_array("input").filter(|&(i, _)| i >= locals) {
                Some((i, field)) => in_pipeline(&names[i - locals], &field, &msg),
                None => {
                    let blame = self
                        .entries(Kind::Instance)
                        .iter()
                        .rev()
                        .find_map(|(n, e)| Some((n, &e.good.as_ref()?.1)));
                    // An instance config's keys are the local file's, but its
                    // `heartbeat_interval`, which is `fleet.heartbeat_interval` there: named
                    // as the instance config writes it, on its line, when it sets it.
                    let own = match key.to_string().as_str() {
                        "fleet.heartbeat_interval" => KeyPath::dotted("heartbeat_interval"),
                        _ => key.clone(),
                    };
                    let line = blame.and_then(|(_, t)| crate::config::line_of_key(t, &own));
                    let why = ConfigError {
                        path: None,
                        line,
                        column: None,
                        key: Some(if line.is_some() { own } else { key }),
                        msg,
                    }
                    .to_string();
                    (
                        Kind::Instance,
                        blame.map(|(n, _)| n.clone()).unwrap_or_default(),
                        why,
                    )
                }
            }
        })?;
        Ok(cfg)
    }

    /// `msg` about `field` of a pipeline of its own whose text does not set it (it took the
    /// agent's `[batch]`, `[spool]` or `[sink]`) while the last instance config that sets it
    /// does: blamed on that instance config, on its line, naming the pipeline.
    fn inherited(
        &self,
        pipeline: &str,
        field: &KeyPath,
        msg: &str,
    ) -> Option<(Kind, String, Refusal)> {
        let line_in = |e: &Entry| crate::config::line_of_key(&e.good.as_ref()?.1, field);
        if self
            .entries(Kind::Pipeline)
            .get(pipeline)
            .and_then(line_in)
            .is_some()
        {
            return None;
        }
        let (name, line) = self
            .entries(Kind::Instance)
            .iter()
            .rev()
            .find_map(|(n, e)| Some((n, line_in(e)?)))?;
        let why = ConfigError {
            path: None,
            line: Some(line),
            column: None,
            key: Some(field.clone()),
            msg: format!(
                "{msg}, for pipeline {}, which takes this value",
                crate::config::clip(pipeline)
            ),
        };
        Some((Kind::Instance, name.clone(), why.to_string()))
    }

    /// Tries `name` at `version` with `text` (or deletion, for version −1) against `local`.
    /// On success the new last good config is in place, the status is APPLYING, and the
    /// running config is returned for the agent to apply; on failure nothing changed but
    /// the status, FAILED, which says why.
    pub fn update(
        &mut self,
        local: &Config,
        k: Kind,
        name: &str,
        version: i64,
        text: &[u8],
    ) -> Result<Config, Refusal> {
        if version == 0 {
            let why = "version 0 is reserved".to_string();
            self.set_status(k, name, version, ConfigStatus::Failed, &why);
            return Err(why);
        }
        let text = match std::str::from_utf8(text) {
            Ok(t) => t.to_string(),
            Err(_) => {
                let why = "the detail is not UTF-8 text".to_string();
                self.set_status(k, name, version, ConfigStatus::Failed, &why);
                return Err(why);
            }
        };
        let old = self.sets[k as usize].get(name).and_then(|e| e.good.clone());
        let new = (version != -1).then_some((version, text));
        self.sets[k as usize]
            .entry(name.to_string())
            .or_insert_with(|| Entry::unset(version))
            .good = new;
        match self.effective(local) {
            // APPLYING until the agent has applied it: [`applied`](Self::applied) or
            // [`undo`](Self::undo) says how that went.
            Ok(cfg) => {
                self.set_status(k, name, version, ConfigStatus::Applying, "");
                Ok(cfg)
            }
            Err((bk, bn, why)) => {
                // Refused for another config's sake (a sink both write): say which, as the
                // line is in that one's text.
                let why = if (bk, bn.as_str()) == (k, name) {
                    why
                } else {
                    let kind = match bk {
                        Kind::Pipeline => "pipeline",
                        Kind::Instance => "instance",
                    };
                    format!("{kind} config {}: {why}", crate::config::clip(&bn))
                };
                self.sets[k as usize]
                    .get_mut(name)
                    .expect("inserted above")
                    .good = old;
                self.set_status(k, name, version, ConfigStatus::Failed, &why);
                Err(why)
            }
        }
    }

    /// The agent applied `name` at `version`: APPLIED. A deletion (−1) stays in the list
    /// only until the server has been told ([`forget_deleted`](Self::forget_deleted)).
    pub fn applied(&mut self, k: Kind, name: &str, version: i64) {
        self.set_status(k, name, version, ConfigStatus::Applied, "");
    }

    /// The server acknowledged `sent` (statuses of `k`): deletions it now knows about leave
    /// the list, as LoongCollector's agent erases them, so that they are not reported for
    /// ever. Returns whether anything left.
    pub fn forget_deleted(&mut self, k: Kind, sent: &[ConfigInfo]) -> bool {
        let set = &mut self.sets[k as usize];
        let mut gone = false;
        for c in sent {
            if c.version == -1 && c.status == ConfigStatus::Applied {
                if let Some(e) = set.get(&c.name) {
                    if e.version == -1 && e.status() == ConfigStatus::Applied {
                        set.remove(&c.name);
                        gone = true;
                    }
                }
            }
        }
        gone
    }

    /// [`forget_deleted`](Self::forget_deleted), and the list saved when anything left it,
    /// so that a restart does not report the deletion again.
    pub fn forget_told(&mut self, k: Kind, sent: &[ConfigInfo]) {
        if self.forget_deleted(k, sent) {
            if let Err(e) = self.save() {
                log::error!(
                    "fleet: cannot save {}: {e}; a restart would report deleted configs again",
                    self.path().display()
                );
            }
        }
    }

    /// Puts back the last good version of `name` (the running agent refused the config
    /// that [`update`](Self::update) accepted), and marks it FAILED with `why`.
    pub fn undo(
        &mut self,
        k: Kind,
        name: &str,
        version: i64,
        old: Option<(i64, String)>,
        why: &str,
    ) {
        if let Some(e) = self.sets[k as usize].get_mut(name) {
            e.good = old;
        }
        self.set_status(k, name, version, ConfigStatus::Failed, why);
    }

    /// Sets aside the running version of `name` (it no longer fits the local config) and
    /// marks it FAILED; false if there was nothing to set aside.
    pub fn disable(&mut self, k: Kind, name: &str, why: &str) -> bool {
        let Some(e) = self.sets[k as usize].get_mut(name) else {
            return false;
        };
        let Some((v, _)) = e.good.take() else {
            return false;
        };
        self.set_status(k, name, v, ConfigStatus::Failed, why);
        true
    }

    /// Saves the configs, atomically.
    pub fn save(&self) -> std::io::Result<()> {
        // Into a Vec, postcard fails only on a sequence of unknown length: there is none.
        let body = postcard::to_stdvec(self).expect("a Vec sink cannot fail");
        let mut out = Vec::with_capacity(body.len() + 9);
        out.extend_from_slice(MAGIC);
        out.push(FORMAT);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        let tmp = self.path.with_extension("state.tmp");
        // 0600: it holds the fleet's sink tokens (the umask set in agent::run says so too).
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Where [`save`](Self::save) writes.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn decode(b: &[u8]) -> Option<Remote> {
    let body = b.strip_prefix(MAGIC)?.strip_prefix(&[FORMAT])?;
    let (body, crc) = body.split_at(body.len().checked_sub(4)?);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return None;
    }
    postcard::from_bytes(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Sink;

    fn local(dir: &Path) -> Config {
        Config::parse(&format!(
            "data_dir = \"{}\"\n[[input]]\nname = \"local\"\npaths = [\"/var/log/a.log\"]\n[sink]\ntype = \"stdout\"\n",
            dir.display()
        ))
        .unwrap()
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tailbeat-remote-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn pipelines_of_their_own_take_what_they_leave_out_from_the_local_file() {
        let d = scratch("own");
        let local = Config::parse(&format!(
            "data_dir = \"{}\"\n[[input]]\nname = \"local\"\npaths = [\"/a\"]\n\
             [sink]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\nclient_id = \"gw\"\n",
            d.display()
        ))
        .unwrap();
        let mut r = Remote::load(&d);
        let mut try_ =
            |name: &str, text: &str| r.update(&local, Kind::Pipeline, name, 1, text.as_bytes());
        // [batch] only: its own pipeline, the local sink without the local client id.
        let cfg = try_("m", "paths = [\"/m\"]\n[batch]\nmax_lines = 5\n").unwrap();
        assert_eq!((cfg.inputs.len(), cfg.pipelines.len()), (1, 1));
        let p = &cfg.pipelines[0];
        assert_eq!((p.name.as_str(), p.batch.max_lines), ("m", 5));
        assert_eq!(p.inputs[0].paths, ["/m"]);
        assert_eq!(p.spool, local.spool);
        match (&p.sink, &local.sink) {
            (Sink::Mqtt(a), Sink::Mqtt(b)) => {
                assert_eq!(
                    (a.client_id.as_deref(), a.url.to_string()),
                    (None, b.url.to_string())
                )
            }
            other => panic!("{other:?}"),
        }
        // Errors name the key and the line of the pipeline's own text.
        let why = try_(
            "n",
            "paths = [\"/n\"]\n[sink]\ntype = \"file\"\npathh = \"x\"\n",
        )
        .unwrap_err();
        assert!(
            why.starts_with("line 4: sink.pathh: unknown field"),
            "{why}"
        );
        let why = try_("n", "pathz = [\"/n\"]\n[batch]\nmax_lines = 5\n").unwrap_err();
        assert!(why.starts_with("line 1: pathz:"), "{why}");
        let why = try_("n", "paths = [\"/n\"]\n[batch]\nmax_bytes = \"100\"\n").unwrap_err();
        assert!(why.starts_with("line 3: batch.max_bytes:"), "{why}");
        // Its name becomes a directory and topics.
        let why = try_("../n", "paths = [\"/n\"]\n[batch]\nmax_lines = 5\n").unwrap_err();
        assert!(
            why.starts_with("name:") && why.contains("directory"),
            "{why}"
        );
        // Two sinks on one file, two connections under one client id: refused.
        let file = "[sink]\ntype = \"file\"\npath = \"/tmp/p.tbf\"\n";
        try_("f1", &format!("paths = [\"/f\"]\n{file}")).unwrap();
        let why = try_("f2", &format!("paths = [\"/g\"]\n{file}")).unwrap_err();
        assert!(why.starts_with("line 4: sink.path:"), "{why}");
        // Refused for another config's sake: named, as the line is in that one's text.
        let why = try_("f0", &format!("paths = [\"/h\"]\n{file}")).unwrap_err();
        assert!(
            why.starts_with("pipeline config \"f1\": line 4: sink.path:"),
            "{why}"
        );
        let mqtt = "[sink]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1\"\nclient_id = \"gw\"\n";
        let why = try_("c", &format!("paths = [\"/c\"]\n{mqtt}")).unwrap_err();
        assert!(why.starts_with("line 5: sink.client_id:"), "{why}");
        // Without any of the three tables an input joins the local pipeline.
        let cfg = try_("j", "paths = [\"/j\"]\n").unwrap();
        assert_eq!((cfg.inputs.len(), cfg.pipelines.len()), (2, 2));
    }

    /// A client id given to one sink that another sink takes by default (the instance id
    /// for the local sink, `INSTANCE.NAME` for a pipeline of its own): refused like two
    /// given ones, when the file sets `instance_id`.
    #[test]
    fn an_mqtt_client_id_another_sink_has_by_default_is_refused() {
        let d = scratch("default-id");
        let local = Config::parse(&format!(
            "data_dir = \"{}\"\ninstance_id = \"gw-1\"\n[[input]]\nname = \"local\"\n\
             paths = [\"/a\"]\n[sink]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\n",
            d.display()
        ))
        .unwrap();
        let mut r = Remote::load(&d);
        let sink = |id: &str| {
            format!("[sink]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1\"\nclient_id = \"{id}\"\n")
        };
        let why = r
            .update(
                &local,
                Kind::Pipeline,
                "m",
                1,
                format!("paths = [\"/m\"]\n{}", sink("gw-1")).as_bytes(),
            )
            .unwrap_err();
        assert!(
            why.starts_with("line 5: sink.client_id: another pipeline's MQTT sink uses this client id (\"gw-1\")"),
            "{why}"
        );
        // A pipeline's default, taken by another pipeline's given id.
        r.update(
            &local,
            Kind::Pipeline,
            "m",
            2,
            b"paths = [\"/m\"]\n[batch]\nmax_lines = 5\n",
        )
        .unwrap();
        let why = r
            .update(
                &local,
                Kind::Pipeline,
                "n",
                1,
                format!("paths = [\"/n\"]\n{}", sink("gw-1.m")).as_bytes(),
            )
            .unwrap_err();
        assert!(
            why.contains("sink.client_id: another pipeline's MQTT sink"),
            "{why}"
        );
        r.update(
            &local,
            Kind::Pipeline,
            "n",
            2,
            format!("paths = [\"/n\"]\n{}", sink("gw-1.n")).as_bytes(),
        )
        .unwrap();
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_pipeline_of_its_own_fills_its_sinks_topic_templates_from_the_agents_tags() {
        let d = scratch("templates");
        let local = Config::parse(&format!(
            "data_dir = \"{}\"\n[[input]]\nname = \"local\"\npaths = [\"/a\"]\n[sink]\ntype = \"stdout\"\n\
             [fleet]\nserver = \"mqtt://127.0.0.1:1883\"\ntopic_prefix = \"fleet/{{region}}\"\n\
             tags = {{ region = \"eu-west\" }}\n",
            d.display()
        ))
        .unwrap();
        let mut r = Remote::load(&d);
        let sink = "[sink]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1\"\n";
        let cfg = r
            .update(
                &local,
                Kind::Pipeline,
                "m",
                1,
                format!("paths = [\"/m\"]\n{sink}topic = \"logs/{{region}}/{{instance}}\"\n")
                    .as_bytes(),
            )
            .unwrap();
        match &cfg.pipelines[0].sink {
            Sink::Mqtt(m) => {
                assert_eq!(m.topic, "logs/eu-west/{instance}");
                assert_eq!(m.rebirth.0, "fleet/eu-west");
            }
            other => panic!("{other:?}"),
        }
        // A tag the agent does not have: refused, naming the key.
        let why = r
            .update(
                &local,
                Kind::Pipeline,
                "n",
                1,
                format!("paths = [\"/n\"]\n{sink}topic = \"logs/{{site}}\"\n").as_bytes(),
            )
            .unwrap_err();
        assert!(
            why.starts_with("line 5: sink.topic: {site} names no tag"),
            "{why}"
        );
    }

    #[test]
    fn good_bad_and_deleted_pipelines() {
        let d = scratch("pipelines");
        let local = local(&d);
        let mut r = Remote::load(&d);
        r.dirty = [false; 2];
        let cfg = r
            .update(
                &local,
                Kind::Pipeline,
                "app",
                1,
                b"paths = [\"/x/*.log\"]\n",
            )
            .unwrap();
        assert_eq!(cfg.inputs.len(), 2);
        assert_eq!(cfg.inputs[1].name, "app");
        assert!(r.dirty[0] && !r.dirty[1]);
        // APPLYING until the agent applied it (issue 10, defect 7).
        assert_eq!(r.infos(Kind::Pipeline)[0].status, ConfigStatus::Applying);
        assert!(!r.settled(Kind::Pipeline, "app", 1));
        r.applied(Kind::Pipeline, "app", 1);
        assert!(r.settled(Kind::Pipeline, "app", 1));
        // A bad version names the problem and leaves version 1 running.
        let why = r
            .update(
                &local,
                Kind::Pipeline,
                "app",
                2,
                b"paths = [\"/x\"]\nbogus = 1\n",
            )
            .unwrap_err();
        assert!(why.contains("line 2") && why.contains("bogus"), "{why}");
        assert_eq!(r.infos(Kind::Pipeline)[0].status, ConfigStatus::Failed);
        assert_eq!(r.effective(&local).unwrap().inputs[1].paths, ["/x/*.log"]);
        // Checked against the whole config: the line limit must fit the local batch size.
        let why = r
            .update(
                &local,
                Kind::Pipeline,
                "app",
                3,
                b"paths = [\"/x\"]\nmax_line_bytes = \"1GiB\"\n",
            )
            .unwrap_err();
        // A check across keys, named on its line in the pipeline's own text.
        assert!(why.starts_with("line 2: max_line_bytes:"), "{why}");
        let why = r
            .update(&local, Kind::Pipeline, "local", 1, b"paths = [\"/y\"]\n")
            .unwrap_err();
        assert!(why.contains("already has an input"), "{why}");
        let cfg = r.update(&local, Kind::Pipeline, "app", -1, b"").unwrap();
        assert_eq!(cfg.inputs.len(), 1);
        r.applied(Kind::Pipeline, "app", -1);
        let told = r.infos(Kind::Pipeline);
        let app = told.iter().find(|c| c.name == "app").unwrap();
        assert_eq!((app.version, app.status), (-1, ConfigStatus::Applied));
        // Once the server acknowledged the deletion, it leaves the list (defect 6), on disk
        // too, so that a restart does not report it again.
        assert!(r.save().is_ok());
        r.forget_told(Kind::Pipeline, &told);
        assert!(r.infos(Kind::Pipeline).iter().all(|c| c.name != "app"));
        assert!(!Remote::load(&d).entries(Kind::Pipeline).contains_key("app"));
        assert!(!r.forget_deleted(Kind::Pipeline, &told));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn saved_state_survives_and_damage_is_survivable() {
        let d = scratch("save");
        let local = local(&d);
        let mut r = Remote::load(&d);
        r.update(&local, Kind::Pipeline, "app", 7, b"paths = [\"/x\"]\n")
            .unwrap();
        r.update(
            &local,
            Kind::Instance,
            "agent",
            2,
            b"log_level = \"debug\"\n",
        )
        .unwrap();
        r.applied(Kind::Pipeline, "app", 7);
        r.applied(Kind::Instance, "agent", 2);
        r.save().unwrap();
        let back = Remote::load(&d);
        assert_eq!(back.sets, r.sets);
        assert_eq!(back.dirty, [true, true]);
        let cfg = back.effective(&local).unwrap();
        assert_eq!(cfg.level(), log::LevelFilter::Debug);
        let mut b = std::fs::read(back.path()).unwrap();
        let n = b.len();
        b[n / 2] ^= 0x40;
        std::fs::write(back.path(), b).unwrap();
        assert!(Remote::load(&d).entries(Kind::Pipeline).is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn instance_configs_are_checked_too() {
        let d = scratch("instance");
        let local = local(&d);
        let mut r = Remote::load(&d);
        let why = r
            .update(
                &local,
                Kind::Instance,
                "agent",
                1,
                b"log_level = \"loud\"\n",
            )
            .unwrap_err();
        // Refused as the detail is read (the level is parsed there), with its line.
        assert!(
            why.starts_with("line 1: log_level: expected one of"),
            "{why}"
        );
        let why = r
            .update(
                &local,
                Kind::Instance,
                "agent",
                2,
                b"[spool]\nmax_byte = 1\n",
            )
            .unwrap_err();
        assert!(why.contains("max_byte"), "{why}");
        // Checked against the local file after it is read: named as the instance config
        // writes it, on its own line.
        let why = r
            .update(
                &local,
                Kind::Instance,
                "agent",
                3,
                b"# spool\n[spool]\nmax_bytes = \"1KiB\"\n",
            )
            .unwrap_err();
        assert!(
            why.starts_with("line 3: spool.max_bytes: must hold"),
            "{why}"
        );
        let mut fleet = local.clone();
        fleet.fleet =
            Some(crate::config::Fleet::from_toml("server = \"http://127.0.0.1:1\"").unwrap());
        let why = r
            .update(
                &fleet,
                Kind::Instance,
                "agent",
                4,
                b"\nheartbeat_interval = \"10ms\"\n",
            )
            .unwrap_err();
        assert!(
            why.starts_with("line 2: heartbeat_interval: must be at least 1s"),
            "{why}"
        );
        assert!(r.update(&local, Kind::Instance, "agent", 0, b"").is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A pipeline of its own takes the agent's `[spool]` when it has none: an instance config
    /// that makes that spool too small for the pipeline's frames is refused on its own line,
    /// naming the pipeline (the pipeline's text has no such key to point at).
    #[test]
    fn an_instance_config_too_small_for_a_pipeline_is_named_on_its_own_line() {
        let d = scratch("instance-clash");
        let local = local(&d);
        let mut r = Remote::load(&d);
        r.update(
            &local,
            Kind::Pipeline,
            "big",
            1,
            b"paths = [\"/b\"]\n[batch]\nmax_bytes = \"1MiB\"\n[sink]\ntype = \"stdout\"\n",
        )
        .unwrap();
        let why = r
            .update(
                &local,
                Kind::Instance,
                "agent",
                1,
                b"[spool]\nmax_bytes = \"4MiB\"\nsegment_bytes = \"512KiB\"\n",
            )
            .unwrap_err();
        assert!(
            why.starts_with("line 3: spool.segment_bytes: ") && why.contains("pipeline \"big\""),
            "{why}"
        );
        // The pipeline's own value is still blamed on the pipeline, on its line.
        let why = r
            .update(
                &local,
                Kind::Pipeline,
                "big",
                2,
                b"paths = [\"/b\"]\n[batch]\nmax_bytes = \"8MiB\"\n[spool]\nsegment_bytes = \"1MiB\"\n",
            )
            .unwrap_err();
        assert!(why.starts_with("line 5: spool.segment_bytes: "), "{why}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
