//! The process's allocator policy, set once at start-up before any thread.
//!
//! Video frames (2.6 MiB at 720p RGB, 6 MiB at 1080p), ONNX Runtime's arenas
//! and model weights are large, short-lived buffers. glibc serves an
//! allocation above its mmap threshold with its own mapping and unmaps it on
//! free, but by default it *raises* that threshold (up to 32 MiB) each time
//! such a mapping is freed. After the first frames, every frame then comes
//! from the heap, and the holes left by a restarted actor's buffers stay
//! mapped: RSS climbs in steps at every restart and never comes back
//! (the soak measured +18 to +33 MiB over the second half of its hour).
//!
//! Fixing the threshold at [`MMAP_THRESHOLD`] keeps every buffer of that size
//! or more in its own mapping, returned to the system when freed, so memory
//! after a restart goes back to where it was. The price is a page fault per
//! page of each new buffer; measured in BENCHMARKS.md ("soak"), it is within
//! run-to-run noise of the whole tower's CPU time.
//!
//! `MALLOC_MMAP_THRESHOLD_` in the environment (glibc's own switch) wins.

/// Allocations of at least this many bytes get their own mapping.
pub const MMAP_THRESHOLD: usize = 1 << 20;

/// What [`apply`] did, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryPolicy {
    /// The threshold is fixed at [`MMAP_THRESHOLD`].
    FixedMmapThreshold,
    /// `MALLOC_MMAP_THRESHOLD_` is set: glibc follows it.
    LeftToEnvironment,
    /// Not glibc, or glibc refused: the allocator's default stands.
    AllocatorDefault,
}

/// Fix the allocator's mmap threshold. Call first thing in `main`.
pub fn apply() -> MemoryPolicy {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return MemoryPolicy::LeftToEnvironment;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes glibc's tuning parameters; it is
        // called before the process starts any other thread.
        if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) } == 1 {
            return MemoryPolicy::FixedMmapThreshold;
        }
    }
    MemoryPolicy::AllocatorDefault
}

/// Lock every page of the process in memory, now and from now on
/// (`mlockall(MCL_CURRENT | MCL_FUTURE)`), so the real-time threads (the
/// safety island, its watchdog, the embedded simulators) never take a page
/// fault, which would wait on the address-space lock that other threads
/// take for every frame-sized mapping. Needs CAP_IPC_LOCK or a large
/// enough RLIMIT_MEMLOCK; the error says which.
pub fn lock_all() -> std::io::Result<()> {
    // SAFETY: mlockall has no memory-safety preconditions.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Resident memory of this process, MiB (0 when /proc is unavailable).
pub fn rss_mib() -> f64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return 0.0 };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    const FRAME: usize = 1280 * 720 * 3;

    /// RSS is the whole process's: the measurement runs alone, in a child
    /// process of this test binary, so other tests' allocations cannot move it.
    #[test]
    fn freed_frame_buffers_go_back_to_the_system_even_after_a_larger_buffer_was_freed() {
        const CHILD: &str = "ENDOTOWER_MEMORY_TEST_CHILD";
        if std::env::var_os(CHILD).is_none() {
            let me = std::env::current_exe().unwrap();
            let out = std::process::Command::new(me)
                .args(["--exact", "memory_policy::tests::freed_frame_buffers_go_back_to_the_system_even_after_a_larger_buffer_was_freed"])
                .args(["--test-threads", "1", "--nocapture"])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{text}");
            assert!(text.contains("1 passed"), "the child did not run the test: {text}");
            return;
        }
        if apply() == MemoryPolicy::LeftToEnvironment {
            eprintln!("MALLOC_MMAP_THRESHOLD_ is set: the environment decides, nothing to check");
            return;
        }
        assert_eq!(apply(), MemoryPolicy::FixedMmapThreshold);
        // Freeing a mapped 2-frame buffer is what makes glibc's default raise
        // its threshold above frame size.
        drop(std::hint::black_box(vec![1u8; 2 * FRAME]));
        let before = rss_mib();
        let frames: Vec<Vec<u8>> = (0..64).map(|i| vec![(i % 255) as u8 + 1; FRAME]).collect();
        // A small allocation made after the frames, kept across the free.
        let pinned = std::hint::black_box(vec![7u8; 256]);
        let held = rss_mib();
        drop(std::hint::black_box(frames));
        let after = rss_mib();
        assert!(held - before > 120.0, "64 frames should take ~169 MiB: {before:.0} -> {held:.0} MiB");
        assert!(
            after - before < 16.0,
            "freed frames stayed resident: {before:.0} MiB before, {held:.0} MiB held, {after:.0} MiB after the free"
        );
        drop(pinned);
    }
}
