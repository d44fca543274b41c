//! Typed configuration sections used by the actors, with validation that names
//! the field path, the value and what was expected.
//!
//! The whole-tower config (file + environment loading) lives in the binary crate;
//! each section here validates itself under the path it is mounted at.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// A config value that parsed but makes no sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("config error: `{field}` = {value}: expected {expected}")]
pub struct ConfigError {
    pub field: String,
    pub value: String,
    pub expected: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, value: impl fmt::Display, expected: impl Into<String>) -> Self {
        Self { field: field.into(), value: value.to_string(), expected: expected.into() }
    }
}

/// Check `lo <= v <= hi` (and finite), naming `path` on failure.
pub fn check_range(path: &str, v: f64, lo: f64, hi: f64, unit: &str) -> Result<(), ConfigError> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(())
    } else {
        Err(ConfigError::new(path, v, format!("a number in {lo} ..= {hi} {unit}")))
    }
}

/// Check an integer is within range.
pub fn check_int(path: &str, v: u64, lo: u64, hi: u64, unit: &str) -> Result<(), ConfigError> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(ConfigError::new(path, v, format!("an integer in {lo} ..= {hi} {unit}")))
    }
}

/// How a device is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Transport {
    /// Modbus TCP, `addr` as `host:port`.
    Tcp { addr: String },
    /// Modbus RTU on a serial line (RS-485 adapter or pseudo-terminal).
    Rtu { path: String, baud: u32 },
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Tcp { addr } => write!(f, "tcp://{addr}"),
            Transport::Rtu { path, baud } => write!(f, "rtu://{path}@{baud}"),
        }
    }
}

impl Transport {
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        match self {
            Transport::Tcp { addr } => addr.parse::<std::net::SocketAddr>().map(|_| ()).map_err(|_| {
                ConfigError::new(format!("{path}.addr"), format!("{addr:?}"), "an IP socket address like \"127.0.0.1:15020\"")
            }),
            Transport::Rtu { path: dev, baud } => {
                if dev.is_empty() {
                    return Err(ConfigError::new(format!("{path}.path"), "\"\"", "a serial device path"));
                }
                check_int(&format!("{path}.baud"), u64::from(*baud), 1200, 4_000_000, "baud")
            }
        }
    }
}

/// One Modbus link: transport, unit id, timeout and reconnect backoff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    pub transport: Transport,
    pub unit: u8,
    /// Per-request timeout.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive failed requests after which a Degraded link is declared Lost.
    #[serde(default = "default_lost_after")]
    pub lost_after: u32,
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
}

fn default_timeout_ms() -> u64 {
    50
}
fn default_lost_after() -> u32 {
    3
}
fn default_backoff_initial_ms() -> u64 {
    50
}
fn default_backoff_max_ms() -> u64 {
    2000
}

impl LinkConfig {
    pub fn tcp(addr: impl Into<String>, unit: u8) -> Self {
        Self {
            transport: Transport::Tcp { addr: addr.into() },
            unit,
            timeout_ms: default_timeout_ms(),
            lost_after: default_lost_after(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        self.transport.validate(&format!("{path}.transport"))?;
        check_int(&format!("{path}.unit"), u64::from(self.unit), 1, 247, "(Modbus unit id)")?;
        check_int(&format!("{path}.timeout_ms"), self.timeout_ms, 1, 10_000, "ms")?;
        check_int(&format!("{path}.lost_after"), u64::from(self.lost_after), 1, 1000, "requests")?;
        check_int(&format!("{path}.backoff_initial_ms"), self.backoff_initial_ms, 1, 60_000, "ms")?;
        check_int(&format!("{path}.backoff_max_ms"), self.backoff_max_ms, self.backoff_initial_ms, 600_000, "ms (>= backoff_initial_ms)")
    }
}

/// The operator limits every setpoint is validated against, whatever its source
/// (config, HMI, remote command).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub min_set_pressure_mmhg: f64,
    pub max_set_pressure_mmhg: f64,
    pub max_flow_lpm: f64,
    pub max_intensity_pct: f64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self { min_set_pressure_mmhg: 3.0, max_set_pressure_mmhg: 25.0, max_flow_lpm: 20.0, max_intensity_pct: 100.0 }
    }
}

/// P2 = min(P1 + 10, 30) mmHg and its ceiling (CN109151275A [0034]),
/// defined with the island.
pub use endotower_safety::config::{relief_threshold, P2_CEILING_MMHG};

