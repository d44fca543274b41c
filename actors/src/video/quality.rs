//! The quality gate of CN108831533A [0080]-[0083]: a frame is worth analysing
//! when its brightness is inside a band and its horizontal and vertical
//! gradients (Sobel, Tenengrad style) are both above a threshold. Directional
//! motion blur flattens the gradient across the motion, so checking the two
//! directions separately catches it.
//!
//! Sobel responses are taken at full resolution but only every `step`-th
//! pixel in each direction, which keeps the cost near a millisecond for 1080p.

use super::frame::Frame;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityConfig {
    /// Sub-sampling step in pixels.
    pub step: u32,
    /// Mean luma band (0..255).
    pub min_brightness: f32,
    pub max_brightness: f32,
    /// Minimum mean |Sobel x| and mean |Sobel y| on the sub-sampled grid.
    pub min_gradient: f32,
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self { step: 4, min_brightness: 40.0, max_brightness: 220.0, min_gradient: 8.0 }
    }
}

impl QualityConfig {
    pub fn validate(&self, path: &str) -> Result<(), crate::config::ConfigError> {
        crate::config::check_int(&format!("{path}.step"), u64::from(self.step), 1, 16, "px")?;
        crate::config::check_range(&format!("{path}.min_brightness"), f64::from(self.min_brightness), 0.0, 255.0, "")?;
        crate::config::check_range(
            &format!("{path}.max_brightness"),
            f64::from(self.max_brightness),
            f64::from(self.min_brightness),
            255.0,
            "(>= min_brightness)",
        )?;
        crate::config::check_range(&format!("{path}.min_gradient"), f64::from(self.min_gradient), 0.0, 1000.0, "")
    }
}

/// Measured quality of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quality {
    pub brightness: f32,
    pub gradient_x: f32,
    pub gradient_y: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    TooDark,
    TooBright,
    Blurred,
}

impl Quality {
    pub fn verdict(&self, cfg: &QualityConfig) -> Verdict {
        if self.brightness < cfg.min_brightness {
            Verdict::TooDark
        } else if self.brightness > cfg.max_brightness {
            Verdict::TooBright
        } else if self.gradient_x < cfg.min_gradient || self.gradient_y < cfg.min_gradient {
            Verdict::Blurred
        } else {
            Verdict::Pass
        }
    }
}

/// Measure brightness and directional gradients: full-resolution 3x3 Sobel
/// responses sampled every `step` pixels in x and y. Sampling the positions
/// (not down-scaling the image) keeps the gradients at pixel scale, where
/// motion blur removes them, at 1/step^2 of the cost.
pub fn measure(frame: &Frame, step: u32) -> Quality {
    measure_in(frame, step, None)
}

/// [`measure`] inside the circle `(cx, cy, r)` only when one is given (the
/// image circle from the scene gate, so the black border around the image
/// does not count as dark or flat).
pub fn measure_in(frame: &Frame, step: u32, circle: Option<(f32, f32, f32)>) -> Quality {
    let step = step.max(1) as usize;
    let (w, h) = (frame.width as usize, frame.height as usize);
    let (x0, y0, x1, y1) = match circle {
        Some((cx, cy, r)) => {
            let c = |v: f32, max: usize| (v.max(0.0) as usize).min(max);
            (c(cx - r, w), c(cy - r, h), c(cx + r + 1.0, w), c(cy + r + 1.0, h))
        }
        None => (0, 0, w, h),
    };
    let inside = |x: usize, y: usize| circle.is_none_or(|(cx, cy, r)| (x as f32 - cx).hypot(y as f32 - cy) <= r);
    if x1 < x0 + 3 || y1 < y0 + 3 {
        return Quality { brightness: 0.0, gradient_x: 0.0, gradient_y: 0.0 };
    }
    let px = &frame.pixels;
    let l = |x: usize, y: usize| -> i32 {
        let i = (y * w + x) * 3;
        (77 * i32::from(px[i]) + 150 * i32::from(px[i + 1]) + 29 * i32::from(px[i + 2])) >> 8
    };
    let (mut sum, mut sx, mut sy, mut n) = (0u64, 0u64, 0u64, 0u64);
    for y in (y0 + 1..y1 - 1).step_by(step) {
        for x in (x0 + 1..x1 - 1).step_by(step) {
            if !inside(x, y) {
                continue;
            }
            let gx = (l(x + 1, y - 1) + 2 * l(x + 1, y) + l(x + 1, y + 1)) - (l(x - 1, y - 1) + 2 * l(x - 1, y) + l(x - 1, y + 1));
            let gy = (l(x - 1, y + 1) + 2 * l(x, y + 1) + l(x + 1, y + 1)) - (l(x - 1, y - 1) + 2 * l(x, y - 1) + l(x + 1, y - 1));
            sum += l(x, y) as u64;
            sx += u64::from(gx.unsigned_abs());
            sy += u64::from(gy.unsigned_abs());
            n += 1;
        }
    }
    let n = n.max(1) as f32;
    Quality { brightness: sum as f32 / n, gradient_x: sx as f32 / n, gradient_y: sy as f32 / n }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::frame::PixelFormat;
    use std::sync::Arc;
    use std::time::Instant;

    fn frame(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Frame {
        let mut v = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                v.extend_from_slice(&f(x, y));
            }
        }
        Frame::new(0, Instant::now(), w, h, PixelFormat::Rgb8, Arc::new(v)).unwrap()
    }

    fn checker(x: u32, y: u32) -> [u8; 3] {
        if ((x / 8) + (y / 8)).is_multiple_of(2) {
            [200, 120, 110]
        } else {
            [90, 40, 40]
        }
    }

    #[test]
    fn a_textured_bright_frame_passes() {
        let q = measure(&frame(256, 256, checker), 2);
        assert_eq!(q.verdict(&QualityConfig::default()), Verdict::Pass, "{q:?}");
    }

    #[test]
    fn a_dark_frame_is_rejected_as_too_dark() {
        let q = measure(&frame(256, 256, |x, y| checker(x, y).map(|c| c / 10)), 2);
        assert_eq!(q.verdict(&QualityConfig::default()), Verdict::TooDark, "{q:?}");
    }

    #[test]
    fn inside_the_image_circle_the_black_border_does_not_count() {
        // A good picture in a circle of radius 80 inside a black 256 x 256 frame.
        let (cx, cy, r) = (128.0f32, 128.0f32, 80.0f32);
        let f = frame(256, 256, |x, y| if (x as f32 - cx).hypot(y as f32 - cy) <= r { checker(x, y) } else { [0, 0, 0] });
        let cfg = QualityConfig::default();
        assert_eq!(measure(&f, 2).verdict(&cfg), Verdict::TooDark, "the whole frame, border included");
        let q = measure_in(&f, 2, Some((cx, cy, r)));
        assert_eq!(q.verdict(&cfg), Verdict::Pass, "{q:?}");
    }

    #[test]
    fn horizontal_stripes_have_no_horizontal_gradient_and_are_rejected() {
        // Like a strong horizontal motion blur: detail only across one axis.
        let q = measure(&frame(256, 256, |_, y| if (y / 8) % 2 == 0 { [200, 120, 110] } else { [90, 40, 40] }), 2);
        assert!(q.gradient_x < 1.0 && q.gradient_y > 10.0, "{q:?}");
        assert_eq!(q.verdict(&QualityConfig::default()), Verdict::Blurred);
    }
}
