//! [`SyntheticConfig`]: size, rate, seed and the scene and episode parameters
//! of the synthetic endoscopy source, with a validator naming the bad field.

use serde::{Deserialize, Serialize};

use super::error::VideoError;

/// Everything the synthetic source needs. Defaults: 1280x720 at 60 fps,
/// seed 1, the lesion and episode defaults below.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    /// Frame width in pixels, even, 64..=3840.
    pub width: u32,
    /// Frame height in pixels, even, 64..=2160.
    pub height: u32,
    /// Frames per second of video time, 1..=240.
    pub fps: f64,
    /// Seed of every random choice: the same config gives the same frames.
    pub seed: u64,
    /// Seconds the scope stays at one site, drawn uniformly from `[min, max]`.
    pub site_dwell_s: [f64; 2],
    /// Typical camera drift speed, in frame heights per second.
    pub pan_speed: f64,
    pub lesions: LesionConfig,
    pub episodes: EpisodeConfig,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            fps: 60.0,
            seed: 1,
            site_dwell_s: [20.0, 40.0],
            pan_speed: 0.06,
            lesions: LesionConfig::default(),
            episodes: EpisodeConfig::default(),
        }
    }
}

/// How lesions come and go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LesionConfig {
    /// At most this many lesions on screen at once, 0..=2.
    pub max_visible: u32,
    /// Mean time between lesion arrivals, seconds (while fewer than
    /// `max_visible` are on screen).
    pub mean_gap_s: f64,
    /// Seconds a lesion lingers after sliding in, uniform in `[min, max]`.
    pub dwell_s: [f64; 2],
    /// Lesion diameter as a fraction of the frame height, uniform in `[min, max]`.
    pub size: [f64; 2],
}

impl Default for LesionConfig {
    fn default() -> Self {
        Self { max_visible: 2, mean_gap_s: 3.0, dwell_s: [3.0, 9.0], size: [0.04, 0.15] }
    }
}

/// How often each disturbance happens (events per minute of video, 0 = never)
/// and how long it lasts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EpisodeConfig {
    pub motion_blur_per_min: f64,
    /// Duration of a motion-blur episode, seconds.
    pub motion_blur_s: [f64; 2],
    /// Blur length in pixels along the (random) direction of motion.
    pub blur_px: [f64; 2],
    pub freeze_per_min: f64,
    /// Duration of a freeze (the last frame repeated), seconds.
    pub freeze_s: [f64; 2],
    pub black_per_min: f64,
    /// Duration of a black-out, seconds.
    pub black_s: [f64; 2],
    pub dropout_per_min: f64,
    /// Consecutive frames lost in one dropout.
    pub dropout_frames: [u32; 2],
}

impl Default for EpisodeConfig {
    fn default() -> Self {
        Self {
            motion_blur_per_min: 4.0,
            motion_blur_s: [0.3, 1.0],
            blur_px: [8.0, 30.0],
            freeze_per_min: 2.0,
            freeze_s: [0.5, 2.0],
            black_per_min: 1.0,
            black_s: [0.2, 0.5],
            dropout_per_min: 3.0,
            dropout_frames: [1, 3],
        }
    }
}

impl EpisodeConfig {
    /// No disturbances at all: every frame is `Clear`.
    pub fn none() -> Self {
        Self { motion_blur_per_min: 0.0, freeze_per_min: 0.0, black_per_min: 0.0, dropout_per_min: 0.0, ..Self::default() }
    }
}

fn bad(field: &'static str, reason: String) -> VideoError {
    VideoError::Config { field, reason }
}

fn check(field: &'static str, v: f64, lo: f64, hi: f64) -> Result<(), VideoError> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(bad(field, format!("must be within {lo}..={hi}, got {v}")))
    }
}

fn check_range(field: &'static str, r: [f64; 2], lo: f64, hi: f64) -> Result<(), VideoError> {
    check(field, r[0], lo, hi)?;
    check(field, r[1], lo, hi)?;
    if r[0] > r[1] {
        return Err(bad(field, format!("min {} exceeds max {}", r[0], r[1])));
    }
    Ok(())
}

fn check_dim(field: &'static str, v: u32, lo: u32, hi: u32) -> Result<(), VideoError> {
    if !(lo..=hi).contains(&v) {
        return Err(bad(field, format!("must be within {lo}..={hi}, got {v}")));
    }
    if !v.is_multiple_of(2) {
        return Err(bad(field, format!("must be even, got {v}")));
    }
    Ok(())
}

impl SyntheticConfig {
    /// Check every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), VideoError> {
        check_dim("width", self.width, 64, 3840)?;
        check_dim("height", self.height, 64, 2160)?;
        check("fps", self.fps, 1.0, 240.0)?;
        check_range("site_dwell_s", self.site_dwell_s, 1.0, 3600.0)?;
        check("pan_speed", self.pan_speed, 0.0, 1.0)?;

        let l = &self.lesions;
        if l.max_visible > 2 {
            return Err(bad("lesions.max_visible", format!("must be within 0..=2, got {}", l.max_visible)));
        }
        check("lesions.mean_gap_s", l.mean_gap_s, 0.05, 3600.0)?;
        check_range("lesions.dwell_s", l.dwell_s, 0.1, 600.0)?;
        check_range("lesions.size", l.size, 0.02, 0.5)?;

        let e = &self.episodes;
        check("episodes.motion_blur_per_min", e.motion_blur_per_min, 0.0, 60.0)?;
        check_range("episodes.motion_blur_s", e.motion_blur_s, 0.01, 60.0)?;
        check_range("episodes.blur_px", e.blur_px, 1.0, 200.0)?;
        check("episodes.freeze_per_min", e.freeze_per_min, 0.0, 60.0)?;
        check_range("episodes.freeze_s", e.freeze_s, 0.01, 60.0)?;
        check("episodes.black_per_min", e.black_per_min, 0.0, 60.0)?;
        check_range("episodes.black_s", e.black_s, 0.01, 60.0)?;
        check("episodes.dropout_per_min", e.dropout_per_min, 0.0, 60.0)?;
        let d = e.dropout_frames;
        if !(1..=60).contains(&d[0]) || !(1..=60).contains(&d[1]) || d[0] > d[1] {
            return Err(bad("episodes.dropout_frames", format!("must be 1 <= min <= max <= 60, got [{}, {}]", d[0], d[1])));
        }
        Ok(())
    }
}
