//! TOML into the config's types, by hand: toml's parsed document, where every key and value
//! keeps its place in the text, walked table by table.
//!
//! Why not serde derives: over toml's deserializer they cost about 180 KB of binary (`cargo
//! bloat`: a `deserialize_any` per visitor, and for `[sink]`, an internally tagged enum, a
//! buffered copy of the table), more than the TOML parser itself; this walk of plain calls is
//! about 40 KiB. And since every value here still knows where it is, an error names the key
//! and the line of the value at fault, `[sink]`'s as well.
//!
//! Always true: a reader names its table's keys ([`Table::keys`]) before it takes any, and a
//! key not among them is an error (`unknown field`, the first in the text, with the list), found
//! before any value is read, as serde found it; every table read is [`Table::finish`]ed, so a
//! key named but not taken is refused too, never ignored. A value of the wrong type is named
//! by its type, never quoted (it may be a secret). An error carries the key's path and, but
//! for a key missing from the document's top level, a line.

use super::error::{clip, clip_key, line_of, ConfigError, KeyPath, Seg, MAX_CONFIG_BYTES};
use super::{parse_duration, parse_size, Secret, Secs, Size};
use std::path::PathBuf;
use toml::de::{DeString, DeTable, DeValue};
use toml::Spanned;

/// A table being read: the keys not yet taken, and the keys it takes.
pub(crate) struct Table<'i> {
    text: &'i str,
    path: KeyPath,
    /// Where the table starts (its header, or its `{`); `None` for the document itself.
    at: Option<usize>,
    rest: Vec<(Spanned<DeString<'i>>, Spanned<DeValue<'i>>)>,
    known: Vec<&'static str>,
}

/// One value, with its key's path and its place in the text.
pub(crate) struct Value<'i> {
    text: &'i str,
    path: KeyPath,
    at: usize,
    v: DeValue<'i>,
}

/// Parses `text` as a TOML document and reads it with `read`, every key accounted for. A
/// syntax error names its line (`error::syntax`).
pub(crate) fn document<T>(
    text: &str,
    read: impl FnOnce(&mut Table<'_>) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError {
            path: None,
            line: None,
            column: None,
            key: None,
            msg: format!(
                "{} bytes of config, over the limit of {} KiB",
                text.len(),
                MAX_CONFIG_BYTES >> 10
            ),
        });
    }
    let doc = DeTable::parse(text).map_err(|e| super::error::syntax(text, &e))?;
    let mut t = Table::new(text, KeyPath::default(), None, doc.into_inner());
    let out = read(&mut t)?;
    t.finish()?;
    Ok(out)
}

/// The largest size a config takes (1 PiB): sums and doublings of sizes, as validation makes
/// them, stay far from overflowing.
const MAX_SIZE: u64 = 1 << 50;

/// The longest duration a config takes (366 days): a deadline `now + duration` never
/// overflows the clock, whatever the key.
const MAX_SECS: u64 = 366 * 24 * 3600;

