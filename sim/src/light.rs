//! LED light source physics: a constant-current driver (first-order lag, mildly
//! nonlinear in DRIVE), LED efficiency falling with temperature, a heatsink
//! thermal model that depends on the fan, and a light-cable tip that warms
//! with output.

use endotower_actors::registers::{encode_signed, encode_unsigned, light as reg};
use reg::status;

use crate::config::LightModel;
use crate::faults::{Channel, FaultSet};
use crate::physics::lag;
use crate::sim_device::Model;
use crate::table::RegisterTable;

/// Exponent of the DRIVE -> current curve (a mild nonlinearity for the PID).
const DRIVE_EXPONENT: f64 = 1.1;
/// Relative efficiency lost per kelvin of LED temperature above 25 degC.
const EFFICIENCY_DROP_PER_K: f64 = 0.003;

/// The true state of the light source, free of sensor faults.
#[derive(Clone, Debug, PartialEq)]
pub struct LightSnapshot {
    pub current_ma: f64,
    /// Light output, % of nominal.
    pub output_pct: f64,
    pub led_temp_c: f64,
    pub tip_temp_c: f64,
    pub fan_running: bool,
    /// LED energised (applied drive > 0).
    pub led_on: bool,
    pub cable_present: bool,
    pub failsafe: bool,
    /// SAFETY_CAP word, 0..=100 %.
    pub safety_cap: u16,
    /// Drive applied after ENABLE, cap and fail-safe, 0..=1000.
    pub drive_applied: u16,
    pub sample_seq: u16,
}

/// Light model state.
#[derive(Clone, Debug)]
pub(crate) struct Light {
    model: LightModel,
    current: f64,
    led_temp: f64,
    tip_temp: f64,
    drive_applied: u16,
    seq: u16,
    /// Heating and cooling run this many times faster than real time (scenarios).
    slow_scale: f64,
}

impl Light {
    pub(crate) fn new(model: LightModel) -> Self {
        let (led_temp, tip_temp) = (model.ambient_c, model.tip_base_c);
        Self { model, current: 0.0, led_temp, tip_temp, drive_applied: 0, seq: 0, slow_scale: 1.0 }
    }

    /// Run the thermal model `k` times faster than real time.
    pub(crate) fn with_slow_time_scale(mut self, k: f64) -> Self {
        self.slow_scale = k;
        self
    }

    fn output_pct(&self) -> f64 {
        let efficiency = (1.0 - EFFICIENCY_DROP_PER_K * (self.led_temp - 25.0).max(0.0)).max(0.0);
        100.0 * self.current / self.model.nominal_current_ma * efficiency
    }

    fn fan_running(table: &RegisterTable, faults: &FaultSet) -> bool {
        table.get(reg::FAN) == 1 && !faults.fan_failure
    }

    /// Override the light-cable tip temperature (thermal state), degC.
    pub(crate) fn set_tip_temp(&mut self, c: f64) {
        if c.is_finite() {
            self.tip_temp = c;
        }
    }

    /// Override the LED temperature (thermal state), degC.
    pub(crate) fn set_led_temp(&mut self, c: f64) {
        if c.is_finite() {
            self.led_temp = c;
        }
    }

    pub(crate) fn snapshot(&self, table: &RegisterTable, faults: &FaultSet, failsafe: bool) -> LightSnapshot {
        LightSnapshot {
            current_ma: self.current,
            output_pct: self.output_pct(),
            led_temp_c: self.led_temp,
            tip_temp_c: self.tip_temp,
            fan_running: Self::fan_running(table, faults),
            led_on: self.drive_applied > 0,
            cable_present: !faults.cable_unplugged,
            failsafe,
            safety_cap: table.get(reg::SAFETY_CAP),
            drive_applied: self.drive_applied,
            sample_seq: self.seq,
        }
    }
}

