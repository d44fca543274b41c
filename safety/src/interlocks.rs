//! The island's interlock logic as pure functions of the readings, so it can
//! be tested without any I/O. Hazard ids refer to HAZARDS.md. Every latch
//! here is part of [`Latched`], which a replacement island takes over.

use crate::config::{relief_threshold, IslandConfig};
use crate::registers::insufflator::safety_cmd;
use crate::trip::{code, Detail, Trip, TripBuf};
use std::time::Instant;

fn edge(trips: &mut TripBuf, flag: &mut bool, now: bool, code: &'static str, detail: impl FnOnce() -> Detail) {
    if *flag != now {
        *flag = now;
        trips.push(Trip { code, active: now, detail: detail() });
    }
}

/// The latches of every interlock: what a replacement island must start
/// from so that a vent in progress stays open and every active alarm is
/// cleared by the island that took over.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Latched {
    pub vent: bool,
    pub overpressure: bool,
    pub no_pressure: bool,
    pub channel_fault: bool,
    pub pressure_low: bool,
    pub pressure_low_armed: bool,
    pub safe_state: bool,
    pub led_off: bool,
    pub tip_hot: bool,
    pub no_temperature: bool,
    pub led_stuck: bool,
    pub tip_stuck: bool,
    pub echo_insufflator: bool,
    pub echo_light: bool,
}

impl Latched {
    const FIELDS: usize = 14;

    fn flags(&self) -> [bool; Self::FIELDS] {
        [
            self.vent,
            self.overpressure,
            self.no_pressure,
            self.channel_fault,
            self.pressure_low,
            self.pressure_low_armed,
            self.safe_state,
            self.led_off,
            self.tip_hot,
            self.no_temperature,
            self.led_stuck,
            self.tip_stuck,
            self.echo_insufflator,
            self.echo_light,
        ]
    }

    /// Pack into a word (bit i = field i) for a lock-free hand-over cell.
    pub fn to_bits(self) -> u32 {
        self.flags().iter().enumerate().fold(0, |acc, (i, &f)| acc | (u32::from(f) << i))
    }

    pub fn from_bits(bits: u32) -> Latched {
        let f = |i: u32| bits & (1 << i) != 0;
        Latched {
            vent: f(0),
            overpressure: f(1),
            no_pressure: f(2),
            channel_fault: f(3),
            pressure_low: f(4),
            pressure_low_armed: f(5),
            safe_state: f(6),
            led_off: f(7),
            tip_hot: f(8),
            no_temperature: f(9),
            led_stuck: f(10),
            tip_stuck: f(11),
            echo_insufflator: f(12),
            echo_light: f(13),
        }
    }
}

/// Redundant pressure sensing: the pressure to protect on is the higher of
/// the channels that have a fresh, valid, in-span reading; a channel fault
/// (the two disagree, one is stuck, one is missing) raises HZ-024, and all
/// but a missing channel inhibit inflow, since either could be the wrong one.
#[derive(Debug, Default, Clone)]
pub struct PressureChannels {
    disagree_since: Option<Instant>,
    /// Stuck check of A against B, and of B against A.
    a_vs_b: StuckPair,
    b_vs_a: StuckPair,
}

/// One channel's stuck check: its value when it last moved by more than the
/// tolerance, and the other channel's value at that moment.
#[derive(Debug, Default, Clone)]
struct StuckPair {
    anchor: Option<(f64, f64)>,
}

impl StuckPair {
    /// True while `x` stays within `tol` of its anchor, `y` has moved by
    /// more than `motion` since, and the two are now more than `motion`
    /// apart: `x` is stuck (not `y` coming back to agree with it).
    fn update(&mut self, x: f64, y: f64, tol: f64, motion: f64) -> bool {
        match self.anchor {
            Some((ax, ay)) if (x - ax).abs() <= tol => (y - ay).abs() > motion && (x - y).abs() > motion,
            _ => {
                self.anchor = Some((x, y));
                false
            }
        }
    }
}

