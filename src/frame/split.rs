//! Re-batching: a frame a peer refused as too large, cut into smaller frames that carry the
//! same lines, in the same order, under new sequence numbers.
//!
//! What always holds for the pieces of one frame:
//! - every line of the frame is in exactly one piece, with its source, offset, read time,
//!   flags and bytes unchanged, and the pieces in sequence order hold them in frame order;
//! - a frame of two lines or more gives two pieces or more, each at most half the frame's
//!   plain size (or one line), so cutting again always ends;
//! - positions never go back: after each file's own source, a piece names the file where the
//!   agent stands now (`marks`, as a checkpoint would record it), so a restart that moves
//!   the positions forward by every frame in the spool (`spool::open`) is not taken back to
//!   where the refused frame ended by pieces written after frames that read further.

use super::build::{BatchBuilder, SourceRef};
use super::{Codec, Decoder, FileMark, FrameError};

/// Cuts the batch `frame` into frames of at most `max_bytes` (plain; at least one line
/// each), numbered from `first_seq`, compressed with `codec` where it pays. `marks` are the
/// files' positions now. One frame back means it could not be cut (a single line).
///
/// # Errors
/// The frame does not decode.
pub fn rebatch(
    frame: &[u8],
    max_bytes: usize,
    codec: Codec,
    first_seq: u64,
    marks: &[FileMark],
    dec: &mut Decoder,
) -> Result<Vec<Vec<u8>>, FrameError> {
    let batch = dec.batch(frame)?;
    let mut b = BatchBuilder::new(u32::MAX, max_bytes);
    b.set_codec(codec);
    let mut out = Vec::new();
    // Which of the frame's sources the open piece names.
    let mut named = vec![false; batch.sources.len()];
    let finish = |b: &mut BatchBuilder, named: &mut [bool], out: &mut Vec<Vec<u8>>| {
        for (i, _) in named.iter().enumerate().filter(|(_, n)| **n) {
            let s = &batch.sources[i];
            if let Some(m) = marks.iter().find(|m| (m.dev, m.ino) == (s.dev, s.ino)) {
                let path = String::from_utf8_lossy(&m.path);
                let now = SourceRef {
                    path: &path,
                    dev: m.dev,
                    ino: m.ino,
                    fp_len: m.fp_len,
                    fp: m.fp,
                };
                b.note(&now, m.offset);
            }
        }
        named.iter_mut().for_each(|n| *n = false);
        let seq = first_seq + out.len() as u64;
        out.push(b.finish(batch.instance, seq));
    };
    for line in &batch.lines {
        let i = line.source as usize;
        let s = batch.sources.get(i).ok_or(FrameError::BadSource {
            index: line.source,
            sources: batch.sources.len(),
        })?;
        let src = SourceRef {
            path: s.path,
            dev: s.dev,
            ino: s.ino,
            fp_len: s.fp_len,
            fp: s.fp,
        };
        let ts = batch.base_ts_ms + u64::from(line.ts_delta_ms);
        if !b.push(&src, line.offset, s.end, ts, line.flags, line.text) {
            finish(&mut b, &mut named, &mut out);
            let took = b.push(&src, line.offset, s.end, ts, line.flags, line.text);
            debug_assert!(took, "an empty batch takes any line");
        }
        named[i] = true;
    }
    if !b.is_empty() {
        finish(&mut b, &mut named, &mut out);
    }
    Ok(out)
}
