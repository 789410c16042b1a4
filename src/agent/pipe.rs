//! One pipeline: its tailer, open batch, spool and sink settings, the wake-ups of its two
//! tasks (collect, deliver), and a command channel to each ([`ToCollect`], [`ToDeliver`]).
//! The collect task learns of every change of its life (taken out of the config, put back,
//! the agent stopping, the pipeline Stopped) as a message on its channel, not by reading a
//! flag.
//!
//! The local file's inputs, `[batch]`, `[spool]` and `[sink]` are the pipeline named `""`,
//! its spool in `data_dir/spool` and its frames carrying the instance id. A fleet pipeline
//! of its own (config::Pipeline) has `data_dir/pipelines/{name}/` for its spool and dead
//! letters, and its frames carry `{instance}/{name}`: each numbers its frames from 1, so a
//! consumer still drops repeats by `(instance, seq)`.
//!
//! Its life is one [`Life`]: Running; Draining once taken out of the config; Closing when
//! the agent stops; Stopped once a drained pipeline's tasks end. Taken out of the config, a
//! pipeline stops reading, puts its open batch in its spool, delivers its backlog and ends; its spool directory stays, with the files' positions, so
//! adding it again goes on where it left off. Restarted before the backlog is delivered,
//! the agent leaves the directory alone until the pipeline comes back (a fleet that removed
//! it also took the sink its frames were for).

use super::{Built, Local, Notify};
use crate::config::{Config, Input, Pipeline, StartAt};
use crate::frame::{BatchBuilder, FileMark};
use crate::input::{glob, Tailer};
use crate::sink::{AnySink, Sink};
use crate::spool::{Limits, Spool};
use crate::stats::latency::Track;
use crate::stats::Counters;
use crate::Error;
use smol::channel::{Receiver, Sender};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub(crate) type PipeRef = Local<Pipe>;

/// A checkpoint failure is said again at most this often while it lasts.
const CK_LOG_EVERY: Duration = Duration::from_secs(60);
/// After a failed checkpoint, the next one is not tried sooner than this (the deliver task
/// would otherwise try after every acknowledgement).
const CK_RETRY: Duration = Duration::from_secs(1);
/// A checkpoint is written once this many frames were acknowledged since the last one,
/// not only every `CHECKPOINT_EVERY` or when a segment can go: an agent that dies (a crash
/// loop, a power cut) sends again at most this many frames the sink already had, not a
/// whole backlog each time (seen: a restart every 0.7 s resent 596 frames for 131). At most
/// one small file write per 64 frames delivered, and (after the first, right after a start)
/// at most one a [`CK_ACKED_EVERY`]: draining a backlog of small frames fast would otherwise
/// write a checkpoint (a state file, a rename, two fsyncs) many times a second, on flash.
pub(super) const CHECKPOINT_ACKED: u64 = 64;
/// The least time between two checkpoints made for [`CHECKPOINT_ACKED`].
pub(super) const CK_ACKED_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct CkFailing {
    since: Instant,
    failed: u64,
    logged: Instant,
}

/// Where a pipeline is in its life. One value in place of three booleans (taken out of the
/// config, collect still reading, tasks ended) whose combinations were not all meaningful:
/// a pipeline put back in the config while its collect task had stopped reading was
/// "not removed" but "not collecting", which the deliver task read as "nothing more will
/// come" and ended on, leaving the pipeline reading with nobody to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Life {
    /// In the config: collect reads, deliver sends.
    Running,
    /// Taken out of the config: collect puts its open batch in the spool (`put_away` once it
    /// has, and then reads no more), deliver sends the backlog; then Stopped. Put back in
    /// the config meanwhile, it is Running again.
    Draining {
        /// Collect has put its batch in the spool and stopped reading.
        put_away: bool,
    },
    /// The agent is stopping (or `--once` read every file): collect has put its batch away
    /// and ended; deliver sends what it can in `shutdown_timeout` (or, with `--once`, all).
    Closing,
    /// Drained and out of the config: its tasks end and it leaves the agent's list.
    Stopped,
}

impl Life {
    /// Out of the config: draining, or done.
    pub(super) fn removed(self) -> bool {
        matches!(self, Life::Draining { .. } | Life::Stopped)
    }

