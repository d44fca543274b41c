//! `endotower eval detector`: the demo detector's precision and recall on a
//! held-out synthetic set, through exactly the tower's pre- and
//! post-processing and ONNX Runtime. A truth box counts as found when a
//! detection of the same class overlaps it with IoU >= 0.5; each detection
//! matches at most one truth box.

use crate::tower_config::TowerConfig;
use anyhow::{Context, Result};
use endotower_actors::video::detection::{iou, postprocess, preprocess};
use endotower_actors::video::frame::{Frame, PixelFormat};
use endotower_actors::video::onnx::{load_runtime, Model};
use endotower_sim::video::{Episode, SyntheticConfig, SyntheticSource};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Default, Clone, Serialize)]
pub struct Counts {
    pub truths: usize,
    pub detections: usize,
    pub true_positives: usize,
}

impl Counts {
    pub fn recall(&self) -> f64 {
        self.true_positives as f64 / self.truths.max(1) as f64
    }
    pub fn precision(&self) -> f64 {
        self.true_positives as f64 / self.detections.max(1) as f64
    }
}

#[derive(Debug, Serialize)]
pub struct DetectorReport {
    pub name: &'static str,
    pub frames: usize,
    pub seed: u64,
    pub stride: usize,
    pub sharp: Counts,
    pub blurred: Counts,
    pub per_class: Vec<(String, Counts)>,
    pub recall: f64,
    pub precision: f64,
    pub mean_inference_ms: f64,
}

pub fn detector(cfg: &TowerConfig, frames: usize, seed: u64, stride: usize) -> Result<DetectorReport> {
    let inf = &cfg.video.inference;
    load_runtime(Path::new(&inf.runtime_library))?;
    let mut model = Model::open(Path::new(&inf.detector_model), inf.threads)?;
    let c = &inf.detector;
    let (width, height) = match &cfg.video.source {
        crate::video_config::SourceConfig::Synthetic { width, height, .. }
        | crate::video_config::SourceConfig::V4l2 { width, height, .. } => (*width, *height),
        crate::video_config::SourceConfig::Y4m { .. } | crate::video_config::SourceConfig::File { .. } => (1280, 720),
    };
    let mut source =
        SyntheticSource::new(SyntheticConfig { width, height, seed, ..SyntheticConfig::default() }).context("synthetic source")?;
    let mut sharp = Counts::default();
    let mut blurred = Counts::default();
    let mut per_class: Vec<(String, Counts)> = c.classes.iter().map(|n| (n.clone(), Counts::default())).collect();
    let (mut done, mut total_ms, mut delivered) = (0usize, 0f64, 0usize);
    while done < frames {
        let Some(f) = source.next_frame() else { continue };
        delivered += 1;
        if (delivered - 1) % stride.max(1) != 0 {
            continue;
        }
        let bucket = match f.episode {
            Episode::Black => continue,
            Episode::MotionBlur => &mut blurred,
            _ => &mut sharp,
        };
        let frame = Frame::new(f.index, Instant::now(), f.width, f.height, PixelFormat::Rgb8, f.rgb.clone())?;
        let s = i64::from(c.input_size);
        let t0 = Instant::now();
        let (shape, data) = model.run(&c.input_name, [1, 3, s, s], preprocess(&frame, c), &c.output_name)?;
        let dets = postprocess(&shape, &data, c, f.width, f.height)?;
        total_ms += t0.elapsed().as_secs_f64() * 1e3;
        done += 1;
        let mut used = vec![false; dets.len()];
        bucket.truths += f.truth.len();
        bucket.detections += dets.len();
        for d in &dets {
            if let Some(pc) = per_class.iter_mut().find(|(n, _)| *n == d.class_name) {
                if f.episode != Episode::MotionBlur {
                    pc.1.detections += 1;
                }
            }
        }
        for t in &f.truth {
            let name = t.class.name();
            let tb = [t.x0, t.y0, t.x1, t.y1];
            let hit =
                dets.iter().enumerate().position(|(i, d)| !used[i] && d.class_name == name && iou([d.x0, d.y0, d.x1, d.y1], tb) >= 0.5);
            if f.episode != Episode::MotionBlur {
                if let Some(pc) = per_class.iter_mut().find(|(n, _)| n == name) {
                    pc.1.truths += 1;
                    pc.1.true_positives += usize::from(hit.is_some());
                }
            }
            if let Some(i) = hit {
                used[i] = true;
                bucket.true_positives += 1;
            }
        }
    }
    Ok(DetectorReport {
        name: "detector",
        frames: done,
        seed,
        stride,
        recall: sharp.recall(),
        precision: sharp.precision(),
        sharp,
        blurred,
        per_class,
        mean_inference_ms: total_ms / done.max(1) as f64,
    })
}
