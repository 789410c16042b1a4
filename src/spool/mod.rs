//! The spool: frames on disk between the batcher and the sink.
//!
//! Owns the files under `data_dir/spool/`: segment files named by the first sequence number
//! they were opened for (`00000000000000000042.seg`), and the checkpoint in two copies,
//! `state` (the newest) and `state.1` (the one before). What always holds:
//! - a frame is handed to the sink only once it is durable (fsynced, unless `fsync = false`),
//!   or, behind a sink that fsyncs what it acknowledges (`Limits::in_sink`), unsynced: it is
//!   durable once acknowledged, and a checkpoint fsyncs the spool first while any frame it
//!   covers is not (positions are never ahead of durable frames, in the spool or the sink);
//! - `state` is there at every moment once a checkpoint was written: the new copy is written
//!   whole under another name and renamed over it, and `state` becomes `state.1` through a
//!   hard link (where the file system has them), never by being renamed away;
//! - a segment is deleted only after both copies of the checkpoint cover every line in it
//!   (or `drop_oldest` recorded and counted its frames), so the file offsets of a restart
//!   never point before what the spool already released, even from the older copy;
//! - the sequence number never goes back, whatever happened to `state`: at start-up it is at
//!   least every segment's name (the spool always keeps one segment, an empty one if all is
//!   delivered), the newest frame + 1, and every number recorded as gone;
//! - every segment holds consecutive numbers from its name on, so a number that is neither
//!   acknowledged, nor in a segment, nor recorded as gone is a loss, counted at start-up in
//!   frames (`spool_lost_frames`) and recorded so it is counted once;
//! - a frame a sink refused as too large is released only once the frames it was cut into
//!   are appended after everything else ([`Spool::replace`]); its number is then recorded as
//!   gone, never sent again once a checkpoint holds it;
//! - the spool is never read whole: one frame at a time, through a buffer of one frame; a
//!   frame appended in this run is read back in one read, its head remembered (at most
//!   `MAX_KNOWN` of them), never inflated for it;
//! - a torn or corrupt record never stops the agent: it is skipped, counted, and (at the end
//!   of a segment) cut off, so appends continue on a clean boundary; anything under a
//!   segment's name that is not a regular file, or whose number is beyond any sequence
//!   number (`MAX_SEGMENT_ID`), is set aside as `NAME.corrupt`.
//!
//! The checkpoint needs no fsync ordering against the frames: every batch frame names the
//! files it read and where it stopped, so at start-up the positions are the `state` file's,
//! moved forward by every frame written after it. A frame lost to power loss takes its
//! positions with it, and its lines are read again.

use crate::config::OnFull;
use crate::frame::{self, Checkpoint, FileMark, FrameReader, Item};
use crate::stats::Counters;
use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

mod ranges;
mod read;
pub(crate) use read::{advance, advance_by};
use read::{read_frame_at, read_known_at, resync, scan_segment};

/// The spool's limits, from `[spool]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `spool.max_bytes`.
    pub max_bytes: u64,
    /// `spool.segment_bytes`.
    pub segment_bytes: u64,
    /// `spool.on_full`.
    pub on_full: OnFull,
    /// `spool.fsync`.
    pub fsync: bool,
    /// With `fsync`: the sink fsyncs every frame it acknowledges (a file sink with `fsync`),
    /// so a frame is durable once it is there, and the spool's copy is only the way to it.
    /// Frames are then sent without an fsync of the spool; the spool fsyncs them only when a
    /// checkpoint would otherwise cover lines of frames the sink has not acknowledged (see
    /// [`Spool::checkpoint`]). A segment deleted before the kernel writes it back never
    /// reaches the disk: each byte is written once, to the sink.
    pub in_sink: bool,
}

/// A spool operation that failed, with the file it was about.
#[derive(Debug)]
pub struct SpoolError {
    /// The file or directory.
    pub path: PathBuf,
    /// What was being done.
    pub op: &'static str,
    /// The OS error.
    pub source: io::Error,
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spool: {} {}: {}",
            self.op,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for SpoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn ctx<T>(r: io::Result<T>, op: &'static str, path: &Path) -> Result<T, SpoolError> {
    r.map_err(|source| SpoolError {
        path: path.to_path_buf(),
        op,
        source,
    })
}

#[derive(Debug)]
struct Segment {
    id: u64,
    path: PathBuf,
    len: u64,
    /// Bytes known to be on stable storage; the sender reads no further.
    durable: u64,
    last_seq: u64,
    /// Bytes known to be fsynced (with `in_sink`, `durable` runs ahead of it).
    on_disk: u64,
    /// Damaged ranges found at start-up, `(start, end)`, so the sender steps over them
    /// without reporting them twice. At most [`MAX_HOLES`]; past that, a hole is simply
    /// found (and counted) again when the sender reaches it.
    holes: Vec<(u64, u64)>,
}

const MAX_HOLES: usize = 256;

/// What the sender needs of a batch frame besides its bytes: given by the batcher as it
/// appends, so reading the frame back costs one read and a CRC check, not an inflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Lines in the frame.
    pub lines: u64,
    /// `base_ts_ms` of the frame.
    pub base_ts_ms: u64,
}

/// A frame appended in this run, not yet read back: where it is and what it holds.
#[derive(Debug, Clone, Copy)]
struct Known {
    seg: u64,
    pos: u64,
    seq: u64,
    base_ts_ms: u64,
    /// A frame is at most 16 MiB, and holds fewer lines than bytes.
    len: u32,
    lines: u32,
}

/// Most [`Known`] records kept (40 bytes each, 160 KiB at most, held only while a backlog
/// of that many frames waits): a sink slower than the reader (MQTT) lets the backlog grow,
/// and a frame past this is read back the slow way, which inflates it (measured, musl
/// x86_64, 1,000,000 lines into Mosquitto: 1.35 s with 256 records, 0.68 s with 4,096).
const MAX_KNOWN: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct InFlight {
    seq: u64,
    seg: u64,
    pos: u64,
    lines: u64,
    base_ts_ms: u64,
    /// Its segment was deleted by drop_oldest while the sink held it.
    orphan: bool,
}

/// What [`Spool::open`] recovered.
#[derive(Debug)]
pub struct Recovered {
    /// The spool.
    pub spool: Spool,
    /// File positions to resume from.
    pub marks: Vec<FileMark>,
    /// No state existed, nor any segment: `start_at` applies.
    pub first_run: bool,
    /// The agent ran before (segments exist, or a `state` that could not be read) but its
    /// checkpoint is lost: the files' positions are only those the spool's frames carry.
    pub positions_lost: bool,
    /// Start-up found something to record (a loss counted, numbers skipped, positions lost):
    /// write a checkpoint as soon as the positions are known, so a crash does not count it
    /// again.
    pub needs_checkpoint: bool,
    /// When `marks` were taken, in milliseconds since the Unix epoch, if the checkpoint says
    /// (one written before it said has no time): what changed in the files' directories
    /// since happened while the agent was not looking.
    pub as_of: Option<u64>,
}

