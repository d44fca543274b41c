//! The inference actor: the detector on its own worker thread, fed one frame
//! at a time, with a deadline. The worker runs ONNX Runtime in the tower or
//! asks an inference server ([`super::backend`], [`super::remote`]).
//!
//! - The session is opened on the worker thread; `pre_start` waits for it
//!   asynchronously, so a missing or corrupt model fails the start (the
//!   supervisor retries with backoff) without blocking the runtime.
//! - A job past its deadline means the worker hangs: the actor publishes "AI
//!   offline" and fails, so the supervisor restarts it with a fresh worker.
//!   The hung thread is abandoned; when it wakes it finds its channel closed
//!   and exits.
//! - A non-finite output or a worker panic fails the actor the same way.
//! - With the remote backend, an unavailable server (refused, reset, past
//!   the deadline, a garbled reply) is not a failure of the actor: the
//!   picture goes on as raw video with "AI offline: <why>", the worker waits
//!   a doubling backoff, probes the server while no frame comes, and the AI
//!   is back online as soon as the server answers.
//! - Whenever the actor is gone (any exit, even a panic), its state's drop
//!   guard publishes "AI offline"; a successful start publishes "online".

use super::ai_state::{AiChannels, AiContext, AiResult, AiStatus};
use super::archive::ExamInfo;
use super::backend::{Backend, BackendKind, JobError, RemoteWithFallback};
use super::content_area::{crop, BackgroundGate, ContentArea, ContentAreaConfig, Scene};
use super::detection::{postprocess, preprocess, Detection, DetectorContract};
use super::frame::Frame;
use super::model_card::{lesion_alarms, ModelCard, ModelStatus};
use super::onnx::{load_runtime, Model, OnnxError};
use super::remote::{FrameTag, RemoteConfig, RemoteModel};
use super::selector::Pick;
use crate::events::{EventBus, Severity};
use crate::supervisor::Liveness;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceConfig {
    /// `libonnxruntime.so` from the onnxruntime 1.31 wheel (`./x setup`).
    pub runtime_library: String,
    /// The detector: its contract and model card, and the model itself for
    /// the local backend (and a remote backend's local fallback).
    pub detector_model: String,
    /// Where the detector runs: `local` or `remote` (`[video.inference.remote]`).
    #[serde(default)]
    pub backend: BackendKind,
    #[serde(default)]
    pub remote: Option<RemoteConfig>,
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
        match (&self.remote, self.backend) {
            (Some(r), _) => r.validate(&format!("{path}.remote"))?,
            (None, BackendKind::Remote) => {
                return Err(ConfigError::new(
                    format!("{path}.remote"),
                    "(missing)",
                    "a [video.inference.remote] table for backend = \"remote\"",
                ))
            }
            (None, BackendKind::Local) => {}
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
    Done {
        seq: u64,
        outcome: Result<(Vec<Detection>, Scene), JobError>,
        pick: Pick,
        /// The remote backend's server failed and the local model analysed
        /// the frame: why.
        fell_back: Option<String>,
    },
    /// The inference server answers again (the worker's probe).
    ServerUp,
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
    /// This tower's id: with the exam number and frame, the key of a
    /// remote request.
    pub tower_id: String,
}

struct Job {
    pick: Pick,
    exam: String,
}

/// What the worker analyses with.
enum Detector {
    Local(Model),
    Remote(RemoteWithFallback),
}

impl Detector {
    fn backend(&mut self) -> &mut dyn Backend {
        match self {
            Detector::Local(m) => m,
            Detector::Remote(r) => r,
        }
    }

    /// The server is down: how long until the worker may probe it again.
    fn probe_in(&self) -> Option<Duration> {
        match self {
            Detector::Remote(r) if r.server.down() => r.server.retry_in(),
            _ => None,
        }
    }
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
    /// The in-flight limit past `deadline_ms` before the worker counts as
    /// hung (the remote backend's connect and request each have the deadline).
    hang_after: Duration,
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

/// The AI answers (again): online, and the offline alarm cleared.
fn online(s: &InferenceState) {
    let back = s.channels.status.send_if_modified(|st| {
        let changed = *st != AiStatus::Online;
        *st = AiStatus::Online;
        changed
    });
    if back {
        s.events.clear("inference", "AI_OFFLINE", "AI back online");
    }
}

fn offline(channels: &AiChannels, reason: &str) {
    channels.status.send_replace(AiStatus::Offline { reason: reason.to_string() });
}

/// The detector on the part of `f` that `scene` says holds the image
/// (boxes in `f`'s pixels); nothing when there is no image.
pub fn analyse(
    backend: &mut dyn Backend,
    tag: &FrameTag,
    scene: Scene,
    f: &Frame,
    c: &DetectorContract,
) -> Result<(Vec<Detection>, Scene), JobError> {
    let broken = |e: String| JobError::Broken(e);
    let Some(b) = scene.crop(f.width, f.height) else { return Ok((Vec::new(), scene)) };
    let part = crop(f, b).map_err(|e| broken(e.to_string()))?;
    let (shape, data) = backend.infer(tag, preprocess(&part, c), c)?;
    let mut dets = postprocess(&shape, &data, c, part.width, part.height).map_err(|e| broken(e.to_string()))?;
    for d in &mut dets {
        (d.x0, d.x1, d.y0, d.y1) = (d.x0 + b[0] as f32, d.x1 + b[0] as f32, d.y0 + b[1] as f32, d.y1 + b[1] as f32);
    }
    Ok((dets, scene))
}

fn worker(
    mut detector: Detector,
    mut gate: Option<BackgroundGate>,
    cfg: InferenceConfig,
    tower: String,
    hooks: Arc<InferenceHooks>,
    jobs: std::sync::mpsc::Receiver<Job>,
    reply: ActorRef<InferenceMsg>,
) {
    loop {
        // While the server is down and no frame comes, probe it when the
        // backoff ends, so the AI is back as soon as the server is.
        let job = match detector.probe_in() {
            Some(wait) => match jobs.recv_timeout(wait.max(Duration::from_millis(1))) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    if let Detector::Remote(r) = &mut detector {
                        if r.server.probe().is_ok() && reply.cast(InferenceMsg::ServerUp).is_err() {
                            return;
                        }
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            },
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let hang = hooks.hang_next_ms.swap(0, Ordering::AcqRel);
        if hang > 0 {
            std::thread::sleep(Duration::from_millis(hang));
        }
        let nan = hooks.nan_next.swap(false, Ordering::AcqRel);
        let f = job.pick.frame.clone();
        let c = &cfg.detector;
        let tag = FrameTag { tower: tower.clone(), exam: job.exam, seq: f.seq };
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if nan {
                // The test hook: a non-finite output, as a broken model gives.
                let (shape, mut data) = detector.backend().infer(&tag, preprocess(&f, c), c)?;
                if let Some(v) = data.first_mut() {
                    *v = f32::NAN;
                }
                return postprocess(&shape, &data, c, f.width, f.height)
                    .map(|d| (d, Scene::Full))
                    .map_err(|e| JobError::Broken(e.to_string()));
            }
            let scene = gate.as_mut().map_or(Scene::Full, |g| g.scene(&f));
            let analysed = analyse(detector.backend(), &tag, scene, &f, c);
            match (&mut detector, analysed) {
                // An output the server sent that cannot be used is the
                // server's fault, not the tower's: it is dropped and retried
                // like a down one (unless the local fallback produced it).
                (Detector::Remote(r), Err(JobError::Broken(e))) if r.fell_back().is_none() => {
                    r.server.give_up(&e);
                    Err(JobError::Unavailable(format!("inference server {}: bad output: {e}", r.server.address())))
                }
                (_, outcome) => outcome,
            }
        }))
        .unwrap_or_else(|_| Err(JobError::Broken("inference worker panicked".into())));
        let fell_back = match &detector {
            Detector::Remote(r) => r.fell_back().map(str::to_string),
            Detector::Local(_) => None,
        };
        // The actor may be gone (restarted after a hang): then we are done.
        if reply.cast(InferenceMsg::Done { seq: f.seq, outcome, pick: job.pick, fell_back }).is_err() {
            return;
        }
    }
}

