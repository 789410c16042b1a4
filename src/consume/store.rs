//! The consumer's files: the output (stdout, or one JSON-lines file per stream in a
//! directory) and the marks file in the state directory.
//!
//! What always holds: a stream's output bytes past the length saved with its mark were
//! written after the last saved mark; [`Store::open`] cuts them off, so after a crash the
//! output holds exactly the frames the marks say, and the broker's redelivery writes the
//! rest once. The marks file is replaced atomically (written beside, fsynced, renamed, the
//! directory fsynced): it is the old one or the new one, never half of either.

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

/// The marks file's name in the state directory.
const MARKS: &str = "marks";

impl Store {
    /// Opens (creating) the state directory and takes its lock, reads the marks, and for an
    /// output directory cuts every stream file back to the length saved with its mark.
    ///
    /// # Errors
    /// A directory that cannot be created, a state directory another consumer holds, a
    /// marks file that cannot be read or does not parse, an output file that cannot be cut.
    pub fn open(state: &Path, out: Option<&Path>) -> Result<(Store, Marks), StoreError> {
        fs::create_dir_all(state).map_err(err("create the state directory", state))?;
        let state_lock = lock(&state.join("lock"), "state")?;
        let marks_path = state.join(MARKS);
        let mut m = match fs::read_to_string(&marks_path) {
            Ok(t) => Marks::parse(&t).map_err(|e| StoreError {
                what: "read the marks in",
                path: marks_path.clone(),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Marks::default(),
            Err(e) => return Err(err("read", &marks_path)(e)),
        };
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
        Ok((
            Store {
                out,
                state: state.to_path_buf(),
                _locks: locks,
                recovered,
            },
            m,
        ))
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
    /// written file's length in `m`, then saves `m` atomically. Only after this returns may
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

    /// Replaces the marks file atomically.
    fn save(&self, m: &Marks) -> Result<(), StoreError> {
        let tmp = self.state.join("marks.tmp");
        let dst = self.state.join(MARKS);
        let mut f = File::create(&tmp).map_err(err("create", &tmp))?;
        f.write_all(m.encode().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(err("write", &tmp))?;
        fs::rename(&tmp, &dst).map_err(err("rename into place", &dst))?;
        File::open(&self.state)
            .and_then(|d| d.sync_all())
            .map_err(err("fsync", &self.state))
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
