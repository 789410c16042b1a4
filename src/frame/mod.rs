//! The frame: tailbeat's unit on disk (spool, file sink) and on the wire (MQTT, HTTP).
//!
//! This module owns the byte format and nothing else: it never touches a file or a socket.
//! Always true: a frame that [`check`] accepts has a valid magic, a known version, kind and
//! flags, a length within [`MAX_PAYLOAD`], and a CRC-32 that covers its header and the payload
//! as stored (compressed or not). A payload is inflated only by a [`Decoder`], never past its
//! limit.
//!
//! The specification, with test vectors that `tests` below check, follows.
//!
#![doc = include_str!("FORMAT.md")]

mod build;
mod codec;
pub mod json;
mod reader;
mod split;

pub use build::{BatchBuilder, SourceRef};
pub use codec::{Codec, CODEC_BITS, COMPRESS_ABOVE};
pub use reader::{FrameReader, Item};
pub use split::rebatch;

use serde::{Deserialize, Serialize};
use std::fmt;

/// First four bytes of every frame: `tbFR`.
pub const MAGIC: [u8; 4] = *b"tbFR";
/// The format version this code writes and reads.
pub const VERSION: u8 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 16;
/// Hard upper bound of a payload: no reader allocates more, whatever a length field says.
pub const MAX_PAYLOAD: usize = 16 << 20;

/// Line flag: the line was longer than `max_line_bytes` and was cut there.
pub const LINE_CUT: u8 = 1;
/// Line flag: the line had no newline; it was flushed after `partial_flush`.
pub const LINE_PARTIAL: u8 = 2;

/// What a frame carries (header byte 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Log lines: the payload is a [`Batch`].
    Batch = 1,
    /// Local state: the payload is a [`Checkpoint`]; never sent to a sink.
    Checkpoint = 2,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Batch),
            2 => Some(Kind::Checkpoint),
            _ => None,
        }
    }
}

