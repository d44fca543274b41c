//! The CPU compositor: the camera frame, then the scene's rectangles, then
//! its text, into an RGBA8 image. Used for the live path when wgpu finds only
//! a software adapter (lavapipe is too slow for 60 fps on two cores), or when
//! config chooses it. Glyphs are shaped and rasterised by the same code as the
//! wgpu path (cosmic-text, swash) and placed with glyphon's arithmetic, so the
//! two agree to within blending rounding.

use super::font;
use super::overlay::Rgba;
use super::scene::{Rect, Scene};
use super::text_cache::TextCache;
use super::DisplayError;
use crate::video::frame::{Frame, PixelFormat};
use glyphon::{FontSystem, SwashCache, SwashContent};

pub struct CpuCompositor {
    fonts: FontSystem,
    swash: SwashCache,
    texts: TextCache,
}

impl Default for CpuCompositor {
    fn default() -> Self {
        Self::new()
    }
}

/// `dst` blended towards `src` by `a` (0-255), rounded.
#[inline]
fn blend(dst: &mut [u8], src: Rgba, a: u32) {
    for c in 0..3 {
        dst[c] = ((u32::from(src[c]) * a + u32::from(dst[c]) * (255 - a) + 127) / 255) as u8;
    }
}

fn fill(img: &mut [u8], width: u32, height: u32, rect: Rect, colour: Rgba) {
    let Some(r) = rect.clip(width, height) else { return };
    let a = u32::from(colour[3]);
    for y in r.y..r.y + r.h {
        let row = (y as usize * width as usize + r.x as usize) * 4;
        for px in img[row..row + r.w as usize * 4].chunks_exact_mut(4) {
            blend(px, colour, a);
        }
    }
}

/// Copy an RGB8 frame into an RGBA8 image (alpha 255).
pub fn rgb_to_rgba(frame: &Frame, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(frame.width as usize * frame.height as usize * 4);
    for p in frame.pixels.chunks_exact(3) {
        out.extend_from_slice(&[p[0], p[1], p[2], 255]);
    }
}

impl CpuCompositor {
    pub fn new() -> Self {
        CpuCompositor { fonts: font::font_system(), swash: SwashCache::new(), texts: TextCache::default() }
    }

    /// Compose `frame` with `scene` into `out` (RGBA8, row-major, no padding).
    pub fn compose(&mut self, frame: &Frame, scene: &Scene, out: &mut Vec<u8>) -> Result<(), DisplayError> {
        if frame.format != PixelFormat::Rgb8 || (frame.width, frame.height) != (scene.width, scene.height) {
            return Err(DisplayError::FrameMismatch { frame: (frame.width, frame.height), scene: (scene.width, scene.height) });
        }
        rgb_to_rgba(frame, out);
        let (w, h) = (scene.width, scene.height);
        for f in &scene.fills {
            fill(out, w, h, f.rect, f.colour);
        }
        self.texts.prepare(&mut self.fonts, &scene.texts);
        for t in &scene.texts {
            let Some(clip) = t.clip.clip(w, h) else { continue };
            let Some(buffer) = self.texts.get(t) else { continue };
            for run in buffer.layout_runs() {
                for glyph in run.glyphs {
                    let pg = glyph.physical((t.x as f32, t.y as f32), 1.0);
                    let Some(image) = self.swash.get_image(&mut self.fonts, pg.cache_key) else { continue };
                    let gx = pg.x + image.placement.left;
                    let gy = run.line_y.round() as i32 + pg.y - image.placement.top;
                    let (gw, gh) = (image.placement.width as i32, image.placement.height as i32);
                    for yy in gy.max(clip.y)..(gy + gh).min(clip.y + clip.h) {
                        for xx in gx.max(clip.x)..(gx + gw).min(clip.x + clip.w) {
                            let i = ((yy - gy) * gw + (xx - gx)) as usize;
                            let (colour, a) = match image.content {
                                SwashContent::Mask => (t.colour, u32::from(t.colour[3]) * u32::from(image.data[i]) / 255),
                                SwashContent::Color => {
                                    let c = &image.data[i * 4..i * 4 + 4];
                                    ([c[0], c[1], c[2], 255], u32::from(c[3]))
                                }
                                SwashContent::SubpixelMask => continue,
                            };
                            let o = (yy as usize * w as usize + xx as usize) * 4;
                            blend(&mut out[o..o + 4], colour, a);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
