//! The inference actor: ONNX Runtime on its own worker thread, fed one frame
//! at a time, with a deadline.
//!
//! - The session is opened on the worker thread; `pre_start` waits for it
//!   asynchronously, so a missing or corrupt model fails the start (the
//!   supervisor retries with backoff) without blocking the runtime.
//! - A job past its deadline means the worker hangs: the actor publishes "AI
//!   offline" and fails, so the supervisor restarts it with a fresh worker.
//!   The hung thread is abandoned; when it wakes it finds its channel closed
//!   and exits.
//! - A non-finite output or a worker panic fails the actor the same way.
//! - Whenever the actor is gone (any exit, even a panic), its state's drop
//!   guard publishes "AI offline"; a successful start publishes "online".

use super::ai_state::{AiChannels, AiContext, AiResult, AiStatus};
use super::archive::ExamInfo;
use super::content_area::{crop, BackgroundGate, ContentArea, ContentAreaConfig, Scene};
use super::detection::{postprocess, preprocess, Detection, DetectorContract};
use super::frame::Frame;
use super::model_card::{lesion_alarms, ModelCard, ModelStatus};
use super::onnx::{load_runtime, Model, OnnxError};
use super::selector::Pick;
use crate::events::{EventBus, Severity};
use crate::supervisor::Liveness;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceConfig {
    /// `libonnxruntime.so` from the onnxruntime 1.31 wheel (`./x setup`).
    pub runtime_library: String,
    pub detector_model: String,
    pub threads: usize,
    /// A frame not analysed within this is a hang.
    pub deadline_ms: u64,
    pub detector: DetectorContract,
    /// Classes that raise the high-risk alarm above the threshold.
    pub high_risk_classes: Vec<String>,
    pub high_risk_threshold: f32,
    /// The scene gate (`[video.inference.content_area]`): analyse only the
    /// image circle, nothing in a frame without an image. Off when absent.
    #[serde(default)]
    pub content_area: Option<ContentAreaConfig>,
}

impl InferenceConfig {
    /// Apply the model card's own contract (a bring-your-own detector, see
    /// [`super::model_card`]) over the configured one; nothing when the card
    /// has none or the model has no card.
    pub fn apply_card(&mut self) -> Result<(), super::model_card::CardError> {
        let Some(card) = ModelCard::read(Path::new(&self.detector_model))? else { return Ok(()) };
        if let Some(d) = card.detector {
            self.detector = d;
        }
        if let Some(h) = card.high_risk_classes {
            self.high_risk_classes = h;
        }
        if let Some(t) = card.high_risk_threshold {
            self.high_risk_threshold = t;
        }
        Ok(())
    }

    pub fn validate(&self, path: &str) -> Result<(), crate::config::ConfigError> {
        use crate::config::{check_int, check_range, ConfigError};
        check_int(&format!("{path}.threads"), self.threads as u64, 1, 64, "threads")?;
        check_int(&format!("{path}.deadline_ms"), self.deadline_ms, 5, 60_000, "ms")?;
        if let Some(ca) = &self.content_area {
            ca.validate(&format!("{path}.content_area"))?;
        }
        check_range(&format!("{path}.high_risk_threshold"), f64::from(self.high_risk_threshold), 0.0, 1.0, "")?;
        let d = &self.detector;
        check_int(&format!("{path}.detector.input_size"), u64::from(d.input_size), 16, 2048, "px")?;
        check_range(&format!("{path}.detector.score_threshold"), f64::from(d.score_threshold), 0.0, 1.0, "")?;
        check_range(&format!("{path}.detector.nms_iou"), f64::from(d.nms_iou), 0.0, 1.0, "")?;
        if d.classes.is_empty() {
            return Err(ConfigError::new(format!("{path}.detector.classes"), "[]", "at least one class"));
        }
        if let Some((i, s)) = d.std.iter().enumerate().find(|(_, s)| s.is_nan() || **s <= 0.0) {
            return Err(ConfigError::new(format!("{path}.detector.std[{i}]"), s, "a positive number"));
        }
        for c in &self.high_risk_classes {
            if !d.classes.contains(c) {
                return Err(ConfigError::new(format!("{path}.high_risk_classes"), format!("{c:?}"), format!("one of {:?}", d.classes)));
            }
        }
        Ok(())
    }
}

