//! The supervision tree, declared in one place. Its policies come from the
//! `[supervision]` section of the config (see `conf/tower.toml`):
//!
//! ```text
//! root                one_for_one, meltdown -> safe state + alarm, contained (no parent)
//! ├─ safety           watchdog of the safety island thread (island outlives it)
//! ├─ devices          one_for_one, meltdown -> safe state + alarm
//! │  ├─ insufflator   Modbus link + PWM flow / pressure control
//! │  ├─ light         Modbus link + PID constant current, thermal management
//! │  ├─ camera        Modbus link + camera settings and status
//! │  └─ pedal         Modbus link + press events
//! ├─ commands         the single validated command path
//! ├─ status           status lines in the log
//! └─ video            one_for_one, meltdown -> contained (never the safe state)
//!    ├─ capture       source -> frames channel, own thread
//!    ├─ display       latest-wins sink, never waits on analysis (in order behind enhance)
//!    ├─ enhance       sharpness/site/deblur worker thread; raw video while down
//!    └─ analysis      one_for_one, meltdown -> contained
//!       ├─ selector   quality gate, freeze, pedal > freeze > auto, one in flight
//!       └─ inference  ONNX Runtime worker thread, deadline, "AI offline" while down
//! ```
//! With `[telemetry] enabled`, two more children of `root`:
//! ```text
//! ├─ telemetry        MQTT client: journal replay, telemetry, remote commands
//! └─ broker           health probe of the embedded broker (embedded only)
//! ```

use crate::tower_config::TowerConfig;
use endotower_actors::camera::CameraControl;
use endotower_actors::commands::{CommandActor, CommandArgs};
use endotower_actors::device_actor::{DeviceActor, DeviceArgs, DeviceControl};
use endotower_actors::device_status::DeviceChannels;
use endotower_actors::display::config::RendererChoice;
use endotower_actors::display::overlay_source::OverlaySource;
use endotower_actors::display::sink::{DisplayActor, DisplayArgs, EnhanceLink, OverlayFeed};
use endotower_actors::events::{EventBus, Severity};
use endotower_actors::fault_injection::{FaultInjector, Injectable};
use endotower_actors::insufflator::InsufflatorControl;
use endotower_actors::light::LightControl;
use endotower_actors::pedal::PedalControl;
use endotower_actors::safety_actor::{SafetyActor, SafetyArgs, SafetySlot};
use endotower_actors::setpoints::Setpoints;
use endotower_actors::status_reporter::{StatusArgs, StatusReporter};
use endotower_actors::supervisor::{spawn_child, ChildPolicy, ChildSpec, Liveness, MeltdownHook, Supervisor, SupervisorSpec};
use endotower_actors::video::analysis::{AnalysisActor, AnalysisArgs};
use endotower_actors::video::archive::{ArchiveActor, ArchiveArgs};
use endotower_actors::video::capture::{CaptureActor, CaptureArgs, SourceFactory};
use endotower_actors::video::channels::VideoChannels;
use endotower_actors::video::enhance::actor::{EnhanceActor, EnhanceArgs};
use endotower_actors::video::inference::{InferenceActor, InferenceArgs};
use ractor::Actor;
use std::sync::Arc;
use std::time::Duration;

/// The shape of the tree: each supervisor with its children, in start
/// order. Config validation walks it (`[supervision]` must have a policy for
/// every name); the specs below build exactly this (a test checks).
pub const TREE: &[(&str, &[&str])] = &[
    ("root", &["safety", "devices", "commands", "status", "video", "telemetry", "broker", "pacs", "worklist"]),
    ("devices", &["insufflator", "light", "camera", "pedal"]),
    ("video", &["capture", "display", "enhance", "analysis", "archive"]),
    ("analysis", &["selector", "inference"]),
];

/// Everything the tree's children are built from; shared by all restarts.
pub struct TreeContext {
    pub cfg: TowerConfig,
    /// Telemetry, when enabled and its journal could be opened.
    pub telemetry: Option<crate::mqtt::TelemetryContext>,
    pub events: EventBus,
    pub setpoints: Setpoints,
    pub channels: DeviceChannels,
    pub safety: SafetySlot,
    pub video: VideoChannels,
    pub source: SourceFactory,
    /// Test hook: every leaf actor can be made to panic or hang.
    pub faults: FaultInjector,
    /// The PACS outbox, opened at start when `[pacs]` is configured.
    pub pacs_outbox: Option<endotower_actors::video::archive::StillOutbox>,
}

