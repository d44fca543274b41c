//! The camera's slow drift across the mucosa and the wandering of the lumen
//! (the dark far end of the tube): smooth closed-form paths (a constant pan
//! plus a few slow sinusoids), so any time can be evaluated exactly.

use std::f64::consts::TAU;

use super::random::VRng;

/// One sinusoid per axis at a shared frequency.
#[derive(Clone, Copy, Debug)]
struct Wave {
    ax: f64,
    ay: f64,
    omega: f64,
    px: f64,
    py: f64,
}

/// A smooth 2-D path: `origin + drift * t + sum of waves`.
#[derive(Clone, Debug)]
pub(crate) struct Path {
    origin: (f64, f64),
    drift: (f64, f64),
    waves: [Wave; 3],
}

impl Path {
    /// A path starting near `origin` whose speed is typically about `speed`
    /// per second, with wobbles of `0.03..0.2` Hz.
    fn new(origin: (f64, f64), speed: f64, rng: &mut VRng) -> Self {
        let d = rng.range(0.0, TAU);
        let drift = (0.35 * speed * d.cos(), 0.35 * speed * d.sin());
        let mut wave = || {
            let omega = TAU * rng.range(0.03, 0.2);
            // Amplitude of the velocity term is speed * k, of the position term / omega.
            let k = rng.range(0.2, 0.5) * speed / omega;
            Wave { ax: k, ay: k * rng.range(0.5, 1.0), omega, px: rng.range(0.0, TAU), py: rng.range(0.0, TAU) }
        };
        let waves = [wave(), wave(), wave()];
        Self { origin, drift, waves }
    }

    /// Position at time `t` (seconds since the path began).
    pub(crate) fn at(&self, t: f64) -> (f64, f64) {
        let mut x = self.origin.0 + self.drift.0 * t;
        let mut y = self.origin.1 + self.drift.1 * t;
        for w in &self.waves {
            x += w.ax * ((w.omega * t + w.px).sin() - w.px.sin());
            y += w.ay * ((w.omega * t + w.py).sin() - w.py.sin());
        }
        (x, y)
    }
}

/// The camera (top-left corner of the frame on the texture, pixels) and the
/// lumen (centre in frame pixels) during one scene.
#[derive(Clone, Debug)]
pub(crate) struct Camera {
    start: f64,
    pan: Path,
    lumen: Path,
    lumen_home: (f64, f64),
    size: (f64, f64),
}

impl Camera {
    /// A new scene starting at time `start` on a `tex_w` x `tex_h` texture,
    /// for `w` x `h` frames, drifting at about `speed` frame heights per second.
    pub(crate) fn new(start: f64, tex: (usize, usize), frame: (usize, usize), speed: f64, rng: &mut VRng) -> Self {
        let (w, h) = (frame.0 as f64, frame.1 as f64);
        let origin = (rng.range(0.0, tex.0 as f64), rng.range(0.0, tex.1 as f64));
        let pan = Path::new(origin, speed * h, rng);
        let lumen_home = (w * rng.range(0.35, 0.65), h * rng.range(0.35, 0.65));
        let lumen = Path::new((0.0, 0.0), 0.5 * speed * h, rng);
        Self { start, pan, lumen, lumen_home, size: (w, h) }
    }

    /// The frame's top-left corner on the (unwrapped) texture, whole pixels.
    pub(crate) fn offset(&self, t: f64) -> (f64, f64) {
        let (x, y) = self.pan.at(t - self.start);
        (x.floor(), y.floor())
    }

    /// The lumen's centre in frame pixels, kept within the frame.
    pub(crate) fn lumen(&self, t: f64) -> (usize, usize) {
        let (dx, dy) = self.lumen.at(t - self.start);
        // Fold the free path back and forth inside the middle of the frame.
        let fold = |home: f64, d: f64, span: f64| {
            let p = (home + d) / span;
            let tri = 1.0 - (p.rem_euclid(2.0) - 1.0).abs();
            (0.2 + 0.6 * tri) * span
        };
        let x = fold(self.lumen_home.0 - 0.2 * self.size.0, dx, self.size.0);
        let y = fold(self.lumen_home.1 - 0.2 * self.size.1, dy, self.size.1);
        (x.max(0.0) as usize, y.max(0.0) as usize)
    }
}
