//! The dedup rule as plain state: one high-water mark per stream, and the text they are
//! saved as: a snapshot ([`Marks::encode`], every stream) and journal records
//! ([`Marks::journal_record`], only the streams changed since the last record), replayed
//! over the snapshot at start-up ([`Marks::replay`]). No file, no socket, no clock.
//!
//! Memory: one entry per stream ever seen (its name, its mark, its output length), never per
//! frame: a fleet of 10,000 agents costs about a megabyte, however long it runs; plus the
//! names of the streams changed since the last record (at most one batch's).
//!
//! A journal record is the changed streams' lines, as in the snapshot, then
//! `end COUNT HASH` (the count of those lines and the FNV-1a 64 hash of their bytes, in
//! hex). A record counts only whole, once its end line is there: what follows the last end
//! line is a record whose write was cut short (never acknowledged: its sync never returned),
//! and is dropped. A record's line is the stream's state then, not a change to it, so
//! replaying records the snapshot already holds changes nothing: a crash between writing a
//! new snapshot and resetting the journal is harmless.

use std::collections::{BTreeMap, BTreeSet};
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
#[derive(Debug, Clone, Default)]
pub struct Marks {
    streams: BTreeMap<String, Mark>,
    /// Streams changed since the last [`journal_record`](Self::journal_record) was
    /// [saved](Self::record_saved).
    changed: BTreeSet<String>,
}

/// Equal marks: the same streams at the same marks (what is not yet journaled aside).
impl PartialEq for Marks {
    fn eq(&self, other: &Self) -> bool {
        self.streams == other.streams
    }
}

impl Eq for Marks {}

/// What [`Marks::replay`] found in a journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Replayed {
    /// Whole records applied.
    pub records: usize,
    /// Bytes after the last whole record (a write cut short), dropped.
    pub torn: usize,
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
        if !self.changed.contains(stream) {
            self.changed.insert(stream.to_string());
        }
    }

    /// The stream's output file is `len` bytes long with everything up to its mark in it.
    pub fn set_out_len(&mut self, stream: &str, len: u64) {
        self.streams.entry(stream.to_string()).or_default().out_len = len;
        if !self.changed.contains(stream) {
            self.changed.insert(stream.to_string());
        }
    }

    /// Whether a stream changed since the last record was saved.
    pub fn has_changes(&self) -> bool {
        !self.changed.is_empty()
    }

    /// The journal record of the streams changed since the last one was
    /// [saved](Self::record_saved) (module doc); empty if none changed.
    pub fn journal_record(&self) -> String {
        if self.changed.is_empty() {
            return String::new();
        }
        let mut s = String::new();
        for k in &self.changed {
            let m = self.streams[k];
            let _ = writeln!(s, "{} {} {}", m.seq, m.out_len, escape(k));
        }
        let hash = fnv1a(s.as_bytes());
        let _ = writeln!(s, "end {} {hash:016x}", self.changed.len());
        s
    }

    /// The last [`journal_record`](Self::journal_record) (or a snapshot of everything) is
    /// durable: the next record starts afresh.
    pub fn record_saved(&mut self) {
        self.changed.clear();
    }

    /// Applies the whole records of `journal` in order, and drops what follows the last one
    /// (a write cut short). A record for a stream the marks lack adds it.
    ///
    /// # Errors
    /// A whole record (one with its end line) that does not parse or whose count or hash
    /// does not match its lines: the line, and which record. Nothing is applied then.
    pub fn replay(&mut self, journal: &str) -> Result<Replayed, ParseError> {
        let mut staged: Vec<(String, Mark)> = Vec::new();
        let mut records = 0;
        // Where the current record starts: byte offset, line number (0-based).
        let (mut start, mut start_line) = (0, 0);
        let mut at = 0;
        for (i, l) in journal.split_inclusive('\n').enumerate() {
            at += l.len();
            let Some(end) = l.strip_prefix("end ").and_then(|e| e.strip_suffix('\n')) else {
                continue;
            };
            records += 1;
            let body = &journal[start..at - l.len()];
            let bad = |line: usize, why: String| ParseError {
                line: line + 1,
                why: format!("record {records}: {why}"),
            };
            let mut f = end.split(' ');
            let (Some(count), Some(hash), None) = (f.next(), f.next(), f.next()) else {
                return Err(bad(
                    i,
                    format!("expected `end COUNT HASH`: {:?}", l.trim_end()),
                ));
            };
            let n = body.lines().count();
            if count.parse::<usize>().ok() != Some(n)
                || u64::from_str_radix(hash, 16).ok() != Some(fnv1a(body.as_bytes()))
            {
                return Err(bad(
                    i,
                    format!("its {n} line(s) do not match {:?} (damaged)", l.trim_end()),
                ));
            }
            for (j, e) in body.lines().enumerate() {
                let (name, mark) = parse_line(e).map_err(|why| bad(start_line + j, why))?;
                staged.push((name, mark));
            }
            start = at;
            start_line = i + 1;
        }
        for (name, mark) in staged {
            self.streams.insert(name, mark);
        }
        Ok(Replayed {
            records,
            torn: journal.len() - start,
        })
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
            let (name, mark) = parse_line(l).map_err(|why| ParseError { line: i + 1, why })?;
            m.streams.insert(name, mark);
        }
        Ok(m)
    }
}

