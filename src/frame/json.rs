//! Renders frames as JSON lines, for `tailbeat decode` and the `stdout` sink.
//!
//! One object per log line: `{"instance","seq","source","offset","ts","line"}`, plus
//! `"cut":true` / `"partial":true` when flagged. A line that is not UTF-8 keeps a readable
//! `"line"` (invalid bytes become U+FFFD) and carries its exact bytes as `"raw"`, base64.

use super::{Batch, Checkpoint, LINE_CUT, LINE_PARTIAL};
use std::io::{self, Write};

/// Writes one JSON object per line of `b`.
pub fn write_batch(out: &mut impl Write, b: &Batch<'_>) -> io::Result<()> {
    let mut s = String::with_capacity(256);
    for l in &b.lines {
        s.clear();
        s.push_str("{\"instance\":");
        push_str(&mut s, b.instance);
        s.push_str(&format!(",\"seq\":{},\"source\":", b.seq));
        let path = b
            .sources
            .get(l.source as usize)
            .map(|s| s.path)
            .unwrap_or("?");
        push_str(&mut s, path);
        s.push_str(&format!(
            ",\"offset\":{},\"ts\":{},\"line\":",
            l.offset,
            b.base_ts_ms + l.ts_delta_ms as u64
        ));
        match std::str::from_utf8(l.text) {
            Ok(t) => push_str(&mut s, t),
            Err(_) => {
                push_str(&mut s, &String::from_utf8_lossy(l.text));
                s.push_str(",\"raw\":\"");
                base64(&mut s, l.text);
                s.push('"');
            }
        }
        if l.flags & LINE_CUT != 0 {
            s.push_str(",\"cut\":true");
        }
        if l.flags & LINE_PARTIAL != 0 {
            s.push_str(",\"partial\":true");
        }
        s.push_str("}\n");
        out.write_all(s.as_bytes())?;
    }
    Ok(())
}

/// Writes a checkpoint as one JSON object.
pub fn write_checkpoint(out: &mut impl Write, c: &Checkpoint) -> io::Result<()> {
    let mut s = format!(
        "{{\"checkpoint\":{{\"next_seq\":{},\"acked_seq\":{},\"files\":[",
        c.next_seq, c.acked_seq
    );
    for (i, f) in c.files.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("{\"path\":");
        push_str(&mut s, &String::from_utf8_lossy(&f.path));
        s.push_str(&format!(
            ",\"dev\":{},\"ino\":{},\"offset\":{},\"size\":{}}}",
            f.dev, f.ino, f.offset, f.size
        ));
    }
    s.push_str("]}}\n");
    out.write_all(s.as_bytes())
}

/// Appends `t` as a JSON string literal.
pub fn push_str(s: &mut String, t: &str) {
    s.push('"');
    for c in t.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                s.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

fn base64(s: &mut String, b: &[u8]) {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        s.push(T[(n >> 18) as usize & 63] as char);
        s.push(T[(n >> 12) as usize & 63] as char);
        s.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        s.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
        ] {
            let mut s = String::new();
            super::base64(&mut s, i.as_bytes());
            assert_eq!(s, o);
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut s = String::new();
        super::push_str(&mut s, "a\"b\\c\n\u{1}");
        assert_eq!(s, r#""a\"b\\c\n\u0001""#);
    }
}