impl LimitsConfig {
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        check_range(&format!("{path}.min_set_pressure_mmhg"), self.min_set_pressure_mmhg, 0.0, 15.0, "mmHg")?;
        check_range(
            &format!("{path}.max_set_pressure_mmhg"),
            self.max_set_pressure_mmhg,
            self.min_set_pressure_mmhg,
            P2_CEILING_MMHG - 2.0,
            "mmHg",
        )?;
        check_range(&format!("{path}.max_flow_lpm"), self.max_flow_lpm, 0.1, 45.0, "L/min")?;
        check_range(&format!("{path}.max_intensity_pct"), self.max_intensity_pct, 1.0, 100.0, "%")
    }
}

/// Insufflator control (CN109151275A [0025]-[0036]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsufflatorConfig {
    pub link: LinkConfig,
    pub poll_hz: f64,
    /// P1, the set pressure.
    pub set_pressure_mmhg: f64,
    /// The standard flow the PWM loop holds while P < P1.
    pub set_flow_lpm: f64,
    /// PWM duty change per L/min of flow error per poll.
    pub pwm_gain_pct_per_lpm: f64,
    /// CO2 supply-low alarm threshold.
    pub supply_low_bar: f64,
}

/// LED light source control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LightConfig {
    pub link: LinkConfig,
    pub poll_hz: f64,
    pub intensity_pct: f64,
    /// LED current at 100 % intensity.
    pub nominal_current_ma: f64,
    pub kp: f64,
    pub ki: f64,
    pub kd: f64,
    pub fan_on_c: f64,
    pub fan_off_c: f64,
    /// Above this the intensity is derated to `derate_to_pct`.
    pub derate_c: f64,
    pub derate_to_pct: f64,
    /// Above this the control plane switches the LED off (the safety island
    /// has its own, independent limit).
    pub shutdown_c: f64,
}

/// Camera control unit and pedal: link and poll rate only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimpleDeviceConfig {
    pub link: LinkConfig,
    pub poll_hz: f64,
}

impl InsufflatorConfig {
    pub fn validate(&self, path: &str, limits: &LimitsConfig) -> Result<(), ConfigError> {
        self.link.validate(&format!("{path}.link"))?;
        check_range(&format!("{path}.poll_hz"), self.poll_hz, 1.0, 500.0, "Hz")?;
        check_range(
            &format!("{path}.set_pressure_mmhg"),
            self.set_pressure_mmhg,
            limits.min_set_pressure_mmhg,
            limits.max_set_pressure_mmhg,
            "mmHg (limits.min/max_set_pressure_mmhg)",
        )?;
        check_range(&format!("{path}.set_flow_lpm"), self.set_flow_lpm, 0.1, limits.max_flow_lpm, "L/min (limits.max_flow_lpm)")?;
        check_range(&format!("{path}.pwm_gain_pct_per_lpm"), self.pwm_gain_pct_per_lpm, 0.01, 50.0, "%/(L/min)")?;
        check_range(&format!("{path}.supply_low_bar"), self.supply_low_bar, 0.0, 100.0, "bar")
    }
}

impl LightConfig {
    pub fn validate(&self, path: &str, limits: &LimitsConfig) -> Result<(), ConfigError> {
        self.link.validate(&format!("{path}.link"))?;
        check_range(&format!("{path}.poll_hz"), self.poll_hz, 1.0, 500.0, "Hz")?;
        check_range(&format!("{path}.intensity_pct"), self.intensity_pct, 0.0, limits.max_intensity_pct, "% (limits.max_intensity_pct)")?;
        check_range(&format!("{path}.nominal_current_ma"), self.nominal_current_ma, 1.0, 10_000.0, "mA")?;
        check_range(&format!("{path}.kp"), self.kp, 0.0, 100.0, "")?;
        check_range(&format!("{path}.ki"), self.ki, 0.0, 1000.0, "")?;
        check_range(&format!("{path}.kd"), self.kd, 0.0, 100.0, "")?;
        check_range(&format!("{path}.fan_off_c"), self.fan_off_c, 0.0, 150.0, "degC")?;
        check_range(&format!("{path}.fan_on_c"), self.fan_on_c, self.fan_off_c, 150.0, "degC (>= fan_off_c)")?;
        check_range(&format!("{path}.derate_c"), self.derate_c, self.fan_on_c, 150.0, "degC (>= fan_on_c)")?;
        check_range(&format!("{path}.shutdown_c"), self.shutdown_c, self.derate_c, 150.0, "degC (>= derate_c)")?;
        check_range(&format!("{path}.derate_to_pct"), self.derate_to_pct, 0.0, 100.0, "%")
    }
}

