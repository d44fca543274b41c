//! The scene gate: where the picture is in the frame, or that there is none.
//!
//! Endoscopes and laparoscopes show a circular image inside a black frame;
//! outside the body, or with the light off, there is no image at all. The
//! gate finds the image circle with the learned edge kernel of
//! torchcontentarea (Budd et al., arXiv:2210.14771; MIT), converted to ONNX
//! (`models/content_area.onnx`, `models/convert_content_area.py`), and the
//! same pipeline: 16 horizontal strips of 7 rows (closer together near the
//! top and bottom), each pixel as normalised R, G, B plus its x and y; the
//! kernel scores every column as an edge of the image; the best column in
//! each half of each strip is a candidate point; a RANSAC circle fit over the
//! points (3 px inlier band, the centre within 0.2 W of the frame's centre,
//! a radius of 0.2 W to 0.8 W) gives the circle and its confidence.
//!
//! - A confident circle: the detector sees only the circle's bounding box.
//! - No confident circle in a lit frame: the image fills the frame.
//! - A dark frame (mean luma under `dark_luma`): no image; the AI draws and
//!   alarms nothing and the screen says so.

use super::frame::{Frame, PixelFormat};
use super::onnx::{Model, OnnxError};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// Strips across the frame, two candidate points each.
pub const STRIPS: usize = 16;
/// Rows per strip: the kernel's receptive field.
const PATCH: usize = 7;
/// The kernel's input normalisation (from its training).
const MEAN: [f32; 3] = [0.3441, 0.2251, 0.2203];
const STD: [f32; 3] = [0.2381, 0.1994, 0.1939];
const RANSAC_ATTEMPTS: u32 = 32;
const RANSAC_ITERATIONS: usize = 3;
const INLIER_PX: f32 = 3.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentAreaConfig {
    /// The converted edge kernel (`models/content_area.onnx`).
    pub model: String,
    /// A candidate point counts when its edge score is above this.
    #[serde(default = "default_edge")]
    pub edge_threshold: f32,
    /// A circle counts when its score (inlier edge scores over all points) is above this.
    #[serde(default = "default_circle")]
    pub circle_threshold: f32,
    /// Mean luma (0..1) under which the frame holds no image.
    #[serde(default = "default_dark")]
    pub dark_luma: f32,
}

fn default_edge() -> f32 {
    0.03
}
fn default_circle() -> f32 {
    0.06
}
fn default_dark() -> f32 {
    0.04
}

impl ContentAreaConfig {
    pub fn validate(&self, path: &str) -> Result<(), crate::config::ConfigError> {
        use crate::config::check_range;
        check_range(&format!("{path}.edge_threshold"), f64::from(self.edge_threshold), 0.0, 1.0, "")?;
        check_range(&format!("{path}.circle_threshold"), f64::from(self.circle_threshold), 0.0, 1.0, "")?;
        check_range(&format!("{path}.dark_luma"), f64::from(self.dark_luma), 0.0, 1.0, "")
    }
}

/// What the frame shows.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "scene", rename_all = "snake_case")]
pub enum Scene {
    /// The image fills the frame (or no gate is configured).
    #[default]
    Full,
    /// A circular image, in frame pixels, with the fit's confidence.
    Circle { x: f32, y: f32, r: f32, score: f32 },
    /// No image: a dark frame (out of the body, light off, no signal).
    NoImage,
}

impl Scene {
    /// The part of a `w` x `h` frame to analyse: `[x0, y0, x1, y1]`.
    pub fn crop(&self, w: u32, h: u32) -> Option<[u32; 4]> {
        match *self {
            Scene::Full => Some([0, 0, w, h]),
            Scene::NoImage => None,
            Scene::Circle { x, y, r, .. } => {
                let c = |v: f32, max: u32| (v.round().max(0.0) as u32).min(max);
                let b = [c(x - r, w), c(y - r, h), c(x + r, w), c(y + r, h)];
                // A sliver is not worth analysing on its own: use the frame.
                Some(if b[2] - b[0] < 16 || b[3] - b[1] < 16 { [0, 0, w, h] } else { b })
            }
        }
    }
}

/// The rows of the strips' centres: a logistic spacing, dense near the top
/// and bottom where the circle's edge is most horizontal.
fn strip_rows(h: usize) -> [usize; STRIPS] {
    let mut rows = [0; STRIPS];
    let n = STRIPS as f32;
    for (i, r) in rows.iter_mut().enumerate() {
        let s = 1.0 / (1.0 + (-(i as f32 - n / 2.0 + 0.5) / (n / 8.0)).exp());
        *r = (1.0 + (h as f32 - 2.0) * s) as usize;
    }
    rows
}

