//! Assembly of a running tower: optional in-process simulators, the shared
//! channels, the safety island slot and the supervision tree.

use crate::tower_config::TowerConfig;
use crate::tree::{root_spec, TreeContext};
use endotower_actors::commands::{self, Applied, Command, CommandSource, Rejection};
use endotower_actors::config::{ConfigError, LinkConfig, Transport};
use endotower_actors::device_actor::DeviceMsg;
use endotower_actors::device_status::DeviceChannels;
use endotower_actors::display::hmi::{HmiPort, HmiTargets};
use endotower_actors::events::{EventBus, Severity};
use endotower_actors::fault_injection::{FaultInjector, InjectedFault};
use endotower_actors::safety_actor::SafetySlot;
use endotower_actors::setpoints::Setpoints;
use endotower_actors::supervisor::{ChildStatus, Liveness, Supervisor, SupervisorMsg};
use endotower_actors::video::capture::SourceFactory;
use endotower_actors::video::channels::VideoChannels;
use endotower_sim::{Device, SimEndpoints, SimError, SimHost};
use ractor::{ActorCell, ActorRef, ActorStatus};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum TowerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("simulators: {0}")]
    Sim(#[from] SimError),
    #[error("cannot start the supervision tree: {0}")]
    Spawn(#[from] ractor::SpawnErr),
}

/// A running tower.
pub struct Tower {
    cfg: TowerConfig,
    root: ActorRef<SupervisorMsg>,
    sim: Option<SimHost>,
    events: EventBus,
    setpoints: Setpoints,
    channels: DeviceChannels,
    safety: SafetySlot,
    video: VideoChannels,
    telemetry: Option<crate::mqtt::TelemetryContext>,
    faults: FaultInjector,
    /// Set by [`Tower::shutdown`]: the root's end is expected from then on.
    stopping: Arc<AtomicBool>,
}

fn device_links(cfg: &mut TowerConfig, dev: Device) -> [&mut LinkConfig; 2] {
    let d = &mut cfg.devices;
    let s = &mut cfg.safety;
    match dev {
        Device::Insufflator => [&mut d.insufflator.link, &mut s.insufflator],
        Device::Light => [&mut d.light.link, &mut s.light],
        Device::Camera => [&mut d.camera.link, &mut s.camera],
        Device::Pedal => [&mut d.pedal.link, &mut s.pedal],
    }
}

/// Start the simulators on every TCP address the config names for a device
/// (control and safety links), then point the links at the bound addresses
/// (which differ from the config when it asks for port 0).
pub fn start_simulators(cfg: &mut TowerConfig) -> Result<SimHost, TowerError> {
    let mut endpoints = SimEndpoints::default();
    // (device, link index, position among that device's listeners)
    let mut assign = Vec::new();
    for dev in Device::ALL {
        let mut mine: Vec<String> = Vec::new();
        for (i, link) in device_links(cfg, dev).into_iter().enumerate() {
            let Transport::Tcp { addr } = &link.transport else {
                continue;
            };
            let parsed: SocketAddr = addr.parse().map_err(|_| ConfigError::new("transport.addr", addr, "a socket address"))?;
            // The same fixed address twice shares one listener; port 0 means a free port each.
            let pos = match mine.iter().position(|a| a == addr && parsed.port() != 0) {
                Some(p) => p,
                None => {
                    mine.push(addr.clone());
                    endpoints.tcp.push((dev, parsed));
                    mine.len() - 1
                }
            };
            assign.push((dev, i, pos));
        }
    }
    let mut model = cfg.sim.model.clone();
    // Embedded simulators stand for separate hardware: real-time just under
    // the island whenever the island is (no false trips from a busy tower).
    model.realtime_priority |= cfg.safety.realtime_priority;
    let host = SimHost::start(model, endpoints)?;
    for (dev, i, pos) in assign {
        if let Some(addr) = host.tcp_addrs(dev).get(pos) {
            device_links(cfg, dev)[i].transport = Transport::Tcp { addr: addr.to_string() };
        }
    }
    Ok(host)
}

/// The root has no supervisor: the process watches it. A root that stops
/// beating (stuck in its handler) or dies is an alarm and the safe state;
/// the island, the picture and telemetry do not depend on it.
const ROOT_STALL: Duration = Duration::from_secs(3);

fn watch_root(root: ActorRef<SupervisorMsg>, beat: Liveness, events: EventBus, setpoints: Setpoints, stopping: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let mut raised = false;
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if stopping.load(Ordering::Acquire) {
                return;
            }
            let dead = matches!(root.get_status(), ActorStatus::Stopping | ActorStatus::Stopped);
            let stuck = dead || beat.age() > ROOT_STALL;
            if stuck && !raised {
                raised = true;
                setpoints.enter_safe_state();
                let why = if dead {
                    "root supervisor stopped".to_string()
                } else {
                    format!("root supervisor has not beaten for {} ms", beat.age().as_millis())
                };
                events.raise("tower", "ROOT_UNRESPONSIVE", Severity::High, format!("{why}: tower safe state"));
            } else if !stuck && raised {
                raised = false;
                events.clear("tower", "ROOT_UNRESPONSIVE", "root supervisor beating again");
            }
            if dead {
                return;
            }
        }
    });
}

