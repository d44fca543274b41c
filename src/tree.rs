//! The supervision tree, declared in one place. Its policies come from the
//! `[supervision]` section of the config (see `conf/tower.toml`):
//!
//! ```text
//! root                one_for_one, meltdown -> safe state + alarm
//! ├─ safety           watchdog of the safety island thread (island outlives it)
//! ├─ devices          one_for_one, meltdown -> safe state + alarm
//! │  ├─ insufflator   Modbus link + PWM flow / pressure control
//! │  ├─ light         Modbus link + PID constant current, thermal management
//! │  ├─ camera        Modbus link + camera settings and status
//! │  └─ pedal         Modbus link + press events
//! ├─ commands         the single validated command path
//! └─ status           status lines in the log
//! ```
//! The video path (issue 3) and telemetry (issue 5) plug in as further
//! children of `root`.

use crate::tower_config::TowerConfig;
use endotower_actors::camera::CameraControl;
use endotower_actors::commands::{CommandActor, CommandArgs};
use endotower_actors::device_actor::{DeviceActor, DeviceArgs, DeviceControl};
use endotower_actors::device_status::DeviceChannels;
use endotower_actors::events::{EventBus, Severity};
use endotower_actors::insufflator::InsufflatorControl;
use endotower_actors::light::LightControl;
use endotower_actors::pedal::PedalControl;
use endotower_actors::safety_actor::{SafetyActor, SafetyArgs, SafetySlot};
use endotower_actors::setpoints::Setpoints;
use endotower_actors::status_reporter::{StatusArgs, StatusReporter};
use endotower_actors::supervisor::{
    ChildPolicy, ChildSpec, Liveness, MeltdownHook, Supervisor, SupervisorSpec,
};
use ractor::Actor;
use std::sync::Arc;
use std::time::Duration;

/// Everything the tree's children are built from; shared by all restarts.
pub struct TreeContext {
    pub cfg: TowerConfig,
    pub events: EventBus,
    pub setpoints: Setpoints,
    pub channels: DeviceChannels,
    pub safety: SafetySlot,
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
            events.raise(
                "tower",
                "SAFE_STATE",
                Severity::High,
                format!("tower safe state after {supervisor} meltdown: {reason}"),
            );
        })
    }
}

/// A child spawned linked to its supervisor under its namespaced name, with
/// fresh arguments (and a fresh actor) on every (re)start.
fn child<A, F>(ctx: &Arc<TreeContext>, name: &str, policy: &ChildPolicy, make: F) -> ChildSpec
where
    A: Actor,
    F: Fn(&TreeContext, Liveness) -> (A, A::Arguments) + Send + Sync + 'static,
{
    let liveness = Liveness::default();
    let (ctx, beat) = (ctx.clone(), liveness.clone());
    let actor_name = ctx.actor_name(name);
    ChildSpec {
        name: name.to_string(),
        policy: policy.clone(),
        liveness: Some(liveness),
        start: Arc::new(move |sup| {
            let (actor, args) = make(&ctx, beat.clone());
            let name = actor_name.clone();
            Box::pin(async move {
                Actor::spawn_linked(Some(name), actor, args, sup)
                    .await
                    .map(|(r, _)| r.get_cell())
            })
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
        children: vec![
            device(
                ctx,
                "insufflator",
                &p.insufflator,
                |c| {
                    (
                        c.devices.insufflator.link.clone(),
                        c.devices.insufflator.poll_hz,
                    )
                },
                |c| {
                    InsufflatorControl::new(
                        c.cfg.devices.insufflator.clone(),
                        c.channels.insufflator.clone(),
                    )
                },
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
                |c| {
                    CameraControl::new(
                        c.cfg.devices.camera.settings.clone(),
                        c.channels.camera.clone(),
                    )
                },
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

/// The root supervisor's spec: the whole tree.
pub fn root_spec(ctx: Arc<TreeContext>) -> SupervisorSpec {
    let p = &ctx.cfg.supervision.children;
    let devices_ctx = ctx.clone();
    let mut devices = ChildSpec {
        name: "devices".into(),
        policy: p.devices.clone(),
        liveness: None,
        start: Supervisor::child_start(Arc::new(move || devices_spec(&devices_ctx))),
    };
    devices.policy.hang_timeout_ms = None; // a supervisor has no beat of its own
    SupervisorSpec {
        name: ctx.actor_name("root"),
        policy: ctx.cfg.supervision.root.clone(),
        events: ctx.events.clone(),
        on_meltdown: Some(ctx.meltdown_hook()),
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
            ChildSpec {
                // Idle between commands, so it has no liveness beat to watch.
                liveness: None,
                ..child(&ctx, "commands", &p.commands, |c, _| {
                    let args = CommandArgs {
                        limits: c.cfg.limits.clone(),
                        setpoints: c.setpoints.clone(),
                        events: c.events.clone(),
                    };
                    (CommandActor, args)
                })
            },
            child(&ctx, "status", &p.status, |c, liveness| {
                let args = StatusArgs {
                    channels: c.channels.clone(),
                    events: c.events.clone(),
                    interval: Duration::from_millis(c.cfg.tower.status_interval_ms),
                    liveness,
                };
                (StatusReporter, args)
            }),
        ],
    }
}
