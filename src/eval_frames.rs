//! `endotower eval detector --frames DIR`: the configured detector on
//! labelled still frames (real endoscopy frames, in the format of
//! `shared/real-frames/labels.json`), through exactly the tower's pre- and
//! post-processing and ONNX Runtime, reported per source.
//!
//! - A polyp box counts as found when any detection overlaps it with
//!   IoU >= 0.3 (class-agnostic: the labels say "polyp", the model has its
//!   own classes); each detection matches at most one box.
//! - "High-risk" is what the tower would mark: a detection of a
//!   `high_risk_classes` class at or above `high_risk_threshold`. On frames
//!   without a polyp, every such frame would be a false alarm; the report
//!   gives the count without any gate and with the model card's gate for each
//!   procedure type ([`lesion_alarms`]).

use crate::tower_config::TowerConfig;
use anyhow::{bail, Context, Result};
use endotower_actors::video::backend::{Backend, BackendKind};
use endotower_actors::video::content_area::{ContentArea, Scene};
use endotower_actors::video::detection::iou;
use endotower_actors::video::frame::{Frame, PixelFormat};
use endotower_actors::video::inference::analyse;
use endotower_actors::video::model_card::{lesion_alarms, ModelCard, Procedure};
use endotower_actors::video::onnx::{load_runtime, Model};
use endotower_actors::video::remote::{FrameTag, RemoteModel};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// IoU at which a polyp box counts as found.
pub const MATCH_IOU: f32 = 0.3;

#[derive(Debug, Deserialize)]
struct Labels {
    items: Vec<Item>,
}

#[derive(Debug, Deserialize)]
struct Item {
    file: String,
    /// `polyp` or `no_polyp`.
    kind: String,
    #[serde(default)]
    boxes: Vec<[f32; 4]>,
}

/// Figures for one source (the first folder of the frames' paths).
#[derive(Debug, Default, Clone, Serialize)]
pub struct SourceFigures {
    pub frames: usize,
    /// Frames labelled without a polyp.
    pub negatives: usize,
    pub polyps: usize,
    pub found: usize,
    pub detections: usize,
    /// Detections that match a polyp box.
    pub matched_detections: usize,
    /// Frames without a polyp where a high-risk detection appears (alarms
    /// with no gate).
    pub high_risk_on_negatives: usize,
    /// The same, counting only where the model card lets the alarm sound,
    /// per procedure type.
    pub alarms_on_negatives: BTreeMap<String, usize>,
}

impl SourceFigures {
    pub fn recall(&self) -> Option<f64> {
        (self.polyps > 0).then(|| self.found as f64 / self.polyps as f64)
    }
    pub fn precision(&self) -> Option<f64> {
        (self.detections > 0).then(|| self.matched_detections as f64 / self.detections as f64)
    }
}

/// One frame's outcome.
#[derive(Debug, Serialize)]
pub struct FrameOutcome {
    pub file: String,
    pub scene: Scene,
    pub detections: usize,
    pub found: usize,
    pub high_risk: bool,
}

#[derive(Debug, Serialize)]
pub struct FramesReport {
    pub model: String,
    pub card: Option<String>,
    /// Whether the scene gate (content area) ran before the detector.
    pub scene_gate: bool,
    pub frames: Vec<FrameOutcome>,
    pub per_source: BTreeMap<String, SourceFigures>,
    pub total: SourceFigures,
    pub mean_inference_ms: f64,
}

/// Decode `path` (PNG or JPEG) as an RGB8 frame.
fn load_frame(path: &Path, seq: u64) -> Result<Frame> {
    let img = image::open(path).with_context(|| format!("cannot read image {}", path.display()))?.to_rgb8();
    let (w, h) = img.dimensions();
    Ok(Frame::new(seq, Instant::now(), w, h, PixelFormat::Rgb8, Arc::new(img.into_raw()))
        .with_context(|| format!("{}: {w}x{h}", path.display()))?)
}

