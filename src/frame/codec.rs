//! Payload compression: the codecs, their bits in the header's flags, and the bound on what a
//! compressed payload may expand to.
//!
//! A compressed payload is the plain payload's length (u32, little-endian) followed by the
//! codec's stream (FORMAT.md, "Compression"). The length comes first so that a reader checks
//! it against its limit *before* it allocates, then inflates into exactly that many bytes and
//! refuses a stream that wants more: a decompression bomb costs at most the limit, never
//! more, whatever the stream says.

use super::FrameError;
use std::fmt;

/// How `batch.compression` stores a batch payload over [`COMPRESS_ABOVE`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Stored as it is.
    None,
    /// Raw DEFLATE (RFC 1951), level 1.
    Deflate,
    /// LZ4 block format. The default where it is built in: measured in README, "Compression".
    Lz4,
}

impl Default for Codec {
    fn default() -> Self {
        if cfg!(feature = "lz4") {
            Codec::Lz4
        } else {
            Codec::None
        }
    }
}

impl Codec {
    /// A codec named in a config (`batch.compression`): one of the three, and built into
    /// this binary.
    pub fn named(name: &str) -> Result<Codec, String> {
        let c = match name {
            "none" => Codec::None,
            "deflate" => Codec::Deflate,
            "lz4" => Codec::Lz4,
            _ => {
                let shown: String = name.chars().take(64).collect();
                let more = match name.len() > shown.len() {
                    true => format!("… ({} bytes)", name.len()),
                    false => String::new(),
                };
                return Err(format!(
                    "unknown codec {shown:?}{more}, expected none, deflate or lz4"
                ));
            }
        };
        if !c.built_in() {
            return Err(format!(
                "{name} is left out of this build (cargo feature {name})"
            ));
        }
        Ok(c)
    }
}

/// Payloads of at most this many bytes are stored plain whatever the codec: below it the
/// header's 4-byte length and the codec's own overhead eat most of the gain, and a frame this
/// small is a quiet moment (a linger timeout), not the bulk of the bytes.
pub const COMPRESS_ABOVE: usize = 1024;

/// The flag bits that name the codec (FORMAT.md: `01` deflate, `02` lz4; `03` is refused).
pub const CODEC_BITS: u8 = 0x03;

/// The 4-byte length in front of a compressed stream.
pub const PLAIN_LEN_BYTES: usize = 4;

/// miniz's level 1 (one hash probe): most of deflate's ratio on log lines at a fraction of
/// level 6's time (README, "Compression").
#[cfg(feature = "deflate")]
const DEFLATE_LEVEL: i32 = 1;

impl Codec {
    /// The header flag bits that announce this codec (0 for [`Codec::None`]).
    pub fn flag(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Deflate => 1,
            Codec::Lz4 => 2,
        }
    }

    /// The codec the header's flag bits name; `None` for bits no codec has.
    pub fn from_flags(flags: u8) -> Option<Codec> {
        match flags & CODEC_BITS {
            0 => Some(Codec::None),
            1 => Some(Codec::Deflate),
            2 => Some(Codec::Lz4),
            _ => None,
        }
    }

    /// Whether this binary can compress and inflate with it (cargo features `lz4`, `deflate`).
    pub fn built_in(self) -> bool {
        match self {
            Codec::None => true,
            Codec::Deflate => cfg!(feature = "deflate"),
            Codec::Lz4 => cfg!(feature = "lz4"),
        }
    }

    /// The name `batch.compression` uses.
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Deflate => "deflate",
            Codec::Lz4 => "lz4",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A compressor's state kept between frames: deflate's tables (about 230 KB, allocated on the
/// first deflate frame) are reset rather than allocated again for every frame.
#[derive(Default)]
pub(super) struct Compressor {
    #[cfg(feature = "deflate")]
    deflate: Option<Box<miniz_oxide::deflate::core::CompressorOxide>>,
}

impl fmt::Debug for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Compressor");
        #[cfg(feature = "deflate")]
        d.field("deflate", &self.deflate.is_some());
        d.finish()
    }
}

