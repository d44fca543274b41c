//! The video path's shared channels and counters, created once by the tower
//! and handed to every (re)start of the video actors, so a restarted stage
//! picks up where its predecessor left off and observers never re-subscribe.

use super::ai_state::AiChannels;
use super::analysis::AnalysisStats;
use super::archive::ExamInfo;
use super::capture::CaptureStats;
use super::enhance::channels::EnhanceChannels;
use super::frame::FrameRef;
use super::inference::InferenceHooks;
use super::selector::Pick;
use crate::display::composed::ComposedSlot;
use crate::display::sink::DisplayStats;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, watch};

#[derive(Clone)]
pub struct VideoChannels {
    /// Capture -> display and analysis, latest wins.
    pub frames: watch::Sender<Option<FrameRef>>,
    pub ai: AiChannels,
    pub picks: broadcast::Sender<Pick>,
    pub capture: Arc<CaptureStats>,
    pub analysis: Arc<AnalysisStats>,
    pub display: Arc<Mutex<DisplayStats>>,
    /// The last composed picture (snapshots, window, recording).
    pub composed: Arc<ComposedSlot>,
    pub inference_hooks: Arc<InferenceHooks>,
    /// Exam info in force (config, CLI, later remote push).
    pub exam: watch::Sender<ExamInfo>,
    /// The enhancement stage: switch, status, verdicts, counters.
    pub enhance: EnhanceChannels,
}

impl Default for VideoChannels {
    fn default() -> Self {
        Self {
            frames: watch::channel(None).0,
            ai: AiChannels::default(),
            picks: broadcast::channel(64).0,
            capture: Arc::default(),
            analysis: Arc::default(),
            display: Arc::default(),
            composed: Arc::default(),
            inference_hooks: Arc::default(),
            exam: watch::channel(ExamInfo::default()).0,
            enhance: EnhanceChannels::default(),
        }
    }
}
