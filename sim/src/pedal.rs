//! Foot pedal: a press counter and a "pressed" bit held for 100 ms per press.

use endotower_actors::registers::pedal as reg;

use crate::faults::FaultSet;
use crate::sim_device::Model;
use crate::table::RegisterTable;

/// How long STATE b0 stays set after a press, s.
const PRESSED_S: f64 = 0.1;
const STATE_PRESSED: u16 = 1 << 0;
const STATE_FAILSAFE: u16 = 1 << 3;

/// Pedal model state.
#[derive(Clone, Debug, Default)]
pub(crate) struct Pedal {
    presses: u16,
    pressed_left_s: f64,
    seq: u16,
}

impl Pedal {
    /// A press: counts at once and holds the pressed bit for 100 ms.
    pub(crate) fn press(&mut self) {
        self.hold(PRESSED_S);
    }

    /// A press held down for `seconds`: one count, the pressed bit all along.
    pub(crate) fn hold(&mut self, seconds: f64) {
        self.presses = self.presses.wrapping_add(1);
        self.pressed_left_s = if seconds.is_finite() { seconds.max(0.0) } else { PRESSED_S };
    }
}

impl Model for Pedal {
    const HEARTBEAT: u16 = reg::HEARTBEAT;
    const MAP: &'static [endotower_actors::registers::RegisterSpec] = reg::MAP;

    fn integrate(&mut self, dt: f64, _: &RegisterTable, _: &FaultSet, _: bool) {
        self.pressed_left_s = (self.pressed_left_s - dt).max(0.0);
    }

    fn publish(&mut self, table: &mut RegisterTable, _: &FaultSet, failsafe: bool) {
        let mut state = 0;
        if self.pressed_left_s > 0.0 {
            state |= STATE_PRESSED;
        }
        if failsafe {
            state |= STATE_FAILSAFE;
        }
        self.seq = self.seq.wrapping_add(1);
        table.set(reg::PRESS_COUNT, self.presses);
        table.set(reg::STATE, state);
        table.set(reg::SAMPLE_SEQ, self.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Device;
    use crate::sim_device::bench::Bench;

    #[test]
    fn a_press_counts_and_holds_the_pressed_bit_for_100_ms() {
        let mut b = Bench::new(Device::Pedal, Pedal::default());
        b.run(0.01, true);
        assert_eq!(b.reg(reg::STATE), 0);
        b.sim.model_mut().press();
        b.run(0.05, true);
        assert_eq!(b.reg(reg::PRESS_COUNT), 1);
        assert_eq!(b.reg(reg::STATE), STATE_PRESSED);
        b.run(0.06, true);
        assert_eq!(b.reg(reg::STATE), 0);
        b.run(0.5, false);
        assert_eq!(b.reg(reg::STATE), STATE_FAILSAFE);
    }
}
