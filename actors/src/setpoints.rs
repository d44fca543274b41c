//! The setpoints in force, and the tower safe-state latch.
//!
//! Written only by the command path (after validation) and by meltdown
//! escalation; read lock-free by the device actors and by the safety island,
//! which must never wait on the management plane. A device actor restarted by
//! its supervisor picks the accepted setpoints up from here.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn new(v: f64) -> Self {
        Self(AtomicU64::new(v.to_bits()))
    }
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Acquire))
    }
    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Release)
    }
}

#[derive(Debug, Default)]
struct Inner {
    pressure_mmhg: AtomicF64,
    flow_lpm: AtomicF64,
    intensity_pct: AtomicF64,
    safe_state: AtomicBool,
}

/// Shared, lock-free setpoints. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Setpoints(Arc<Inner>);

impl Setpoints {
    pub fn new(pressure_mmhg: f64, flow_lpm: f64, intensity_pct: f64) -> Self {
        Self(Arc::new(Inner {
            pressure_mmhg: AtomicF64::new(pressure_mmhg),
            flow_lpm: AtomicF64::new(flow_lpm),
            intensity_pct: AtomicF64::new(intensity_pct),
            safe_state: AtomicBool::new(false),
        }))
    }

    /// P1, the set pressure.
    pub fn pressure_mmhg(&self) -> f64 {
        self.0.pressure_mmhg.get()
    }
    pub fn flow_lpm(&self) -> f64 {
        self.0.flow_lpm.get()
    }
    pub fn intensity_pct(&self) -> f64 {
        self.0.intensity_pct.get()
    }
    /// True once the tower has been put in its safe state (meltdown).
    pub fn safe_state(&self) -> bool {
        self.0.safe_state.load(Ordering::Acquire)
    }

    // Writers: only the command path (validated) and meltdown escalation.
    pub(crate) fn set_pressure_mmhg(&self, v: f64) {
        self.0.pressure_mmhg.set(v)
    }
    pub(crate) fn set_flow_lpm(&self, v: f64) {
        self.0.flow_lpm.set(v)
    }
    pub(crate) fn set_intensity_pct(&self, v: f64) {
        self.0.intensity_pct.set(v)
    }
    /// Latch the tower safe state. Cleared only by restarting the tower.
    pub fn enter_safe_state(&self) {
        self.0.safe_state.store(true, Ordering::Release)
    }
}
