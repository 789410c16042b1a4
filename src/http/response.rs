//! An HTTP/1.1 answer, read from bytes as they come: a pure state machine with no I/O.
//!
//! [`Parser::feed`] takes whatever a read returned, in pieces of any size, and says when the
//! answer is complete; [`Parser::eof`] says what the end of the connection means at that
//! point. The head is parsed by `httparse` (the parser under hyper), chunk-size lines by its
//! `parse_chunk_size`; this file only decides framing, which RFC 9112 section 6 specifies:
//!
//! 1. `1xx` answers (`100 Continue`, `103 Early Hints`) are skipped: the real answer follows.
//!    `101 Switching Protocols` is an error: we never ask to switch.
//! 2. `204` and `304` have no body, whatever their headers say (we only POST, never HEAD).
//! 3. `Transfer-Encoding: chunked` frames the body in chunks; extensions after the size and
//!    trailer fields after the last chunk are accepted and ignored. Any other transfer
//!    coding is refused ([`ParseError::TransferEncoding`]): we would have to decode it, and
//!    never asked for it. With a `Content-Length` beside it, the length is ignored and the
//!    connection is not reused (RFC 9112 6.3, point 3: that mix is how requests get smuggled).
//! 4. `Content-Length`: that many bytes. Several values must agree.
//! 5. Otherwise the body runs to the end of the connection, which is then not reusable.
//!
//! What always holds:
//! - Memory is bounded: the head (and a chunk-size line, and the trailers) by [`MAX_HEAD`],
//!   the body by [`MAX_BODY`], refused as soon as a length or chunk size announces more.
//! - A byte after a complete answer is an error ([`ParseError::Extra`]): the server sent
//!   more than it announced, and the connection must not be reused.
//! - The answer is the same however its bytes are split (the fuzz target `http_response`
//!   checks it).

use super::MAX_BODY;
use std::fmt;
use std::time::Duration;

/// Largest response head, and largest chunk-size line and trailer section: 16 KiB, what
/// nginx and most servers allow for a request head.
pub const MAX_HEAD: usize = 16 << 10;

/// Most header fields in one head (`httparse` needs a fixed array; 64 is twice what a
/// proxied cloud answer carries).
const MAX_HEADERS: usize = 64;

/// A complete answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code (never 1xx).
    pub status: u16,
    /// `Retry-After`, when given in seconds (an HTTP date is ignored).
    pub retry_after: Option<Duration>,
    /// The body, at most [`MAX_BODY`] bytes.
    pub body: Vec<u8>,
    /// The connection may carry the next request: HTTP/1.1 without `Connection: close`
    /// (HTTP/1.0 with `Connection: keep-alive`), and a body whose end was announced.
    pub keep_alive: bool,
}

/// Where in the answer the parser is; named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Nothing or part of the head.
    Head,
    /// The body.
    Body,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Head => "head",
            Part::Body => "body",
        })
    }
}

