//! Any bytes, as an HTTP server's answer, in any split: the parser (src/http/response.rs)
//! never panics, never holds a body over `MAX_BODY`, and reads the same answer (or fails)
//! however the bytes arrive — whole, or in the pieces the first bytes choose.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tailbeat::http::response::{Answer, Parser};
use tailbeat::http::MAX_BODY;

/// Feeds `pieces`, then the end of the connection: the answer, or None on an error.
fn read<'a>(pieces: impl Iterator<Item = &'a [u8]>) -> Option<Answer> {
    let mut p = Parser::new();
    let mut done = false;
    for piece in pieces {
        done = p.feed(piece).ok()?;
    }
    if !done {
        p.eof().ok()?;
    }
    let a = p.answer().expect("complete after feed true or eof Ok");
    assert!(a.body.len() as u64 <= MAX_BODY, "{} bytes", a.body.len());
    assert!(!(100..200).contains(&a.status), "interim status {}", a.status);
    Some(a)
}

fuzz_target!(|data: &[u8]| {
    // First byte: how many of the next bytes are piece lengths (0 to 15).
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = (n as usize % 16).min(rest.len());
    let (lengths, answer) = rest.split_at(n);
    let whole = read(std::iter::once(answer));
    let mut pieces = Vec::new();
    let mut at = 0;
    for &l in lengths {
        let end = (at + l as usize).min(answer.len());
        pieces.push(&answer[at..end]);
        at = end;
    }
    pieces.push(&answer[at..]);
    assert_eq!(read(pieces.into_iter()), whole);
});