/// Test hooks shared with the worker (failure-injection tests and scenarios).
#[derive(Debug, Default)]
pub struct InferenceHooks {
    /// Sleep this long in the next job (a hang).
    pub hang_next_ms: AtomicU64,
    /// Replace the next output with NaN.
    pub nan_next: AtomicBool,
    /// Observed, not injected: frames that arrived while another was in
    /// flight and within its deadline (the one-in-flight rule broken; must
    /// stay 0).
    pub overlapping: AtomicU64,
}

pub enum InferenceMsg {
    Infer(Pick),
    Done { seq: u64, outcome: Result<(Vec<Detection>, Scene), String>, pick: Pick },
    Watchdog,
    TestPanic,
}

pub struct InferenceArgs {
    pub cfg: InferenceConfig,
    pub channels: AiChannels,
    pub events: EventBus,
    pub liveness: Liveness,
    pub hooks: Arc<InferenceHooks>,
    /// The exam info: its procedure decides whether lesion alarms are on.
    pub exam: tokio::sync::watch::Receiver<ExamInfo>,
}

struct Job {
    pick: Pick,
    reply: ActorRef<InferenceMsg>,
}

/// Publishes "AI offline" however the actor ends.
struct OfflineOnDrop(AiChannels);

impl Drop for OfflineOnDrop {
    fn drop(&mut self) {
        self.0.status.send_if_modified(|s| {
            if matches!(s, AiStatus::Offline { .. }) {
                false
            } else {
                *s = AiStatus::Offline { reason: "inference stopped".into() };
                true
            }
        });
    }
}

pub struct InferenceState {
    cfg: InferenceConfig,
    jobs: SyncSender<Job>,
    in_flight: Option<(u64, Instant)>,
    channels: AiChannels,
    events: EventBus,
    liveness: Liveness,
    hooks: Arc<InferenceHooks>,
    card: Option<ModelCard>,
    exam: tokio::sync::watch::Receiver<ExamInfo>,
    _guard: OfflineOnDrop,
}

pub struct InferenceActor;

fn offline(channels: &AiChannels, reason: &str) {
    channels.status.send_replace(AiStatus::Offline { reason: reason.to_string() });
}

/// The detector on the part of `f` that `scene` says holds the image
/// (boxes in `f`'s pixels); nothing when there is no image.
pub fn analyse(model: &mut Model, scene: Scene, f: &Frame, c: &DetectorContract) -> Result<(Vec<Detection>, Scene), String> {
    let Some(b) = scene.crop(f.width, f.height) else { return Ok((Vec::new(), scene)) };
    let part = crop(f, b).map_err(|e| e.to_string())?;
    let s = i64::from(c.input_size);
    let (shape, data) = model.run(&c.input_name, [1, 3, s, s], preprocess(&part, c), &c.output_name).map_err(|e| e.to_string())?;
    let mut dets = postprocess(&shape, &data, c, part.width, part.height).map_err(|e| e.to_string())?;
    for d in &mut dets {
        (d.x0, d.x1, d.y0, d.y1) = (d.x0 + b[0] as f32, d.x1 + b[0] as f32, d.y0 + b[1] as f32, d.y1 + b[1] as f32);
    }
    Ok((dets, scene))
}

