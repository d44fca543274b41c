//! Tileable value noise: a random lattice that wraps around, interpolated
//! smoothly, so textures built from it can be panned across forever.

use super::random::VRng;

/// A periodic lattice of random values in [0, 1], `nx` by `ny` cells.
pub(crate) struct PeriodicNoise {
    nx: usize,
    ny: usize,
    vals: Vec<f32>,
}

/// Per-coordinate interpolation setup: the two lattice indices and the weight.
#[derive(Clone, Copy)]
struct Tap {
    i0: usize,
    i1: usize,
    t: f32,
}

fn taps(len: usize, cells: usize) -> Vec<Tap> {
    let cells = cells.max(1);
    (0..len)
        .map(|p| {
            let f = p as f64 * cells as f64 / len.max(1) as f64;
            let i = f.floor();
            let t = (f - i) as f32;
            let i0 = (i as usize) % cells;
            Tap { i0, i1: (i0 + 1) % cells, t: t * t * (3.0 - 2.0 * t) }
        })
        .collect()
}

impl PeriodicNoise {
    pub(crate) fn new(nx: usize, ny: usize, rng: &mut VRng) -> Self {
        let (nx, ny) = (nx.max(1), ny.max(1));
        let vals = (0..nx * ny).map(|_| rng.unit() as f32).collect();
        Self { nx, ny, vals }
    }

    /// A noise whose cells are about `cell_w` x `cell_h` pixels on a
    /// `w` x `h` field (rounded so it still tiles).
    pub(crate) fn with_cell(w: usize, h: usize, cell_w: f32, cell_h: f32, rng: &mut VRng) -> Self {
        let n = |len: usize, cell: f32| ((len as f32 / cell.max(1.0)).round() as usize).max(1);
        Self::new(n(w, cell_w), n(h, cell_h), rng)
    }

    fn at(&self, ix: usize, iy: usize) -> f32 {
        self.vals.get(iy * self.nx + ix).copied().unwrap_or(0.0)
    }

    /// Add `amp * f(noise)` to every pixel of a `w` x `h` field, with the
    /// lattice stretched over the whole field (so the result tiles).
    pub(crate) fn add_to(&self, field: &mut [f32], w: usize, h: usize, amp: f32, f: impl Fn(f32) -> f32) {
        let xs = taps(w, self.nx);
        let ys = taps(h, self.ny);
        for (row, ty) in field.chunks_exact_mut(w.max(1)).zip(&ys) {
            for (v, tx) in row.iter_mut().zip(&xs) {
                let a = self.at(tx.i0, ty.i0);
                let b = self.at(tx.i1, ty.i0);
                let c = self.at(tx.i0, ty.i1);
                let d = self.at(tx.i1, ty.i1);
                let top = a + (b - a) * tx.t;
                let bot = c + (d - c) * tx.t;
                *v += amp * f(top + (bot - top) * ty.t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_tiles_and_stays_in_range() {
        let mut rng = VRng::new(3, 0);
        let n = PeriodicNoise::with_cell(64, 48, 10.0, 10.0, &mut rng);
        let mut f = vec![0.0f32; 64 * 48];
        n.add_to(&mut f, 64, 48, 1.0, |x| x);
        assert!(f.iter().all(|v| (0.0..=1.0).contains(v)));
        // The wrap-around step is as smooth as an inner step.
        let max_inner = (0..48).map(|y| (f[y * 64 + 31] - f[y * 64 + 32]).abs()).fold(0.0f32, f32::max);
        let max_wrap = (0..48).map(|y| (f[y * 64 + 63] - f[y * 64]).abs()).fold(0.0f32, f32::max);
        assert!(max_wrap < 0.25 && max_inner < 0.25, "{max_wrap} {max_inner}");
    }
}
