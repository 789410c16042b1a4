//! Pipeline configs from the fleet: one input, and optionally its own batching, spool and
//! sink.
//!
//! The detail is TOML: the keys of an `[[input]]` table without `name` (the config's name
//! is the input's), then optional `[batch]`, `[spool]` and `[sink]` tables. Without any of
//! the three, the input joins the local file's pipeline (its frames, spool and sink: no
//! second connection for one more file). With one or more, it is a pipeline of its own:
//! tables left out are the local file's, and its frames are numbered on their own under the
//! stream id `{instance}/{name}`.

use super::error::clip;
use super::read::{self, sub};
use super::{Batch, ConfigError, Input, Sink, Spool};

/// A pipeline with its own frames, spool and sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// The fleet config's name: its spool directory and the end of its stream id.
    pub name: String,
    /// What it reads (one input, from the fleet).
    pub inputs: Vec<Input>,
    /// How its lines become frames.
    pub batch: Batch,
    /// Its buffer on disk, `data_dir/pipelines/{name}/spool`.
    pub spool: Spool,
    /// Where its frames go.
    pub sink: Sink,
}

/// What a pipeline config from the fleet asks for.
#[derive(Debug, Clone, PartialEq)]
// Made once per config applied, and taken apart at once by `own`.
#[allow(clippy::large_enum_variant)]
pub enum FleetPipeline {
    /// One more input for the local file's pipeline.
    Joined(Input),
    /// A pipeline of its own; the tables it left out are still to be filled from the local
    /// file by [`own`](FleetPipeline::own).
    Own {
        /// Its input.
        input: Input,
        /// `[batch]`, if given.
        batch: Option<Batch>,
        /// `[spool]`, if given.
        spool: Option<Spool>,
        /// `[sink]`, if given.
        sink: Option<Sink>,
    },
}

impl FleetPipeline {
    /// The pipeline this config runs, tables left out taken from the local pipeline's.
    /// An inherited MQTT sink gets the default client id (the stream id), since two
    /// connections with one client id would throw each other off the broker.
    pub fn own(self, batch: &Batch, spool: &Spool, sink: &Sink) -> Result<Pipeline, Input> {
        match self {
            FleetPipeline::Joined(i) => Err(i),
            FleetPipeline::Own {
                input,
                batch: b,
                spool: s,
                sink: k,
            } => Ok(Pipeline {
                name: input.name.clone(),
                inputs: vec![input],
                batch: b.unwrap_or_else(|| batch.clone()),
                spool: s.unwrap_or_else(|| spool.clone()),
                sink: k.unwrap_or_else(|| {
                    let mut k = sink.clone();
                    if let Sink::Mqtt(m) = &mut k {
                        m.client_id = None;
                    }
                    k
                }),
            }),
        }
    }
}

/// Parses a pipeline config's detail (module doc). Checked alone here; against the rest of
/// the config by [`Config::validate`](super::Config::validate).
pub fn parse_pipeline(name: &str, text: &str) -> Result<FleetPipeline, ConfigError> {
    if name.is_empty() || name.len() > 128 || name.chars().any(|c| c.is_control()) {
        return Err(ConfigError {
            path: None,
            line: None,
            column: None,
            key: Some(super::KeyPath::dotted("name")),
            msg: "a pipeline name must be 1 to 128 characters, no control characters".into(),
        });
    }
    // The input's keys are the document's own, beside the optional tables; the name is the
    // config's, so a `name` key is refused as unknown.
    read::document(text, |t| {
        t.keys(&[Input::KEYS, &["batch", "spool", "sink"]])?;
        let input = Input::read(t, Some(name))?;
        let batch = t.opt("batch", Batch::read)?;
        let spool = t.opt("spool", Spool::read)?;
        let sink = t.opt("sink", |v| sub(v, Sink::read))?;
        Ok(if batch.is_none() && spool.is_none() && sink.is_none() {
            FleetPipeline::Joined(input)
        } else {
            FleetPipeline::Own {
                input,
                batch,
                spool,
                sink,
            }
        })
    })
}

/// Whether `name` can name a pipeline of its own: it becomes a directory and part of MQTT
/// topics.
pub(super) fn check_own_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{}: a pipeline with its own [batch], [spool] or [sink] needs a name of 1 to 64 \
             letters, digits, '-', '_' or '.', not starting with '.' (it names a directory and \
             MQTT topics)",
            clip(name)
        ))
    }
}