pub fn detector(cfg: &TowerConfig, dir: &Path, labels: &Path) -> Result<FramesReport> {
    let text = std::fs::read_to_string(labels).with_context(|| format!("cannot read {}", labels.display()))?;
    let labels: Labels = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(&text))
        .map_err(|e| anyhow::anyhow!("{}: `{}`: {}", labels.display(), e.path(), e.inner()))?;
    if labels.items.is_empty() {
        bail!("no frames in the labels file");
    }
    let inf = &cfg.video.inference;
    load_runtime(Path::new(&inf.runtime_library))?;
    let model_path = Path::new(&inf.detector_model);
    // The configured backend: the same figures from an inference server.
    let mut backend: Box<dyn Backend> = match (inf.backend, &inf.remote) {
        (BackendKind::Remote, Some(r)) => Box::new(RemoteModel::new(r.clone(), Duration::from_millis(inf.deadline_ms.max(5_000)))?),
        _ => Box::new(Model::open(model_path, inf.threads)?),
    };
    let card = ModelCard::load(model_path, &inf.detector.classes)?;
    let mut gate = inf.content_area.as_ref().map(|ca| ContentArea::open(ca, inf.threads)).transpose()?;
    let c = &inf.detector;
    let mut frames = Vec::new();
    let procedures = [Procedure::Colonoscopy, Procedure::Gastroscopy, Procedure::Laparoscopy];
    let mut per_source: BTreeMap<String, SourceFigures> = BTreeMap::new();
    let mut total = SourceFigures::default();
    let mut total_ms = 0.0;
    for (i, item) in labels.items.iter().enumerate() {
        let frame = load_frame(&dir.join(&item.file), i as u64 + 1)?;
        let t0 = Instant::now();
        // Each frame is a new scene: fitted afresh, as the tower does for a new picture.
        let scene = match gate.as_mut() {
            Some(g) => g.scene(&frame)?,
            None => Scene::Full,
        };
        let tag = FrameTag { tower: cfg.tower.id.clone(), exam: "eval".into(), seq: i as u64 + 1 };
        let (dets, scene) = analyse(backend.as_mut(), &tag, scene, &frame, c).map_err(|e| anyhow::anyhow!("{}: {e}", item.file))?;
        total_ms += t0.elapsed().as_secs_f64() * 1e3;
        let negative = match item.kind.as_str() {
            "polyp" => false,
            "no_polyp" => true,
            other => bail!("{}: kind {other:?}: expected \"polyp\" or \"no_polyp\"", item.file),
        };
        let source = item.file.split('/').next().unwrap_or("").to_string();
        let mut used = vec![false; dets.len()];
        let mut found = 0;
        for b in &item.boxes {
            if let Some(k) = dets.iter().enumerate().position(|(k, d)| !used[k] && iou([d.x0, d.y0, d.x1, d.y1], *b) >= MATCH_IOU) {
                used[k] = true;
                found += 1;
            }
        }
        let high_risk = dets.iter().any(|d| inf.high_risk_classes.contains(&d.class_name) && d.score >= inf.high_risk_threshold);
        frames.push(FrameOutcome { file: item.file.clone(), scene, detections: dets.len(), found, high_risk });
        for f in [per_source.entry(source).or_default(), &mut total] {
            f.frames += 1;
            f.negatives += usize::from(negative);
            f.polyps += item.boxes.len();
            f.found += found;
            f.detections += dets.len();
            f.matched_detections += found;
            if negative && high_risk {
                f.high_risk_on_negatives += 1;
            }
            for p in procedures {
                let n = f.alarms_on_negatives.entry(p.to_string()).or_default();
                *n += usize::from(negative && high_risk && lesion_alarms(card.as_ref(), p).is_ok());
            }
        }
    }
    Ok(FramesReport {
        model: inf.detector_model.clone(),
        card: card.map(|c| format!("{} ({:?}, procedures {:?})", c.name, c.status, c.procedures)),
        scene_gate: gate.is_some(),
        frames,
        per_source,
        total,
        mean_inference_ms: total_ms / labels.items.len() as f64,
    })
}

/// The report as a Markdown table.
pub fn markdown(r: &FramesReport) -> String {
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.0} %", v * 100.0));
    let mut out = format!(
        "model {} (card: {})\n\n| source | frames | polyps found / boxes (IoU >= {MATCH_IOU}) | recall | precision | negatives | high-risk on negatives: no gate / colonoscopy / gastroscopy / laparoscopy exam |\n|---|---|---|---|---|---|---|\n",
        r.model,
        r.card.as_deref().unwrap_or("none: no lesion alarms")
    );
    for (name, f) in r.per_source.iter().map(|(n, f)| (n.as_str(), f)).chain([("all", &r.total)]) {
        let gated = |p: &str| f.alarms_on_negatives.get(p).copied().unwrap_or(0);
        out.push_str(&format!(
            "| {name} | {} | {} / {} | {} | {} | {} | {} / {} / {} / {} |\n",
            f.frames,
            f.found,
            f.polyps,
            pct(f.recall()),
            pct(f.precision()),
            f.negatives,
            f.high_risk_on_negatives,
            gated("colonoscopy"),
            gated("gastroscopy"),
            gated("laparoscopy"),
        ));
    }
    let count = |k: fn(&Scene) -> bool| r.frames.iter().filter(|f| k(&f.scene)).count();
    out.push_str(&match r.scene_gate {
        true => format!(
            "\nscene gate: {} image circles, {} full frames, {} without an image\n",
            count(|s| matches!(s, Scene::Circle { .. })),
            count(|s| matches!(s, Scene::Full)),
            count(|s| matches!(s, Scene::NoImage))
        ),
        false => "\nscene gate: off (whole frames analysed)\n".to_string(),
    });
    out.push_str(&format!("mean inference {:.1} ms per frame (scene gate and detector)\n", r.mean_inference_ms));
    out
}
