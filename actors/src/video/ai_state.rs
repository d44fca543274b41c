//! What the AI branch publishes for the display and telemetry: whether it is
//! online, and the latest result with the frame it came from. Latest wins;
//! readers never block the inference side.

use super::detection::Detection;
use super::selector::Reason;
use serde::Serialize;
use std::time::Instant;
use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
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
    pub context: AiContext,
}

/// What the result may be used for: whether the model is a demonstration,
/// and why lesion alarms are off (see [`super::model_card`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AiContext {
    pub demo: bool,
    /// `None` when lesion alarms are on for this exam; else why they are off.
    pub alarms_off: Option<String>,
    /// What the frame showed (the scene gate).
    pub scene: super::content_area::Scene,
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

impl AiChannels {
    /// The result to draw now: the latest one, if the AI is online and the
    /// result's frame is not older than `max_age` (a stale box would mark a
    /// place the camera has left).
    pub fn drawable(&self, now: Instant, max_age: std::time::Duration) -> Option<AiResult> {
        if *self.status.borrow() != AiStatus::Online {
            return None;
        }
        self.result.borrow().as_ref().filter(|r| now.saturating_duration_since(r.captured_at) <= max_age).cloned()
    }
}

impl Default for AiChannels {
    fn default() -> Self {
        Self { status: watch::channel(AiStatus::Starting).0, result: watch::channel(None).0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::selector::Reason;
    use std::time::Duration;

    #[test]
    fn hz014_results_older_than_the_limit_or_from_an_offline_ai_are_not_drawn() {
        let ch = AiChannels::default();
        let t0 = Instant::now();
        ch.result.send_replace(Some(AiResult {
            frame_seq: 7,
            reason: Reason::Auto,
            captured_at: t0,
            finished_at: t0,
            detections: vec![],
            high_risk: false,
            context: AiContext::default(),
        }));
        assert!(ch.drawable(t0, Duration::from_millis(100)).is_none(), "AI not online yet");
        ch.status.send_replace(AiStatus::Online);
        assert_eq!(ch.drawable(t0 + Duration::from_millis(100), Duration::from_millis(100)).map(|r| r.frame_seq), Some(7));
        assert!(ch.drawable(t0 + Duration::from_millis(101), Duration::from_millis(100)).is_none(), "too old");
        ch.status.send_replace(AiStatus::Offline { reason: "x".into() });
        assert!(ch.drawable(t0, Duration::from_millis(100)).is_none(), "offline");
    }
}