    /// Collect is reading, or has yet to put its batch away: more frames may come.
    pub(super) fn collecting(self) -> bool {
        matches!(self, Life::Running | Life::Draining { put_away: false })
    }

    /// Collect ended (shutdown, `--once`, or the pipeline stopped).
    pub(super) fn collect_ended(&mut self) {
        *self = match *self {
            Life::Running | Life::Closing => Life::Closing,
            Life::Draining { .. } => Life::Draining { put_away: true },
            Life::Stopped => Life::Stopped,
        }
    }

    /// Collect put a removed pipeline's batch away; a pipeline put back in the config
    /// meanwhile stays Running.
    pub(super) fn batch_put_away(&mut self) {
        if let Life::Draining { .. } = self {
            *self = Life::Draining { put_away: true };
        }
    }
}

/// What the agent tells a pipeline's deliver task, on the pipeline's command channel
/// ([`COMMANDS`] at most waiting; a command sent to a full channel pushes out the oldest
/// sink, never a stop: see `send`).
#[derive(Debug)]
pub(super) enum ToDeliver {
    /// From now on, send through this sink (the config changed it). Only the newest
    /// matters, so losing an older one to a full channel loses nothing.
    Sink(AnySink),
    /// The agent is stopping: cut a retry backoff short (new frames must not).
    Stop,
}

/// Commands that may wait on a pipeline's channel: a stop and a new sink, and one more
/// new sink, which pushes out the oldest.
const COMMANDS: usize = 3;

/// What the agent tells a pipeline's collect task, on its command channel
/// ([`COLLECT_COMMANDS`] at most waiting). The task keeps its own view of its life from
/// these, in order; a full channel never loses a stop, nor the newest change of life, to a
/// wake-up (see `send_collect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ToCollect {
    /// Look again now (new settings). Coalesces: one waiting is as good as many.
    Wake,
    /// Taken out of the config: put the open batch in the spool and read no more.
    Drain,
    /// Put back in the config: read again.
    Run,
    /// The agent is stopping, or the pipeline is Stopped (drained): put the open batch in
    /// the spool, if it fits, and end. Nothing comes after it that matters.
    Stop,
}

/// Commands that may wait on a collect task's channel. Two is enough for "a change of life,
/// then a stop"; one more so that a wake-up finds room more often than not (one that finds
/// the channel full is not needed: the task wakes for what is there).
const COLLECT_COMMANDS: usize = 3;

/// What a pipeline's tasks start with: the deliver task's sink and the receiving end of its
/// command channel, and the receiving end of the collect task's (the sending ends stay in
/// the [`Pipe`]).
pub(super) struct Outbox {
    pub(super) sink: AnySink,
    pub(super) commands: Receiver<ToDeliver>,
    pub(super) collect: Receiver<ToCollect>,
}