/// Open what the worker analyses with, on the worker's thread. The remote
/// backend is probed once; a server that does not answer yet is not an
/// error (returned as the reason the AI starts offline).
fn open_detector(cfg: &InferenceConfig) -> Result<(Detector, Option<String>), OnnxError> {
    let local = || Model::open(&PathBuf::from(&cfg.detector_model), cfg.threads);
    match (cfg.backend, &cfg.remote) {
        (BackendKind::Remote, Some(rc)) => {
            let deadline = Duration::from_millis(cfg.deadline_ms);
            let mut server = RemoteModel::new(rc.clone(), deadline)
                .map_err(|e| OnnxError::Runtime { path: rc.address.clone(), message: e.to_string() })?;
            let fallback = if rc.fallback_local { Some(local()?) } else { None };
            let down = server.probe().err().map(|e| e.to_string());
            Ok((Detector::Remote(RemoteWithFallback::new(server, fallback)), down))
        }
        _ => Ok((Detector::Local(local()?), None)),
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
        let (cfg, hooks, tower, me) = (a.cfg.clone(), a.hooks.clone(), a.tower_id.clone(), myself.clone());
        std::thread::Builder::new().name("inference".into()).spawn(move || {
            // ONNX Runtime's own threads are created below and inherit this.
            crate::thread_priority::make_background("inference", crate::thread_priority::INFERENCE_NICE);
            let opened = load_runtime(&PathBuf::from(&cfg.runtime_library)).and_then(|()| {
                let detector = open_detector(&cfg)?;
                let gate = cfg.content_area.as_ref().map(|ca| ContentArea::open(ca, 1)).transpose()?;
                Ok((detector, gate))
            });
            match opened {
                Ok(((detector, down), gate)) => match gate.map(BackgroundGate::start).transpose() {
                    Ok(gate) => {
                        let _ = ready_tx.send(Ok(down));
                        worker(detector, gate, cfg, tower, hooks, rx, me);
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
        let down = match ready_rx.await {
            Ok(Ok(down)) => down,
            Ok(Err(e)) => {
                offline(&a.channels, &e.to_string());
                a.events.raise("inference", "AI_OFFLINE", Severity::Low, format!("AI offline: {e}"));
                return Err(Box::new(e));
            }
            Err(_) => {
                offline(&a.channels, "inference worker died while loading the model");
                return Err("inference worker died while loading the model".into());
            }
        };
        if let Some(why) = down {
            // The server is not there yet: raw video until it answers.
            offline(&a.channels, &why);
            a.events.raise("inference", "AI_OFFLINE", Severity::Low, format!("AI offline: {why}"));
        } else {
            a.channels.status.send_replace(AiStatus::Online);
            a.events.clear("inference", "AI_OFFLINE", "AI back online");
        }
        let remote = a.cfg.remote.as_ref().filter(|_| a.cfg.backend == BackendKind::Remote);
        let hang_after = match remote {
            Some(_) => Duration::from_millis(2 * a.cfg.deadline_ms + 100),
            None => Duration::from_millis(a.cfg.deadline_ms),
        };
        match remote {
            Some(r) => tracing::info!(server = %r.address, model = %r.model_name, "inference through a server"),
            None => tracing::info!(model = %a.cfg.detector_model, "inference online"),
        }
        myself.send_interval(Duration::from_millis(20), || InferenceMsg::Watchdog);
        Ok(InferenceState {
            cfg: a.cfg,
            hang_after,
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

    async fn handle(&self, _myself: ActorRef<Self::Msg>, msg: Self::Msg, s: &mut Self::State) -> Result<(), ActorProcessingErr> {
        match msg {
            InferenceMsg::Infer(pick) => {
                let seq = pick.frame.seq;
                if s.in_flight.is_some_and(|(_, deadline)| Instant::now() < deadline) {
                    s.hooks.overlapping.fetch_add(1, Ordering::Relaxed);
                }
                let deadline = Instant::now() + s.hang_after;
                let exam = s.exam.borrow().number.clone();
                match s.jobs.try_send(Job { pick, exam }) {
                    Ok(()) => s.in_flight = Some((seq, deadline)),
                    // One in flight: the selector never sends a second; if it
                    // did, the newer frame is dropped, not queued.
                    Err(TrySendError::Full(_)) => {
                        tracing::debug!(seq, "inference busy: frame dropped")
                    }
                    Err(TrySendError::Disconnected(_)) => return Err("inference worker gone".into()),
                }
            }
            InferenceMsg::Done { seq, outcome, pick, fell_back } => {
                if s.in_flight.map(|f| f.0) == Some(seq) {
                    s.in_flight = None;
                }
                let (detections, scene) = match outcome {
                    Ok(d) => d,
                    Err(JobError::Broken(e)) => {
                        let reason = format!("inference failed: {e}");
                        offline(&s.channels, &reason);
                        s.events.raise("inference", "AI_OFFLINE", Severity::Low, format!("AI offline: {reason}"));
                        return Err(reason.into());
                    }
                    Err(JobError::Unavailable(reason)) => {
                        // The server's fault: raw video, the actor stays up.
                        offline(&s.channels, &reason);
                        s.events.raise("inference", "AI_OFFLINE", Severity::Low, format!("AI offline: {reason}"));
                        return Ok(());
                    }
                };
                if s.cfg.backend == BackendKind::Remote {
                    match &fell_back {
                        Some(why) => {
                            let why = format!("analysing on the local model: {why}");
                            s.events.raise("inference", "AI_SERVER_UNAVAILABLE", Severity::Low, why);
                        }
                        None => {
                            s.events.clear("inference", "AI_SERVER_UNAVAILABLE", "inference server answers again");
                        }
                    }
                }
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
                online(s);
            }
            InferenceMsg::ServerUp => online(s),
            InferenceMsg::Watchdog => {
                s.liveness.beat();
                if let Some((seq, deadline)) = s.in_flight {
                    if Instant::now() > deadline {
                        let reason = format!("frame {seq} not analysed within {} ms", s.hang_after.as_millis());
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
