//! Per-site mucosa textures, rendered once at start-up: tileable RGB images
//! (low-frequency colour variation, folds, fine grain, branching vessels and
//! specular glints) that the source pans across to make the camera move.
//!
//! Sizes are given in pixels of a 720-line frame and scaled to the real one,
//! so a site looks the same at every resolution.

use std::f32::consts::TAU;

use super::labels::Site;
use super::noise::PeriodicNoise;
use super::random::VRng;

/// Folds of the mucosa: smooth ridges where a noise crosses its middle,
/// stretched along one axis.
struct Folds {
    cell_x: f32,
    cell_y: f32,
    amp: f32,
    /// Ridge width, in noise units (larger = broader folds).
    width: f32,
}

/// Blood vessels drawn as branching random walks.
struct Vessels {
    trees_per_mpx: f32,
    length: [f32; 2],
    width: [f32; 2],
    branch_p: f32,
    wander: f32,
    /// Preferred direction (radians) the walks are pulled toward.
    bias: Option<f32>,
    strength: f32,
    colour: [f32; 3],
}

/// How one site looks.
pub(crate) struct SiteLook {
    pub(crate) light: [f32; 3],
    pub(crate) dark: [f32; 3],
    folds: Folds,
    grain_cell: f32,
    grain_amp: f32,
    /// Strength of the relief shading.
    relief: f32,
    vessels: Vessels,
    /// Specular glints per megapixel (720-line units).
    glints_per_mpx: f32,
    /// How dark the lumen (the far, unlit part of the tube) gets, 0..1.
    pub(crate) lumen: f32,
}

impl SiteLook {
    pub(crate) fn of(site: Site) -> Self {
        match site {
            Site::Esophagus => Self {
                light: [242.0, 196.0, 186.0],
                dark: [204.0, 138.0, 132.0],
                folds: Folds { cell_x: 70.0, cell_y: 420.0, amp: 0.5, width: 0.16 },
                grain_cell: 6.0,
                grain_amp: 0.03,
                relief: 16.0,
                vessels: Vessels {
                    trees_per_mpx: 260.0,
                    length: [25.0, 70.0],
                    width: [1.0, 1.8],
                    branch_p: 0.01,
                    wander: 0.10,
                    bias: Some(TAU / 4.0),
                    strength: 0.55,
                    colour: [178.0, 84.0, 100.0],
                },
                glints_per_mpx: 90.0,
                lumen: 0.62,
            },
            Site::Stomach => Self {
                light: [222.0, 104.0, 72.0],
                dark: [150.0, 48.0, 36.0],
                folds: Folds { cell_x: 190.0, cell_y: 190.0, amp: 1.0, width: 0.12 },
                grain_cell: 12.0,
                grain_amp: 0.16,
                relief: 18.0,
                vessels: Vessels {
                    trees_per_mpx: 6.0,
                    length: [80.0, 200.0],
                    width: [1.2, 2.0],
                    branch_p: 0.01,
                    wander: 0.15,
                    bias: None,
                    strength: 0.25,
                    colour: [120.0, 30.0, 30.0],
                },
                glints_per_mpx: 60.0,
                lumen: 0.35,
            },
            Site::Colon => Self {
                light: [240.0, 156.0, 118.0],
                dark: [188.0, 94.0, 70.0],
                folds: Folds { cell_x: 420.0, cell_y: 120.0, amp: 0.8, width: 0.1 },
                grain_cell: 4.0,
                grain_amp: 0.02,
                relief: 20.0,
                vessels: Vessels {
                    trees_per_mpx: 45.0,
                    length: [150.0, 420.0],
                    width: [2.0, 3.6],
                    branch_p: 0.03,
                    wander: 0.14,
                    bias: None,
                    strength: 0.75,
                    colour: [150.0, 42.0, 62.0],
                },
                glints_per_mpx: 150.0,
                lumen: 0.7,
            },
        }
    }
}

/// A tileable RGB8 texture.
pub(crate) struct Texture {
    w: usize,
    h: usize,
    rgb: Vec<u8>,
}

