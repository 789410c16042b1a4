//! The spool: frames on disk between the batcher and the sink.
//!
//! Owns the files under `data_dir/spool/` and nothing else: segment files named by the first
//! sequence number they were opened for (`00000000000000000042.seg`), and `state`, the
//! checkpoint. What always holds:
//! - a frame is handed to the sink only once it is durable (fsynced, unless `fsync = false`);
//! - a segment is deleted only after a checkpoint that covers every line in it is durable,
//!   so the file offsets of a restart never point before what the spool already released;
//! - the spool is never read whole: one frame at a time, through a buffer of one frame;
//! - a torn or corrupt record never stops the agent: it is skipped, counted, and (at the end
//!   of a segment) cut off, so appends continue on a clean boundary.
//!
//! The checkpoint needs no fsync ordering against the frames: every batch frame names the
//! files it read and where it stopped, so at start-up the positions are the `state` file's,
//! moved forward by every frame written after it. A frame lost to power loss takes its
//! positions with it, and its lines are read again.

use crate::config::OnFull;
use crate::frame::{self, Checkpoint, FileMark, FrameReader, Item};
use crate::stats::{Counters, Latency};
use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

mod read;
use read::{read_frame_at, resync, scan_segment};

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
    /// Damaged ranges found at start-up, `(start, end)`, so the sender steps over them
    /// without reporting them twice. At most [`MAX_HOLES`]; past that, a hole is simply
    /// found (and counted) again when the sender reaches it.
    holes: Vec<(u64, u64)>,
}

const MAX_HOLES: usize = 256;

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
    /// No state existed: `start_at` applies.
    pub first_run: bool,
}

/// The bounded, crash-safe frame buffer.
///
/// Its limit is `spool.max_bytes` of segment files on disk; memory is one frame buffer plus
/// one small record per segment and per frame in flight (at most the sink's window).
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    limits: Limits,
    max_payload: usize,
    segs: VecDeque<Segment>,
    writer: Option<File>,
    reader: Option<(u64, File)>,
    next_seq: u64,
    acked: u64,
    cursor: (u64, u64),
    in_flight: VecDeque<InFlight>,
    /// Frames appended since the last fsync.
    unsynced: bool,
    /// Timestamp of the oldest unacknowledged frame, kept when a rewind empties the window,
    /// so the fleet sees how old the backlog is while the link is down.
    rewound_head_ts: Option<u64>,
}

