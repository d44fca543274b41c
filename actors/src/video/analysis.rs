//! The analysis actor: quality gate, freeze detection and target-frame
//! selection, feeding the inference actor one frame at a time.
//!
//! Frames come from the capture's latest-wins channel through a forwarder
//! task that `call`s the actor and waits for each frame to be handled before
//! taking the newest one: the actor skips frames it cannot take, and its
//! mailbox never grows. Pedal presses and finished results arrive the same
//! way. The inference actor is looked up by name for every pick, since a
//! restarted actor has a new reference; while it is down, picks time out in
//! the selector and the live picture is unaffected.

use super::ai_state::AiChannels;
use super::content_area::Scene;
use super::frame::FrameRef;
use super::freeze::FreezeDetector;
use super::inference::InferenceMsg;
use super::quality::{measure_in, QualityConfig, Verdict};
use super::selector::{Pick, Reason, Selector};
use crate::device_status::PedalPress;
use crate::supervisor::Liveness;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisConfig {
    pub quality: QualityConfig,
    /// Identical frames in a row that make a freeze.
    pub freeze_frames: u32,
    /// Minimum time between two automatic picks.
    pub auto_interval_ms: u64,
    /// A pick with no result after this is given up (then the next goes).
    pub result_timeout_ms: u64,
    /// Results whose frame is older than this are not drawn.
    pub max_result_age_ms: u64,
}

impl AnalysisConfig {
    pub fn validate(&self, path: &str) -> Result<(), crate::config::ConfigError> {
        self.quality.validate(&format!("{path}.quality"))?;
        crate::config::check_int(&format!("{path}.freeze_frames"), u64::from(self.freeze_frames), 2, 600, "frames")?;
        crate::config::check_int(&format!("{path}.auto_interval_ms"), self.auto_interval_ms, 0, 60_000, "ms")?;
        crate::config::check_int(&format!("{path}.result_timeout_ms"), self.result_timeout_ms, 5, 60_000, "ms")?;
        crate::config::check_int(&format!("{path}.max_result_age_ms"), self.max_result_age_ms, 1, 60_000, "ms")
    }
}

/// Counters for tests and telemetry, kept across restarts.
#[derive(Debug, Default)]
pub struct AnalysisStats {
    pub frames: AtomicU64,
    pub too_dark: AtomicU64,
    pub too_bright: AtomicU64,
    pub blurred: AtomicU64,
    pub picks_pedal: AtomicU64,
    pub picks_freeze: AtomicU64,
    pub picks_auto: AtomicU64,
    pub timeouts: AtomicU64,
    /// Most frames ever in flight at once (must stay 1).
    pub max_in_flight: AtomicU64,
}

pub struct AnalysisArgs {
    pub cfg: AnalysisConfig,
    pub frames: watch::Receiver<Option<FrameRef>>,
    pub pedal: broadcast::Receiver<PedalPress>,
    pub ai: AiChannels,
    /// Registry name of the inference actor.
    pub inference: String,
    pub stats: Arc<AnalysisStats>,
    /// Every pick, for observers (archive, tests).
    pub picks: broadcast::Sender<Pick>,
    pub liveness: Liveness,
}

pub enum AnalysisMsg {
    Frame(FrameRef, RpcReplyPort<()>),
    Pedal,
    /// A result came for frame `seq`; the scene gate saw `Scene` in it.
    ResultFor(u64, Scene),
}

pub struct AnalysisState {
    cfg: AnalysisConfig,
    selector: Selector,
    freeze: FreezeDetector,
    latest: Option<FrameRef>,
    inference: String,
    stats: Arc<AnalysisStats>,
    picks: broadcast::Sender<Pick>,
    liveness: Liveness,
    forwarder: tokio::task::JoinHandle<()>,
    /// What the scene gate saw in the latest result.
    scene: Scene,
}

pub struct AnalysisActor;