/// The PACS outbox, when `[pacs]` is configured. One that cannot be opened
/// raises `PACS_OUTBOX_FAILED` and the tower runs without sending stills
/// (the archive still keeps them).
fn open_pacs_outbox(cfg: &TowerConfig, events: &EventBus) -> Option<endotower_actors::video::archive::StillOutbox> {
    let p = cfg.pacs.as_ref()?;
    match endotower_actors::pacs::outbox::Outbox::open(std::path::Path::new(&p.outbox)) {
        Ok(outbox) => Some(endotower_actors::video::archive::StillOutbox { outbox, tower_id: cfg.tower.id.clone() }),
        Err(e) => {
            events.raise("pacs", "PACS_OUTBOX_FAILED", Severity::Medium, format!("stills will not reach the PACS: {e}"));
            None
        }
    }
}

impl Tower {
    /// Validate the config, start the simulators if embedded, then the tree.
    pub async fn start(cfg: TowerConfig) -> Result<Tower, TowerError> {
        let source = crate::video_source::factory(&cfg.video.source);
        Self::start_with_source(cfg, source).await
    }

    /// As [`Tower::start`], with the video frames from `source` instead of
    /// the configured one (tests and tools that need the ground truth).
    pub async fn start_with_source(mut cfg: TowerConfig, source: SourceFactory) -> Result<Tower, TowerError> {
        cfg.apply_model_card()?;
        cfg.validate()?;
        let sim = if cfg.sim.embedded { Some(start_simulators(&mut cfg)?) } else { None };
        let events = EventBus::default();
        let d = &cfg.devices;
        let setpoints = Setpoints::new(d.insufflator.set_pressure_mmhg, d.insufflator.set_flow_lpm, d.light.intensity_pct);
        let channels = DeviceChannels::default();
        let safety = SafetySlot::default();
        let video = VideoChannels::default();
        let faults = FaultInjector::default();
        video.exam.send_replace(cfg.video.exam.clone());
        video.enhance.switch.send_replace(cfg.video.enabled && cfg.video.enhance.enabled);
        // Before any actor: the journal must see every event.
        let telemetry = crate::mqtt::setup(&cfg, &events);
        let pacs_outbox = open_pacs_outbox(&cfg, &events);
        let ctx = Arc::new(TreeContext {
            cfg: cfg.clone(),
            telemetry: telemetry.clone(),
            events: events.clone(),
            setpoints: setpoints.clone(),
            channels: channels.clone(),
            safety: safety.clone(),
            video: video.clone(),
            source,
            faults: faults.clone(),
            pacs_outbox,
        });
        let mut spec = root_spec(ctx);
        let root_beat = Liveness::default();
        spec.liveness = Some(root_beat.clone());
        let root = match Supervisor::spawn(spec, None).await {
            Ok(r) => r,
            Err(e) => {
                safety.shutdown();
                if let Some(t) = &telemetry {
                    events.clear_sinks();
                    t.journal.close();
                }
                return Err(e.into());
            }
        };
        tracing::info!(tower = %cfg.tower.id, set_pressure = d.insufflator.set_pressure_mmhg, intensity = d.light.intensity_pct, "tower started");
        let stopping = Arc::new(AtomicBool::new(false));
        watch_root(root.clone(), root_beat, events.clone(), setpoints.clone(), stopping.clone());
        Ok(Tower { cfg, root, sim, events, setpoints, channels, safety, video, telemetry, faults, stopping })
    }

