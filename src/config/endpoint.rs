//! Broker and server addresses: `mqtt://`, `mqtts://` and `http://` URLs, taken apart once
//! when the config is read.

use super::clip;

/// Where an MQTT broker listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `mqtts://`: TLS.
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port: 1883 by default, 8883 with TLS.
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Refuses `user:password@` in a URL, before any other check, and without quoting it:
/// URLs are printed in logs and errors, so credentials go in `username`, `password` and
/// `token`, which are [`Secret`](super::Secret)s. The one rule for both kinds of URL:
/// - an MQTT URL has no path (`with_path` false): any `@` is taken for credentials;
/// - in an HTTP URL, an `@` in the authority (up to the first `/`, `?` or `#`, as RFC 3986
///   reads it), and any `@` after a `:` past the scheme: `user:1234/word@host` reads as
///   host `user`, port 1234, whatever RFC 3986 makes of it. An `@` in a path or a query
///   with no `:` before it (`http://h/a@b`) is not a credential.
///
/// Errors about a URL that passes and still holds an `@` quote none of it ([`hidden`]).
fn no_credentials(url: &str, with_path: bool) -> Result<(), String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let credentials = !with_path
        || authority.contains('@')
        || rest.find(':').is_some_and(|c| rest[c..].contains('@'));
    if credentials && url.contains('@') {
        Err(CREDENTIALS.into())
    } else {
        Ok(())
    }
}

const CREDENTIALS: &str = "a URL must not hold credentials (URLs show in logs): give username \
                           and password, or token, instead";

/// A URL with an `@` that does not parse is not quoted, nor any part of it: a malformed one
/// (`http:/user:password@host`) may hold a password where [`no_credentials`] does not look.
fn hidden<T>(url: &str, r: Result<T, String>) -> Result<T, String> {
    r.map_err(|why| {
        if url.contains('@') && why != CREDENTIALS {
            "not a valid URL (not shown: it has an '@', which may come with a password)".into()
        } else {
            why
        }
    })
}

/// Parses `mqtt://host[:port]`, `mqtts://host[:port]`, `mqtt://[v6][:port]`. An MQTT URL has
/// no path: an `@` anywhere in it is taken for credentials.
pub fn mqtt(url: &str) -> Result<Endpoint, String> {
    no_credentials(url, false)?;
    hidden(url, printable(url).and_then(|()| mqtt_parts(url)))
}

fn mqtt_parts(url: &str) -> Result<Endpoint, String> {
    let bad = || {
        format!(
            "expected mqtt://host:port or mqtts://host:port, got {}",
            clip(url)
        )
    };
    let (tls, rest) = match (url.strip_prefix("mqtt://"), url.strip_prefix("mqtts://")) {
        (Some(r), _) => (false, r),
        (_, Some(r)) => (true, r),
        _ => return Err(bad()),
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (host, after) = r.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (host, None),
            a => (host, Some(a.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@']) {
        return Err(bad());
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("bad port {} in {}", clip(p), clip(url)))?,
        None if tls => 8883,
        None => 1883,
    };
    Ok(Endpoint {
        tls,
        host: host.to_string(),
        port,
    })
}

/// An `http://host[:port][/path]` or `https://` URL, checked when the config was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// As written, less any trailing `/`: paths are appended to it.
    url: String,
    /// `https://`.
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port: 80 by default, 443 with TLS.
    pub port: u16,
}

impl HttpUrl {
    /// The URL as written, less any trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.url
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

/// `[fleet] server`: a ConfigServer over HTTP, or an MQTT broker. Which transport runs is
/// decided here, once, not by looking at the string's prefix wherever it is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Server {
    /// `http(s)://host[:port][/prefix]`: ConfigServer protocol v2 over HTTP POST.
    Http(HttpUrl),
    /// `mqtt(s)://host[:port]`: the same messages on topics.
    Mqtt(Endpoint),
}

impl Server {
    /// Where the server listens: host and port.
    pub fn host_port(&self) -> (&str, u16) {
        match self {
            Server::Http(u) => (&u.host, u.port),
            Server::Mqtt(e) => (&e.host, e.port),
        }
    }
}

impl std::fmt::Display for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Server::Http(u) => u.fmt(f),
            Server::Mqtt(e) => e.fmt(f),
        }
    }
}

impl Server {
    /// `[fleet] server`: `mqtt(s)://` is a broker, anything else an HTTP URL.
    pub fn parse(url: &str) -> Result<Server, String> {
        if url.starts_with("mqtt") {
            mqtt(url).map(Server::Mqtt)
        } else {
            http(url).map(Server::Http)
        }
    }
}

