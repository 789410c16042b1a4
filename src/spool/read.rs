//! Reading the spool's segments back: one frame at a position, the next good frame after
//! damage, and the start-up scan that counts damage, cuts a torn tail and replays file
//! positions written after the last checkpoint.

use super::ranges::{self, Ranges};
use super::{ctx, SpoolError, MAX_HOLES};
use crate::frame::{self, Checkpoint, FileMark, FrameReader, Item, HEADER_LEN};
use crate::stats::Counters;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Reads the frame at `pos` into `buf`; `Ok(Err(..))` when the bytes there are not one.
pub(super) fn read_frame_at(
    f: &File,
    pos: u64,
    end: u64,
    max_payload: usize,
    buf: &mut Vec<u8>,
) -> io::Result<Result<(), frame::FrameError>> {
    buf.clear();
    if end - pos < HEADER_LEN as u64 {
        return Ok(Err(frame::FrameError::Short {
            need: HEADER_LEN,
            have: (end - pos) as usize,
        }));
    }
    buf.resize(HEADER_LEN, 0);
    f.read_exact_at(buf, pos)?;
    let h = match frame::Header::parse(buf, max_payload) {
        Ok(h) => h,
        Err(e) => return Ok(Err(e)),
    };
    let total = HEADER_LEN + h.len;
    if pos + total as u64 > end {
        return Ok(Err(frame::FrameError::Short {
            need: total,
            have: (end - pos) as usize,
        }));
    }
    buf.resize(total, 0);
    f.read_exact_at(&mut buf[HEADER_LEN..], pos + HEADER_LEN as u64)?;
    Ok(frame::check(buf).map(|_| ()))
}

/// Reads the frame of `len` bytes this run appended at `pos` into `buf`, in one read;
/// `Ok(Err(..))` when the bytes there are no longer that frame (damaged since).
pub(super) fn read_known_at(
    f: &File,
    pos: u64,
    len: u64,
    buf: &mut Vec<u8>,
) -> io::Result<Result<(), frame::FrameError>> {
    buf.clear();
    buf.resize(len as usize, 0);
    f.read_exact_at(buf, pos)?;
    Ok(frame::check(buf).and_then(|(h, _)| {
        // The length field must say what was appended: bytes damaged into another valid
        // frame of another length are not this one.
        if (HEADER_LEN + h.len) as u64 == len {
            Ok(())
        } else {
            Err(frame::FrameError::Short {
                need: HEADER_LEN + h.len,
                have: len as usize,
            })
        }
    }))
}

/// Offset of the next valid frame at or after `from`, or `end`.
pub(super) fn resync(f: &File, from: u64, end: u64, max_payload: usize) -> u64 {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = f.try_clone() else { return end };
    if f.seek(SeekFrom::Start(from)).is_err() {
        return end;
    }
    let mut r = FrameReader::new((&mut f).take(end - from), max_payload);
    loop {
        match r.next_item() {
            Ok(Some(Item::Frame { pos, .. })) => return from + pos,
            Ok(Some(Item::Skipped { .. })) => continue,
            _ => return end,
        }
    }
}

/// What a start-up scan learnt about a segment.
pub(super) struct Scanned {
    pub(super) len: u64,
    pub(super) last_seq: u64,
    pub(super) holes: Vec<(u64, u64)>,
    /// The sequence numbers of its good frames (one range unless frames are missing).
    pub(super) seqs: Ranges,
    /// Where its first frame not yet released (acknowledged, or in `gone`) starts, if any:
    /// where the sender begins after a restart.
    pub(super) first_unreleased: Option<u64>,
    /// When the lines of its first frame that moved a position were read (milliseconds
    /// since the Unix epoch).
    pub(super) first_moved_ts: Option<u64>,
}