pub(crate) struct Pipe {
    /// `""` for the local file's pipeline, else the fleet config's name.
    pub(crate) name: String,
    /// The id in its frames (module doc).
    pub(crate) stream: String,
    /// `data_dir` for the local pipeline, `data_dir/pipelines/{name}` for the others.
    dir: PathBuf,
    pub(crate) cfg: Pipeline,
    pub(crate) tailer: Tailer,
    pub(super) batch: BatchBuilder,
    pub(crate) spool: Spool,
    /// A frame built but not yet in the spool (the disk was full): appended before anything new.
    pub(super) pending: Option<Built>,
    /// Frames are built no larger than this (plain bytes) since the sink refused one as too
    /// large ([`cut_refused`](Self::cut_refused)); until the sink changes.
    pub(crate) frame_cap: Option<usize>,
    /// The stage timestamps of its timed frames in flight (`stats::latency`).
    pub(super) track: Track,
    /// Where it is in its life; Stopped is set by deliver, which also takes the pipe out
    /// of the agent's list.
    pub(super) life: Life,
    /// When the last checkpoint was tried.
    pub(super) last_checkpoint: Instant,
    /// When the tailer last looked for new, rotated and truncated files.
    pub(super) last_scan: Option<Instant>,
    /// Positions or sequence numbers moved since the last checkpoint that was written.
    pub(super) changed: bool,
    /// Frames acknowledged since the last checkpoint was tried ([`CHECKPOINT_ACKED`]).
    pub(super) acked_since_ck: u64,
    /// A file loss was counted that no checkpoint written since records
    /// (`collect::checkpoint_loss`).
    pub(super) loss_unsaved: bool,
    /// An acknowledgement checkpoint was written since the pipeline opened: later ones
    /// wait [`CK_ACKED_EVERY`] after the last checkpoint.
    pub(super) acked_ck_once: bool,
    /// Checkpoints are failing (a full disk): since when, how many, when last logged.
    ck_failing: Option<CkFailing>,
    /// Collect has yielded in the middle of a backlog and comes back with more frames at
    /// once: deliver may let a few more in before one fsync covers them all (group commit,
    /// `deliver`). False whenever collect waits for anything.
    pub(super) reading_on: bool,
    /// Bytes of frames collect appended since deliver last synced them or found nothing to
    /// sync (group commit, `deliver`).
    pub(super) grouped: u64,
    /// When the first of those was appended.
    pub(super) grouped_since: Option<Instant>,
    /// Rung when a frame is in the spool.
    pub(super) spooled: Notify,
    /// Rung when the sink acknowledged frames (room in the spool).
    pub(super) space: Notify,
    /// To the collect task: its life changes, a stop, a wake-up.
    to_collect: Sender<ToCollect>,
    /// To the deliver task: a new sink, a stop. A channel, not a field the task polls: the
    /// task waits on it without borrowing the pipe.
    to_deliver: Sender<ToDeliver>,
}

/// The checkpoint is lost (the agent ran before, `state` is gone or unreadable): files whose
/// position no frame in the spool carries get the one `start_at` gives a file at the first
/// start, because that is the setting by which the user said what to do with a file whose
/// position the agent does not know. `"tail"`: skipped to their end, counted
/// (`positions_lost_bytes`; lines written while the agent was stopped are among them, and
/// lines already sent too: no record says which); `"head"`: read again from their head, so
/// nothing is lost but lines already delivered arrive again under new sequence numbers.
/// Either way each file is logged with its byte count.
fn lost_positions(inputs: &[Input], marks: &mut Vec<FileMark>, c: &mut Counters) {
    for input in inputs {
        let mut found = glob::Expansion::default();
        for p in &input.paths {
            glob::expand(p, &mut found);
        }
        let mut paths = found.files;
        paths.retain(|p| !input.exclude.iter().any(|x| glob::matches(x, p)));
        crate::sort::sort(&mut paths);
        paths.dedup();
        for p in paths {
            let Ok(m) = std::fs::metadata(&p) else {
                continue;
            };
            if !m.is_file() || marks.iter().any(|k| (k.dev, k.ino) == (m.dev(), m.ino())) {
                continue;
            }
            // A mark at the end (tail: what was written while stopped is skipped, and
            // counted), or one that knows nothing (head: read again, and the generations
            // of its log modified since the spool's positions, its frames or else its
            // oldest segment, may hold lines of that run too: read before it).
            let at = match input.start_at {
                StartAt::Tail => {
                    log::warn!(
                        "{}: position lost: skipped {} bytes to its end (start_at = \"tail\"); lines written while the agent was stopped are among them",
                        p.display(),
                        m.len()
                    );
                    c.positions_lost_bytes += m.len();
                    m.len()
                }
                StartAt::Head => {
                    log::warn!(
                        "{}: position lost: reading again {} bytes from its head (start_at = \"head\"); lines delivered before arrive again under new sequence numbers",
                        p.display(),
                        m.len()
                    );
                    0
                }
            };
            marks.push(FileMark {
                path: p.as_os_str().as_bytes().to_vec(),
                dev: m.dev(),
                ino: m.ino(),
                fp_len: 0,
                fp: 0,
                offset: at,
                size: at,
                tail: None,
            });
        }
    }
}

/// The local file's pipeline, then the fleet's pipelines of their own.
pub(super) fn pipelines(cfg: &Config) -> impl Iterator<Item = Pipeline> + '_ {
    std::iter::once(Pipeline {
        name: String::new(),
        inputs: cfg.inputs.clone(),
        batch: cfg.batch.clone(),
        spool: cfg.spool.clone(),
        sink: cfg.sink.clone(),
    })
    .chain(cfg.pipelines.iter().cloned())
}

