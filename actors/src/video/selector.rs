//! Target-frame selection (CN108831533A [0059]-[0072]), in priority order:
//! 1. a pedal press picks the frame current at the press;
//! 2. freeze detection picks the frozen frame once per freeze;
//! 3. otherwise frames that pass the quality gate are picked automatically,
//!    at most every `auto_interval`.
//!
//! At most one frame is in flight: nothing new is handed out until the
//! previous result has come back or its deadline has passed. Picks that
//! arrive meanwhile wait (a pedal pick replaces an older pedal pick; a freeze
//! pick replaces an older freeze pick); automatic picks are not queued.

use super::frame::FrameRef;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Pedal,
    Freeze,
    Auto,
}

/// A frame handed to the analysis.
#[derive(Debug, Clone)]
pub struct Pick {
    pub frame: FrameRef,
    pub reason: Reason,
    pub deadline: Instant,
}

pub struct Selector {
    timeout: Duration,
    auto_interval: Duration,
    in_flight: Option<(u64, Instant)>,
    pending_pedal: Option<FrameRef>,
    pending_freeze: Option<FrameRef>,
    last_auto: Option<Instant>,
    pub timeouts: u64,
}

impl Selector {
    pub fn new(timeout: Duration, auto_interval: Duration) -> Self {
        Self { timeout, auto_interval, in_flight: None, pending_pedal: None, pending_freeze: None, last_auto: None, timeouts: 0 }
    }

    pub fn pedal(&mut self, current: FrameRef) {
        self.pending_pedal = Some(current);
    }

    pub fn freeze(&mut self, frozen: FrameRef) {
        self.pending_freeze = Some(frozen);
    }

    /// Sequence number of the frame in flight, if any.
    pub fn in_flight(&self) -> Option<u64> {
        self.in_flight.map(|f| f.0)
    }

    /// A result came back; true if it was for the frame in flight.
    pub fn result(&mut self, seq: u64) -> bool {
        if self.in_flight.map(|f| f.0) == Some(seq) {
            self.in_flight = None;
            true
        } else {
            false
        }
    }

    /// Offer the newest frame (with its gate verdict); returns what to send now.
    pub fn offer(&mut self, now: Instant, newest: &FrameRef, passes_gate: bool) -> Option<Pick> {
        if let Some((_, deadline)) = self.in_flight {
            if now < deadline {
                return None;
            }
            self.timeouts += 1;
            self.in_flight = None;
        }
        let (frame, reason) = if let Some(f) = self.pending_pedal.take() {
            (f, Reason::Pedal)
        } else if let Some(f) = self.pending_freeze.take() {
            (f, Reason::Freeze)
        } else if passes_gate && self.last_auto.is_none_or(|t| now.duration_since(t) >= self.auto_interval) {
            self.last_auto = Some(now);
            (newest.clone(), Reason::Auto)
        } else {
            return None;
        };
        let deadline = now + self.timeout;
        self.in_flight = Some((frame.seq, deadline));
        Some(Pick { frame, reason, deadline })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::frame::{Frame, PixelFormat};
    use std::sync::Arc;

    fn f(seq: u64) -> FrameRef {
        Arc::new(Frame::new(seq, Instant::now(), 16, 16, PixelFormat::Rgb8, Arc::new(vec![0; 768])).unwrap())
    }

    #[test]
    fn pedal_takes_priority_over_freeze_and_auto() {
        let mut s = Selector::new(Duration::from_millis(100), Duration::ZERO);
        let t = Instant::now();
        s.freeze(f(1));
        s.pedal(f(2));
        let p = s.offer(t, &f(3), true).unwrap();
        assert_eq!((p.frame.seq, p.reason), (2, Reason::Pedal));
        assert!(s.result(2));
        let p = s.offer(t, &f(4), true).unwrap();
        assert_eq!((p.frame.seq, p.reason), (1, Reason::Freeze));
        s.result(1);
        let p = s.offer(t, &f(5), true).unwrap();
        assert_eq!((p.frame.seq, p.reason), (5, Reason::Auto));
    }

    #[test]
    fn at_most_one_frame_in_flight_until_result_or_deadline() {
        let mut s = Selector::new(Duration::from_millis(100), Duration::ZERO);
        let t = Instant::now();
        assert!(s.offer(t, &f(1), true).is_some());
        assert!(s.offer(t, &f(2), true).is_none());
        s.pedal(f(3));
        assert!(s.offer(t + Duration::from_millis(50), &f(4), true).is_none(), "pedal waits too");
        assert!(!s.result(99), "a stale result does not free the slot");
        let p = s.offer(t + Duration::from_millis(100), &f(5), true).unwrap();
        assert_eq!((p.frame.seq, p.reason), (3, Reason::Pedal), "deadline passed: next pick goes");
        assert_eq!(s.timeouts, 1);
    }

    #[test]
    fn auto_needs_the_gate_and_respects_its_interval() {
        let mut s = Selector::new(Duration::from_millis(100), Duration::from_millis(200));
        let t = Instant::now();
        assert!(s.offer(t, &f(1), false).is_none());
        assert!(s.offer(t, &f(2), true).is_some());
        s.result(2);
        assert!(s.offer(t + Duration::from_millis(100), &f(3), true).is_none());
        assert!(s.offer(t + Duration::from_millis(200), &f(4), true).is_some());
    }
}