impl Compressor {
    /// Appends `plain`'s length and its compressed stream to `out`, if that takes fewer than
    /// `plain.len()` bytes; otherwise leaves `out` as it was and returns false (the payload
    /// is then stored plain: compression never makes a frame bigger).
    // Without both codecs built in, some arms never produce a value.
    #[cfg_attr(
        not(all(feature = "lz4", feature = "deflate")),
        allow(unused_variables, unreachable_code)
    )]
    pub(super) fn compress(&mut self, codec: Codec, plain: &[u8], out: &mut Vec<u8>) -> bool {
        let start = out.len();
        let room = match plain.len().checked_sub(PLAIN_LEN_BYTES + 1) {
            Some(r) if codec != Codec::None => r,
            _ => return false,
        };
        out.extend_from_slice(&(plain.len() as u32).to_le_bytes());
        let at = out.len();
        let written: Option<usize> = match codec {
            // A codec left out of the build is refused in the config; were one to get here,
            // the payload is stored plain.
            Codec::None => None,
            #[cfg(not(feature = "lz4"))]
            Codec::Lz4 => None,
            #[cfg(not(feature = "deflate"))]
            Codec::Deflate => None,
            #[cfg(feature = "lz4")]
            Codec::Lz4 => {
                // lz4_flex wants room for its worst case, whatever the input.
                out.resize(
                    at + lz4_flex::block::get_maximum_output_size(plain.len()),
                    0,
                );
                lz4_flex::block::compress_into(plain, &mut out[at..])
                    .ok()
                    .filter(|&n| n <= room)
            }
            #[cfg(feature = "deflate")]
            Codec::Deflate => {
                use miniz_oxide::deflate::core::{
                    compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush,
                    TDEFLStatus,
                };
                let c = self.deflate.get_or_insert_with(|| {
                    Box::new(CompressorOxide::new(create_comp_flags_from_zip_params(
                        DEFLATE_LEVEL,
                        0,
                        0,
                    )))
                });
                c.reset();
                // An output of `room` bytes: a stream that does not fit did not shrink.
                out.resize(at + room, 0);
                match compress(c, plain, &mut out[at..], TDEFLFlush::Finish) {
                    (TDEFLStatus::Done, _, n) => Some(n),
                    _ => None,
                }
            }
        };
        match written {
            Some(n) => {
                out.truncate(at + n);
                true
            }
            None => {
                out.truncate(start);
                false
            }
        }
    }
}

/// Inflates a stored payload compressed with `codec` into `buf` (cleared first), refusing a
/// declared length over `max` before allocating, and a stream that does not give exactly the
/// declared length.
#[cfg_attr(
    not(all(feature = "lz4", feature = "deflate")),
    allow(unused_variables, unreachable_code)
)]
pub(super) fn decompress(
    codec: Codec,
    stored: &[u8],
    max: usize,
    buf: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let bad = |why: String| FrameError::BadCompressed { codec, why };
    if stored.len() < PLAIN_LEN_BYTES {
        return Err(bad(format!(
            "{} bytes, shorter than the 4-byte length",
            stored.len()
        )));
    }
    let len = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]) as usize;
    if len > max {
        return Err(FrameError::Expands { len, max });
    }
    let stream = &stored[PLAIN_LEN_BYTES..];
    buf.clear();
    buf.resize(len, 0);
    let got: usize = match codec {
        Codec::None => return Err(bad("no codec named".into())),
        #[cfg(not(feature = "lz4"))]
        Codec::Lz4 => return Err(bad("this build leaves lz4 out (cargo feature lz4)".into())),
        #[cfg(not(feature = "deflate"))]
        Codec::Deflate => {
            return Err(bad(
                "this build leaves deflate out (cargo feature deflate)".into()
            ))
        }
        #[cfg(feature = "lz4")]
        Codec::Lz4 => {
            lz4_flex::block::decompress_into(stream, buf).map_err(|e| bad(e.to_string()))?
        }
        #[cfg(feature = "deflate")]
        Codec::Deflate => {
            use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
            use miniz_oxide::inflate::TINFLStatus;
            let mut d = DecompressorOxide::new();
            // A non-wrapping output of exactly `len` bytes: a stream that wants more stops
            // with HasMoreOutput instead of growing anything.
            let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
            match decompress(&mut d, stream, buf, 0, flags) {
                (TINFLStatus::Done, read, n) if read == stream.len() => n,
                (TINFLStatus::Done, read, _) => {
                    return Err(bad(format!(
                        "{} bytes after the end of the stream",
                        stream.len() - read
                    )))
                }
                (TINFLStatus::HasMoreOutput, _, _) => {
                    return Err(bad(format!("expands past its declared {len} bytes")))
                }
                (s, _, _) => return Err(bad(format!("{s:?}"))),
            }
        }
    };
    if got != len {
        return Err(bad(format!("gives {got} bytes, its length says {len}")));
    }
    Ok(())
}