fn limits(p: &Pipeline) -> Limits {
    Limits {
        max_bytes: p.spool.max_bytes.0,
        segment_bytes: p.spool.segment_bytes.0,
        on_full: p.spool.on_full,
        fsync: p.spool.fsync,
        // A file sink that fsyncs keeps what it acknowledges and reads it back at start-up
        // (`Spool::open_behind`): the spool need not write it to the disk a second time.
        in_sink: matches!(p.sink, crate::config::Sink::File { fsync: true, .. }),
    }
}

fn max_payload(p: &Pipeline) -> usize {
    // A frame holds at most batch.max_bytes, or one line of max_line_bytes plus overhead;
    // accept anything written under a larger past config, up to the format's hard limit.
    (p.batch.max_bytes.0 as usize * 4).max(1 << 20)
}

impl Pipe {
    /// Opens the pipeline's spool (recovering what a crash left) and builds its sink.
    pub(super) fn open(
        cfg: Pipeline,
        data_dir: &Path,
        instance: &str,
        c: &mut Counters,
    ) -> Result<(Pipe, Outbox), Error> {
        let (dir, stream) = if cfg.name.is_empty() {
            (data_dir.to_path_buf(), instance.to_string())
        } else {
            (
                data_dir.join("pipelines").join(&cfg.name),
                format!("{instance}/{}", cfg.name),
            )
        };
        let sink =
            AnySink::new(&cfg.sink, &stream, &dir, cfg.spool.max_bytes.0).map_err(Error::Sink)?;
        let mut rec = Spool::open_behind(
            &dir.join("spool"),
            limits(&cfg),
            max_payload(&cfg),
            &mut |from, gone, files| sink.replay(&stream, from, gone, files),
            c,
        )
        .map_err(Error::Spool)?;
        // The sink's own record of the last frame it holds: the sequence never goes back
        // even when the spool lost every trace of it.
        let held = sink.holds(&stream);
        let raised = rec.spool.sink_holds(held);
        let (mut first_run, mut positions_lost) = (rec.first_run, rec.positions_lost);
        if first_run && held > 0 {
            // No spool at all, but the sink has this stream's frames: not a first start.
            log::warn!(
                "{}: the spool is empty but the sink holds frames up to {held}: the files' positions are lost",
                dir.display()
            );
            (first_run, positions_lost) = (false, true);
        }
        let mut marks = rec.marks;
        if positions_lost {
            lost_positions(&cfg.inputs, &mut marks, c);
        }
        if rec.needs_checkpoint || raised || positions_lost {
            // What start-up found (losses counted, numbers skipped, positions chosen) is
            // recorded at once: a crash before the first checkpoint must not count or skip
            // it again, nor read again what was just declared skipped. As of when the
            // positions were taken: a crash before the next checkpoint resumes them knowing
            // what changed since.
            if let Err(e) = rec.spool.checkpoint(marks.clone(), rec.as_of) {
                log::error!("{e}");
            }
        }
        let tailer = Tailer::new(cfg.inputs.clone(), marks, rec.as_of, first_run);
        let mut batch = BatchBuilder::new(cfg.batch.max_lines, cfg.batch.max_bytes.0 as usize);
        batch.set_codec(cfg.batch.compression);
        let (to_deliver, commands) = smol::channel::bounded(COMMANDS);
        let (to_collect, collect) = smol::channel::bounded(COLLECT_COMMANDS);
        Ok((
            Pipe {
                name: cfg.name.clone(),
                stream,
                dir,
                cfg,
                tailer,
                batch,
                spool: rec.spool,
                pending: None,
                frame_cap: None,
                track: Track::new(0),
                life: Life::Running,
                last_checkpoint: Instant::now(),
                last_scan: None,
                changed: false,
                acked_since_ck: 0,
                loss_unsaved: false,
                acked_ck_once: false,
                ck_failing: None,
                reading_on: false,
                grouped: 0,
                grouped_since: None,
                spooled: Notify::new(),
                space: Notify::new(),
                to_collect,
                to_deliver,
            },
            Outbox {
                sink,
                commands,
                collect,
            },
        ))
    }

