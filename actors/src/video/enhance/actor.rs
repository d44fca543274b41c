//! The enhancement stage as a supervised actor. The work runs on its own
//! worker thread (ONNX Runtime, nice +10 like inference), which takes the
//! newest raw frame whenever it is free (latest wins: a frame it skips simply
//! reaches the display unchanged) and publishes a verdict per frame.
//!
//! - Switched off: the worker idles, status `Off`; models are loaded the
//!   first time it is switched on.
//! - A worker panic, a model that fails to load or run, a non-finite output,
//!   or a frame in the worker longer than `hang_ms` fails the actor; the drop
//!   guard publishes `Offline` and the supervisor restarts it. A hung worker
//!   thread is abandoned: it finds its stop flag set when it wakes.
//! - Whatever happens here, the display only ever stops waiting for verdicts
//!   (see [`super::sequencer`]).

use super::channels::{EnhanceChannels, EnhanceStatus};
use super::config::EnhanceConfig;
use super::models::Enhancer;
use crate::events::{EventBus, Severity};
use crate::supervisor::Liveness;
use crate::video::frame::FrameRef;
use crate::video::onnx::load_runtime;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub enum EnhanceMsg {
    Watchdog,
    WorkerFailed(String),
    TestPanic,
}

pub struct EnhanceArgs {
    pub cfg: EnhanceConfig,
    /// `libonnxruntime.so` (the inference config's).
    pub runtime_library: String,
    pub frames: watch::Receiver<Option<FrameRef>>,
    pub channels: EnhanceChannels,
    pub events: EventBus,
    pub liveness: Liveness,
}

/// Shared between the actor and its worker.
#[derive(Default)]
struct WorkerState {
    stop: AtomicBool,
    /// ms since `epoch` when the current frame started; 0 when idle.
    busy_since_ms: AtomicU64,
}

/// Publishes `Offline` and stops the worker however the actor ends.
struct Guard {
    channels: EnhanceChannels,
    worker: Arc<WorkerState>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.worker.stop.store(true, Ordering::Release);
        self.channels.status.send_if_modified(|s| {
            if matches!(s, EnhanceStatus::Offline { .. } | EnhanceStatus::Off) {
                false
            } else {
                *s = EnhanceStatus::Offline { reason: "enhancement stopped".into() };
                true
            }
        });
    }
}

pub struct EnhanceState {
    cfg: EnhanceConfig,
    epoch: Instant,
    events: EventBus,
    liveness: Liveness,
    guard: Guard,
}

pub struct EnhanceActor;

fn failed(channels: &EnhanceChannels, events: &EventBus, reason: &str) {
    channels.status.send_replace(EnhanceStatus::Offline { reason: reason.to_string() });
    events.raise("enhance", "ENHANCE_OFFLINE", Severity::Low, format!("enhancement offline, raw video shown: {reason}"));
}

struct Worker {
    cfg: EnhanceConfig,
    runtime_library: String,
    frames: watch::Receiver<Option<FrameRef>>,
    channels: EnhanceChannels,
    state: Arc<WorkerState>,
    epoch: Instant,
    reply: ActorRef<EnhanceMsg>,
}