/// Why bytes are not a frame. Each variant says what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer bytes than a header, or than the header's length field announces.
    Short {
        /// Bytes needed.
        need: usize,
        /// Bytes there.
        have: usize,
    },
    /// The first four bytes are not `tbFR`.
    BadMagic([u8; 4]),
    /// A version this code does not read.
    BadVersion(u8),
    /// A kind byte that is not 1 or 2.
    BadKind(u8),
    /// Flag bits that version 1 does not define (or a compressed checkpoint).
    BadFlags(u8),
    /// A length field over [`MAX_PAYLOAD`] or over the reader's own limit.
    TooLong {
        /// The length field.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The CRC-32 in the header does not match the bytes.
    BadCrc {
        /// Stored in the header.
        expected: u32,
        /// Computed over the bytes.
        found: u32,
    },
    /// The CRC matched but the payload is not valid postcard for its kind.
    BadPayload(postcard::Error),
    /// The CRC matched but the compressed payload does not inflate to its declared length.
    BadCompressed {
        /// The codec the flags name.
        codec: Codec,
        /// What the codec found.
        why: String,
    },
    /// A compressed frame given to a function that reads only plain ones ([`decode_batch`]).
    NeedsDecoder(Codec),
    /// A compressed payload declares a plain length over the decoder's limit.
    Expands {
        /// The declared plain length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A line names a source the batch does not have.
    BadSource {
        /// The line's source index.
        index: u32,
        /// How many sources the batch has.
        sources: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Short { need, have } => {
                write!(f, "truncated frame: need {need} bytes, have {have}")
            }
            FrameError::BadMagic(m) => write!(f, "bad magic {:02x?}", m),
            FrameError::BadVersion(v) => write!(f, "unknown format version {v}"),
            FrameError::BadKind(k) => write!(f, "unknown frame kind {k}"),
            FrameError::BadFlags(b) => write!(f, "unknown flags {b:#04x}"),
            FrameError::TooLong { len, max } => {
                write!(f, "payload length {len} over the limit of {max}")
            }
            FrameError::BadCrc { expected, found } => {
                write!(
                    f,
                    "bad CRC-32: header says {expected:08x}, bytes give {found:08x}"
                )
            }
            FrameError::BadPayload(e) => {
                // In our words: postcard's own are long and say the same (and cost ~1 KB).
                use postcard::Error as P;
                let why = match e {
                    P::DeserializeUnexpectedEnd => "it ends early",
                    P::DeserializeBadVarint => "a varint runs on",
                    P::DeserializeBadUtf8 | P::DeserializeBadChar => "a text is not UTF-8",
                    _ => "a field is malformed",
                };
                write!(f, "payload does not decode: {why}")
            }
            FrameError::BadCompressed { codec, why } => {
                write!(f, "{codec} payload does not decompress: {why}")
            }
            FrameError::NeedsDecoder(codec) => write!(
                f,
                "the payload is compressed ({codec}): read it with a frame::Decoder"
            ),
            FrameError::Expands { len, max } => write!(
                f,
                "compressed payload would expand to {len} bytes, over the limit of {max}"
            ),
            FrameError::BadSource { index, sources } => write!(
                f,
                "a line names source {index}, but the batch has {sources} sources"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// The fixed 16-byte header, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the payload is.
    pub kind: Kind,
    /// Flag bits: the payload's codec ([`Header::codec`]), nothing else.
    pub flags: u8,
    /// Payload length in bytes.
    pub len: usize,
    /// CRC-32 of header bytes 0..12 and the payload.
    pub crc: u32,
}

impl Header {
    /// Parses and checks a header, without looking at the payload.
    pub fn parse(b: &[u8], max_payload: usize) -> Result<Header, FrameError> {
        if b.len() < HEADER_LEN {
            return Err(FrameError::Short {
                need: HEADER_LEN,
                have: b.len(),
            });
        }
        let magic = [b[0], b[1], b[2], b[3]];
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        if b[4] != VERSION {
            return Err(FrameError::BadVersion(b[4]));
        }
        let kind = Kind::from_u8(b[5]).ok_or(FrameError::BadKind(b[5]))?;
        // Only a batch may be compressed, and only with a codec this version defines.
        let codec_ok = b[6] & !CODEC_BITS == 0
            && Codec::from_flags(b[6]).is_some()
            && (kind == Kind::Batch || b[6] == 0);
        if !codec_ok || b[7] != 0 {
            return Err(FrameError::BadFlags(b[6] | b[7]));
        }
        let len = u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize;
        let max = max_payload.min(MAX_PAYLOAD);
        if len > max {
            return Err(FrameError::TooLong { len, max });
        }
        Ok(Header {
            kind,
            flags: b[6],
            len,
            crc: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        })
    }

    /// How the payload is stored ([`Codec::None`]: as it is).
    pub fn codec(&self) -> Codec {
        Codec::from_flags(self.flags).unwrap_or(Codec::None)
    }
}

/// Checks a whole frame (header, length, CRC) and returns its header and payload as stored
/// (compressed if [`Header::codec`] says so; a [`Decoder`] inflates it).
pub fn check(frame: &[u8]) -> Result<(Header, &[u8]), FrameError> {
    let h = Header::parse(frame, MAX_PAYLOAD)?;
    let end = HEADER_LEN + h.len;
    if frame.len() < end {
        return Err(FrameError::Short {
            need: end,
            have: frame.len(),
        });
    }
    let found = crc(&frame[..12], &frame[HEADER_LEN..end]);
    if found != h.crc {
        return Err(FrameError::BadCrc {
            expected: h.crc,
            found,
        });
    }
    Ok((h, &frame[HEADER_LEN..end]))
}

fn crc(head: &[u8], payload: &[u8]) -> u32 {
    let mut c = crc32fast::Hasher::new();
    c.update(head);
    c.update(payload);
    c.finalize()
}

/// Wraps a payload in a header. Used for checkpoints; batches are framed by [`BatchBuilder`].
pub fn seal(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header_bytes(kind, payload.len()));
    out.extend_from_slice(payload);
    let c = crc(&out[..12], payload);
    out[12..16].copy_from_slice(&c.to_le_bytes());
    out
}

/// Wraps a batch payload already stored with `codec` (the plain length and the codec's
/// stream, as FORMAT.md says; plain postcard for [`Codec::None`]) in a header, flags and CRC
/// set. Nothing checks the payload: for tests, fuzzing, and tools that write frames.
pub fn seal_stored(codec: Codec, stored: &[u8]) -> Vec<u8> {
    let mut out = seal(Kind::Batch, stored);
    out[6] = codec.flag();
    let c = crc(&out[..12], stored);
    out[12..16].copy_from_slice(&c.to_le_bytes());
    out
}

fn header_bytes(kind: Kind, len: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&MAGIC);
    h[4] = VERSION;
    h[5] = kind as u8;
    h[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    h
}

/// A batch of log lines: the payload of a [`Kind::Batch`] frame, borrowed from its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch<'a> {
    /// The stream: the instance id, or `INSTANCE/NAME` for a fleet pipeline of its own.
    pub instance: &'a str,
    /// Sequence number: never reused, never goes backwards, survives restarts.
    pub seq: u64,
    /// Unix time in milliseconds that line timestamps are relative to.
    pub base_ts_ms: u64,
    /// The files the lines come from; `Line::source` indexes this.
    #[serde(borrow)]
    pub sources: Vec<Source<'a>>,
    /// The lines, in the order they were read.
    #[serde(borrow)]
    pub lines: Vec<Line<'a>>,
}

/// The leading fields of a batch, for readers that only need its identity and sources.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BatchHead<'a> {
    /// See [`Batch::instance`].
    pub instance: &'a str,
    /// See [`Batch::seq`].
    pub seq: u64,
    /// See [`Batch::base_ts_ms`].
    pub base_ts_ms: u64,
    /// See [`Batch::sources`].
    #[serde(borrow)]
    pub sources: Vec<Source<'a>>,
    /// Number of lines that follow.
    pub line_count: u64,
}

