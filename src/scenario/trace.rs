//! What a scenario run records: the physical signals over time (the
//! simulators' true state, not the tower's readings) and the marked moments
//! (faults, alarms, restarts, interlock trips). Reports and plots are made
//! from it.

use serde::Serialize;

/// One sample of the tower's physical state, `t_s` seconds of scenario time
/// after the start.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t_s: f64,
    /// True cavity pressure, mmHg.
    pub pressure_mmhg: f64,
    /// Actual inflow, L/min.
    pub flow_lpm: f64,
    /// CO2 supply (cylinder) pressure, bar.
    pub supply_bar: f64,
    /// LED temperature, degC.
    pub led_temp_c: f64,
    /// Light output, percent of nominal.
    pub light_output_pct: f64,
    /// Relief valve open (control or safety vent).
    pub relief_open: bool,
    /// Resident memory of the tower process, MiB.
    pub rss_mib: f64,
    /// Longest wait of the display for a frame in this sample window, ms
    /// (NaN with video off).
    pub display_gap_ms: f64,
    /// 1 while the AI is online, 0 while it is not (NaN with video off).
    pub ai_online: f64,
}

/// What a marker records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkerKind {
    /// A timeline action that injects a fault.
    Fault,
    /// A timeline action that clears a fault, or an operator action.
    Action,
    /// An alarm raised.
    Alarm,
    /// A supervisor decided a restart (or contained, or melted down), or a
    /// restarted child runs again (`up ...`).
    Restart,
    /// An alarm cleared.
    Clear,
    /// A safety interlock engaged (hazard-coded event from the island).
    Trip,
}

/// A moment worth marking on the plots and listing in the report.
#[derive(Debug, Clone, Serialize)]
pub struct Marker {
    pub t_s: f64,
    pub kind: MarkerKind,
    /// Short label, e.g. `leak_step 10 L/min`, `HZ-001`, `restart insufflator`.
    pub label: String,
}

/// Reference lines drawn on the plots.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    /// Set pressure P1, mmHg.
    pub p1_mmhg: f64,
    /// Relief threshold P2 = min(P1 + 10, 30), mmHg.
    pub p2_mmhg: f64,
    /// Supply-low alarm threshold, bar.
    pub supply_low_bar: f64,
    /// Island LED shut-off temperature, degC.
    pub led_max_c: f64,
    /// The video source's frame interval, ms (the display-gap reference).
    pub frame_interval_ms: f64,
}

/// Everything recorded in one run.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    pub scenario: String,
    pub limits: Limits,
    pub samples: Vec<Sample>,
    pub markers: Vec<Marker>,
}
