//! The MQTT session as plain state: packet ids, frames in flight, keep-alive.
//!
//! Design: methods change state and never touch the network; time is passed in. The caller
//! (`super::MqttSink`) writes the packets and reads the acknowledgements. This keeps the
//! protocol rules testable in microseconds, with no broker.
//!
//! Its limit is `window` (from `sink.window`): at most that many frames in flight.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What went wrong in the protocol (not the transport).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// A PUBACK for a packet id that is not in flight.
    Unsolicited(u16),
    /// More frames than the window allows.
    WindowFull,
}

#[derive(Debug, Clone, Copy)]
struct Flight {
    pkid: u16,
    seq: u64,
    acked: bool,
}

/// Frames published at QoS 1 and not yet settled, in publish order.
#[derive(Debug)]
pub struct Session {
    window: usize,
    next_pkid: u16,
    flights: VecDeque<Flight>,
    keep_alive: Duration,
    last_write: Instant,
}

impl Session {
    /// A session allowing `window` frames in flight, pinging after `keep_alive` of silence.
    pub fn new(window: usize, keep_alive: Duration, now: Instant) -> Session {
        Session {
            window: window.max(1),
            next_pkid: 1,
            flights: VecDeque::new(),
            keep_alive,
            last_write: now,
        }
    }

    /// Whether another frame may be published.
    pub fn has_room(&self) -> bool {
        self.flights.len() < self.window
    }

    /// Frames in flight.
    pub fn in_flight(&self) -> usize {
        self.flights.len()
    }

    /// Registers the publication of frame `seq`; returns the packet id to send it with.
    pub fn publish(&mut self, seq: u64, now: Instant) -> Result<u16, SessionError> {
        if !self.has_room() {
            return Err(SessionError::WindowFull);
        }
        let pkid = self.next_pkid;
        // Packet id 0 is not allowed; ids in flight are never reused (window < 65535).
        self.next_pkid = if pkid == u16::MAX { 1 } else { pkid + 1 };
        self.flights.push_back(Flight {
            pkid,
            seq,
            acked: false,
        });
        self.last_write = now;
        Ok(pkid)
    }

    /// Records a PUBACK. Brokers may acknowledge out of order; only a contiguous prefix of
    /// acknowledged frames is released (see [`take_acked`](Self::take_acked)).
    pub fn puback(&mut self, pkid: u16) -> Result<(), SessionError> {
        match self.flights.iter_mut().find(|f| f.pkid == pkid && !f.acked) {
            Some(f) => {
                f.acked = true;
                Ok(())
            }
            None => Err(SessionError::Unsolicited(pkid)),
        }
    }

    /// Removes the acknowledged frames at the front; returns the highest seq among them.
    pub fn take_acked(&mut self) -> Option<u64> {
        let mut last = None;
        while self.flights.front().is_some_and(|f| f.acked) {
            last = self.flights.pop_front().map(|f| f.seq);
        }
        last
    }

    /// The connection is gone: nothing in flight is safe any more.
    pub fn reset(&mut self, now: Instant) {
        self.flights.clear();
        self.last_write = now;
    }

    /// Records that some other packet (a PINGREQ) was written.
    pub fn wrote(&mut self, now: Instant) {
        self.last_write = now;
    }

    /// When a PINGREQ is due if nothing else is written before.
    pub fn ping_at(&self) -> Instant {
        self.last_write + self.keep_alive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(window: usize) -> (Session, Instant) {
        let now = Instant::now();
        (Session::new(window, Duration::from_secs(30), now), now)
    }

    #[test]
    fn acks_release_a_contiguous_prefix_only() {
        let (mut s, now) = s(8);
        let ids: Vec<u16> = (10..14).map(|seq| s.publish(seq, now).unwrap()).collect();
        assert_eq!(ids, vec![1, 2, 3, 4]);
        s.puback(2).unwrap();
        assert_eq!(s.take_acked(), None, "frame 10 is not acknowledged yet");
        s.puback(1).unwrap();
        assert_eq!(s.take_acked(), Some(11));
        s.puback(4).unwrap();
        assert_eq!(s.take_acked(), None);
        s.puback(3).unwrap();
        assert_eq!(s.take_acked(), Some(13));
        assert_eq!(s.in_flight(), 0);
    }

    #[test]
    fn the_window_is_enforced() {
        let (mut s, now) = s(2);
        s.publish(1, now).unwrap();
        s.publish(2, now).unwrap();
        assert!(!s.has_room());
        assert_eq!(s.publish(3, now), Err(SessionError::WindowFull));
    }

    #[test]
    fn unsolicited_and_repeated_acks_are_errors_that_name_the_id() {
        let (mut s, now) = s(4);
        let id = s.publish(1, now).unwrap();
        assert_eq!(s.puback(id + 7), Err(SessionError::Unsolicited(id + 7)));
        s.puback(id).unwrap();
        assert_eq!(s.puback(id), Err(SessionError::Unsolicited(id)));
    }

    #[test]
    fn packet_ids_wrap_past_65535_and_skip_zero() {
        let (mut s, now) = s(4);
        s.next_pkid = u16::MAX;
        assert_eq!(s.publish(1, now).unwrap(), u16::MAX);
        assert_eq!(s.publish(2, now).unwrap(), 1);
    }

    #[test]
    fn a_ping_is_due_a_keep_alive_after_the_last_write() {
        let (mut s, now) = s(4);
        assert_eq!(s.ping_at(), now + Duration::from_secs(30));
        let later = now + Duration::from_secs(20);
        s.publish(1, later).unwrap();
        assert_eq!(s.ping_at(), later + Duration::from_secs(30));
        s.reset(later);
        assert_eq!(s.in_flight(), 0);
    }
}