    /// The sink `cfg` asks for, if it differs from the running one.
    pub(super) fn sink_for(&self, cfg: &Pipeline) -> Result<Option<AnySink>, String> {
        if cfg.sink == self.cfg.sink {
            return Ok(None);
        }
        AnySink::new(&cfg.sink, &self.stream, &self.dir, cfg.spool.max_bytes.0)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// Switches to `cfg` in place (and to `sink`, built by [`sink_for`](Self::sink_for)).
    pub(super) fn update(&mut self, cfg: Pipeline, sink: Option<AnySink>) {
        if cfg.inputs != self.cfg.inputs {
            self.tailer.set_inputs(cfg.inputs.clone());
            // New globs are looked at now, not at the next poll (which may be a minute
            // away when inotify watches everything).
            self.last_scan = None;
        }
        if sink.is_some() {
            // A new sink: what the old one refused says nothing about it.
            self.frame_cap = None;
        }
        self.batch
            .set_limits(cfg.batch.max_lines, self.frame_bytes(&cfg));
        self.batch.set_codec(cfg.batch.compression);
        self.spool.set_limits(limits(&cfg));
        if let Some(sink) = sink {
            self.command(ToDeliver::Sink(sink));
        }
        if let Life::Draining { .. } = self.life {
            log::info!("{}: back in the config, reading again", self.label());
            self.life = Life::Running;
            self.tell_collect(ToCollect::Run);
        } else {
            self.tell_collect(ToCollect::Wake);
        }
        self.cfg = cfg;
        self.spooled.notify();
    }

    /// The largest frame to build under `cfg`: `batch.max_bytes`, or less if the sink
    /// refused a frame as too large.
    fn frame_bytes(&self, cfg: &Pipeline) -> usize {
        let max = cfg.batch.max_bytes.0 as usize;
        self.frame_cap.map_or(max, |c| c.min(max))
    }

    /// The sink refused the oldest frame in flight, `seq`, as too large (`why` says who and
    /// how): its lines go back in the spool as smaller frames under new numbers, the frame
    /// is released, frames are built no larger than half of it from now on, and a
    /// checkpoint records it all. False if it could not be done (a frame that does not
    /// decode or cannot be cut, a full disk): the frame stays in flight, to be sent again
    /// after the usual backoff.
    pub(super) fn cut_refused(
        &mut self,
        seq: u64,
        frame: &[u8],
        why: &str,
        c: &mut Counters,
    ) -> bool {
        if self.pending.is_some() {
            // A frame built under the next number waits for the disk: pieces numbered
            // before it would give that number to two frames. Cut once it is in.
            log::warn!(
                "{}: frame {seq}: {why}; cut once the frame waiting for the disk is in the spool",
                self.label()
            );
            return false;
        }
        let mut dec = crate::frame::Decoder::new(max_payload(&self.cfg));
        let plain = match dec.payload(frame) {
            Ok((_, p)) => p.len(),
            Err(e) => {
                log::error!(
                    "{}: frame {seq}: {why}, and it does not decode: {e}",
                    self.label()
                );
                return false;
            }
        };
        // Half the refused frame, however small: a frame of two lines or more then always
        // gives two pieces (one line each at worst); a single line never comes here (the
        // sink sets it aside).
        let cap = plain / 2;
        let marks = self.tailer.marks(&self.batch);
        let first = self.spool.next_seq();
        let pieces = match crate::frame::rebatch(
            frame,
            cap,
            self.cfg.batch.compression,
            first,
            &marks,
            &mut dec,
        ) {
            Ok(p) if p.len() > 1 => p,
            Ok(_) => {
                log::error!(
                    "{}: frame {seq}: {why}; it could not be cut smaller",
                    self.label()
                );
                return false;
            }
            Err(e) => {
                log::error!(
                    "{}: frame {seq}: {why}, and it does not decode: {e}",
                    self.label()
                );
                return false;
            }
        };
        if let Err(e) = self.spool.replace(seq, &pieces) {
            log::error!(
                "{}: frame {seq}: {why}; cutting it smaller: {e}",
                self.label()
            );
            c.spool_write_errors += 1;
            return false;
        }
        let last = first + pieces.len() as u64 - 1;
        c.frames_split += 1;
        c.frames_spooled += pieces.len() as u64;
        if self.frame_cap.is_none_or(|c| cap < c) {
            self.frame_cap = Some(cap);
            let max = self.frame_bytes(&self.cfg);
            self.batch.set_limits(self.cfg.batch.max_lines, max);
            log::warn!(
                "{}: frame {seq}: {why}; cut into frames {first} to {last}, and frames are now built at most {max} bytes (batch.max_bytes = {}) until the sink changes",
                self.label(),
                self.cfg.batch.max_bytes.0
            );
        } else {
            log::info!(
                "{}: frame {seq}: {why}; cut into frames {first} to {last}",
                self.label()
            );
        }
        self.changed = true;
        self.checkpoint();
        true
    }

    /// Stops reading; the backlog is still delivered.
    pub(super) fn remove(&mut self) {
        if !self.life.removed() {
            log::info!(
                "{}: taken out of the config; reading stops, {} frames left to deliver",
                self.label(),
                self.spool.backlog()
            );
            self.life = match self.life {
                // Collect has ended already (the agent is stopping, or `--once` read every
                // file): the pipeline stays Closing. As Draining, a config putting it back
                // would make it Running with no collect task left to end it, and deliver
                // (waiting for "no more frames") would never finish.
                Life::Closing => Life::Closing,
                _ => Life::Draining { put_away: false },
            };
            if self.life != Life::Closing {
                self.tell_collect(ToCollect::Drain);
            }
            self.spooled.notify();
        }
    }

    /// Files' positions and the spool's state to disk, then the segments that makes
    /// redundant go. False if it could not be written (a full disk): `changed` stays set so
    /// that it is tried again, and the failure is logged once, then once a minute.
    pub(super) fn checkpoint(&mut self) -> bool {
        let marks = self.tailer.marks(&self.batch);
        let now = Instant::now();
        self.last_checkpoint = now;
        self.acked_since_ck = 0;
        match self.spool.checkpoint(marks, Some(super::now_ms())) {
            Ok(()) => {
                self.loss_unsaved = false;
                if let Some(f) = self.ck_failing.take() {
                    log::info!(
                        "{}: checkpoint written again, after {} s and {} failed attempts",
                        self.label(),
                        now.duration_since(f.since).as_secs(),
                        f.failed
                    );
                }
                self.changed = false;
                true
            }
            Err(e) => {
                let label = self.label();
                match &mut self.ck_failing {
                    None => {
                        log::error!("{label}: checkpoint: {e}; acknowledged segments stay on disk until it can be written");
                        self.ck_failing = Some(CkFailing {
                            since: now,
                            failed: 1,
                            logged: now,
                        });
                    }
                    Some(f) => {
                        f.failed += 1;
                        if now.duration_since(f.logged) >= CK_LOG_EVERY {
                            f.logged = now;
                            log::error!(
                                "{label}: checkpoint: {e}; still failing after {} s ({} attempts)",
                                now.duration_since(f.since).as_secs(),
                                f.failed
                            );
                        }
                    }
                }
                self.changed = true;
                false
            }
        }
    }

    /// Whether to try a checkpoint now: unless the last one failed less than [`CK_RETRY`]
    /// ago.
    pub(super) fn checkpoint_due(&self) -> bool {
        self.ck_failing.is_none() || self.last_checkpoint.elapsed() >= CK_RETRY
    }

    /// Rings every wake-up, and tells both tasks to stop (shutdown).
    pub(super) fn wake_all(&self) {
        for n in [&self.spooled, &self.space] {
            n.notify();
        }
        self.tell_collect(ToCollect::Stop);
        self.command(ToDeliver::Stop);
    }

    /// Drained and out of the config (the deliver task, at its end): Stopped, and the
    /// collect task told to end.
    pub(super) fn stopped(&mut self) {
        self.life = Life::Stopped;
        self.tell_collect(ToCollect::Stop);
    }

    /// Sends `c` to the collect task. Never waits (see [`send_collect`]).
    fn tell_collect(&self, c: ToCollect) {
        send_collect(&self.to_collect, c);
    }

    /// Sends `c` to the deliver task. Never waits: a full channel gives up its oldest
    /// command (module doc of [`ToDeliver`]); a deliver task that ended takes none.
    fn command(&self, c: ToDeliver) {
        send(&self.to_deliver, c);
    }

    /// For logs: `pipeline "app"`, or `local pipeline`.
    pub(crate) fn label(&self) -> String {
        if self.name.is_empty() {
            "local pipeline".into()
        } else {
            format!("pipeline {:?}", self.name)
        }
    }
}

/// Sends `c` without waiting. A full channel gives up its oldest command; a stop given up
/// that way is sent again and gives up the next oldest instead, a sink (only the newest sink
/// matters): a stop is never lost to config changes, which would leave a retry backoff of up
/// to an hour uncut at shutdown.
fn send(tx: &Sender<ToDeliver>, c: ToDeliver) {
    if let Ok(Some(ToDeliver::Stop)) = tx.force_send(c) {
        let _ = tx.force_send(ToDeliver::Stop);
    }
}

/// Sends `c` to a collect task without waiting. A wake-up that finds the channel full is
/// dropped (the task has something to wake for already), so it never pushes out a change
/// of life. A change of life or a stop pushes out the oldest command when the channel is
/// full: the task's view is the newest change (an older one it never saw is one it would
/// have slept through), and a stop pushed out so is sent again, pushing out the next
/// oldest, never the change just sent (the channel holds more than two).
fn send_collect(tx: &Sender<ToCollect>, c: ToCollect) {
    if c == ToCollect::Wake {
        let _ = tx.try_send(c);
    } else if let Ok(Some(ToCollect::Stop)) = tx.force_send(c) {
        let _ = tx.force_send(ToCollect::Stop);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(rx: &Receiver<ToCollect>) -> Vec<ToCollect> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn a_wake_up_never_pushes_out_a_change_of_life() {
        let (tx, rx) = smol::channel::bounded(COLLECT_COMMANDS);
        send_collect(&tx, ToCollect::Drain);
        for _ in 0..5 {
            send_collect(&tx, ToCollect::Wake);
        }
        let got = waiting(&rx);
        assert_eq!(got[0], ToCollect::Drain, "{got:?}");
        assert_eq!(got.len(), COLLECT_COMMANDS, "{got:?}");
    }

    #[test]
    fn a_stop_and_the_newest_change_of_life_are_never_pushed_out() {
        let (tx, rx) = smol::channel::bounded(COLLECT_COMMANDS);
        send_collect(&tx, ToCollect::Stop);
        for i in 0..7 {
            let c = if i % 2 == 0 {
                ToCollect::Drain
            } else {
                ToCollect::Run
            };
            send_collect(&tx, c);
            send_collect(&tx, ToCollect::Wake);
        }
        // The last sent was Drain (i = 6).
        let got = waiting(&rx);
        assert_eq!(
            got.iter().filter(|&&c| c == ToCollect::Stop).count(),
            1,
            "{got:?}"
        );
        let last_life = got
            .iter()
            .rev()
            .find(|&&c| matches!(c, ToCollect::Drain | ToCollect::Run));
        assert_eq!(last_life, Some(&ToCollect::Drain), "{got:?}");
    }

    // From the review of the command channel: a stop queued at shutdown was pushed out by
    // three sink changes (SIGHUP still reloads while the agent stops).
    #[test]
    fn a_stop_is_never_pushed_out_by_sink_changes() {
        let (tx, rx) = smol::channel::bounded(COMMANDS);
        send(&tx, ToDeliver::Stop);
        for _ in 0..5 {
            send(&tx, ToDeliver::Sink(AnySink::Stdout(Default::default())));
        }
        let got: Vec<bool> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|c| matches!(c, ToDeliver::Stop))
            .collect();
        assert_eq!(got.len(), COMMANDS);
        assert_eq!(got.iter().filter(|&&stop| stop).count(), 1, "{got:?}");
        // The newest sink is still there.
        assert!(!got[COMMANDS - 1] || !got[COMMANDS - 2], "{got:?}");
    }
}
