//! Video sources for the tower's video path and its tests.
//!
//! - [`SyntheticSource`]: a deterministic synthetic endoscopy camera (three
//!   sites, three lesion classes with ground-truth boxes, motion blur,
//!   freezes, black-outs and dropouts), configured by [`SyntheticConfig`].
//!
//! (The Y4M file source and the training-set dump live in the tower crate:
//! `src/y4m.rs` and `src/dataset.rs`.)
//!
//! All images are packed RGB8, row-major, in `Arc<Vec<u8>>` so a frame can be
//! shared by several consumers without copying. Errors are [`VideoError`].
//!
//! Files: `config` (settings), `labels` (classes, sites, episodes), `frame`
//! (frame and truth box), `synthetic` (the source), `texture` (per-site
//! mucosa), `noise` (tileable value noise), `sprite` (lesion looks),
//! `lesions` (lesion comings and goings), `camera` (camera and lumen paths),
//! `optics` (field of view, lumen, sensor noise), `episodes` (disturbance
//! timeline), `blur` (motion blur), `pool` (buffer reuse), `random` (seeded
//! draws), `error`.

mod blur;
mod camera;
mod config;
mod episodes;
mod error;
mod frame;
mod labels;
mod lesions;
mod noise;
mod optics;
mod pool;
mod random;
mod sprite;
mod synthetic;
mod texture;

pub use config::{EpisodeConfig, LesionConfig, SyntheticConfig};
pub use error::VideoError;
pub use frame::{SyntheticFrame, TruthBox};
pub use labels::{Episode, LesionClass, Site};
pub use synthetic::SyntheticSource;

#[cfg(test)]
mod tests;
