//! What the scope's optics and sensor add to the scene: the circular field of
//! view with its light fall-off, the dark lumen (the unlit far end of the
//! tube) and a little sensor noise. Everything per pixel is precomputed, so
//! applying it is a few multiplies and table look-ups per pixel.

use super::random::VRng;

/// Field-of-view gain at or above which a pixel counts as visible (of 250).
pub(crate) const VISIBLE_FOV: u8 = 64;

/// Sensor noise values are 0..=NOISE_MAX (added to a signal scaled to <= 249).
const NOISE_MAX: u8 = 4;
/// Extra noise samples so each row can start at a different offset.
const NOISE_SPAN: usize = 4096;

/// Precomputed optics for one frame size.
pub(crate) struct Optics {
    w: usize,
    h: usize,
    /// Gain 0..=250 (256 = unity) per pixel: light fall-off times the
    /// circular field-of-view edge.
    fov: Vec<u8>,
    /// Lumen darkness 0..=255 on a (2w) x (2h) grid centred at (w, h); a
    /// frame crops it around the lumen's current position.
    lumen: Vec<u8>,
    noise: Vec<u8>,
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

impl Optics {
    pub(crate) fn new(w: usize, h: usize, rng: &mut VRng) -> Self {
        let half = h as f32 / 2.0;
        let aspect = w as f32 / h as f32;
        // Radius of the round field of view, in half-heights: a circle cut
        // by the top and bottom edges, leaving black corners (and black sides
        // on wide frames).
        let radius = (0.92 * (aspect * aspect + 1.0).sqrt()).min(1.6);
        let mut fov = Vec::with_capacity(w * h);
        for y in 0..h {
            let v = (y as f32 + 0.5 - half) / half;
            for x in 0..w {
                let u = (x as f32 + 0.5 - w as f32 / 2.0) / half;
                let d = (u * u + v * v).sqrt() / radius;
                let falloff = 1.0 - 0.5 * d * d;
                let edge = 1.0 - smoothstep(0.96, 1.0, d);
                fov.push((250.0 * falloff * edge).clamp(0.0, 250.0) as u8);
            }
        }
        let (lw, lh) = (2 * w, 2 * h);
        let sigma = 0.32 * h as f32;
        let mut lumen = Vec::with_capacity(lw * lh);
        for y in 0..lh {
            let dy = y as f32 - h as f32;
            for x in 0..lw {
                let dx = x as f32 - w as f32;
                let q = (dx * dx + dy * dy) / (sigma * sigma);
                lumen.push((255.0 * (-q).exp()) as u8);
            }
        }
        let noise = (0..w * 3 + NOISE_SPAN)
            .map(|_| {
                let r = rng.next_u64();
                ((r & 3) as u8 + ((r >> 8) % 3) as u8).min(NOISE_MAX)
            })
            .collect();
        Self { w, h, fov, lumen, noise }
    }

    /// Field-of-view gain at a pixel (0 outside the frame).
    pub(crate) fn fov_at(&self, x: usize, y: usize) -> u8 {
        if x >= self.w {
            return 0;
        }
        self.fov.get(y * self.w + x).copied().unwrap_or(0)
    }

    fn noise_row(&self, seed: u64, y: usize) -> &[u8] {
        let mut z = seed ^ (y as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let off = (z >> 40) as usize % NOISE_SPAN;
        self.noise.get(off..off + self.w * 3).unwrap_or(&[])
    }

    /// Darken `rgb` (packed RGB8, w x h) by the field of view and by the lumen
    /// centred at pixel (`lx`, `ly`) with `depth` 0..1, then add sensor noise
    /// drawn by `seed`.
    pub(crate) fn apply(&self, rgb: &mut [u8], lx: usize, ly: usize, depth: f32, seed: u64) {
        let (w, h) = (self.w, self.h);
        let (lx, ly) = (lx.min(w - 1), ly.min(h - 1));
        // Lumen gain per darkness level (256 = unity).
        let mut lut = [0u16; 256];
        for (d, g) in lut.iter_mut().enumerate() {
            *g = (256.0 - depth.clamp(0.0, 1.0) * d as f32).round() as u16;
        }
        let mut gain = vec![0u16; w];
        let mut gain3 = vec![0u16; w * 3];
        for (y, row) in rgb.chunks_exact_mut(w * 3).take(h).enumerate() {
            let fov = self.fov.get(y * w..(y + 1) * w).unwrap_or(&[]);
            let start = (y + h - ly) * 2 * w + (w - lx);
            let lum = self.lumen.get(start..start + w).unwrap_or(&[]);
            // Per pixel gain (<= 250), then plain u16 arithmetic on the whole
            // row, which the compiler vectorises.
            for ((g, &f), &l) in gain.iter_mut().zip(fov).zip(lum) {
                *g = ((u32::from(f) * u32::from(lut[usize::from(l)])) >> 8) as u16;
            }
            for (g3, &g) in gain3.chunks_exact_mut(3).zip(&gain) {
                g3.fill(g);
            }
            let noise = self.noise_row(seed, y);
            for ((p, &g), &n) in row.iter_mut().zip(&gain3).zip(noise) {
                // (p * g) >> 8 <= 249, plus noise <= 4: never overflows.
                *p = (((u16::from(*p) * g) >> 8) + u16::from(n)) as u8;
            }
        }
    }

    /// Fill `rgb` with a black frame: sensor noise only (every value <= 4).
    pub(crate) fn black(&self, rgb: &mut [u8], seed: u64) {
        for (y, row) in rgb.chunks_exact_mut(self.w * 3).take(self.h).enumerate() {
            let noise = self.noise_row(seed, y);
            if noise.len() == row.len() {
                row.copy_from_slice(noise);
            } else {
                row.fill(0);
            }
        }
    }
}
