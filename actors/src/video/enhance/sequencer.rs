//! In-order release of the live picture with the enhancement stage in the
//! path. Every raw frame the display takes is queued; the head leaves when
//! its verdict has come, when its deadline (capture + budget) has passed, or
//! at once while the stage is not active. Frames therefore always leave in
//! capture order, none is dropped, and none waits longer than the budget.

use super::channels::Verdict;
use crate::video::frame::FrameRef;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a frame left.
#[derive(Debug, Clone)]
pub enum Release {
    /// The deblurred frame replaces the raw one.
    Enhanced(FrameRef),
    /// Judged sharp: shown unchanged.
    Sharp(FrameRef),
    /// No verdict by its deadline: shown unchanged.
    Late(FrameRef),
    /// The stage is off or down: shown unchanged without waiting.
    Bypassed(FrameRef),
}

impl Release {
    pub fn frame(&self) -> &FrameRef {
        match self {
            Release::Enhanced(f) | Release::Sharp(f) | Release::Late(f) | Release::Bypassed(f) => f,
        }
    }
}

struct Pending {
    frame: FrameRef,
    deadline: Instant,
    verdict: Option<Verdict>,
}

pub struct Sequencer {
    budget: Duration,
    pending: VecDeque<Pending>,
    /// Verdicts for frames not queued yet (the worker took the frame from
    /// the capture channel before the display did).
    early: VecDeque<Verdict>,
    /// Newest frame queued so far.
    newest: u64,
}

/// Beyond this many queued frames the oldest leaves late at once (only a
/// display far behind its source gets here).
const MAX_PENDING: usize = 16;

impl Sequencer {
    pub fn new(budget: Duration) -> Self {
        Self { budget, pending: VecDeque::new(), early: VecDeque::new(), newest: 0 }
    }

    /// Queue a raw frame (frames arrive in capture order).
    pub fn push(&mut self, frame: FrameRef) {
        let deadline = frame.captured_at + self.budget;
        self.newest = self.newest.max(frame.seq);
        // Early verdicts for frames the display never took are dropped here.
        self.early.retain(|v| v.seq >= frame.seq);
        let verdict = self.early.iter().position(|v| v.seq == frame.seq).and_then(|i| self.early.remove(i));
        self.pending.push_back(Pending { frame, deadline, verdict });
    }

    /// Attach a verdict to its frame. One for a frame already gone is
    /// ignored; one for a frame not queued yet is kept until it comes.
    pub fn verdict(&mut self, v: Verdict) {
        if let Some(p) = self.pending.iter_mut().find(|p| p.frame.seq == v.seq) {
            p.verdict = Some(v);
        } else if v.seq > self.newest {
            if self.early.len() >= MAX_PENDING {
                self.early.pop_front();
            }
            self.early.push_back(v);
        }
    }

    /// The frames that may leave now, in order. `active`: the stage is
    /// running, so frames wait (up to their deadline) for its verdict.
    pub fn release(&mut self, now: Instant, active: bool) -> Vec<Release> {
        let mut out = Vec::new();
        while let Some(head) = self.pending.front() {
            let overfull = self.pending.len() > MAX_PENDING;
            let r = match &head.verdict {
                Some(v) => match &v.enhanced {
                    Some(e) => Release::Enhanced(e.clone()),
                    None => Release::Sharp(head.frame.clone()),
                },
                None if !active => Release::Bypassed(head.frame.clone()),
                None if now >= head.deadline || overfull => Release::Late(head.frame.clone()),
                None => break,
            };
            self.pending.pop_front();
            out.push(r);
        }
        out
    }

    /// When the head must leave at the latest.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.front().map(|p| p.deadline)
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::frame::{Frame, PixelFormat};
    use std::sync::Arc;

    fn frame(seq: u64, at: Instant) -> FrameRef {
        Arc::new(Frame::new(seq, at, 16, 16, PixelFormat::Rgb8, Arc::new(vec![seq as u8; 16 * 16 * 3])).unwrap())
    }