/// The strips as the kernel's input, `[STRIPS, 5, PATCH, w]`.
fn make_strips(f: &Frame, rows: &[usize; STRIPS]) -> Vec<f32> {
    let (w, h) = (f.width as usize, f.height as usize);
    let plane = PATCH * w;
    let mut out = vec![0f32; STRIPS * 5 * plane];
    for (s, &row) in rows.iter().enumerate() {
        let base = s * 5 * plane;
        for py in 0..PATCH {
            let y = (row + py).saturating_sub(PATCH / 2).min(h - 1);
            let yn = y as f32 / h as f32 - 0.5;
            for x in 0..w {
                let p = &f.pixels[(y * w + x) * 3..(y * w + x) * 3 + 3];
                let i = py * w + x;
                for c in 0..3 {
                    out[base + c * plane + i] = (f32::from(p[c]) / 255.0 - MEAN[c]) / STD[c];
                }
                out[base + 3 * plane + i] = x as f32 / w as f32 - 0.5;
                out[base + 4 * plane + i] = yn;
            }
        }
    }
    out
}

/// The best column of each half of each strip: `(x, y, score)`.
fn points(scores: &[f32], w: usize, rows: &[usize; STRIPS]) -> Vec<(f32, f32, f32)> {
    let sw = w - (PATCH - 1);
    let half = PATCH / 2;
    let mut out = Vec::with_capacity(2 * STRIPS);
    for (s, &row) in rows.iter().enumerate() {
        let strip = &scores[s * sw..(s + 1) * sw];
        for range in [0..sw / 2, sw / 2..sw] {
            let (mut best, mut at) = (0f32, 0usize);
            for x in range {
                if strip[x] > best {
                    (best, at) = (strip[x], x + half);
                }
            }
            out.push((at as f32, row as f32, best));
        }
    }
    out
}

/// The circle through three points.
fn circumcircle(a: (f32, f32), b: (f32, f32), c: (f32, f32)) -> Option<(f32, f32, f32)> {
    let d = 2.0 * (a.0 * (b.1 - c.1) + b.0 * (c.1 - a.1) + c.0 * (a.1 - b.1));
    if d.abs() < 1e-6 {
        return None;
    }
    let (a2, b2, c2) = (a.0 * a.0 + a.1 * a.1, b.0 * b.0 + b.1 * b.1, c.0 * c.0 + c.1 * c.1);
    let x = (a2 * (b.1 - c.1) + b2 * (c.1 - a.1) + c2 * (a.1 - b.1)) / d;
    let y = (a2 * (c.0 - b.0) + b2 * (a.0 - c.0) + c2 * (b.0 - a.0)) / d;
    Some((x, y, ((a.0 - x).powi(2) + (a.1 - y).powi(2)).sqrt()))
}

/// The least-squares circle (x^2 + y^2 = A x + B y + C) through `pts`.
fn least_squares(pts: &[(f32, f32)]) -> Option<(f32, f32, f32)> {
    let (mut m, mut v) = ([[0f64; 3]; 3], [0f64; 3]);
    for &(x, y) in pts {
        let (x, y) = (f64::from(x), f64::from(y));
        let row = [x, y, 1.0];
        let rhs = x * x + y * y;
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] += row[i] * row[j];
            }
            v[i] += row[i] * rhs;
        }
    }
    // Cramer's rule on the 3 x 3 normal equations.
    let det = |m: &[[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(&m);
    if d.abs() < 1e-9 {
        return None;
    }
    let solve = |k: usize| {
        let mut mk = m;
        for (i, row) in mk.iter_mut().enumerate() {
            row[k] = v[i];
        }
        det(&mk) / d
    };
    let (a, b, c) = (solve(0), solve(1), solve(2));
    let (x, y) = (a / 2.0, b / 2.0);
    let r2 = c + x * x + y * y;
    (r2 > 0.0).then(|| (x as f32, y as f32, r2.sqrt() as f32))
}

/// RANSAC over the candidate points: the best valid circle and its score
/// (inlier edge scores over all points), if any.
pub fn fit_circle(all: &[(f32, f32, f32)], w: u32, h: u32, edge_threshold: f32) -> Option<(f32, f32, f32, f32)> {
    let pts: Vec<(f32, f32, f32)> = all.iter().copied().filter(|p| p.2 > edge_threshold).collect();
    if pts.len() < 3 {
        return None;
    }
    let (w, h) = (w as f32, h as f32);
    let valid = |x: f32, y: f32, r: f32| ((x - w / 2.0).hypot(y - h / 2.0) < 0.2 * w) && r > 0.2 * w && r < 0.8 * w;
    let mut best: Option<(f32, f32, f32, f32)> = None;
    let mut seed = 0x2545_f491u32;
    let mut next = |n: usize| {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (seed >> 8) as usize % n
    };
    for _ in 0..RANSAC_ATTEMPTS {
        let a = next(pts.len());
        let b = loop {
            let b = next(pts.len());
            if b != a {
                break b;
            }
        };
        let c = loop {
            let c = next(pts.len());
            if c != a && c != b {
                break c;
            }
        };
        let mut inliers = vec![a, b, c];
        let mut fit = None;
        for _ in 0..RANSAC_ITERATIONS {
            let xy: Vec<(f32, f32)> = inliers.iter().map(|&i| (pts[i].0, pts[i].1)).collect();
            let circle = if xy.len() == 3 { circumcircle(xy[0], xy[1], xy[2]) } else { least_squares(&xy) };
            let Some((x, y, r)) = circle else { break };
            inliers = (0..pts.len()).filter(|&i| ((pts[i].0 - x).hypot(pts[i].1 - y) - r).abs() < INLIER_PX).collect();
            let score = inliers.iter().map(|&i| pts[i].2).sum::<f32>() / all.len() as f32;
            fit = Some((x, y, r, score));
            if inliers.len() < 3 {
                break;
            }
        }
        if let Some((x, y, r, score)) = fit {
            if valid(x, y, r) && best.is_none_or(|b| score > b.3) {
                best = Some((x, y, r, score));
            }
        }
    }
    best
}

/// Mean luma (0..1) of a frame, sampled on a grid.
fn mean_luma(f: &Frame) -> f32 {
    let (w, h) = (f.width as usize, f.height as usize);
    let (sx, sy) = ((w / 64).max(1), (h / 64).max(1));
    let (mut sum, mut n) = (0f32, 0u32);
    for y in (0..h).step_by(sy) {
        for x in (0..w).step_by(sx) {
            let p = &f.pixels[(y * w + x) * 3..(y * w + x) * 3 + 3];
            sum += 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]);
            n += 1;
        }
    }
    sum / (255.0 * n.max(1) as f32)
}

