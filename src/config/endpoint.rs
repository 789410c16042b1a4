//! Broker and server addresses: `mqtt://`, `mqtts://` and `http://` URLs.

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
/// `token`, which are [`Secret`](super::Secret)s.
fn no_credentials(url: &str) -> Result<(), String> {
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
    match authority.split(['/', '?', '#']).next() {
        Some(a) if a.contains('@') => Err(
            "a URL must not hold credentials (URLs show in logs): give username and password, \
             or token, instead"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// Parses `mqtt://host[:port]`, `mqtts://host[:port]`, `mqtt://[v6][:port]`.
pub fn mqtt(url: &str) -> Result<Endpoint, String> {
    no_credentials(url)?;
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

/// Checks an `http://host[:port]/path` or `https://` URL.
pub fn http(url: &str) -> Result<(), String> {
    no_credentials(url)?;
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Err(format!("expected http://host:port/path, got {}", clip(url)));
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    let (name, port) = match host.strip_prefix('[') {
        Some(r) => match r.split_once(']') {
            Some((h, after)) => (h, after.strip_prefix(':')),
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
    if let Some(p) = port {
        if p.parse::<u16>().is_err() {
            return Err(format!("bad port {} in {}", clip(p), clip(url)));
        }
    }
    Ok(())
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
        for good in ["http://h", "http://h:1/x", "http://[::1]:8/x?a=1"] {
            assert_eq!(http(good), Ok(()), "{good}");
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
        // An '@' past the host is a path or a query.
        assert_eq!(http("http://h/a@b?c=@"), Ok(()));
        for bad in ["ftp://h", "http://", "http://h:x/"] {
            assert!(http(bad).is_err(), "{bad}");
        }
    }
}