    fn seqs(r: &[Release]) -> Vec<u64> {
        r.iter().map(|r| r.frame().seq).collect()
    }

    #[test]
    fn frames_leave_in_capture_order_whatever_order_the_verdicts_come_in() {
        let t0 = Instant::now();
        let mut s = Sequencer::new(Duration::from_millis(30));
        for i in 1..=4 {
            s.push(frame(i, t0));
        }
        s.verdict(Verdict { seq: 3, sharp_prob: 0.9, site: 0, enhanced: None });
        s.verdict(Verdict { seq: 2, sharp_prob: 0.1, site: 0, enhanced: Some(frame(2, t0)) });
        assert!(s.release(t0, true).is_empty(), "frame 1 has no verdict yet and is within its budget");
        s.verdict(Verdict { seq: 1, sharp_prob: 0.9, site: 0, enhanced: None });
        let r = s.release(t0, true);
        assert_eq!(seqs(&r), vec![1, 2, 3]);
        assert!(matches!(r[1], Release::Enhanced(_)));
        assert!(matches!(r[2], Release::Sharp(_)));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn a_frame_without_verdict_leaves_unchanged_at_its_deadline_and_never_later() {
        let t0 = Instant::now();
        let mut s = Sequencer::new(Duration::from_millis(20));
        s.push(frame(1, t0));
        s.push(frame(2, t0 + Duration::from_millis(16)));
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_millis(20)));
        assert!(s.release(t0 + Duration::from_millis(19), true).is_empty());
        let r = s.release(t0 + Duration::from_millis(20), true);
        assert_eq!(seqs(&r), vec![1]);
        assert!(matches!(r[0], Release::Late(_)));
        // A verdict for a frame already shown is ignored.
        s.verdict(Verdict { seq: 1, sharp_prob: 0.1, site: 0, enhanced: Some(frame(1, t0)) });
        assert_eq!(seqs(&s.release(t0 + Duration::from_millis(36), true)), vec![2]);
    }

    #[test]
    fn a_verdict_that_comes_before_its_frame_is_kept_for_it() {
        let t0 = Instant::now();
        let mut s = Sequencer::new(Duration::from_millis(30));
        s.push(frame(1, t0));
        s.verdict(Verdict { seq: 3, sharp_prob: 0.1, site: 0, enhanced: Some(frame(3, t0)) });
        s.verdict(Verdict { seq: 2, sharp_prob: 0.9, site: 0, enhanced: None });
        s.verdict(Verdict { seq: 1, sharp_prob: 0.9, site: 0, enhanced: None });
        // The display never takes frame 2 (latest wins) and goes on with 3.
        s.push(frame(3, t0));
        let r = s.release(t0, true);
        assert_eq!(seqs(&r), vec![1, 3]);
        assert!(matches!(r[1], Release::Enhanced(_)), "frame 3 keeps the verdict that came first");
        assert!(s.early.is_empty(), "the verdict for the skipped frame 2 is dropped");
    }

    #[test]
    fn while_the_stage_is_down_every_frame_passes_at_once_in_order() {
        let t0 = Instant::now();
        let mut s = Sequencer::new(Duration::from_millis(30));
        for i in 1..=3 {
            s.push(frame(i, t0));
        }
        let r = s.release(t0, false);
        assert_eq!(seqs(&r), vec![1, 2, 3]);
        assert!(r.iter().all(|r| matches!(r, Release::Bypassed(_))));
        assert!(s.is_empty());
    }

    #[test]
    fn a_display_far_behind_does_not_queue_without_bound() {
        let t0 = Instant::now();
        let mut s = Sequencer::new(Duration::from_secs(10));
        for i in 1..=MAX_PENDING as u64 + 3 {
            s.push(frame(i, t0));
        }
        let r = s.release(t0, true);
        assert_eq!(seqs(&r), vec![1, 2, 3]);
        assert_eq!(s.len(), MAX_PENDING);
    }
}
