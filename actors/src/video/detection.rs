//! The lesion detector's contract and its pre- and post-processing, free of
//! ONNX Runtime so it can be tested on its own.
//!
//! Contract (see `models/README.md`, the model card):
//! - input `image`: f32 `[1, 3, S, S]`, RGB, `(pixel / 255 - mean[c]) / std[c]`,
//!   the frame resized (area average) to S x S without keeping the aspect;
//! - output `prob_map`: f32 `[1, C, S/R, S/R]`, per-class lesion probability
//!   of each cell (R = the map's stride), already through a sigmoid.
//!
//! Post-processing: cells whose best class probability is over the score
//! threshold are grouped into 8-connected components; each component gives a
//! box (its extent, scaled back to the frame), a score (its peak) and the
//! per-class probabilities (each class's peak inside the component). Boxes
//! then go through class-agnostic non-maximum suppression.

use super::frame::Frame;
use serde::{Deserialize, Serialize};

/// One detection, in frame pixels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// Index into the model's class list.
    pub class: usize,
    pub class_name: String,
    pub score: f32,
    /// Probability of every class at this lesion, in class-list order.
    pub probabilities: Vec<f32>,
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl Detection {
    pub fn iou(&self, o: &Detection) -> f32 {
        iou([self.x0, self.y0, self.x1, self.y1], [o.x0, o.y0, o.x1, o.y1])
    }
}

/// Intersection over union of two `[x0, y0, x1, y1]` boxes.
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// The detector contract, from config (so any model with the same contract
/// can be used).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorContract {
    pub input_name: String,
    pub output_name: String,
    /// S: square input size.
    pub input_size: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub classes: Vec<String>,
    pub score_threshold: f32,
    pub nms_iou: f32,
    /// What the output holds.
    #[serde(default)]
    pub format: OutputFormat,
    /// How the frame is fitted into the S x S input.
    #[serde(default)]
    pub resize: Resize,
}

/// The detector's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// A per-class probability map `[1, C, h, w]` (the shipped demo models).
    #[default]
    ProbMap,
    /// YOLO-style candidates before NMS: `[1, 4 + C, N]` or `[1, N, 4 + C]`,
    /// each `cx, cy, w, h` in input pixels then one score per class.
    Yolo,
    /// YOLO-style with NMS in the graph: `[1, N, 6]`, each
    /// `x0, y0, x1, y1` in input pixels, score, class index.
    YoloNms,
}

/// How a frame is fitted into the square input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// The whole frame stretched to S x S (aspect not kept).
    #[default]
    Squash,
    /// Aspect kept, centred, padded with grey 114 (YOLO's convention).
    Letterbox,
}

/// Where the frame lands in the S x S input: `input = frame * scale + pad`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    pub width: usize,
    pub height: usize,
    pub pad_x: usize,
    pub pad_y: usize,
    pub scale_x: f32,
    pub scale_y: f32,
}

impl Fit {
    pub fn new(resize: Resize, s: usize, frame_w: u32, frame_h: u32) -> Fit {
        let (w, h) = (frame_w as f32, frame_h as f32);
        let (nw, nh) = match resize {
            Resize::Squash => (s, s),
            Resize::Letterbox => {
                let r = (s as f32 / w).min(s as f32 / h);
                (((w * r).round() as usize).clamp(1, s), ((h * r).round() as usize).clamp(1, s))
            }
        };
        Fit { width: nw, height: nh, pad_x: (s - nw) / 2, pad_y: (s - nh) / 2, scale_x: nw as f32 / w, scale_y: nh as f32 / h }
    }

