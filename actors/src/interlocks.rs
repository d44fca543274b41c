//! The safety island's interlock logic, as pure functions of the readings, so
//! it can be tested without any I/O. Hazard ids refer to HAZARDS.md.

use crate::config::{relief_threshold, SafetyConfig};
use crate::registers::insufflator::safety_cmd;

/// A change of an interlock, to be published as an alarm raise or clear.
#[derive(Debug, Clone, PartialEq)]
pub struct Trip {
    pub hazard: &'static str,
    pub active: bool,
    pub message: String,
}

fn edge(trips: &mut Vec<Trip>, flag: &mut bool, now: bool, hazard: &'static str, message: impl FnOnce() -> String) {
    if *flag != now {
        *flag = now;
        trips.push(Trip { hazard, active: now, message: message() });
    }
}

/// Over-pressure vent, over-pressure inflow inhibit, and inflow inhibit on a
/// missing or implausible pressure reading.
#[derive(Debug, Default, Clone)]
pub struct InsufflationInterlock {
    vent: bool,
    overpressure: bool,
    no_reading: bool,
    safe_state: bool,
}

impl InsufflationInterlock {
    /// `pressure` is `None` when the last fresh, valid, in-range reading is
    /// older than `stale_ms`. Returns the SAFETY_CMD word to write.
    pub fn update(&mut self, pressure: Option<f64>, p1: f64, cfg: &SafetyConfig, safe_state: bool, trips: &mut Vec<Trip>) -> u16 {
        let p2 = relief_threshold(p1);
        edge(trips, &mut self.no_reading, pressure.is_none(), "HZ-003", || {
            "pressure reading missing, stale or out of range: inflow inhibited".into()
        });
        edge(trips, &mut self.safe_state, safe_state, "HZ-008", || "tower safe state: inflow inhibited, light capped".into());
        if let Some(p) = pressure {
            // Vent at P >= P2 until the pressure is back under P1 (CN109151275A [0033]).
            let vent = if self.vent { p >= p1 } else { p >= p2 };
            edge(trips, &mut self.vent, vent, "HZ-001", || {
                if vent {
                    format!("pressure {p:.2} mmHg >= P2 {p2:.1} mmHg: relief valve forced open")
                } else {
                    format!("pressure {p:.2} mmHg back under P1 {p1:.1} mmHg: relief released")
                }
            });
            let limit = p1 + cfg.overpressure_margin_mmhg;
            let over = if self.overpressure { p >= p1 } else { p >= limit };
            edge(trips, &mut self.overpressure, over, "HZ-002", || {
                if over {
                    format!("pressure {p:.2} mmHg >= P1 + margin {limit:.1} mmHg: inflow inhibited")
                } else {
                    format!("pressure {p:.2} mmHg back under P1 {p1:.1} mmHg: inflow released")
                }
            });
        }
        let mut cmd = 0;
        if self.vent {
            // A lost reading while venting keeps the vent open: the last known
            // pressure was dangerous.
            cmd |= safety_cmd::FORCE_VENT | safety_cmd::INHIBIT_INFLOW;
        }
        if self.overpressure || self.no_reading || self.safe_state {
            cmd |= safety_cmd::INHIBIT_INFLOW;
        }
        cmd
    }
}

/// LED over-temperature shut-off, tip over-temperature cap, and a cap when
/// the temperatures cannot be read.
#[derive(Debug, Default, Clone)]
pub struct LightInterlock {
    led_off: bool,
    tip_hot: bool,
    no_reading: bool,
    safe_state: bool,
}

