//! CO2 insufflator physics: a supply cylinder feeds the cavity through a
//! shut-off valve and a proportional valve (first-order lag); the cavity is a
//! compliance that loses gas through a leak and through the relief valve.
//!
//! dP/dt [mmHg/s] = (q_in - q_leak - q_relief) / (60 * C)

use std::time::Instant;

use endotower_actors::registers::{encode_signed, encode_unsigned, insufflator as reg};
use reg::{safety_cmd, status};

use crate::config::InsufflatorModel;
use crate::faults::{Channel, FaultSet};
use crate::physics::lag;
use crate::rng::Rng;
use crate::sim_device::Model;
use crate::table::RegisterTable;

/// Leak flow is full at and above this pressure, linear below, mmHg.
const LEAK_FULL_MMHG: f64 = 5.0;

/// The true state of the insufflator, free of sensor faults.
#[derive(Clone, Debug, PartialEq)]
pub struct InsufflatorSnapshot {
    /// True cavity pressure, mmHg.
    pub pressure_mmhg: f64,
    /// Actual inflow, L/min.
    pub flow_lpm: f64,
    /// Supply (cylinder) pressure, bar.
    pub supply_bar: f64,
    /// Gas taken from the cylinder so far, litres.
    pub gas_used_l: f64,
    /// Current leak at full pressure, L/min (config or `LeakStep`).
    pub leak_lpm: f64,
    /// PWM duty applied after safety gating, 0..=1000.
    pub duty_applied: u16,
    /// Shut-off valve actually open (commanded, not inhibited, not fail-safe).
    pub shutoff_open: bool,
    /// Relief valve actually open (commanded or forced by safety).
    pub relief_open: bool,
    /// RELIEF_VALVE as the control plane last wrote it (1 = open).
    pub relief_commanded: bool,
    pub failsafe: bool,
    /// SAFETY_CMD word as last written.
    pub safety_cmd: u16,
    pub sample_seq: u16,
}

/// Valve states after combining control, safety and fail-safe.
struct Valves {
    shutoff_open: bool,
    inflow_open: bool,
    relief_open: bool,
}

fn valves(table: &RegisterTable, failsafe: bool) -> Valves {
    let safety = table.get(reg::SAFETY_CMD);
    let inhibit = safety & safety_cmd::INHIBIT_INFLOW != 0;
    let shutoff_open = table.get(reg::SHUTOFF_VALVE) == 1 && !inhibit && !failsafe;
    Valves { shutoff_open, inflow_open: shutoff_open && table.get(reg::PWM_DUTY) > 0, relief_open: relief_open(table) }
}

/// Relief is open when control asks for it or safety forces a vent; the
/// heartbeat fail-safe never closes it.
fn relief_open(table: &RegisterTable) -> bool {
    table.get(reg::RELIEF_VALVE) == 1 || table.get(reg::SAFETY_CMD) & safety_cmd::FORCE_VENT != 0
}

/// Insufflator model state.
#[derive(Clone, Debug)]
pub(crate) struct Insufflator {
    model: InsufflatorModel,
    rng: Rng,
    pressure: f64,
    flow: f64,
    gas_used_l: f64,
    duty_applied: u16,
    seq: u16,
    /// Cylinder use runs this many times faster than real time (scenarios).
    slow_scale: f64,
    /// When the effective relief valve last went closed -> open by a write.
    pub(crate) last_vent_open: Option<Instant>,
}

impl Insufflator {
    pub(crate) fn new(model: InsufflatorModel, rng: Rng) -> Self {
        let pressure = model.initial_pressure_mmhg;
        Self { model, rng, pressure, flow: 0.0, gas_used_l: 0.0, duty_applied: 0, seq: 0, slow_scale: 1.0, last_vent_open: None }
    }

    /// Run the cylinder use `k` times faster than real time.
    pub(crate) fn with_slow_time_scale(mut self, k: f64) -> Self {
        self.slow_scale = k;
        self
    }

