//! The headless display sink: takes every frame from the latest-wins channel
//! on its own thread, as a monitor would, and records what it saw: frames
//! shown, frames skipped (sequence gaps), the longest interval between two
//! frames, and each frame's pass-through delay (capture stamp to display).
//! It never looks at the analysis.

use super::frame::FrameRef;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What the sink has seen so far.
#[derive(Debug, Clone, Default)]
pub struct DisplayStats {
    pub shown: u64,
    pub skipped: u64,
    pub last_seq: u64,
    pub max_interval: Duration,
    /// Pass-through delay per shown frame, microseconds (capped at 1e6 samples).
    pub delays_us: Vec<u32>,
}

pub struct DisplaySink {
    stats: Arc<Mutex<DisplayStats>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const MAX_SAMPLES: usize = 1_000_000;

impl DisplaySink {
    pub fn start(mut frames: watch::Receiver<Option<FrameRef>>) -> std::io::Result<DisplaySink> {
        let stats = Arc::new(Mutex::new(DisplayStats::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (stats.clone(), stop.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("display".into())
            .spawn(move || {
                let mut last_shown: Option<Instant> = None;
                while !sp.load(Ordering::Acquire) {
                    // Wake at least every 50 ms to notice `stop`.
                    match rt.block_on(tokio::time::timeout(
                        Duration::from_millis(50),
                        frames.changed(),
                    )) {
                        Err(_) => continue,
                        Ok(Err(_)) => return, // capture side gone for good
                        Ok(Ok(())) => {}
                    }
                    let Some(frame) = frames.borrow_and_update().clone() else {
                        continue;
                    };
                    let now = Instant::now();
                    let mut s = st.lock().unwrap_or_else(|p| p.into_inner());
                    if frame.seq <= s.last_seq {
                        continue;
                    }
                    if s.last_seq > 0 {
                        s.skipped += frame.seq - s.last_seq - 1;
                    }
                    s.last_seq = frame.seq;
                    s.shown += 1;
                    if let Some(t) = last_shown {
                        s.max_interval = s.max_interval.max(now.duration_since(t));
                    }
                    last_shown = Some(now);
                    if s.delays_us.len() < MAX_SAMPLES {
                        s.delays_us.push(
                            now.duration_since(frame.captured_at)
                                .as_micros()
                                .min(u128::from(u32::MAX)) as u32,
                        );
                    }
                }
            })?;
        Ok(DisplaySink {
            stats,
            stop,
            thread: Some(thread),
        })
    }

    pub fn stats(&self) -> DisplayStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn stop(mut self) -> DisplayStats {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.stats()
    }
}