fn worker(
    mut model: Model,
    mut gate: Option<BackgroundGate>,
    cfg: InferenceConfig,
    hooks: Arc<InferenceHooks>,
    jobs: std::sync::mpsc::Receiver<Job>,
) {
    for job in jobs {
        let hang = hooks.hang_next_ms.swap(0, Ordering::AcqRel);
        if hang > 0 {
            std::thread::sleep(Duration::from_millis(hang));
        }
        let nan = hooks.nan_next.swap(false, Ordering::AcqRel);
        let f = job.pick.frame.clone();
        let c = &cfg.detector;
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if nan {
                // The test hook: a non-finite output, as a broken model gives.
                let s = i64::from(c.input_size);
                let (shape, mut data) =
                    model.run(&c.input_name, [1, 3, s, s], preprocess(&f, c), &c.output_name).map_err(|e| e.to_string())?;
                if let Some(v) = data.first_mut() {
                    *v = f32::NAN;
                }
                return postprocess(&shape, &data, c, f.width, f.height).map(|d| (d, Scene::Full)).map_err(|e| e.to_string());
            }
            let scene = gate.as_mut().map_or(Scene::Full, |g| g.scene(&f));
            analyse(&mut model, scene, &f, c)
        }))
        .unwrap_or_else(|_| Err("inference worker panicked".into()));
        // The actor may be gone (restarted after a hang): then we are done.
        if job.reply.cast(InferenceMsg::Done { seq: f.seq, outcome, pick: job.pick }).is_err() {
            return;
        }
    }
}

