//! The dedup rule as plain state: one high-water mark per stream, and the text they are
//! saved as. No file, no socket, no clock.
//!
//! Memory: one entry per stream ever seen (its name, its mark, its output length), never per
//! frame: a fleet of 10,000 agents costs about a megabyte, however long it runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What one stream has reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    /// The highest seq written out and made durable; a frame at or below it is a repeat.
    pub seq: u64,
    /// With `--out DIR`: the length of the stream's file once that frame was durable (bytes
    /// past it were written after the last saved mark, and are cut at start-up). 0 on stdout.
    pub out_len: u64,
}

/// What to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New: write it out. `missing` seqs lie between the mark and it (a gap: possible loss,
    /// or in a group, frames another member holds); 0 for the first frame of a stream.
    New {
        /// Seqs skipped since the mark.
        missing: u64,
    },
    /// At or below the mark: seen before (here, or, in a group, by another member).
    Repeat,
}

/// Every stream's mark.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    streams: BTreeMap<String, Mark>,
}

/// A saved marks file that does not parse: the line and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub why: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.why)
    }
}

impl std::error::Error for ParseError {}

/// The first line of a marks file.
const HEADER: &str = "tailbeat-consume marks v1";

impl Marks {
    /// The verdict for frame `seq` of `stream`; changes nothing.
    pub fn judge(&self, stream: &str, seq: u64) -> Verdict {
        match self.streams.get(stream) {
            None => Verdict::New { missing: 0 },
            Some(m) if seq <= m.seq => Verdict::Repeat,
            Some(m) => Verdict::New {
                missing: seq - m.seq - 1,
            },
        }
    }

    /// Frame `seq` of `stream` was written: the mark moves up to it (never down).
    pub fn advance(&mut self, stream: &str, seq: u64) {
        let m = self.streams.entry(stream.to_string()).or_default();
        m.seq = m.seq.max(seq);
    }

    /// The stream's output file is `len` bytes long with everything up to its mark in it.
    pub fn set_out_len(&mut self, stream: &str, len: u64) {
        self.streams.entry(stream.to_string()).or_default().out_len = len;
    }

    /// The stream's mark, if it has one.
    pub fn get(&self, stream: &str) -> Option<Mark> {
        self.streams.get(stream).copied()
    }

    /// How many streams have a mark.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether no stream has a mark.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// The marks as text: a header line, then `seq out_len stream` per stream, the stream
    /// [escaped](escape) so that it holds no space or newline.
    pub fn encode(&self) -> String {
        let mut s = format!("{HEADER}\n");
        for (k, m) in &self.streams {
            let _ = writeln!(s, "{} {} {}", m.seq, m.out_len, escape(k));
        }
        s
    }

    /// Reads what [`encode`](Self::encode) wrote.
    pub fn parse(text: &str) -> Result<Marks, ParseError> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, HEADER)) => {}
            other => {
                return Err(ParseError {
                    line: 1,
                    why: format!(
                        "expected {HEADER:?}, found {:?}",
                        other.map_or("", |(_, l)| l)
                    ),
                })
            }
        }
        let mut m = Marks::default();
        for (i, l) in lines {
            let bad = |why: &str| ParseError {
                line: i + 1,
                why: format!("{why}: {l:?}"),
            };
            let mut f = l.splitn(3, ' ');
            let (Some(seq), Some(len), Some(name)) = (f.next(), f.next(), f.next()) else {
                return Err(bad("expected `seq out_len stream`"));
            };
            let seq = seq.parse().map_err(|_| bad("seq is not a number"))?;
            let out_len = len.parse().map_err(|_| bad("out_len is not a number"))?;
            let name = unescape(name).ok_or_else(|| bad("bad escape in the stream"))?;
            m.streams.insert(name, Mark { seq, out_len });
        }
        Ok(m)
    }
}

/// A stream id as a file name and a word: bytes other than `A-Z a-z 0-9 - _ .` become
/// `%XX`, so `site-7/nginx` is `site-7%2Fnginx` and nothing can climb out of the directory.
pub fn escape(stream: &str) -> String {
    let mut s = String::with_capacity(stream.len());
    for b in stream.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
            s.push(b as char);
        } else {
            let _ = write!(s, "%{b:02X}");
        }
    }
    // "." and ".." are not file names of our own.
    if s.bytes().all(|b| b == b'.') {
        s = s.replace('.', "%2E");
    }
    s
}

/// The inverse of [`escape`]; `None` if `s` is not one of its results.
pub fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_at_or_below_the_mark_is_a_repeat_and_a_jump_counts_the_missing() {
        let mut m = Marks::default();
        assert_eq!(m.judge("a", 7), Verdict::New { missing: 0 });
        m.advance("a", 7);
        assert_eq!(m.judge("a", 7), Verdict::Repeat);
        assert_eq!(m.judge("a", 3), Verdict::Repeat);
        assert_eq!(m.judge("a", 8), Verdict::New { missing: 0 });
        assert_eq!(m.judge("a", 11), Verdict::New { missing: 3 });
        // Streams are apart: `b` has no mark.
        assert_eq!(m.judge("b", 1), Verdict::New { missing: 0 });
        // A mark never goes down.
        m.advance("a", 5);
        assert_eq!(m.get("a").unwrap().seq, 7);
    }

    #[test]
    fn marks_survive_their_text_with_any_stream_name() {
        let mut m = Marks::default();
        for (s, seq, len) in [
            ("site-7", 3, 100),
            ("site-7/nginx", u64::MAX, 0),
            ("we ird\n%/..", 1, 2),
            ("..", 9, 9),
        ] {
            m.advance(s, seq);
            m.set_out_len(s, len);
        }
        let text = m.encode();
        assert!(text.contains("3 100 site-7\n"), "{text}");
        assert!(text.contains(" site-7%2Fnginx\n"), "{text}");
        assert_eq!(Marks::parse(&text).unwrap(), m);
        assert_eq!(text.lines().count(), 5, "one line per stream: {text}");
    }

    #[test]
    fn a_damaged_marks_file_names_its_line() {
        let e = Marks::parse("tailbeat-consume marks v1\n1 2 a\nx 2 b\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.why.contains("seq"), "{e}");
        assert_eq!(Marks::parse("hello\n").unwrap_err().line, 1);
        assert!(Marks::parse("tailbeat-consume marks v1\n1 2 a%zz\n").is_err());
    }

    #[test]
    fn escaped_names_are_plain_file_names() {
        assert_eq!(escape("site-7/nginx"), "site-7%2Fnginx");
        assert_eq!(escape(".."), "%2E%2E");
        assert_eq!(escape("a.b_c"), "a.b_c");
        for s in ["", "/", "é", "a b", "%41"] {
            let e = escape(s);
            assert!(!e.contains('/') && !e.contains(' '), "{e}");
            assert_eq!(unescape(&e).as_deref(), Some(s));
        }
    }
}
