//! Test hooks (cargo feature `fault-injection`): make an island panic or
//! stall inside a cycle, or build a deliberately broken island. They exist
//! only in test and scenario builds; the release binary has none of them, so
//! nothing in it can disable an interlock.

use std::sync::atomic::{AtomicBool, AtomicU64};

/// Shared by every island of one host, so a hook armed before a hand-over
/// still reaches the island that runs.
#[derive(Debug, Default)]
pub struct IslandHooks {
    /// Panic inside the next cycle (the island must catch it and go on).
    pub panic_next_cycle: AtomicBool,
    /// Block the island thread for this many ms in the next cycle, as a
    /// deadlock would (the watchdog must hand over to a new island).
    pub stall_next_cycle_ms: AtomicU64,
    /// A deliberately broken island: it keeps its period and heartbeats but
    /// writes no interlock (SAFETY_CMD 0, SAFETY_CAP 100) and raises nothing.
    /// Only for the test that proves the scenario suite catches it.
    pub interlocks_disabled: AtomicBool,
    /// Fail every request to this device index (0 insufflator, 1 light) for
    /// this many more ms from the next cycle on: an island-only link drop.
    pub drop_link_ms: [AtomicU64; 2],
}
