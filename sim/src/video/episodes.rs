//! When disturbances happen: each kind (motion blur, freeze, black, dropout)
//! arrives as its own Poisson process at its configured rate; episodes never
//! overlap: one that falls due during another starts after it, with at least
//! one clear frame in between.

use super::config::EpisodeConfig;
use super::random::VRng;

/// What the current frame should be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Directive {
    Clear,
    /// Blur `px` pixels long along the unit direction (`dx`, `dy`).
    Blur {
        px: f32,
        dx: f32,
        dy: f32,
    },
    Freeze,
    Black,
    Dropout,
}

/// The episode in progress.
#[derive(Clone, Copy, Debug)]
enum Active {
    /// Lasts until a time (seconds).
    Timed { directive: Directive, until: f64 },
    /// Lasts a number of frames.
    Frames { directive: Directive, left: u32 },
}

const KINDS: usize = 4;

/// The episode timeline.
pub(crate) struct Episodes {
    cfg: EpisodeConfig,
    rng: VRng,
    /// Next start of each kind: blur, freeze, black, dropout.
    next: [f64; KINDS],
    active: Option<Active>,
}

fn mean_gap(per_min: f64) -> f64 {
    if per_min > 0.0 {
        60.0 / per_min
    } else {
        f64::INFINITY
    }
}

impl Episodes {
    pub(crate) fn new(cfg: EpisodeConfig, mut rng: VRng) -> Self {
        let mut next = [f64::INFINITY; KINDS];
        for (k, n) in next.iter_mut().enumerate() {
            *n = rng.exponential(mean_gap(Self::rate(&cfg, k)));
        }
        Self { cfg, rng, next, active: None }
    }

    fn rate(cfg: &EpisodeConfig, kind: usize) -> f64 {
        match kind {
            0 => cfg.motion_blur_per_min,
            1 => cfg.freeze_per_min,
            2 => cfg.black_per_min,
            _ => cfg.dropout_per_min,
        }
    }

    /// The directive for the frame at time `t`; call once per frame, in order.
    pub(crate) fn at(&mut self, t: f64) -> Directive {
        match self.active {
            Some(Active::Timed { directive, until }) if t < until => return directive,
            Some(Active::Frames { directive, left }) if left > 0 => {
                self.active = Some(Active::Frames { directive, left: left - 1 });
                return directive;
            }
            // An episode just ended: one clear frame before the next may start.
            Some(_) => {
                self.active = None;
                return Directive::Clear;
            }
            None => {}
        }
        // The kind falling due first, if any is due.
        let due = (0..KINDS).filter(|&k| self.next.get(k).is_some_and(|&n| n <= t)).min_by(|&a, &b| self.next[a].total_cmp(&self.next[b]));
        let Some(kind) = due else { return Directive::Clear };
        let c = &self.cfg;
        let r = &mut self.rng;
        let (active, end) = match kind {
            0 => {
                let a = r.range(0.0, std::f64::consts::PI);
                let directive = Directive::Blur { px: r.range(c.blur_px[0], c.blur_px[1]) as f32, dx: a.cos() as f32, dy: a.sin() as f32 };
                let until = t + r.range(c.motion_blur_s[0], c.motion_blur_s[1]);
                (Active::Timed { directive, until }, until)
            }
            1 => {
                let until = t + r.range(c.freeze_s[0], c.freeze_s[1]);
                (Active::Timed { directive: Directive::Freeze, until }, until)
            }
            2 => {
                let until = t + r.range(c.black_s[0], c.black_s[1]);
                (Active::Timed { directive: Directive::Black, until }, until)
            }
            _ => {
                let [lo, hi] = c.dropout_frames;
                let n = lo + r.below(u64::from(hi - lo) + 1) as u32;
                // This frame is the first of the n.
                (Active::Frames { directive: Directive::Dropout, left: n - 1 }, t)
            }
        };
        let gap = r.exponential(mean_gap(Self::rate(c, kind)));
        if let Some(n) = self.next.get_mut(kind) {
            *n = end + gap;
        }
        self.active = Some(active);
        match active {
            Active::Timed { directive, .. } | Active::Frames { directive, .. } => directive,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn episodes_follow_their_rates_and_lengths() {
        let cfg = EpisodeConfig::default();
        let mut e = Episodes::new(cfg.clone(), VRng::new(9, 1));
        let fps = 60.0;
        let minutes = 60.0;
        let frames = (minutes * 60.0 * fps) as u64;
        let mut counts = [0u32; KINDS];
        let mut prev = Directive::Clear;
        let mut run = 0u32;
        for i in 0..frames {
            let d = e.at(i as f64 / fps);
            if d != prev {
                if prev == Directive::Dropout {
                    assert!((1..=3).contains(&run), "dropout of {run} frames");
                }
                match d {
                    Directive::Blur { px, .. } => {
                        assert!((8.0..=30.0).contains(&px));
                        counts[0] += 1;
                    }
                    Directive::Freeze => counts[1] += 1,
                    Directive::Black => counts[2] += 1,
                    Directive::Dropout => counts[3] += 1,
                    Directive::Clear => {}
                }
                run = 0;
            }
            run += 1;
            prev = d;
        }
        // Per minute: blur 4, freeze 2, black 1, dropout 3 (back-to-back
        // episodes of one kind merge in this count, so allow some slack).
        let per_min = counts.map(|c| f64::from(c) / minutes);
        assert!((3.0..=5.0).contains(&per_min[0]), "{per_min:?}");
        assert!((1.4..=2.6).contains(&per_min[1]), "{per_min:?}");
        assert!((0.6..=1.4).contains(&per_min[2]), "{per_min:?}");
        assert!((2.2..=3.8).contains(&per_min[3]), "{per_min:?}");
    }

    #[test]
    fn zero_rates_mean_always_clear() {
        let mut e = Episodes::new(EpisodeConfig::none(), VRng::new(1, 1));
        assert!((0..10_000).all(|i| e.at(f64::from(i) / 30.0) == Directive::Clear));
    }
}
