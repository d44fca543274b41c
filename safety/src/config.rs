//! What the island is given at start: plain values, already validated by
//! the tower's config loader (`SafetyConfig` in `endotower-actors`), which
//! converts into this.

use crate::link::LinkTiming;
use std::net::SocketAddr;
use std::time::Duration;

/// How a device is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Tcp(SocketAddr),
    /// A serial line; devices on one line share one connection.
    Rtu {
        path: String,
        baud: u32,
    },
}

/// One device as the island sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceLink {
    pub transport: Transport,
    pub unit: u8,
    pub timing: LinkTiming,
}

/// Thresholds and timing of the island.
#[derive(Debug, Clone, PartialEq)]
pub struct IslandConfig {
    /// Cycle period (absolute deadlines).
    pub period: Duration,
    /// A device whose last fresh reading is older than this counts as missing.
    pub stale: Duration,
    /// Camera and pedal heartbeats are written this often.
    pub aux_heartbeat: Duration,
    /// Inflow is inhibited at P >= P1 + this.
    pub overpressure_margin_mmhg: f64,
    /// Plausible spans; readings outside are invalid.
    pub pressure_span_mmhg: [f64; 2],
    pub temperature_span_c: [f64; 2],
    /// The two pressure channels disagree when they differ by more than this...
    pub pressure_disagree_mmhg: f64,
    /// ...for longer than this.
    pub pressure_disagree_for: Duration,
    /// A channel is stuck when it stays within this of its value...
    pub pressure_stuck_tolerance_mmhg: f64,
    /// ...while the other channel moves by more than this.
    pub pressure_stuck_motion_mmhg: f64,
    /// PRESSURE_LOW when the pressure stays under P1 minus this...
    pub pressure_low_margin_mmhg: f64,
    /// ...for longer than this (after it had reached P1 minus the margin).
    pub pressure_low_for: Duration,
    /// A temperature is stuck when it stays within this...
    pub temperature_stuck_tolerance_c: f64,
    /// ...while the applied drive has differed by at least this (percent of
    /// full drive) from its value when the temperature last moved...
    pub temperature_stuck_drive_pct: f64,
    /// ...for longer than this.
    pub temperature_stuck_for: Duration,
    pub led_max_c: f64,
    pub led_hysteresis_c: f64,
    pub tip_max_c: f64,
    pub light_safe_cap_pct: u16,
    /// Try SCHED_FIFO for the island and watchdog threads.
    pub realtime_priority: bool,
    /// A running island with no completed cycle for this long is replaced.
    pub stall_limit: Duration,
    pub insufflator: DeviceLink,
    pub light: DeviceLink,
    pub camera: DeviceLink,
    pub pedal: DeviceLink,
}

/// P2 = min(P1 + 10, 30) mmHg (CN109151275A [0034]).
pub fn relief_threshold(p1: f64) -> f64 {
    (p1 + 10.0).min(P2_CEILING_MMHG)
}

/// The highest P2 can be.
pub const P2_CEILING_MMHG: f64 = 30.0;

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub(crate) fn link() -> DeviceLink {
        DeviceLink {
            transport: Transport::Tcp("127.0.0.1:1".parse().unwrap()),
            unit: 1,
            timing: LinkTiming {
                timeout: Duration::from_micros(1500),
                lost_after: 3,
                backoff_initial: Duration::from_millis(5),
                backoff_max: Duration::from_millis(100),
            },
        }
    }

    pub(crate) fn config() -> IslandConfig {
        IslandConfig {
            period: Duration::from_millis(2),
            stale: Duration::from_millis(20),
            aux_heartbeat: Duration::from_millis(50),
            overpressure_margin_mmhg: 2.0,
            pressure_span_mmhg: [-10.0, 80.0],
            temperature_span_c: [-20.0, 150.0],
            pressure_disagree_mmhg: 2.0,
            pressure_disagree_for: Duration::from_millis(100),
            pressure_stuck_tolerance_mmhg: 0.2,
            pressure_stuck_motion_mmhg: 1.5,
            pressure_low_margin_mmhg: 3.0,
            pressure_low_for: Duration::from_secs(5),
            temperature_stuck_tolerance_c: 0.05,
            temperature_stuck_drive_pct: 30.0,
            temperature_stuck_for: Duration::from_secs(10),
            led_max_c: 75.0,
            led_hysteresis_c: 10.0,
            tip_max_c: 41.0,
            light_safe_cap_pct: 30,
            realtime_priority: false,
            stall_limit: Duration::from_millis(50),
            insufflator: link(),
            light: link(),
            camera: link(),
            pedal: link(),
        }
    }
}