    /// An input-space box in frame pixels, clamped to the frame.
    pub fn to_frame(&self, b: [f32; 4], frame_w: u32, frame_h: u32) -> [f32; 4] {
        let x = |v: f32| ((v - self.pad_x as f32) / self.scale_x).clamp(0.0, frame_w as f32);
        let y = |v: f32| ((v - self.pad_y as f32) / self.scale_y).clamp(0.0, frame_h as f32);
        [x(b[0]), y(b[1]), x(b[2]), y(b[3])]
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DetectionError {
    #[error("output `{name}` has shape {shape:?}; expected {expected}")]
    BadShape { name: String, shape: Vec<i64>, expected: String },
    #[error("output `{name}`: candidate {index} has class index {class}; the model has {classes} classes")]
    BadClass { name: String, index: usize, class: f32, classes: usize },
    #[error("output `{name}` holds a non-finite value at index {index}")]
    NotFinite { name: String, index: usize },
}

/// Fit into S x S (area average; squashed or letterboxed) and normalise
/// into NCHW f32.
pub fn preprocess(frame: &Frame, c: &DetectorContract) -> Vec<f32> {
    let s = c.input_size as usize;
    fit_normalised(frame, s, Fit::new(c.resize, s, frame.width, frame.height), c.mean, c.std)
}

/// The whole frame area-averaged to `s` x `s` (aspect not kept), as NCHW
/// f32 with `(pixel / 255 - mean[c]) / std[c]`.
pub fn area_resize_normalised(frame: &Frame, s: usize, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    fit_normalised(frame, s, Fit::new(Resize::Squash, s, frame.width, frame.height), mean, std)
}

/// The frame area-averaged into `fit`'s place in an `s` x `s` input, the
/// rest grey 114, as NCHW f32 with `(pixel / 255 - mean[c]) / std[c]`.
fn fit_normalised(frame: &Frame, s: usize, fit: Fit, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let mut out = vec![0f32; 3 * s * s];
    for ch in 0..3 {
        out[ch * s * s..(ch + 1) * s * s].fill((114.0 / 255.0 - mean[ch]) / std[ch]);
    }
    let (fw, fh) = (fit.width, fit.height);
    for fy in 0..fh {
        let y0 = fy * h / fh;
        let y1 = ((fy + 1) * h / fh).max(y0 + 1).min(h);
        let oy = fy + fit.pad_y;
        for fx in 0..fw {
            let ox = fx + fit.pad_x;
            let x0 = fx * w / fw;
            let x1 = ((fx + 1) * w / fw).max(x0 + 1).min(w);
            let mut acc = [0u32; 3];
            for y in y0..y1 {
                let row = &frame.pixels[(y * w + x0) * 3..(y * w + x1) * 3];
                for px in row.chunks_exact(3) {
                    acc[0] += u32::from(px[0]);
                    acc[1] += u32::from(px[1]);
                    acc[2] += u32::from(px[2]);
                }
            }
            let n = ((y1 - y0) * (x1 - x0)) as f32 * 255.0;
            for ch in 0..3 {
                out[ch * s * s + oy * s + ox] = (acc[ch] as f32 / n - mean[ch]) / std[ch];
            }
        }
    }
    out
}

/// Turn the model's output into detections in frame pixels.
pub fn postprocess(
    shape: &[i64],
    data: &[f32],
    c: &DetectorContract,
    frame_w: u32,
    frame_h: u32,
) -> Result<Vec<Detection>, DetectionError> {
    if let Some(index) = data.iter().position(|v| !v.is_finite()) {
        return Err(DetectionError::NotFinite { name: c.output_name.clone(), index });
    }
    match c.format {
        OutputFormat::ProbMap => prob_map(shape, data, c, frame_w, frame_h),
        OutputFormat::Yolo | OutputFormat::YoloNms => super::yolo::decode(shape, data, c, frame_w, frame_h),
    }
}

/// A per-class probability map: 8-connected components of cells over the
/// threshold, one box each.
fn prob_map(shape: &[i64], data: &[f32], c: &DetectorContract, frame_w: u32, frame_h: u32) -> Result<Vec<Detection>, DetectionError> {
    let nc = c.classes.len();
    let bad = || DetectionError::BadShape { name: c.output_name.clone(), shape: shape.to_vec(), expected: format!("[1, {nc}, h, w]") };
    let [1, classes, mh, mw] = shape else {
        return Err(bad());
    };
    if *classes as usize != nc || *mh <= 0 || *mw <= 0 || data.len() != nc * (*mh as usize) * (*mw as usize) {
        return Err(bad());
    }
    let (mh, mw) = (*mh as usize, *mw as usize);
    let plane = mh * mw;
    let best = |i: usize| (0..nc).map(|k| data[k * plane + i]).fold(0f32, f32::max);
    let mut seen = vec![false; plane];
    let mut dets = Vec::new();
    for start in 0..plane {
        if seen[start] || best(start) < c.score_threshold {
            continue;
        }
        // Flood-fill one 8-connected component of cells over threshold.
        let (mut x0, mut y0, mut x1, mut y1) = (mw, mh, 0, 0);
        let mut peaks = vec![0f32; nc];
        let mut stack = vec![start];
        seen[start] = true;
        while let Some(i) = stack.pop() {
            let (x, y) = (i % mw, i / mw);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            for (k, p) in peaks.iter_mut().enumerate() {
                *p = p.max(data[k * plane + i]);
            }
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    if nx < 0 || ny < 0 || nx >= mw as i64 || ny >= mh as i64 {
                        continue;
                    }
                    let j = ny as usize * mw + nx as usize;
                    if !seen[j] && best(j) >= c.score_threshold {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        let (class, score) = peaks.iter().copied().enumerate().fold((0, 0f32), |a, (k, p)| if p > a.1 { (k, p) } else { a });
        let (sx, sy) = (frame_w as f32 / mw as f32, frame_h as f32 / mh as f32);
        dets.push(Detection {
            class,
            class_name: c.classes[class].clone(),
            score,
            probabilities: peaks,
            x0: x0 as f32 * sx,
            y0: y0 as f32 * sy,
            x1: (x1 + 1) as f32 * sx,
            y1: (y1 + 1) as f32 * sy,
        });
    }
    Ok(nms(dets, c.nms_iou))
}

/// Class-agnostic non-maximum suppression, highest score first.
pub fn nms(mut dets: Vec<Detection>, iou_limit: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut keep: Vec<Detection> = Vec::new();
    for d in dets {
        if keep.iter().all(|k| k.iou(&d) <= iou_limit) {
            keep.push(d);
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract() -> DetectorContract {
        DetectorContract {
            input_name: "image".into(),
            output_name: "prob_map".into(),
            input_size: 8,
            mean: [0.0; 3],
            std: [1.0; 3],
            classes: vec!["a".into(), "b".into()],
            score_threshold: 0.5,
            nms_iou: 0.5,
            format: OutputFormat::ProbMap,
            resize: Resize::Squash,
        }
    }

    #[test]
    fn a_letterboxed_frame_keeps_its_aspect_and_maps_boxes_back() {
        // 640 x 360 into 320: scale 0.5, 320 x 180 centred, 70 px bars.
        let fit = Fit::new(Resize::Letterbox, 320, 640, 360);
        assert_eq!((fit.width, fit.height, fit.pad_x, fit.pad_y), (320, 180, 0, 70));
        assert_eq!(fit.to_frame([128.0, 144.0, 192.0, 176.0], 640, 360), [256.0, 148.0, 384.0, 212.0]);
        // A box in the bar is clamped to the frame.
        assert_eq!(fit.to_frame([0.0, 0.0, 10.0, 60.0], 640, 360), [0.0, 0.0, 20.0, 0.0]);
        let frame = Frame::new(
            1,
            std::time::Instant::now(),
            64,
            32,
            crate::video::frame::PixelFormat::Rgb8,
            std::sync::Arc::new(vec![255u8; 64 * 32 * 3]),
        )
        .unwrap();
        let c = DetectorContract { input_size: 16, resize: Resize::Letterbox, ..contract() };
        let x = preprocess(&frame, &c);
        // Rows 0..4 and 12..16 are the grey bars, rows 4..12 the white frame.
        assert!((x[0] - 114.0 / 255.0).abs() < 1e-6 && (x[4 * 16] - 1.0).abs() < 1e-6 && (x[12 * 16] - 114.0 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn a_blob_of_cells_becomes_one_box_scaled_to_the_frame_with_per_class_probabilities() {
        // 2 classes, 4x4 map; class b blob at cells (1,1)-(2,2).
        let mut data = vec![0f32; 2 * 16];
        for (x, y) in [(1, 1), (2, 1), (1, 2), (2, 2)] {
            data[16 + y * 4 + x] = 0.9;
            data[y * 4 + x] = 0.2;
        }
        let d = postprocess(&[1, 2, 4, 4], &data, &contract(), 400, 200).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].class_name.as_str(), d[0].x0, d[0].y0, d[0].x1, d[0].y1), ("b", 100.0, 50.0, 300.0, 150.0));
        assert_eq!(d[0].probabilities, vec![0.2, 0.9]);
    }

    #[test]
    fn nan_output_is_an_error_not_a_detection() {
        let mut data = vec![0f32; 32];
        data[5] = f32::NAN;
        assert_eq!(
            postprocess(&[1, 2, 4, 4], &data, &contract(), 8, 8),
            Err(DetectionError::NotFinite { name: "prob_map".into(), index: 5 })
        );
        assert!(
            matches!(postprocess(&[1, 3, 4, 4], &[0f32; 32], &contract(), 8, 8), Err(DetectionError::BadShape { .. })),
            "a wrong shape"
        );
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let d = |s: f32, x: f32| Detection {
            class: 0,
            class_name: "a".into(),
            score: s,
            probabilities: vec![s],
            x0: x,
            y0: 0.0,
            x1: x + 10.0,
            y1: 10.0,
        };
        let kept = nms(vec![d(0.6, 1.0), d(0.9, 0.0), d(0.7, 50.0)], 0.5);
        let scores: Vec<f32> = kept.iter().map(|k| k.score).collect();
        assert_eq!(scores, vec![0.9, 0.7]);
    }
}
