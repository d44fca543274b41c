//! [`SyntheticFrame`] and its ground truth, [`TruthBox`].

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::labels::{Episode, LesionClass, Site};

/// The tight box of one visible lesion, in pixels of the frame: `x0..x1` and
/// `y0..y1` are pixel edges (a lesion covering only pixel column 10 has
/// `x0 = 10, x1 = 11`), clipped to the visible part of the frame.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TruthBox {
    pub class: LesionClass,
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl TruthBox {
    pub fn width(&self) -> f32 {
        self.x1 - self.x0
    }

    pub fn height(&self) -> f32 {
        self.y1 - self.y0
    }
}

/// One frame of the synthetic source with what it shows.
#[derive(Clone, Debug)]
pub struct SyntheticFrame {
    /// Frame number since the start, counting dropped frames.
    pub index: u64,
    pub width: u32,
    pub height: u32,
    /// Packed RGB8, row-major, `width * height * 3` bytes. A frozen frame
    /// shares the buffer of the frame it repeats.
    pub rgb: Arc<Vec<u8>>,
    /// Every visible lesion (none in a black frame).
    pub truth: Vec<TruthBox>,
    pub site: Site,
    pub episode: Episode,
    /// Length of the motion blur in pixels (0 when sharp).
    pub blur_px: f32,
}