/// A key of the document as an error shows it: as it is if it is a bare key (letters,
/// digits, `_`, `-`), else quoted with its control characters escaped, so that an error stays
/// one line whatever a config's keys hold.
pub(super) fn shown(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// `key` in backticks, as serde quoted a field, cut like [`clip`] past 64 characters:
/// `` `abc…`… (5000 bytes) ``.
fn ticked(key: &str) -> String {
    match key.char_indices().nth(64) {
        None => format!("`{key}`"),
        Some((cut, _)) => format!("`{}`… ({} bytes)", &key[..cut], key.len()),
    }
}

fn error(text: &str, at: Option<usize>, key: KeyPath, msg: String) -> ConfigError {
    ConfigError {
        path: None,
        line: at.map(|b| line_of(text, b)),
        column: None,
        key: Some(key),
        msg,
    }
}

/// serde's wording: `expected `a``, `expected `a` or `b``, `expected one of `a`, `b`, `c``.
fn expected(names: &[&str]) -> String {
    match names {
        [] => "there are none".into(),
        [a] => format!("expected `{a}`"),
        [a, b] => format!("expected `{a}` or `{b}`"),
        _ => {
            let all: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            format!("expected one of {}", all.join(", "))
        }
    }
}

impl<'i> Table<'i> {
    fn new(text: &'i str, path: KeyPath, at: Option<usize>, t: DeTable<'i>) -> Table<'i> {
        Table {
            text,
            path,
            at,
            rest: t.into_iter().collect(),
            known: Vec::new(),
        }
    }

    /// The keys this table takes (in groups, so that a table made of another's keys and more
    /// can say so); the first key of the text not among them is an error.
    pub fn keys(&mut self, groups: &[&'static [&'static str]]) -> Result<(), ConfigError> {
        self.known = groups.concat();
        self.unknown()
    }

    /// `unknown field`: the first key (in the text) that is not known.
    fn unknown(&self) -> Result<(), ConfigError> {
        let first = self
            .rest
            .iter()
            .filter(|(k, _)| !self.known.contains(&k.get_ref().as_ref()))
            .min_by_key(|(k, _)| k.span().start);
        let Some((k, _)) = first else {
            return Ok(());
        };
        let mut path = self.path.clone();
        path.0.push(Seg::Key(shown(k.get_ref())));
        let fields = match self.known.as_slice() {
            [] => "there are no fields".into(),
            names => expected(names),
        };
        Err(error(
            self.text,
            Some(k.span().start),
            path,
            format!("unknown field {}, {fields}", ticked(&shown(k.get_ref()))),
        ))
    }

    /// The tag of a table whose other keys depend on it (`[sink]`'s `type`): one of `names`.
    /// Read before [`keys`](Self::keys), which is to name it again.
    pub fn tag<T: Copy>(
        &mut self,
        key: &'static str,
        names: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        self.known.push(key);
        self.need(key)?.one_of(names)
    }

    /// The value of `key`, if the table has it.
    pub fn take(&mut self, key: &'static str) -> Option<Value<'i>> {
        debug_assert!(
            self.known.contains(&key),
            "{key} is not among the table's keys"
        );
        let i = self.rest.iter().position(|(k, _)| k.get_ref() == key)?;
        let (_, v) = self.rest.swap_remove(i);
        let at = v.span().start;
        let mut path = self.path.clone();
        path.0.push(Seg::Key(key.into()));
        Some(Value {
            text: self.text,
            path,
            at,
            v: v.into_inner(),
        })
    }

    /// The value of `key`, which the table must have (serde's `missing field`, on the
    /// table's header).
    pub fn need(&mut self, key: &'static str) -> Result<Value<'i>, ConfigError> {
        match self.take(key) {
            Some(v) => Ok(v),
            None => {
                let mut path = self.path.clone();
                path.0.push(Seg::Key(key.into()));
                Err(error(
                    self.text,
                    self.at,
                    path,
                    format!("missing field `{key}`"),
                ))
            }
        }
    }

    /// `take(key)` read by `read`, or `default` when the key is left out.
    pub fn or<T>(
        &mut self,
        key: &'static str,
        read: fn(Value<'i>) -> Result<T, ConfigError>,
        default: T,
    ) -> Result<T, ConfigError> {
        self.take(key).map_or(Ok(default), read)
    }

    /// `take(key)` read by `read`, if the key is there.
    pub fn opt<T>(
        &mut self,
        key: &'static str,
        read: fn(Value<'i>) -> Result<T, ConfigError>,
    ) -> Result<Option<T>, ConfigError> {
        self.take(key).map(read).transpose()
    }

    /// Ends the reading. A key still here was named by [`keys`](Self::keys) but taken by no
    /// reader: a slip in this code, refused rather than ignored (and a panic in tests).
    pub fn finish(self) -> Result<(), ConfigError> {
        let Some((k, v)) = self.rest.first() else {
            return Ok(());
        };
        debug_assert!(false, "{k} was named but not read");
        let mut path = self.path.clone();
        path.0.push(Seg::Key(shown(k.get_ref())));
        Err(error(
            self.text,
            Some(v.span().start),
            path,
            "this key is not read by this build".into(),
        ))
    }
}

impl<'i> Value<'i> {
    /// An error about this value: its key, its line.
    pub fn error(&self, msg: String) -> ConfigError {
        error(self.text, Some(self.at), self.path.clone(), msg)
    }

    /// The value is not of the type wanted: says which type it is, never what it holds.
    fn wrong<T>(&self, want: &str) -> Result<T, ConfigError> {
        let a = match &self.v {
            DeValue::Integer(_) => "an integer",
            DeValue::Array(_) => "an array",
            DeValue::Table(_) => "a table",
            DeValue::Boolean(_) => "a boolean",
            DeValue::Float(_) => "a float",
            DeValue::Datetime(_) => "a date-time",
            DeValue::String(_) => "a string",
        };
        Err(self.error(format!("invalid type: {a}, expected {want}")))
    }

    pub fn string(self) -> Result<String, ConfigError> {
        match self.v {
            DeValue::String(s) => Ok(s.into_owned()),
            _ => self.wrong("a string"),
        }
    }

    /// A credential: a string, kept as a [`Secret`].
    pub fn secret(self) -> Result<Secret, ConfigError> {
        self.string().map(Secret::new)
    }

    pub fn path(self) -> Result<PathBuf, ConfigError> {
        self.string().map(PathBuf::from)
    }

    pub fn bool(self) -> Result<bool, ConfigError> {
        match self.v {
            DeValue::Boolean(b) => Ok(b),
            _ => self.wrong("a boolean"),
        }
    }

    /// An integer of at least 0 and at most `max`.
    fn unsigned(self, max: u64) -> Result<u64, ConfigError> {
        let DeValue::Integer(i) = &self.v else {
            return self.wrong("an integer");
        };
        // A TOML integer is a signed 64-bit one (`-0` is 0, 2^63 is no integer at all).
        match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) if n >= 0 && n as u64 <= max => Ok(n as u64),
            _ => Err(self.error(format!(
                "{} is out of range: 0 to {max}",
                clip_key(&i.to_string())
            ))),
        }
    }

    pub fn u32(self) -> Result<u32, ConfigError> {
        self.unsigned(u32::MAX.into()).map(|n| n as u32)
    }

    pub fn usize(self) -> Result<usize, ConfigError> {
        self.unsigned(u32::MAX.into()).map(|n| n as usize)
    }

    /// An integer of bytes, or a string with a unit (`8MiB`).
    pub fn size(self) -> Result<Size, ConfigError> {
        match &self.v {
            DeValue::String(s) => match parse_size(s) {
                Some(n) if n <= MAX_SIZE => Ok(Size(n)),
                Some(_) => Err(self.error(format!("{} is over 1PiB", clip(s)))),
                None => Err(self.error(format!("expected a size like 8MiB, got {}", clip(s)))),
            },
            DeValue::Integer(_) => self.unsigned(MAX_SIZE).map(Size),
            _ => self.wrong("a size like 8MiB"),
        }
    }

    /// An integer of seconds, or a string with a unit (`250ms`, `5s`, `2m`, `1h`).
    pub fn secs(self) -> Result<Secs, ConfigError> {
        match &self.v {
            DeValue::String(s) => match parse_duration(s) {
                Some(d) if d <= std::time::Duration::from_secs(MAX_SECS) => Ok(Secs(d)),
                Some(_) => Err(self.error(format!("{} is over a year (8784h)", clip(s)))),
                None => Err(self.error(format!(
                    "expected a duration like 5s or 250ms, got {}",
                    clip(s)
                ))),
            },
            DeValue::Integer(_) => self.unsigned(MAX_SECS).map(Secs::s),
            _ => self.wrong("a duration like 5s or 250ms"),
        }
    }

    /// A string that `parse` turns into a `T` (a URL, an address, a codec); its error is
    /// this key's.
    pub fn parse<T>(self, parse: impl FnOnce(&str) -> Result<T, String>) -> Result<T, ConfigError> {
        match &self.v {
            DeValue::String(s) => parse(s).map_err(|m| self.error(m)),
            _ => self.wrong("a string"),
        }
    }

    /// One of `names`, as serde reads a unit enum (`unknown variant`).
    pub fn one_of<T: Copy>(self, names: &[(&str, T)]) -> Result<T, ConfigError> {
        self.parse(|s| match names.iter().find(|(n, _)| *n == s) {
            Some((_, v)) => Ok(*v),
            None => {
                let all: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
                Err(format!("unknown variant {}, {}", clip(s), expected(&all)))
            }
        })
    }

    /// The elements of an array, each with its index in its path.
    pub fn items(self, what: &str) -> Result<Vec<Value<'i>>, ConfigError> {
        let DeValue::Array(a) = self.v else {
            return self.wrong(what);
        };
        let mut out = Vec::with_capacity(a.len());
        for (i, v) in a.into_iter().enumerate() {
            out.push(Value {
                text: self.text,
                path: self.path.clone().index(i),
                at: v.span().start,
                v: v.into_inner(),
            });
        }
        Ok(out)
    }

    /// An array of strings.
    pub fn strings(self) -> Result<Vec<String>, ConfigError> {
        self.items("an array of strings")?
            .into_iter()
            .map(Value::string)
            .collect()
    }

    /// A table (`[name]`, or `{ ... }`).
    pub fn table(self) -> Result<Table<'i>, ConfigError> {
        match self.v {
            DeValue::Table(t) => Ok(Table::new(self.text, self.path, Some(self.at), t)),
            _ => self.wrong("a table"),
        }
    }

    /// An array of tables (`[[name]]`), each read by `read` and finished.
    pub fn tables<T>(
        self,
        read: impl Fn(&mut Table<'i>) -> Result<T, ConfigError>,
    ) -> Result<Vec<T>, ConfigError> {
        let mut out = Vec::new();
        for v in self.items("an array of tables")? {
            let mut t = v.table()?;
            out.push(read(&mut t)?);
            t.finish()?;
        }
        Ok(out)
    }

    /// A table whose every value is a string (`tags`), in key order.
    pub fn string_map(self) -> Result<std::collections::BTreeMap<String, String>, ConfigError> {
        let t = self.table()?;
        let mut out = std::collections::BTreeMap::new();
        for (k, v) in t.rest {
            let mut path = t.path.clone();
            path.0.push(Seg::Key(shown(k.get_ref())));
            let v = Value {
                text: t.text,
                path,
                at: v.span().start,
                v: v.into_inner(),
            };
            out.insert(k.into_inner().into_owned(), v.string()?);
        }
        Ok(out)
    }
}

