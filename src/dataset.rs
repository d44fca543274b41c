//! `endotower dataset`: frames of the synthetic endoscopy source with their
//! ground truth, for training and evaluating the demo models. Writes binary
//! PPM frames (area-resized) and one JSON line per frame in `truth.jsonl`
//! (format in models/README.md). Black frames are kept and labelled.

use anyhow::{Context, Result};
use endotower_sim::video::{SyntheticConfig, SyntheticSource};
use std::io::Write;
use std::path::Path;

/// Area-average resize of packed RGB8.
pub fn resize_rgb(src: &[u8], w: usize, h: usize, dw: usize, dh: usize) -> Vec<u8> {
    let mut out = vec![0u8; dw * dh * 3];
    for oy in 0..dh {
        let (y0, y1) = (oy * h / dh, ((oy + 1) * h / dh).max(oy * h / dh + 1).min(h));
        for ox in 0..dw {
            let (x0, x1) = (ox * w / dw, ((ox + 1) * w / dw).max(ox * w / dw + 1).min(w));
            let mut acc = [0u32; 3];
            for y in y0..y1 {
                for px in src[(y * w + x0) * 3..(y * w + x1) * 3].chunks_exact(3) {
                    for c in 0..3 {
                        acc[c] += u32::from(px[c]);
                    }
                }
            }
            let n = ((y1 - y0) * (x1 - x0)) as u32;
            for c in 0..3 {
                out[(oy * dw + ox) * 3 + c] = ((acc[c] + n / 2) / n) as u8;
            }
        }
    }
    out
}

/// Write `frames` frames (every `stride`-th one the source delivers) at
/// `size`; returns frames written.
pub fn write(dir: &Path, cfg: SyntheticConfig, frames: usize, size: (u32, u32), stride: usize) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (fw, fh) = (cfg.width as f32, cfg.height as f32);
    let mut src = SyntheticSource::new(cfg).context("synthetic source")?;
    let truth_path = dir.join("truth.jsonl");
    let mut truth =
        std::io::BufWriter::new(std::fs::File::create(&truth_path).with_context(|| format!("creating {}", truth_path.display()))?);
    let (dw, dh) = (size.0 as usize, size.1 as usize);
    let (sx, sy) = (size.0 as f32 / fw, size.1 as f32 / fh);
    let (mut written, mut delivered) = (0, 0usize);
    while written < frames {
        let Some(f) = src.next_frame() else { continue };
        delivered += 1;
        if (delivered - 1) % stride.max(1) != 0 {
            continue;
        }
        let name = format!("frame_{written:06}.ppm");
        let px = resize_rgb(&f.rgb, f.width as usize, f.height as usize, dw, dh);
        let path = dir.join(&name);
        let mut ppm = format!("P6\n{dw} {dh}\n255\n").into_bytes();
        ppm.extend_from_slice(&px);
        std::fs::write(&path, ppm).with_context(|| format!("writing {}", path.display()))?;
        let boxes: Vec<serde_json::Value> = f
            .truth
            .iter()
            .map(|b| serde_json::json!({"class": b.class.name(), "x0": b.x0 * sx, "y0": b.y0 * sy, "x1": b.x1 * sx, "y1": b.y1 * sy}))
            .collect();
        let line = serde_json::json!({
            "file": name, "index": f.index, "width": dw, "height": dh,
            "site": f.site.name(), "episode": f.episode.name(), "blur_px": f.blur_px * sx, "boxes": boxes,
        });
        writeln!(truth, "{line}").with_context(|| format!("writing {}", truth_path.display()))?;
        written += 1;
    }
    truth.flush().with_context(|| format!("writing {}", truth_path.display()))?;
    Ok(written)
}
