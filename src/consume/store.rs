//! The consumer's files: the output (stdout, or one JSON-lines file per stream in a
//! directory) and the saved marks in the state directory: a snapshot (`marks`) and a
//! journal (`marks.journal`) of the streams each batch changed ([`marks`] has both formats).
//!
//! What always holds:
//! - a stream's output bytes past the length saved with its mark were written after the
//!   last saved mark; [`Store::open`] cuts them off, so after a crash the output holds
//!   exactly the frames the marks say, and the broker's redelivery writes the rest once;
//! - the saved marks are the snapshot with the journal's whole records replayed over it.
//!   A batch appends one record (its changed streams only, so a save costs what changed,
//!   not the number of streams) and fsyncs it before [`Store::sync`] returns; a record cut
//!   short by a crash was never acknowledged and is dropped at start-up;
//! - the snapshot is replaced atomically (written beside, fsynced, renamed, the directory
//!   fsynced), then the journal emptied: at start-up, and whenever the journal has grown past
//!   the snapshot's size (at least [`COMPACT_FLOOR`]), so a save costs at most about twice
//!   what changed, amortised, and start-up reads at most about twice the snapshot;
//! - the journal file always exists once [`Store::open`] returns (created and its name made
//!   durable there), so an append needs only its own fsync.

use super::marks::{self, Marks};
use crate::frame::{self, Batch};
use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A file operation that failed: what, on which path, and the OS error.
#[derive(Debug)]
pub struct StoreError {
    /// What was being done.
    pub what: &'static str,
    /// To what.
    pub path: PathBuf,
    /// The OS error (or, for a damaged marks file, what is wrong with it).
    pub source: io::Error,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} {}: {}",
            self.what,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Where lines go.
#[derive(Debug)]
enum Out {
    /// JSON lines on stdout, flushed before a PUBACK.
    Stdout(io::BufWriter<io::Stdout>),
    /// One `{stream}.jsonl` per stream (the name [escaped](marks::escape)), fsynced before a
    /// PUBACK. `open` holds the files written since the last [`Store::sync`].
    Dir {
        dir: PathBuf,
        open: HashMap<String, File>,
    },
}

/// The output and the marks, on disk.
#[derive(Debug)]
pub struct Store {
    out: Out,
    state: PathBuf,
    /// The journal, open for appending, and its length.
    journal: File,
    journal_len: u64,
    /// The snapshot's length when last written.
    snapshot_len: u64,
    /// The journal is compacted once longer than `max(snapshot_len, compact_floor)`.
    compact_floor: u64,
    /// Held for the process's life: a second consumer on the same state directory would
    /// interleave marks, one on the same output directory would have its files cut.
    _locks: Vec<File>,
    /// What [`Store::open`] cut from the outputs: (stream, bytes).
    pub recovered: Vec<(String, u64)>,
}

/// Takes an exclusive `flock` on `path` (created), held while the file stays open.
fn lock(path: &Path, what: &str) -> Result<File, StoreError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(err("open", path))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(|e| {
        StoreError {
            what: "lock",
            path: path.to_path_buf(),
            source: if e == rustix::io::Errno::WOULDBLOCK {
                io::Error::other(format!(
                    "another `tailbeat consume` uses this {what} directory (give each its own)"
                ))
            } else {
                io::Error::from(e)
            },
        }
    })?;
    Ok(f)
}

/// The marks snapshot's name in the state directory.
const MARKS: &str = "marks";
/// The marks journal's name in the state directory.
const JOURNAL: &str = "marks.journal";
/// A journal shorter than this is not compacted, however small the snapshot: a few streams
/// do not pay a rename and two fsyncs every few batches.
pub const COMPACT_FLOOR: u64 = 64 << 10;

/// A damaged snapshot or journal: the file, and the line (and record) in it.
fn damaged(path: &Path, e: marks::ParseError) -> StoreError {
    StoreError {
        what: "read the marks in",
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    }
}