impl Texture {
    /// Render the texture of `site`, `w` x `h` pixels, for frames `scale`
    /// times the height of a 720-line frame.
    pub(crate) fn render(site: Site, w: usize, h: usize, scale: f32, rng: &mut VRng) -> Self {
        let look = SiteLook::of(site);
        let n = w * h;
        let s = scale.max(0.05);

        // Albedo (colour mix) and relief (height for shading).
        let mut albedo = vec![0.0f32; n];
        let mut relief = vec![0.0f32; n];
        for (cell, amp) in [(260.0, 0.5), (110.0, 0.3), (45.0, 0.2)] {
            let noise = PeriodicNoise::with_cell(w, h, cell * s, cell * s, rng);
            noise.add_to(&mut albedo, w, h, amp, |v| v);
        }
        let f = &look.folds;
        let folds = PeriodicNoise::with_cell(w, h, f.cell_x * s, f.cell_y * s, rng);
        // Ridges where the noise crosses its middle: meandering fold crests.
        let width = f.width;
        folds.add_to(&mut relief, w, h, f.amp, |v| {
            let q = (v - 0.5) / width;
            (-q * q).exp()
        });
        // Grain: two octaves, so the lattice does not show.
        for (k, amp) in [(1.0, 0.65), (0.5, 0.35)] {
            let cell = look.grain_cell * s * k;
            let grain = PeriodicNoise::with_cell(w, h, cell, cell, rng);
            grain.add_to(&mut relief, w, h, look.grain_amp * amp, |v| v);
        }
        for (a, r) in albedo.iter_mut().zip(&relief) {
            *a = (*a * 0.75 + 0.3 * r).clamp(0.0, 1.0);
        }

        let mut vessel = vec![0.0f32; n];
        draw_vessels(&mut vessel, w, h, &look.vessels, s, rng);
        let mut glint = vec![0.0f32; n];
        draw_glints(&mut glint, &relief, w, h, look.glints_per_mpx, s, rng);

        let mut rgb = vec![0u8; n * 3];
        let k = look.relief * s;
        for y in 0..h {
            let (up, down) = ((y + h - 1) % h, (y + 1) % h);
            for x in 0..w {
                let (left, right) = ((x + w - 1) % w, (x + 1) % w);
                let at = |xx: usize, yy: usize| relief.get(yy * w + xx).copied().unwrap_or(0.0);
                let gx = (at(right, y) - at(left, y)) * 0.5;
                let gy = (at(x, down) - at(x, up)) * 0.5;
                // Light from the upper left of the lens.
                let shade = (1.0 + k * (0.6 * gx + 0.8 * gy)).clamp(0.55, 1.35);
                let i = y * w + x;
                let a = albedo.get(i).copied().unwrap_or(0.0);
                let v = vessel.get(i).copied().unwrap_or(0.0) * look.vessels.strength;
                let g = glint.get(i).copied().unwrap_or(0.0);
                for c in 0..3 {
                    let base = look.dark[c] + (look.light[c] - look.dark[c]) * a;
                    let tissue = base + (look.vessels.colour[c] - base) * v;
                    let lit = tissue * shade;
                    let out = lit + (255.0 - lit) * g;
                    if let Some(p) = rgb.get_mut(i * 3 + c) {
                        *p = out.clamp(0.0, 255.0) as u8;
                    }
                }
            }
        }
        Self { w, h, rgb }
    }

    /// Copy the `ow` x `oh` window whose top-left corner is at texture pixel
    /// (`x`, `y`) (wrapping around) into `out`, packed RGB8.
    pub(crate) fn crop_into(&self, x: i64, y: i64, out: &mut [u8], ow: usize, oh: usize) {
        let (tw, th) = (self.w as i64, self.h as i64);
        let x = x.rem_euclid(tw) as usize;
        for (r, row) in out.chunks_exact_mut(ow * 3).take(oh).enumerate() {
            let ty = (y + r as i64).rem_euclid(th) as usize;
            let src = ty * self.w * 3;
            let mut done = 0;
            let mut tx = x;
            while done < ow {
                let n = (self.w - tx).min(ow - done);
                if let (Some(d), Some(s)) = (row.get_mut(done * 3..(done + n) * 3), self.rgb.get(src + tx * 3..src + (tx + n) * 3)) {
                    d.copy_from_slice(s);
                }
                done += n;
                tx = 0;
            }
        }
    }
}

/// Stamp a soft disc of `radius` pixels at (`x`, `y`) into a wrapping field,
/// keeping the maximum.
fn stamp(field: &mut [f32], w: usize, h: usize, x: f32, y: f32, radius: f32, value: f32) {
    let reach = radius.ceil() as i64 + 1;
    let (cx, cy) = (x.floor() as i64, y.floor() as i64);
    for dy in -reach..=reach {
        let yy = (cy + dy).rem_euclid(h as i64) as usize;
        let fy = (cy + dy) as f32 + 0.5 - y;
        for dx in -reach..=reach {
            let fx = (cx + dx) as f32 + 0.5 - x;
            let cover = (radius + 0.5 - (fx * fx + fy * fy).sqrt()).clamp(0.0, 1.0);
            if cover > 0.0 {
                let xx = (cx + dx).rem_euclid(w as i64) as usize;
                if let Some(p) = field.get_mut(yy * w + xx) {
                    *p = p.max(cover * value);
                }
            }
        }
    }
}

