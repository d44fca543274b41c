//! Freeze detection (CN108831533A claim 2): the video is frozen when the same
//! picture arrives `min_frames` times in a row. Fires once per freeze, on the
//! frame that completes the run; the next freeze needs new content first.
//!
//! Frames are compared by pixel buffer identity first (a frozen source hands
//! out the same buffer), then by a sparse fingerprint of 1024 sampled pixels.

use super::frame::Frame;
use std::sync::Arc;

pub struct FreezeDetector {
    min_frames: u32,
    last: Option<(Arc<Vec<u8>>, u64)>,
    run: u32,
    fired: bool,
}

fn fingerprint(f: &Frame) -> u64 {
    // FNV-1a over 1024 evenly spread bytes.
    let data = &f.pixels;
    let n = data.len().max(1);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for i in 0..1024usize {
        let b = data[(i * 7919 * 3) % n];
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl FreezeDetector {
    pub fn new(min_frames: u32) -> Self {
        Self { min_frames: min_frames.max(2), last: None, run: 1, fired: false }
    }

    /// Feed the next frame; true exactly once per freeze episode.
    pub fn observe(&mut self, f: &Frame) -> bool {
        let same = match &self.last {
            Some((buf, _)) if Arc::ptr_eq(buf, &f.pixels) => true,
            Some((_, fp)) => *fp == fingerprint(f),
            None => false,
        };
        let fp = if same { self.last.as_ref().map_or(0, |l| l.1) } else { fingerprint(f) };
        self.last = Some((f.pixels.clone(), fp));
        if same {
            self.run += 1;
        } else {
            self.run = 1;
            self.fired = false;
        }
        if self.run >= self.min_frames && !self.fired {
            self.fired = true;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::frame::PixelFormat;
    use std::time::Instant;

    fn frame(seq: u64, pixels: &Arc<Vec<u8>>) -> Frame {
        Frame::new(seq, Instant::now(), 32, 32, PixelFormat::Rgb8, pixels.clone()).unwrap()
    }

    fn content(k: u8) -> Arc<Vec<u8>> {
        Arc::new((0..32 * 32 * 3).map(|i| (i as u8).wrapping_mul(k).wrapping_add(k)).collect())
    }

    #[test]
    fn fires_once_per_freeze_episode() {
        let mut d = FreezeDetector::new(3);
        let mut fired = vec![];
        let mut seq = 0;
        // moving, frozen x5, moving x2, frozen x4 (new content), moving
        let plan: Vec<Arc<Vec<u8>>> = {
            let a = content(3);
            let b = content(9);
            let mut v = vec![content(1), content(2)];
            v.extend(std::iter::repeat_n(a, 5));
            v.extend([content(4), content(5)]);
            v.extend(std::iter::repeat_n(b, 4));
            v.push(content(6));
            v
        };
        for p in &plan {
            seq += 1;
            if d.observe(&frame(seq, p)) {
                fired.push(seq);
            }
        }
        assert_eq!(fired, vec![5, 12]);
    }

    #[test]
    fn identical_content_in_a_new_buffer_counts_as_frozen() {
        let mut d = FreezeDetector::new(2);
        assert!(!d.observe(&frame(1, &content(7))));
        assert!(d.observe(&frame(2, &content(7))));
    }
}
