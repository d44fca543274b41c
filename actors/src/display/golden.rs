//! Golden images: RGBA8 PNG files and a tolerant comparison, so the CPU and
//! wgpu renderers can be checked against the same references.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum GoldenError {
    #[error("{path}: {message}")]
    Png { path: String, message: String },
}

/// How two images differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Diff {
    /// Pixels with any channel differing by more than the tolerance.
    pub differing: usize,
    /// Largest channel difference anywhere.
    pub max_delta: u8,
    pub pixels: usize,
}

impl Diff {
    /// At most `max_fraction` of the pixels differ beyond the tolerance.
    pub fn within(&self, max_fraction: f64) -> bool {
        (self.differing as f64) <= max_fraction * self.pixels as f64
    }
}

/// Compare two RGBA8 images of equal size; a channel difference of up to
/// `tolerance` is not counted.
pub fn compare(a: &[u8], b: &[u8], tolerance: u8) -> Diff {
    let mut d = Diff { differing: 0, max_delta: 0, pixels: a.len().min(b.len()) / 4 };
    if a.len() != b.len() {
        d.differing = d.pixels.max(1);
        d.max_delta = u8::MAX;
        return d;
    }
    for (pa, pb) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        let delta = pa.iter().zip(pb).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0);
        d.max_delta = d.max_delta.max(delta);
        if delta > tolerance {
            d.differing += 1;
        }
    }
    d
}

pub fn write_png(path: &Path, width: u32, height: u32, rgba: &[u8]) -> Result<(), GoldenError> {
    let err = |m: String| GoldenError::Png { path: path.display().to_string(), message: m };
    let file = std::fs::File::create(path).map_err(|e| err(e.to_string()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(|e| err(e.to_string()))?;
    w.write_image_data(rgba).map_err(|e| err(e.to_string()))?;
    w.finish().map_err(|e| err(e.to_string()))
}

/// Read an 8-bit RGBA or RGB PNG as RGBA8.
pub fn read_png(path: &Path) -> Result<(u32, u32, Vec<u8>), GoldenError> {
    let err = |m: String| GoldenError::Png { path: path.display().to_string(), message: m };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info().map_err(|e| err(e.to_string()))?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or_else(|| err("image too large".into()))?];
    let info = reader.next_frame(&mut buf).map_err(|e| err(e.to_string()))?;
    let data = &buf[..info.buffer_size()];
    let rgba = match (info.color_type, info.bit_depth) {
        (png::ColorType::Rgba, png::BitDepth::Eight) => data.to_vec(),
        (png::ColorType::Rgb, png::BitDepth::Eight) => data.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect(),
        (c, d) => return Err(err(format!("unsupported PNG {c:?} {d:?}; 8-bit RGB or RGBA expected"))),
    };
    Ok((info.width, info.height, rgba))
}
