//! The lesions on screen: when they arrive, how they slide in from an edge,
//! linger (moving with the mucosa plus a slow drift of their own) and slide
//! out again.
//!
//! Positions are kept in texture ("world") pixels, so a lesion moves exactly
//! with the panned texture; its own velocity is added on top.

use std::f64::consts::TAU;

use super::config::LesionConfig;
use super::frame::TruthBox;
use super::labels::LesionClass;
use super::optics::Optics;
use super::random::VRng;
use super::sprite::Sprite;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Entering,
    Dwelling,
    Leaving,
}

struct Lesion {
    class: LesionClass,
    sprite: Sprite,
    /// Centre in world pixels.
    x: f64,
    y: f64,
    /// Own velocity, pixels per second.
    vx: f64,
    vy: f64,
    phase: Phase,
    /// When the current phase ends (Entering, Dwelling).
    until: f64,
}

/// Every lesion of the current scene.
pub(crate) struct Lesions {
    cfg: LesionConfig,
    rng: VRng,
    w: f64,
    h: f64,
    list: Vec<Lesion>,
    next_arrival: f64,
}

impl Lesions {
    pub(crate) fn new(cfg: LesionConfig, w: usize, h: usize, rng: VRng) -> Self {
        let mut me = Self { cfg, rng, w: w as f64, h: h as f64, list: Vec::new(), next_arrival: 0.0 };
        me.clear(0.0);
        me
    }

    /// Remove every lesion (a new scene) and wait for the next arrival.
    pub(crate) fn clear(&mut self, t: f64) {
        self.list.clear();
        self.next_arrival = t + self.rng.exponential(self.cfg.mean_gap_s);
    }

    /// Whether the sprite of `l` lies wholly outside the frame at camera `cam`.
    fn off_screen(&self, l: &Lesion, cam: (f64, f64)) -> bool {
        let (sx, sy) = (l.x - cam.0, l.y - cam.1);
        let (hw, hh) = (l.sprite.w as f64 / 2.0, l.sprite.h as f64 / 2.0);
        sx + hw < 0.0 || sy + hh < 0.0 || sx - hw > self.w || sy - hh > self.h
    }

    /// Advance to time `t` (seconds), `dt` after the previous step, with the
    /// frame's top-left corner at world pixel `cam`; `mucosa` is the current
    /// site's mucosa colour, for lesions arriving now.
    pub(crate) fn step(&mut self, t: f64, dt: f64, cam: (f64, f64), mucosa: [f32; 3]) {
        for i in 0..self.list.len() {
            let Some(l) = self.list.get_mut(i) else { continue };
            l.x += l.vx * dt;
            l.y += l.vy * dt;
            if t < l.until {
                continue;
            }
            match l.phase {
                Phase::Entering => {
                    l.phase = Phase::Dwelling;
                    let speed = self.rng.range(0.0, 0.03) * self.h;
                    let dir = self.rng.range(0.0, TAU);
                    (l.vx, l.vy) = (speed * dir.cos(), speed * dir.sin());
                    l.until = t + self.rng.range(self.cfg.dwell_s[0], self.cfg.dwell_s[1]);
                }
                Phase::Dwelling => {
                    l.phase = Phase::Leaving;
                    let (sx, sy) = (l.x - cam.0 - self.w / 2.0, l.y - cam.1 - self.h / 2.0);
                    let n = (sx * sx + sy * sy).sqrt();
                    let (ux, uy) = if n > 1.0 {
                        (sx / n, sy / n)
                    } else {
                        let a = self.rng.range(0.0, TAU);
                        (a.cos(), a.sin())
                    };
                    let speed = self.rng.range(0.25, 0.5) * self.h;
                    (l.vx, l.vy) = (ux * speed, uy * speed);
                    l.until = f64::INFINITY;
                }
                Phase::Leaving => {}
            }
        }
        // Gone once wholly off screen (after sliding in).
        let keep: Vec<bool> = self.list.iter().map(|l| l.phase == Phase::Entering || !self.off_screen(l, cam)).collect();
        let mut k = keep.iter();
        self.list.retain(|_| k.next().copied().unwrap_or(false));

        if t >= self.next_arrival {
            if self.list.len() < self.cfg.max_visible as usize {
                self.arrive(t, cam, mucosa);
            }
            self.next_arrival = t + self.rng.exponential(self.cfg.mean_gap_s);
        }
    }

    /// A new lesion slides in from outside the frame toward a point in the
    /// field of view that keeps clear of the lesions already there.
    fn arrive(&mut self, t: f64, cam: (f64, f64), mucosa: [f32; 3]) {
        let (w, h) = (self.w, self.h);
        let class = LesionClass::ALL.get(self.rng.below(3) as usize).copied().unwrap_or(LesionClass::Adenoma);
        let diameter = self.rng.range(self.cfg.size[0], self.cfg.size[1]) * h;
        let mut target = None;
        for _ in 0..8 {
            let a = self.rng.range(0.0, TAU);
            let rho = self.rng.range(0.0, 0.8);
            let tx = w / 2.0 + rho * a.cos() * h * 0.62;
            let ty = h / 2.0 + rho * a.sin() * h * 0.4;
            let clear = self.list.iter().all(|l| {
                let (lx, ly) = (l.x - cam.0, l.y - cam.1);
                let min = (diameter + l.sprite.w as f64 / 1.4) * 0.65;
                (lx - tx).hypot(ly - ty) > min
            });
            if clear {
                target = Some((tx, ty));
                break;
            }
        }
        let Some((tx, ty)) = target else { return };
        let sprite = Sprite::render(class, diameter as f32, mucosa, &mut self.rng);
        // Start outside the frame, straight out from the centre through the target.
        let (dx, dy) = (tx - w / 2.0, ty - h / 2.0);
        let n = dx.hypot(dy);
        let (ux, uy) = if n > 1.0 {
            (dx / n, dy / n)
        } else {
            let a = self.rng.range(0.0, TAU);
            (a.cos(), a.sin())
        };
        let reach = sprite.w as f64 / 2.0 + 2.0;
        let to_edge_x = if ux.abs() > 1e-6 { (w / 2.0 + reach) / ux.abs() } else { f64::INFINITY };
        let to_edge_y = if uy.abs() > 1e-6 { (h / 2.0 + reach) / uy.abs() } else { f64::INFINITY };
        let dist = to_edge_x.min(to_edge_y);
        let (sx, sy) = (w / 2.0 + ux * dist, h / 2.0 + uy * dist);
        let duration = self.rng.range(0.6, 1.4);
        self.list.push(Lesion {
            class,
            sprite,
            x: sx + cam.0,
            y: sy + cam.1,
            vx: (tx - sx) / duration,
            vy: (ty - sy) / duration,
            phase: Phase::Entering,
            until: t + duration,
        });
    }

    /// Blend every lesion into the frame (camera at `cam`) and return the
    /// truth boxes of those visible.
    pub(crate) fn draw(&self, rgb: &mut [u8], w: usize, h: usize, cam: (f64, f64), optics: &Optics) -> Vec<TruthBox> {
        let mut truth = Vec::new();
        for l in &self.list {
            let x = (l.x - cam.0 - l.sprite.w as f64 / 2.0).round() as i64;
            let y = (l.y - cam.1 - l.sprite.h as f64 / 2.0).round() as i64;
            if let Some((x0, y0, x1, y1)) = l.sprite.blend(rgb, w, h, x, y, optics) {
                truth.push(TruthBox { class: l.class, x0: x0 as f32, y0: y0 as f32, x1: x1 as f32, y1: y1 as f32 });
            }
        }
        truth
    }
}
