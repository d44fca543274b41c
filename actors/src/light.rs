//! LED cold light source control (CN109151275A [0038]-[0043]): PID constant
//! current to the intensity setpoint, LED temperature watch with the fan on
//! above a threshold, derating above a warning level, shut-off above a
//! maximum, and standby while the light cable is unplugged.
//!
//! The safety island has its own, higher LED limit and a tip-temperature
//! limit; this law is the normal thermal management.

use crate::config::LightConfig;
use crate::device_actor::{ControlCtx, DeviceControl};
use crate::device_status::LightStatus;
use crate::events::Severity;
use crate::link::LinkState;
use crate::pid::Pid;
use crate::registers::{self, light as reg};
use tokio::sync::watch;

/// The derating clears this far under `derate_c`.
const DERATE_HYSTERESIS_C: f64 = 5.0;

pub struct LightControl {
    cfg: LightConfig,
    pid: Pid,
    /// Last seen cable state; `None` until the first read.
    cable: Option<bool>,
    status: LightStatus,
    tx: watch::Sender<LightStatus>,
}

impl LightControl {
    pub fn new(cfg: LightConfig, tx: watch::Sender<LightStatus>) -> Self {
        let pid = Pid::new(cfg.kp, cfg.ki, cfg.kd, 0.0, 100.0);
        Self { cfg, pid, cable: None, status: LightStatus::default(), tx }
    }

    fn thermal(&mut self, t: f64, ctx: &ControlCtx<'_>) {
        let c = &self.cfg;
        let s = &mut self.status;
        if t >= c.fan_on_c {
            s.fan_on = true;
        } else if t <= c.fan_off_c {
            s.fan_on = false;
        }
        let derate = if s.derated { t >= c.derate_c - DERATE_HYSTERESIS_C } else { t >= c.derate_c };
        if derate != s.derated {
            s.derated = derate;
            if derate {
                ctx.events.raise(
                    "light",
                    "LED_DERATED",
                    Severity::Low,
                    format!("LED {t:.1} C >= {:.1} C: intensity derated to {:.0} %", c.derate_c, c.derate_to_pct),
                );
            } else {
                ctx.events.clear("light", "LED_DERATED", format!("LED cooled to {t:.1} C: derating lifted"));
            }
        }
        let over = if s.over_temperature { t >= c.derate_c } else { t >= c.shutdown_c };
        if over != s.over_temperature {
            s.over_temperature = over;
            if over {
                ctx.events.raise(
                    "light",
                    "LED_OVER_TEMPERATURE",
                    Severity::High,
                    format!("LED {t:.1} C >= {:.1} C: LED switched off", c.shutdown_c),
                );
            } else {
                ctx.events.clear("light", "LED_OVER_TEMPERATURE", format!("LED cooled to {t:.1} C: LED back on"));
            }
        }
    }
}

impl DeviceControl for LightControl {
    const READ_LEN: u16 = reg::ENABLE + 1;
    const CONTROL_ADDR: u16 = reg::DRIVE;
    const CONTROL_LEN: u16 = reg::ENABLE - reg::DRIVE + 1;
    crate::status_on_watch!(LightStatus);

    fn update(&mut self, w: &[u16], ctx: &mut ControlCtx<'_>) -> Option<Vec<u16>> {
        let led = registers::decode_signed(w[reg::LED_TEMP as usize], 0.1);
        let st = w[reg::STATUS as usize];
        {
            let s = &mut self.status;
            s.current_ma = registers::decode_unsigned(w[reg::LED_CURRENT as usize], 1.0);
            s.output_pct = registers::decode_unsigned(w[reg::OUTPUT as usize], 0.1);
            s.led_temp_c = led;
            s.tip_temp_c = registers::decode_signed(w[reg::TIP_TEMP as usize], 0.1);
            s.failsafe = st & reg::status::FAILSAFE != 0;
            s.safety_cap_pct = Some(w[reg::SAFETY_ECHO as usize]);
            s.set_intensity_pct = ctx.setpoints.intensity_pct();
        }
        let cable = st & reg::status::CABLE_PRESENT != 0;
        self.status.cable_present = cable;
        if self.cable != Some(cable) {
            self.cable = Some(cable);
            if cable {
                ctx.events.clear("light", "CABLE_UNPLUGGED", "light cable plugged in: leaving standby");
            } else {
                ctx.events.raise("light", "CABLE_UNPLUGGED", Severity::Low, "light cable unplugged: standby");
            }
        }
        match led {
            Some(t) => self.thermal(t, ctx),
            None => {
                // No temperature: fan on, derated, as a precaution.
                self.status.fan_on = true;
                self.status.derated = true;
            }
        }
        let s = &mut self.status;
        let mut target = s.set_intensity_pct;
        if s.derated {
            target = target.min(self.cfg.derate_to_pct);
        }
        s.enabled = cable && !s.over_temperature && target > 0.0;
        s.target_intensity_pct = if s.enabled { target } else { 0.0 };
        if s.enabled {
            let want_ma = target / 100.0 * self.cfg.nominal_current_ma;
            s.target_current_ma = want_ma;
            let have_ma = s.current_ma.unwrap_or(0.0);
            s.drive_pct = self.pid.update(want_ma - have_ma, ctx.dt.as_secs_f64());
        } else {
            self.pid.reset();
            s.drive_pct = 0.0;
            s.target_current_ma = 0.0;
        }
        Some(vec![(s.drive_pct * 10.0).round() as u16, u16::from(s.fan_on), u16::from(s.enabled)])
    }