/// The bounded, crash-safe frame buffer.
///
/// Its limit is `spool.max_bytes` of segment files on disk; memory is one frame buffer, one
/// buffer to inflate a compressed frame's head into (at most `max_payload`), and one small
/// record per segment and per frame in flight (at most the sink's window).
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    limits: Limits,
    max_payload: usize,
    /// Inflates compressed frames to read their heads, never past `max_payload`.
    dec: frame::Decoder,
    /// Frames appended in this run and not yet read back, oldest first (at most
    /// [`MAX_KNOWN`]): their heads without inflating them.
    known: VecDeque<Known>,
    segs: VecDeque<Segment>,
    writer: Option<File>,
    reader: Option<(u64, File)>,
    next_seq: u64,
    /// Every number below this may have been given out: `seq`, written before the first
    /// frame at or past it (see [`SEQ_RESERVE`]).
    reserved: u64,
    acked: u64,
    cursor: (u64, u64),
    in_flight: VecDeque<InFlight>,
    /// Frames appended since the last fsync.
    unsynced: bool,
    /// The active segment lost bytes while the agent ran ([`lost_under_us`]): the next
    /// append starts a new one.
    roll: bool,
    /// Corrupt records and bytes found where no counters were at hand (an append), counted
    /// at the sender's next call.
    lost: (u64, u64),
    /// Timestamp of the oldest unacknowledged frame, kept when a rewind empties the window,
    /// so the fleet sees how old the backlog is while the link is down.
    rewound_head_ts: Option<u64>,
    /// `acked` as written in `state`, and in `state.1`: segments are deleted only up to the
    /// older, so that either copy with the frames after it gives the positions.
    state_acked: u64,
    older_acked: u64,
    /// An acknowledged segment was deleted to make room for a checkpoint the disk then
    /// refused anyway: no other goes that way until a checkpoint is written (see
    /// `checkpoint`).
    deleted_for_room: bool,
    /// The last checkpoint written: `drop_oldest` writes it again with the numbers it
    /// dropped, before it deletes them. Its positions are empty until the first checkpoint
    /// of the run, so a checkpoint comes before any `drop_oldest` (the collector takes one
    /// first: the frames about to go must not be read again at a restart).
    last: Checkpoint,
    /// When `last`'s positions were taken, in milliseconds since the Unix epoch.
    as_of: Option<u64>,
    /// Numbers that will never be in the spool again and are already accounted for: dropped
    /// by `drop_oldest`, counted lost at start-up, or never given out. Kept in `state` so a
    /// restart neither counts them again nor sends what is left of them; at most
    /// [`MAX_GONE`] ranges, those above `acked` only.
    gone: ranges::Ranges,
}

/// Most ranges kept in [`Spool::gone`] (past it the oldest are forgotten: `ranges::prune`).
/// There are none or a few; many take many losses or damaged restarts while the link is
/// down, each range at most ~20 bytes in `state`.
const MAX_GONE: usize = 1024;

fn seg_name(id: u64) -> String {
    format!("{id:020}.seg")
}

/// A sink's read-back at start-up (see [`Spool::open_behind`]): `(from, gone, files)` to
/// the last number it holds.
pub type ReadBack<'a> = dyn FnMut(u64, &[(u64, u64)], &mut Vec<FileMark>) -> u64 + 'a;

impl Spool {
    /// Opens (or creates) the spool in `dir`, scanning every segment: corrupt and torn records
    /// are skipped and counted in `c`, a torn tail is cut off, fully acknowledged segments are
    /// deleted, anything under a segment's name that is not a regular file is set aside
    /// (`NAME.corrupt`), and frames missing from the spool are counted in frames.
    ///
    /// The next sequence number is the highest of: the checkpoint's, the newest frame's + 1,
    /// every segment's name (a segment is created under the number the next frame gets, so
    /// an emptied spool still knows it), and the numbers already accounted for. It never goes
    /// back whatever happened to `state`.
    ///
    /// # Errors
    /// Only when the directory or a segment cannot be read or written at all; a damaged
    /// record is never an error.
    pub fn open(
        dir: &Path,
        limits: Limits,
        max_payload: usize,
        c: &mut Counters,
    ) -> Result<Recovered, SpoolError> {
        Spool::open_behind(dir, limits, max_payload, &mut |_, _, _| 0, c)
    }