    /// The config in force (with the bound simulator addresses).
    pub fn config(&self) -> &TowerConfig {
        &self.cfg
    }
    pub fn events(&self) -> &EventBus {
        &self.events
    }
    pub fn setpoints(&self) -> &Setpoints {
        &self.setpoints
    }
    pub fn channels(&self) -> &DeviceChannels {
        &self.channels
    }
    pub fn safety(&self) -> &SafetySlot {
        &self.safety
    }
    pub fn video(&self) -> &VideoChannels {
        &self.video
    }

    /// Where the window's HMI keys go: the command path of this tower (call
    /// from within the tower's runtime).
    pub fn hmi_port(&self) -> HmiPort {
        HmiPort::spawn(HmiTargets {
            command_actor: self.command_actor(),
            setpoints: self.setpoints.clone(),
            events: self.events.clone(),
            pedal: self.channels.pedal_presses.clone(),
            enhance: self.video.enhance.switch.clone(),
        })
    }
    pub fn sim(&self) -> Option<&SimHost> {
        self.sim.as_ref()
    }
    /// Telemetry (journal, broker endpoint, counters), when running.
    pub fn telemetry(&self) -> Option<&crate::mqtt::TelemetryContext> {
        self.telemetry.as_ref()
    }

    /// Is the root supervisor still running (false after a root meltdown)?
    pub fn root_running(&self) -> bool {
        self.root.get_status() == ActorStatus::Running
    }

    /// The running actor registered under a child name of this tower.
    pub fn actor(&self, child: &str) -> Option<ActorCell> {
        ractor::registry::where_is(format!("{}.{child}", self.cfg.tower.id))
    }

    /// Send a test hook to a device actor (`insufflator`, `light`, ...).
    pub fn inject(&self, device: &str, msg: DeviceMsg) -> bool {
        self.actor(device).is_some_and(|c| c.send_message(msg).is_ok())
    }

    /// Test hook: make the leaf actor `child` (`insufflator`, `inference`,
    /// `commands`, ...) panic or hang on its next message. False if the tree
    /// has no such actor.
    pub fn inject_fault(&self, child: &str, fault: InjectedFault) -> bool {
        if !self.faults.inject(child, fault) {
            return false;
        }
        if fault == InjectedFault::Panic {
            // Do not wait for the actor's next message: a stop is taken at
            // once, and the armed panic fires in its place.
            if let Some(c) = self.actor(child) {
                c.stop(Some("fault injection: panic".into()));
            }
        }
        true
    }

    /// Test hook: the control plane's link to `device` fails every request
    /// for `d` (the safety island's own link is untouched).
    pub fn drop_control_link(&self, device: &str, d: Duration) {
        self.faults.link(device).drop_for(d);
    }

    /// The actors [`Tower::inject_fault`] accepts.
    pub fn injectable_actors(&self) -> Vec<String> {
        self.faults.children()
    }

    /// Per-child status of a supervisor (`root` or `devices`).
    pub async fn supervisor_status(&self, supervisor: &str) -> Option<Vec<ChildStatus>> {
        let cell = self.actor(supervisor)?;
        let r: ActorRef<SupervisorMsg> = cell.into();
        ractor::call_t!(r, SupervisorMsg::Status, 1000).ok()
    }

    /// Submit a command through the validated command path.
    pub async fn submit(&self, source: CommandSource, command: Command) -> Option<Result<Applied, Rejection>> {
        commands::submit(&self.command_actor(), source, command).await.ok()
    }

    /// Registered name of this tower's command path.
    fn command_actor(&self) -> String {
        format!("{}.commands", self.cfg.tower.id)
    }

    /// Stop the tree, then the safety island, then the simulators.
    pub async fn shutdown(self) {
        self.stopping.store(true, Ordering::Release);
        let _ = self.root.stop_and_wait(Some("tower shutdown".into()), Some(Duration::from_secs(5))).await;
        if let Some(t) = &self.telemetry {
            self.events.clear_sinks();
            t.journal.close();
            // After the telemetry actor's clean stop (its death and DISCONNECT went through it).
            if let Some((b, _)) = &t.embedded {
                b.stop();
            }
        }
        self.safety.shutdown();
        if let Some(sim) = self.sim {
            sim.stop();
        }
        tracing::info!("tower stopped");
    }
}
