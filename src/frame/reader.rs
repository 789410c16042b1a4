//! Reads a stream of frames, and walks past anything that is not one.
//!
//! Its memory is one buffer of at most `max_payload + HEADER_LEN` bytes (the largest frame it
//! accepts), whatever the input. Used by `tailbeat decode` and by the spool's recovery scan.

use super::{check, FrameError, Header, HEADER_LEN, MAGIC};
use std::io::{self, Read};

/// What [`FrameReader::next_item`] found.
#[derive(Debug)]
pub enum Item<'a> {
    /// A frame that passed every check, at byte `pos` of the input.
    Frame {
        /// Offset of its first byte.
        pos: u64,
        /// The whole frame, header included.
        bytes: &'a [u8],
    },
    /// Bytes that are not a frame, followed by a valid one.
    Skipped {
        /// Offset of the first skipped byte.
        pos: u64,
        /// How many bytes were skipped.
        len: u64,
        /// What was wrong at `pos`.
        why: FrameError,
    },
    /// Bytes at the end of the input that do not make a whole frame (a torn write).
    Torn {
        /// Offset of the first byte of the torn tail.
        pos: u64,
        /// How many bytes it has.
        len: u64,
        /// What was wrong at `pos`.
        why: FrameError,
    },
}

/// A resynchronising frame reader over any [`Read`].
#[derive(Debug)]
pub struct FrameReader<R> {
    r: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    pos: u64,
    eof: bool,
    max_payload: usize,
}

impl<R: Read> FrameReader<R> {
    /// A reader that accepts payloads up to `max_payload` bytes.
    pub fn new(r: R, max_payload: usize) -> Self {
        FrameReader {
            r,
            buf: vec![0; 64 << 10],
            start: 0,
            end: 0,
            pos: 0,
            eof: false,
            max_payload,
        }
    }

    /// Offset of the next unread byte.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Makes sure `n` bytes are buffered from `start`, unless the input ends first.
    fn fill(&mut self, n: usize) -> io::Result<()> {
        if self.end - self.start >= n || self.eof {
            return Ok(());
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() < n {
            self.buf.resize(n, 0);
        }
        while self.end < n {
            match self.r.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.pos += n as u64;
    }

    /// Checks whether a whole valid frame starts at `start`; `Ok(len)` if so.
    fn frame_here(&mut self) -> io::Result<Result<usize, FrameError>> {
        self.fill(HEADER_LEN)?;
        let h = match Header::parse(&self.buf[self.start..self.end], self.max_payload) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        let total = HEADER_LEN + h.len;
        self.fill(total)?;
        Ok(check(&self.buf[self.start..self.end]).map(|_| total))
    }

    /// The next frame, or the run of bad bytes before it; `None` at the end of the input.
    pub fn next_item(&mut self) -> io::Result<Option<Item<'_>>> {
        self.fill(HEADER_LEN)?;
        if self.start == self.end {
            return Ok(None);
        }
        let first_err = match self.frame_here()? {
            Ok(len) => {
                let pos = self.pos;
                let s = self.start;
                self.consume(len);
                return Ok(Some(Item::Frame {
                    pos,
                    bytes: &self.buf[s..s + len],
                }));
            }
            Err(e) => e,
        };
        // Resynchronise: step past the bad byte, find the next magic, and accept it only if a
        // whole valid frame starts there (a magic inside a payload is not enough).
        let bad_pos = self.pos;
        let mut skipped = 0u64;
        loop {
            self.consume(1);
            skipped += 1;
            loop {
                self.fill(HEADER_LEN)?;
                let have = self.end - self.start;
                match memchr::memmem::find(&self.buf[self.start..self.end], &MAGIC) {
                    Some(i) => {
                        self.consume(i);
                        skipped += i as u64;
                        break;
                    }
                    None if self.eof => {
                        self.consume(have);
                        return Ok(Some(Item::Torn {
                            pos: bad_pos,
                            len: skipped + have as u64,
                            why: first_err,
                        }));
                    }
                    None => {
                        // Keep the last 3 bytes: a magic may straddle the refill.
                        let drop = have.saturating_sub(MAGIC.len() - 1);
                        self.consume(drop);
                        skipped += drop as u64;
                        self.fill(have - drop + 1)?;
                    }
                }
            }
            if self.frame_here()?.is_ok() {
                return Ok(Some(Item::Skipped {
                    pos: bad_pos,
                    len: skipped,
                    why: first_err,
                }));
            }
        }
    }
}
