//! What the AI branch publishes for the display and telemetry: whether it is
//! online, and the latest result with the frame it came from. Latest wins;
//! readers never block the inference side.

use super::detection::Detection;
use super::selector::Reason;
use serde::Serialize;
use std::time::Instant;
use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AiStatus {
    Starting,
    Online,
    /// The picture goes on as raw video; the reason is shown.
    Offline {
        reason: String,
    },
}

/// The result of one analysed frame.
#[derive(Debug, Clone, Serialize)]
pub struct AiResult {
    /// Sequence number of the frame the detections belong to.
    pub frame_seq: u64,
    pub reason: Reason,
    #[serde(skip)]
    pub captured_at: Instant,
    #[serde(skip)]
    pub finished_at: Instant,
    pub detections: Vec<Detection>,
    pub high_risk: bool,
}

impl AiResult {
    /// Capture-to-result delay.
    pub fn annotation_delay(&self) -> std::time::Duration {
        self.finished_at.duration_since(self.captured_at)
    }
}

/// The AI channels, created once by the tower and shared by restarts.
#[derive(Clone)]
pub struct AiChannels {
    pub status: watch::Sender<AiStatus>,
    pub result: watch::Sender<Option<AiResult>>,
}

impl Default for AiChannels {
    fn default() -> Self {
        Self { status: watch::channel(AiStatus::Starting).0, result: watch::channel(None).0 }
    }
}