async fn forward(
    me: ActorRef<AnalysisMsg>,
    mut frames: watch::Receiver<Option<FrameRef>>,
    mut pedal: broadcast::Receiver<PedalPress>,
    mut results: watch::Receiver<Option<super::ai_state::AiResult>>,
) {
    loop {
        tokio::select! {
            r = frames.changed() => {
                if r.is_err() { return; }
                let Some(f) = frames.borrow_and_update().clone() else { continue };
                if ractor::call!(me, AnalysisMsg::Frame, f).is_err() { return; }
            }
            p = pedal.recv() => match p {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => { if me.cast(AnalysisMsg::Pedal).is_err() { return; } }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            r = results.changed() => {
                if r.is_err() { return; }
                let seen = results.borrow_and_update().as_ref().map(|r| (r.frame_seq, r.context.scene));
                if let Some((seq, scene)) = seen { if me.cast(AnalysisMsg::ResultFor(seq, scene)).is_err() { return; } }
            }
        }
    }
}

impl AnalysisState {
    fn dispatch(&mut self, pick: Pick) {
        let counter = match pick.reason {
            Reason::Pedal => &self.stats.picks_pedal,
            Reason::Freeze => &self.stats.picks_freeze,
            Reason::Auto => &self.stats.picks_auto,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.stats.max_in_flight.fetch_max(u64::from(self.selector.in_flight().is_some()), Ordering::Relaxed);
        let _ = self.picks.send(pick.clone());
        match ractor::registry::where_is(self.inference.clone()) {
            Some(cell) => {
                if cell.send_message(InferenceMsg::Infer(pick)).is_err() {
                    tracing::debug!("inference actor went away; the pick will time out");
                }
            }
            None => tracing::debug!("inference actor not running; the pick will time out"),
        }
    }
}

impl Actor for AnalysisActor {
    type Msg = AnalysisMsg;
    type State = AnalysisState;
    type Arguments = AnalysisArgs;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, a: AnalysisArgs) -> Result<Self::State, ActorProcessingErr> {
        a.liveness.beat();
        let forwarder = tokio::spawn(forward(myself, a.frames, a.pedal, a.ai.result.subscribe()));
        Ok(AnalysisState {
            selector: Selector::new(Duration::from_millis(a.cfg.result_timeout_ms), Duration::from_millis(a.cfg.auto_interval_ms)),
            freeze: FreezeDetector::new(a.cfg.freeze_frames),
            cfg: a.cfg,
            latest: None,
            inference: a.inference,
            stats: a.stats,
            picks: a.picks,
            liveness: a.liveness,
            forwarder,
            scene: Scene::Full,
        })
    }

    async fn post_stop(&self, _myself: ActorRef<Self::Msg>, s: &mut Self::State) -> Result<(), ActorProcessingErr> {
        s.forwarder.abort();
        Ok(())
    }

    async fn handle(&self, _myself: ActorRef<Self::Msg>, msg: Self::Msg, s: &mut Self::State) -> Result<(), ActorProcessingErr> {
        s.liveness.beat();
        let now = Instant::now();
        match msg {
            AnalysisMsg::Frame(frame, reply) => {
                s.stats.frames.fetch_add(1, Ordering::Relaxed);
                // Inside the image circle the scene gate last found, so the
                // black border does not make a good picture "too dark".
                let circle = match s.scene {
                    Scene::Circle { x, y, r, .. } => Some((x, y, r)),
                    Scene::Full | Scene::NoImage => None,
                };
                let verdict = measure_in(&frame, s.cfg.quality.step, circle).verdict(&s.cfg.quality);
                match verdict {
                    Verdict::Pass => {}
                    Verdict::TooDark => drop(s.stats.too_dark.fetch_add(1, Ordering::Relaxed)),
                    Verdict::TooBright => drop(s.stats.too_bright.fetch_add(1, Ordering::Relaxed)),
                    Verdict::Blurred => drop(s.stats.blurred.fetch_add(1, Ordering::Relaxed)),
                }
                // A frozen frame is analysed once per freeze, if it is worth it.
                if s.freeze.observe(&frame) && verdict == Verdict::Pass {
                    s.selector.freeze(frame.clone());
                }
                let before = s.selector.timeouts;
                if let Some(pick) = s.selector.offer(now, &frame, verdict == Verdict::Pass) {
                    s.dispatch(pick);
                }
                s.stats.timeouts.fetch_add(s.selector.timeouts - before, Ordering::Relaxed);
                s.latest = Some(frame);
                let _ = reply.send(());
            }
            AnalysisMsg::Pedal => {
                // The pedal picks the frame on screen now, gate or not: the
                // surgeon asked for it.
                if let Some(f) = s.latest.clone() {
                    s.selector.pedal(f.clone());
                    if let Some(pick) = s.selector.offer(now, &f, false) {
                        s.dispatch(pick);
                    }
                }
            }
            AnalysisMsg::ResultFor(seq, scene) => {
                s.scene = scene;
                s.selector.result(seq);
            }
        }
        Ok(())
    }
}