/// The line of the value at `key` in `text` or, when the text leaves it out (validation
/// found its default wrong), of the nearest table above it that the text has; `None` when it
/// has none of them. Walks the key's segments down the parsed document, so a value is found
/// however it is written (a header table, an inline table, a dotted or quoted key, an entry
/// of a list on its own line).
pub(crate) fn line_of_key(text: &str, key: &KeyPath) -> Option<usize> {
    let doc = DeTable::parse(text).ok()?;
    let mut at: Option<&Spanned<DeValue<'_>>> = None;
    let mut line = None;
    for seg in &key.0 {
        let next = match (seg, at.map(Spanned::get_ref)) {
            (Seg::Key(k), None) => doc.get_ref().get(k.as_str()),
            (Seg::Key(k), Some(DeValue::Table(t))) => t.get(k.as_str()),
            (Seg::Index(i), Some(DeValue::Array(a))) => a.get(*i),
            _ => None,
        };
        let Some(v) = next else { break };
        line = Some(line_of(text, v.span().start));
        at = Some(v);
    }
    line
}

/// A table read by `read`, then finished: for a sub-table such as `[sink.tls]`.
pub(crate) fn sub<T>(
    v: Value<'_>,
    read: impl FnOnce(&mut Table<'_>) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let mut t = v.table()?;
    let out = read(&mut t)?;
    t.finish()?;
    Ok(out)
}
