//! Camera control unit: fixed video parameters, a frame counter running at the
//! frame rate, and plain stored exposure / gain / white-balance words.

use endotower_actors::registers::{camera as reg, encode_signed};
use reg::status;

use crate::config::CameraModel;
use crate::faults::FaultSet;
use crate::sim_device::Model;
use crate::table::RegisterTable;

/// Camera model state.
#[derive(Clone, Debug)]
pub(crate) struct Camera {
    model: CameraModel,
    /// Frames produced, with the fraction of the next one.
    frames: f64,
    seq: u16,
}

impl Camera {
    pub(crate) fn new(model: CameraModel) -> Self {
        Self { model, frames: 0.0, seq: 0 }
    }
}

impl Model for Camera {
    const HEARTBEAT: u16 = reg::HEARTBEAT;
    const MAP: &'static [endotower_actors::registers::RegisterSpec] = reg::MAP;

    /// Power-on values: video format, EXPOSURE 1000, GAIN 0, WHITE_BALANCE 550.
    fn init_table(&self, table: &mut RegisterTable) {
        table.set(reg::WIDTH, self.model.width);
        table.set(reg::HEIGHT, self.model.height);
        table.set(reg::FPS, self.model.fps);
        table.set(reg::EXPOSURE, 1000);
        table.set(reg::GAIN, 0);
        table.set(reg::WHITE_BALANCE, 550);
    }

    fn integrate(&mut self, dt: f64, _: &RegisterTable, _: &FaultSet, _: bool) {
        // Wrap well inside f64's exact integer range; the word wraps at 2^16 anyway.
        self.frames = (self.frames + dt * f64::from(self.model.fps)) % 65536.0;
    }

    fn publish(&mut self, table: &mut RegisterTable, _: &FaultSet, failsafe: bool) {
        let mut bits = status::STREAMING | status::SENSOR_OK;
        if failsafe {
            bits |= status::FAILSAFE;
        }
        self.seq = self.seq.wrapping_add(1);
        table.set(reg::STATUS, bits);
        table.set(reg::SENSOR_TEMP, encode_signed(self.model.sensor_temp_c, 0.1));
        // The epsilon keeps an exact frame boundary from reading one frame short.
        table.set(reg::FRAME_COUNTER, (self.frames + 1e-6) as u16);
        table.set(reg::SAMPLE_SEQ, self.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Device;
    use crate::sim_device::bench::Bench;

    #[test]
    fn frame_counter_runs_at_fps_and_failsafe_only_sets_a_status_bit() {
        let mut b = Bench::new(Device::Camera, Camera::new(CameraModel::default()));
        assert_eq!((b.reg(reg::WIDTH), b.reg(reg::HEIGHT), b.reg(reg::FPS)), (1920, 1080, 30));
        assert_eq!((b.reg(reg::EXPOSURE), b.reg(reg::GAIN), b.reg(reg::WHITE_BALANCE)), (1000, 0, 550));
        b.run(1.0, false);
        assert_eq!(b.reg(reg::FRAME_COUNTER), 30);
        assert_eq!(b.reg(reg::STATUS), status::STREAMING | status::SENSOR_OK | status::FAILSAFE);
        b.run(1.0, true);
        assert_eq!(b.reg(reg::STATUS), status::STREAMING | status::SENSOR_OK);
        assert_eq!(b.reg(reg::SENSOR_TEMP), 380);
        b.write(reg::EXPOSURE, 1234);
        assert_eq!(b.reg(reg::EXPOSURE), 1234);
    }
}
