//! Foot pedal: turns changes of the device's press counter into press events.
//! A counter (not a level) is read, so a press shorter than the poll period is
//! never missed; the first read after (re)connecting only sets the baseline.

use crate::device_actor::{ControlCtx, DeviceControl};
use crate::device_status::{PedalPress, PedalStatus};
use crate::link::LinkState;
use crate::registers::pedal as reg;
use tokio::sync::{broadcast, watch};

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

    fn update(&mut self, w: &[u16], _ctx: &mut ControlCtx<'_>) -> Option<Vec<u16>> {
        let count = w[reg::PRESS_COUNT as usize];
        let state = w[reg::STATE as usize];
        self.status.pressed = state & 1 != 0;
        self.status.failsafe = state & (1 << 3) != 0;
        if let Some(base) = self.baseline {
            let new = count.wrapping_sub(base);
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

    fn publish(&self, link: LinkState, polls: u64) {
        let mut s = self.status.clone();
        s.link = link;
        s.polls = polls;
        self.tx.send_replace(s);
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
}
