//! A tiny seeded random source (SplitMix64) for sensor noise, so simulator runs
//! are repeatable without pulling in a random-number crate.

/// Deterministic pseudo-random generator.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for one stream (e.g. one device) of a run seeded with `seed`.
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut rng = Rng(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Normally distributed with mean 0 and standard deviation `sigma`.
    pub fn gaussian(&mut self, sigma: f64) -> f64 {
        if sigma <= 0.0 {
            return 0.0;
        }
        let (u1, u2) = (self.unit(), self.unit());
        sigma * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_noise_and_noise_has_the_requested_spread() {
        let mut a = Rng::new(1, 0);
        let mut b = Rng::new(1, 0);
        let xs: Vec<f64> = (0..10_000).map(|_| a.gaussian(2.0)).collect();
        let ys: Vec<f64> = (0..10_000).map(|_| b.gaussian(2.0)).collect();
        assert_eq!(xs, ys);
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64).sqrt();
        assert!(mean.abs() < 0.1, "mean {mean}");
        assert!((sd - 2.0).abs() < 0.1, "sd {sd}");
        assert_ne!(Rng::new(2, 0).next_u64(), Rng::new(1, 0).next_u64());
    }
}
