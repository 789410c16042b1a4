//! [`Secret`]: a credential from the config (a token, a password), whose text leaves the
//! type only through [`Secret::expose`].

use std::fmt;

/// A credential: a bearer token or a password, from the config file or from a fleet's
/// pipeline config.
///
/// `Debug` and `Display` print `***`, so a config, a sink or an error that formats one
/// never shows the text; the code that sends it calls [`expose`](Secret::expose), which is
/// easy to find. Not `Serialize`: nothing writes a `Secret` anywhere (a fleet's pipeline
/// configs are saved in `fleet.state` as the text the server sent).
///
/// ```
/// use tailbeat::config::Secret;
/// let s = Secret::new("hunter2");
/// assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The credential itself, for the one place that sends it (a header, a CONNECT).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_in_debug_and_display() {
        let s = Secret::new("hunter2");
        assert_eq!(s.expose(), "hunter2");
        let shown = format!("{s:?} {s:#?} {s}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    /// No `log::` call in the source reaches for a secret: none names `expose`, a
    /// `password`, `token` or `authorization` field, or an MQTT `Login`. (Formatting a
    /// `Secret` prints `***`; this catches the ways around it.)
    #[test]
    fn no_log_call_can_print_a_secret() {
        let mut files = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        let mut calls = 0;
        while let Some(p) = files.pop() {
            if p.is_dir() {
                files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if p.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let src = std::fs::read_to_string(&p).unwrap();
            let mut rest = src.as_str();
            while let Some(at) = rest.find("log::") {
                rest = &rest[at + 5..];
                let Some(open) = rest.find('(') else { break };
                if !["error!", "warn!", "info!", "debug!", "trace!"].contains(&&rest[..open]) {
                    continue;
                }
                // The call: to its closing parenthesis.
                let mut depth = 0;
                let end = rest[open..]
                    .char_indices()
                    .find_map(|(i, c)| {
                        depth += (c == '(') as i32 - (c == ')') as i32;
                        (depth == 0).then_some(open + i)
                    })
                    .expect("balanced");
                let call = &rest[..end];
                calls += 1;
                for bad in ["expose", ".password", ".token", "authorization", "Login"] {
                    assert!(!call.contains(bad), "{}: log::{call}", p.display());
                }
                rest = &rest[end..];
            }
        }
        // The scan found the source's log calls (there are dozens).
        assert!(calls > 50, "{calls}");
    }
}
