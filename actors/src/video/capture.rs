//! The capture stage: pulls frames from a [`FrameSource`] on its own thread,
//! paced on absolute deadlines at the source's frame rate, stamps them and
//! publishes each to a latest-wins `watch` channel read by the display and
//! the analysis. Nothing downstream can slow it down.
//!
//! The actor owns the thread: it starts it, watches it (a thread that died or
//! stopped delivering fails the actor, so the supervisor restarts it) and
//! stops it when the actor stops.

use super::frame::{Frame, FrameRef, PixelFormat};
use super::source::{FrameSource, SourceError};
use crate::supervisor::Liveness;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Builds a fresh source on every (re)start.
pub type SourceFactory = Arc<dyn Fn() -> Result<Box<dyn FrameSource>, SourceError> + Send + Sync>;

/// Counters of the capture stage, kept across restarts.
#[derive(Debug, Default)]
pub struct CaptureStats {
    /// Sequence number of the last frame published (also the count).
    pub last_seq: AtomicU64,
    /// Periods in which the source delivered nothing.
    pub dropouts: AtomicU64,
    /// Frames the source delivered in a broken shape (rejected, counted).
    pub rejected: AtomicU64,
}

pub struct CaptureArgs {
    pub source: SourceFactory,
    pub frames: watch::Sender<Option<FrameRef>>,
    pub stats: Arc<CaptureStats>,
    pub liveness: Liveness,
    /// Run the capture thread at SCHED_FIFO [`crate::thread_priority::CAPTURE_PRIORITY`].
    pub realtime: bool,
}

pub enum CaptureMsg {
    Watchdog,
}

pub struct CaptureState {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<CaptureStats>,
    liveness: Liveness,
    last_seen: (u64, u64, Instant),
    stall_limit: Duration,
}

pub struct CaptureActor;

fn run(
    mut source: Box<dyn FrameSource>,
    frames: watch::Sender<Option<FrameRef>>,
    stats: Arc<CaptureStats>,
    stop: Arc<AtomicBool>,
    realtime: bool,
) {
    // Frames must leave on time whatever the AI and the management plane do.
    if realtime {
        crate::thread_priority::make_realtime("capture", crate::thread_priority::CAPTURE_PRIORITY);
    }
    let period = Duration::from_secs_f64(1.0 / source.fps().clamp(1.0, 1000.0));
    let mut next = Instant::now();
    while !stop.load(Ordering::Acquire) {
        match source.next_frame() {
            Ok(Some(f)) => {
                let seq = stats.last_seq.load(Ordering::Relaxed) + 1;
                match Frame::new(seq, Instant::now(), f.width, f.height, PixelFormat::Rgb8, f.rgb) {
                    Ok(frame) => {
                        stats.last_seq.store(seq, Ordering::Release);
                        frames.send_replace(Some(Arc::new(frame)));
                    }
                    Err(e) => {
                        stats.rejected.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("capture: frame rejected: {e}");
                    }
                }
            }
            Ok(None) => {
                stats.dropouts.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!("capture: source failed: {e}");
                return; // the watchdog notices and the supervisor restarts us
            }
        }
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now; // behind: re-phase, never burst
        }
    }
}

impl Actor for CaptureActor {
    type Msg = CaptureMsg;
    type State = CaptureState;
    type Arguments = CaptureArgs;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, a: CaptureArgs) -> Result<Self::State, ActorProcessingErr> {
        a.liveness.beat();
        let source = (a.source)()?;
        let stall_limit = Duration::from_secs_f64((10.0 / source.fps().max(1.0)).max(0.5));
        let stop = Arc::new(AtomicBool::new(false));
        let (frames, stats, stop2, realtime) = (a.frames.clone(), a.stats.clone(), stop.clone(), a.realtime);
        let thread = std::thread::Builder::new().name("capture".into()).spawn(move || run(source, frames, stats, stop2, realtime))?;
        myself.send_interval(Duration::from_millis(50), || CaptureMsg::Watchdog);
        let seen = (a.stats.last_seq.load(Ordering::Acquire), a.stats.dropouts.load(Ordering::Acquire), Instant::now());
        Ok(CaptureState { stop, thread: Some(thread), stats: a.stats, liveness: a.liveness, last_seen: seen, stall_limit })
    }

    async fn post_stop(&self, _myself: ActorRef<Self::Msg>, s: &mut Self::State) -> Result<(), ActorProcessingErr> {
        s.stop.store(true, Ordering::Release);
        if let Some(t) = s.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        Ok(())
    }

    async fn handle(&self, _myself: ActorRef<Self::Msg>, _msg: Self::Msg, s: &mut Self::State) -> Result<(), ActorProcessingErr> {
        s.liveness.beat();
        if s.thread.as_ref().is_none_or(|t| t.is_finished()) {
            return Err("capture thread stopped".into());
        }
        let now = (s.stats.last_seq.load(Ordering::Acquire), s.stats.dropouts.load(Ordering::Acquire));
        if (now.0, now.1) != (s.last_seen.0, s.last_seen.1) {
            s.last_seen = (now.0, now.1, Instant::now());
        } else if s.last_seen.2.elapsed() > s.stall_limit {
            return Err(format!("capture stalled: no frame for {} ms", s.last_seen.2.elapsed().as_millis()).into());
        }
        Ok(())
    }
}

/// However the actor ends (even by a panic, which skips `post_stop`), its
/// capture thread stops: two threads must never feed the same channel.
impl Drop for CaptureState {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}