    fn leak_lpm(&self, faults: &FaultSet) -> f64 {
        faults.leak_lpm.unwrap_or(self.model.leak_lpm)
    }

    fn supply_bar(&self, faults: &FaultSet) -> f64 {
        if faults.supply_empty {
            return 0.0;
        }
        let left = (1.0 - self.gas_used_l / self.model.supply_capacity_l).max(0.0);
        self.model.supply_bar * left
    }

    /// Set the true cavity pressure (clamped at 0).
    pub(crate) fn inject_pressure(&mut self, mmhg: f64) {
        self.pressure = if mmhg.is_finite() { mmhg.max(0.0) } else { self.pressure };
    }

    pub(crate) fn snapshot(&self, table: &RegisterTable, faults: &FaultSet, failsafe: bool) -> InsufflatorSnapshot {
        let v = valves(table, failsafe);
        InsufflatorSnapshot {
            pressure_mmhg: self.pressure,
            flow_lpm: self.flow,
            supply_bar: self.supply_bar(faults),
            gas_used_l: self.gas_used_l,
            leak_lpm: self.leak_lpm(faults),
            duty_applied: self.duty_applied,
            shutoff_open: v.shutoff_open,
            relief_open: v.relief_open,
            relief_commanded: table.get(reg::RELIEF_VALVE) == 1,
            failsafe,
            safety_cmd: table.get(reg::SAFETY_CMD),
            sample_seq: self.seq,
        }
    }
}

impl Model for Insufflator {
    const HEARTBEAT: u16 = reg::HEARTBEAT;
    const MAP: &'static [endotower_actors::registers::RegisterSpec] = reg::MAP;
    const SAFETY_WORD: Option<u16> = Some(reg::SAFETY_CMD);

    fn integrate(&mut self, dt: f64, table: &RegisterTable, faults: &FaultSet, failsafe: bool) {
        let m = &self.model;
        let v = valves(table, failsafe);
        self.duty_applied = if v.inflow_open { table.get(reg::PWM_DUTY) } else { 0 };

        let available = m.max_flow_lpm * (self.supply_bar(faults) / m.regulator_min_bar).min(1.0);
        let target = f64::from(self.duty_applied) / 1000.0 * available;
        self.flow += (target - self.flow) * lag(dt, m.valve_tau_ms / 1000.0);

        let p = self.pressure;
        let q_leak = self.leak_lpm(faults) * (p / LEAK_FULL_MMHG).clamp(0.0, 1.0);
        let q_relief = if v.relief_open { m.relief_lpm_per_mmhg * p } else { 0.0 };
        let dp = (self.flow - q_leak - q_relief) / (60.0 * m.compliance_l_per_mmhg) * dt;
        self.pressure = (p + dp).max(0.0);
        let drawn = self.flow + faults.supply_drain_lpm;
        self.gas_used_l = (self.gas_used_l + drawn * dt * self.slow_scale / 60.0).min(m.supply_capacity_l);
    }

