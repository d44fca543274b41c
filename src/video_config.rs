//! The `[video]` section: source, analysis and inference.

use endotower_actors::config::{check_int, check_range, ConfigError};
use endotower_actors::display::config::DisplayConfig;
use endotower_actors::video::analysis::AnalysisConfig;
use endotower_actors::video::archive::{ArchiveConfig, ExamInfo};
use endotower_actors::video::enhance::config::EnhanceConfig;
use endotower_actors::video::inference::InferenceConfig;
use serde::{Deserialize, Serialize};

/// Where the live video comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// The deterministic synthetic endoscopy source of `endotower-sim`.
    Synthetic { width: u32, height: u32, fps: f64, seed: u64 },
    /// A raw YUV4MPEG2 file (`ffmpeg -i in.mp4 -pix_fmt yuv420p out.y4m`).
    Y4m {
        path: String,
        #[serde(default)]
        looped: bool,
    },
    /// A recording (MP4, MKV, ... e.g. H.264) decoded by `ffmpeg`, played at
    /// its own frame rate and size.
    File {
        path: String,
        #[serde(default)]
        looped: bool,
    },
    /// A V4L2 capture device (needs the `v4l2` cargo feature); YUYV 4:2:2.
    V4l2 { device: String, width: u32, height: u32, fps: f64 },
}

impl SourceConfig {
    /// The picture size the config asks for (a Y4M file says so in its header).
    pub fn nominal_size(&self) -> Option<(u32, u32)> {
        match self {
            SourceConfig::Synthetic { width, height, .. } | SourceConfig::V4l2 { width, height, .. } => Some((*width, *height)),
            SourceConfig::Y4m { .. } | SourceConfig::File { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoConfig {
    pub enabled: bool,
    pub source: SourceConfig,
    pub analysis: AnalysisConfig,
    pub inference: InferenceConfig,
    pub exam: ExamInfo,
    pub archive: ArchiveConfig,
    #[serde(default)]
    pub display: DisplayConfig,
    #[serde(default)]
    pub enhance: EnhanceConfig,
    /// Try SCHED_FIFO for the capture and display threads (needs
    /// CAP_SYS_NICE; falls back with a warning). Off in tests that run
    /// several towers at once without a real-time safety island.
    #[serde(default = "realtime_by_default")]
    pub realtime_priority: bool,
}

fn realtime_by_default() -> bool {
    true
}

impl VideoConfig {
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        match &self.source {
            SourceConfig::Synthetic { width, height, fps, .. } => {
                check_int(&format!("{path}.source.width"), u64::from(*width), 64, 3840, "px")?;
                check_int(&format!("{path}.source.height"), u64::from(*height), 64, 2160, "px")?;
                check_range(&format!("{path}.source.fps"), *fps, 1.0, 240.0, "Hz")?;
            }
            SourceConfig::Y4m { path: file, .. } => {
                if file.is_empty() {
                    return Err(ConfigError::new(format!("{path}.source.path"), "\"\"", "a .y4m file path"));
                }
            }
            SourceConfig::File { path: file, .. } => {
                if file.is_empty() {
                    return Err(ConfigError::new(format!("{path}.source.path"), "\"\"", "a video file path (MP4, MKV, ...)"));
                }
            }
            SourceConfig::V4l2 { device, width, height, fps } => {
                if !cfg!(feature = "v4l2") {
                    return Err(ConfigError::new(
                        format!("{path}.source.kind"),
                        "\"v4l2\"",
                        "a source this build has: endotower was built without the `v4l2` feature (cargo build --release --features v4l2)",
                    ));
                }
                if device.is_empty() {
                    return Err(ConfigError::new(format!("{path}.source.device"), "\"\"", "a V4L2 device path such as /dev/video0"));
                }
                check_int(&format!("{path}.source.width"), u64::from(*width), 64, 3840, "px")?;
                check_int(&format!("{path}.source.height"), u64::from(*height), 64, 2160, "px")?;
                check_range(&format!("{path}.source.fps"), *fps, 1.0, 240.0, "Hz")?;
            }
        }
        self.analysis.validate(&format!("{path}.analysis"))?;
        self.exam.validate(&format!("{path}.exam"))?;
        if self.archive.dir.is_empty() {
            return Err(ConfigError::new(format!("{path}.archive.dir"), "\"\"", "a directory path"));
        }
        check_int(&format!("{path}.archive.result_wait_ms"), self.archive.result_wait_ms, 0, 60_000, "ms")?;
        check_int(&format!("{path}.archive.max_pending"), self.archive.max_pending as u64, 1, 10_000, "stills")?;
        self.display.validate(&format!("{path}.display"))?;
        self.enhance.validate(&format!("{path}.enhance"))?;
        self.inference.validate(&format!("{path}.inference"))
    }
}
