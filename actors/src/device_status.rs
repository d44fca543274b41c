//! What each device actor publishes: its latest status (a `watch` channel per
//! device, latest-wins) and pedal presses (a broadcast). The channels are
//! created once by the tower and outlive actor restarts, so the display and
//! telemetry never have to look actors up.

use crate::link::LinkState;
use schemars::JsonSchema;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InsufflationPhase {
    /// PWM flow control while P < P1.
    Inflating,
    /// Valves closed at P >= P1.
    Holding,
    /// Relief open after P >= P2, until P < P1.
    Venting,
    /// No valid pressure reading: valves closed.
    #[default]
    Fault,
}

/// A device status the device actor stamps with its link state and poll
/// count before publishing it.
pub trait LinkStatus: Clone + Send + Sync + 'static {
    fn set_link(&mut self, link: LinkState, polls: u64);
}

macro_rules! link_status {
    ($($t:ty),*) => {$(
        impl LinkStatus for $t {
            fn set_link(&mut self, link: LinkState, polls: u64) {
                self.link = link;
                self.polls = polls;
            }
        }
    )*};
}

link_status!(InsufflatorStatus, LightStatus, CameraStatus, PedalStatus);

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct InsufflatorStatus {
    pub link: LinkState,
    pub phase: InsufflationPhase,
    pub set_pressure_mmhg: f64,
    pub set_flow_lpm: f64,
    pub pressure_mmhg: Option<f64>,
    pub flow_lpm: Option<f64>,
    pub supply_bar: Option<f64>,
    pub duty_pct: f64,
    pub relief_open: bool,
    pub failsafe: bool,
    pub safety_inhibit: bool,
    pub safety_vent: bool,
    pub supply_low: bool,
    pub polls: u64,
}

impl Default for InsufflatorStatus {
    fn default() -> Self {
        Self {
            link: LinkState::Connecting,
            phase: InsufflationPhase::Fault,
            set_pressure_mmhg: 0.0,
            set_flow_lpm: 0.0,
            pressure_mmhg: None,
            flow_lpm: None,
            supply_bar: None,
            duty_pct: 0.0,
            relief_open: false,
            failsafe: false,
            safety_inhibit: false,
            safety_vent: false,
            supply_low: false,
            polls: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct LightStatus {
    pub link: LinkState,
    pub set_intensity_pct: f64,
    /// Intensity actually targeted after derating.
    pub target_intensity_pct: f64,
    /// LED current the PID is holding.
    pub target_current_ma: f64,
    pub current_ma: Option<f64>,
    pub output_pct: Option<f64>,
    pub led_temp_c: Option<f64>,
    pub tip_temp_c: Option<f64>,
    pub drive_pct: f64,
    pub fan_on: bool,
    pub enabled: bool,
    pub cable_present: bool,
    pub derated: bool,
    pub over_temperature: bool,
    pub failsafe: bool,
    pub safety_cap_pct: Option<u16>,
    pub polls: u64,
}

impl Default for LightStatus {
    fn default() -> Self {
        Self {
            link: LinkState::Connecting,
            set_intensity_pct: 0.0,
            target_intensity_pct: 0.0,
            target_current_ma: 0.0,
            current_ma: None,
            output_pct: None,
            led_temp_c: None,
            tip_temp_c: None,
            drive_pct: 0.0,
            fan_on: false,
            enabled: false,
            cable_present: false,
            derated: false,
            over_temperature: false,
            failsafe: false,
            safety_cap_pct: None,
            polls: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct CameraStatus {
    pub link: LinkState,
    pub streaming: bool,
    pub sensor_ok: bool,
    pub sensor_temp_c: Option<f64>,
    pub width: u16,
    pub height: u16,
    pub fps: u16,
    pub frame_counter: u16,
    pub failsafe: bool,
    pub polls: u64,
}

impl Default for CameraStatus {
    fn default() -> Self {
        Self {
            link: LinkState::Connecting,
            streaming: false,
            sensor_ok: false,
            sensor_temp_c: None,
            width: 0,
            height: 0,
            fps: 0,
            frame_counter: 0,
            failsafe: false,
            polls: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct PedalStatus {
    pub link: LinkState,
    pub presses: u64,
    pub pressed: bool,
    pub failsafe: bool,
    pub polls: u64,
}

impl Default for PedalStatus {
    fn default() -> Self {
        Self { link: LinkState::Connecting, presses: 0, pressed: false, failsafe: false, polls: 0 }
    }
}

/// A foot-pedal press, as seen by the tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PedalPress {
    /// Presses counted by the tower since start.
    pub number: u64,
}

/// The status channels of all devices. Cheap to clone.
#[derive(Clone)]
pub struct DeviceChannels {
    pub insufflator: watch::Sender<InsufflatorStatus>,
    pub light: watch::Sender<LightStatus>,
    pub camera: watch::Sender<CameraStatus>,
    pub pedal: watch::Sender<PedalStatus>,
    pub pedal_presses: broadcast::Sender<PedalPress>,
}

impl Default for DeviceChannels {
    fn default() -> Self {
        Self {
            insufflator: watch::channel(InsufflatorStatus::default()).0,
            light: watch::channel(LightStatus::default()).0,
            camera: watch::channel(CameraStatus::default()).0,
            pedal: watch::channel(PedalStatus::default()).0,
            pedal_presses: broadcast::channel(64).0,
        }
    }
}