impl Worker {
    fn run(mut self) {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(rt) => rt,
            Err(e) => return self.fail(format!("cannot build the worker runtime: {e}")),
        };
        let mut switch = self.channels.switch.subscribe();
        let mut enhancer: Option<Enhancer> = None;
        while !self.state.stop.load(Ordering::Acquire) {
            if !*switch.borrow_and_update() {
                self.channels.status.send_if_modified(|s| std::mem::replace(s, EnhanceStatus::Off) != EnhanceStatus::Off);
                let _ = rt.block_on(async { tokio::time::timeout(Duration::from_millis(100), switch.changed()).await });
                continue;
            }
            if enhancer.is_none() {
                self.channels.status.send_replace(EnhanceStatus::Starting);
                match load_runtime(&PathBuf::from(&self.runtime_library)).and_then(|()| Enhancer::open(&self.cfg)) {
                    Ok(e) => {
                        tracing::info!("enhancement online");
                        enhancer = Some(e);
                    }
                    Err(e) => return self.fail(e.to_string()),
                }
            }
            let Some(e) = enhancer.as_mut() else { continue };
            self.channels.status.send_if_modified(|s| std::mem::replace(s, EnhanceStatus::Active) != EnhanceStatus::Active);
            match rt.block_on(async { tokio::time::timeout(Duration::from_millis(100), self.frames.changed()).await }) {
                Err(_) => continue,
                Ok(Err(_)) => return, // capture side gone for good
                Ok(Ok(())) => {}
            }
            let Some(frame) = self.frames.borrow_and_update().clone() else { continue };
            self.state.busy_since_ms.store(self.epoch.elapsed().as_millis() as u64 + 1, Ordering::Release);
            let hooks = self.channels.hooks.clone();
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                let hang = hooks.hang_next_ms.swap(0, Ordering::AcqRel);
                if hang > 0 {
                    std::thread::sleep(Duration::from_millis(hang));
                }
                if hooks.panic_next.swap(false, Ordering::AcqRel) {
                    panic!("enhance: test hook panic");
                }
                e.process(&frame)
            }))
            .unwrap_or_else(|_| Err("enhancement worker panicked".into()));
            self.state.busy_since_ms.store(0, Ordering::Release);
            if self.state.stop.load(Ordering::Acquire) {
                return; // replaced after a hang: the verdict is not ours to give
            }
            match outcome {
                Ok(v) => {
                    let stats = &self.channels.stats;
                    stats.classified.fetch_add(1, Ordering::Relaxed);
                    if v.enhanced.is_some() {
                        stats.deblurred.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = self.channels.verdicts.send(v);
                }
                Err(reason) => return self.fail(reason),
            }
        }
    }

    fn fail(self, reason: String) {
        let _ = self.reply.cast(EnhanceMsg::WorkerFailed(reason));
    }
}

impl Actor for EnhanceActor {
    type Msg = EnhanceMsg;
    type State = EnhanceState;
    type Arguments = EnhanceArgs;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, a: EnhanceArgs) -> Result<Self::State, ActorProcessingErr> {
        a.liveness.beat();
        let worker_state = Arc::new(WorkerState::default());
        let epoch = Instant::now();
        let worker = Worker {
            cfg: a.cfg.clone(),
            runtime_library: a.runtime_library,
            frames: a.frames,
            channels: a.channels.clone(),
            state: worker_state.clone(),
            epoch,
            reply: myself.clone(),
        };
        std::thread::Builder::new().name("enhance".into()).spawn(move || {
            crate::thread_priority::make_background("enhance", crate::thread_priority::INFERENCE_NICE);
            worker.run();
        })?;
        myself.send_interval(Duration::from_millis(20), || EnhanceMsg::Watchdog);
        let guard = Guard { channels: a.channels, worker: worker_state };
        Ok(EnhanceState { cfg: a.cfg, epoch, events: a.events, liveness: a.liveness, guard })
    }

    async fn handle(&self, _myself: ActorRef<Self::Msg>, msg: Self::Msg, s: &mut Self::State) -> Result<(), ActorProcessingErr> {
        match msg {
            EnhanceMsg::Watchdog => {
                s.liveness.beat();
                let since = s.guard.worker.busy_since_ms.load(Ordering::Acquire);
                let now = s.epoch.elapsed().as_millis() as u64 + 1;
                if since > 0 && now.saturating_sub(since) > s.cfg.hang_ms {
                    let reason = format!("a frame took longer than {} ms (hang)", s.cfg.hang_ms);
                    failed(&s.guard.channels, &s.events, &reason);
                    return Err(reason.into());
                }
                if matches!(*s.guard.channels.status.borrow(), EnhanceStatus::Active) {
                    s.events.clear("enhance", "ENHANCE_OFFLINE", "enhancement back online");
                }
            }
            EnhanceMsg::WorkerFailed(reason) => {
                failed(&s.guard.channels, &s.events, &reason);
                return Err(reason.into());
            }
            EnhanceMsg::TestPanic => panic!("enhance: test hook panic"),
        }
        Ok(())
    }
}