/// One file a batch reads from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source<'a> {
    /// The path the file was found under (the name it had before a rotation).
    pub path: &'a str,
    /// Device number of the file.
    pub dev: u64,
    /// Inode number of the file.
    pub ino: u64,
    /// How many leading bytes `fp` covers.
    pub fp_len: u32,
    /// CRC-32 of the file's first `fp_len` bytes: tells a reused inode from the old file.
    pub fp: u32,
    /// Offset just past the last byte this batch consumed from the file.
    pub end: u64,
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line<'a> {
    /// Index into [`Batch::sources`].
    pub source: u32,
    /// Byte offset of the line's first byte in its file.
    pub offset: u64,
    /// Milliseconds after [`Batch::base_ts_ms`] at which the line was read.
    pub ts_delta_ms: u32,
    /// [`LINE_CUT`], [`LINE_PARTIAL`].
    pub flags: u8,
    /// The line without its newline (nor a `\r` before it); any bytes, not only UTF-8.
    pub text: &'a [u8],
}

/// The agent's resume point, kept as the spool's `state` file (never sent anywhere).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The next sequence number to assign.
    pub next_seq: u64,
    /// Every frame with a sequence number up to this one has been acknowledged.
    pub acked_seq: u64,
    /// Where each known file was committed.
    pub files: Vec<FileMark>,
}

/// A file's committed position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMark {
    /// Path as raw bytes (paths need not be UTF-8).
    pub path: Vec<u8>,
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// See [`Source::fp_len`].
    pub fp_len: u32,
    /// See [`Source::fp`].
    pub fp: u32,
    /// Every byte before this offset is in a durable frame (or was skipped on purpose).
    pub offset: u64,
    /// File size when last seen: what is lost if the file vanishes unread.
    pub size: u64,
    /// The bytes just before `offset` (the last up to [`TAIL_BYTES`]) as (how many, CRC-32),
    /// when known: what tells this file, at a restart, from another that starts the same
    /// (lines that all begin alike, a banner longer than the fingerprint) or from itself
    /// written again past the position. In a `state` file after `as_of`, not among the
    /// checkpoint's own fields (see FORMAT.md).
    #[serde(skip)]
    pub tail: Option<(u32, u32)>,
}

/// How many bytes before a position [`FileMark::tail`] covers: the end of the last line
/// read, where lines that begin alike differ.
pub const TAIL_BYTES: u64 = 64;

