//! Assembly of a running tower: optional in-process simulators, the shared
//! channels, the safety island slot and the supervision tree.

use crate::tower_config::TowerConfig;
use crate::tree::{root_spec, TreeContext};
use endotower_actors::commands::{self, Applied, Command, CommandSource, Rejection};
use endotower_actors::config::{ConfigError, LinkConfig, Transport};
use endotower_actors::device_actor::DeviceMsg;
use endotower_actors::device_status::DeviceChannels;
use endotower_actors::display::hmi::{HmiPort, HmiTargets};
use endotower_actors::events::EventBus;
use endotower_actors::fault_injection::{FaultInjector, InjectedFault};
use endotower_actors::safety_actor::SafetySlot;
use endotower_actors::setpoints::Setpoints;
use endotower_actors::supervisor::{ChildStatus, Supervisor, SupervisorMsg};
use endotower_actors::video::capture::SourceFactory;
use endotower_actors::video::channels::VideoChannels;
use endotower_sim::{Device, SimEndpoints, SimError, SimHost};
use ractor::{ActorCell, ActorRef, ActorStatus};
use std::net::SocketAddr;
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
    let host = SimHost::start(cfg.sim.model.clone(), endpoints)?;
    for (dev, i, pos) in assign {
        if let Some(addr) = host.tcp_addrs(dev).get(pos) {
            device_links(cfg, dev)[i].transport = Transport::Tcp { addr: addr.to_string() };
        }
    }
    Ok(host)
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
        });
        let root = match Supervisor::spawn(root_spec(ctx), None).await {
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
        Ok(Tower { cfg, root, sim, events, setpoints, channels, safety, video, telemetry, faults })
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
        self.faults.inject(child, fault)
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
        let _ = self.root.stop_and_wait(Some("tower shutdown".into()), Some(Duration::from_secs(5))).await;
        if let Some(t) = &self.telemetry {
            self.events.clear_sinks();
            t.journal.close();
        }
        self.safety.shutdown();
        if let Some(sim) = self.sim {
            sim.stop();
        }
        tracing::info!("tower stopped");
    }
}
