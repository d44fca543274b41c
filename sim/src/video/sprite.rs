//! How a lesion looks: rendered once, when it appears, into an RGBA sprite
//! (shaded, blended ellipse with a class-specific outline, surface and
//! colour), then blended into every frame it is in.
//!
//! Class cues, kept deliberately distinct for a small detector:
//! - adenoma: reddish-brown lobulated dome, granular surface, bright specular
//!   crescent on its rim, soft shadow around its base;
//! - hyperplastic: flat, smooth, paler than the surrounding mucosa (of the same
//!   hue), no vessels, faint sheen, soft edge;
//! - ulcer: irregular whitish-yellow fibrin base inside a red halo.
//!
//! Alpha >= 128 marks the lesion itself; lower alpha is shadow or fading halo
//! and is not part of its truth box.

use std::f32::consts::TAU;

use super::labels::LesionClass;
use super::noise::PeriodicNoise;
use super::optics::{Optics, VISIBLE_FOV};
use super::random::VRng;

/// A rendered lesion: `w` x `h` RGBA pixels.
pub(crate) struct Sprite {
    pub(crate) w: usize,
    pub(crate) h: usize,
    px: Vec<[u8; 4]>,
}

/// Pixel box `[x0, x1) x [y0, y1)` in frame coordinates.
pub(crate) type PixelBox = (usize, usize, usize, usize);

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

fn scale(a: [f32; 3], k: f32) -> [f32; 3] {
    [a[0] * k, a[1] * k, a[2] * k]
}

/// Outline wobble: radius factor as a sum of a few angular harmonics.
struct Outline {
    harmonics: Vec<(f32, f32, f32)>,
}

impl Outline {
    fn new(ks: &[u32], amp: [f32; 2], rng: &mut VRng) -> Self {
        let harmonics = ks.iter().map(|&k| (k as f32, rng.range32(amp[0], amp[1]), rng.range32(0.0, TAU))).collect();
        Self { harmonics }
    }

    fn factor(&self, phi: f32) -> f32 {
        1.0 + self.harmonics.iter().map(|(k, a, p)| a * (k * phi + p).cos()).sum::<f32>()
    }
}

impl Sprite {
    /// Render a lesion of `class` about `diameter` pixels across; `mucosa` is
    /// the light colour of the site's mucosa (a hyperplastic polyp takes its hue).
    pub(crate) fn render(class: LesionClass, diameter: f32, mucosa: [f32; 3], rng: &mut VRng) -> Self {
        let r = (diameter / 2.0).max(2.0);
        let aspect = match class {
            LesionClass::Ulcer => rng.range32(0.6, 1.0),
            _ => rng.range32(0.72, 1.0),
        };
        let theta = rng.range32(0.0, TAU);
        let (ct, st) = (theta.cos(), theta.sin());
        let outline = match class {
            LesionClass::Adenoma => Outline::new(&[3, 4, 5, 7], [0.02, 0.06], rng),
            LesionClass::Hyperplastic => Outline::new(&[2, 3], [0.01, 0.04], rng),
            LesionClass::Ulcer => Outline::new(&[2, 3, 4, 5], [0.04, 0.1], rng),
        };
        let half = (1.4 * r).ceil() as usize + 2;
        let side = 2 * half;
        let lobules = PeriodicNoise::with_cell(side, side, (r / 2.5).max(2.0), (r / 2.5).max(2.0), rng);
        let fine = PeriodicNoise::with_cell(side, side, 2.0, 2.0, rng);
        let mut lob = vec![0.0f32; side * side];
        lobules.add_to(&mut lob, side, side, 1.0, |v| v);
        let mut grain = vec![0.0f32; side * side];
        fine.add_to(&mut grain, side, side, 1.0, |v| v);

        let mut px = Vec::with_capacity(side * side);
        for y in 0..side {
            for x in 0..side {
                let (fx, fy) = (x as f32 + 0.5 - half as f32, y as f32 + 0.5 - half as f32);
                // Ellipse coordinates (1 = nominal edge) and polar angle.
                let u = (fx * ct + fy * st) / r;
                let v = (-fx * st + fy * ct) / (r * aspect);
                let re = (u * u + v * v).sqrt() / outline.factor(v.atan2(u));
                let i = y * side + x;
                let l = lob.get(i).copied().unwrap_or(0.5);
                let g = grain.get(i).copied().unwrap_or(0.5);
                // Screen-space direction from the centre, for lighting cues.
                let (nx, ny) = (fx / r, fy / r);
                let (rgb, alpha) = match class {
                    LesionClass::Adenoma => adenoma(re, nx, ny, l, g, r),
                    LesionClass::Hyperplastic => hyperplastic(re, nx, ny, g, mucosa),
                    LesionClass::Ulcer => ulcer(re, l, g),
                };
                let c = |k: usize| rgb[k].clamp(0.0, 255.0) as u8;
                px.push([c(0), c(1), c(2), (alpha.clamp(0.0, 1.0) * 255.0).round() as u8]);
            }
        }
        Self { w: side, h: side, px }
    }