/// [`FileMark::tail`] of `file` at `offset`: `None` at 0, or when the bytes are not there.
pub fn tail_of(file: &std::fs::File, offset: u64) -> Option<(u32, u32)> {
    use std::os::unix::fs::FileExt;
    let n = offset.min(TAIL_BYTES);
    if n == 0 {
        return None;
    }
    let mut b = [0u8; TAIL_BYTES as usize];
    let b = &mut b[..n as usize];
    file.read_exact_at(b, offset - n).ok()?;
    Some((n as u32, crc32fast::hash(b)))
}

/// Decodes a batch frame stored plain, where it lies; a compressed one is refused with
/// [`FrameError::NeedsDecoder`]. For frames from an agent, which may be compressed
/// (`batch.compression`), use a [`Decoder`].
pub fn decode_batch(frame: &[u8]) -> Result<Batch<'_>, FrameError> {
    let (h, payload) = plain_only(frame)?;
    if h.kind != Kind::Batch {
        return Err(FrameError::BadKind(h.kind as u8));
    }
    postcard::from_bytes(payload).map_err(FrameError::BadPayload)
}

/// Decodes a plain batch frame's head (identity, sources, line count); see [`decode_batch`].
pub fn decode_head(frame: &[u8]) -> Result<BatchHead<'_>, FrameError> {
    let (h, payload) = plain_only(frame)?;
    if h.kind != Kind::Batch {
        return Err(FrameError::BadKind(h.kind as u8));
    }
    postcard::from_bytes(payload).map_err(FrameError::BadPayload)
}

fn plain_only(frame: &[u8]) -> Result<(Header, &[u8]), FrameError> {
    let (h, payload) = check(frame)?;
    match h.codec() {
        Codec::None => Ok((h, payload)),
        codec => Err(FrameError::NeedsDecoder(codec)),
    }
}

/// Decodes batch frames, compressed or not, through one buffer.
///
/// Its memory is one buffer of at most `max` bytes (from [`Decoder::new`]; [`MAX_PAYLOAD`] by
/// default): a compressed payload that declares a larger plain length is refused with
/// [`FrameError::Expands`] before anything is allocated, and one whose stream would write
/// past its declared length is refused as it gets there. A plain payload is read where it
/// lies, without a copy.
///
/// ```
/// use tailbeat::frame::{BatchBuilder, Codec, Decoder, SourceRef};
/// let src = SourceRef { path: "/var/log/app.log", dev: 1, ino: 2, fp_len: 0, fp: 0 };
/// let mut b = BatchBuilder::new(1000, 64 << 10);
/// b.set_codec(Codec::Lz4);
/// for i in 0..100 {
///     assert!(b.push(&src, i * 41, (i + 1) * 41, 1_700_000_000_000, 0, &[b'x'; 40]));
/// }
/// let frame = b.finish("gw-1", 1);
/// assert!(frame.len() < 100 * 40, "stored compressed");
/// let mut d = Decoder::default();
/// let batch = d.batch(&frame).unwrap();
/// assert_eq!(batch.lines.len(), 100);
/// assert_eq!(batch.lines[99].text, &[b'x'; 40]);
/// ```
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    max: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(MAX_PAYLOAD)
    }
}

impl Decoder {
    /// A decoder that inflates payloads up to `max` bytes (never more than [`MAX_PAYLOAD`]).
    pub fn new(max: usize) -> Self {
        Decoder {
            buf: Vec::new(),
            max: max.min(MAX_PAYLOAD),
        }
    }

    /// Checks a whole frame and returns its header and its plain payload: where it lies
    /// when stored plain, inflated into the decoder's buffer when compressed.
    pub fn payload<'a>(&'a mut self, frame: &'a [u8]) -> Result<(Header, &'a [u8]), FrameError> {
        let (h, stored) = check(frame)?;
        match h.codec() {
            Codec::None => Ok((h, stored)),
            codec => {
                codec::decompress(codec, stored, self.max, &mut self.buf)?;
                Ok((h, &self.buf[..]))
            }
        }
    }

    /// Decodes a batch frame.
    pub fn batch<'a>(&'a mut self, frame: &'a [u8]) -> Result<Batch<'a>, FrameError> {
        let (h, payload) = self.payload(frame)?;
        if h.kind != Kind::Batch {
            return Err(FrameError::BadKind(h.kind as u8));
        }
        postcard::from_bytes(payload).map_err(FrameError::BadPayload)
    }

    /// Decodes a batch frame's head (identity, sources, line count).
    pub fn head<'a>(&'a mut self, frame: &'a [u8]) -> Result<BatchHead<'a>, FrameError> {
        let (h, payload) = self.payload(frame)?;
        if h.kind != Kind::Batch {
            return Err(FrameError::BadKind(h.kind as u8));
        }
        postcard::from_bytes(payload).map_err(FrameError::BadPayload)
    }
}

