//! Foot pedal: turns changes of the device's press counter into press events.
//! A counter (not a level) is read, so a press shorter than the poll period is
//! never missed; the first read after (re)connecting only sets the baseline.

use crate::device_actor::{ControlCtx, DeviceControl};
use crate::device_status::{PedalPress, PedalStatus};
use crate::link::LinkState;
use crate::registers::pedal as reg;
use tokio::sync::{broadcast, watch};

/// More presses than a foot can make between two polls (50 Hz polling, a
/// press takes well over 50 ms): a larger step, or a counter that went
/// backwards, is a device reset or a glitch, not presses.
const MAX_PRESSES_PER_POLL: u16 = 8;

pub struct PedalControl {
    baseline: Option<u16>,
    status: PedalStatus,
    tx: watch::Sender<PedalStatus>,
    presses: broadcast::Sender<PedalPress>,
}

impl PedalControl {
    /// The press count already published carries over an actor restart.
    pub fn new(tx: watch::Sender<PedalStatus>, presses: broadcast::Sender<PedalPress>) -> Self {
        let status = PedalStatus { presses: tx.borrow().presses, ..PedalStatus::default() };
        Self { baseline: None, status, tx, presses }
    }
}

impl DeviceControl for PedalControl {
    const READ_LEN: u16 = reg::SENSOR_LEN;
    const CONTROL_ADDR: u16 = reg::SENSOR_LEN; // no control outputs
    const CONTROL_LEN: u16 = 0;
    crate::status_on_watch!(PedalStatus);

    fn update(&mut self, w: &[u16], ctx: &mut ControlCtx<'_>) -> Option<Vec<u16>> {
        let count = w[reg::PRESS_COUNT as usize];
        let state = w[reg::STATE as usize];
        self.status.pressed = state & 1 != 0;
        self.status.failsafe = state & (1 << 3) != 0;
        if let Some(base) = self.baseline {
            let mut new = count.wrapping_sub(base);
            if new > MAX_PRESSES_PER_POLL {
                let why =
                    format!("pedal press counter jumped from {base} to {count}: device reset or glitch, re-baselined, no presses counted");
                ctx.events.event(crate::events::EventKind::Degradation, crate::events::Severity::Low, "pedal", "COUNTER_JUMP", why);
                new = 0;
            }
            for _ in 0..new {
                self.status.presses += 1;
                tracing::info!(press = self.status.presses, "pedal pressed");
                // No subscriber is fine: nobody is waiting for presses yet.
                let _ = self.presses.send(PedalPress { number: self.status.presses });
            }
        }
        self.baseline = Some(count);
        None
    }

    fn on_link_down(&mut self, _state: LinkState, _ctx: &mut ControlCtx<'_>) {
        // Presses during an outage cannot be attributed to a frame: re-baseline.
        self.baseline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventBus;
    use crate::setpoints::Setpoints;
    use std::time::Duration;

    #[test]
    fn counter_changes_become_press_events_and_the_first_read_is_a_baseline() {
        let (ptx, mut prx) = broadcast::channel(8);
        let mut c = PedalControl::new(watch::channel(Default::default()).0, ptx);
        let sp = Setpoints::default();
        let ev = EventBus::new(8);
        let mut ctx = ControlCtx { setpoints: &sp, events: &ev, dt: Duration::from_millis(20) };
        c.update(&[7, 0, 1], &mut ctx);
        assert!(prx.try_recv().is_err(), "baseline only");
        c.update(&[9, 0, 2], &mut ctx);
        assert_eq!(prx.try_recv().unwrap().number, 1);
        assert_eq!(prx.try_recv().unwrap().number, 2);
        c.update(&[9, 0, 3], &mut ctx);
        assert!(prx.try_recv().is_err());
    }

    /// Issue 14: a counter that went backwards (a device reset) read as
    /// about 65 000 presses.
    #[test]
    fn a_counter_that_goes_backwards_or_jumps_is_a_reset_not_presses() {
        let (ptx, mut prx) = broadcast::channel(8);
        let mut c = PedalControl::new(watch::channel(Default::default()).0, ptx);
        let sp = Setpoints::default();
        let ev = EventBus::new(8);
        let mut events = ev.subscribe();
        let mut ctx = ControlCtx { setpoints: &sp, events: &ev, dt: Duration::from_millis(20) };
        c.update(&[500, 0, 1], &mut ctx);
        c.update(&[3, 0, 2], &mut ctx);
        assert!(prx.try_recv().is_err(), "backwards: no presses");
        assert_eq!(events.try_recv().unwrap().code, "COUNTER_JUMP");
        c.update(&[4, 0, 3], &mut ctx);
        assert_eq!(prx.try_recv().unwrap().number, 1, "counting resumes from the new baseline");
        c.update(&[4000, 0, 4], &mut ctx);
        assert!(prx.try_recv().is_err(), "a jump of thousands: no presses");
        // A genuine wrap of the 16-bit counter is still presses.
        c.update(&[65535, 0, 5], &mut ctx);
        c.update(&[1, 0, 6], &mut ctx);
        assert_eq!(prx.try_recv().unwrap().number, 2);
        assert_eq!(prx.try_recv().unwrap().number, 3);
    }
}
