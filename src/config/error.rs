//! Config errors that name the file, line and key at fault.

use std::fmt;
use std::path::PathBuf;

/// A config that could not be read: the file, line and key at fault, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, when there is one.
    pub path: Option<PathBuf>,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted key, e.g. `spool.max_bytes` or `input[1].paths`.
    pub key: Option<String>,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.path, self.line) {
            (Some(p), Some(l)) => write!(f, "{}:{}: ", p.display(), l)?,
            (Some(p), None) => write!(f, "{}: ", p.display())?,
            (None, Some(l)) => write!(f, "line {l}: ")?,
            (None, None) => {}
        }
        if let Some(k) = &self.key {
            write!(f, "{k}: ")?;
        }
        f.write_str(&self.msg)
    }
}

impl std::error::Error for ConfigError {}

/// TOML text into `T`, errors with the line and key at fault.
pub(super) fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        let msg = e.message().trim().to_string();
        let key = line.and_then(|l| key_at(text, l, &msg));
        ConfigError {
            path: None,
            line,
            key,
            msg,
        }
    })
}

fn line_of(text: &str, byte: usize) -> usize {
    text.as_bytes()[..byte.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The table a line belongs to (`spool`, `input[1]`), from the headers above it.
fn table_at(text: &str, line: usize) -> String {
    let mut table = String::new();
    let mut arrays: Vec<(String, usize)> = Vec::new();
    for l in text.lines().take(line) {
        let t = l.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_string();
            let n = match arrays.iter_mut().find(|(a, _)| *a == name) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    arrays.push((name.clone(), 0));
                    0
                }
            };
            table = format!("{name}[{n}]");
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = name.trim().to_string();
        }
    }
    table
}

/// The dotted key an error on `line` is about.
fn key_at(text: &str, line: usize, msg: &str) -> Option<String> {
    let table = table_at(text, line);
    let l = text.lines().nth(line - 1)?.trim();
    let key = if l.starts_with('[') {
        // An error on a table header is about a key inside it (e.g. a missing field):
        // name the field if the message quotes one.
        msg.split('`').nth(1).map(str::to_string)
    } else {
        l.split('=')
            .next()
            .map(|k| k.trim().trim_matches('"').to_string())
    };
    match (table.is_empty(), key) {
        (true, k) => k,
        (false, Some(k)) if !k.is_empty() => Some(format!("{table}.{k}")),
        (false, _) => Some(table),
    }
}

/// The line where a dotted key (as `validate` names it) is set, if it is.
pub(super) fn find_key(text: &str, key: &str) -> Option<usize> {
    let (table, field) = match key.rsplit_once('.') {
        Some((t, f)) => (t.to_string(), f),
        None => (String::new(), key),
    };
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            continue;
        }
        if table_at(text, i + 1) == table
            && t.split('=').next().map(|k| k.trim()) == Some(field)
            && t.contains('=')
        {
            return Some(i + 1);
        }
    }
    // Not set on a line of its own: point at the table's header.
    if table.is_empty() {
        return None;
    }
    (1..=text.lines().count()).find(|&i| {
        text.lines()
            .nth(i - 1)
            .is_some_and(|l| l.trim().starts_with('['))
            && table_at(text, i) == table
    })
}
