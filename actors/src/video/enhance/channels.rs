//! What the enhancement stage shares with the display, the overlay and
//! telemetry. Created once by the tower, so a restarted stage picks up
//! where its predecessor left off.

use crate::video::frame::FrameRef;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{broadcast, watch};

#[derive(Debug, Clone, PartialEq)]
pub enum EnhanceStatus {
    /// Switched off: frames pass unchanged, nothing waits.
    Off,
    Starting,
    /// Classifying every frame; the display waits for verdicts (up to the budget).
    Active,
    /// Failed (crash, hang, model missing or corrupt): frames pass unchanged.
    Offline {
        reason: String,
    },
}

/// The stage's word on one frame.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub seq: u64,
    pub sharp_prob: f32,
    /// Index into the configured sites.
    pub site: usize,
    /// The deblurred frame (same seq and capture time), for blurred frames.
    pub enhanced: Option<FrameRef>,
}

/// Counters, for the display, telemetry and benchmarks.
#[derive(Debug, Default)]
pub struct EnhanceStats {
    /// Frames the worker classified.
    pub classified: AtomicU64,
    /// Of those, judged blurred and sent through the deblurring model.
    pub deblurred: AtomicU64,
    /// Frames the display showed enhanced (verdict in time, deblurred).
    pub shown_enhanced: AtomicU64,
    /// Frames shown unchanged on a verdict (sharp).
    pub shown_sharp: AtomicU64,
    /// Frames shown unchanged because their deadline passed first.
    pub shown_late: AtomicU64,
    /// Frames shown unchanged because the stage was off or down.
    pub shown_bypassed: AtomicU64,
}

impl EnhanceStats {
    /// Fraction of the frames shown while the stage was active that were enhanced.
    pub fn enhanced_fraction(&self) -> f32 {
        let e = self.shown_enhanced.load(Ordering::Relaxed);
        let n = e + self.shown_sharp.load(Ordering::Relaxed) + self.shown_late.load(Ordering::Relaxed);
        if n == 0 {
            0.0
        } else {
            e as f32 / n as f32
        }
    }
}

/// Failure injection (tests and scenarios).
#[derive(Debug, Default)]
pub struct EnhanceHooks {
    /// Sleep this long in the next frame (a hang).
    pub hang_next_ms: AtomicU64,
    /// Panic in the next frame.
    pub panic_next: std::sync::atomic::AtomicBool,
}

#[derive(Clone)]
pub struct EnhanceChannels {
    pub switch: watch::Sender<bool>,
    pub status: watch::Sender<EnhanceStatus>,
    pub verdicts: broadcast::Sender<Verdict>,
    pub stats: Arc<EnhanceStats>,
    pub hooks: Arc<EnhanceHooks>,
}

impl Default for EnhanceChannels {
    fn default() -> Self {
        Self {
            switch: watch::channel(false).0,
            status: watch::channel(EnhanceStatus::Off).0,
            verdicts: broadcast::channel(64).0,
            stats: Arc::default(),
            hooks: Arc::default(),
        }
    }
}