impl TreeContext {
    /// Actor names are namespaced by tower id, so several towers can share a
    /// process (tests) without registry clashes.
    pub fn actor_name(&self, child: &str) -> String {
        format!("{}.{child}", self.cfg.tower.id)
    }

    fn meltdown_hook(&self) -> MeltdownHook {
        let setpoints = self.setpoints.clone();
        let events = self.events.clone();
        Arc::new(move |supervisor, reason| {
            setpoints.enter_safe_state();
            events.raise("tower", "SAFE_STATE", Severity::High, format!("tower safe state after {supervisor} meltdown: {reason}"));
        })
    }
}

/// A child spawned linked to its supervisor under its namespaced name, with
/// fresh arguments (and a fresh actor) on every (re)start, behind its
/// fault-injection slot.
fn child<A, F>(ctx: &Arc<TreeContext>, name: &str, policy: &ChildPolicy, make: F) -> ChildSpec
where
    A: Actor,
    F: Fn(&TreeContext, Liveness) -> (A, A::Arguments) + Send + Sync + 'static,
{
    let liveness = Liveness::default();
    let (ctx, beat) = (ctx.clone(), liveness.clone());
    let actor_name = ctx.actor_name(name);
    let slot = ctx.faults.slot(name);
    ChildSpec {
        name: name.to_string(),
        policy: policy.clone(),
        liveness: Some(liveness),
        start: Arc::new(move |sup| {
            let (inner, args) = make(&ctx, beat.clone());
            let actor = Injectable { inner, name: actor_name.clone(), slot: slot.clone() };
            spawn_child(Some(actor_name.clone()), actor, args, sup)
        }),
    }
}

fn device<C: DeviceControl>(
    ctx: &Arc<TreeContext>,
    name: &'static str,
    policy: &ChildPolicy,
    link: fn(&TowerConfig) -> (endotower_actors::config::LinkConfig, f64),
    control: fn(&TreeContext) -> C,
) -> ChildSpec {
    child(ctx, name, policy, move |c, liveness| {
        let (link, poll_hz) = link(&c.cfg);
        let args = DeviceArgs {
            name: name.to_string(),
            link,
            poll_hz,
            control: control(c),
            setpoints: c.setpoints.clone(),
            events: c.events.clone(),
            liveness,
            link_fault: Some(c.faults.link(name)),
        };
        (DeviceActor::<C>::default(), args)
    })
}

fn devices_spec(ctx: &Arc<TreeContext>) -> SupervisorSpec {
    let p = &ctx.cfg.supervision.children;
    SupervisorSpec {
        name: ctx.actor_name("devices"),
        policy: ctx.cfg.supervision.devices.clone(),
        events: ctx.events.clone(),
        on_meltdown: Some(ctx.meltdown_hook()),
        liveness: None,
        children: vec![
            device(
                ctx,
                "insufflator",
                &p.insufflator,
                |c| (c.devices.insufflator.link.clone(), c.devices.insufflator.poll_hz),
                |c| InsufflatorControl::new(c.cfg.devices.insufflator.clone(), c.channels.insufflator.clone()),
            ),
            device(
                ctx,
                "light",
                &p.light,
                |c| (c.devices.light.link.clone(), c.devices.light.poll_hz),
                |c| LightControl::new(c.cfg.devices.light.clone(), c.channels.light.clone()),
            ),
            device(
                ctx,
                "camera",
                &p.camera,
                |c| (c.devices.camera.link.clone(), c.devices.camera.poll_hz),
                |c| CameraControl::new(c.cfg.devices.camera.settings.clone(), c.channels.camera.clone()),
            ),
            device(
                ctx,
                "pedal",
                &p.pedal,
                |c| (c.devices.pedal.link.clone(), c.devices.pedal.poll_hz),
                |c| PedalControl::new(c.channels.pedal.clone(), c.channels.pedal_presses.clone()),
            ),
        ],
    }
}

/// A nested supervisor as a child: it beats on its 50 ms tick and while it
/// waits on a bounded start or stop, so its parent can tell it is stuck.
fn supervisor_child(name: &str, policy: &ChildPolicy, make: Arc<dyn Fn() -> SupervisorSpec + Send + Sync>) -> ChildSpec {
    let liveness = Liveness::default();
    ChildSpec {
        name: name.into(),
        policy: policy.clone(),
        liveness: Some(liveness.clone()),
        start: Supervisor::child_start(make, liveness),
    }
}