    /// [`open`](Self::open), for a sink that keeps what it acknowledged (a file sink):
    /// `sink(from, gone, files)` moves `files` forward by every frame of this stream the sink
    /// holds numbered `from` or later, in order, and returns the last one's number (0 for
    /// none). Those frames count as acknowledged, and the checkpoint's positions go with
    /// them, whatever the spool still has of them: with `in_sink` a power cut may take the
    /// spool's unsynced copies of frames the sink holds. A sink missing numbers after `from`
    /// that are not in `gone` (`gone`: numbers never sent) is not the whole record, and
    /// returns 0 without moving anything.
    pub fn open_behind(
        dir: &Path,
        limits: Limits,
        max_payload: usize,
        sink: &mut ReadBack<'_>,
        c: &mut Counters,
    ) -> Result<Recovered, SpoolError> {
        ctx(fs::create_dir_all(dir), "create", dir)?;
        // Two copies of the checkpoint, the newest in `state`, the one before in `state.1`:
        // segments are deleted only once both cover them (checkpoint), so the older copy plus
        // the frames still in the spool gives the same positions as the newer one.
        let mut existed = false;
        let newest = load_state(&dir.join("state"), &mut existed, c);
        let older = load_state(&dir.join("state.1"), &mut existed, c);
        let older_acked = older.as_ref().map_or(0, |o| o.0.acked_seq);
        let (mut ck, mut gone, as_of, state_ok, mut needs_checkpoint) = match (newest, older) {
            (Some((ck, gone, as_of)), _) => (ck, gone, as_of, true, false),
            (None, Some((ck, gone, as_of))) => {
                log::warn!(
                    "{}: no usable checkpoint; resuming from the previous one, state.1, and the frames after it",
                    dir.display()
                );
                (ck, gone, as_of, true, true)
            }
            (None, None) => (Checkpoint::default(), Vec::new(), None, false, false),
        };
        // Every name that claims to be a segment; what is not a regular file is set aside,
        // its name still counting for the sequence numbers.
        let mut ids = Vec::new();
        let mut aside_max = 0;
        // When the oldest segment was last written: with no checkpoint and no frame, when
        // the run that lost its positions began.
        let mut oldest = None;
        for e in ctx(fs::read_dir(dir), "list", dir)?.flatten() {
            let name = e.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let path = e.path();
            if id > MAX_SEGMENT_ID {
                // Not this spool's: its name must not reserve numbers (they would wrap).
                set_aside(&path, "numbered beyond any sequence", c);
                continue;
            }
            match fs::metadata(&path) {
                Ok(m) if m.is_file() => {
                    if let Ok(t) = m.modified() {
                        oldest = Some(oldest.map_or(t, |o: std::time::SystemTime| o.min(t)));
                    }
                    ids.push(id);
                }
                m => {
                    let what = match &m {
                        Ok(t) if t.is_dir() => "a directory".to_string(),
                        Ok(_) => "a special file".to_string(),
                        Err(e) => format!("unreadable ({e})"),
                    };
                    set_aside(&path, &what, c);
                    aside_max = aside_max.max(id);
                }
            }
        }
        crate::sort::sort(&mut ids);
        let positions_lost = !state_ok && (existed || !ids.is_empty() || aside_max > 0);
        if !state_ok {
            // Without a checkpoint, what came before the oldest segment is taken as released
            // (the spool deletes only what is acknowledged or counted): what is in the
            // segments is sent again (same numbers), gaps between them are counted.
            ck.acked_seq = ids.first().map_or(0, |id| id.saturating_sub(1));
        }
        // The sink's frames after the checkpoint. Without one, those after the oldest
        // segment's name, when the spool may not have fsynced them (`in_sink`): a power cut
        // before a new spool's first checkpoint leaves the sink the only record of them (no
        // segment is deleted before a checkpoint, so the oldest name is where this spool's
        // frames begin). Otherwise a spool without a checkpoint has every frame it sent, and
        // its positions are lost as they always were.
        let from = match (state_ok, ids.first()) {
            (true, _) => Some(ck.next_seq),
            (false, Some(&first)) if limits.fsync && limits.in_sink => Some(first),
            _ => None,
        };
        if let Some(from) = from {
            let held = sink(from, &gone, &mut ck.files);
            if held >= from {
                ck.next_seq = held + 1;
                ck.acked_seq = ck.acked_seq.max(held);
            }
        }
        let damaged_before = (c.corrupt_records, c.corrupt_bytes);
        let mut segs = VecDeque::new();
        let mut max_seq = 0;
        let mut present = ranges::Ranges::new();
        // The next number as the files on disk tell it, trusted to count losses against.
        let mut next = ck.next_seq.max(1);
        // The sender's first frame: the first not yet released.
        let mut start = None;
        // When the positions the frames give were read, without a checkpoint to say.
        let mut moved_ts = None;
        for id in ids {
            let path = dir.join(seg_name(id));
            let sc = scan_segment(&path, max_payload, &gone, &mut ck, &mut max_seq, c)?;
            if start.is_none() {
                start = sc.first_unreleased.map(|pos| (id, pos));
            }
            moved_ts = moved_ts.or(sc.first_moved_ts);
            for &(a, b) in &sc.seqs {
                ranges::add(&mut present, a, b);
            }
            // A segment is opened for the number the next frame gets: with bytes in it,
            // that number was given out.
            next = next.max(if sc.len > 0 { id + 1 } else { id });
            segs.push_back(Segment {
                id,
                path,
                len: sc.len,
                durable: sc.len,
                // Fsynced below: whatever the run before synced, its frames move the
                // positions, and a checkpoint may soon record them (`in_sink` sends
                // unsynced, and a kill -9 leaves frames appended but not yet synced).
                on_disk: 0,
                last_seq: sc.last_seq,
                holes: sc.holes,
            });
        }
        next = next
            .max(max_seq + 1)
            .max(gone.last().map_or(0, |g| g.1 + 1));
        let acked = ck.acked_seq.min(next - 1);
        // Frames that were written, are not acknowledged, not accounted for, and not here.
        let lost = ranges::missing(acked + 1, next - 1, &[&present, &gone]);
        needs_checkpoint |= positions_lost;
        for &(a, b) in &lost {
            let n = b - a + 1;
            let within = segs.iter().rev().find(|s| s.id <= a).map_or_else(
                || "before the oldest segment".into(),
                |s| format!("in or after {}", s.path.display()),
            );
            log::error!(
                "spool: lost {n} frames (seq {a} to {b}, {within}; their lines cannot be known): damaged, cut off or deleted while the agent was stopped"
            );
            c.spool_lost_frames += n;
            ranges::add(&mut gone, a, b);
            needs_checkpoint = true;
        }
        // A name that was not a segment (set aside above) still reserves its number: frames
        // under it may have been sent. The numbers skipped are never looked for again.
        if aside_max >= next {
            log::warn!(
                "spool: numbering resumes at {}, after the name of what was set aside (was {next})",
                aside_max + 1
            );
            ranges::add(&mut gone, next, aside_max);
            next = aside_max + 1;
            needs_checkpoint = true;
        }
        // Damage (a record cut off or corrupt, frames missing, a name set aside) may have
        // taken the only record of numbers already given out, and sent: a frame the sink
        // has taken is deleted once acknowledged, but its record may be cut before that.
        // Numbering then resumes past the reservation, so none is given out twice.
        let reserved = read_reserved(dir);
        let damaged = (c.corrupt_records, c.corrupt_bytes) != damaged_before
            || !lost.is_empty()
            || aside_max > 0;
        if damaged && reserved > next {
            log::warn!(
                "spool: numbering resumes at {reserved} after damage (was {next}): numbers up to {} may have been given out; they are skipped, not counted as lost",
                reserved - 1
            );
            ranges::add(&mut gone, next, reserved - 1);
            next = reserved;
            needs_checkpoint = true;
        }
        ck.next_seq = next;
        ck.acked_seq = acked;
        ranges::prune(&mut gone, acked, MAX_GONE);
        // Positions from the frames alone (no checkpoint) are as of their first frame's
        // read, or with no frame either, of the oldest segment; a checkpoint's, moved
        // forward by frames, as of the checkpoint: the earlier, so that nothing changed
        // since is taken as seen.
        let began = oldest.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        let as_of = if state_ok {
            as_of
        } else {
            moved_ts.or(began.map(|d| d.as_millis() as u64))
        };
        let mut s = Spool {
            dir: dir.to_path_buf(),
            limits,
            max_payload,
            dec: frame::Decoder::new(max_payload),
            known: VecDeque::new(),
            segs,
            writer: None,
            reader: None,
            next_seq: ck.next_seq,
            reserved,
            acked: ck.acked_seq,
            cursor: (0, 0),
            in_flight: VecDeque::new(),
            unsynced: false,
            roll: false,
            lost: (0, 0),
            rewound_head_ts: None,
            state_acked: ck.acked_seq,
            older_acked: older_acked.min(ck.acked_seq),
            deleted_for_room: false,
            last: Checkpoint {
                next_seq: ck.next_seq,
                acked_seq: ck.acked_seq,
                files: Vec::new(),
            },
            as_of,
            gone,
        };
        // Fully acknowledged or empty segments: both checkpoints cover them.
        while s.segs.len() > 1 && s.released_segment(0, s.older_acked) {
            let seg = s.segs.pop_front().expect("len > 1");
            ctx(fs::remove_file(&seg.path), "delete", &seg.path)?;
        }
        s.fsync_unsynced()?;
        // Appends go on in the newest segment only if the next frame follows its last one
        // there; otherwise (numbers skipped) in a new one, so that every segment holds
        // consecutive numbers from its name on and a gap found later is a real loss.
        let follows = s.segs.back().is_some_and(|b| {
            let end = if b.len > 0 {
                b.last_seq
            } else {
                b.id.saturating_sub(1)
            };
            end.saturating_add(1) == s.next_seq
        });
        if follows {
            let b = s.segs.back().expect("checked");
            let w = OpenOptions::new().append(true).open(&b.path);
            s.writer = Some(ctx(w, "open", &b.path)?);
        } else {
            s.new_segment()?;
        }
        // The sender starts at the first frame not yet released, or after the last frame: the
        // released frames before it are not read again, nor counted as waiting
        // (`unsent_bytes`, `durable_unsent`).
        s.cursor = start.unwrap_or_else(|| {
            let last = s.segs.back().expect("always one segment");
            (last.id, last.len)
        });
        let marks = ck.files;
        Ok(Recovered {
            spool: s,
            marks,
            first_run: !state_ok && !positions_lost,
            positions_lost,
            needs_checkpoint,
            as_of,
        })
    }