impl SimpleDeviceConfig {
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        self.link.validate(&format!("{path}.link"))?;
        check_range(&format!("{path}.poll_hz"), self.poll_hz, 0.1, 500.0, "Hz")
    }
}

/// Safety island: its own links, period and hard limits. Converted into the
/// island's own [`endotower_safety::IslandConfig`] once validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetyConfig {
    /// Absolute-deadline period of the read -> update -> write loop.
    pub period_us: u64,
    /// Per-request timeout; must leave room inside the period.
    pub timeout_us: u64,
    /// A device whose last fresh, valid, in-range reading is older than this
    /// gets safe outputs.
    pub stale_ms: u64,
    /// Heartbeats to camera and pedal (no interlocks there) are sent this often.
    pub aux_heartbeat_ms: u64,
    /// Inflow is inhibited at P >= P1 + this, independent of the control loop.
    pub overpressure_margin_mmhg: f64,
    /// Plausible sensor span; readings outside are treated as invalid.
    pub pressure_span_mmhg: [f64; 2],
    pub temperature_span_c: [f64; 2],
    /// The two pressure channels disagree (HZ-024) when they differ by more
    /// than this for longer than `pressure_disagree_ms`.
    #[serde(default = "default_disagree_mmhg")]
    pub pressure_disagree_mmhg: f64,
    #[serde(default = "default_disagree_ms")]
    pub pressure_disagree_ms: u64,
    /// A pressure channel is stuck (HZ-024) when it stays within this of its
    /// value while the other channel moves by more than
    /// `pressure_stuck_motion_mmhg` away from it.
    #[serde(default = "default_stuck_tolerance_mmhg")]
    pub pressure_stuck_tolerance_mmhg: f64,
    #[serde(default = "default_stuck_motion_mmhg")]
    pub pressure_stuck_motion_mmhg: f64,
    /// PRESSURE_LOW (HZ-023) when the pressure stays under P1 minus this for
    /// `pressure_low_ms`, once P1 minus this had been reached.
    #[serde(default = "default_low_margin_mmhg")]
    pub pressure_low_margin_mmhg: f64,
    #[serde(default = "default_low_ms")]
    pub pressure_low_ms: u64,
    /// A light temperature is stuck (HZ-025) when it stays within
    /// `temperature_stuck_tolerance_c` while the applied drive has differed by
    /// `temperature_stuck_drive_pct` from its value for `temperature_stuck_ms`.
    /// The default tolerance is under one register step (0.1 C): the word
    /// did not change at all. A thermal mass turning from warming to cooling
    /// can sit within 0.3 C for several seconds; it cannot keep the same
    /// 0.1 C step for 10 s after a 30-point change of drive.
    #[serde(default = "default_temp_tolerance_c")]
    pub temperature_stuck_tolerance_c: f64,
    #[serde(default = "default_temp_drive_pct")]
    pub temperature_stuck_drive_pct: f64,
    #[serde(default = "default_temp_stuck_ms")]
    pub temperature_stuck_ms: u64,
    /// LED off at this temperature, back on below `led_max_c - led_hysteresis_c`.
    pub led_max_c: f64,
    pub led_hysteresis_c: f64,
    /// Light-cable tip temperature limit (tissue burn hazard).
    pub tip_max_c: f64,
    /// Drive cap applied when light readings are missing or in the tower safe state.
    pub light_safe_cap_pct: u16,
    /// Try SCHED_FIFO for the island thread (needs CAP_SYS_NICE; falls back with a warning).
    pub realtime_priority: bool,
    /// An island with no completed cycle for this long is replaced by a new
    /// one that takes over its latched state (well under the devices' 300 ms
    /// heartbeat fail-safe).
    #[serde(default = "default_stall_ms")]
    pub stall_ms: u64,
    pub insufflator: LinkConfig,
    pub light: LinkConfig,
    pub camera: LinkConfig,
    pub pedal: LinkConfig,
}