impl Store {
    /// Opens (creating) the state directory and takes its lock, reads the marks (the
    /// snapshot, the journal replayed over it), for an output directory cuts every stream
    /// file back to the length saved with its mark, and saves the marks as a new snapshot
    /// with an empty journal.
    ///
    /// # Errors
    /// A directory that cannot be created, a state directory another consumer holds, a
    /// snapshot or journal that cannot be read or does not parse (the file and line), an
    /// output file that cannot be cut, the new snapshot or journal that cannot be written.
    pub fn open(state: &Path, out: Option<&Path>) -> Result<(Store, Marks), StoreError> {
        fs::create_dir_all(state).map_err(err("create the state directory", state))?;
        let state_lock = lock(&state.join("lock"), "state")?;
        let marks_path = state.join(MARKS);
        let mut m = match fs::read_to_string(&marks_path) {
            Ok(t) => Marks::parse(&t).map_err(|e| damaged(&marks_path, e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Marks::default(),
            Err(e) => return Err(err("read", &marks_path)(e)),
        };
        let journal_path = state.join(JOURNAL);
        match fs::read(&journal_path) {
            Ok(b) => {
                // A torn tail may hold anything (a power cut's zeros); whole records are
                // text, and are checked line by line.
                let t = String::from_utf8_lossy(&b);
                let r = m.replay(&t).map_err(|e| damaged(&journal_path, e))?;
                if r.torn > 0 {
                    log::info!(
                        "consume: {}: dropped the last {} bytes, a record cut short (never acknowledged)",
                        journal_path.display(),
                        r.torn
                    );
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err("read", &journal_path)(e)),
        }
        let mut recovered = Vec::new();
        let mut locks = vec![state_lock];
        let out = match out {
            None => Out::Stdout(io::BufWriter::with_capacity(64 << 10, io::stdout())),
            Some(dir) => {
                fs::create_dir_all(dir).map_err(err("create the output directory", dir))?;
                // Its files are cut to this consumer's marks: no other consumer may write
                // there.
                locks.push(lock(&dir.join(".tailbeat-consume.lock"), "output")?);
                for e in fs::read_dir(dir).map_err(err("read", dir))? {
                    let p = e.map_err(err("read", dir))?.path();
                    let Some(stream) = p
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.strip_suffix(".jsonl"))
                        .and_then(marks::unescape)
                    else {
                        continue;
                    };
                    let saved = m.get(&stream).map_or(0, |k| k.out_len);
                    let len = fs::metadata(&p).map_err(err("stat", &p))?.len();
                    if len > saved {
                        let f = OpenOptions::new()
                            .write(true)
                            .open(&p)
                            .map_err(err("open", &p))?;
                        f.set_len(saved).map_err(err("cut", &p))?;
                        f.sync_all().map_err(err("fsync", &p))?;
                        recovered.push((stream, len - saved));
                    } else if len < saved {
                        // Shorter than the mark says (cut by hand, a disk that lied): what is
                        // gone is gone; go on from here.
                        log::warn!(
                            "consume: {} is {len} bytes, shorter than the {saved} its mark says; lines are missing from it",
                            p.display()
                        );
                        m.set_out_len(&stream, len);
                    }
                }
                Out::Dir {
                    dir: dir.to_path_buf(),
                    open: HashMap::new(),
                }
            }
        };
        let journal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .map_err(err("open", &journal_path))?;
        let mut st = Store {
            out,
            state: state.to_path_buf(),
            journal,
            journal_len: 0,
            snapshot_len: 0,
            compact_floor: COMPACT_FLOOR,
            _locks: locks,
            recovered,
        };
        // The replayed marks (and any output length cut above) as a new snapshot; the
        // journal emptied, a torn tail with it. This also makes the journal's name durable.
        st.compact(&mut m)?;
        Ok((st, m))
    }

    /// Writes the lines of `b` (its stream is `b.instance`), not yet durable.
    pub fn write(&mut self, b: &Batch<'_>) -> Result<(), StoreError> {
        match &mut self.out {
            Out::Stdout(w) => {
                frame::json::write_batch(w, b).map_err(err("write to", Path::new("stdout")))
            }
            Out::Dir { dir, open } => {
                if !open.contains_key(b.instance) {
                    let p = dir.join(format!("{}.jsonl", marks::escape(b.instance)));
                    let f = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&p)
                        .map_err(err("open", &p))?;
                    open.insert(b.instance.to_string(), f);
                }
                let f = open.get_mut(b.instance).expect("inserted above");
                // One write per frame's lines: a BufWriter over the File.
                let mut w = io::BufWriter::with_capacity(64 << 10, f);
                frame::json::write_batch(&mut w, b)
                    .and_then(|()| w.flush())
                    .map_err(err("write to", &dir.join(marks::escape(b.instance))))
            }
        }
    }

    /// Makes what was written durable (stdout: flushed; files: fsynced) and records each
    /// written file's length in `m`, then appends the changed marks to the journal and
    /// fsyncs it (compacting when it has grown past its bound). Only after this returns may
    /// the messages be acknowledged.
    pub fn sync(&mut self, m: &mut Marks) -> Result<(), StoreError> {
        match &mut self.out {
            Out::Stdout(w) => w.flush().map_err(err("write to", Path::new("stdout")))?,
            Out::Dir { dir, open } => {
                for (stream, f) in open.drain() {
                    let p = dir.join(format!("{}.jsonl", marks::escape(&stream)));
                    f.sync_data().map_err(err("fsync", &p))?;
                    let len = f.metadata().map_err(err("stat", &p))?.len();
                    m.set_out_len(&stream, len);
                }
                // A new file's name is durable once its directory is.
                File::open(&*dir)
                    .and_then(|d| d.sync_all())
                    .map_err(err("fsync", dir))?;
            }
        }
        self.save(m)
    }

    /// Appends the changed streams' record to the journal, durably; compacts past the bound.
    fn save(&mut self, m: &mut Marks) -> Result<(), StoreError> {
        let rec = m.journal_record();
        if rec.is_empty() {
            return Ok(());
        }
        let p = self.state.join(JOURNAL);
        self.journal
            .write_all(rec.as_bytes())
            .and_then(|()| self.journal.sync_data())
            .map_err(err("write", &p))?;
        m.record_saved();
        self.journal_len += rec.len() as u64;
        if self.journal_len > self.snapshot_len.max(self.compact_floor) {
            self.compact(m)?;
        }
        Ok(())
    }

    /// At a clean stop: the marks as a snapshot alone, the journal empty (a person may
    /// then edit `marks`, README "Consuming").
    pub fn close(&mut self, m: &mut Marks) -> Result<(), StoreError> {
        self.compact(m)
    }

    /// Replaces the snapshot atomically with `m`, then empties the journal. Killed between
    /// the two, the old journal replays over the new snapshot to the same marks ([`marks`]).
    fn compact(&mut self, m: &mut Marks) -> Result<(), StoreError> {
        let tmp = self.state.join("marks.tmp");
        let dst = self.state.join(MARKS);
        let text = m.encode();
        let mut f = File::create(&tmp).map_err(err("create", &tmp))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(err("write", &tmp))?;
        fs::rename(&tmp, &dst).map_err(err("rename into place", &dst))?;
        File::open(&self.state)
            .and_then(|d| d.sync_all())
            .map_err(err("fsync", &self.state))?;
        m.record_saved();
        self.snapshot_len = text.len() as u64;
        let p = self.state.join(JOURNAL);
        self.journal
            .set_len(0)
            .and_then(|()| self.journal.sync_all())
            .map_err(err("empty", &p))?;
        self.journal_len = 0;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("tailbeat-consume-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn bytes_written_after_the_last_saved_mark_are_cut_at_start() {
        let d = scratch("cut");
        let (state, out) = (d.join("state"), d.join("out"));
        let (mut st, mut m) = Store::open(&state, Some(&out)).unwrap();
        let f1 = batch("site/a", 1, "one");
        st.write(&frame::decode_batch(&f1).unwrap()).unwrap();
        m.advance("site/a", 1);
        st.sync(&mut m).unwrap();
        let saved = fs::read_to_string(out.join("site%2Fa.jsonl")).unwrap();
        assert!(saved.contains("\"line\":\"one\""), "{saved}");
        // Frame 2 written, then the process dies before the marks are saved.
        let f2 = batch("site/a", 2, "two");
        st.write(&frame::decode_batch(&f2).unwrap()).unwrap();
        // A stream whose first frame never reached the marks at all.
        let f3 = batch("other", 1, "three");
        st.write(&frame::decode_batch(&f3).unwrap()).unwrap();
        drop(st);
        let (st, m) = Store::open(&state, Some(&out)).unwrap();
        assert_eq!(m.get("site/a").unwrap().seq, 1);
        assert_eq!(
            fs::read_to_string(out.join("site%2Fa.jsonl")).unwrap(),
            saved
        );
        assert_eq!(fs::read(out.join("other.jsonl")).unwrap().len(), 0);
        let mut rec = st.recovered.clone();
        rec.sort();
        assert_eq!(rec.len(), 2, "{rec:?}");
        // The state directory is this consumer's alone while it runs, and so is the output.
        let e = Store::open(&state, Some(&out)).unwrap_err();
        assert!(e.to_string().contains("another"), "{e}");
        let e = Store::open(&d.join("state2"), Some(&out)).unwrap_err();
        assert!(e.to_string().contains("this output directory"), "{e}");
        drop(st);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_damaged_marks_file_is_an_error_that_names_it() {
        let d = scratch("bad");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("marks"), "junk\n").unwrap();
        let e = Store::open(&d, None).unwrap_err();
        assert!(e.to_string().contains("marks"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }

    /// One batch of store `st`: frame `seq` of each of `streams`, written, synced.
    fn batch_of(st: &mut Store, m: &mut Marks, streams: &[String], seq: u64) {
        for s in streams {
            let f = batch(s, seq, &format!("{s} {seq}"));
            st.write(&frame::decode_batch(&f).unwrap()).unwrap();
            m.advance(s, seq);
        }
        st.sync(m).unwrap();
    }

    #[test]
    fn a_batch_appends_only_its_streams_to_the_journal_and_a_reopen_replays_it() {
        let d = scratch("journal");
        let (state, out) = (d.join("state"), d.join("out"));
        let (mut st, mut m) = Store::open(&state, Some(&out)).unwrap();
        // Compacted past the snapshot's size alone, as a large fleet's would be.
        st.compact_floor = 0;
        let all: Vec<String> = (0..200).map(|i| format!("gw-{i}/app")).collect();
        batch_of(&mut st, &mut m, &all, 1);
        // The first batch compacted (its journal passed the empty snapshot's size): all 200
        // in the snapshot.
        let snapshot = fs::read(state.join("marks")).unwrap();
        assert!(Marks::parse(std::str::from_utf8(&snapshot).unwrap()).unwrap() == m);
        // Two streams move: the snapshot stays as it was, the journal gets their two lines.
        batch_of(&mut st, &mut m, &all[..2], 2);
        assert_eq!(fs::read(state.join("marks")).unwrap(), snapshot);
        let j = fs::read_to_string(state.join("marks.journal")).unwrap();
        assert!(j.starts_with("2 ") && j.lines().count() == 3, "{j}");
        // Killed here: the next start has them, a torn record after them dropped.
        drop(st);
        let mut f = OpenOptions::new()
            .append(true)
            .open(state.join("marks.journal"))
            .unwrap();
        f.write_all(b"99 0 gw-0%2Fapp\nend 1 ").unwrap();
        drop(f);
        let (mut st, mut m2) = Store::open(&state, Some(&out)).unwrap();
        assert!(m2 == m, "the marks differ after a reopen");
        assert_eq!(m2.get("gw-0/app").unwrap().seq, 2);
        assert_eq!(fs::read(state.join("marks.journal")).unwrap().len(), 0);
        // Many small batches: the journal is compacted once past the snapshot's size, and
        // stays under about twice it.
        st.compact_floor = 0;
        let cap = 2 * fs::metadata(state.join("marks")).unwrap().len();
        for seq in 3..400 {
            let i = seq as usize % 200;
            batch_of(&mut st, &mut m2, &all[i..i + 1], seq);
            let len = fs::metadata(state.join("marks.journal")).unwrap().len();
            assert!(len <= cap, "journal {len} > {cap} at {seq}");
        }
        drop(st);
        let (st, m3) = Store::open(&state, Some(&out)).unwrap();
        assert!(m3 == m2, "the marks differ after a reopen");
        assert!(st.recovered.is_empty(), "{:?}", st.recovered);
        drop(st);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_damaged_journal_is_an_error_that_names_it_and_its_line() {
        let d = scratch("badjournal");
        let (st, mut m) = Store::open(&d, None).unwrap();
        drop(st);
        m.advance("a", 1);
        let rec = m.journal_record().replace("1 0 a", "5 0 a");
        fs::write(d.join("marks.journal"), rec).unwrap();
        let e = Store::open(&d, None).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("marks.journal") && msg.contains("line 2") && msg.contains("record 1"),
            "{msg}"
        );
        // Nothing lost: the journal is left as it was for a person to look at.
        assert!(fs::read_to_string(d.join("marks.journal"))
            .unwrap()
            .starts_with("5 0 a"));
        fs::remove_dir_all(&d).unwrap();
    }

    /// A frame of one line, as an agent would send it.
    pub(crate) fn batch(stream: &str, seq: u64, text: &str) -> Vec<u8> {
        let src = frame::SourceRef {
            path: "/var/log/x.log",
            dev: 1,
            ino: 2,
            fp_len: 0,
            fp: 0,
        };
        let mut b = frame::BatchBuilder::new(100, 4096);
        assert!(b.push(
            &src,
            0,
            text.len() as u64 + 1,
            1_764_000_000_000,
            0,
            text.as_bytes()
        ));
        b.finish(stream, seq)
    }
}
