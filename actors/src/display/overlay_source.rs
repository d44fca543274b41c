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
        OverlayInputs {
            insufflator: self.devices.insufflator.borrow().clone(),
            light: self.devices.light.borrow().clone(),
            camera: self.devices.camera.borrow().clone(),
            pedal: self.devices.pedal.borrow().clone(),
            ai: Some(self.video.ai.status.borrow().clone()),
            result: self.video.ai.drawable(now, self.max_result_age),
            class_names: self.class_names.clone(),
            high_risk_classes: self.high_risk_classes.clone(),
            high_risk_threshold: self.high_risk_threshold,
            exam: self.video.exam.borrow().clone(),
            alarms: self.events.active_alarms(),
            enhancement: self.enhancement(),
            safe_state: self.setpoints.safe_state(),
        }
    }
}
