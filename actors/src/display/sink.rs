//! The display sink: takes every frame from the latest-wins channel on its
//! own thread, as a monitor would, draws the overlay on it (CPU or wgpu
//! compositor, [`crate::display`]) and records what it saw: frames shown,
//! frames skipped (sequence gaps), the longest interval between two frames,
//! each frame's pass-through delay (capture stamp to composed picture) and
//! compositing time. It never waits on the analysis: the overlay is a
//! latest-wins value the display actor rebuilds from the tower's state.

use crate::display::composed::ComposedSlot;
use crate::display::config::{DisplayConfig, RendererChoice};
use crate::display::overlay::Overlay;
use crate::display::overlay_source::OverlaySource;
use crate::display::renderer::Renderer;
use crate::display::scene::layout;
use crate::video::enhance::channels::{EnhanceChannels, EnhanceStats, EnhanceStatus};
use crate::video::enhance::sequencer::{Release, Sequencer};
use crate::video::frame::FrameRef;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};

/// What the sink has seen so far.
#[derive(Debug, Clone, Default)]
pub struct DisplayStats {
    pub shown: u64,
    pub skipped: u64,
    /// Frames shown after a newer one (must stay 0).
    pub reordered: u64,
    pub last_seq: u64,
    pub max_interval: Duration,
    /// Pass-through delay per shown frame, microseconds (capped at 1e6 samples).
    pub delays_us: Vec<u32>,
    /// Time spent compositing each frame, us (empty without a renderer).
    pub compose_us: Vec<u32>,
    pub compose_errors: u64,
    /// The compositor in use, once the sink has started.
    pub renderer: Option<&'static str>,
}

pub struct DisplaySink {
    stats: Arc<Mutex<DisplayStats>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What the sink needs to draw the overlay on every frame.
pub struct Composer {
    pub renderer: RendererChoice,
    pub overlay: watch::Receiver<Overlay>,
    pub composed: Arc<ComposedSlot>,
}

const MAX_SAMPLES: usize = 1_000_000;

fn push_sample(v: &mut Vec<u32>, d: Duration) {
    if v.len() < MAX_SAMPLES {
        v.push(d.as_micros().min(u128::from(u32::MAX)) as u32);
    }
}

/// What the sink needs to put the enhancement stage in the path.
pub struct EnhanceLink {
    pub channels: EnhanceChannels,
    /// A frame is shown at the latest this long after capture.
    pub budget: Duration,
}

/// The display thread's state between frames.
struct Shower {
    renderer: Option<Renderer>,
    composer: Option<Composer>,
    started: Instant,
    canvas: Vec<u8>,
    last_shown: Option<Instant>,
    stats: Arc<Mutex<DisplayStats>>,
}

impl Shower {
    /// Compose (when there is a renderer) and count one frame.
    fn show(&mut self, frame: &FrameRef) {
        let mut compose_time = None;
        if let (Some(r), Some(c)) = (self.renderer.as_mut(), self.composer.as_ref()) {
            let t0 = Instant::now();
            let scene = layout(&c.overlay.borrow(), frame.width, frame.height, self.started.elapsed().as_millis() as u64);
            match r.compose(frame, &scene, &mut self.canvas) {
                Ok(()) => {
                    compose_time = Some(t0.elapsed());
                    c.composed.publish(frame.seq, frame.width, frame.height, r.name(), &mut self.canvas);
                }
                Err(e) => {
                    tracing::warn!("display: compositing frame {} failed: {e}; the previous picture stays", frame.seq);
                    self.stats.lock().unwrap_or_else(|p| p.into_inner()).compose_errors += 1;
                }
            }
        }
        let now = Instant::now();
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        if s.last_seq > 0 {
            s.skipped += frame.seq.saturating_sub(s.last_seq + 1);
        }
        if frame.seq <= s.last_seq {
            s.reordered += 1;
        }
        s.last_seq = s.last_seq.max(frame.seq);
        s.shown += 1;
        s.renderer = self.renderer.as_ref().map(Renderer::name);
        if let Some(t) = self.last_shown {
            s.max_interval = s.max_interval.max(now.duration_since(t));
        }
        self.last_shown = Some(now);
        push_sample(&mut s.delays_us, now.duration_since(frame.captured_at));
        if let Some(d) = compose_time {
            push_sample(&mut s.compose_us, d);
        }
    }

    fn last_seq(&self) -> u64 {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).last_seq
    }
}

fn count(stats: &EnhanceStats, r: &Release) {
    let c = match r {
        Release::Enhanced(_) => &stats.shown_enhanced,
        Release::Sharp(_) => &stats.shown_sharp,
        Release::Late(_) => &stats.shown_late,
        Release::Bypassed(_) => &stats.shown_bypassed,
    };
    c.fetch_add(1, Ordering::Relaxed);
}

