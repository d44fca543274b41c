//! Shaped text buffers, kept between frames: the overlay's texts change a
//! few times a second, frames come 30-60 times a second.

use super::font;
use super::scene::Text;
use glyphon::{Buffer, FontSystem, Metrics, Shaping};
use std::collections::HashMap;

type Key = (String, u32, u32);

#[derive(Default)]
pub struct TextCache {
    buffers: HashMap<Key, Buffer>,
    used: Vec<Key>,
}

impl TextCache {
    fn key(t: &Text) -> Key {
        (t.text.clone(), t.size_px.to_bits(), t.line_px.to_bits())
    }

    /// Shape every text of the frame that is not cached yet; drop the ones
    /// the frame no longer uses.
    pub fn prepare(&mut self, fonts: &mut FontSystem, texts: &[Text]) {
        self.used.clear();
        for t in texts {
            let key = Self::key(t);
            if !self.buffers.contains_key(&key) {
                let mut b = Buffer::new(fonts, Metrics::new(t.size_px, t.line_px));
                b.set_size(None, None);
                b.set_text(&t.text, &font::attrs(), Shaping::Basic, None);
                b.shape_until_scroll(fonts, false);
                self.buffers.insert(key.clone(), b);
            }
            self.used.push(key);
        }
        let used = &self.used;
        self.buffers.retain(|k, _| used.contains(k));
    }

    /// The shaped buffer of a text passed to the last `prepare`.
    pub fn get(&self, t: &Text) -> Option<&Buffer> {
        self.buffers.get(&Self::key(t))
    }

    pub fn get_mut(&mut self, t: &Text) -> Option<&mut Buffer> {
        self.buffers.get_mut(&Self::key(t))
    }
}