    /// Blend into `rgb` (packed RGB8, `fw` x `fh`) with the sprite's top-left
    /// corner at (`x`, `y`); returns the tight box of lesion pixels (alpha >=
    /// 128) that are inside the frame and the field of view, if any.
    pub(crate) fn blend(&self, rgb: &mut [u8], fw: usize, fh: usize, x: i64, y: i64, optics: &Optics) -> Option<PixelBox> {
        let mut bx: Option<PixelBox> = None;
        for sy in 0..self.h {
            let fy = y + sy as i64;
            if fy < 0 || fy >= fh as i64 {
                continue;
            }
            let fy = fy as usize;
            for sx in 0..self.w {
                let fx = x + sx as i64;
                if fx < 0 || fx >= fw as i64 {
                    continue;
                }
                let fx = fx as usize;
                let Some(&[r, g, b, a]) = self.px.get(sy * self.w + sx) else {
                    continue;
                };
                if a == 0 {
                    continue;
                }
                let p = (fy * fw + fx) * 3;
                if let Some(dst) = rgb.get_mut(p..p + 3) {
                    let (a, na) = (u32::from(a), 255 - u32::from(a));
                    for (d, s) in dst.iter_mut().zip([r, g, b]) {
                        *d = ((u32::from(*d) * na + u32::from(s) * a + 127) / 255) as u8;
                    }
                }
                if a >= 128 && optics.fov_at(fx, fy) >= VISIBLE_FOV {
                    bx = Some(match bx {
                        None => (fx, fy, fx + 1, fy + 1),
                        Some((x0, y0, x1, y1)) => (x0.min(fx), y0.min(fy), x1.max(fx + 1), y1.max(fy + 1)),
                    });
                }
            }
        }
        bx
    }
}

/// Coverage of a shape edge at `re` (1 = edge), antialiased over ~1.5 px.
fn edge(re: f32, r: f32) -> f32 {
    ((1.0 - re) * r / 1.5 + 0.5).clamp(0.0, 1.0)
}

fn adenoma(re: f32, nx: f32, ny: f32, lob: f32, grain: f32, r: f32) -> ([f32; 3], f32) {
    if re >= 1.0 {
        // Soft shadow around the base.
        let a = 0.45 * (1.0 - (re - 1.0) / 0.2).clamp(0.0, 1.0);
        return ([85.0, 32.0, 28.0], a.max(edge(re, r)));
    }
    let z = (1.0 - re * re).max(0.0).sqrt();
    let diffuse = (0.5 + 0.5 * z) * side_light(re, nx, ny, 0.6);
    let texture = 0.78 + 0.3 * lob + 0.14 * (grain - 0.5);
    let base = mix([118.0, 46.0, 36.0], [192.0, 92.0, 64.0], z * 0.8 + 0.2 * lob);
    let mut c = scale(base, diffuse * texture);
    // Specular crescent on the rim facing the light (upper left), plus
    // glints on the granules near the top.
    let toward = (-(0.6 * nx + 0.8 * ny) / (nx * nx + ny * ny).sqrt().max(1e-3)).max(0.0);
    let rim = (1.0 - ((re - 0.8) / 0.09).powi(2)).max(0.0) * toward.powi(2);
    let glint = if grain > 0.78 && lob > 0.55 && z > 0.4 { 0.8 } else { 0.0 };
    let spec = (0.9 * rim).max(glint);
    c = mix(c, [255.0, 250.0, 245.0], spec);
    (c, edge(re, r))
}

/// Lambert factor of a dome side: the slope `dz/dr` at `re`, facing the
/// light (upper left) or away from it, for a dome of peak `height`.
fn side_light(re: f32, nx: f32, ny: f32, height: f32) -> f32 {
    let n = (nx * nx + ny * ny).sqrt().max(1e-3);
    let facing = -(0.6 * nx + 0.8 * ny) / n;
    let slope = (height * re / (1.0 - re * re).max(0.04).sqrt()).min(2.5);
    1.0 + 0.35 * slope * facing
}

fn hyperplastic(re: f32, nx: f32, ny: f32, grain: f32, mucosa: [f32; 3]) -> ([f32; 3], f32) {
    // Soft edge, alpha 0.5 at the nominal edge; slightly translucent.
    let alpha = ((1.1 - re) / 0.2).clamp(0.0, 0.9);
    let z = 0.3 * (1.0 - (re * re).min(1.0)).sqrt();
    let pale = mix(mucosa, [250.0, 228.0, 218.0], 0.42);
    let diffuse = (0.95 + 0.25 * z + 0.03 * (grain - 0.5)) * side_light(re.min(0.98), nx, ny, 0.3);
    let sheen = (z * 2.5 * (-(0.6 * nx + 0.8 * ny)).max(0.0)).min(1.0) * 0.3;
    (mix(scale(pale, diffuse), [255.0, 250.0, 245.0], sheen), alpha)
}

fn ulcer(re: f32, lob: f32, grain: f32) -> ([f32; 3], f32) {
    let alpha = ((1.15 - re) / 0.3).clamp(0.0, 1.0);
    let fibrin = mix([240.0, 230.0, 182.0], [212.0, 190.0, 112.0], 0.6 * lob + 0.2 * grain);
    let halo = mix([212.0, 56.0, 50.0], [178.0, 40.0, 40.0], grain);
    let c = if re < 0.55 {
        fibrin
    } else if re < 0.68 {
        // Sloping wall of the crater: fibrin into a dark red rim.
        let t = (re - 0.55) / 0.13;
        scale(mix(fibrin, halo, t), 1.0 - 0.25 * (1.0 - (2.0 * t - 1.0).abs()))
    } else {
        halo
    };
    (c, alpha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sprites_have_a_body_of_about_the_requested_size() {
        let mut rng = VRng::new(5, 0);
        for class in LesionClass::ALL {
            let s = Sprite::render(class, 60.0, [240.0, 150.0, 120.0], &mut rng);
            let body: Vec<usize> = (0..s.w * s.h).filter(|&i| s.px[i][3] >= 128).collect();
            let xs = body.iter().map(|i| i % s.w);
            let (lo, hi) = (xs.clone().min().unwrap(), xs.max().unwrap());
            let span = hi - lo + 1;
            assert!((35..=75).contains(&span), "{class:?}: {span}");
        }
    }
}