/// What the channels say this cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PressureView {
    /// The pressure the interlocks act on: the higher present channel.
    pub pressure: Option<f64>,
    /// A channel fault that inhibits inflow.
    pub inhibit: bool,
}

impl PressureChannels {
    pub fn update(
        &mut self,
        now: Instant,
        a: Option<f64>,
        b: Option<f64>,
        cfg: &IslandConfig,
        latched: &mut Latched,
        trips: &mut TripBuf,
    ) -> PressureView {
        let mut what = None;
        let mut inhibit = false;
        match (a, b) {
            (Some(pa), Some(pb)) => {
                let (tol, motion) = (cfg.pressure_stuck_tolerance_mmhg, cfg.pressure_stuck_motion_mmhg);
                let a_stuck = self.a_vs_b.update(pa, pb, tol, motion);
                let b_stuck = self.b_vs_a.update(pb, pa, tol, motion);
                let apart = (pa - pb).abs() > cfg.pressure_disagree_mmhg;
                let since = if apart { *self.disagree_since.get_or_insert(now) } else { now };
                if !apart {
                    self.disagree_since = None;
                }
                let disagree = apart && now.duration_since(since) >= cfg.pressure_disagree_for;
                if a_stuck {
                    what = Some("disagree: PRESSURE stuck");
                } else if b_stuck {
                    what = Some("disagree: PRESSURE_2 stuck");
                } else if disagree {
                    what = Some("disagree");
                }
                inhibit = what.is_some();
            }
            (Some(_), None) => what = Some("degraded: PRESSURE_2 missing"),
            (None, Some(_)) => what = Some("degraded: PRESSURE missing"),
            (None, None) => {
                // HZ-003 covers it; the stuck checks start afresh.
                self.a_vs_b = StuckPair::default();
                self.b_vs_a = StuckPair::default();
                self.disagree_since = None;
            }
        }
        // Keep the alarm through a cycle with no reading at all: HZ-003 says more.
        if a.is_some() || b.is_some() {
            edge(trips, &mut latched.channel_fault, what.is_some(), code::PRESSURE_CHANNELS, || Detail::Channels {
                a,
                b,
                what: what.unwrap_or("agree"),
            });
        }
        let pressure = match (a, b) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        };
        PressureView { pressure, inhibit }
    }
}

/// Over-pressure vent, over-pressure inflow inhibit, and inflow inhibit on a
/// missing pressure reading, a channel fault or the tower safe state.
pub fn insufflation(view: PressureView, p1: f64, cfg: &IslandConfig, safe_state: bool, l: &mut Latched, trips: &mut TripBuf) -> u16 {
    let p2 = relief_threshold(p1);
    edge(trips, &mut l.no_pressure, view.pressure.is_none(), code::NO_PRESSURE, || Detail::Missing { what: "pressure", cap_pct: 100 });
    edge(trips, &mut l.safe_state, safe_state, code::SAFE_STATE, || Detail::SafeState);
    if let Some(p) = view.pressure {
        // Vent at P >= P2 until the pressure is back under P1 (CN109151275A [0033]).
        let vent = if l.vent { p >= p1 } else { p >= p2 };
        let threshold = if vent { p2 } else { p1 };
        edge(trips, &mut l.vent, vent, code::OVER_PRESSURE_VENT, || Detail::Pressure { mmhg: p, threshold });
        let limit = p1 + cfg.overpressure_margin_mmhg;
        let over = if l.overpressure { p >= p1 } else { p >= limit };
        let threshold = if over { limit } else { p1 };
        edge(trips, &mut l.overpressure, over, code::OVER_PRESSURE_INHIBIT, || Detail::Pressure { mmhg: p, threshold });
    }
    let mut cmd = 0;
    if l.vent {
        // A lost reading while venting keeps the vent open: the last known
        // pressure was dangerous.
        cmd |= safety_cmd::FORCE_VENT | safety_cmd::INHIBIT_INFLOW;
    }
    if l.overpressure || l.no_pressure || l.safe_state || view.inhibit {
        cmd |= safety_cmd::INHIBIT_INFLOW;
    }
    cmd
}

