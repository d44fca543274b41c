//! Uniform, range and Bernoulli draws on top of the crate's seeded SplitMix64
//! source, so every random choice of the synthetic video is repeatable.

use crate::rng::Rng;

/// Stream ids: each concern draws from its own stream, so changing one part of
/// the configuration (say, episode rates) does not change the others.
pub(crate) mod stream {
    pub(crate) const TEXTURE: u64 = 0x7E47;
    pub(crate) const SCENE: u64 = 0x5CE7;
    pub(crate) const LESIONS: u64 = 0x1E51;
    pub(crate) const EPISODES: u64 = 0xE915;
    pub(crate) const NOISE: u64 = 0x0153;
}

/// A seeded random source with the draws the video code needs.
#[derive(Clone, Debug)]
pub(crate) struct VRng(Rng);

impl VRng {
    pub(crate) fn new(seed: u64, stream: u64) -> Self {
        Self(Rng::new(seed, stream))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi) (lo when the range is empty).
    pub(crate) fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform in [lo, hi), as f32.
    pub(crate) fn range32(&mut self, lo: f32, hi: f32) -> f32 {
        self.range(f64::from(lo), f64::from(hi)) as f32
    }

    /// Uniform integer in 0..n (0 when n is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.0.next_u64() % n
        }
    }

    /// True with probability p.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Normal with mean 0 and standard deviation sigma.
    pub(crate) fn gaussian(&mut self, sigma: f64) -> f64 {
        self.0.gaussian(sigma)
    }

    /// Exponentially distributed with the given mean (time to the next event
    /// of a Poisson process).
    pub(crate) fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}
