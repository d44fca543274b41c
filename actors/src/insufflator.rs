//! Insufflator control law (CN109151275A [0025]-[0036]):
//! - while P < P1: PWM on the proportional valve from the flow error (duty up
//!   when the flow is under the standard flow, down when over), shut-off open;
//! - at P >= P1: proportional and shut-off valves closed;
//! - at P >= P2 = min(P1 + 10, 30) mmHg: relief valve open as well, until P is
//!   back under P1;
//! - CO2 supply pressure under the threshold: supply-low alarm.
//!
//! The safety island enforces the pressure limits independently; this law is
//! the normal control, not the protection.

use crate::config::{relief_threshold, InsufflatorConfig};
use crate::device_actor::{ControlCtx, DeviceControl};
use crate::device_status::{InsufflationPhase, InsufflatorStatus};
use crate::events::Severity;
use crate::link::LinkState;
use crate::registers::{self, insufflator as reg};
use tokio::sync::watch;

/// Hysteresis for clearing the supply-low alarm.
const SUPPLY_LOW_HYSTERESIS_BAR: f64 = 1.0;

pub struct InsufflatorControl {
    cfg: InsufflatorConfig,
    /// Integrated PWM duty, kept while the valves are closed so inflow resumes
    /// at the last good duty.
    duty_pct: f64,
    status: InsufflatorStatus,
    tx: watch::Sender<InsufflatorStatus>,
}

impl InsufflatorControl {
    pub fn new(cfg: InsufflatorConfig, tx: watch::Sender<InsufflatorStatus>) -> Self {
        Self { cfg, duty_pct: 0.0, status: InsufflatorStatus::default(), tx }
    }
}

impl DeviceControl for InsufflatorControl {
    const READ_LEN: u16 = reg::RELIEF_VALVE + 1;
    const CONTROL_ADDR: u16 = reg::PWM_DUTY;
    const CONTROL_LEN: u16 = reg::RELIEF_VALVE - reg::PWM_DUTY + 1;
    crate::status_on_watch!(InsufflatorStatus);

    fn update(&mut self, w: &[u16], ctx: &mut ControlCtx<'_>) -> Option<Vec<u16>> {
        let p1 = ctx.setpoints.pressure_mmhg();
        let flow_set = ctx.setpoints.flow_lpm();
        let p2 = relief_threshold(p1);
        let pressure = registers::decode_signed(w[reg::PRESSURE as usize], 0.01);
        let flow = registers::decode_unsigned(w[reg::FLOW as usize], 0.01);
        let supply = registers::decode_unsigned(w[reg::SUPPLY as usize], 0.01);
        let st = w[reg::STATUS as usize];
        let s = &mut self.status;
        s.set_pressure_mmhg = p1;
        s.set_flow_lpm = flow_set;
        s.pressure_mmhg = pressure;
        s.flow_lpm = flow;
        s.supply_bar = supply;
        s.relief_open = st & reg::status::RELIEF_OPEN != 0;
        s.failsafe = st & reg::status::FAILSAFE != 0;
        s.safety_inhibit = st & reg::status::SAFETY_INHIBIT != 0;
        s.safety_vent = st & reg::status::SAFETY_VENT != 0;

        match supply {
            Some(b) if b < self.cfg.supply_low_bar && !s.supply_low => {
                s.supply_low = true;
                ctx.events.raise(
                    "insufflator",
                    "SUPPLY_LOW",
                    Severity::Medium,
                    format!("CO2 supply low: {b:.1} bar < {:.1} bar", self.cfg.supply_low_bar),
                );
            }
            Some(b) if b >= self.cfg.supply_low_bar + SUPPLY_LOW_HYSTERESIS_BAR && s.supply_low => {
                s.supply_low = false;
                ctx.events.clear("insufflator", "SUPPLY_LOW", format!("CO2 supply back to {b:.1} bar"));
            }
            _ => {}
        }

        s.phase = match (pressure, s.phase) {
            // Relief stays open until a valid reading under P1: an invalid
            // sample says nothing about the cavity having emptied.
            (None, InsufflationPhase::Venting) => InsufflationPhase::Venting,
            (None, _) => InsufflationPhase::Fault,
            (Some(p), InsufflationPhase::Venting) if p >= p1 => InsufflationPhase::Venting,
            (Some(p), _) if p >= p2 => InsufflationPhase::Venting,
            (Some(p), _) if p >= p1 => InsufflationPhase::Holding,
            (Some(_), _) => InsufflationPhase::Inflating,
        };
        let (duty, shutoff, relief) = match s.phase {
            InsufflationPhase::Inflating => {
                if let Some(q) = flow {
                    self.duty_pct = (self.duty_pct + self.cfg.pwm_gain_pct_per_lpm * (flow_set - q)).clamp(0.0, 100.0);
                }
                (self.duty_pct, 1, 0)
            }
            InsufflationPhase::Holding | InsufflationPhase::Fault => (0.0, 0, 0),
            InsufflationPhase::Venting => (0.0, 0, 1),
        };
        s.duty_pct = duty;
        Some(vec![(duty * 10.0).round() as u16, shutoff, relief])
    }