/// PRESSURE_LOW (HZ-023): the pressure stays under P1 minus a margin. Armed
/// once the pressure has reached P1 minus the margin (so filling the cavity
/// at the start, or after the set pressure was raised, is not an alarm).
#[derive(Debug, Default, Clone)]
pub struct PressureLow {
    low_since: Option<Instant>,
    last_p1: Option<f64>,
}

impl PressureLow {
    pub fn update(&mut self, now: Instant, pressure: Option<f64>, p1: f64, cfg: &IslandConfig, l: &mut Latched, trips: &mut TripBuf) {
        if self.last_p1.is_some_and(|old| p1 > old) && !l.pressure_low {
            l.pressure_low_armed = false; // a raised set pressure must be reached first
        }
        self.last_p1 = Some(p1);
        let Some(p) = pressure else { return };
        let floor = p1 - cfg.pressure_low_margin_mmhg;
        if p >= floor {
            l.pressure_low_armed = true;
            self.low_since = None;
            edge(trips, &mut l.pressure_low, false, code::PRESSURE_LOW, || Detail::LowPressure { mmhg: p, p1 });
            return;
        }
        if !l.pressure_low_armed {
            return;
        }
        let since = *self.low_since.get_or_insert(now);
        if now.duration_since(since) >= cfg.pressure_low_for {
            edge(trips, &mut l.pressure_low, true, code::PRESSURE_LOW, || Detail::LowPressure { mmhg: p, p1 });
        }
    }
}

/// A temperature sensor is stuck when its value stays within a tolerance
/// while the applied drive has moved far enough, long enough, that the
/// temperature must have moved. A flat reading at a steady drive is not a
/// fault (a real sensor at equilibrium reads the same value for minutes).
#[derive(Debug, Default, Clone)]
pub struct TemperatureStuck {
    /// Temperature and drive when the temperature last moved.
    anchor: Option<(f64, f64)>,
    drive_moved_since: Option<Instant>,
}

impl TemperatureStuck {
    pub fn update(&mut self, now: Instant, celsius: f64, drive_pct: f64, cfg: &IslandConfig) -> bool {
        match self.anchor {
            Some((t0, d0)) if (celsius - t0).abs() <= cfg.temperature_stuck_tolerance_c => {
                if (drive_pct - d0).abs() >= cfg.temperature_stuck_drive_pct {
                    let since = *self.drive_moved_since.get_or_insert(now);
                    now.duration_since(since) >= cfg.temperature_stuck_for
                } else {
                    self.drive_moved_since = None;
                    false
                }
            }
            _ => {
                self.anchor = Some((celsius, drive_pct));
                self.drive_moved_since = None;
                false
            }
        }
    }
}

/// One light-source reading for the interlock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LightReading {
    pub led_c: f64,
    pub tip_c: f64,
    pub led_stuck: bool,
    pub tip_stuck: bool,
}

