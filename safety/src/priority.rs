//! Real-time scheduling of the island's threads, best effort: SCHED_FIFO
//! needs CAP_SYS_NICE. The result is returned, not logged (the caller
//! reports it off the island's thread).

/// The island loop.
pub const SAFETY_PRIORITY: i32 = 50;
/// The watchdog that replaces a stalled island: above the island, so a
/// spinning island cannot starve it.
pub const WATCHDOG_PRIORITY: i32 = 51;
/// Embedded device simulators (they stand for separate hardware): just
/// under the island, above the video threads.
pub const SIMULATOR_PRIORITY: i32 = 49;

/// SCHED_FIFO at `priority` and a 1 ns timer slack for the calling thread.
/// False when not permitted (the thread keeps its normal priority).
pub fn make_realtime(priority: i32) -> bool {
    // SAFETY: plain syscalls on the calling thread with valid arguments.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0);
        let param = libc::sched_param { sched_priority: priority };
        libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0
    }
}

/// The calling thread's scheduling policy is SCHED_FIFO.
pub fn is_realtime() -> bool {
    // SAFETY: querying our own thread.
    unsafe { libc::sched_getscheduler(0) == libc::SCHED_FIFO }
}