/// How often the circle is refitted (a scope is not changed every second;
/// darkness is checked on every frame).
const REFIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The gate: the edge kernel's session and its thresholds.
pub struct ContentArea {
    model: Model,
    cfg: ContentAreaConfig,
}

impl ContentArea {
    /// Open the kernel (the ONNX Runtime library must be loaded).
    pub fn open(cfg: &ContentAreaConfig, threads: usize) -> Result<ContentArea, OnnxError> {
        Ok(ContentArea { model: Model::open(Path::new(&cfg.model), threads)?, cfg: cfg.clone() })
    }

    /// What `f` shows, fitted now.
    pub fn scene(&mut self, f: &Frame) -> Result<Scene, OnnxError> {
        if mean_luma(f) < self.cfg.dark_luma {
            return Ok(Scene::NoImage);
        }
        let (w, h) = (f.width as usize, f.height as usize);
        let rows = strip_rows(h);
        let (_, scores) = self.model.run("strips", [STRIPS as i64, 5, PATCH as i64, w as i64], make_strips(f, &rows), "edge_score")?;
        if scores.len() != STRIPS * (w - (PATCH - 1)) || scores.iter().any(|s| !s.is_finite()) {
            return Ok(Scene::Full);
        }
        Ok(match fit_circle(&points(&scores, w, &rows), f.width, f.height, self.cfg.edge_threshold) {
            Some((x, y, r, score)) if score > self.cfg.circle_threshold => Scene::Circle { x, y, r, score },
            _ => Scene::Full,
        })
    }
}

/// The gate for a live stream, off the AI's deadline: the circle is fitted
/// on a thread of its own (`scene-gate`), at most once a second, from the
/// latest frame offered; [`BackgroundGate::scene`] answers at once with the
/// darkness check and the last fit. The thread ends when this is dropped.
pub struct BackgroundGate {
    dark_luma: f32,
    frames: std::sync::mpsc::SyncSender<super::frame::FrameRef>,
    latest: Arc<std::sync::Mutex<Option<(Scene, (u32, u32))>>>,
    offered: Option<std::time::Instant>,
}

impl BackgroundGate {
    /// Start the fitting thread with `gate`.
    pub fn start(mut gate: ContentArea) -> std::io::Result<BackgroundGate> {
        let (frames, rx) = std::sync::mpsc::sync_channel::<super::frame::FrameRef>(1);
        let latest = Arc::new(std::sync::Mutex::new(None));
        let dark_luma = gate.cfg.dark_luma;
        let out = latest.clone();
        std::thread::Builder::new().name("scene-gate".into()).spawn(move || {
            crate::thread_priority::make_background("scene-gate", crate::thread_priority::INFERENCE_NICE);
            for f in rx {
                // A failed fit leaves the last one (or none: whole frames).
                if let Ok(s) = gate.scene(&f) {
                    *out.lock().unwrap_or_else(|p| p.into_inner()) = Some((s, (f.width, f.height)));
                }
            }
        })?;
        Ok(BackgroundGate { dark_luma, frames, latest, offered: None })
    }