    fn publish(&mut self, table: &mut RegisterTable, faults: &FaultSet, failsafe: bool) {
        let noise = self.rng.gaussian(self.model.pressure_noise_mmhg);
        // The second sensor: the same cavity, its own noise.
        let noise_2 = self.rng.gaussian(self.model.pressure_noise_mmhg);
        let supply = self.supply_bar(faults);
        let word = |ch, value, addr, enc: fn(f64, f64) -> u16| faults.sensor_word(ch, value, table.get(addr), |x| enc(x, 0.01));
        let pressure = word(Channel::Pressure, self.pressure + noise, reg::PRESSURE, encode_signed);
        let pressure_2 = word(Channel::Pressure2, self.pressure + noise_2, reg::PRESSURE_2, encode_signed);
        let flow = word(Channel::Flow, self.flow, reg::FLOW, encode_unsigned);
        let supply = word(Channel::Supply, supply, reg::SUPPLY, encode_unsigned);

        let v = valves(table, failsafe);
        let safety = table.get(reg::SAFETY_CMD);
        let bits = [
            (self.duty_applied > 0, status::PROPORTIONAL_OPEN),
            (v.shutoff_open, status::SHUTOFF_OPEN),
            (v.relief_open, status::RELIEF_OPEN),
            (failsafe, status::FAILSAFE),
            (safety & safety_cmd::INHIBIT_INFLOW != 0, status::SAFETY_INHIBIT),
            (safety & safety_cmd::FORCE_VENT != 0, status::SAFETY_VENT),
        ];
        let status_word = bits.iter().filter(|(on, _)| *on).fold(0, |acc, (_, b)| acc | b);

        self.seq = self.seq.wrapping_add(1);
        table.set(reg::PRESSURE, pressure);
        table.set(reg::PRESSURE_2, pressure_2);
        table.set(reg::FLOW, flow);
        table.set(reg::SUPPLY, supply);
        table.set(reg::SAMPLE_SEQ, self.seq);
        table.set(reg::STATUS, status_word);
        table.set(reg::DUTY_APPLIED, self.duty_applied);
        table.set(reg::SAFETY_ECHO, safety);
    }

