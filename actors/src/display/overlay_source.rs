//! Reads the tower's state (device status channels, AI state, exam, active
//! alarms, safe-state latch) into [`OverlayInputs`] for the display actor.

use super::overlay::OverlayInputs;
use crate::device_status::DeviceChannels;
use crate::events::EventBus;
use crate::setpoints::Setpoints;
use crate::video::channels::VideoChannels;
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct OverlaySource {
    pub devices: DeviceChannels,
    pub video: VideoChannels,
    pub events: EventBus,
    pub setpoints: Setpoints,
    pub class_names: Vec<String>,
    pub high_risk_classes: Vec<String>,
    pub high_risk_threshold: f32,
    /// Results older than this are not drawn.
    pub max_result_age: Duration,
}

impl OverlaySource {
    /// Shown while the stage is switched on: active or not, and the share of
    /// frames it enhanced.
    fn enhancement(&self) -> Option<(bool, f32)> {
        let e = &self.video.enhance;
        let active = matches!(*e.status.borrow(), crate::video::enhance::channels::EnhanceStatus::Active);
        (*e.switch.borrow()).then(|| (active, e.stats.enhanced_fraction()))
    }

    pub fn snapshot(&self, now: Instant) -> OverlayInputs {
        // One read guard at a time, each dropped at the end of its own
        // statement. Inside one struct literal every `borrow()` guard would
        // live to the end of the literal: holding the AI status guard while
        // `drawable` reads the status again deadlocked against the inference
        // actor's `send_if_modified` (a waiting writer blocks new readers),
        // freezing both runtime workers (seen in the scenario suite).
        let insufflator = self.devices.insufflator.borrow().clone();
        let light = self.devices.light.borrow().clone();
        let camera = self.devices.camera.borrow().clone();
        let pedal = self.devices.pedal.borrow().clone();
        let ai = self.video.ai.status.borrow().clone();
        let result = self.video.ai.drawable(now, self.max_result_age);
        let exam = self.video.exam.borrow().clone();
        let alarms = self.events.active_alarms();
        let enhancement = self.enhancement();
        OverlayInputs {
            insufflator,
            light,
            camera,
            pedal,
            ai: Some(ai),
            result,
            class_names: self.class_names.clone(),
            high_risk_classes: self.high_risk_classes.clone(),
            high_risk_threshold: self.high_risk_threshold,
            exam,
            alarms,
            enhancement,
            safe_state: self.setpoints.safe_state(),
        }
    }
}
