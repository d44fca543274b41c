//! The per-frame work of the enhancement stage: sharpness and site
//! classification of every frame, deblurring of the blurred ones. Contracts
//! in `models/README.md`.

use super::channels::Verdict;
use super::config::EnhanceConfig;
use crate::video::detection::area_resize_normalised;
use crate::video::frame::{Frame, FrameRef};
use crate::video::onnx::{Model, OnnxError};
use std::path::Path;
use std::sync::Arc;

const SHARP_SIZE: usize = 224;
const SITE_SIZE: usize = 32;
const MEAN: [f32; 3] = [0.5; 3];
const STD: [f32; 3] = [0.25; 3];

pub struct Enhancer {
    sharpness: Model,
    site: Model,
    deblur: Model,
    threshold: f32,
    scale: usize,
    sites: usize,
}

fn finite(name: &str, v: &[f32]) -> Result<(), String> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(format!("{name} output holds a non-finite value at index {i}")),
        None => Ok(()),
    }
}

impl Enhancer {
    /// Open the three models (the ONNX Runtime library must be loaded).
    pub fn open(cfg: &EnhanceConfig) -> Result<Enhancer, OnnxError> {
        Ok(Enhancer {
            sharpness: Model::open(Path::new(&cfg.sharpness_model), cfg.threads)?,
            site: Model::open(Path::new(&cfg.site_model), cfg.threads)?,
            deblur: Model::open(Path::new(&cfg.deblur_model), cfg.threads)?,
            threshold: cfg.sharp_threshold,
            scale: cfg.deblur_scale as usize,
            sites: cfg.sites.len(),
        })
    }

    /// Classify `frame`; deblur it when it is judged blurred.
    pub fn process(&mut self, frame: &FrameRef) -> Result<Verdict, String> {
        let s = SHARP_SIZE as i64;
        let (_, p) = self
            .sharpness
            .run("image", [1, 3, s, s], area_resize_normalised(frame, SHARP_SIZE, MEAN, STD), "sharp_prob")
            .map_err(|e| e.to_string())?;
        finite("sharpness", &p)?;
        let sharp_prob = *p.first().ok_or("sharpness output is empty")?;
        let s = SITE_SIZE as i64;
        let (_, probs) = self
            .site
            .run("image", [1, 3, s, s], area_resize_normalised(frame, SITE_SIZE, MEAN, STD), "site_prob")
            .map_err(|e| e.to_string())?;
        finite("site", &probs)?;
        if probs.len() != self.sites {
            return Err(format!("site output has {} classes, the config names {}", probs.len(), self.sites));
        }
        let site = probs.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0);
        let enhanced = if sharp_prob < self.threshold { Some(self.deblur(frame)?) } else { None };
        Ok(Verdict { seq: frame.seq, sharp_prob, site, enhanced })
    }

    /// Filter the luma at 1/scale, add the upsampled correction to R, G, B.
    fn deblur(&mut self, frame: &Frame) -> Result<FrameRef, String> {
        let (w, h, k) = (frame.width as usize, frame.height as usize, self.scale);
        let (lw, lh) = (w / k, h / k);
        if lw == 0 || lh == 0 {
            return Err(format!("frame {w}x{h} is smaller than the deblur scale {k}"));
        }
        let px = &frame.pixels;
        let mut luma = vec![0f32; lw * lh];
        for (i, l) in luma.iter_mut().enumerate() {
            let (ly, lx) = (i / lw, i % lw);
            let mut acc = 0f32;
            for y in ly * k..ly * k + k {
                for p in px[(y * w + lx * k) * 3..(y * w + lx * k + k) * 3].chunks_exact(3) {
                    acc += 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]);
                }
            }
            *l = acc / (255.0 * (k * k) as f32);
        }
        let (shape, out) = self.deblur.run("luma", [1, 1, lh as i64, lw as i64], luma.clone(), "luma_sharp").map_err(|e| e.to_string())?;
        if shape != [1, 1, lh as i64, lw as i64] {
            return Err(format!("deblur output shape {shape:?}, expected [1, 1, {lh}, {lw}]"));
        }
        finite("deblur", &out)?;
        let mut pixels = Vec::with_capacity(px.len());
        for y in 0..h {
            let ly = (y / k).min(lh - 1);
            for x in 0..w {
                let li = ly * lw + (x / k).min(lw - 1);
                let d = (out[li] - luma[li]) * 255.0;
                for c in 0..3 {
                    pixels.push((f32::from(px[(y * w + x) * 3 + c]) + d).round().clamp(0.0, 255.0) as u8);
                }
            }
        }
        Frame::new(frame.seq, frame.captured_at, frame.width, frame.height, frame.format, Arc::new(pixels))
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }
}