impl LightInterlock {
    /// `temps` is `(led_c, tip_c)`, `None` when stale, missing or out of range.
    /// Returns the SAFETY_CAP word (percent of full drive).
    pub fn update(&mut self, temps: Option<(f64, f64)>, cfg: &SafetyConfig, safe_state: bool, trips: &mut Vec<Trip>) -> u16 {
        edge(trips, &mut self.no_reading, temps.is_none(), "HZ-006", || {
            format!("light temperatures missing, stale or out of range: drive capped at {} %", cfg.light_safe_cap_pct)
        });
        edge(trips, &mut self.safe_state, safe_state, "HZ-008", || "tower safe state: light capped".into());
        if let Some((led, tip)) = temps {
            let off = if self.led_off { led >= cfg.led_max_c - cfg.led_hysteresis_c } else { led >= cfg.led_max_c };
            edge(trips, &mut self.led_off, off, "HZ-004", || {
                if off {
                    format!("LED temperature {led:.1} C >= {:.1} C: LED switched off", cfg.led_max_c)
                } else {
                    format!("LED temperature {led:.1} C cooled below {:.1} C: LED released", cfg.led_max_c - cfg.led_hysteresis_c)
                }
            });
            let hot = if self.tip_hot { tip >= cfg.tip_max_c - 1.0 } else { tip >= cfg.tip_max_c };
            edge(trips, &mut self.tip_hot, hot, "HZ-005", || {
                if hot {
                    format!("light cable tip {tip:.1} C >= {:.1} C: drive capped at {} %", cfg.tip_max_c, cfg.light_safe_cap_pct)
                } else {
                    format!("light cable tip {tip:.1} C back under {:.1} C", cfg.tip_max_c - 1.0)
                }
            });
        }
        if self.led_off {
            0
        } else if self.tip_hot || self.no_reading || self.safe_state {
            cfg.light_safe_cap_pct
        } else {
            100
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::LinkConfig;

    pub(crate) fn safety_cfg() -> SafetyConfig {
        let l = LinkConfig::tcp("127.0.0.1:1", 1);
        SafetyConfig {
            period_us: 2000,
            timeout_us: 1500,
            stale_ms: 20,
            stuck_ms: 500,
            aux_heartbeat_ms: 50,
            overpressure_margin_mmhg: 2.0,
            pressure_span_mmhg: [-10.0, 80.0],
            temperature_span_c: [-20.0, 150.0],
            led_max_c: 75.0,
            led_hysteresis_c: 10.0,
            tip_max_c: 41.0,
            light_safe_cap_pct: 30,
            realtime_priority: false,
            insufflator: l.clone(),
            light: l.clone(),
            camera: l.clone(),
            pedal: l,
        }
    }

    #[test]
    fn hz001_vents_at_p2_and_releases_under_p1() {
        let cfg = safety_cfg();
        let mut il = InsufflationInterlock::default();
        let mut trips = vec![];
        assert_eq!(il.update(Some(21.9), 12.0, &cfg, false, &mut trips) & safety_cmd::FORCE_VENT, 0);
        assert_ne!(il.update(Some(22.0), 12.0, &cfg, false, &mut trips) & safety_cmd::FORCE_VENT, 0);
        assert_ne!(il.update(Some(12.5), 12.0, &cfg, false, &mut trips) & safety_cmd::FORCE_VENT, 0, "vents until under P1");
        assert_eq!(il.update(Some(11.9), 12.0, &cfg, false, &mut trips) & safety_cmd::FORCE_VENT, 0);
        assert!(trips.iter().any(|t| t.hazard == "HZ-001" && t.active));
        assert!(trips.iter().any(|t| t.hazard == "HZ-001" && !t.active));
    }

    #[test]
    fn hz001_p2_never_above_30() {
        let cfg = safety_cfg();
        let mut il = InsufflationInterlock::default();
        let mut trips = vec![];
        assert_ne!(il.update(Some(30.0), 25.0, &cfg, false, &mut trips) & safety_cmd::FORCE_VENT, 0);
    }

    #[test]
    fn hz002_inhibits_inflow_above_p1_plus_margin() {
        let cfg = safety_cfg();
        let mut il = InsufflationInterlock::default();
        let mut trips = vec![];
        assert_eq!(il.update(Some(13.9), 12.0, &cfg, false, &mut trips), 0);
        assert_eq!(il.update(Some(14.0), 12.0, &cfg, false, &mut trips), safety_cmd::INHIBIT_INFLOW);
        assert_eq!(il.update(Some(12.1), 12.0, &cfg, false, &mut trips), safety_cmd::INHIBIT_INFLOW);
        assert_eq!(il.update(Some(11.9), 12.0, &cfg, false, &mut trips), 0);
    }

    #[test]
    fn hz003_missing_pressure_inhibits_inflow_but_keeps_a_running_vent() {
        let cfg = safety_cfg();
        let mut il = InsufflationInterlock::default();
        let mut trips = vec![];
        assert_eq!(il.update(None, 12.0, &cfg, false, &mut trips), safety_cmd::INHIBIT_INFLOW);
        il.update(Some(25.0), 12.0, &cfg, false, &mut trips);
        let cmd = il.update(None, 12.0, &cfg, false, &mut trips);
        assert_eq!(cmd, safety_cmd::INHIBIT_INFLOW | safety_cmd::FORCE_VENT);
    }

    #[test]
    fn hz004_led_off_at_max_with_hysteresis() {
        let cfg = safety_cfg();
        let mut il = LightInterlock::default();
        let mut trips = vec![];
        assert_eq!(il.update(Some((74.9, 35.0)), &cfg, false, &mut trips), 100);
        assert_eq!(il.update(Some((75.0, 35.0)), &cfg, false, &mut trips), 0);
        assert_eq!(il.update(Some((66.0, 35.0)), &cfg, false, &mut trips), 0);
        assert_eq!(il.update(Some((64.9, 35.0)), &cfg, false, &mut trips), 100);
    }

    #[test]
    fn hz005_hz006_hz008_cap_the_light() {
        let cfg = safety_cfg();
        let mut il = LightInterlock::default();
        let mut trips = vec![];
        assert_eq!(il.update(Some((50.0, 41.5)), &cfg, false, &mut trips), 30);
        let mut il = LightInterlock::default();
        assert_eq!(il.update(None, &cfg, false, &mut trips), 30);
        let mut il = LightInterlock::default();
        assert_eq!(il.update(Some((50.0, 35.0)), &cfg, true, &mut trips), 30);
        assert!(trips.iter().any(|t| t.hazard == "HZ-008"));
    }
}
