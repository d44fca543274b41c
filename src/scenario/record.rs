//! What the runner records while a scenario runs, besides the plotted
//! [`Trace`](super::trace::Trace): every event of the bus, display gaps,
//! the timeline as executed, and the state of the tower at the end.

use endotower_actors::events::{Event, EventSink};
use endotower_actors::supervisor::ChildStatus;
use serde::Serialize;
use std::sync::Mutex;
use std::time::Instant;

/// Sees every event synchronously (an [`EventSink`]), stamped with scenario time.
pub struct EventRecorder {
    start: Instant,
    time_scale: f64,
    log: Mutex<Vec<(f64, Event)>>,
}

impl EventRecorder {
    pub fn new(start: Instant, time_scale: f64) -> Self {
        Self { start, time_scale, log: Mutex::default() }
    }
    pub fn take(&self) -> Vec<(f64, Event)> {
        std::mem::take(&mut *self.log.lock().unwrap_or_else(|p| p.into_inner()))
    }
    pub fn len(&self) -> usize {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl EventSink for EventRecorder {
    fn record(&self, event: &Event) {
        let t = self.start.elapsed().as_secs_f64() * self.time_scale;
        self.log.lock().unwrap_or_else(|p| p.into_inner()).push((t, event.clone()));
    }
}

/// One executed timeline step.
#[derive(Debug, Clone, Serialize)]
pub struct ActionRecord {
    /// Planned and actual scenario time.
    pub at_s: f64,
    pub done_s: f64,
    pub label: String,
    pub fault: bool,
    /// Why it could not be carried out, if it could not.
    pub error: Option<String>,
    /// A failure was expected (`may_fail`).
    pub may_fail: bool,
}

/// The tower at the end of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EndState {
    pub root_running: bool,
    /// (supervisor, child status) for root, devices, video and analysis.
    pub children: Vec<(String, ChildStatus)>,
    pub set_pressure_mmhg: f64,
    pub intensity_pct: f64,
    pub safe_state: bool,
    pub ai_online: bool,
    /// Active alarms as `source/code`.
    pub active_alarms: Vec<String>,
    pub display_shown: u64,
    pub display_skipped: u64,
    pub display_reordered: u64,
    pub capture_rejected: u64,
}

/// Everything the invariants are judged on.
#[derive(Debug, Clone, Default)]
pub struct RunRecord {
    pub events: Vec<(f64, Event)>,
    /// (scenario time, longest wait for a new frame in that sample window,
    /// ms, whether the source itself delivered nothing then: a dropout of
    /// the camera, not a delay of the tower).
    pub display_gaps: Vec<(f64, f64, bool)>,
    /// The source's frame interval, ms.
    pub frame_interval_ms: f64,
    /// Set pressure P1 at each trace sample (same index).
    pub p1_mmhg: Vec<f64>,
    pub ai_went_offline: bool,
    /// Heartbeat fail-safe entries per device during the run.
    pub failsafe_entries: Vec<(String, u64)>,
    /// (scenario time, supervised children not running) every 100 ms (wall).
    pub children_down: Vec<(f64, Vec<String>)>,
    pub actions: Vec<ActionRecord>,
    pub end: EndState,
    /// Bodies received over MQTT (events, replies), when a broker was used.
    pub mqtt_events: Option<Vec<serde_json::Value>>,
    pub mqtt_replies: Vec<serde_json::Value>,
    /// How often the observer (re)connected to the broker.
    pub mqtt_connects: u64,
    /// Last time a trace sample was taken, scenario s; 0 if none.
    pub sim_s: f64,
    pub wall_s: f64,
    pub warmup_s: f64,
    pub video: bool,
}

pub use crate::memory_policy::rss_mib;