fn analysis_spec(ctx: &Arc<TreeContext>) -> SupervisorSpec {
    let p = &ctx.cfg.supervision.children;
    SupervisorSpec {
        name: ctx.actor_name("analysis"),
        policy: ctx.cfg.supervision.analysis.clone(),
        events: ctx.events.clone(),
        on_meltdown: None,
        liveness: None,
        children: vec![
            child(ctx, "selector", &p.selector, |c, liveness| {
                let v = &c.video;
                let args = AnalysisArgs {
                    cfg: c.cfg.video.analysis.clone(),
                    frames: v.frames.subscribe(),
                    pedal: c.channels.pedal_presses.subscribe(),
                    ai: v.ai.clone(),
                    inference: c.actor_name("inference"),
                    stats: v.analysis.clone(),
                    picks: v.picks.clone(),
                    liveness,
                };
                (AnalysisActor, args)
            }),
            child(ctx, "inference", &p.inference, |c, liveness| {
                let args = InferenceArgs {
                    cfg: c.cfg.video.inference.clone(),
                    channels: c.video.ai.clone(),
                    events: c.events.clone(),
                    liveness,
                    hooks: c.video.inference_hooks.clone(),
                    exam: c.video.exam.subscribe(),
                    tower_id: c.cfg.tower.id.clone(),
                };
                (InferenceActor, args)
            }),
        ],
    }
}

fn video_spec(ctx: &Arc<TreeContext>) -> SupervisorSpec {
    let p = &ctx.cfg.supervision.children;
    let analysis_ctx = ctx.clone();
    SupervisorSpec {
        name: ctx.actor_name("video"),
        policy: ctx.cfg.supervision.video.clone(),
        events: ctx.events.clone(),
        on_meltdown: None,
        liveness: None,
        children: vec![
            child(ctx, "capture", &p.capture, |c, liveness| {
                let args = CaptureArgs {
                    source: c.source.clone(),
                    frames: c.video.frames.clone(),
                    stats: c.video.capture.clone(),
                    liveness,
                    realtime: c.cfg.video.realtime_priority,
                };
                (CaptureActor, args)
            }),
            child(ctx, "display", &p.display, |c, liveness| {
                let (v, inf) = (&c.cfg.video, &c.cfg.video.inference);
                let overlay = (v.display.renderer != RendererChoice::None).then(|| OverlayFeed {
                    cfg: v.display.clone(),
                    source: OverlaySource {
                        devices: c.channels.clone(),
                        video: c.video.clone(),
                        events: c.events.clone(),
                        setpoints: c.setpoints.clone(),
                        class_names: inf.detector.classes.clone(),
                        high_risk_classes: inf.high_risk_classes.clone(),
                        high_risk_threshold: inf.high_risk_threshold,
                        max_result_age: Duration::from_millis(v.analysis.max_result_age_ms),
                    },
                    composed: c.video.composed.clone(),
                });
                let enhance = Some(EnhanceLink { channels: c.video.enhance.clone(), budget: Duration::from_millis(v.enhance.budget_ms) });
                let args = DisplayArgs {
                    frames: c.video.frames.subscribe(),
                    stats: c.video.display.clone(),
                    liveness,
                    overlay,
                    enhance,
                    realtime: v.realtime_priority,
                };
                (DisplayActor, args)
            }),
            child(ctx, "enhance", &p.enhance, |c, liveness| {
                let args = EnhanceArgs {
                    cfg: c.cfg.video.enhance.clone(),
                    runtime_library: c.cfg.video.inference.runtime_library.clone(),
                    frames: c.video.frames.subscribe(),
                    channels: c.video.enhance.clone(),
                    events: c.events.clone(),
                    liveness,
                };
                (EnhanceActor, args)
            }),
            supervisor_child("analysis", &p.analysis, Arc::new(move || analysis_spec(&analysis_ctx))),
            child(ctx, "archive", &p.archive, |c, liveness| {
                let args = ArchiveArgs {
                    cfg: c.cfg.video.archive.clone(),
                    exam: c.video.exam.subscribe(),
                    picks: c.video.picks.subscribe(),
                    results: c.video.ai.result.subscribe(),
                    events: c.events.clone(),
                    liveness: Some(liveness),
                    pacs: c.pacs_outbox.clone(),
                };
                (ArchiveActor, args)
            }),
        ],
    }
}