/// Encodes a checkpoint as a sealed frame.
pub fn encode_checkpoint(c: &Checkpoint) -> Vec<u8> {
    let payload = postcard::to_allocvec(c).expect("a Vec sink cannot fail");
    seal(Kind::Checkpoint, &payload)
}

/// Decodes a checkpoint frame.
pub fn decode_checkpoint(frame: &[u8]) -> Result<Checkpoint, FrameError> {
    let (h, payload) = check(frame)?;
    if h.kind != Kind::Checkpoint {
        return Err(FrameError::BadKind(h.kind as u8));
    }
    postcard::from_bytes(payload).map_err(FrameError::BadPayload)
}

/// Encodes the spool's `state` file: `c`, then the ranges of sequence numbers that will
/// never be in the spool and are already accounted for (a varint count and varint pairs),
/// then `as_of`, when the positions were taken, in milliseconds since the Unix epoch (a
/// varint), then, when any position has one, each file's [`FileMark::tail`] in the
/// checkpoint's order (`(0, 0)` where unknown). The ranges are written only when there are any or a time follows them; with
/// neither, the bytes are exactly [`encode_checkpoint`]'s. A reader that knows only the
/// checkpoint stops where it ends, one that knows the ranges stops after them (postcard
/// ignores what follows), so old and new `state` files read both ways.
pub fn encode_state(c: &Checkpoint, gone: &[(u64, u64)], as_of: Option<u64>) -> Vec<u8> {
    let mut payload = postcard::to_allocvec(c).expect("a Vec sink cannot fail");
    if !gone.is_empty() || as_of.is_some() {
        payload = postcard::to_extend(gone, payload).expect("a Vec sink cannot fail");
    }
    if let Some(t) = as_of {
        payload = postcard::to_extend(&t, payload).expect("a Vec sink cannot fail");
        if c.files.iter().any(|f| f.tail.is_some()) {
            let tails: Vec<(u32, u32)> = c.files.iter().map(|f| f.tail.unwrap_or((0, 0))).collect();
            payload = postcard::to_extend(&tails, payload).expect("a Vec sink cannot fail");
        }
    }
    seal(Kind::Checkpoint, &payload)
}

/// What a `state` file holds: the checkpoint, the ranges gone, and when the positions were
/// taken (milliseconds since the Unix epoch), if it says.
pub type State = (Checkpoint, Vec<(u64, u64)>, Option<u64>);

/// Decodes a `state` file written by [`encode_state`] or [`encode_checkpoint`].
pub fn decode_state(frame: &[u8]) -> Result<State, FrameError> {
    let (h, payload) = check(frame)?;
    if h.kind != Kind::Checkpoint {
        return Err(FrameError::BadKind(h.kind as u8));
    }
    let (c, rest) = postcard::take_from_bytes(payload).map_err(FrameError::BadPayload)?;
    if rest.is_empty() {
        return Ok((c, Vec::new(), None));
    }
    let (gone, rest) = postcard::take_from_bytes(rest).map_err(FrameError::BadPayload)?;
    if rest.is_empty() {
        return Ok((c, gone, None));
    }
    let (as_of, rest) = postcard::take_from_bytes(rest).map_err(FrameError::BadPayload)?;
    let mut c: Checkpoint = c;
    if !rest.is_empty() {
        let tails: Vec<(u32, u32)> = postcard::from_bytes(rest).map_err(FrameError::BadPayload)?;
        // One per file, as written; any other count (not written by tailbeat: the CRC
        // matched) tells nothing, and every position is then taken without its tail.
        if tails.len() == c.files.len() {
            for (f, t) in c.files.iter_mut().zip(tails) {
                f.tail = (t.0 > 0).then_some(t);
            }
        }
    }
    Ok((c, gone, Some(as_of)))
}

#[cfg(test)]
mod tests;