    /// Record when a write opened the (effective) relief valve.
    fn after_write(&mut self, before: &RegisterTable, after: &RegisterTable, at: Instant) {
        if !relief_open(before) && relief_open(after) {
            self.last_vent_open = Some(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use endotower_actors::registers::decode_signed;

    use super::*;
    use crate::device::Device;
    use crate::faults::Fault;
    use crate::sim_device::bench::Bench;
    use crate::sim_device::DeviceCore;

    fn bench(model: InsufflatorModel) -> Bench<Insufflator> {
        Bench::new(Device::Insufflator, Insufflator::new(model, Rng::new(1, 0)))
    }

    fn snap(b: &Bench<Insufflator>) -> InsufflatorSnapshot {
        b.sim.model().snapshot(b.sim.table(), b.sim.faults(), b.sim.failsafe())
    }

    fn open_inflow(b: &mut Bench<Insufflator>, duty: u16) {
        b.write(reg::SHUTOFF_VALVE, 1);
        b.write(reg::PWM_DUTY, duty);
    }

    #[test]
    fn pressure_rises_with_open_inflow_valve() {
        let mut b = bench(InsufflatorModel::default());
        open_inflow(&mut b, 500);
        b.run(2.0, true);
        let s = snap(&b);
        // 10 L/min into 0.25 L/mmHg: 0.667 mmHg/s, less the 30 ms valve lag.
        assert!((s.flow_lpm - 10.0).abs() < 0.01, "flow {}", s.flow_lpm);
        assert!((s.pressure_mmhg - 1.313).abs() < 0.01, "pressure {}", s.pressure_mmhg);
        assert_eq!(s.duty_applied, 500);
        let read = decode_signed(b.reg(reg::PRESSURE), 0.01).unwrap();
        assert!((read - s.pressure_mmhg).abs() < 0.1, "sensor {read}");
        assert_ne!(b.reg(reg::STATUS) & status::PROPORTIONAL_OPEN, 0);
    }

    #[test]
    fn pressure_holds_zero_with_valves_closed() {
        let mut b = bench(InsufflatorModel { leak_lpm: 1.0, ..Default::default() });
        b.write(reg::PWM_DUTY, 1000); // shut-off still closed
        b.run(2.0, true);
        let s = snap(&b);
        assert_eq!((s.pressure_mmhg, s.flow_lpm, s.duty_applied), (0.0, 0.0, 0));
        assert_eq!(s.supply_bar, 50.0);
    }

    #[test]
    fn relief_valve_vents_pressure_with_its_time_constant() {
        let mut b = bench(InsufflatorModel::default());
        b.sim.model_mut().inject_pressure(15.0);
        b.write(reg::RELIEF_VALVE, 1);
        // tau = 60 * C / k = 7.5 s
        b.run(7.5, true);
        let p = snap(&b).pressure_mmhg;
        assert!((p - 15.0 / std::f64::consts::E).abs() < 0.05, "pressure {p}");
    }

    #[test]
    fn safety_vent_and_inhibit_override_control() {
        let mut b = bench(InsufflatorModel::default());
        b.sim.model_mut().inject_pressure(12.0);
        open_inflow(&mut b, 1000);
        b.write(reg::SAFETY_CMD, safety_cmd::INHIBIT_INFLOW | safety_cmd::FORCE_VENT);
        b.run(1.0, true);
        let s = snap(&b);
        assert!(s.pressure_mmhg < 11.0, "pressure {}", s.pressure_mmhg);
        assert_eq!(s.duty_applied, 0);
        assert!(!s.shutoff_open && s.relief_open);
        let st = b.reg(reg::STATUS);
        assert_eq!(st & (status::SAFETY_INHIBIT | status::SAFETY_VENT | status::RELIEF_OPEN), 0b110100);
        assert_eq!(b.reg(reg::SAFETY_ECHO), 3);
    }

    #[test]
    fn leak_lowers_pressure_and_a_leak_step_fault_raises_it() {
        let mut b = bench(InsufflatorModel { leak_lpm: 1.5, ..Default::default() });
        b.sim.model_mut().inject_pressure(12.0);
        b.run(3.0, true);
        // 1.5 L/min / 15 L/mmHg/min = 0.1 mmHg/s above 5 mmHg
        let p = snap(&b).pressure_mmhg;
        assert!((p - 11.7).abs() < 0.01, "pressure {p}");
        b.sim.faults_mut().set(Fault::LeakStep(6.0));
        b.run(1.0, true);
        let p2 = snap(&b).pressure_mmhg;
        assert!((p - p2 - 0.4).abs() < 0.01, "pressure {p2}");
        // Below 5 mmHg the leak scales with pressure: it never goes negative.
        b.run(60.0, true);
        assert!(snap(&b).pressure_mmhg >= 0.0);
    }

    #[test]
    fn supply_falls_as_gas_is_used_and_limits_flow_when_low() {
        let model = InsufflatorModel { supply_capacity_l: 10.0, ..Default::default() };
        let mut b = bench(model);
        b.write(reg::RELIEF_VALVE, 1);
        open_inflow(&mut b, 1000);
        b.run(6.0, true);
        let s = snap(&b);
        assert!((s.gas_used_l - 2.0).abs() < 0.01, "used {}", s.gas_used_l);
        assert!((s.supply_bar - 40.0).abs() < 0.1, "supply {}", s.supply_bar);
        b.run(30.0, true);
        let s = snap(&b);
        assert!(s.supply_bar < 5.0, "supply {}", s.supply_bar);
        assert!(s.flow_lpm < 20.0 * s.supply_bar / 5.0 + 0.1, "flow {} at {} bar", s.flow_lpm, s.supply_bar);
        b.sim.faults_mut().set(Fault::SupplyEmpty);
        b.run(0.5, true);
        assert!(snap(&b).flow_lpm < 1e-3);
        assert_eq!(b.reg(reg::SUPPLY), 0);
    }

    #[test]
    fn failsafe_closes_inflow_but_relief_still_obeys() {
        let mut b = bench(InsufflatorModel::default());
        open_inflow(&mut b, 1000);
        b.run(0.5, true);
        assert!(snap(&b).pressure_mmhg > 0.5);
        b.sim.model_mut().inject_pressure(10.0);
        b.write(reg::RELIEF_VALVE, 1);
        b.run(1.0, false); // heartbeat lost
        let s = snap(&b);
        assert!(s.failsafe && !s.shutoff_open && s.relief_open);
        assert_eq!(s.duty_applied, 0);
        assert!(s.pressure_mmhg < 9.3, "pressure {}", s.pressure_mmhg);
        assert_ne!(b.reg(reg::STATUS) & status::FAILSAFE, 0);
        b.run(0.1, true); // heartbeat back
        assert!(!snap(&b).failsafe);
        assert_eq!(snap(&b).duty_applied, 1000);
    }

    #[test]
    fn device_boots_in_failsafe_and_reenters_after_heartbeat_timeout() {
        let mut b = bench(InsufflatorModel::default());
        open_inflow(&mut b, 1000);
        b.run(1.0, false);
        assert!(b.sim.failsafe());
        assert_eq!(snap(&b).pressure_mmhg, 0.0);
        b.beat();
        assert!(!b.sim.failsafe(), "leaves fail-safe at the first heartbeat change");
        b.run(0.29, false);
        assert!(!b.sim.failsafe());
        b.run(0.02, false);
        assert!(b.sim.failsafe());
        // Writing the same heartbeat value is not a heartbeat.
        let same = b.reg(reg::HEARTBEAT);
        b.write(reg::HEARTBEAT, same);
        assert!(b.sim.failsafe());
    }

    #[test]
    fn vent_timestamp_marks_writes_that_open_the_effective_relief() {
        let mut b = bench(InsufflatorModel::default());
        assert!(b.sim.model().last_vent_open.is_none());
        let t0 = Instant::now();
        b.write(reg::RELIEF_VALVE, 1);
        let t1 = b.sim.model().last_vent_open.unwrap();
        assert!(t1 >= t0 && t1 <= Instant::now());
        b.write(reg::SAFETY_CMD, safety_cmd::FORCE_VENT); // already open: no new opening
        assert_eq!(b.sim.model().last_vent_open, Some(t1));
        b.write(reg::RELIEF_VALVE, 0); // still forced open
        b.write(reg::SAFETY_CMD, 0); // now closed
        b.write(reg::SAFETY_CMD, safety_cmd::FORCE_VENT);
        assert!(b.sim.model().last_vent_open.unwrap() > t1);
    }

    #[test]
    fn sensor_faults_change_only_the_reported_pressure() {
        let mut b = bench(InsufflatorModel { pressure_noise_mmhg: 0.0, ..Default::default() });
        b.sim.model_mut().inject_pressure(10.0);
        b.run(0.01, true);
        assert_eq!(b.reg(reg::PRESSURE), 1000);
        b.sim.faults_mut().set(Fault::SensorOffset(Channel::Pressure, 5.0));
        b.run(0.001, true);
        assert_eq!(b.reg(reg::PRESSURE), 1500);
        b.sim.faults_mut().set(Fault::SensorStuck(Channel::Pressure));
        b.sim.model_mut().inject_pressure(3.0);
        let seq = b.reg(reg::SAMPLE_SEQ);
        b.run(0.01, true);
        assert_eq!(b.reg(reg::PRESSURE), 1500);
        assert_ne!(b.reg(reg::SAMPLE_SEQ), seq);
        b.sim.faults_mut().set(Fault::SensorNan(Channel::Pressure));
        b.run(0.001, true);
        assert_eq!(b.reg(reg::PRESSURE), endotower_actors::registers::INVALID);
        assert_eq!(snap(&b).pressure_mmhg, 3.0);
    }

    #[test]
    fn same_seed_gives_the_same_noisy_readings() {
        let readings = |seed| {
            let mut b = Bench::new(
                Device::Insufflator,
                Insufflator::new(InsufflatorModel { pressure_noise_mmhg: 0.5, ..Default::default() }, Rng::new(seed, 0)),
            );
            b.sim.model_mut().inject_pressure(10.0);
            (0..50)
                .map(|_| {
                    b.run(0.001, true);
                    b.reg(reg::PRESSURE)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(readings(1), readings(1));
        assert_ne!(readings(1), readings(2));
    }
}
