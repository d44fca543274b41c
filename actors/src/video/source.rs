//! Where frames come from. Implementations: the synthetic endoscopy source
//! and the Y4M file source (in `endotower-sim`), V4L2 capture behind a cargo
//! feature. The capture stage owns one and calls it from its own thread.

use std::sync::Arc;

/// One frame as a source delivers it: packed RGB8.
#[derive(Debug, Clone)]
pub struct SourceFrame {
    pub width: u32,
    pub height: u32,
    pub rgb: Arc<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct SourceError {
    pub source_name: String,
    pub message: String,
}

pub trait FrameSource: Send + 'static {
    /// Nominal frame rate; the capture stage paces itself on it.
    fn fps(&self) -> f64;
    /// The next frame; `Ok(None)` is a dropped frame (nothing arrived this
    /// period). Blocking is allowed: it runs on the capture thread.
    fn next_frame(&mut self) -> Result<Option<SourceFrame>, SourceError>;
}
