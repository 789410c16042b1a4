//! Encodes a batch incrementally, so a frame costs one buffer of `batch.max_bytes` and no
//! per-line allocation.
//!
//! The bytes are postcard's, written by hand: varints for integers and lengths, raw bytes for
//! `u8`, length-prefixed bytes for strings and byte slices. `tests.rs` proves it by decoding
//! every builder output with `postcard::from_bytes`.

use super::codec::{Codec, Compressor, COMPRESS_ABOVE};
use super::{header_bytes, Kind, HEADER_LEN};

/// A file as a batch names it.
#[derive(Debug, Clone, Copy)]
pub struct SourceRef<'a> {
    /// Path the file was found under.
    pub path: &'a str,
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Bytes covered by `fp`.
    pub fp_len: u32,
    /// Fingerprint of the first bytes.
    pub fp: u32,
}

#[derive(Debug)]
struct SourceSlot {
    dev: u64,
    ino: u64,
    fp_len: u32,
    fp: u32,
    encoded: Vec<u8>,
    end: u64,
}

impl SourceSlot {
    /// The same file as `src` knows it: same inode and same fingerprint. A file truncated
    /// and written again (or whose fingerprint grew) gets a slot of its own, after the old
    /// one, so a frame never names new content's offsets with the old content's identity.
    fn is(&self, src: &SourceRef<'_>) -> bool {
        (self.dev, self.ino, self.fp_len, self.fp) == (src.dev, src.ino, src.fp_len, src.fp)
    }
}

/// Accumulates lines into one batch frame.
///
/// Its limit is `max_bytes` (from `batch.max_bytes`): [`push`](Self::push) refuses a line that
/// would take the finished frame past it, unless the batch is empty, so a frame is at most
/// `max_bytes` or one line (at most `max_line_bytes`) plus its overhead. The limit is on the
/// plain payload: compression ([`set_codec`](Self::set_codec)) only ever makes it smaller.
#[derive(Debug)]
pub struct BatchBuilder {
    body: Vec<u8>,
    lines: u32,
    sources: Vec<SourceSlot>,
    sources_len: usize,
    base_ts_ms: u64,
    max_lines: u32,
    max_bytes: usize,
    codec: Codec,
    compressor: Compressor,
    /// The last compressed frame's plain bytes, kept to write the next one into.
    plain: Vec<u8>,
}

/// Worst case of a line's fixed fields: source, offset, ts delta, flags, length.
const LINE_OVERHEAD: usize = 5 + 10 + 5 + 1 + 5;
/// Worst case of the prefix before the sources: instance length, seq, base ts, two counts.
const PREFIX_OVERHEAD: usize = 5 + 10 + 10 + 5 + 5;

impl BatchBuilder {
    /// A builder closing batches at `max_lines` lines or `max_bytes` encoded bytes.
    pub fn new(max_lines: u32, max_bytes: usize) -> Self {
        BatchBuilder {
            body: Vec::new(),
            lines: 0,
            sources: Vec::new(),
            sources_len: 0,
            base_ts_ms: 0,
            max_lines: max_lines.max(1),
            max_bytes,
            codec: Codec::None,
            compressor: Compressor::default(),
            plain: Vec::new(),
        }
    }

    /// Stores payloads over [`COMPRESS_ABOVE`] bytes with `codec` (`batch.compression`), from
    /// the next frame on; a payload that would not shrink is stored plain.
    pub fn set_codec(&mut self, codec: Codec) {
        self.codec = codec;
    }

    /// Changes the limits; they apply from the next line on.
    pub fn set_limits(&mut self, max_lines: u32, max_bytes: usize) {
        self.max_lines = max_lines.max(1);
        self.max_bytes = max_bytes;
    }

    /// Number of lines held.
    pub fn len(&self) -> u32 {
        self.lines
    }

    /// True when no line is held.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// True when the batch holds `max_lines` lines.
    pub fn is_full(&self) -> bool {
        self.lines >= self.max_lines
    }

    /// Unix ms of the first line (meaningless when empty).
    pub fn base_ts_ms(&self) -> u64 {
        self.base_ts_ms
    }

    /// Whether the batch holds lines of the file `(dev, ino)`.
    pub fn holds(&self, dev: u64, ino: u64) -> bool {
        self.sources.iter().any(|s| s.dev == dev && s.ino == ino)
    }

    /// The files in this batch and the offset just past what it took from each.
    pub fn ends(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.sources.iter().map(|s| (s.dev, s.ino, s.end))
    }