/// An answer that is not one, each with what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// `httparse` refused the head.
    Head {
        /// What it found wrong.
        error: httparse::Error,
        /// The head's first bytes, escaped.
        seen: String,
    },
    /// The head (or a chunk-size line, or the trailers) is longer than [`MAX_HEAD`].
    TooLong {
        /// Which part.
        what: &'static str,
    },
    /// A status we never asked for (`101 Switching Protocols`).
    Status(u16),
    /// A `Content-Length` that is not a number, or several that disagree.
    ContentLength {
        /// The values, escaped.
        seen: String,
    },
    /// A transfer coding other than `chunked`.
    TransferEncoding {
        /// The value, escaped.
        seen: String,
    },
    /// A chunk-size line or the end of a chunk that is not what RFC 9112 7.1 says.
    Chunk {
        /// The bytes where the size or CRLF should be, escaped.
        seen: String,
    },
    /// The body announced, or grew, past [`MAX_BODY`].
    TooLarge {
        /// The announced length or chunk total, if one was announced.
        announced: Option<u64>,
    },
    /// The connection ended before the answer did.
    Closed {
        /// In which part.
        part: Part,
        /// Bytes of that part received.
        received: u64,
        /// The body's announced length (`Content-Length`), if any.
        announced: Option<u64>,
    },
    /// Bytes after a complete answer: more than the server announced.
    Extra {
        /// How many (in the read that brought them).
        bytes: usize,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Head { error, seen } => write!(f, "bad answer head ({error}): {seen}"),
            ParseError::TooLong { what } => write!(f, "{what} longer than {MAX_HEAD} bytes"),
            ParseError::Status(s) => write!(f, "unexpected status {s}"),
            ParseError::ContentLength { seen } => write!(f, "bad Content-Length: {seen}"),
            ParseError::TransferEncoding { seen } => {
                write!(f, "unsupported Transfer-Encoding: {seen}")
            }
            ParseError::Chunk { seen } => write!(f, "bad chunk framing at: {seen}"),
            ParseError::TooLarge { announced } => match announced {
                Some(n) => write!(f, "body of {n} bytes, over the {MAX_BODY}-byte limit"),
                None => write!(f, "body over the {MAX_BODY}-byte limit"),
            },
            ParseError::Closed {
                part,
                received,
                announced,
            } => {
                write!(f, "connection closed after {received} bytes of the {part}")?;
                match announced {
                    Some(n) => write!(f, " (announced {n})"),
                    None => Ok(()),
                }
            }
            ParseError::Extra { bytes } => {
                write!(f, "{bytes} bytes after the end of the answer")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// Up to 80 bytes, escaped, for an error message.
fn excerpt(b: &[u8]) -> String {
    let s = b[..b.len().min(80)].escape_ascii().to_string();
    if b.len() > 80 {
        s + "..."
    } else {
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line into `line`.
    Size,
    /// This many bytes of chunk data to go.
    Data(u64),
    /// The CRLF after chunk data, into `line`.
    DataEnd,
    /// Trailer lines, into `line`; `trailers` counts their bytes.
    Trailer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting the head in `line`.
    Head,
    /// `Content-Length`: this many to go.
    Length(u64),
    /// Chunked.
    Chunked(Chunk),
    /// Until the connection ends.
    ToEof,
    /// Complete.
    Done,
}

/// Reads one answer; see the module doc. Holds at most [`MAX_HEAD`] + [`MAX_BODY`] bytes.
#[derive(Debug)]
pub struct Parser {
    state: State,
    /// The head, a chunk-size line or a trailer line being collected.
    line: Vec<u8>,
    /// Bytes of the head so far (all heads, 1xx included), or of the trailers.
    part_bytes: u64,
    status: u16,
    retry_after: Option<Duration>,
    keep_alive: bool,
    announced: Option<u64>,
    body: Vec<u8>,
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new()
    }
}

impl Parser {
    /// Waiting for an answer's first byte.
    pub fn new() -> Parser {
        Parser {
            state: State::Head,
            line: Vec::new(),
            part_bytes: 0,
            status: 0,
            retry_after: None,
            keep_alive: false,
            announced: None,
            body: Vec::new(),
        }
    }

    /// Takes the next bytes read. `Ok(true)`: the answer is complete and every byte was
    /// part of it; `Ok(false)`: more to come. After an error the parser is spent.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<bool, ParseError> {
        while !input.is_empty() {
            if self.state == State::Done {
                return Err(ParseError::Extra { bytes: input.len() });
            }
            let used = self.step(input)?;
            input = &input[used..];
        }
        Ok(self.state == State::Done)
    }

    /// The connection ended (a read returned 0). `Ok`: the answer ran to the end of the
    /// connection and is complete.
    pub fn eof(&mut self) -> Result<(), ParseError> {
        match self.state {
            State::Done => Ok(()),
            State::ToEof => {
                self.state = State::Done;
                Ok(())
            }
            State::Head => Err(ParseError::Closed {
                part: Part::Head,
                received: self.part_bytes + self.line.len() as u64,
                announced: None,
            }),
            State::Length(_) | State::Chunked(_) => Err(ParseError::Closed {
                part: Part::Body,
                received: self.body.len() as u64,
                announced: self.announced,
            }),
        }
    }

    /// The head is complete: the body (or the end) is being read.
    pub fn in_body(&self) -> bool {
        !matches!(self.state, State::Head)
    }

    /// The answer, once [`feed`](Self::feed) said true or [`eof`](Self::eof) said Ok.
    pub fn answer(self) -> Option<Answer> {
        (self.state == State::Done).then_some(Answer {
            status: self.status,
            retry_after: self.retry_after,
            body: self.body,
            keep_alive: self.keep_alive,
        })
    }

    /// One step on `input` (not empty); returns how many bytes it used (at least one, or
    /// an error).
    fn step(&mut self, input: &[u8]) -> Result<usize, ParseError> {
        match self.state {
            State::Head => self.head(input),
            State::Length(left) => {
                let n = (input.len() as u64).min(left) as usize;
                self.body.extend_from_slice(&input[..n]);
                self.state = match left - n as u64 {
                    0 => State::Done,
                    l => State::Length(l),
                };
                Ok(n)
            }
            State::ToEof => {
                if self.body.len() as u64 + input.len() as u64 > MAX_BODY {
                    return Err(ParseError::TooLarge { announced: None });
                }
                self.body.extend_from_slice(input);
                Ok(input.len())
            }
            State::Chunked(c) => self.chunked(c, input),
            State::Done => unreachable!("feed stops at Done"),
        }
    }

    /// Collects `input` into `line` up to and including the first `\n`, at most `limit`
    /// bytes in all; returns how many bytes it took and whether the line is complete.
    fn collect_line(
        &mut self,
        input: &[u8],
        limit: usize,
        what: &'static str,
    ) -> Result<(usize, bool), ParseError> {
        let (n, complete) = match memchr::memchr(b'\n', input) {
            Some(i) => (i + 1, true),
            None => (input.len(), false),
        };
        if self.line.len() + n > limit {
            return Err(ParseError::TooLong { what });
        }
        self.line.extend_from_slice(&input[..n]);
        Ok((n, complete))
    }

    fn head(&mut self, input: &[u8]) -> Result<usize, ParseError> {
        // httparse is only asked once a line is complete: asking at every byte of a head fed
        // one byte at a time would parse it again and again (quadratic).
        // The 1xx heads before it count: a server sending `100 Continue` for ever is an
        // answer head that never ends, not an endless run of small ones.
        let limit = MAX_HEAD.saturating_sub(self.part_bytes as usize);
        let (n, complete) = self.collect_line(input, limit, "answer head")?;
        if !complete {
            return Ok(n);
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut r = httparse::Response::new(&mut headers);
        let len = match r.parse(&self.line) {
            Ok(httparse::Status::Partial) => return Ok(n),
            Ok(httparse::Status::Complete(len)) => len,
            Err(error) => {
                return Err(ParseError::Head {
                    error,
                    seen: excerpt(&self.line),
                })
            }
        };
        // httparse was asked at every `\n`, so a complete head ends with the one just
        // collected and is the whole of `line`; anything else is a head it reads oddly.
        if len != self.line.len() {
            return Err(ParseError::Head {
                error: httparse::Error::NewLine,
                seen: excerpt(&self.line),
            });
        }
        let status = r.code.unwrap_or(0);
        let http11 = r.version == Some(1);
        let mut close = false;
        let mut keep_alive_token = false;
        let mut lengths: Vec<&[u8]> = Vec::new();
        let mut codings: Vec<&[u8]> = Vec::new();
        let mut retry_after = None;
        for h in r.headers.iter() {
            let v = h.value;
            if h.name.eq_ignore_ascii_case("connection") {
                for t in v.split(|&b| b == b',') {
                    let t = t.trim_ascii();
                    close |= t.eq_ignore_ascii_case(b"close");
                    keep_alive_token |= t.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if h.name.eq_ignore_ascii_case("content-length") {
                lengths.extend(v.split(|&b| b == b',').map(<[u8]>::trim_ascii));
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                codings.extend(v.split(|&b| b == b',').map(<[u8]>::trim_ascii));
            } else if h.name.eq_ignore_ascii_case("retry-after") && retry_after.is_none() {
                retry_after = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
            }
        }
        if (100..200).contains(&status) {
            if status == 101 {
                return Err(ParseError::Status(status));
            }
            // An interim answer: the real one follows on the same connection.
            self.part_bytes += self.line.len() as u64;
            self.line.clear();
            return Ok(n);
        }
        let mut keep_alive = !close && (http11 || keep_alive_token);
        let state = if status == 204 || status == 304 {
            State::Done
        } else if !codings.is_empty() {
            if codings.len() != 1 || !codings[0].eq_ignore_ascii_case(b"chunked") {
                return Err(ParseError::TransferEncoding {
                    seen: excerpt(&codings.join(&b", "[..])),
                });
            }
            // RFC 9112 6.3 (3): with a Content-Length too, read it as chunked and close.
            keep_alive &= lengths.is_empty();
            State::Chunked(Chunk::Size)
        } else if let Some(first) = lengths.first() {
            let seen = || excerpt(&lengths.join(&b", "[..]));
            if lengths.iter().any(|l| l != first)
                || first.is_empty()
                || first.len() > 19
                || !first.iter().all(u8::is_ascii_digit)
            {
                return Err(ParseError::ContentLength { seen: seen() });
            }
            let len: u64 = std::str::from_utf8(first)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| ParseError::ContentLength { seen: seen() })?;
            if len > MAX_BODY {
                return Err(ParseError::TooLarge {
                    announced: Some(len),
                });
            }
            self.announced = Some(len);
            match len {
                0 => State::Done,
                l => State::Length(l),
            }
        } else {
            keep_alive = false;
            State::ToEof
        };
        self.status = status;
        self.retry_after = retry_after;
        self.keep_alive = keep_alive;
        self.state = state;
        self.line.clear();
        self.part_bytes = 0;
        Ok(n)
    }

    fn chunked(&mut self, c: Chunk, input: &[u8]) -> Result<usize, ParseError> {
        match c {
            Chunk::Size => {
                let (n, complete) = self.collect_line(input, MAX_HEAD, "chunk-size line")?;
                if !complete {
                    return Ok(n);
                }
                let bad = |line: &[u8]| ParseError::Chunk {
                    seen: excerpt(line),
                };
                // httparse reads an empty line as size 0: a size needs a digit.
                if !self.line.first().is_some_and(u8::is_ascii_hexdigit) {
                    return Err(bad(&self.line));
                }
                let size = match httparse::parse_chunk_size(&self.line) {
                    Ok(httparse::Status::Complete((used, size))) if used == self.line.len() => size,
                    _ => return Err(bad(&self.line)),
                };
                let total = self.body.len() as u64 + size;
                if total > MAX_BODY {
                    return Err(ParseError::TooLarge {
                        announced: Some(total),
                    });
                }
                self.line.clear();
                self.state = State::Chunked(match size {
                    0 => Chunk::Trailer,
                    s => Chunk::Data(s),
                });
                Ok(n)
            }
            Chunk::Data(left) => {
                let n = (input.len() as u64).min(left) as usize;
                self.body.extend_from_slice(&input[..n]);
                self.state = State::Chunked(match left - n as u64 {
                    0 => Chunk::DataEnd,
                    l => Chunk::Data(l),
                });
                Ok(n)
            }
            Chunk::DataEnd => {
                let n = input.len().min(2 - self.line.len());
                self.line.extend_from_slice(&input[..n]);
                if !b"\r\n".starts_with(&self.line) {
                    return Err(ParseError::Chunk {
                        seen: excerpt(&self.line),
                    });
                }
                if self.line.len() == 2 {
                    self.line.clear();
                    self.state = State::Chunked(Chunk::Size);
                }
                Ok(n)
            }
            Chunk::Trailer => {
                // The trailer section shares the head's limit: line by line, in all.
                let limit = MAX_HEAD.saturating_sub(self.part_bytes as usize);
                let (n, complete) = self.collect_line(input, limit, "trailer section")?;
                if !complete {
                    return Ok(n);
                }
                if !self.line.ends_with(b"\r\n") {
                    return Err(ParseError::Chunk {
                        seen: excerpt(&self.line),
                    });
                }
                if self.line.len() == 2 {
                    self.state = State::Done;
                } else {
                    // A trailer field: accepted and ignored (nothing we read is sent in one).
                    self.part_bytes += self.line.len() as u64;
                }
                self.line.clear();
                Ok(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` split at `at` (and whole, and at every byte boundary), then the end of
    /// the connection if `eof`; every way must give the same result.
    fn parse_split(bytes: &[u8], eof: bool) -> Result<Answer, ParseError> {
        let run = |cuts: &[usize]| -> Result<Answer, ParseError> {
            let mut p = Parser::new();
            let mut from = 0;
            let mut done = false;
            for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
                done = p.feed(&bytes[from..c])?;
                from = c;
            }
            if eof && !done {
                p.eof()?;
            }
            Ok(p.answer().expect("complete"))
        };
        let whole = run(&[]);
        for at in 0..=bytes.len() {
            assert_eq!(run(&[at]), whole, "split at {at}");
        }
        let every: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(run(&every), whole, "byte by byte");
        whole
    }

    fn ok(bytes: &[u8], eof: bool) -> Answer {
        parse_split(bytes, eof).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn content_length_answer() {
        let a = ok(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nRetry-After: 7\r\n\r\nhello",
            false,
        );
        assert_eq!(a.status, 200);
        assert_eq!(a.body, b"hello");
        assert_eq!(a.retry_after, Some(Duration::from_secs(7)));
        assert!(a.keep_alive);
    }

    #[test]
    fn chunked_answer_with_extensions_and_trailers() {
        let a = ok(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;name=value;other\r\nhello\r\n\
              7 ; ext=\"q\"\r\n, world\r\n\
              0;last\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n",
            false,
        );
        assert_eq!(a.body, b"hello, world");
        assert!(a.keep_alive);
        // Upper-case hex, no trailers.
        let a = ok(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
            false,
        );
        assert_eq!(a.body, b"0123456789");
    }

    #[test]
    fn an_answer_without_length_runs_to_the_end_and_closes() {
        let a = ok(b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nall of it", true);
        assert_eq!(a.body, b"all of it");
        assert!(!a.keep_alive);
        let mut p = Parser::new();
        assert!(!p.feed(b"HTTP/1.1 200 OK\r\n\r\nsome").unwrap());
        assert!(p.answer().is_none(), "not before the end");
    }

    #[test]
    fn interim_answers_are_skipped() {
        let a = ok(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
              HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
            false,
        );
        assert_eq!((a.status, &a.body[..]), (201, &b"ok"[..]));
        let mut p = Parser::new();
        assert_eq!(
            p.feed(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
            Err(ParseError::Status(101))
        );
    }

    #[test]
    fn no_body_statuses_and_empty_bodies() {
        // A 204 with a stray length, a 304: no body either way, and the connection lives.
        for head in [
            &b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ] {
            let a = ok(head, false);
            assert!(a.body.is_empty() && a.keep_alive, "{a:?}");
        }
    }

    #[test]
    fn connection_close_and_http_1_0() {
        let a = ok(
            b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(!a.keep_alive);
        let a = ok(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false);
        assert!(!a.keep_alive);
        let a = ok(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(a.keep_alive);
        // Chunked beside a length: chunked wins, and the connection is not reused.
        let a = ok(
            b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
            false,
        );
        assert_eq!((&a.body[..], a.keep_alive), (&b"x"[..], false));
    }

    #[test]
    fn closed_early_and_more_than_announced_are_errors() {
        let mut p = Parser::new();
        p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            .unwrap();
        assert_eq!(
            p.eof(),
            Err(ParseError::Closed {
                part: Part::Body,
                received: 3,
                announced: Some(10)
            })
        );
        let mut p = Parser::new();
        assert_eq!(
            p.eof(),
            Err(ParseError::Closed {
                part: Part::Head,
                received: 0,
                announced: None
            })
        );
        let mut p = Parser::new();
        p.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
            .unwrap();
        assert!(matches!(p.eof(), Err(ParseError::Closed { .. })));
        // More than announced, in the same read or the next.
        let mut p = Parser::new();
        assert_eq!(
            p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"),
            Err(ParseError::Extra { bytes: 5 })
        );
        let mut p = Parser::new();
        assert_eq!(p.feed(b"HTTP/1.1 204 No Content\r\n\r\n"), Ok(true));
        assert_eq!(p.feed(b"x"), Err(ParseError::Extra { bytes: 1 }));
    }

    #[test]
    fn bodies_are_capped_at_max_body() {
        let mut p = Parser::new();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(
            p.feed(head.as_bytes()),
            Err(ParseError::TooLarge {
                announced: Some(MAX_BODY + 1)
            })
        );
        // Chunks that add up past the limit: refused at the size line that crosses it.
        let mut p = Parser::new();
        p.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..4 {
            p.feed(b"100000\r\n").unwrap();
            p.feed(&chunk).unwrap();
            p.feed(b"\r\n").unwrap();
        }
        assert!(matches!(p.feed(b"1\r\n"), Err(ParseError::TooLarge { .. })));
        // To the end of the connection: refused at the byte past the limit.
        let mut p = Parser::new();
        p.feed(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        for _ in 0..4 {
            p.feed(&chunk).unwrap();
        }
        assert!(matches!(p.feed(b"y"), Err(ParseError::TooLarge { .. })));
    }

    #[test]
    fn malformed_answers_say_what_was_seen() {
        let e = |b: &[u8]| {
            let mut p = Parser::new();
            p.feed(b).and_then(|_| p.eof()).unwrap_err()
        };
        match e(b"HTTP/1.1 2OO OK\r\n\r\n") {
            ParseError::Head { error, seen } => {
                assert_eq!(error, httparse::Error::Status);
                assert!(seen.starts_with("HTTP/1.1 2OO OK\\r\\n"), "{seen}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            e(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            ParseError::ContentLength {
                seen: "3, 4".into()
            }
        );
        assert_eq!(
            e(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
            ParseError::ContentLength { seen: "-1".into() }
        );
        assert_eq!(
            e(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            ParseError::TransferEncoding {
                seen: "gzip, chunked".into()
            }
        );
        for bad in [
            &b"\r\n"[..],
            b"zz\r\n",
            b"5\r\nhelloXX",
            b"1\r\nx\r\n0\r\nbad\n",
        ] {
            let mut a = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            a.extend_from_slice(bad);
            assert!(
                matches!(e(&a), ParseError::Chunk { .. }),
                "{:?}",
                bad.escape_ascii().to_string()
            );
        }
        let long = vec![b'a'; MAX_HEAD + 1];
        assert_eq!(
            e(&long),
            ParseError::TooLong {
                what: "answer head"
            }
        );
    }
}
