//! Birth and death on the state topic: what they say, and when the agent says `online` again.
//!
//! Every MQTT connection of a sink is a **session** with a number that grows by one per
//! CONNECT and survives restarts (`mqtt.session` beside the spool), so that a death can be
//! told apart from the current life: the birth (`online`, retained) and the Will (`offline`)
//! both carry the session number and the connect time. The sink subscribes to its own state
//! topic; an `offline` of its current session or an older one — a Will the broker published
//! late for a link that is already replaced, a session taken over, a broker that restored an
//! old retained message — is answered by publishing `online` again. An `offline` of a newer
//! session means another process uses the same identity: it is logged, never fought over.
//!
//! What always holds: a retained `offline` for a connected agent lasts at most until the sink
//! next reads from the broker (at the latest its keep-alive); the session number never goes
//! backwards while `mqtt.session` is readable, and if it is not, it restarts from the wall
//! clock's seconds, which is above any count of connects made so far.

use std::io::Write;
use std::path::Path;

/// The file, in the pipeline's spool directory, that keeps the last session number.
pub const SESSION_FILE: &str = "mqtt.session";

/// The state message: `{"state":..,"instance":..,"version":..,"startup_time":..,"session":..,"connected_at":..}`.
pub fn payload(
    online: bool,
    instance: &str,
    startup_time: u64,
    session: u64,
    connected_at: u64,
) -> Vec<u8> {
    let mut j = String::from("{\"state\":\"");
    j.push_str(if online { "online" } else { "offline" });
    j.push_str("\",\"instance\":");
    crate::frame::json::push_str(&mut j, instance);
    j.push_str(&format!(
        ",\"version\":\"{}\",\"startup_time\":{startup_time},\"session\":{session},\"connected_at\":{connected_at}}}",
        env!("CARGO_PKG_VERSION"),
    ));
    j.into_bytes()
}

/// What a message on the state topic says: online or not, and its session (0 when it has
/// none: a message from a version before sessions, or something else entirely).
pub fn parse(msg: &[u8]) -> Option<(bool, u64)> {
    let text = std::str::from_utf8(msg).ok()?;
    let online = if text.contains("\"state\":\"online\"") {
        true
    } else if text.contains("\"state\":\"offline\"") {
        false
    } else {
        return None;
    };
    let session = text
        .split_once("\"session\":")
        .map(|(_, rest)| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().unwrap_or(0)
        })
        .unwrap_or(0);
    Some((online, session))
}

/// What to do about a state message seen while connected as session `current`.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing: an `online`, or not a state message.
    Fine,
    /// An `offline` of this session or an older one: say `online` again.
    Rebirth,
    /// An `offline` of a newer session: someone else has this identity.
    Newer(u64),
}

/// The verdict on `seen` (from [`parse`]).
pub fn verdict(seen: Option<(bool, u64)>, current: u64) -> Verdict {
    match seen {
        Some((false, s)) if s <= current => Verdict::Rebirth,
        Some((false, s)) => Verdict::Newer(s),
        _ => Verdict::Fine,
    }
}

/// The next session number: one more than the one kept in `dir`, kept there before the
/// CONNECT that uses it. A file that cannot be read restarts the count from `now_secs`.
pub fn next_session(dir: &Path, now_secs: u64) -> u64 {
    let path = dir.join(SESSION_FILE);
    let last = match std::fs::read_to_string(&path) {
        Ok(t) => t.trim().parse::<u64>().unwrap_or_else(|_| {
            log::warn!(
                "{}: not a session number ({:?}); counting on from the clock",
                path.display(),
                t.chars().take(32).collect::<String>()
            );
            now_secs
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            log::warn!("{}: {e}; counting on from the clock", path.display());
            now_secs
        }
    };
    let next = last + 1;
    let tmp = dir.join(format!("{SESSION_FILE}.tmp"));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            writeln!(f, "{next}")?;
            f.sync_data()
        })
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        // The number still grows within this run; a restart may reuse it.
        log::warn!("{}: {e}", path.display());
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_death_of_this_session_or_an_older_one_is_answered_and_a_newer_one_is_not() {
        let off = |s: u64| payload(false, "gw-1", 1, s, 2);
        assert_eq!(verdict(parse(&off(7)), 7), Verdict::Rebirth);
        assert_eq!(verdict(parse(&off(6)), 7), Verdict::Rebirth);
        assert_eq!(verdict(parse(&off(8)), 7), Verdict::Newer(8));
        assert_eq!(
            verdict(parse(&payload(true, "gw-1", 1, 7, 2)), 7),
            Verdict::Fine
        );
        // A death from before sessions existed is an older one.
        assert_eq!(
            verdict(parse(br#"{"state":"offline","instance":"gw-1"}"#), 7),
            Verdict::Rebirth
        );
        assert_eq!(verdict(parse(b"\xff garbage"), 7), Verdict::Fine);
        assert_eq!(verdict(parse(b""), 7), Verdict::Fine);
    }

    #[test]
    fn the_session_number_grows_across_restarts_and_survives_a_damaged_file() {
        let dir = std::env::temp_dir().join(format!("tailbeat-birth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(next_session(&dir, 1000), 1);
        assert_eq!(next_session(&dir, 1000), 2);
        std::fs::write(dir.join(SESSION_FILE), "garbage").unwrap();
        assert_eq!(next_session(&dir, 1000), 1001);
        assert_eq!(next_session(&dir, 5), 1002);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