    /// Adds a line that starts at `offset` and, with its newline, ends at `end`.
    ///
    /// Returns `false`, holding nothing new, when the batch is full or the line would take it
    /// past `max_bytes`; an empty batch always takes the line. For example, with room for
    /// about one 40-byte line:
    ///
    /// ```
    /// use tailbeat::frame::{BatchBuilder, SourceRef};
    /// let src = SourceRef { path: "/var/log/app.log", dev: 1, ino: 2, fp_len: 0, fp: 0 };
    /// let mut b = BatchBuilder::new(1000, 130);
    /// assert!(b.push(&src, 0, 41, 1_700_000_000_000, 0, &[b'x'; 40]));
    /// assert!(!b.push(&src, 41, 82, 1_700_000_000_000, 0, &[b'y'; 40]));
    /// assert_eq!(b.len(), 1);
    /// ```
    pub fn push(
        &mut self,
        src: &SourceRef<'_>,
        offset: u64,
        end: u64,
        ts_ms: u64,
        flags: u8,
        text: &[u8],
    ) -> bool {
        if self.lines >= self.max_lines {
            return false;
        }
        let idx = self.sources.iter().rposition(|s| s.is(src));
        let new_src = if idx.is_none() {
            src.path.len() + 45
        } else {
            0
        };
        if self.lines > 0
            && self.encoded_len() + new_src + LINE_OVERHEAD + text.len() > self.max_bytes
        {
            return false;
        }
        if self.lines == 0 {
            self.base_ts_ms = ts_ms;
        }
        let idx = match idx {
            Some(i) => i,
            None => self.add_source(src, end),
        };
        self.sources[idx].end = end;
        let body = &mut self.body;
        put_varint(body, idx as u64);
        put_varint(body, offset);
        // A clock that steps back must not wrap the delta: clamp at 0.
        put_varint(
            body,
            ts_ms.saturating_sub(self.base_ts_ms).min(u32::MAX as u64),
        );
        body.push(flags);
        put_bytes(body, text);
        self.lines += 1;
        true
    }

    /// Names a file and a position in it without a line: the frame then carries the file's
    /// position like those of the files it has lines from. The tailer notes a copytruncate
    /// copy it claims with nothing left to read, so that no frame with the truncated file's
    /// new content can reach the spool without the claim (a restart would otherwise read the
    /// copy again). A noted source rides with the next line; it closes no frame by itself.
    pub fn note(&mut self, src: &SourceRef<'_>, end: u64) {
        match self.sources.iter().rposition(|s| s.is(src)) {
            Some(i) => self.sources[i].end = self.sources[i].end.max(end),
            None => {
                self.add_source(src, end);
            }
        }
    }

    fn add_source(&mut self, src: &SourceRef<'_>, end: u64) -> usize {
        let mut encoded = Vec::with_capacity(src.path.len() + 24);
        put_bytes(&mut encoded, src.path.as_bytes());
        put_varint(&mut encoded, src.dev);
        put_varint(&mut encoded, src.ino);
        put_varint(&mut encoded, src.fp_len as u64);
        put_varint(&mut encoded, src.fp as u64);
        self.sources_len += encoded.len() + 10;
        self.sources.push(SourceSlot {
            dev: src.dev,
            ino: src.ino,
            fp_len: src.fp_len,
            fp: src.fp,
            encoded,
            end,
        });
        self.sources.len() - 1
    }

    /// An upper bound of the frame's length if it were finished now.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + PREFIX_OVERHEAD + 64 + self.sources_len + self.body.len()
    }

    /// Finishes the frame with the given identity and empties the builder.
    pub fn finish(&mut self, instance: &str, seq: u64) -> Vec<u8> {
        // The plain frame is written once, straight into a buffer that is kept between
        // frames while they go out compressed: a fresh 64 KiB buffer per frame cost a page
        // fault per 4 KiB under musl's allocator. A frame stored plain is that buffer.
        let mut out = std::mem::take(&mut self.plain);
        out.clear();
        out.reserve(self.encoded_len() + instance.len());
        out.extend_from_slice(&header_bytes(Kind::Batch, 0));
        put_bytes(&mut out, instance.as_bytes());
        put_varint(&mut out, seq);
        put_varint(&mut out, self.base_ts_ms);
        put_varint(&mut out, self.sources.len() as u64);
        for s in &self.sources {
            out.extend_from_slice(&s.encoded);
            put_varint(&mut out, s.end);
        }
        put_varint(&mut out, self.lines as u64);
        out.extend_from_slice(&self.body);
        let len = out.len() - HEADER_LEN;
        out[8..12].copy_from_slice(&(len as u32).to_le_bytes());
        if self.codec != Codec::None && len > COMPRESS_ABOVE {
            // Room for lz4's worst case (it wants it whatever it then writes).
            let mut z = Vec::with_capacity(HEADER_LEN + 4 + len + len / 10 + 20);
            z.extend_from_slice(&header_bytes(Kind::Batch, 0));
            if self
                .compressor
                .compress(self.codec, &out[HEADER_LEN..], &mut z)
            {
                let stored = (z.len() - HEADER_LEN) as u32;
                z[6] = self.codec.flag();
                z[8..12].copy_from_slice(&stored.to_le_bytes());
                self.plain = std::mem::replace(&mut out, z);
                // Like the body: a burst's oversized frame is not kept.
                if self.plain.capacity() > self.max_bytes * 2 {
                    self.plain = Vec::new();
                }
            }
        }
        let c = super::crc(&out[..12], &out[HEADER_LEN..]);
        out[12..16].copy_from_slice(&c.to_le_bytes());
        self.body.clear();
        // A burst can grow the buffer to one oversized line; give that back.
        if self.body.capacity() > self.max_bytes * 2 {
            self.body.shrink_to(self.max_bytes);
        }
        self.sources.clear();
        self.sources_len = 0;
        self.lines = 0;
        out
    }
}

/// postcard's unsigned varint: 7 bits a byte, least significant first, high bit = more.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}
