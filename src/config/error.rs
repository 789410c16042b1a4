//! Config errors that name the file, line and key at fault, and repeat no more of the input
//! than a person needs to find it.
//!
//! The key at fault is data, a [`KeyPath`] of segments (`pipeline`, `[0]`, `sink`, `url`),
//! built where the error is found and rendered only for people; code that needs to know
//! which pipeline or input an error is about reads the segments, never the text.
//!
//! Always true: a [`ConfigError`] displays as one line, and however long the value, key or
//! line at fault, it echoes at most [`ECHO_CHARS`] characters of each quoted value or key
//! (then `… (N bytes)`), and at most [`MAX_MSG`] bytes of message in all.

use std::fmt;
use std::path::PathBuf;

/// How many characters of a value (or key) an error message repeats; the rest is counted.
pub const ECHO_CHARS: usize = 64;

/// The most bytes of message a [`ConfigError`] shows, whatever quoting it failed to cut.
pub const MAX_MSG: usize = 1024;

/// One step of a [`KeyPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A key, or a table's name.
    Key(String),
    /// An element of an array of tables (`[[input]]`), from 0.
    Index(usize),
}

/// Where a key sits in a config, e.g. `input[1].paths` or `pipeline[0].sink.url`: a list of
/// segments. Displayed as written in TOML, dotted, each index in brackets after its array.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    /// The path of a dotted key, `spool.max_bytes` (no indices: see [`index`](Self::index)).
    pub fn dotted(key: &str) -> KeyPath {
        KeyPath::default().then(key)
    }

    /// This path, then the keys of `dotted` (`sink.url`).
    pub fn then(mut self, dotted: &str) -> KeyPath {
        self.0.extend(
            dotted
                .split('.')
                .filter(|k| !k.is_empty())
                .map(|k| Seg::Key(k.to_string())),
        );
        self
    }

    /// This path, then element `i` of the array it names.
    pub fn index(mut self, i: usize) -> KeyPath {
        self.0.push(Seg::Index(i));
        self
    }

    /// This path, then `rest`.
    pub fn join(mut self, rest: &KeyPath) -> KeyPath {
        self.0.extend(rest.0.iter().cloned());
        self
    }

    /// Whether there is no segment at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// If the path starts with `array[i]`, then `i` and the rest.
    pub fn in_array(&self, array: &str) -> Option<(usize, KeyPath)> {
        match self.0.as_slice() {
            [Seg::Key(k), Seg::Index(i), rest @ ..] if k == array => {
                Some((*i, KeyPath(rest.to_vec())))
            }
            _ => None,
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if n == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// A config that could not be read: the file, line and key at fault, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, when there is one.
    pub path: Option<PathBuf>,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters) on `line`, when known. (u32: keeps the error, and
    /// every `Result` that carries it, small.)
    pub column: Option<u32>,
    /// The key, e.g. `spool.max_bytes` or `input[1].paths`.
    pub key: Option<KeyPath>,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written whole, then with every control character escaped: one line, whatever a
        // file's name, a key or a value holds.
        let mut s = String::new();
        let f = &mut s;
        use fmt::Write;
        let at = match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{l}:{c}"),
            (Some(l), None) => l.to_string(),
            _ => String::new(),
        };
        match (&self.path, at.is_empty()) {
            (Some(p), false) => write!(f, "{}:{at}: ", p.display())?,
            (Some(p), true) => write!(f, "{}: ", p.display())?,
            (None, false) => write!(f, "line {at}: ")?,
            (None, true) => {}
        }
        if let Some(k) = &self.key {
            write!(f, "{}: ", clip_key(&k.to_string()))?;
        }
        // Messages come from toml too, which may quote the input whole: bounded here, where
        // every config error is shown (CLI, logs, FAILED statuses to the fleet).
        f.write_str(&bound_msg(&self.msg))?;
        for c in s.chars() {
            // What `{:?}` escapes (control, separator and format characters such as bidi
            // overrides), but quotes and backslashes, which messages hold as they are.
            if !matches!(c, '"' | '\'' | '\\') && c.escape_debug().len() > 1 {
                write!(out, "{}", c.escape_debug())?;
            } else {
                out.write_char(c)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// `value` quoted for an error message: whole if short, else its first 64 (`ECHO_CHARS`)
/// characters and its length, `"abc…"… (8388608 bytes)`.
pub fn clip(value: &str) -> String {
    match value.char_indices().nth(ECHO_CHARS) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &value[..cut], value.len()),
    }
}

/// A key (not quoted) cut like [`clip`].
pub(super) fn clip_key(key: &str) -> String {
    match key.char_indices().nth(ECHO_CHARS) {
        None => key.to_string(),
        Some((cut, _)) => format!("{}… ({} bytes)", &key[..cut], key.len()),
    }
}

/// `msg` with every quoted stretch (`"..."` as `{:?}` writes it, or `` `...` `` as serde
/// does) longer than [`ECHO_CHARS`] characters cut like [`clip`] (stretches already cut are
/// left alone), then cut at [`MAX_MSG`] bytes if it is still longer.
fn bound_msg(msg: &str) -> std::borrow::Cow<'_, str> {
    if msg.len() <= ECHO_CHARS {
        return msg.into();
    }
    let mut out = String::new();
    let mut rest = msg;
    while let Some(open) = rest.find(['"', '`']) {
        let q = rest.as_bytes()[open];
        let body = &rest[open + 1..];
        // The closing quote; a `"` preceded by a backslash is escaped.
        let mut close = None;
        let mut escaped = false;
        for (i, b) in body.bytes().enumerate() {
            match b {
                b'\\' if q == b'"' => escaped = !escaped,
                b if b == q && !escaped => {
                    close = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(close) = close else { break };
        let inner = &body[..close];
        let after = &body[close + 1..];
        out.push_str(&rest[..=open]);
        match inner.char_indices().nth(ECHO_CHARS) {
            Some((cut, _)) if !after.starts_with("… (") => {
                out.push_str(&inner[..cut]);
                out.push(q as char);
                out.push_str(&format!("… ({} bytes)", inner.len()));
            }
            _ => {
                out.push_str(inner);
                out.push(q as char);
            }
        }
        rest = after;
    }
    out.push_str(rest);
    if out.len() > MAX_MSG {
        let cut = (0..=MAX_MSG)
            .rev()
            .find(|&i| out.is_char_boundary(i))
            .unwrap_or(0);
        let n = out.len();
        out.truncate(cut);
        out.push_str(&format!("… ({n} bytes)"));
    }
    out.into()
}

/// `bytes` as text, or an error naming the line and column of the first byte that is not
/// UTF-8 (a config file, or a config from the fleet, must be UTF-8).
pub fn from_utf8(bytes: &[u8]) -> Result<&str, ConfigError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        // The bytes before the bad one on its line are valid UTF-8: count characters.
        let column = std::str::from_utf8(&good[line_start..]).map_or(0, |s| s.chars().count()) + 1;
        ConfigError {
            path: None,
            line: Some(good.iter().filter(|&&b| b == b'\n').count() + 1),
            column: u32::try_from(column).ok(),
            key: None,
            msg: format!(
                "not UTF-8 (byte {:#04x}): a config file must be UTF-8 text",
                bytes[e.valid_up_to()]
            ),
        }
    })
}

/// Largest config text read (a local file, or one config from the fleet): ours need a few
/// KiB. The parser builds a document several times the text's size before it is checked
/// (measured: 131 MB of memory for 1 MB of dotted keys), and a fleet's answer may be up to
/// 4 MiB, so a hostile or broken config could exhaust a small device's memory.
pub const MAX_CONFIG_BYTES: usize = 256 << 10;

/// A TOML syntax error (`DeTable::parse`): its line, and no key. Which key a broken text
/// means can only be guessed from the raw lines, and a guess can take the inside of a
/// multi-line string (a token written over lines) for a key and print it.
pub(super) fn syntax(text: &str, e: &toml::de::Error) -> ConfigError {
    let msg = match e.message().trim() {
        // A dotted key of too many parts, which toml reports without its place.
        "recursion limit" => "a dotted key of too many parts",
        m => m,
    };
    ConfigError {
        path: None,
        line: e.span().map(|s| line_of(text, s.start)),
        column: None,
        key: None,
        msg: msg.to_string(),
    }
}

pub(super) fn line_of(text: &str, byte: usize) -> usize {
    text.as_bytes()[..byte.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