    /// The sink already holds frames up to `held` (the file sink reads its last frame back at
    /// start-up). If that is past every number this spool knows, the spool lost its record
    /// (`state` and segments gone): numbering resumes after `held`, and what the spool holds
    /// is not sent again (a consumer would drop it as a repeat anyway).
    pub fn sink_holds(&mut self, held: u64) -> bool {
        if held < self.next_seq {
            return false;
        }
        log::warn!(
            "spool: the sink already holds frames up to {held}, past this spool's {}: numbering resumes at {}",
            self.next_seq - 1,
            held + 1
        );
        self.next_seq = held + 1;
        self.acked = held;
        if let Err(e) = self.new_segment() {
            log::error!("{e}");
        }
        true
    }

    fn new_segment(&mut self) -> Result<(), SpoolError> {
        let id = self.next_seq;
        let path = self.dir.join(seg_name(id));
        let f = OpenOptions::new().append(true).create(true).open(&path);
        self.writer = Some(ctx(f, "create", &path)?);
        if self.limits.fsync {
            ctx(sync_dir(&self.dir), "fsync", &self.dir)?;
        }
        self.segs.push_back(Segment {
            id,
            path,
            len: 0,
            durable: 0,
            on_disk: 0,
            last_seq: 0,
            holes: Vec::new(),
        });
        Ok(())
    }

    /// Changes the limits (a reload). A lower `max_bytes` takes effect at the next append.
    /// Frames sent unsynced for a sink that fsynced them (`in_sink`) are fsynced now if the
    /// new sink does not: from here on a sent frame is durable only in the spool.
    pub fn set_limits(&mut self, l: Limits) {
        let was_in_sink = self.limits.fsync && self.limits.in_sink;
        self.limits = l;
        if was_in_sink && self.syncs_frames() {
            if let Err(e) = self.fsync_unsynced() {
                log::error!("{e}");
            }
        }
    }

    /// Whether the spool fsyncs frames before they are sent: `fsync`, unless the sink makes
    /// them durable (`in_sink`).
    pub fn syncs_frames(&self) -> bool {
        self.limits.fsync && !self.limits.in_sink
    }

    /// fsyncs every byte appended and not yet fsynced, in every segment (`in_sink` sends
    /// them without).
    fn fsync_unsynced(&mut self) -> Result<(), SpoolError> {
        if !self.limits.fsync {
            return Ok(());
        }
        for seg in self.segs.iter_mut().filter(|s| s.on_disk < s.len) {
            // Any descriptor of the file will do, the active segment's writer's too.
            ctx(
                File::open(&seg.path).and_then(|f| f.sync_data()),
                "fsync",
                &seg.path,
            )?;
            seg.on_disk = seg.len;
        }
        Ok(())
    }

    /// The sequence number the next frame gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Every frame up to this sequence number is acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Bytes of segment files on disk.
    pub fn bytes(&self) -> u64 {
        self.segs.iter().map(|s| s.len).sum()
    }

    /// Bytes of the segments that hold a frame not yet acknowledged: what is still to be
    /// delivered, to within one segment (a segment partly acknowledged counts whole). Unlike
    /// [`bytes`](Self::bytes), it drops as soon as the sink takes the frames, not when the
    /// segments are deleted after the next checkpoint.
    pub fn unacked_bytes(&self) -> u64 {
        self.segs
            .iter()
            .filter(|s| s.len > 0 && s.last_seq > self.acked)
            .map(|s| s.len)
            .sum()
    }

    /// Frames written and not yet acknowledged.
    pub fn backlog(&self) -> u64 {
        // Numbers dropped, counted lost or never given out are not waiting for anything.
        let gone: u64 = self
            .gone
            .iter()
            .map(|&(a, b)| {
                let (a, b) = (a.max(self.acked + 1), b.min(self.next_seq - 1));
                if a <= b {
                    b - a + 1
                } else {
                    0
                }
            })
            .sum();
        self.next_seq - 1 - self.acked - gone
    }

    /// Bytes of frames appended and not yet handed to the sink, durable or not.
    pub fn unsent_bytes(&self) -> u64 {
        let (seg, pos) = self.cursor;
        self.segs
            .iter()
            .filter(|s| s.id >= seg)
            .map(|s| {
                if s.id == seg {
                    s.len.saturating_sub(pos)
                } else {
                    s.len
                }
            })
            .sum()
    }

    /// Whether a durable frame waits to be sent (the sender needs no fsync to send it).
    pub fn durable_unsent(&self) -> bool {
        let (seg, pos) = self.cursor;
        self.segs.iter().filter(|s| s.id >= seg).any(|s| {
            if s.id == seg {
                pos < s.durable
            } else {
                s.durable > 0
            }
        })
    }

    /// Frames handed to the sink and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The policy in force when full.
    pub fn on_full(&self) -> OnFull {
        self.limits.on_full
    }

