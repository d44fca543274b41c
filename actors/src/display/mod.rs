//! The surgeon's monitor: the live picture with the AI results, the exam
//! info, every device's status and the alarms.
//!
//! - [`overlay`]: the overlay model, plain data built from the tower's state.
//! - [`scene`]: its layout on a frame (rectangles and text runs).
//! - [`font`]: the vendored font; [`text_cache`]: shaped text kept between frames.
//! - [`cpu`]: the CPU compositor; [`gpu`]: the wgpu compositor (offscreen or
//!   window), drawing the same scene.
//! - [`renderer`]: the compositor chosen by config ([`config`]).
//! - [`composed`]: the last composed picture, shared with its readers.
//! - [`window`]: the window output (winit + wgpu surface) and its [`hmi`] keys.
//! - [`sink`]: the display child: takes every frame it can, composes and
//!   presents it, releases enhanced frames in order.
//! - [`overlay_source`]: the tower's state read into the overlay's inputs.
//! - [`golden`]: image comparison for golden-image tests; [`sample`]: a
//!   representative overlay for benchmarks and golden images.

pub mod composed;
pub mod config;
pub mod cpu;
pub mod font;
pub mod golden;
pub mod gpu;
pub mod hmi;
pub mod overlay;
pub mod overlay_source;
pub mod renderer;
pub mod sample;
pub mod scene;
pub mod sink;
pub mod text_cache;
pub mod window;

#[derive(Debug, thiserror::Error)]
pub enum DisplayError {
    #[error("frame is {}x{} but the scene was laid out for {}x{}", .frame.0, .frame.1, .scene.0, .scene.1)]
    FrameMismatch { frame: (u32, u32), scene: (u32, u32) },
    #[error("wgpu: {0}")]
    Gpu(String),
    #[error("window: {0}")]
    Window(String),
}