    fn on_link_down(&mut self, _state: LinkState, _ctx: &mut ControlCtx<'_>) {
        self.pid.reset();
        self.status.current_ma = None;
        self.status.led_temp_c = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LinkConfig;
    use crate::events::EventBus;
    use crate::setpoints::Setpoints;
    use std::time::Duration;

    pub(crate) fn cfg() -> LightConfig {
        LightConfig {
            link: LinkConfig::tcp("127.0.0.1:1", 2),
            poll_hz: 50.0,
            intensity_pct: 80.0,
            nominal_current_ma: 1400.0,
            kp: 0.02,
            ki: 0.3,
            kd: 0.0,
            fan_on_c: 40.0,
            fan_off_c: 35.0,
            derate_c: 60.0,
            derate_to_pct: 50.0,
            shutdown_c: 70.0,
        }
    }

    fn words(temp: f64, cable: bool) -> Vec<u16> {
        let mut w = vec![0u16; LightControl::READ_LEN as usize];
        w[reg::LED_TEMP as usize] = registers::encode_signed(temp, 0.1);
        w[reg::TIP_TEMP as usize] = registers::encode_signed(35.0, 0.1);
        w[reg::STATUS as usize] = if cable { reg::status::CABLE_PRESENT } else { 0 };
        w
    }

    fn run(c: &mut LightControl, w: &[u16], ev: &EventBus) -> Vec<u16> {
        let sp = Setpoints::new(12.0, 10.0, 80.0);
        let mut ctx = ControlCtx { setpoints: &sp, events: ev, dt: Duration::from_millis(20) };
        c.update(w, &mut ctx).unwrap()
    }

    #[test]
    fn fan_switches_on_above_threshold_with_hysteresis() {
        let ev = EventBus::new(16);
        let mut c = LightControl::new(cfg(), watch::channel(Default::default()).0);
        assert_eq!(run(&mut c, &words(30.0, true), &ev)[1], 0);
        assert_eq!(run(&mut c, &words(41.0, true), &ev)[1], 1);
        assert_eq!(run(&mut c, &words(37.0, true), &ev)[1], 1);
        assert_eq!(run(&mut c, &words(34.0, true), &ev)[1], 0);
    }

    #[test]
    fn derates_above_warning_and_shuts_off_above_maximum() {
        let ev = EventBus::new(16);
        let mut c = LightControl::new(cfg(), watch::channel(Default::default()).0);
        run(&mut c, &words(61.0, true), &ev);
        assert_eq!(c.status().target_intensity_pct, 50.0);
        assert!(ev.is_active("light", "LED_DERATED"));
        let out = run(&mut c, &words(71.0, true), &ev);
        assert_eq!(out[2], 0, "LED off above shutdown");
        assert!(ev.is_active("light", "LED_OVER_TEMPERATURE"));
        let out = run(&mut c, &words(55.0, true), &ev);
        assert_eq!(out[2], 1, "back on once cooled below derate_c");
    }

    #[test]
    fn unplugged_cable_means_standby() {
        let ev = EventBus::new(16);
        let mut c = LightControl::new(cfg(), watch::channel(Default::default()).0);
        let out = run(&mut c, &words(30.0, false), &ev);
        assert_eq!((out[0], out[2]), (0, 0));
        assert!(ev.is_active("light", "CABLE_UNPLUGGED"));
        assert_eq!(run(&mut c, &words(30.0, true), &ev)[2], 1);
    }
}
