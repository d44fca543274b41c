//! Camera control unit: status (streaming, sensor, format, temperature) and
//! the exposure, gain and white balance settings, written with read-back.

use crate::device_actor::{ControlCtx, DeviceControl};
use crate::device_status::CameraStatus;
use crate::events::Severity;
use crate::link::LinkState;
use crate::registers::{self, camera as reg};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Camera settings (register scaling in [`crate::registers::camera`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraSettings {
    pub exposure_us: u32,
    pub gain_db: f64,
    pub white_balance_k: u32,
}

impl CameraSettings {
    /// Each setting must fit its register's range (the device refuses
    /// anything else with exception 0x03).
    pub fn validate(&self, path: &str) -> Result<(), crate::config::ConfigError> {
        let fields = [
            ("exposure_us", f64::from(self.exposure_us), reg::EXPOSURE),
            ("gain_db", self.gain_db, reg::GAIN),
            ("white_balance_k", f64::from(self.white_balance_k), reg::WHITE_BALANCE),
        ];
        for ((name, value, addr), word) in fields.into_iter().zip(self.words()) {
            let Some(spec) = registers::spec(reg::MAP, addr) else { continue };
            if !value.is_finite() || !spec.accepts(word) {
                let (lo, hi) = spec.range.unwrap_or((0, u16::MAX));
                return Err(crate::config::ConfigError::new(
                    format!("{path}.{name}"),
                    value,
                    format!(
                        "a value in {} ..= {} {} (register {})",
                        f64::from(lo) * spec.scale,
                        f64::from(hi) * spec.scale,
                        spec.unit,
                        spec.name
                    ),
                ));
            }
        }
        Ok(())
    }

    fn words(&self) -> Vec<u16> {
        vec![
            registers::encode_unsigned(f64::from(self.exposure_us), 10.0),
            registers::encode_unsigned(self.gain_db, 0.1),
            registers::encode_unsigned(f64::from(self.white_balance_k), 10.0),
        ]
    }
}

/// Camera link, poll rate and settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    pub link: crate::config::LinkConfig,
    pub poll_hz: f64,
    pub settings: CameraSettings,
}

impl CameraConfig {
    pub fn validate(&self, path: &str) -> Result<(), crate::config::ConfigError> {
        self.link.validate(&format!("{path}.link"))?;
        crate::config::check_range(&format!("{path}.poll_hz"), self.poll_hz, 0.1, 500.0, "Hz")?;
        self.settings.validate(&format!("{path}.settings"))
    }
}

pub struct CameraControl {
    settings: CameraSettings,
    status: CameraStatus,
    tx: watch::Sender<CameraStatus>,
}

impl CameraControl {
    pub fn new(settings: CameraSettings, tx: watch::Sender<CameraStatus>) -> Self {
        Self { settings, status: CameraStatus::default(), tx }
    }
}

impl DeviceControl for CameraControl {
    const READ_LEN: u16 = reg::WHITE_BALANCE + 1;
    const CONTROL_ADDR: u16 = reg::EXPOSURE;
    const CONTROL_LEN: u16 = reg::WHITE_BALANCE - reg::EXPOSURE + 1;
    crate::status_on_watch!(CameraStatus);

    fn update(&mut self, w: &[u16], ctx: &mut ControlCtx<'_>) -> Option<Vec<u16>> {
        let st = w[reg::STATUS as usize];
        let s = &mut self.status;
        s.streaming = st & reg::status::STREAMING != 0;
        let ok = st & reg::status::SENSOR_OK != 0;
        if ok != s.sensor_ok {
            s.sensor_ok = ok;
            if ok {
                ctx.events.clear("camera", "SENSOR_FAULT", "camera sensor ok");
            } else {
                ctx.events.raise("camera", "SENSOR_FAULT", Severity::Medium, "camera reports a sensor fault");
            }
        }
        s.failsafe = st & reg::status::FAILSAFE != 0;
        s.sensor_temp_c = registers::decode_signed(w[reg::SENSOR_TEMP as usize], 0.1);
        s.frame_counter = w[reg::FRAME_COUNTER as usize];
        s.width = w[reg::WIDTH as usize];
        s.height = w[reg::HEIGHT as usize];
        s.fps = w[reg::FPS as usize];
        Some(self.settings.words())
    }

    fn on_link_down(&mut self, _state: LinkState, _ctx: &mut ControlCtx<'_>) {
        self.status.streaming = false;
    }
}
