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
//! clock's seconds, which is above any count of connects made so far ([`Sessions`]).

use std::io::Write;
use std::path::{Path, PathBuf};

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

/// Session numbers, handed out from memory and reserved on disk [`BLOCK`] at a time: a
/// link that connects and drops over and over costs one small fsynced write per `BLOCK`
/// connects, not one per connect. After a restart numbering goes on past the reserved
/// block; a missing or unreadable file goes on from the wall clock's seconds, above any
/// count of connects (so a data_dir wiped or on tmpfs does not start again at 1 while the
/// broker still holds a death of a higher session).
#[derive(Debug)]
pub struct Sessions {
    path: PathBuf,
    /// The last number handed out; 0 before the first.
    current: u64,
    /// Numbers up to this are reserved on disk.
    reserved: u64,
}

/// How many session numbers one write to `mqtt.session` reserves.
pub const BLOCK: u64 = 100;

impl Sessions {
    /// The numbers kept in `dir`.
    pub fn new(dir: &Path) -> Sessions {
        Sessions {
            path: dir.join(SESSION_FILE),
            current: 0,
            reserved: 0,
        }
    }

    /// The next session number, reserved on disk before it is returned when it is past the
    /// block (a failed write is logged; the number still grows within this run).
    pub fn next(&mut self, now_secs: u64) -> u64 {
        if self.current == 0 {
            self.current = match std::fs::read_to_string(&self.path) {
                Ok(t) => t.trim().parse::<u64>().unwrap_or_else(|_| {
                    log::warn!(
                        "{}: not a session number ({:?}); counting on from the clock",
                        self.path.display(),
                        t.chars().take(32).collect::<String>()
                    );
                    now_secs
                }),
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        log::warn!("{}: {e}; counting on from the clock", self.path.display());
                    }
                    now_secs
                }
            };
            self.reserved = self.current;
        }
        self.current += 1;
        if self.current > self.reserved {
            let upto = self.current + BLOCK - 1;
            let tmp = self.path.with_extension("session.tmp");
            let written = std::fs::File::create(&tmp)
                .and_then(|mut f| {
                    writeln!(f, "{upto}")?;
                    f.sync_data()
                })
                .and_then(|()| std::fs::rename(&tmp, &self.path));
            match written {
                Ok(()) => self.reserved = upto,
                // Tried again at the next connect; this run's numbers grow meanwhile.
                Err(e) => log::warn!("{}: {e}", self.path.display()),
            }
        }
        self.current
    }
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
    fn session_numbers_grow_across_restarts_with_one_write_per_block() {
        let dir = std::env::temp_dir().join(format!("tailbeat-birth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(SESSION_FILE);
        // A fresh data_dir counts on from the clock.
        let mut s = Sessions::new(&dir);
        assert_eq!(s.next(1000), 1001);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "1100\n");
        let before = std::fs::metadata(&file).unwrap().modified().unwrap();
        for n in 1002..=1100 {
            assert_eq!(s.next(0), n);
        }
        // No write within the block.
        assert_eq!(
            std::fs::metadata(&file).unwrap().modified().unwrap(),
            before
        );
        assert_eq!(s.next(0), 1101);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "1200\n");
        // A restart goes on past the reserved block.
        assert_eq!(Sessions::new(&dir).next(5), 1201);
        // A damaged file: from the clock.
        std::fs::write(&file, "garbage").unwrap();
        assert_eq!(Sessions::new(&dir).next(7000), 7001);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