/// One `seq out_len stream` line (of a snapshot or a journal record).
fn parse_line(l: &str) -> Result<(String, Mark), String> {
    let bad = |why: &str| format!("{why}: {l:?}");
    let mut f = l.splitn(3, ' ');
    let (Some(seq), Some(len), Some(name)) = (f.next(), f.next(), f.next()) else {
        return Err(bad("expected `seq out_len stream`"));
    };
    let seq = seq.parse().map_err(|_| bad("seq is not a number"))?;
    let out_len = len.parse().map_err(|_| bad("out_len is not a number"))?;
    let name = unescape(name).ok_or_else(|| bad("bad escape in the stream"))?;
    Ok((name, Mark { seq, out_len }))
}

/// FNV-1a, 64 bits: enough to tell a damaged record from a whole one.
fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
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

    /// The snapshot and the journal as a store keeps them: a record appended per batch, a
    /// new snapshot and an empty journal at each compaction.
    fn saved(snapshot: &str, journal: &str) -> Marks {
        let mut m = Marks::parse(snapshot).unwrap();
        m.replay(journal).unwrap();
        m
    }

    #[test]
    fn a_journal_replayed_over_its_snapshot_gives_the_marks_back() {
        let mut m = Marks::default();
        m.advance("a", 1);
        m.set_out_len("a", 10);
        m.record_saved();
        let snapshot = m.encode();
        assert_eq!(m.journal_record(), "", "nothing changed since");
        // A batch: `a` moves, `new/one` appears (a stream the snapshot lacks).
        m.advance("a", 2);
        m.set_out_len("a", 20);
        m.advance("new/one", 5);
        let r1 = m.journal_record();
        assert!(r1.starts_with("2 20 a\n5 0 new%2Fone\nend 2 "), "{r1}");
        assert_eq!(r1.lines().count(), 3, "only the changed streams: {r1}");
        m.record_saved();
        m.advance("a", 3);
        let r2 = m.journal_record();
        assert!(r2.starts_with("3 20 a\nend 1 "), "{r2}");
        m.record_saved();
        let journal = format!("{r1}{r2}");
        let mut back = Marks::parse(&snapshot).unwrap();
        assert_eq!(
            back.replay(&journal).unwrap(),
            Replayed {
                records: 2,
                torn: 0
            }
        );
        assert_eq!(back, m);
        assert_eq!(back.get("new/one"), Some(Mark { seq: 5, out_len: 0 }));
        // Replayed marks have nothing to journal: they are saved already.
        assert_eq!(back.journal_record(), "");
    }

    #[test]
    fn a_torn_last_record_is_dropped_whole() {
        let mut m = Marks::default();
        m.advance("a", 1);
        let r1 = m.journal_record();
        m.record_saved();
        m.advance("a", 9);
        m.advance("b", 4);
        let r2 = m.journal_record();
        // Cut anywhere inside the second record, even one byte short of its end: only the
        // first counts (a at 1, no b).
        for cut in 0..r2.len() {
            let journal = format!("{r1}{}", &r2[..cut]);
            let mut back = Marks::default();
            let got = back.replay(&journal).unwrap();
            assert_eq!(
                got,
                Replayed {
                    records: 1,
                    torn: cut
                },
                "cut at {cut}"
            );
            assert_eq!(back.get("a").unwrap().seq, 1, "cut at {cut}");
            assert_eq!(back.get("b"), None, "cut at {cut}");
        }
        // Torn garbage (a power cut's zeros) after the last whole record, likewise.
        let mut back = Marks::default();
        let got = back.replay(&format!("{r1}\0\0\0\n\0")).unwrap();
        assert_eq!((got.records, back.get("a").unwrap().seq), (1, 1));
    }

    #[test]
    fn a_damaged_whole_record_names_its_line_and_record_and_applies_nothing() {
        let mut m = Marks::default();
        m.advance("a", 1);
        let r1 = m.journal_record();
        m.record_saved();
        m.advance("b", 2);
        let r2 = m.journal_record();
        // A digit changed in the second record's first line (line 3 of the journal).
        let bad = format!("{r1}{}", r2.replacen("2 0 b", "7 0 b", 1));
        let mut back = Marks::default();
        let e = back.replay(&bad).unwrap_err();
        assert_eq!(e.line, 4, "the end line that does not match: {e}");
        assert!(e.to_string().contains("record 2"), "{e}");
        assert_eq!(back, Marks::default(), "nothing applied");
        // A line that is not a mark, with a count and hash that match it.
        let body = "x 0 c\n";
        let forged = format!("{r1}{body}end 1 {:016x}\n", fnv1a(body.as_bytes()));
        let e = Marks::default().replay(&forged).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.why.contains("record 2") && e.why.contains("seq"), "{e}");
        let e = Marks::default().replay("end x\n").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
    }

    #[test]
    fn compacting_at_any_point_saves_the_same_marks_and_a_stale_journal_changes_nothing() {
        // Batches over streams that come and go; after each, the saved state (snapshot +
        // journal) must equal the live marks, whether or not it compacted there.
        let mut live = Marks::default();
        let (mut snapshot, mut journal) = (Marks::default().encode(), String::new());
        let mut x: u64 = 7;
        for batch in 0..200u64 {
            for _ in 0..(batch % 5 + 1) {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let s = format!("s/{}", (x >> 33) % 30);
                live.advance(&s, (x >> 40) % 1000);
                live.set_out_len(&s, x >> 50);
            }
            journal.push_str(&live.journal_record());
            live.record_saved();
            assert_eq!(saved(&snapshot, &journal), live, "batch {batch}");
            if batch % 17 == 0 {
                let stale = journal.clone();
                snapshot = live.encode();
                // Killed after the new snapshot, before the journal was reset.
                assert_eq!(saved(&snapshot, &stale), live, "batch {batch}");
                journal.clear();
                assert_eq!(saved(&snapshot, &journal), live, "batch {batch}");
            }
        }
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
