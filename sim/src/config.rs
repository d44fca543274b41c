//! Simulator configuration: the physical parameters of every device model, with
//! defaults that describe a healthy tower, and a validator that rejects
//! nonsense before any thread is started.

use serde::{Deserialize, Serialize};

/// Everything the simulator needs to know besides where to listen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Seed of every random source (sensor noise), so runs are repeatable.
    pub seed: u64,
    /// Physics step period in microseconds.
    pub physics_period_us: u64,
    /// A device whose HEARTBEAT word has not changed for this long fails safe.
    pub heartbeat_timeout_ms: u64,
    /// Slow processes (LED and cable-tip heating, CO2 cylinder use) run this
    /// many times faster than real time, so a scenario can cover an hour of
    /// procedure in minutes. Pressure, flow and current dynamics, which the
    /// control and safety loops act on, always run in real time. 1 = real.
    pub slow_time_scale: f64,
    /// Run the physics and Modbus server threads at SCHED_FIFO just under
    /// the safety island (where permitted): the simulators stand for separate
    /// hardware, which a busy tower cannot slow down.
    pub realtime_priority: bool,
    pub insufflator: InsufflatorModel,
    pub light: LightModel,
    pub camera: CameraModel,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            physics_period_us: 1000,
            heartbeat_timeout_ms: 300,
            slow_time_scale: 1.0,
            realtime_priority: false,
            insufflator: InsufflatorModel::default(),
            light: LightModel::default(),
            camera: CameraModel::default(),
        }
    }
}

/// CO2 insufflator: a gas supply feeding a compliant cavity through a
/// proportional valve, with a leak and a relief valve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InsufflatorModel {
    /// Cavity compliance, litres per mmHg.
    pub compliance_l_per_mmhg: f64,
    /// Flow at 100 % duty with a full supply, L/min.
    pub max_flow_lpm: f64,
    /// First-order time constant of the valve flow, ms.
    pub valve_tau_ms: f64,
    /// Leak flow at and above 5 mmHg (linear below, zero at 0), L/min.
    pub leak_lpm: f64,
    /// Relief valve outflow per mmHg of cavity pressure, L/min/mmHg.
    pub relief_lpm_per_mmhg: f64,
    /// Supply (cylinder) pressure when full, bar.
    pub supply_bar: f64,
    /// Gas in a full cylinder, litres at atmospheric pressure.
    pub supply_capacity_l: f64,
    /// Below this supply pressure the available flow falls proportionally, bar.
    pub regulator_min_bar: f64,
    /// Cavity pressure at start, mmHg.
    pub initial_pressure_mmhg: f64,
    /// Standard deviation of the pressure sensor noise, mmHg.
    pub pressure_noise_mmhg: f64,
}

impl Default for InsufflatorModel {
    fn default() -> Self {
        Self {
            compliance_l_per_mmhg: 0.25,
            max_flow_lpm: 20.0,
            valve_tau_ms: 30.0,
            leak_lpm: 0.0,
            relief_lpm_per_mmhg: 2.0,
            supply_bar: 50.0,
            supply_capacity_l: 2000.0,
            regulator_min_bar: 5.0,
            initial_pressure_mmhg: 0.0,
            pressure_noise_mmhg: 0.02,
        }
    }
}

/// LED cold light source: a current-driven LED with a thermal model of the
/// heatsink and of the light-cable tip.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LightModel {
    /// Current at DRIVE = 1000, mA.
    pub max_current_ma: f64,
    /// Current giving 100 % output (with a cool LED), mA.
    pub nominal_current_ma: f64,
    /// First-order time constant of the current driver, ms.
    pub current_tau_ms: f64,
    /// Ambient temperature, degC.
    pub ambient_c: f64,
    /// Steady-state LED temperature rise at max current with the fan on, K.
    pub rise_fan_on_c: f64,
    /// Steady-state LED temperature rise at max current with the fan off, K.
    pub rise_fan_off_c: f64,
    /// LED thermal time constant, s.
    pub thermal_tau_s: f64,
    /// Cable tip temperature with the light off, degC.
    pub tip_base_c: f64,
    /// Cable tip temperature rise at 100 % output, K.
    pub tip_rise_c: f64,
    /// Cable tip thermal time constant, s.
    pub tip_tau_s: f64,
}

impl Default for LightModel {
    fn default() -> Self {
        Self {
            max_current_ma: 1500.0,
            nominal_current_ma: 1400.0,
            current_tau_ms: 10.0,
            ambient_c: 25.0,
            rise_fan_on_c: 35.0,
            rise_fan_off_c: 65.0,
            thermal_tau_s: 10.0,
            tip_base_c: 34.0,
            tip_rise_c: 6.0,
            tip_tau_s: 5.0,
        }
    }
}

/// Camera control unit: a frame counter and fixed video parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CameraModel {
    pub width: u16,
    pub height: u16,
    /// Frames per second (FRAME_COUNTER rate).
    pub fps: u16,
    pub sensor_temp_c: f64,
}

impl Default for CameraModel {
    fn default() -> Self {
        Self { width: 1920, height: 1080, fps: 30, sensor_temp_c: 38.0 }
    }
}

