//! Scheduling classes of the tower's own threads, best effort.
//!
//! - The safety island loop: SCHED_FIFO 50 ([`SAFETY_PRIORITY`]).
//! - The display thread: SCHED_FIFO 40, below the safety island, above
//!   everything else, so the live picture is not delayed by analysis or
//!   inference work on a busy machine.
//! - The inference worker: nice +10, so ONNX Runtime yields the cores to the
//!   live picture and the device plane.
//!
//! Real-time classes need CAP_SYS_NICE; without it each thread says so once in
//! the log and runs at normal priority. Both calls apply to the calling thread
//! only.

pub use endotower_safety::priority::SAFETY_PRIORITY;
pub const DISPLAY_PRIORITY: i32 = 40;
/// The capture thread feeds the display: just above it.
pub const CAPTURE_PRIORITY: i32 = 41;
pub const INFERENCE_NICE: i32 = 10;

/// SCHED_FIFO at `priority` and a 1 us timer slack for the calling thread.
pub fn make_realtime(thread: &str, priority: i32) -> bool {
    // SAFETY: plain syscalls on the calling thread with valid arguments.
    let ok = unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0);
        let param = libc::sched_param { sched_priority: priority };
        libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0
    };
    if ok {
        tracing::info!(thread, priority, "running with SCHED_FIFO");
    } else {
        tracing::warn!(thread, error = %std::io::Error::last_os_error(), "SCHED_FIFO not permitted; running at normal priority");
    }
    ok
}

/// Lower the calling thread's priority to `nice` (Linux nice is per thread).
pub fn make_background(thread: &str, nice: i32) -> bool {
    // SAFETY: gettid has no preconditions; setpriority on our own tid.
    let ok = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) == 0
    };
    if !ok {
        tracing::warn!(thread, nice, error = %std::io::Error::last_os_error(), "cannot lower thread priority");
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_background_thread_gets_the_asked_nice_value_and_others_keep_theirs() {
        let nice = std::thread::spawn(|| {
            assert!(make_background("test", INFERENCE_NICE));
            // SAFETY: reading our own thread's nice value.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
        })
        .join()
        .unwrap();
        assert_eq!(nice, INFERENCE_NICE);
        // SAFETY: as above, for the test's own thread.
        let mine = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        assert_ne!(mine, INFERENCE_NICE, "nice applies to the calling thread only");
    }
}