    /// Whether a frame of `len` bytes fits under `max_bytes` now.
    pub fn fits(&self, len: usize) -> bool {
        self.bytes() + len as u64 <= self.limits.max_bytes
    }

    /// Appends a frame that was built with sequence number [`next_seq`](Self::next_seq).
    ///
    /// # Errors
    /// A failed write (a full disk) leaves the segment as it was; the same frame can be
    /// appended again later.
    pub fn append(&mut self, frame: &[u8]) -> Result<u64, SpoolError> {
        let seq = self.next_seq;
        self.write_frames(frame, 1)?;
        Ok(seq)
    }

    /// Writes `count` frames, numbered from [`next_seq`](Self::next_seq) on and already
    /// concatenated in `bytes`, in one write: the sequence reservation first, a new segment
    /// if they would not fit the active one. A failed write leaves the segment as it was.
    fn write_frames(&mut self, bytes: &[u8], count: u64) -> Result<(), SpoolError> {
        let last = self.next_seq + count - 1;
        if last >= self.reserved {
            self.reserve(last)?;
        }
        self.check_active();
        let syncs = self.syncs_frames();
        let active = self.segs.back().expect("always one segment");
        if self.roll
            || (active.len > 0 && active.len + bytes.len() as u64 > self.limits.segment_bytes)
        {
            self.sync()?;
            self.new_segment()?;
            self.roll = false;
        }
        let active = self.segs.back_mut().expect("always one segment");
        let w = self.writer.as_mut().expect("writer open");
        if let Err(e) = w.write_all(bytes) {
            // Leave no partial record behind: cut the segment back to where it was.
            let _ = w.set_len(active.len);
            return Err(ctx::<()>(Err(e), "append to", &active.path).unwrap_err());
        }
        active.len += bytes.len() as u64;
        active.last_seq = last;
        if !syncs {
            active.durable = active.len;
        }
        self.next_seq = last + 1;
        self.unsynced = true;
        Ok(())
    }

    /// [`append`](Self::append), remembering the frame's head so that the sender reads it
    /// back without inflating it.
    ///
    /// # Errors
    /// As [`append`](Self::append).
    pub fn append_batch(&mut self, frame: &[u8], head: Head) -> Result<u64, SpoolError> {
        let seq = self.append(frame)?;
        let seg = self.segs.back().expect("always one segment");
        if self.known.len() == MAX_KNOWN {
            self.known.pop_front();
        }
        self.known.push_back(Known {
            seg: seg.id,
            pos: seg.len - frame.len() as u64,
            seq,
            base_ts_ms: head.base_ts_ms,
            len: frame.len() as u32,
            lines: head.lines as u32,
        });
        Ok(seq)
    }

    /// The head of the frame at `(seg, pos)` if it was appended in this run; records of
    /// frames before it are dropped (read back already, or stepped over).
    fn known_at(&mut self, seg: u64, pos: u64) -> Option<Known> {
        while let Some(k) = self.known.front() {
            if (k.seg, k.pos) >= (seg, pos) {
                break;
            }
            self.known.pop_front();
        }
        if self.known.is_empty() && self.known.capacity() > 256 {
            // A backlog's records are read: give their memory back.
            self.known = VecDeque::new();
        }
        self.known
            .front()
            .filter(|k| (k.seg, k.pos) == (seg, pos))
            .copied()
    }

    /// Writes `seq`: numbers below `from + SEQ_RESERVE` may be given out from now on.
    fn reserve(&mut self, from: u64) -> Result<(), SpoolError> {
        let upto = from + SEQ_RESERVE;
        let tmp = self.dir.join("seq.tmp");
        let path = self.dir.join("seq");
        let text = format!("{upto}\n");
        ctx(
            write_durably(&tmp, text.as_bytes(), self.limits.fsync),
            "write",
            &tmp,
        )?;
        ctx(fs::rename(&tmp, &path), "rename", &path)?;
        if self.limits.fsync {
            ctx(sync_dir(&self.dir), "fsync", &self.dir)?;
        }
        self.reserved = upto;
        Ok(())
    }