    /// What `f` shows: no image when dark, else the last fit for frames of
    /// its size (the whole frame until there is one). Offers `f` for a refit
    /// when one is due.
    pub fn scene(&mut self, f: &super::frame::FrameRef) -> Scene {
        if mean_luma(f) < self.dark_luma {
            return Scene::NoImage;
        }
        if self.offered.is_none_or(|t| t.elapsed() >= REFIT) && self.frames.try_send(f.clone()).is_ok() {
            self.offered = Some(std::time::Instant::now());
        }
        match *self.latest.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((Scene::Circle { x, y, r, score }, size)) if size == (f.width, f.height) => Scene::Circle { x, y, r, score },
            _ => Scene::Full,
        }
    }
}

/// The `[x0, y0, x1, y1]` part of `f` as a frame of its own.
pub fn crop(f: &Frame, b: [u32; 4]) -> Result<Frame, super::frame::FrameError> {
    let [x0, y0, x1, y1] = b;
    if [x0, y0, x1, y1] == [0, 0, f.width, f.height] {
        return Frame::new(f.seq, f.captured_at, f.width, f.height, PixelFormat::Rgb8, f.pixels.clone());
    }
    let (w, row) = (f.width as usize, (x1 - x0) as usize * 3);
    let mut px = Vec::with_capacity(row * (y1 - y0) as usize);
    for y in y0 as usize..y1 as usize {
        let start = (y * w + x0 as usize) * 3;
        px.extend_from_slice(&f.pixels[start..start + row]);
    }
    Frame::new(f.seq, f.captured_at, x1 - x0, y1 - y0, PixelFormat::Rgb8, Arc::new(px))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ransac_finds_the_circle_through_edge_points_among_outliers() {
        // 24 points on a circle (cx 320, cy 240, r 200), 8 outliers.
        let mut pts: Vec<(f32, f32, f32)> = (0..24)
            .map(|i| {
                let a = i as f32 / 24.0 * std::f32::consts::TAU;
                ((320.0 + 200.0 * a.cos()).round(), (240.0 + 200.0 * a.sin()).round(), 0.9)
            })
            .collect();
        pts.extend((0..8).map(|i| (50.0 + 60.0 * i as f32, 30.0 + 40.0 * i as f32, 0.5)));
        let (x, y, r, score) = fit_circle(&pts, 640, 480, 0.03).unwrap();
        assert!((x - 320.0).abs() < 2.0 && (y - 240.0).abs() < 2.0 && (r - 200.0).abs() < 2.0, "{x} {y} {r}");
        assert!(score > 0.6, "{score}");
        // Too few confident points: none.
        assert_eq!(fit_circle(&pts[..2], 640, 480, 0.03), None);
        // A circle whose centre is far off the frame's centre is not the image.
        let off: Vec<(f32, f32, f32)> = (0..12)
            .map(|i| {
                let a = i as f32 / 12.0 * std::f32::consts::PI;
                (40.0 + 150.0 * a.cos(), 40.0 + 150.0 * a.sin(), 0.9)
            })
            .collect();
        assert_eq!(fit_circle(&off, 640, 480, 0.03), None);
    }

    #[test]
    fn a_circle_crops_to_its_bounding_box_inside_the_frame() {
        let s = Scene::Circle { x: 300.0, y: 240.0, r: 260.0, score: 0.5 };
        assert_eq!(s.crop(640, 480), Some([40, 0, 560, 480]));
        assert_eq!(Scene::NoImage.crop(640, 480), None);
        let f = Frame::new(
            1,
            std::time::Instant::now(),
            32,
            32,
            PixelFormat::Rgb8,
            Arc::new((0..32 * 32 * 3).map(|i| (i % 251) as u8).collect()),
        )
        .unwrap();
        let c = crop(&f, [1, 1, 17, 18]).unwrap();
        assert_eq!((c.width, c.height), (16, 17));
        // Its first pixel is the frame's (1, 1); its second row starts at (1, 2).
        assert_eq!(&c.pixels[..3], &f.pixels[(32 + 1) * 3..(32 + 1) * 3 + 3]);
        assert_eq!(&c.pixels[16 * 3..16 * 3 + 3], &f.pixels[(64 + 1) * 3..(64 + 1) * 3 + 3]);
    }

    #[test]
    fn strip_rows_are_dense_near_the_top_and_bottom() {
        let r = strip_rows(480);
        assert!(r.windows(2).all(|p| p[0] < p[1]), "{r:?}");
        assert!(r[1] - r[0] < r[8] - r[7], "{r:?}");
        assert!(r[0] >= 1 && r[15] <= 478, "{r:?}");
    }
}