/// The root supervisor's spec: the whole tree.
pub fn root_spec(ctx: Arc<TreeContext>) -> SupervisorSpec {
    let p = &ctx.cfg.supervision.children;
    let devices_ctx = ctx.clone();
    let devices = supervisor_child("devices", &p.devices, Arc::new(move || devices_spec(&devices_ctx)));
    let mut spec = SupervisorSpec {
        name: ctx.actor_name("root"),
        policy: ctx.cfg.supervision.root.clone(),
        events: ctx.events.clone(),
        on_meltdown: Some(ctx.meltdown_hook()),
        liveness: None,
        children: vec![
            child(&ctx, "safety", &p.safety, |c, liveness| {
                let args = SafetyArgs {
                    cfg: c.cfg.safety.clone(),
                    setpoints: c.setpoints.clone(),
                    events: c.events.clone(),
                    slot: c.safety.clone(),
                    liveness,
                };
                (SafetyActor, args)
            }),
            devices,
            child(&ctx, "commands", &p.commands, |c, liveness| {
                let args = CommandArgs {
                    limits: c.cfg.limits.clone(),
                    setpoints: c.setpoints.clone(),
                    events: c.events.clone(),
                    exam: Some(c.video.exam.clone()),
                    liveness: Some(liveness),
                };
                (CommandActor, args)
            }),
            child(&ctx, "status", &p.status, |c, liveness| {
                let args = StatusArgs {
                    channels: c.channels.clone(),
                    video: c.cfg.video.enabled.then(|| c.video.clone()),
                    events: c.events.clone(),
                    interval: Duration::from_millis(c.cfg.tower.status_interval_ms),
                    liveness,
                };
                (StatusReporter, args)
            }),
        ],
    };
    if ctx.cfg.video.enabled {
        let video_ctx = ctx.clone();
        spec.children.push(supervisor_child("video", &p.video, Arc::new(move || video_spec(&video_ctx))));
    }
    telemetry_children(&ctx, &mut spec);
    dicom_children(&ctx, &mut spec);
    spec
}

/// The PACS sender and the worklist, each when configured.
fn dicom_children(ctx: &Arc<TreeContext>, spec: &mut SupervisorSpec) {
    use endotower_actors::pacs::sender::{PacsActor, PacsArgs};
    use endotower_actors::pacs::worklist::{WorklistActor, WorklistArgs};
    let p = &ctx.cfg.supervision.children;
    if let (Some(cfg), Some(_)) = (ctx.cfg.pacs.clone(), &ctx.pacs_outbox) {
        spec.children.push(child(ctx, "pacs", &p.pacs, move |c, liveness| {
            (PacsActor, PacsArgs { cfg: cfg.clone(), events: c.events.clone(), liveness })
        }));
    }
    if let Some(cfg) = ctx.cfg.worklist.clone() {
        spec.children.push(child(ctx, "worklist", &p.worklist, move |c, liveness| {
            (WorklistActor, WorklistArgs { cfg: cfg.clone(), exam: c.video.exam.clone(), events: c.events.clone(), liveness })
        }));
    }
}

/// The telemetry actor and, with the embedded broker, its health probe.
fn telemetry_children(ctx: &Arc<TreeContext>, spec: &mut SupervisorSpec) {
    use endotower_actors::telemetry::actor::{TelemetryActor, TelemetryArgs};
    let Some(t) = &ctx.telemetry else { return };
    let p = &ctx.cfg.supervision.children;
    let tc = t.clone();
    spec.children.push(child(ctx, "telemetry", &p.telemetry, move |c, liveness| {
        let t = tc.clone();
        let args = TelemetryArgs {
            cfg: c.cfg.telemetry.clone(),
            tower_id: c.cfg.tower.id.clone(),
            endpoint: t.endpoint,
            journal: t.journal,
            events: c.events.clone(),
            setpoints: c.setpoints.clone(),
            channels: c.channels.clone(),
            ai: c.cfg.video.enabled.then(|| c.video.ai.clone()),
            enhance: c.cfg.video.enabled.then(|| c.video.enhance.clone()),
            limits: c.cfg.limits.clone(),
            commands: c.actor_name("commands"),
            supervisors: ["root", "devices", "video", "analysis"].iter().map(|n| c.actor_name(n)).collect(),
            stats: t.stats,
            liveness,
        };
        (TelemetryActor, args)
    }));
    if let Some((broker, interval)) = t.embedded.clone() {
        spec.children.push(child(ctx, "broker", &p.broker, move |c, liveness| {
            let args = crate::embedded_broker::BrokerHealthArgs { broker: broker.clone(), interval, events: c.events.clone(), liveness };
            (crate::embedded_broker::BrokerHealth, args)
        }));
    }
}