impl DisplaySink {
    pub fn start(
        mut frames: watch::Receiver<Option<FrameRef>>,
        stats: Arc<Mutex<DisplayStats>>,
        composer: Option<Composer>,
        enhance: Option<EnhanceLink>,
        realtime: bool,
    ) -> std::io::Result<DisplaySink> {
        let stop = Arc::new(AtomicBool::new(false));
        let sp = stop.clone();
        let st = stats.clone();
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
        let thread = std::thread::Builder::new().name("display".into()).spawn(move || {
            if realtime {
                crate::thread_priority::make_realtime("display", crate::thread_priority::DISPLAY_PRIORITY);
            }
            let renderer = composer.as_ref().and_then(|c| Renderer::open(c.renderer));
            let mut shower = Shower { renderer, composer, started: Instant::now(), canvas: Vec::new(), last_shown: None, stats: st };
            match enhance {
                None => plain_loop(&rt, &sp, &mut frames, &mut shower),
                Some(link) => sequenced_loop(&rt, &sp, &mut frames, &mut shower, link),
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

/// Every frame as it comes.
fn plain_loop(rt: &tokio::runtime::Runtime, stop: &AtomicBool, frames: &mut watch::Receiver<Option<FrameRef>>, shower: &mut Shower) {
    while !stop.load(Ordering::Acquire) {
        match rt.block_on(async { tokio::time::timeout(Duration::from_millis(50), frames.changed()).await }) {
            Err(_) => continue,
            Ok(Err(_)) => return, // capture side gone for good
            Ok(Ok(())) => {}
        }
        let Some(frame) = frames.borrow_and_update().clone() else { continue };
        if frame.seq > shower.last_seq() {
            shower.show(&frame);
        }
    }
}

/// With the enhancement stage in the path: every raw frame is queued in the
/// [`Sequencer`] and leaves in order on its verdict, its deadline, or at
/// once while the stage is not active.
fn sequenced_loop(
    rt: &tokio::runtime::Runtime,
    stop: &AtomicBool,
    frames: &mut watch::Receiver<Option<FrameRef>>,
    shower: &mut Shower,
    link: EnhanceLink,
) {
    let mut seq = Sequencer::new(link.budget);
    let mut verdicts = link.channels.verdicts.subscribe();
    let status = link.channels.status.subscribe();
    let mut newest = shower.last_seq();
    while !stop.load(Ordering::Acquire) {
        let wake = seq.next_deadline().map_or(Duration::from_millis(50), |d| d.saturating_duration_since(Instant::now()));
        let closed = rt.block_on(async {
            tokio::select! {
                r = frames.changed() => r.is_err(),
                v = verdicts.recv() => {
                    match v {
                        Ok(v) => seq.verdict(v),
                        Err(broadcast::error::RecvError::Lagged(n)) => tracing::debug!(n, "display: enhancement verdicts lagged"),
                        Err(broadcast::error::RecvError::Closed) => {}
                    }
                    false
                }
                () = tokio::time::sleep(wake) => false,
            }
        });
        if closed {
            return; // capture side gone for good
        }
        if let Some(f) = frames.borrow_and_update().clone() {
            if f.seq > newest {
                newest = f.seq;
                seq.push(f);
            }
        }
        while let Ok(v) = verdicts.try_recv() {
            seq.verdict(v);
        }
        let active = matches!(*status.borrow(), EnhanceStatus::Active);
        for r in seq.release(Instant::now(), active) {
            count(&link.channels.stats, &r);
            shower.show(r.frame());
        }
    }
}

/// The display as a supervised actor owning the sink thread.
pub struct DisplayActor;

/// The overlay side of the display: where its inputs come from, and where
/// the composed picture goes.
pub struct OverlayFeed {
    pub cfg: DisplayConfig,
    pub source: OverlaySource,
    pub composed: Arc<ComposedSlot>,
}

pub struct DisplayArgs {
    pub frames: watch::Receiver<Option<FrameRef>>,
    pub stats: Arc<Mutex<DisplayStats>>,
    pub liveness: crate::supervisor::Liveness,
    /// `None`: count frames only.
    pub overlay: Option<OverlayFeed>,
    /// `None`: no enhancement stage in this tower.
    pub enhance: Option<EnhanceLink>,
    /// Run the display thread at SCHED_FIFO [`crate::thread_priority::DISPLAY_PRIORITY`].
    pub realtime: bool,
}

pub struct DisplayState {
    sink: Option<DisplaySink>,
    liveness: crate::supervisor::Liveness,
    overlay: Option<(OverlaySource, watch::Sender<Overlay>)>,
}

impl ractor::Actor for DisplayActor {
    type Msg = ();
    type State = DisplayState;
    type Arguments = DisplayArgs;

    async fn pre_start(&self, myself: ractor::ActorRef<()>, a: DisplayArgs) -> Result<DisplayState, ractor::ActorProcessingErr> {
        a.liveness.beat();
        let mut period = Duration::from_millis(50);
        let (composer, overlay) = match a.overlay {
            Some(feed) => {
                let (tx, rx) = watch::channel(Overlay::build(&feed.source.snapshot(Instant::now())));
                period = Duration::from_secs_f64(1.0 / feed.cfg.overlay_hz).min(period);
                let composer = Composer { renderer: feed.cfg.renderer, overlay: rx, composed: feed.composed };
                (Some(composer), Some((feed.source, tx)))
            }
            None => (None, None),
        };
        let sink = DisplaySink::start(a.frames, a.stats, composer, a.enhance, a.realtime)?;
        myself.send_interval(period, || ());
        Ok(DisplayState { sink: Some(sink), liveness: a.liveness, overlay })
    }

    async fn handle(&self, _m: ractor::ActorRef<()>, _msg: (), s: &mut DisplayState) -> Result<(), ractor::ActorProcessingErr> {
        s.liveness.beat();
        if !s.sink.as_ref().is_some_and(DisplaySink::running) {
            return Err("display sink thread stopped".into());
        }
        if let Some((source, tx)) = &s.overlay {
            let next = Overlay::build(&source.snapshot(Instant::now()));
            tx.send_if_modified(|o| {
                let changed = *o != next;
                if changed {
                    *o = next;
                }
                changed
            });
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