/// Parses an `http://host[:port]/path` or `https://` URL. Its host and port end at the first
/// `/`, `?` or `#` (RFC 3986), as the credentials check reads them.
pub fn http(url: &str) -> Result<HttpUrl, String> {
    no_credentials(url, true)?;
    // The client sends no fragment (it would drop what the agent appends after it).
    if url.contains('#') {
        return hidden(
            url,
            Err(format!("a URL with a fragment ('#'): {}", clip(url))),
        );
    }
    hidden(url, printable(url).and_then(|()| http_parts(url)))
}

/// No space or control character: no request can carry one (the HTTP client refuses them
/// at every send, which would make a URL that passed `check` fail for ever), and a log line
/// with one would be two.
fn printable(url: &str) -> Result<(), String> {
    if url.bytes().any(|b| b <= b' ' || b == 0x7f) {
        Err(format!("a space or control character in {}", clip(url)))
    } else {
        Ok(())
    }
}

fn http_parts(url: &str) -> Result<HttpUrl, String> {
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(r), _) => (false, r),
        (_, Some(r)) => (true, r),
        _ => return Err(format!("expected http://host:port/path, got {}", clip(url))),
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (name, port) = match host.strip_prefix('[') {
        Some(r) => match r.split_once(']') {
            Some((h, "")) => (h, None),
            Some((h, after)) => match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return Err(format!("expected :port after ] in {}", clip(url))),
            },
            None => ("", None),
        },
        None => match host.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        },
    };
    if name.is_empty() {
        return Err(format!("no host in {}", clip(url)));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("bad port {} in {}", clip(p), clip(url)))?,
        None if tls => 443,
        None => 80,
    };
    Ok(HttpUrl {
        url: url.trim_end_matches('/').to_string(),
        tls,
        host: name.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        let e = |tls, host: &str, port| Endpoint {
            tls,
            host: host.into(),
            port,
        };
        for (url, want) in [
            ("mqtt://127.0.0.1:1884", e(false, "127.0.0.1", 1884)),
            ("mqtt://broker.local", e(false, "broker.local", 1883)),
            ("mqtts://broker.local", e(true, "broker.local", 8883)),
            ("mqtt://[::1]:1885", e(false, "::1", 1885)),
            ("mqtt://[::1]", e(false, "::1", 1883)),
        ] {
            assert_eq!(mqtt(url).unwrap(), want, "{url}");
        }
        assert_eq!(
            mqtt("mqtt://[::1]:9").unwrap().to_string(),
            "mqtt://[::1]:9"
        );
        for bad in ["tcp://x", "mqtt://", "mqtt://x:port", "mqtt://[::1"] {
            assert!(mqtt(bad).is_err(), "{bad}");
        }
        for (good, host, port) in [
            ("http://h", "h", 80),
            ("https://h/", "h", 443),
            ("http://h:1/x", "h", 1),
            ("http://[::1]:8/x?a=1", "::1", 8),
        ] {
            let u = http(good).unwrap();
            assert_eq!((u.host.as_str(), u.port), (host, port), "{good}");
            assert!(!u.as_str().ends_with('/'), "{good}");
        }
        for with_credentials in [
            "https://u:hunter2@h/x",
            "http://:hunter2@h",
            "http://u:hunter2@/x",
            "mqtt://u:hunter2@h:1883",
            "mqtts://hunter2@h",
        ] {
            let why = http(with_credentials)
                .and_then(|_| mqtt(with_credentials).map(|_| ()))
                .unwrap_err();
            assert!(
                why.contains("credentials") && !why.contains("hunter2"),
                "{why}"
            );
        }
        for bad in [
            "http://h/a b",
            "http://h/\nFAKE LINE",
            "http://h/a\tb",
            "http://h/a\u{0}b",
            "https://h/\u{7f}",
            "mqtt://h\n:1",
            "mqtt://h :1",
        ] {
            for why in [http(bad).unwrap_err(), mqtt(bad).unwrap_err()] {
                assert!(why.starts_with("a space or control character in"), "{why}");
                assert!(!why.contains('\n') && !why.contains('\t'), "{why}");
            }
        }
        // An '@' past the host is a path or a query.
        assert!(http("http://h/a@b?c=@").is_ok());
        for bad in ["ftp://h", "http://", "http://h:x/", "http://[::1]x/"] {
            assert!(http(bad).is_err(), "{bad}");
        }
    }
}