    /// Makes every appended frame durable (one fsync), so it may be sent.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if !self.unsynced {
            return Ok(());
        }
        let syncs = self.syncs_frames();
        let active = self.segs.back_mut().expect("always one segment");
        if syncs {
            let w = self.writer.as_ref().expect("writer open");
            ctx(w.sync_data(), "fsync", &active.path)?;
            active.on_disk = active.len;
        }
        active.durable = active.len;
        self.unsynced = false;
        Ok(())
    }

    /// Whether frames are appended but not yet fsynced.
    pub fn needs_sync(&self) -> bool {
        self.unsynced
    }

    /// Reads the next durable frame the sink has not had into `buf`; `None` when there is
    /// none. The frame joins the in-flight window until [`ack`](Self::ack) or
    /// [`rewind`](Self::rewind).
    pub fn next_unsent(
        &mut self,
        buf: &mut Vec<u8>,
        c: &mut Counters,
    ) -> Result<Option<u64>, SpoolError> {
        loop {
            self.count_lost(c);
            let Some(i) = self.segs.iter().position(|s| s.id >= self.cursor.0) else {
                return Ok(None);
            };
            if self.segs[i].id != self.cursor.0 {
                self.cursor = (self.segs[i].id, 0);
            }
            let seg = &self.segs[i];
            let pos = self.cursor.1;
            if let Some(&(_, end)) = seg.holes.iter().find(|h| h.0 == pos) {
                self.cursor.1 = end;
                continue;
            }
            if pos >= seg.durable {
                if i + 1 < self.segs.len() && seg.durable == seg.len {
                    self.cursor = (self.segs[i + 1].id, 0);
                    continue;
                }
                return Ok(None);
            }
            if self.reader.as_ref().map(|r| r.0) != Some(seg.id) {
                match File::open(&seg.path) {
                    Ok(f) => self.reader = Some((seg.id, f)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        self.lost_under_us(i, pos, &e);
                        continue;
                    }
                    Err(e) => return Err(ctx::<()>(Err(e), "open", &seg.path).unwrap_err()),
                }
            }
            let seg_id = seg.id;
            let durable = seg.durable;
            let known = self.known_at(seg_id, pos);
            let seg = &self.segs[i];
            let file = &self.reader.as_ref().expect("just set").1;
            let read = match known {
                Some(k) => read_known_at(file, pos, k.len.into(), buf),
                None => read_frame_at(file, pos, durable, self.max_payload, buf),
            };
            match read {
                Ok(Ok(())) => {}
                Ok(Err(why)) => {
                    // Damaged after start-up (the disk, or someone else): find the next frame.
                    let next = resync(file, pos + 1, seg.durable, self.max_payload);
                    log::error!(
                        "{}: byte {pos}: {why}; skipped {} bytes",
                        seg.path.display(),
                        next - pos
                    );
                    c.corrupt_records += 1;
                    c.corrupt_bytes += next - pos;
                    self.cursor.1 = next;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.lost_under_us(i, pos, &e);
                    continue;
                }
                Err(e) => return Err(ctx::<()>(Err(e), "read", &seg.path).unwrap_err()),
            }
            self.cursor.1 = pos + buf.len() as u64;
            let head = match known {
                Some(k) => Ok((k.seq, k.lines.into(), k.base_ts_ms)),
                None => self
                    .dec
                    .head(buf)
                    .map(|h| (h.seq, h.line_count, h.base_ts_ms)),
            };
            let (seq, lines, base_ts_ms) = match head {
                Ok(h) => h,
                Err(why) => {
                    log::error!("{}: byte {pos}: {why}; skipped", seg.path.display());
                    c.corrupt_records += 1;
                    c.corrupt_bytes += buf.len() as u64;
                    continue;
                }
            };
            let seg = seg.id;
            if self.released(seq) {
                continue;
            }
            self.in_flight.push_back(InFlight {
                seq,
                seg,
                pos,
                lines,
                base_ts_ms,
                orphan: false,
            });
            return Ok(Some(seq));
        }
    }

    /// Segment `i` has lost its bytes from `pos` on while the agent ran (cut, or deleted, by
    /// something else: the read found the file shorter than what was appended, or gone):
    /// they are skipped and counted as one corrupt record, the sender goes on with the next
    /// segment, and if it was the active one, appends go on in a new one. Their frames'
    /// numbers are never sent; the next acknowledgement passes over them.
    fn lost_under_us(&mut self, i: usize, pos: u64, e: &dyn fmt::Display) {
        let seg = &mut self.segs[i];
        // Appended, synced or not: frames not yet synced are lost with the rest.
        let lost = seg.len.saturating_sub(pos);
        log::error!(
            "{}: {e}: cut or removed while the agent ran; {lost} bytes of frames from byte {pos} skipped",
            seg.path.display()
        );
        if lost > 0 {
            self.lost.0 += 1;
            self.lost.1 += lost;
        }
        seg.len = pos;
        seg.durable = pos;
        seg.holes.clear();
        if self.reader.as_ref().is_some_and(|r| r.0 == seg.id) {
            self.reader = None;
        }
        if i + 1 == self.segs.len() {
            self.roll = true;
        }
    }

    /// Before an append: the active segment is still what was appended to it. A file
    /// shorter than that (cut) or no longer in the directory (removed) would take the new
    /// frame where the sender does not look: what is lost is skipped and counted, and the
    /// frame goes to a new segment. One `fstat` an append.
    fn check_active(&mut self) {
        let (Some(w), Some(active)) = (&self.writer, self.segs.back()) else {
            return;
        };
        let Ok(m) = w.metadata() else { return };
        use std::os::unix::fs::MetadataExt;
        if m.len() >= active.len && m.nlink() > 0 {
            return;
        }
        let i = self.segs.len() - 1;
        // Frames the sender has had are not lost; a removed file is lost from there on.
        let sent = self.sent_in(i);
        let (pos, why) = if m.nlink() == 0 {
            (sent, "removed")
        } else {
            (m.len().max(sent).min(active.len), "cut short")
        };
        self.lost_under_us(i, pos, &why);
    }

    /// How far the sender has read segment `i`: what is before that was sent (acknowledged,
    /// or in the sink's hands and counted when it answers), not lost with the file.
    fn sent_in(&self, i: usize) -> u64 {
        let seg = &self.segs[i];
        match self.cursor.0.cmp(&seg.id) {
            std::cmp::Ordering::Greater => seg.len,
            std::cmp::Ordering::Equal => self.cursor.1,
            std::cmp::Ordering::Less => 0,
        }
    }

    /// Counts in `c` what [`lost_under_us`](Self::lost_under_us) found.
    fn count_lost(&mut self, c: &mut Counters) {
        let (records, bytes) = std::mem::take(&mut self.lost);
        c.corrupt_records += records;
        c.corrupt_bytes += bytes;
    }

    /// The sink acknowledged every frame up to `seq`.
    pub fn ack(&mut self, seq: u64, c: &mut Counters) {
        while let Some(f) = self.in_flight.front() {
            if f.seq > seq {
                break;
            }
            c.frames_acked += 1;
            c.lines_acked += f.lines;
            self.in_flight.pop_front();
        }
        self.rewound_head_ts = None;
        self.acked = self.acked.max(seq);
    }

    /// The oldest frame in flight, `seq`, was refused as too large and cut into `pieces`
    /// (built with the numbers from [`next_seq`](Self::next_seq) on): they are appended in
    /// one write, and `seq` is released without being acknowledged (its lines are counted
    /// when the pieces are). The caller writes a checkpoint next, which makes the pieces
    /// durable and records the release: until then a restart sends `seq` again and cuts it
    /// again, so its lines may arrive twice, under the old pieces' numbers and the new ones.
    ///
    /// # Errors
    /// The write failed (a full disk): nothing is appended, `seq` stays in flight, and the
    /// caller rewinds as for any failed send.
    pub fn replace(&mut self, seq: u64, pieces: &[Vec<u8>]) -> Result<(), SpoolError> {
        assert_eq!(
            self.in_flight.front().map(|f| f.seq),
            Some(seq),
            "only the oldest frame in flight is replaced"
        );
        self.write_frames(&pieces.concat(), pieces.len() as u64)?;
        self.in_flight.pop_front();
        ranges::add(&mut self.gone, seq, seq);
        Ok(())
    }

    /// The sink already holds every frame up to `seq` (from before a crash): do not send
    /// them again. Ignored unless `seq` is a number this spool has given out.
    pub fn skip_delivered(&mut self, seq: u64) {
        if seq > self.acked && seq < self.next_seq && self.in_flight.is_empty() {
            log::info!("the sink already holds frames up to {seq}: resuming after it");
            self.acked = seq;
        }
    }

    /// The sink lost what it held: send again from the first unacknowledged frame. Frames
    /// whose segment drop_oldest deleted meanwhile are counted as dropped now.
    pub fn rewind(&mut self, c: &mut Counters) {
        let mut first = None;
        for f in self.in_flight.drain(..) {
            if f.orphan {
                // Its segment is gone: it is not sent again, and the sink never confirmed it.
                c.dropped_frames += 1;
                c.dropped_lines += f.lines;
                ranges::add(&mut self.gone, f.seq, f.seq);
            } else if first.is_none() {
                first = Some((f.seg, f.pos));
                self.rewound_head_ts = Some(f.base_ts_ms);
            }
        }
        if let Some(p) = first {
            self.cursor = p;
        }
    }

    /// When the oldest line not yet acknowledged was read (Unix ms), if known: the head of
    /// the window, or of the last window a failure rewound.
    pub fn oldest_unacked_ms(&self) -> Option<u64> {
        match self.in_flight.front() {
            Some(f) => Some(f.base_ts_ms),
            None if self.backlog() > 0 => self.rewound_head_ts,
            None => None,
        }
    }

    /// Whether segments could be deleted after a checkpoint.
    pub fn reclaimable(&self) -> bool {
        self.segs.len() > 1 && self.released_segment(0, self.acked) || self.all_acked_in_active()
    }

    /// Whether frame `seq` needs nothing more: acknowledged, or dropped and counted.
    fn released(&self, seq: u64) -> bool {
        seq <= self.acked || ranges::contains(&self.gone, seq)
    }

    /// Whether every frame in segment `i` is acknowledged up to `acked` or dropped and
    /// counted (an empty one has none).
    fn released_segment(&self, i: usize, acked: u64) -> bool {
        let seg = &self.segs[i];
        seg.last_seq <= acked
            || ranges::missing(seg.id.max(acked + 1), seg.last_seq, &[&self.gone]).is_empty()
    }

    fn all_acked_in_active(&self) -> bool {
        let a = self.segs.back().expect("always one segment");
        a.len >= self.limits.segment_bytes / 4 && self.acked + 1 == self.next_seq
    }

    /// Syncs, writes the checkpoint (`files` plus the sequence numbers), then deletes the
    /// segments it makes redundant.
    ///
    /// `files` covers every frame appended, so each of them must be durable first: in the
    /// spool (fsynced), or in a sink that fsyncs what it acknowledges (`in_sink`). With
    /// `in_sink` and every frame acknowledged, nothing of the spool is fsynced; otherwise
    /// whatever was sent unsynced is fsynced now.
    ///
    /// `as_of`: when `files` were taken, in milliseconds since the Unix epoch (`None`:
    /// unknown); a restart checks the files' directories against it.
    pub fn checkpoint(
        &mut self,
        files: Vec<FileMark>,
        as_of: Option<u64>,
    ) -> Result<(), SpoolError> {
        if !self.syncs_frames() && self.acked + 1 < self.next_seq {
            // When the spool fsyncs frames itself, `sync` below covers the only segment with
            // bytes not on disk, the active one.
            self.fsync_unsynced()?;
        }
        self.sync()?;
        self.last = Checkpoint {
            next_seq: self.next_seq,
            acked_seq: self.acked,
            files,
        };
        self.as_of = as_of;
        match self.write_state() {
            // A disk filled by something else, and no older copy of the checkpoint to make
            // room with (see write_state): the oldest segment, all of it acknowledged, goes
            // first. Until a checkpoint is written after it, a crash costs: the restart counts
            // its frames lost though they were delivered, and reads again, from the older
            // checkpoint, files none of the later frames name (repeats, never a loss). So one
            // segment only, until a checkpoint is written again.
            Err(e)
                if is_full(&e.source)
                    && !self.deleted_for_room
                    && self.segs.len() > 1
                    && self.released_segment(0, self.acked) =>
            {
                log::warn!(
                    "{}: disk full: acknowledged segment {} deleted to write the checkpoint",
                    self.dir.display(),
                    self.segs[0].path.display()
                );
                self.delete_front();
                self.deleted_for_room = true;
                self.write_state()?;
            }
            r => r?,
        }
        self.deleted_for_room = false;
        if self.all_acked_in_active() {
            self.new_segment()?;
        }
        if self.segs.len() > 1
            && self.released_segment(0, self.acked)
            && !self.released_segment(0, self.older_acked)
        {
            // A segment goes only once both copies cover it: the same checkpoint again makes
            // the older copy cover it too, so the room is there now, not at the next
            // checkpoint (a full spool under `block` may have no next one to wait for, nor
            // a disk filled by something else).
            self.write_state()?;
        }
        // Only what both copies of the checkpoint cover (see `open`).
        while self.segs.len() > 1 && self.released_segment(0, self.older_acked) {
            self.delete_front();
        }
        Ok(())
    }

    /// Writes `state`: the last checkpoint's positions (with the next sequence number they
    /// go with, so a restart replays every frame after them), the current `acked`, and
    /// `gone`.
    fn write_state(&mut self) -> Result<(), SpoolError> {
        self.last.acked_seq = self.acked;
        ranges::prune(&mut self.gone, self.acked, MAX_GONE);
        let path = self.dir.join("state");
        let tmp = self.dir.join("state.tmp");
        let bytes = frame::encode_state(&self.last, &self.gone, self.as_of);
        let older = self.dir.join("state.1");
        match write_durably(&tmp, &bytes, self.limits.fsync) {
            // A disk filled by something else (no reserve left): the older copy makes room
            // for the new one. Without it, no checkpoint, so no acknowledged segment could
            // go either, and reading would wait for room someone else makes. `state` stays
            // whole meanwhile; the two copies are back with the next checkpoint.
            Err(e) if is_full(&e) && path.exists() && fs::remove_file(&older).is_ok() => {
                log::warn!(
                    "{}: disk full: {} removed to write the checkpoint",
                    self.dir.display(),
                    older.display()
                );
                self.older_acked = 0;
                ctx(
                    write_durably(&tmp, &bytes, self.limits.fsync),
                    "write",
                    &tmp,
                )?;
            }
            r => ctx(r, "write", &tmp)?,
        }
        self.older_acked = match keep_as_older(&path, &older) {
            Ok(()) => self.state_acked,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(ctx::<()>(Err(e), "rename", &path).unwrap_err()),
        };
        ctx(fs::rename(&tmp, &path), "rename", &path)?;
        self.state_acked = self.acked;
        if self.limits.fsync {
            ctx(sync_dir(&self.dir), "fsync", &self.dir)?;
        }
        Ok(())
    }

    fn delete_front(&mut self) {
        let seg = self.segs.pop_front().expect("caller checked");
        match fs::remove_file(&seg.path) {
            // Removed by something else (counted where it was found missing).
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::error!("spool: delete {}: {e}", seg.path.display()),
            Ok(()) => {}
        }
        if self.reader.as_ref().map(|r| r.0) == Some(seg.id) {
            self.reader = None;
        }
    }

    /// Under `drop_oldest`: deletes the oldest segments until `len` more bytes fit, counting
    /// every unacknowledged frame and line in them. Call after a checkpoint.
    pub fn drop_oldest(&mut self, len: usize, c: &mut Counters) -> Result<(), SpoolError> {
        while !self.fits(len) {
            if self.segs.len() == 1 {
                if self.segs[0].len == 0 {
                    break;
                }
                self.sync()?;
                self.new_segment()?;
            }
            let seg = &self.segs[0];
            let (mut frames, mut lines) = (0u64, 0u64);
            let f = match File::open(&seg.path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Removed by something else while the agent ran: nothing to count in it
                    // but the bytes the sender had not had; the room it held is free already.
                    // What the sink holds of it is counted when it answers, as when a
                    // segment is dropped here (a rewind cannot send it again).
                    let id = seg.id;
                    for f in self.in_flight.iter_mut().filter(|f| f.seg == id) {
                        f.orphan = true;
                    }
                    self.lost_under_us(0, self.sent_in(0), &e);
                    self.count_lost(c);
                    if self.segs.len() > 1 {
                        self.delete_front();
                    }
                    continue;
                }
                Err(e) => return Err(ctx::<()>(Err(e), "open", &seg.path).unwrap_err()),
            };
            let mut r = FrameReader::new(f, self.max_payload);
            while let Some(item) = ctx(r.next_item(), "read", &seg.path)? {
                if let Item::Frame { bytes, .. } = item {
                    if let Ok(h) = self.dec.head(bytes) {
                        let released = h.seq <= self.acked || ranges::contains(&self.gone, h.seq);
                        let flying = self.in_flight.iter_mut().find(|f| f.seq == h.seq);
                        match flying {
                            // The sink has it: counted when it answers (acked, or dropped
                            // at the rewind of a failure).
                            Some(f) => f.orphan = true,
                            None if !released => {
                                frames += 1;
                                lines += h.line_count;
                                ranges::add(&mut self.gone, h.seq, h.seq);
                            }
                            None => {}
                        }
                    }
                }
            }
            if frames > 0 {
                log::warn!(
                    "spool full: dropped {frames} frames ({lines} lines) from {}",
                    seg.path.display()
                );
            }
            c.dropped_frames += frames;
            c.dropped_lines += lines;
            let id = seg.id;
            if frames > 0 {
                // The numbers dropped are recorded before the frames go, so a restart
                // neither counts them again as lost nor sends them. A full disk may refuse
                // the write; the segment goes anyway, as room is what is needed then.
                if let Err(e) = self.write_state() {
                    log::error!("{e}");
                }
            }
            self.delete_front();
            if self.cursor.0 <= id {
                self.cursor = (self.segs[0].id, 0);
            }
        }
        Ok(())
    }
}