fn default_disagree_mmhg() -> f64 {
    2.0
}
fn default_disagree_ms() -> u64 {
    100
}
fn default_stuck_tolerance_mmhg() -> f64 {
    0.2
}
fn default_stuck_motion_mmhg() -> f64 {
    1.5
}
fn default_low_margin_mmhg() -> f64 {
    3.0
}
fn default_low_ms() -> u64 {
    5000
}
fn default_temp_tolerance_c() -> f64 {
    0.05
}
fn default_temp_drive_pct() -> f64 {
    30.0
}
fn default_temp_stuck_ms() -> u64 {
    10_000
}
fn default_stall_ms() -> u64 {
    50
}

impl SafetyConfig {
    pub fn period(&self) -> Duration {
        Duration::from_micros(self.period_us)
    }

    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        check_int(&format!("{path}.period_us"), self.period_us, 500, 100_000, "us")?;
        check_int(&format!("{path}.timeout_us"), self.timeout_us, 100, self.period_us, "us (<= period_us)")?;
        check_int(&format!("{path}.stale_ms"), self.stale_ms, 1, 250, "ms (must stay under the 300 ms device fail-safe)")?;
        check_int(&format!("{path}.aux_heartbeat_ms"), self.aux_heartbeat_ms, 1, 250, "ms")?;
        check_range(&format!("{path}.overpressure_margin_mmhg"), self.overpressure_margin_mmhg, 0.5, 9.0, "mmHg")?;
        let [lo, hi] = self.pressure_span_mmhg;
        if !(lo.is_finite() && hi.is_finite() && lo < hi && hi >= P2_CEILING_MMHG) {
            return Err(ConfigError::new(
                format!("{path}.pressure_span_mmhg"),
                format!("[{lo}, {hi}]"),
                "[low, high] with low < high and high >= 30 mmHg",
            ));
        }
        let [tlo, thi] = self.temperature_span_c;
        if !(tlo.is_finite() && thi.is_finite() && tlo < thi) {
            return Err(ConfigError::new(format!("{path}.temperature_span_c"), format!("[{tlo}, {thi}]"), "[low, high] with low < high"));
        }
        check_range(&format!("{path}.pressure_disagree_mmhg"), self.pressure_disagree_mmhg, 0.2, 10.0, "mmHg")?;
        check_int(&format!("{path}.pressure_disagree_ms"), self.pressure_disagree_ms, 0, 5000, "ms")?;
        check_range(&format!("{path}.pressure_stuck_tolerance_mmhg"), self.pressure_stuck_tolerance_mmhg, 0.01, 2.0, "mmHg")?;
        check_range(
            &format!("{path}.pressure_stuck_motion_mmhg"),
            self.pressure_stuck_motion_mmhg,
            2.0 * self.pressure_stuck_tolerance_mmhg,
            10.0,
            "mmHg (>= twice pressure_stuck_tolerance_mmhg)",
        )?;
        check_range(&format!("{path}.pressure_low_margin_mmhg"), self.pressure_low_margin_mmhg, 0.5, 20.0, "mmHg")?;
        check_int(&format!("{path}.pressure_low_ms"), self.pressure_low_ms, 100, 600_000, "ms")?;
        check_range(&format!("{path}.temperature_stuck_tolerance_c"), self.temperature_stuck_tolerance_c, 0.05, 5.0, "degC")?;
        check_range(&format!("{path}.temperature_stuck_drive_pct"), self.temperature_stuck_drive_pct, 5.0, 100.0, "%")?;
        check_int(&format!("{path}.temperature_stuck_ms"), self.temperature_stuck_ms, 500, 600_000, "ms")?;
        check_range(&format!("{path}.led_max_c"), self.led_max_c, 30.0, thi, "degC (inside temperature_span_c)")?;
        check_range(&format!("{path}.led_hysteresis_c"), self.led_hysteresis_c, 0.5, 50.0, "degC")?;
        check_range(&format!("{path}.tip_max_c"), self.tip_max_c, 30.0, 60.0, "degC")?;
        check_int(&format!("{path}.light_safe_cap_pct"), u64::from(self.light_safe_cap_pct), 0, 100, "%")?;
        check_int(
            &format!("{path}.stall_ms"),
            self.stall_ms,
            (2 * self.period_us).div_ceil(1000).max(5),
            200,
            "ms (at least two periods, and well under the devices' 300 ms heartbeat fail-safe)",
        )?;
        for (name, link) in [("insufflator", &self.insufflator), ("light", &self.light), ("camera", &self.camera), ("pedal", &self.pedal)] {
            link.validate(&format!("{path}.{name}"))?;
            if let Transport::Rtu { baud, .. } = &link.transport {
                // A sensor-block read on the wire: request 8 bytes, reply 5 + 2 x 8,
                // 10 bits a byte (8N1), plus 3.5 characters of silence around each frame.
                let wire_us = (29.0 + 7.0) * 10.0 * 1e6 / f64::from(*baud);
                if wire_us > self.timeout_us as f64 {
                    return Err(ConfigError::new(
                        format!("{path}.{name}.transport.baud"),
                        baud,
                        format!(
                            "a rate at which the island's read fits safety.timeout_us ({} us): at {baud} baud it takes {wire_us:.0} us on the wire (use >= {} baud, or a longer period_us and timeout_us)",
                            self.timeout_us,
                            (360.0 * 1e6 / self.timeout_us as f64).ceil()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The island's own config. Call after [`SafetyConfig::validate`].
    pub fn island_config(&self) -> Result<endotower_safety::IslandConfig, ConfigError> {
        let timeout = Duration::from_micros(self.timeout_us);
        let link = |name: &str, l: &LinkConfig| -> Result<endotower_safety::DeviceLink, ConfigError> {
            let transport = match &l.transport {
                Transport::Tcp { addr } => endotower_safety::Transport::Tcp(
                    addr.parse().map_err(|_| ConfigError::new(format!("safety.{name}.transport.addr"), addr, "an IP socket address"))?,
                ),
                Transport::Rtu { path, baud } => endotower_safety::Transport::Rtu { path: path.clone(), baud: *baud },
            };
            Ok(endotower_safety::DeviceLink {
                transport,
                unit: l.unit,
                timing: endotower_safety::link::LinkTiming {
                    timeout,
                    lost_after: l.lost_after,
                    backoff_initial: Duration::from_millis(l.backoff_initial_ms),
                    backoff_max: Duration::from_millis(l.backoff_max_ms),
                },
            })
        };
        Ok(endotower_safety::IslandConfig {
            period: self.period(),
            stale: Duration::from_millis(self.stale_ms),
            aux_heartbeat: Duration::from_millis(self.aux_heartbeat_ms),
            overpressure_margin_mmhg: self.overpressure_margin_mmhg,
            pressure_span_mmhg: self.pressure_span_mmhg,
            temperature_span_c: self.temperature_span_c,
            pressure_disagree_mmhg: self.pressure_disagree_mmhg,
            pressure_disagree_for: Duration::from_millis(self.pressure_disagree_ms),
            pressure_stuck_tolerance_mmhg: self.pressure_stuck_tolerance_mmhg,
            pressure_stuck_motion_mmhg: self.pressure_stuck_motion_mmhg,
            pressure_low_margin_mmhg: self.pressure_low_margin_mmhg,
            pressure_low_for: Duration::from_millis(self.pressure_low_ms),
            temperature_stuck_tolerance_c: self.temperature_stuck_tolerance_c,
            temperature_stuck_drive_pct: self.temperature_stuck_drive_pct,
            temperature_stuck_for: Duration::from_millis(self.temperature_stuck_ms),
            led_max_c: self.led_max_c,
            led_hysteresis_c: self.led_hysteresis_c,
            tip_max_c: self.tip_max_c,
            light_safe_cap_pct: self.light_safe_cap_pct,
            realtime_priority: self.realtime_priority,
            stall_limit: Duration::from_millis(self.stall_ms),
            insufflator: link("insufflator", &self.insufflator)?,
            light: link("light", &self.light)?,
            camera: link("camera", &self.camera)?,
            pedal: link("pedal", &self.pedal)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relief_threshold_is_p1_plus_10_capped_at_30() {
        assert_eq!(relief_threshold(12.0), 22.0);
        assert_eq!(relief_threshold(20.0), 30.0);
        assert_eq!(relief_threshold(25.0), 30.0);
    }

    #[test]
    fn bad_tcp_address_names_the_field() {
        let t = Transport::Tcp { addr: "localhost".into() };
        let e = t.validate("devices.pedal.link.transport").unwrap_err();
        assert_eq!(e.field, "devices.pedal.link.transport.addr");
        assert!(e.to_string().contains("\"localhost\""), "{e}");
    }

    #[test]
    fn out_of_range_value_reports_value_and_expectation() {
        let e = check_range("a.b", 40.0, 3.0, 25.0, "mmHg").unwrap_err();
        assert_eq!(e.to_string(), "config error: `a.b` = 40: expected a number in 3 ..= 25 mmHg");
        assert!(check_range("a.b", f64::NAN, 0.0, 1.0, "").is_err());
    }
}