impl Actor for InferenceActor {
    type Msg = InferenceMsg;
    type State = InferenceState;
    type Arguments = InferenceArgs;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, a: InferenceArgs) -> Result<Self::State, ActorProcessingErr> {
        a.liveness.beat();
        let guard = OfflineOnDrop(a.channels.clone());
        // The model card decides where lesion alarms may sound; a bad card is
        // a configuration error, reported like a bad model.
        let card = match ModelCard::load(Path::new(&a.cfg.detector_model), &a.cfg.detector.classes) {
            Ok(card) => card,
            Err(e) => {
                offline(&a.channels, &e.to_string());
                a.events.raise("inference", "AI_OFFLINE", Severity::Low, format!("AI offline: {e}"));
                return Err(Box::new(e));
            }
        };
        if card.is_none() {
            tracing::warn!(card = %ModelCard::path_for(Path::new(&a.cfg.detector_model)).display(), "the detector has no model card: lesion alarms off");
        }
        let (tx, rx) = sync_channel::<Job>(1);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (cfg, hooks) = (a.cfg.clone(), a.hooks.clone());
        std::thread::Builder::new().name("inference".into()).spawn(move || {
            // ONNX Runtime's own threads are created below and inherit this.
            crate::thread_priority::make_background("inference", crate::thread_priority::INFERENCE_NICE);
            let opened = load_runtime(&PathBuf::from(&cfg.runtime_library)).and_then(|()| {
                let model = Model::open(&PathBuf::from(&cfg.detector_model), cfg.threads)?;
                let gate = cfg.content_area.as_ref().map(|ca| ContentArea::open(ca, 1)).transpose()?;
                Ok((model, gate))
            });
            match opened {
                Ok((model, gate)) => match gate.map(BackgroundGate::start).transpose() {
                    Ok(gate) => {
                        let _ = ready_tx.send(Ok(()));
                        worker(model, gate, cfg, hooks, rx);
                    }
                    Err(e) => {
                        let message = format!("cannot start the scene gate's thread: {e}");
                        let _ = ready_tx.send(Err(OnnxError::Runtime { path: cfg.detector_model.clone(), message }));
                    }
                },
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        })?;
        match ready_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                offline(&a.channels, &e.to_string());
                a.events.raise("inference", "AI_OFFLINE", Severity::Low, format!("AI offline: {e}"));
                return Err(Box::new(e));
            }
            Err(_) => {
                offline(&a.channels, "inference worker died while loading the model");
                return Err("inference worker died while loading the model".into());
            }
        }
        a.channels.status.send_replace(AiStatus::Online);
        a.events.clear("inference", "AI_OFFLINE", "AI back online");
        tracing::info!(model = %a.cfg.detector_model, "inference online");
        myself.send_interval(Duration::from_millis(20), || InferenceMsg::Watchdog);
        Ok(InferenceState {
            cfg: a.cfg,
            jobs: tx,
            in_flight: None,
            channels: a.channels,
            events: a.events,
            liveness: a.liveness,
            hooks: a.hooks,
            card,
            exam: a.exam,
            _guard: guard,
        })
    }

    async fn handle(&self, myself: ActorRef<Self::Msg>, msg: Self::Msg, s: &mut Self::State) -> Result<(), ActorProcessingErr> {
        match msg {
            InferenceMsg::Infer(pick) => {
                let seq = pick.frame.seq;
                if s.in_flight.is_some_and(|(_, deadline)| Instant::now() < deadline) {
                    s.hooks.overlapping.fetch_add(1, Ordering::Relaxed);
                }
                let deadline = Instant::now() + Duration::from_millis(s.cfg.deadline_ms);
                match s.jobs.try_send(Job { pick, reply: myself.clone() }) {
                    Ok(()) => s.in_flight = Some((seq, deadline)),
                    // One in flight: the selector never sends a second; if it
                    // did, the newer frame is dropped, not queued.
                    Err(TrySendError::Full(_)) => {
                        tracing::debug!(seq, "inference busy: frame dropped")
                    }
                    Err(TrySendError::Disconnected(_)) => return Err("inference worker gone".into()),
                }
            }
            InferenceMsg::Done { seq, outcome, pick } => {
                if s.in_flight.map(|f| f.0) == Some(seq) {
                    s.in_flight = None;
                }
                let (detections, scene) = match outcome {
                    Ok(d) => d,
                    Err(e) => {
                        let reason = format!("inference failed: {e}");
                        offline(&s.channels, &reason);
                        s.events.raise("inference", "AI_OFFLINE", Severity::Low, format!("AI offline: {reason}"));
                        return Err(reason.into());
                    }
                };
                // Lesion alarms only where the model is valid for the exam.
                let procedure = s.exam.borrow().procedure;
                let alarms_off = match scene {
                    Scene::NoImage => Some("no image".to_string()),
                    _ => lesion_alarms(s.card.as_ref(), procedure).err(),
                };
                let context = AiContext { demo: s.card.as_ref().is_some_and(|c| c.status == ModelStatus::Demo), alarms_off, scene };
                // Name only the detections that make it high-risk.
                let d: Vec<String> = detections
                    .iter()
                    .filter(|d| s.cfg.high_risk_classes.contains(&d.class_name) && d.score >= s.cfg.high_risk_threshold)
                    .filter(|_| context.alarms_off.is_none())
                    .map(|d| format!("{} {:.2}", d.class_name, d.score))
                    .collect();
                if let Some(why) = &context.alarms_off {
                    s.events.clear("inference", "HIGH_RISK_LESION", format!("lesion alarms off: {why}"));
                } else if !d.is_empty() {
                    s.events.raise(
                        "inference",
                        "HIGH_RISK_LESION",
                        Severity::Medium,
                        format!("high-risk lesion in frame {seq}: {}", d.join(", ")),
                    );
                } else {
                    s.events.clear("inference", "HIGH_RISK_LESION", format!("frame {seq}: no high-risk lesion"));
                }
                let result = AiResult {
                    frame_seq: seq,
                    reason: pick.reason,
                    captured_at: pick.frame.captured_at,
                    finished_at: Instant::now(),
                    detections,
                    high_risk: !d.is_empty(),
                    context,
                };
                s.channels.result.send_replace(Some(result));
                s.channels.status.send_if_modified(|st| {
                    let changed = *st != AiStatus::Online;
                    *st = AiStatus::Online;
                    changed
                });
            }
            InferenceMsg::Watchdog => {
                s.liveness.beat();
                if let Some((seq, deadline)) = s.in_flight {
                    if Instant::now() > deadline {
                        let reason = format!("frame {seq} not analysed within {} ms", s.cfg.deadline_ms);
                        offline(&s.channels, &reason);
                        s.events.raise("inference", "AI_OFFLINE", Severity::Low, format!("AI offline: {reason}"));
                        return Err(reason.into());
                    }
                }
            }
            InferenceMsg::TestPanic => panic!("inference: test hook panic"),
        }
        Ok(())
    }
}