/// Scans one segment at start-up: counts damage, cuts a torn tail, moves `ck`'s file
/// positions forward by every frame newer than the checkpoint. Returns the length, the last
/// seq, and the damaged ranges.
pub(super) fn scan_segment(
    path: &Path,
    max_payload: usize,
    gone: &Ranges,
    ck: &mut Checkpoint,
    max_seq: &mut u64,
    c: &mut Counters,
) -> Result<Scanned, SpoolError> {
    let f = ctx(File::open(path), "open", path)?;
    let mut r = FrameReader::new(&f, max_payload);
    let mut last_seq = 0;
    let mut cut = None;
    let mut holes = Vec::new();
    let mut seqs = Ranges::new();
    let mut first_unreleased = None;
    let mut first_moved_ts = None;
    let mut dec = frame::Decoder::new(max_payload);
    while let Some(item) = ctx(r.next_item(), "read", path)? {
        match item {
            Item::Frame { pos, bytes } => {
                let head = match dec.head(bytes) {
                    Ok(h) => h,
                    Err(e) => {
                        log::error!("{}: byte {pos}: {e}; record skipped", path.display());
                        c.corrupt_records += 1;
                        c.corrupt_bytes += bytes.len() as u64;
                        if holes.len() < MAX_HOLES {
                            holes.push((pos, pos + bytes.len() as u64));
                        }
                        continue;
                    }
                };
                last_seq = last_seq.max(head.seq);
                ranges::add(&mut seqs, head.seq, head.seq);
                if first_unreleased.is_none()
                    && head.seq > ck.acked_seq
                    && !ranges::contains(gone, head.seq)
                {
                    first_unreleased = Some(pos);
                }
                *max_seq = (*max_seq).max(head.seq);
                if head.seq >= ck.next_seq {
                    first_moved_ts.get_or_insert(head.base_ts_ms);
                    // Whole, lines too: the bytes before each position it moves are the
                    // end of its last lines (a few frames after the checkpoint, at start-up).
                    match dec.batch(bytes) {
                        Ok(b) => advance_by(&mut ck.files, &b),
                        // The head decoded, so does the rest unless damaged past the CRC:
                        // then the positions without what was before them.
                        Err(_) => {
                            if let Ok(h) = dec.head(bytes) {
                                for s in &h.sources {
                                    advance(&mut ck.files, s);
                                }
                            }
                        }
                    }
                }
            }
            Item::Skipped { pos, len, why } => {
                log::error!(
                    "{}: byte {pos}: {why}; skipped {len} bytes to the next good record",
                    path.display()
                );
                c.corrupt_records += 1;
                c.corrupt_bytes += len;
                if holes.len() < MAX_HOLES {
                    holes.push((pos, pos + len));
                }
            }
            Item::Torn { pos, len, why } => {
                log::warn!(
                    "{}: byte {pos}: torn record at the end ({why}); cut off {len} bytes",
                    path.display()
                );
                c.corrupt_records += 1;
                c.corrupt_bytes += len;
                cut = Some(pos);
            }
        }
    }
    drop(r);
    if let Some(pos) = cut {
        let w = ctx(OpenOptions::new().write(true).open(path), "open", path)?;
        ctx(w.set_len(pos), "truncate", path)?;
        ctx(w.sync_all(), "fsync", path)?;
    }
    let len = ctx(f.metadata(), "stat", path)?.len();
    Ok(Scanned {
        len,
        last_seq,
        holes,
        seqs,
        first_unreleased,
        first_moved_ts,
    })
}

/// Moves `files` forward by every source of batch `b`, with the bytes before each new
/// position (its tail) where `b`'s own lines hold them.
pub(crate) fn advance_by(files: &mut Vec<FileMark>, b: &frame::Batch<'_>) {
    for (i, s) in b.sources.iter().enumerate() {
        advance(files, s);
        if let Some(t) = tail_in(b, i) {
            let m = files.iter_mut().find(|f| (f.dev, f.ino) == (s.dev, s.ino));
            m.expect("advance keeps a mark of the file").tail = Some(t);
        }
    }
}

/// The tail ([`FileMark::tail`]) of source `i` of `b` at its end, from the frame's own lines:
/// the last of them, when they end at the source's end and hold the bytes before it
/// without a gap (a cut line's skipped rest is one). `None` when they hold fewer than
/// [`frame::TAIL_BYTES`] of them (short lines, the rest in earlier frames), or none.
fn tail_in(b: &frame::Batch<'_>, i: usize) -> Option<(u32, u32)> {
    let end = b.sources[i].end;
    let want = end.min(frame::TAIL_BYTES) as usize;
    let mut parts: Vec<&[u8]> = Vec::new();
    let (mut at, mut have) = (end, 0usize);
    for l in b.lines.iter().rev().filter(|l| l.source as usize == i) {
        let newline = l.flags & frame::LINE_PARTIAL == 0;
        let len = l.text.len() as u64 + u64::from(newline);
        if l.flags & frame::LINE_CUT != 0 || l.offset + len != at {
            break;
        }
        if newline {
            parts.push(b"\n");
        }
        parts.push(l.text);
        at = l.offset;
        have += len as usize;
        if have >= want {
            break;
        }
    }
    if have < want {
        return None;
    }
    // `parts` is the bytes before `end`, backwards; the last `want` of them, in order.
    let mut bytes = Vec::with_capacity(have);
    for p in parts.iter().rev() {
        bytes.extend_from_slice(p);
    }
    Some((want as u32, crc32fast::hash(&bytes[have - want..])))
}

/// Moves `files` forward by one source of a frame: the file's position becomes the frame's.
/// The size last seen stays, unless the frame is of other content under the same inode (a
/// truncation since: its end before the position, or another head of the same length);
/// then it is the frame's end, or a file lost or truncated after the restart would have
/// the old content's unread rest counted again.
pub(crate) fn advance(files: &mut Vec<FileMark>, s: &frame::Source<'_>) {
    let m = FileMark {
        path: s.path.as_bytes().to_vec(),
        dev: s.dev,
        ino: s.ino,
        fp_len: s.fp_len,
        fp: s.fp,
        offset: s.end,
        size: s.end,
        // A frame names no bytes before its end: a position it moves has no tail.
        tail: None,
    };
    match files.iter_mut().find(|f| (f.dev, f.ino) == (s.dev, s.ino)) {
        Some(f) => {
            let other =
                s.end < f.offset || (s.fp_len, s.fp) != (f.fp_len, f.fp) && s.fp_len == f.fp_len;
            let size = if other { s.end } else { f.size.max(s.end) };
            let tail = f
                .tail
                .filter(|_| !other && s.end == f.offset && s.fp == f.fp);
            *f = m;
            f.size = size;
            f.tail = tail;
        }
        None => files.push(m),
    }
}