/// Reads one copy of the checkpoint; `None` when it is missing or unreadable (then set aside
/// as `NAME.corrupt` and counted). `existed`: set when there was a file.
fn load_state(path: &Path, existed: &mut bool, c: &mut Counters) -> Option<frame::State> {
    let why = match fs::read(path) {
        Ok(b) => match frame::decode_state(&b) {
            Ok(v) => {
                *existed = true;
                return Some(v);
            }
            Err(e) => {
                c.corrupt_bytes += b.len() as u64;
                e.to_string()
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => e.to_string(),
    };
    *existed = true;
    let mut to = path.as_os_str().to_owned();
    to.push(".corrupt");
    log::error!(
        "{}: unreadable checkpoint ({why}); kept as {}",
        path.display(),
        Path::new(&to).display()
    );
    c.corrupt_records += 1;
    let _ = fs::rename(path, &to);
    None
}

/// Renames what sits under a segment's name but is not a segment (a directory, a FIFO, a
/// dangling link, a name beyond any sequence number), `what` it is, to `NAME.corrupt`, so
/// it stops nothing and stays for a person to look at.
fn set_aside(path: &Path, what: &str, c: &mut Counters) {
    let mut to = path.as_os_str().to_owned();
    to.push(".corrupt");
    let mut to = PathBuf::from(to);
    let mut n = 1;
    while to.symlink_metadata().is_ok() {
        let mut t = path.as_os_str().to_owned();
        t.push(format!(".corrupt.{n}"));
        to = PathBuf::from(t);
        n += 1;
    }
    match fs::rename(path, &to) {
        Ok(()) => log::error!(
            "spool: {} is not a segment ({what}): set aside as {}",
            path.display(),
            to.display()
        ),
        Err(e) => log::error!(
            "spool: {} is not a segment ({what}), and cannot be set aside ({e}): ignored",
            path.display()
        ),
    }
    c.corrupt_records += 1;
}

/// The largest segment name a spool takes. Sequence numbers stay far below it (2^62 frames
/// is 146,000 years at a million a second), so their sums and increments never wrap; a file
/// named above is not a segment of this spool (a stray file) and is set aside.
const MAX_SEGMENT_ID: u64 = 1 << 62;

/// How many sequence numbers `seq` reserves at a time: one small durable write per this
/// many frames, and at most this many numbers skipped after damage.
pub const SEQ_RESERVE: u64 = 256;

/// The reservation in `dir/seq`; 0 (none) if it is missing or unreadable (an older spool).
fn read_reserved(dir: &Path) -> u64 {
    let path = dir.join("seq");
    match fs::read_to_string(&path) {
        Ok(t) => t.trim().parse().unwrap_or_else(|_| {
            let seen: String = t.trim().chars().take(32).collect();
            log::warn!("{}: not a number ({seen:?}); ignored", path.display());
            0
        }),
        Err(_) => 0,
    }
}

fn write_durably(path: &Path, bytes: &[u8], fsync: bool) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    if fsync {
        f.sync_all()?;
    }
    Ok(())
}

/// Makes the checkpoint in `path` the older copy, `older`, with `path` never missing: a
/// hard link to it under a temporary name is renamed over `older`, and `path` stays until
/// the new checkpoint is renamed over it. Renamed away first, a `kill -9` landing in that
/// rename (it can take milliseconds behind the fsync before it) left no `state`, and the
/// next start resumed from `state.1`, with a warning (a tester: 1 to 14 times a run when
/// the agent was killed just after a 413). A file system without hard links (vfat) gets
/// the rename.
fn keep_as_older(path: &Path, older: &Path) -> io::Result<()> {
    let link = older.with_extension("1.tmp");
    let linked = match fs::hard_link(path, &link) {
        // Left by a crash between the link and its rename.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(&link)?;
            fs::hard_link(path, &link)
        }
        r => r,
    };
    match linked {
        Ok(()) => {
            fs::rename(&link, older)?;
            // `older` already a name of this file (a crash between this rename and the next
            // left the two names on one file): the rename did nothing, the link is there.
            match fs::remove_file(&link) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                r => r,
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(e),
        Err(_) => fs::rename(path, older),
    }
}

/// Whether `e` says the file system (or the user's quota on it) is full.
pub(crate) fn is_full(e: &io::Error) -> bool {
    // EDQUOT is 122 on every target tailbeat is built for (not on MIPS).
    e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(122)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