/// A configuration value that makes no physical sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid simulator config: `{field}` = {value}: {reason}")]
pub struct SimConfigError {
    /// Dotted path of the field, e.g. `insufflator.compliance_l_per_mmhg`.
    pub field: &'static str,
    /// The offending value, as written.
    pub value: String,
    pub reason: &'static str,
}

fn positive(field: &'static str, v: f64) -> Result<(), SimConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(SimConfigError { field, value: v.to_string(), reason: "must be a finite number > 0" })
    }
}

fn non_negative(field: &'static str, v: f64) -> Result<(), SimConfigError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(SimConfigError { field, value: v.to_string(), reason: "must be a finite number >= 0" })
    }
}

fn finite(field: &'static str, v: f64) -> Result<(), SimConfigError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(SimConfigError { field, value: v.to_string(), reason: "must be finite" })
    }
}

fn nonzero(field: &'static str, v: u64) -> Result<(), SimConfigError> {
    if v > 0 {
        Ok(())
    } else {
        Err(SimConfigError { field, value: v.to_string(), reason: "must be > 0" })
    }
}

impl SimConfig {
    /// Check every field; the error names the first offending field and value.
    pub fn validate(&self) -> Result<(), SimConfigError> {
        nonzero("physics_period_us", self.physics_period_us)?;
        if self.physics_period_us > 100_000 {
            return Err(SimConfigError {
                field: "physics_period_us",
                value: self.physics_period_us.to_string(),
                reason: "must be at most 100000 (0.1 s)",
            });
        }
        nonzero("heartbeat_timeout_ms", self.heartbeat_timeout_ms)?;
        if !(self.slow_time_scale.is_finite() && (1.0..=1000.0).contains(&self.slow_time_scale)) {
            return Err(SimConfigError {
                field: "slow_time_scale",
                value: self.slow_time_scale.to_string(),
                reason: "must be within 1..=1000 (1 = real time)",
            });
        }

        let i = &self.insufflator;
        positive("insufflator.compliance_l_per_mmhg", i.compliance_l_per_mmhg)?;
        positive("insufflator.max_flow_lpm", i.max_flow_lpm)?;
        non_negative("insufflator.valve_tau_ms", i.valve_tau_ms)?;
        non_negative("insufflator.leak_lpm", i.leak_lpm)?;
        non_negative("insufflator.relief_lpm_per_mmhg", i.relief_lpm_per_mmhg)?;
        non_negative("insufflator.supply_bar", i.supply_bar)?;
        positive("insufflator.supply_capacity_l", i.supply_capacity_l)?;
        positive("insufflator.regulator_min_bar", i.regulator_min_bar)?;
        non_negative("insufflator.initial_pressure_mmhg", i.initial_pressure_mmhg)?;
        non_negative("insufflator.pressure_noise_mmhg", i.pressure_noise_mmhg)?;

        let l = &self.light;
        positive("light.max_current_ma", l.max_current_ma)?;
        positive("light.nominal_current_ma", l.nominal_current_ma)?;
        non_negative("light.current_tau_ms", l.current_tau_ms)?;
        finite("light.ambient_c", l.ambient_c)?;
        non_negative("light.rise_fan_on_c", l.rise_fan_on_c)?;
        non_negative("light.rise_fan_off_c", l.rise_fan_off_c)?;
        non_negative("light.thermal_tau_s", l.thermal_tau_s)?;
        finite("light.tip_base_c", l.tip_base_c)?;
        non_negative("light.tip_rise_c", l.tip_rise_c)?;
        non_negative("light.tip_tau_s", l.tip_tau_s)?;

        let c = &self.camera;
        nonzero("camera.width", c.width.into())?;
        nonzero("camera.height", c.height.into())?;
        nonzero("camera.fps", c.fps.into())?;
        finite("camera.sensor_temp_c", c.sensor_temp_c)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(SimConfig::default().validate(), Ok(()));
    }

    #[test]
    fn validate_names_the_field_and_value() {
        let mut cfg = SimConfig::default();
        cfg.insufflator.compliance_l_per_mmhg = -0.1;
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.field, "insufflator.compliance_l_per_mmhg");
        assert_eq!(err.value, "-0.1");

        let cfg = SimConfig { physics_period_us: 0, ..Default::default() };
        assert_eq!(cfg.validate().unwrap_err().field, "physics_period_us");

        let mut cfg = SimConfig::default();
        cfg.light.ambient_c = f64::NAN;
        assert!(cfg.validate().unwrap_err().to_string().contains("light.ambient_c"));
    }

    #[test]
    fn partial_config_fills_defaults_and_rejects_unknown_fields() {
        let cfg: SimConfig = serde_json::from_str(r#"{"seed": 7, "insufflator": {"leak_lpm": 1.5}}"#).unwrap();
        assert_eq!(cfg.seed, 7);
        assert_eq!(cfg.insufflator.leak_lpm, 1.5);
        assert_eq!(cfg.insufflator.max_flow_lpm, 20.0);
        assert!(serde_json::from_str::<SimConfig>(r#"{"sede": 7}"#).is_err());
        assert!(serde_json::from_str::<SimConfig>(r#"{"light": {"tau": 1}}"#).is_err());
    }
}