impl Model for Light {
    const HEARTBEAT: u16 = reg::HEARTBEAT;
    const MAP: &'static [endotower_actors::registers::RegisterSpec] = reg::MAP;
    const SAFETY_WORD: Option<u16> = Some(reg::SAFETY_CAP);

    /// SAFETY_CAP boots at 100 % (no cap): like SAFETY_CMD = 0 on the
    /// insufflator, a zeroed safety block means "no override", and the boot
    /// fail-safe keeps the LED off until the tower's heartbeat arrives anyway.
    fn init_table(&self, table: &mut RegisterTable) {
        table.set(reg::SAFETY_CAP, 100);
    }

    fn integrate(&mut self, dt: f64, table: &RegisterTable, faults: &FaultSet, failsafe: bool) {
        let m = &self.model;
        let enabled = table.get(reg::ENABLE) == 1 && !failsafe;
        let cap = table.get(reg::SAFETY_CAP).saturating_mul(10);
        self.drive_applied = if enabled { table.get(reg::DRIVE).min(cap) } else { 0 };

        let target = m.max_current_ma * (f64::from(self.drive_applied) / 1000.0).powf(DRIVE_EXPONENT);
        self.current += (target - self.current) * lag(dt, m.current_tau_ms / 1000.0);

        let rise = if Self::fan_running(table, faults) { m.rise_fan_on_c } else { m.rise_fan_off_c };
        let led_target = m.ambient_c + self.current / m.max_current_ma * rise;
        self.led_temp += (led_target - self.led_temp) * lag(dt * self.slow_scale, m.thermal_tau_s);

        let tip_target = m.tip_base_c + m.tip_rise_c * self.output_pct() / 100.0;
        self.tip_temp += (tip_target - self.tip_temp) * lag(dt * self.slow_scale, m.tip_tau_s);
    }

