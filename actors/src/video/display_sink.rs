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
    /// Start the sink thread; `stats` may be shared across restarts.
    pub fn start(mut frames: watch::Receiver<Option<FrameRef>>, stats: Arc<Mutex<DisplayStats>>) -> std::io::Result<DisplaySink> {
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (stats.clone(), stop.clone());
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
        let thread = std::thread::Builder::new().name("display".into()).spawn(move || {
            crate::thread_priority::make_realtime("display", crate::thread_priority::DISPLAY_PRIORITY);
            let mut last_shown: Option<Instant> = None;
            while !sp.load(Ordering::Acquire) {
                // Wake at least every 50 ms to notice `stop`.
                match rt.block_on(async { tokio::time::timeout(Duration::from_millis(50), frames.changed()).await }) {
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
                    s.delays_us.push(now.duration_since(frame.captured_at).as_micros().min(u128::from(u32::MAX)) as u32);
                }
            }
        })?;
        Ok(DisplaySink { stats, stop, thread: Some(thread) })
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

    fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

/// The display as a supervised actor owning the sink thread.
pub struct DisplayActor;

pub struct DisplayArgs {
    pub frames: watch::Receiver<Option<FrameRef>>,
    pub stats: Arc<Mutex<DisplayStats>>,
    pub liveness: crate::supervisor::Liveness,
}

pub struct DisplayState {
    sink: Option<DisplaySink>,
    liveness: crate::supervisor::Liveness,
}

impl ractor::Actor for DisplayActor {
    type Msg = ();
    type State = DisplayState;
    type Arguments = DisplayArgs;

    async fn pre_start(&self, myself: ractor::ActorRef<()>, a: DisplayArgs) -> Result<DisplayState, ractor::ActorProcessingErr> {
        a.liveness.beat();
        let sink = DisplaySink::start(a.frames, a.stats)?;
        myself.send_interval(Duration::from_millis(50), || ());
        Ok(DisplayState { sink: Some(sink), liveness: a.liveness })
    }

    async fn handle(&self, _m: ractor::ActorRef<()>, _msg: (), s: &mut DisplayState) -> Result<(), ractor::ActorProcessingErr> {
        s.liveness.beat();
        if !s.sink.as_ref().is_some_and(DisplaySink::running) {
            return Err("display sink thread stopped".into());
        }
        Ok(())
    }

    async fn post_stop(&self, _m: ractor::ActorRef<()>, s: &mut DisplayState) -> Result<(), ractor::ActorProcessingErr> {
        if let Some(sink) = s.sink.take() {
            let _ = tokio::task::spawn_blocking(move || sink.stop()).await;
        }
        Ok(())
    }
}

impl Drop for DisplaySink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}