/// One vessel segment still to draw.
struct Segment {
    x: f32,
    y: f32,
    angle: f32,
    width: f32,
    length: f32,
    depth: u32,
    value: f32,
}

fn draw_vessels(field: &mut [f32], w: usize, h: usize, st: &Vessels, s: f32, rng: &mut VRng) {
    let area_mpx = (w * h) as f32 / (s * s) / 1e6;
    let trees = (st.trees_per_mpx * area_mpx).round() as usize;
    for _ in 0..trees {
        let angle = match st.bias {
            Some(b) => b + rng.gaussian(0.25) as f32,
            None => rng.range32(0.0, TAU),
        };
        let mut stack = vec![Segment {
            x: rng.range32(0.0, w as f32),
            y: rng.range32(0.0, h as f32),
            angle,
            width: rng.range32(st.width[0], st.width[1]),
            length: rng.range32(st.length[0], st.length[1]),
            depth: 0,
            value: rng.range32(0.55, 1.0),
        }];
        while let Some(mut seg) = stack.pop() {
            let step = (0.5 * seg.width * s).max(0.7);
            let steps = (seg.length * s / step) as usize;
            for _ in 0..steps {
                seg.angle += rng.gaussian(f64::from(st.wander)) as f32;
                if let Some(b) = st.bias {
                    seg.angle += (b - seg.angle) * 0.05;
                }
                seg.x += seg.angle.cos() * step;
                seg.y += seg.angle.sin() * step;
                stamp(field, w, h, seg.x, seg.y, (seg.width * s * 0.5).max(0.35), seg.value);
                seg.width *= 0.998;
                if seg.depth < 3 && stack.len() < 32 && rng.chance(f64::from(st.branch_p)) {
                    let side = if rng.chance(0.5) { 1.0 } else { -1.0 };
                    stack.push(Segment {
                        x: seg.x,
                        y: seg.y,
                        angle: seg.angle + side * rng.range32(0.4, 1.1),
                        width: seg.width * rng.range32(0.55, 0.8),
                        length: seg.length * rng.range32(0.3, 0.6),
                        depth: seg.depth + 1,
                        value: seg.value * 0.85,
                    });
                }
            }
        }
    }
}

/// Specular glints: small saturated elliptical spots, mostly on fold crests
/// (where `relief` is high); many tiny, a few larger.
fn draw_glints(field: &mut [f32], relief: &[f32], w: usize, h: usize, per_mpx: f32, s: f32, rng: &mut VRng) {
    let area_mpx = (w * h) as f32 / (s * s) / 1e6;
    let count = (per_mpx * area_mpx).round() as usize;
    let mean = relief.iter().sum::<f32>() / relief.len().max(1) as f32;
    for _ in 0..count {
        let (mut x, mut y) = (0.0, 0.0);
        for _ in 0..6 {
            x = rng.range32(0.0, w as f32);
            y = rng.range32(0.0, h as f32);
            let r = relief.get(y as usize * w + x as usize).copied().unwrap_or(0.0);
            if r > mean {
                break;
            }
        }
        let big = rng.chance(0.3);
        let a = if big { rng.range32(3.0, 9.0) } else { rng.range32(1.0, 2.5) } * s.max(0.3);
        let b = a * rng.range32(0.25, 0.7);
        let th = rng.range32(0.0, TAU);
        let (c, sn) = (th.cos(), th.sin());
        let reach = (1.6 * a).ceil() as i64 + 1;
        for dy in -reach..=reach {
            for dx in -reach..=reach {
                let (fx, fy) = (dx as f32, dy as f32);
                let u = (fx * c + fy * sn) / a;
                let v = (-fx * sn + fy * c) / b;
                let d = (u * u + v * v).sqrt();
                // Saturated core, soft glow.
                let val = ((1.0 - d) * 2.0).clamp(0.0, 1.0) * 0.9 + 0.1 * (1.0 - d / 1.6).clamp(0.0, 1.0);
                if val > 0.0 {
                    let xx = (x as i64 + dx).rem_euclid(w as i64) as usize;
                    let yy = (y as i64 + dy).rem_euclid(h as i64) as usize;
                    if let Some(p) = field.get_mut(yy * w + xx) {
                        *p = p.max(val);
                    }
                }
            }
        }
    }
}