/// LED over-temperature shut-off, tip over-temperature cap, and a cap when
/// the temperatures cannot be read or a sensor is stuck. Returns SAFETY_CAP.
pub fn light(reading: Option<LightReading>, cfg: &IslandConfig, safe_state: bool, l: &mut Latched, trips: &mut TripBuf) -> u16 {
    let cap_pct = cfg.light_safe_cap_pct;
    edge(trips, &mut l.no_temperature, reading.is_none(), code::NO_TEMPERATURE, || Detail::Missing { what: "light temperatures", cap_pct });
    // The island's HZ-008 edge is published by the insufflation interlock.
    if let Some(r) = reading {
        edge(trips, &mut l.led_stuck, r.led_stuck, code::TEMPERATURE_STUCK, || Detail::StuckTemperature {
            sensor: "LED",
            celsius: r.led_c,
        });
        if !l.led_stuck {
            edge(trips, &mut l.tip_stuck, r.tip_stuck, code::TEMPERATURE_STUCK, || Detail::StuckTemperature {
                sensor: "light cable tip",
                celsius: r.tip_c,
            });
        }
        let release = cfg.led_max_c - cfg.led_hysteresis_c;
        let off = if l.led_off { r.led_c >= release } else { r.led_c >= cfg.led_max_c };
        let threshold = if off { cfg.led_max_c } else { release };
        edge(trips, &mut l.led_off, off, code::LED_OVER_TEMPERATURE, || Detail::Temperature { celsius: r.led_c, threshold });
        let hot = if l.tip_hot { r.tip_c >= cfg.tip_max_c - 1.0 } else { r.tip_c >= cfg.tip_max_c };
        let threshold = if hot { cfg.tip_max_c } else { cfg.tip_max_c - 1.0 };
        edge(trips, &mut l.tip_hot, hot, code::TIP_OVER_TEMPERATURE, || Detail::Temperature { celsius: r.tip_c, threshold });
    }
    if l.led_off {
        0
    } else if l.tip_hot || l.no_temperature || l.led_stuck || l.tip_stuck || safe_state {
        cap_pct
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::config;
    use std::time::Duration;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    fn view(p: f64) -> PressureView {
        PressureView { pressure: Some(p), inhibit: false }
    }

    fn vent(cmd: u16) -> bool {
        cmd & safety_cmd::FORCE_VENT != 0
    }

    #[test]
    fn hz001_vents_at_p2_and_releases_under_p1() {
        let (cfg, mut l, mut trips) = (config(), Latched::default(), TripBuf::default());
        assert!(!vent(insufflation(view(21.9), 12.0, &cfg, false, &mut l, &mut trips)));
        assert!(vent(insufflation(view(22.0), 12.0, &cfg, false, &mut l, &mut trips)));
        assert!(vent(insufflation(view(12.5), 12.0, &cfg, false, &mut l, &mut trips)), "vents until under P1");
        assert!(!vent(insufflation(view(11.9), 12.0, &cfg, false, &mut l, &mut trips)));
        assert!(trips.iter().any(|t| t.code == "HZ-001" && t.active));
        assert!(trips.iter().any(|t| t.code == "HZ-001" && !t.active));
    }

    #[test]
    fn hz001_p2_never_above_30() {
        let (cfg, mut l, mut trips) = (config(), Latched::default(), TripBuf::default());
        assert!(vent(insufflation(view(30.0), 25.0, &cfg, false, &mut l, &mut trips)));
    }

    #[test]
    fn hz002_inhibits_inflow_above_p1_plus_margin() {
        let (cfg, mut l, mut trips) = (config(), Latched::default(), TripBuf::default());
        assert_eq!(insufflation(view(13.9), 12.0, &cfg, false, &mut l, &mut trips), 0);
        assert_eq!(insufflation(view(14.0), 12.0, &cfg, false, &mut l, &mut trips), safety_cmd::INHIBIT_INFLOW);
        assert_eq!(insufflation(view(12.1), 12.0, &cfg, false, &mut l, &mut trips), safety_cmd::INHIBIT_INFLOW);
        assert_eq!(insufflation(view(11.9), 12.0, &cfg, false, &mut l, &mut trips), 0);
    }

    #[test]
    fn hz003_missing_pressure_inhibits_inflow_but_keeps_a_running_vent() {
        let (cfg, mut l, mut trips) = (config(), Latched::default(), TripBuf::default());
        let none = PressureView { pressure: None, inhibit: false };
        assert_eq!(insufflation(none, 12.0, &cfg, false, &mut l, &mut trips), safety_cmd::INHIBIT_INFLOW);
        insufflation(view(25.0), 12.0, &cfg, false, &mut l, &mut trips);
        assert_eq!(insufflation(none, 12.0, &cfg, false, &mut l, &mut trips), safety_cmd::INHIBIT_INFLOW | safety_cmd::FORCE_VENT);
    }

    /// A replacement island that starts from the old island's latches keeps
    /// a vent between P1 and P2 open, and clears the old island's HZ-001.
    #[test]
    fn hz001_latched_state_survives_a_hand_over_through_its_bits() {
        let (cfg, mut old, mut trips) = (config(), Latched::default(), TripBuf::default());
        insufflation(view(23.0), 12.0, &cfg, false, &mut old, &mut trips);
        let mut new = Latched::from_bits(old.to_bits());
        assert_eq!(new, old);
        let mut trips = TripBuf::default();
        assert!(vent(insufflation(view(18.0), 12.0, &cfg, false, &mut new, &mut trips)), "vent between P1 and P2 kept");
        assert!(trips.is_empty(), "no second raise");
        insufflation(view(11.5), 12.0, &cfg, false, &mut new, &mut trips);
        assert!(trips.iter().any(|t| t.code == "HZ-001" && !t.active), "the new island clears the old island's alarm");
        let all = Latched { vent: true, tip_stuck: true, echo_light: true, pressure_low_armed: true, ..Latched::default() };
        assert_eq!(Latched::from_bits(all.to_bits()), all);
    }

    #[test]
    fn hz024_a_stuck_channel_is_found_when_the_other_moves_and_the_higher_is_vented_on() {
        let (cfg, mut l, mut trips) = (config(), Latched::default(), TripBuf::default());
        let mut ch = PressureChannels::default();
        let t0 = Instant::now();
        // Both at 12 with noise: no fault, however long.
        for i in 0..2000u64 {
            let n = ((i * 7919) % 11) as f64 * 0.01 - 0.05;
            let v = ch.update(ms(t0, i * 2), Some(12.0 + n), Some(12.0 - n), &cfg, &mut l, &mut trips);
            assert!(!v.inhibit && !l.channel_fault, "false fault at {i}");
        }
        // PRESSURE freezes at 12.0; the true pressure surges (PRESSURE_2 follows).
        let mut found = None;
        for i in 0..200u64 {
            let p = 12.0 + i as f64 * 0.1;
            let v = ch.update(ms(t0, 4000 + i * 2), Some(12.0), Some(p), &cfg, &mut l, &mut trips);
            assert_eq!(v.pressure, Some(p.max(12.0)), "the higher channel is the one acted on");
            if v.inhibit && found.is_none() {
                found = Some(p);
            }
        }
        let at = found.expect("stuck channel never found");
        assert!(at <= 12.0 + cfg.pressure_stuck_motion_mmhg + 0.2, "found at {at}");
        assert!(trips.iter().any(|t| t.code == "HZ-024" && t.active));
        // It moves again: cleared.
        ch.update(ms(t0, 5000), Some(20.0), Some(20.0), &cfg, &mut l, &mut trips);
        ch.update(ms(t0, 5002), Some(20.0), Some(20.0), &cfg, &mut l, &mut trips);
        assert!(!l.channel_fault);
    }

    #[test]
    fn hz024_channels_apart_for_longer_than_the_limit_disagree_and_a_missing_one_only_alarms() {
        let (cfg, mut l, mut trips) = (config(), Latched::default(), TripBuf::default());
        let mut ch = PressureChannels::default();
        let t0 = Instant::now();
        assert!(!ch.update(t0, Some(12.0), Some(15.0), &cfg, &mut l, &mut trips).inhibit, "not yet: under the time limit");
        assert!(ch.update(ms(t0, 150), Some(12.1), Some(15.1), &cfg, &mut l, &mut trips).inhibit);
        let v = ch.update(ms(t0, 200), Some(12.0), None, &cfg, &mut l, &mut trips);
        assert_eq!(v, PressureView { pressure: Some(12.0), inhibit: false }, "one channel left: degraded, not inhibited");
        assert!(l.channel_fault, "still alarmed");
        let v = ch.update(ms(t0, 202), Some(12.0), Some(12.05), &cfg, &mut l, &mut trips);
        assert!(!v.inhibit && !l.channel_fault);
    }

    #[test]
    fn hz023_pressure_low_only_after_the_set_pressure_was_reached() {
        let (cfg, mut l, mut trips) = (config(), Latched::default(), TripBuf::default());
        let mut pl = PressureLow::default();
        let t0 = Instant::now();
        // Filling from 0: no alarm, however long.
        for i in 0..100u64 {
            pl.update(ms(t0, i * 100), Some(i as f64 * 0.08), 12.0, &cfg, &mut l, &mut trips);
        }
        assert!(!l.pressure_low);
        pl.update(ms(t0, 10_000), Some(11.0), 12.0, &cfg, &mut l, &mut trips);
        // A leak: 5 s under 9 mmHg.
        pl.update(ms(t0, 11_000), Some(8.5), 12.0, &cfg, &mut l, &mut trips);
        pl.update(ms(t0, 15_000), Some(6.0), 12.0, &cfg, &mut l, &mut trips);
        assert!(!l.pressure_low, "not before pressure_low_for");
        pl.update(ms(t0, 16_100), Some(5.0), 12.0, &cfg, &mut l, &mut trips);
        assert!(l.pressure_low);
        pl.update(ms(t0, 17_000), Some(11.0), 12.0, &cfg, &mut l, &mut trips);
        assert!(!l.pressure_low, "cleared when back");
        // Raising the set pressure re-arms only once it is reached.
        pl.update(ms(t0, 18_000), Some(11.0), 20.0, &cfg, &mut l, &mut trips);
        pl.update(ms(t0, 30_000), Some(12.0), 20.0, &cfg, &mut l, &mut trips);
        assert!(!l.pressure_low, "filling to a higher set pressure is not a leak");
    }

    #[test]
    fn hz025_a_temperature_flat_while_the_drive_moved_is_stuck_but_flat_at_a_steady_drive_is_not() {
        let cfg = config();
        let t0 = Instant::now();
        let mut s = TemperatureStuck::default();
        for i in 0..600u64 {
            assert!(!s.update(ms(t0, i * 100), 45.0, 80.0, &cfg), "steady drive, flat reading: fine");
        }
        // The drive drops to 20 %: the reading must move a step within 10 s.
        assert!(!s.update(ms(t0, 60_000), 45.0, 20.0, &cfg));
        assert!(!s.update(ms(t0, 69_000), 45.0, 20.0, &cfg));
        assert!(s.update(ms(t0, 70_100), 45.0, 20.0, &cfg), "the same word 10 s after a 60-point drive change");
        assert!(!s.update(ms(t0, 70_200), 44.9, 20.0, &cfg), "moving again");
    }

    #[test]
    fn hz004_led_off_at_max_with_hysteresis() {
        let (cfg, mut l, mut trips) = (config(), Latched::default(), TripBuf::default());
        let r = |led| Some(LightReading { led_c: led, tip_c: 35.0, led_stuck: false, tip_stuck: false });
        assert_eq!(light(r(74.9), &cfg, false, &mut l, &mut trips), 100);
        assert_eq!(light(r(75.0), &cfg, false, &mut l, &mut trips), 0);
        assert_eq!(light(r(66.0), &cfg, false, &mut l, &mut trips), 0);
        assert_eq!(light(r(64.9), &cfg, false, &mut l, &mut trips), 100);
    }

    #[test]
    fn hz005_hz006_hz008_hz025_cap_the_light() {
        let cfg = config();
        let mut trips = TripBuf::default();
        let r = |tip, led_stuck| Some(LightReading { led_c: 50.0, tip_c: tip, led_stuck, tip_stuck: false });
        assert_eq!(light(r(41.5, false), &cfg, false, &mut Latched::default(), &mut trips), 30);
        assert_eq!(light(None, &cfg, false, &mut Latched::default(), &mut trips), 30);
        assert_eq!(light(r(35.0, false), &cfg, true, &mut Latched::default(), &mut trips), 30);
        assert_eq!(light(r(35.0, true), &cfg, false, &mut Latched::default(), &mut trips), 30);
        assert!(trips.iter().any(|t| t.code == "HZ-025" && t.active));
    }
}
