//! The physics clock: a dedicated OS thread stepping every device at a fixed
//! period with absolute deadlines, handing each step the real elapsed time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sim_device::DynDevice;

/// Fraction of the way a first-order lag with time constant `tau` (s) moves in `dt` (s).
pub(crate) fn lag(dt: f64, tau: f64) -> f64 {
    if tau <= 0.0 {
        1.0
    } else {
        1.0 - (-dt / tau).exp()
    }
}

/// Step `devices` every `period` until `stop` is set.
pub(crate) fn run(devices: Vec<Arc<DynDevice>>, period: Duration, stop: Arc<AtomicBool>) {
    let mut last = Instant::now();
    let mut deadline = last + period;
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
        let now = Instant::now();
        let dt = now.duration_since(last).as_secs_f64();
        last = now;
        for device in &devices {
            device.lock().step(dt);
        }
        deadline += period;
        if deadline + period < now {
            // Overrun (e.g. the process was suspended): resume the cadence from
            // now instead of bursting through the missed steps; dt stays exact.
            deadline = now + period;
        }
    }
}