    fn publish(&mut self, table: &mut RegisterTable, faults: &FaultSet, failsafe: bool) {
        let word = |ch, value, addr, enc: fn(f64, f64) -> u16, scale| faults.sensor_word(ch, value, table.get(addr), |x| enc(x, scale));
        let current = word(Channel::LedCurrent, self.current, reg::LED_CURRENT, encode_unsigned, 1.0);
        let output = word(Channel::Output, self.output_pct(), reg::OUTPUT, encode_unsigned, 0.1);
        let led_temp = word(Channel::LedTemp, self.led_temp, reg::LED_TEMP, encode_signed, 0.1);
        let tip_temp = word(Channel::TipTemp, self.tip_temp, reg::TIP_TEMP, encode_signed, 0.1);

        let cap = table.get(reg::SAFETY_CAP);
        let bits = [
            (!faults.cable_unplugged, status::CABLE_PRESENT),
            (Self::fan_running(table, faults), status::FAN_RUNNING),
            (self.drive_applied > 0, status::LED_ON),
            (failsafe, status::FAILSAFE),
            (table.get(reg::DRIVE) > cap.saturating_mul(10), status::SAFETY_CAPPED),
        ];
        let status_word = bits.iter().filter(|(on, _)| *on).fold(0, |acc, (_, b)| acc | b);

        self.seq = self.seq.wrapping_add(1);
        table.set(reg::LED_CURRENT, current);
        table.set(reg::OUTPUT, output);
        table.set(reg::LED_TEMP, led_temp);
        table.set(reg::TIP_TEMP, tip_temp);
        table.set(reg::SAMPLE_SEQ, self.seq);
        table.set(reg::STATUS, status_word);
        table.set(reg::SAFETY_ECHO, cap);
        table.set(reg::DRIVE_APPLIED, self.drive_applied);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Device;
    use crate::faults::Fault;
    use crate::sim_device::bench::Bench;
    use crate::sim_device::DeviceCore;

    fn bench() -> Bench<Light> {
        Bench::new(Device::Light, Light::new(LightModel::default()))
    }

    fn snap(b: &Bench<Light>) -> LightSnapshot {
        b.sim.model().snapshot(b.sim.table(), b.sim.faults(), b.sim.failsafe())
    }

    #[test]
    fn output_follows_drive_through_the_current_driver() {
        let mut b = bench();
        b.write(reg::ENABLE, 1);
        b.write(reg::FAN, 1);
        b.write(reg::DRIVE, 1000);
        b.run(0.1, true);
        let s = snap(&b);
        assert!((s.current_ma - 1500.0).abs() < 1.0, "current {}", s.current_ma);
        assert!(s.led_on && s.fan_running && !s.failsafe);
        assert!(s.output_pct > 100.0, "output {}", s.output_pct);
        b.write(reg::DRIVE, 500);
        b.run(0.1, true);
        // 1500 * 0.5^1.1
        assert!((snap(&b).current_ma - 699.8).abs() < 1.0, "current {}", snap(&b).current_ma);
        assert_eq!(b.reg(reg::LED_CURRENT), 700);
        assert_eq!(b.reg(reg::DRIVE_APPLIED), 500);
    }

    #[test]
    fn safety_cap_limits_the_applied_drive() {
        let mut b = bench();
        assert_eq!(b.reg(reg::SAFETY_CAP), 100, "boots uncapped");
        b.write(reg::ENABLE, 1);
        b.write(reg::DRIVE, 800);
        b.write(reg::SAFETY_CAP, 30);
        b.run(0.1, true);
        assert_eq!(snap(&b).drive_applied, 300);
        assert_ne!(b.reg(reg::STATUS) & status::SAFETY_CAPPED, 0);
        assert_eq!(b.reg(reg::SAFETY_ECHO), 30);
        b.write(reg::SAFETY_CAP, 0);
        b.run(0.1, true);
        assert!(!snap(&b).led_on);
    }

    #[test]
    fn heartbeat_loss_puts_the_led_in_standby() {
        let mut b = bench();
        b.write(reg::ENABLE, 1);
        b.write(reg::DRIVE, 1000);
        b.run(0.5, true);
        assert!(snap(&b).led_on);
        b.run(0.5, false);
        let s = snap(&b);
        assert!(s.failsafe && !s.led_on && s.current_ma < 1.0);
        assert_ne!(b.reg(reg::STATUS) & status::FAILSAFE, 0);
    }

    #[test]
    fn led_runs_hotter_without_fan_and_loses_efficiency() {
        let hot = |fan_fault: bool| {
            let mut b = bench();
            b.write(reg::ENABLE, 1);
            b.write(reg::FAN, 1);
            b.write(reg::DRIVE, 1000);
            if fan_fault {
                b.sim.faults_mut().set(Fault::FanFailure);
            }
            b.run(60.0, true);
            snap(&b)
        };
        let (cool, warm) = (hot(false), hot(true));
        assert!((cool.led_temp_c - 60.0).abs() < 0.5, "{}", cool.led_temp_c);
        assert!((warm.led_temp_c - 90.0).abs() < 0.5, "{}", warm.led_temp_c);
        assert!(!warm.fan_running);
        assert!(warm.output_pct < cool.output_pct);
        assert!(cool.tip_temp_c > 34.0 + 5.0, "tip {}", cool.tip_temp_c);
    }

    #[test]
    fn cable_unplug_is_only_reported() {
        let mut b = bench();
        b.run(0.01, true);
        assert_ne!(b.reg(reg::STATUS) & status::CABLE_PRESENT, 0);
        b.sim.faults_mut().set(Fault::CableUnplugged);
        b.write(reg::ENABLE, 1);
        b.write(reg::DRIVE, 1000);
        b.run(0.1, true);
        assert_eq!(b.reg(reg::STATUS) & status::CABLE_PRESENT, 0);
        assert!(snap(&b).led_on);
    }

    #[test]
    fn led_temperature_override_is_reported() {
        let mut b = bench();
        b.sim.model_mut().set_led_temp(80.0);
        b.run(0.001, true);
        assert_eq!(b.reg(reg::LED_TEMP), 800);
    }
}