    /// A missed poll keeps the phase (a vent stays a vent until P < P1,
    /// CN109151275A [0033]); only a lost link resets the law.
    fn on_link_down(&mut self, state: LinkState, _ctx: &mut ControlCtx<'_>) {
        if state == LinkState::Lost {
            self.status.phase = InsufflationPhase::Fault;
        }
        self.status.pressure_mmhg = None;
        self.status.flow_lpm = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LinkConfig;
    use crate::events::EventBus;
    use crate::setpoints::Setpoints;
    use std::time::Duration;

    fn cfg() -> InsufflatorConfig {
        InsufflatorConfig {
            link: LinkConfig::tcp("127.0.0.1:1", 1),
            poll_hz: 50.0,
            set_pressure_mmhg: 12.0,
            set_flow_lpm: 10.0,
            pwm_gain_pct_per_lpm: 0.5,
            supply_low_bar: 10.0,
        }
    }

    fn words(p: f64, q: f64, supply: f64) -> Vec<u16> {
        let mut w = vec![0u16; InsufflatorControl::READ_LEN as usize];
        w[reg::PRESSURE as usize] = registers::encode_signed(p, 0.01);
        w[reg::FLOW as usize] = registers::encode_unsigned(q, 0.01);
        w[reg::SUPPLY as usize] = registers::encode_unsigned(supply, 0.01);
        w
    }

    fn run(c: &mut InsufflatorControl, w: &[u16], events: &EventBus) -> Vec<u16> {
        let sp = Setpoints::new(12.0, 10.0, 80.0);
        let mut ctx = ControlCtx { setpoints: &sp, events, dt: Duration::from_millis(20) };
        c.update(w, &mut ctx).unwrap()
    }

    #[test]
    fn pwm_duty_rises_while_flow_is_under_the_standard_flow() {
        let ev = EventBus::new(16);
        let mut c = InsufflatorControl::new(cfg(), watch::channel(Default::default()).0);
        let a = run(&mut c, &words(5.0, 0.0, 50.0), &ev);
        let b = run(&mut c, &words(5.0, 2.0, 50.0), &ev);
        assert!(b[0] > a[0], "duty {} then {}", a[0], b[0]);
        assert_eq!(b[1], 1, "shut-off open while inflating");
        let c2 = run(&mut c, &words(5.0, 15.0, 50.0), &ev);
        assert!(c2[0] < b[0], "duty falls when flow is over the set flow");
    }

    #[test]
    fn valves_close_at_p1_and_relief_opens_at_p2_until_under_p1() {
        let ev = EventBus::new(16);
        let mut c = InsufflatorControl::new(cfg(), watch::channel(Default::default()).0);
        assert_eq!(run(&mut c, &words(12.0, 0.0, 50.0), &ev), vec![0, 0, 0]);
        assert_eq!(run(&mut c, &words(22.0, 0.0, 50.0), &ev), vec![0, 0, 1]);
        assert_eq!(run(&mut c, &words(12.5, 0.0, 50.0), &ev), vec![0, 0, 1]);
        assert_eq!(run(&mut c, &words(11.9, 0.0, 50.0), &ev)[2], 0);
    }

    /// Issue 14: one missed poll while venting reset the phase, and the next
    /// reading between P1 and P2 closed the relief valve early.
    #[test]
    fn hz001_relief_stays_open_until_under_p1_across_a_missed_poll_and_an_invalid_sample() {
        let ev = EventBus::new(16);
        let sp = Setpoints::new(12.0, 10.0, 80.0);
        let mut c = InsufflatorControl::new(cfg(), watch::channel(Default::default()).0);
        assert_eq!(run(&mut c, &words(23.0, 0.0, 50.0), &ev), vec![0, 0, 1]);
        let mut ctx = ControlCtx { setpoints: &sp, events: &ev, dt: Duration::from_millis(20) };
        c.on_link_down(LinkState::Degraded, &mut ctx);
        assert_eq!(run(&mut c, &words(18.0, 0.0, 50.0), &ev), vec![0, 0, 1], "a missed poll does not end the vent");
        let mut w = words(17.0, 0.0, 50.0);
        w[reg::PRESSURE as usize] = registers::INVALID;
        assert_eq!(run(&mut c, &w, &ev), vec![0, 0, 1], "an invalid sample does not end the vent");
        assert_eq!(run(&mut c, &words(12.1, 0.0, 50.0), &ev), vec![0, 0, 1]);
        assert_eq!(run(&mut c, &words(11.9, 0.0, 50.0), &ev)[2], 0, "closed under P1");
        // A lost link resets the law.
        run(&mut c, &words(23.0, 0.0, 50.0), &ev);
        let mut ctx = ControlCtx { setpoints: &sp, events: &ev, dt: Duration::from_millis(20) };
        c.on_link_down(LinkState::Lost, &mut ctx);
        assert_eq!(c.status().phase, InsufflationPhase::Fault);
    }

    #[test]
    fn invalid_pressure_closes_everything() {
        let ev = EventBus::new(16);
        let mut c = InsufflatorControl::new(cfg(), watch::channel(Default::default()).0);
        let mut w = words(5.0, 0.0, 50.0);
        w[reg::PRESSURE as usize] = registers::INVALID;
        assert_eq!(run(&mut c, &w, &ev), vec![0, 0, 0]);
        assert_eq!(c.status().phase, InsufflationPhase::Fault);
    }

    #[test]
    fn supply_low_alarm_raises_and_clears_with_hysteresis() {
        let ev = EventBus::new(16);
        let mut c = InsufflatorControl::new(cfg(), watch::channel(Default::default()).0);
        run(&mut c, &words(5.0, 0.0, 9.0), &ev);
        assert!(ev.is_active("insufflator", "SUPPLY_LOW"));
        run(&mut c, &words(5.0, 0.0, 10.5), &ev);
        assert!(ev.is_active("insufflator", "SUPPLY_LOW"), "hysteresis");
        run(&mut c, &words(5.0, 0.0, 11.5), &ev);
        assert!(!ev.is_active("insufflator", "SUPPLY_LOW"));
    }
}
