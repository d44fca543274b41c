//! The heartbeat fail-safe every device runs on its own: a device boots in
//! fail-safe, leaves it when its HEARTBEAT word first changes, and re-enters it
//! when the word has not changed for the configured timeout.

use tracing::{info, warn};

/// Heartbeat watchdog of one device, driven by physics time.
#[derive(Clone, Debug)]
pub(crate) struct Heartbeat {
    device: &'static str,
    timeout_s: f64,
    silent_s: f64,
    failsafe: bool,
    /// Fail-safe entries after a heartbeat timeout (the boot state not counted).
    entries: u64,
}

impl Heartbeat {
    /// A watchdog that starts in fail-safe.
    pub(crate) fn new(device: &'static str, timeout_s: f64) -> Self {
        Self { device, timeout_s, silent_s: 0.0, failsafe: true, entries: 0 }
    }

    /// How often the device fell back to its fail-safe since boot.
    pub(crate) fn entries(&self) -> u64 {
        self.entries
    }

    pub(crate) fn failsafe(&self) -> bool {
        self.failsafe
    }

    /// The HEARTBEAT word changed: the tower is alive.
    pub(crate) fn beat(&mut self) {
        self.silent_s = 0.0;
        if self.failsafe {
            self.failsafe = false;
            info!(device = self.device, reason = "heartbeat changed", "fail-safe exit");
        }
    }

    /// Advance physics time by `dt_s` seconds without a heartbeat.
    pub(crate) fn tick(&mut self, dt_s: f64) {
        self.silent_s += dt_s;
        if !self.failsafe && self.silent_s >= self.timeout_s {
            self.failsafe = true;
            self.entries += 1;
            warn!(device = self.device, reason = "heartbeat unchanged", silent_ms = (self.silent_s * 1000.0).round(), "fail-safe entry");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boots_in_failsafe_leaves_on_beat_and_reenters_after_timeout() {
        let mut hb = Heartbeat::new("test", 0.3);
        assert!(hb.failsafe());
        hb.tick(1.0);
        assert!(hb.failsafe());
        hb.beat();
        assert!(!hb.failsafe());
        hb.tick(0.29);
        assert!(!hb.failsafe());
        hb.beat();
        hb.tick(0.29);
        assert!(!hb.failsafe(), "a beat restarts the timeout");
        hb.tick(0.02);
        assert!(hb.failsafe());
    }
}