fn seg_name(id: u64) -> String {
    format!("{id:020}.seg")
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, scanning every segment: corrupt and torn records
    /// are skipped and counted in `c`, a torn tail is cut off, fully acknowledged segments are
    /// deleted.
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
        ctx(fs::create_dir_all(dir), "create", dir)?;
        let state_path = dir.join("state");
        let (mut ck, first_run) = match fs::read(&state_path) {
            Ok(b) => match frame::decode_checkpoint(&b) {
                Ok(ck) => (ck, false),
                Err(e) => {
                    log::error!(
                        "{}: unreadable checkpoint ({e}); kept as state.corrupt, positions restart from the spool and start_at",
                        state_path.display()
                    );
                    c.corrupt_records += 1;
                    c.corrupt_bytes += b.len() as u64;
                    let _ = fs::rename(&state_path, dir.join("state.corrupt"));
                    (Checkpoint::default(), true)
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Checkpoint::default(), true),
            Err(e) => return Err(ctx::<()>(Err(e), "read", &state_path).unwrap_err()),
        };
        let mut ids: Vec<u64> = ctx(fs::read_dir(dir), "list", dir)?
            .flatten()
            .filter_map(|e| {
                let n = e.file_name();
                let n = n.to_str()?;
                n.strip_suffix(".seg")?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        let mut segs = VecDeque::new();
        let mut max_seq = 0;
        for id in ids {
            let path = dir.join(seg_name(id));
            let sc = scan_segment(&path, max_payload, &mut ck, &mut max_seq, c)?;
            segs.push_back(Segment {
                id,
                path,
                len: sc.len,
                durable: sc.len,
                last_seq: sc.last_seq,
                holes: sc.holes,
            });
        }
        ck.next_seq = ck.next_seq.max(max_seq + 1).max(1);
        ck.acked_seq = ck.acked_seq.min(ck.next_seq - 1);
        let mut s = Spool {
            dir: dir.to_path_buf(),
            limits,
            max_payload,
            segs,
            writer: None,
            reader: None,
            next_seq: ck.next_seq,
            acked: ck.acked_seq,
            cursor: (0, 0),
            in_flight: VecDeque::new(),
            unsynced: false,
            rewound_head_ts: None,
        };
        // Fully acknowledged or empty segments: the checkpoint just read covers them.
        while s.segs.len() > 1 && s.segs[0].last_seq <= s.acked {
            let seg = s.segs.pop_front().expect("len > 1");
            ctx(fs::remove_file(&seg.path), "delete", &seg.path)?;
        }
        match s.segs.back() {
            Some(b) => {
                let w = OpenOptions::new().append(true).open(&b.path);
                s.writer = Some(ctx(w, "open", &b.path)?);
            }
            None => s.new_segment()?,
        }
        s.cursor = (s.segs[0].id, 0);
        let marks = ck.files;
        Ok(Recovered {
            spool: s,
            marks,
            first_run,
        })
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
            last_seq: 0,
            holes: Vec::new(),
        });
        Ok(())
    }

    /// Changes the limits (a reload). A lower `max_bytes` takes effect at the next append.
    pub fn set_limits(&mut self, l: Limits) {
        self.limits = l;
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

    /// Frames written and not yet acknowledged.
    pub fn backlog(&self) -> u64 {
        self.next_seq - 1 - self.acked
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
        let active = self.segs.back().expect("always one segment");
        if active.len > 0 && active.len + frame.len() as u64 > self.limits.segment_bytes {
            self.sync()?;
            self.new_segment()?;
        }
        let active = self.segs.back_mut().expect("always one segment");
        let w = self.writer.as_mut().expect("writer open");
        if let Err(e) = w.write_all(frame) {
            // Leave no partial record behind: cut the segment back to where it was.
            let _ = w.set_len(active.len);
            return Err(ctx::<()>(Err(e), "append to", &active.path).unwrap_err());
        }
        active.len += frame.len() as u64;
        active.last_seq = seq;
        if !self.limits.fsync {
            active.durable = active.len;
        }
        self.next_seq += 1;
        self.unsynced = true;
        Ok(seq)
    }

    /// Makes every appended frame durable (one fsync), so it may be sent.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if !self.unsynced {
            return Ok(());
        }
        let active = self.segs.back_mut().expect("always one segment");
        if self.limits.fsync {
            let w = self.writer.as_ref().expect("writer open");
            ctx(w.sync_data(), "fsync", &active.path)?;
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
                let f = ctx(File::open(&seg.path), "open", &seg.path)?;
                self.reader = Some((seg.id, f));
            }
            let file = &self.reader.as_ref().expect("just set").1;
            match read_frame_at(file, pos, seg.durable, self.max_payload, buf) {
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
                Err(e) => return Err(ctx::<()>(Err(e), "read", &seg.path).unwrap_err()),
            }
            self.cursor.1 = pos + buf.len() as u64;
            let head = match frame::decode_head(buf) {
                Ok(h) => h,
                Err(why) => {
                    log::error!("{}: byte {pos}: {why}; skipped", seg.path.display());
                    c.corrupt_records += 1;
                    c.corrupt_bytes += buf.len() as u64;
                    continue;
                }
            };
            if head.seq <= self.acked {
                continue;
            }
            self.in_flight.push_back(InFlight {
                seq: head.seq,
                seg: seg.id,
                pos,
                lines: head.line_count,
                base_ts_ms: head.base_ts_ms,
                orphan: false,
            });
            return Ok(Some(head.seq));
        }
    }

    /// The sink acknowledged every frame up to `seq`.
    pub fn ack(&mut self, seq: u64, now_ms: u64, c: &mut Counters, lat: &mut Latency) {
        while let Some(f) = self.in_flight.front() {
            if f.seq > seq {
                break;
            }
            c.frames_acked += 1;
            c.lines_acked += f.lines;
            lat.record(now_ms.saturating_sub(f.base_ts_ms));
            self.in_flight.pop_front();
        }
        self.rewound_head_ts = None;
        self.acked = self.acked.max(seq);
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
                c.dropped_frames += 1;
                c.dropped_lines += f.lines;
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
        self.segs.len() > 1 && self.segs[0].last_seq <= self.acked || self.all_acked_in_active()
    }

    fn all_acked_in_active(&self) -> bool {
        let a = self.segs.back().expect("always one segment");
        a.len >= self.limits.segment_bytes / 4 && self.acked + 1 == self.next_seq
    }

    /// Syncs, writes the checkpoint (`files` plus the sequence numbers), then deletes the
    /// segments it makes redundant.
    pub fn checkpoint(&mut self, files: Vec<FileMark>) -> Result<(), SpoolError> {
        self.sync()?;
        let ck = Checkpoint {
            next_seq: self.next_seq,
            acked_seq: self.acked,
            files,
        };
        let path = self.dir.join("state");
        let tmp = self.dir.join("state.tmp");
        let bytes = frame::encode_checkpoint(&ck);
        ctx(
            write_durably(&tmp, &bytes, self.limits.fsync),
            "write",
            &tmp,
        )?;
        ctx(fs::rename(&tmp, &path), "rename", &path)?;
        if self.limits.fsync {
            ctx(sync_dir(&self.dir), "fsync", &self.dir)?;
        }
        if self.all_acked_in_active() {
            self.new_segment()?;
        }
        while self.segs.len() > 1 && self.segs[0].last_seq <= self.acked {
            self.delete_front();
        }
        Ok(())
    }

    fn delete_front(&mut self) {
        let seg = self.segs.pop_front().expect("caller checked");
        if let Err(e) = fs::remove_file(&seg.path) {
            log::error!("spool: delete {}: {e}", seg.path.display());
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
            let f = ctx(File::open(&seg.path), "open", &seg.path)?;
            let mut r = FrameReader::new(f, self.max_payload);
            while let Some(item) = ctx(r.next_item(), "read", &seg.path)? {
                if let Item::Frame { bytes, .. } = item {
                    if let Ok(h) = frame::decode_head(bytes) {
                        let flying = self.in_flight.iter_mut().find(|f| f.seq == h.seq);
                        match flying {
                            Some(f) => f.orphan = true,
                            None if h.seq > self.acked => {
                                frames += 1;
                                lines += h.line_count;
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
            self.delete_front();
            if self.cursor.0 <= id {
                self.cursor = (self.segs[0].id, 0);
            }
        }
        Ok(())
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

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
