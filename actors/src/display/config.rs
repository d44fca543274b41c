//! The `[video.display]` section.

use crate::config::{check_range, ConfigError};
use serde::{Deserialize, Serialize};

/// Which compositor draws the overlay on the live picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RendererChoice {
    /// wgpu on a hardware adapter; the CPU compositor when wgpu finds only a
    /// software adapter (lavapipe) or none.
    Auto,
    Cpu,
    /// wgpu even on a software adapter.
    Wgpu,
    /// No compositing: the sink only takes and counts frames (pipeline
    /// benchmarks).
    None,
}

/// Where the composed picture goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// Kept in memory (snapshots, tests, recording).
    Headless,
    /// A window on the monitor (winit + wgpu surface).
    Window,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisplayConfig {
    pub renderer: RendererChoice,
    pub output: OutputKind,
    /// How often the overlay is rebuilt from the tower's state.
    pub overlay_hz: f64,
}

impl Default for DisplayConfig {
    fn default() -> Self {
        Self { renderer: RendererChoice::Auto, output: OutputKind::Headless, overlay_hz: 20.0 }
    }
}

impl DisplayConfig {
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        check_range(&format!("{path}.overlay_hz"), self.overlay_hz, 1.0, 120.0, "Hz")?;
        if self.output == OutputKind::Window && self.renderer == RendererChoice::None {
            return Err(ConfigError::new(format!("{path}.renderer"), "\"none\"", "a renderer (auto, cpu or wgpu) for a window output"));
        }
        Ok(())
    }
}
