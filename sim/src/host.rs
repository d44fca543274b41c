//! [`SimHost`]: runs all four simulated devices, the physics on a dedicated OS
//! thread and the Modbus TCP/RTU servers on another thread with its own tokio
//! runtime, and gives tests and the tower probes and fault hooks.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_modbus::server::rtu;
use tokio_serial::SerialStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::camera::Camera;
use crate::config::{SimConfig, SimConfigError};
use crate::device::Device;
use crate::faults::{Fault, FaultKind};
use crate::insufflator::{Insufflator, InsufflatorSnapshot};
use crate::light::{Light, LightSnapshot};
use crate::link::LinkStream;
use crate::modbus_service::RtuBusService;
use crate::pedal::Pedal;
use crate::rng::Rng;
use crate::serial;
use crate::sim_device::{DeviceCore, DynDevice, Model, Shared, SimDevice};

/// Pause before a serial port given by path is reopened after an error.
const SERIAL_RETRY: Duration = Duration::from_secs(1);

/// Where the simulated devices listen.
#[derive(Debug, Default)]
pub struct SimEndpoints {
    /// Modbus TCP listeners; port 0 binds a free port. A device may have several.
    pub tcp: Vec<(Device, SocketAddr)>,
    pub rtu: Vec<RtuBus>,
}

/// One serial line carrying one or more devices.
#[derive(Debug)]
pub struct RtuBus {
    pub port: RtuPort,
    /// Devices on this line and their unit ids (1..=247, unique on the line).
    pub devices: Vec<(Device, u8)>,
}

/// The serial line of an [`RtuBus`].
#[derive(Debug)]
pub enum RtuPort {
    /// A serial device opened by the simulator (reopened after errors).
    Path { path: String, baud: u32 },
    /// An already open stream, e.g. one end of `SerialStream::pair()`.
    Stream(SerialStream),
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Config(#[from] SimConfigError),
    #[error("cannot bind Modbus TCP for {device} on {addr}: {source}")]
    Bind { device: Device, addr: SocketAddr, source: io::Error },
    #[error("cannot open serial port {path} at {baud} baud: {source}")]
    SerialOpen { path: String, baud: u32, source: io::Error },
    #[error("cannot take over the serial stream of RTU bus {bus}: {source}")]
    SerialStream { bus: usize, source: io::Error },
    #[error("RTU bus {bus}: unit id {unit} of {device} {reason}")]
    RtuUnit { bus: usize, device: Device, unit: u8, reason: &'static str },
    #[error("cannot start the simulator {what}: {source}")]
    Start { what: &'static str, source: io::Error },
    #[error("the simulator server thread stopped during start-up")]
    ServerThreadDied,
}

/// The four devices, each behind its own lock.
#[derive(Clone)]
struct Devices {
    insufflator: Arc<Shared<SimDevice<Insufflator>>>,
    light: Arc<Shared<SimDevice<Light>>>,
    camera: Arc<Shared<SimDevice<Camera>>>,
    pedal: Arc<Shared<SimDevice<Pedal>>>,
}

impl Devices {
    fn new(cfg: &SimConfig) -> Self {
        let timeout_s = cfg.heartbeat_timeout_ms as f64 / 1000.0;
        fn shared<M: Model>(dev: Device, model: M, timeout_s: f64) -> Arc<Shared<SimDevice<M>>> {
            Arc::new(Shared::new(dev, SimDevice::new(dev, model, timeout_s)))
        }
        Self {
            insufflator: shared(
                Device::Insufflator,
                Insufflator::new(cfg.insufflator.clone(), Rng::new(cfg.seed, 0)).with_slow_time_scale(cfg.slow_time_scale),
                timeout_s,
            ),
            light: shared(Device::Light, Light::new(cfg.light.clone()).with_slow_time_scale(cfg.slow_time_scale), timeout_s),
            camera: shared(Device::Camera, Camera::new(cfg.camera.clone()), timeout_s),
            pedal: shared(Device::Pedal, Pedal::default(), timeout_s),
        }
    }

    fn get(&self, dev: Device) -> Arc<DynDevice> {
        match dev {
            Device::Insufflator => self.insufflator.clone(),
            Device::Light => self.light.clone(),
            Device::Camera => self.camera.clone(),
            Device::Pedal => self.pedal.clone(),
        }
    }
}

/// The running simulator. Dropping it stops everything, like [`SimHost::stop`].
pub struct SimHost {
    devices: Devices,
    tcp: Vec<(Device, SocketAddr)>,
    stop_physics: Arc<AtomicBool>,
    stop_servers: CancellationToken,
    physics: Option<JoinHandle<()>>,
    servers: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SimHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHost").field("tcp", &self.tcp).finish_non_exhaustive()
    }
}

impl SimHost {
    /// Validate, bind every endpoint (errors name the address or port), then
    /// start the physics and server threads. Never uses the caller's runtime.
    pub fn start(cfg: SimConfig, endpoints: SimEndpoints) -> Result<SimHost, SimError> {
        cfg.validate()?;
        check_buses(&endpoints.rtu)?;
        let devices = Devices::new(&cfg);

        let stop_servers = CancellationToken::new();
        let (ready_tx, ready_rx) = mpsc::channel();
        let realtime = cfg.realtime_priority;
        let servers = {
            let (devices, stop) = (devices.clone(), stop_servers.clone());
            thread::Builder::new()
                .name("sim-modbus".into())
                .spawn(move || {
                    simulator_priority("sim-modbus", realtime);
                    run_servers(devices, endpoints, ready_tx, stop)
                })
                .map_err(|source| SimError::Start { what: "server thread", source })?
        };
        let tcp = match ready_rx.recv() {
            Ok(Ok(bound)) => bound,
            Ok(Err(e)) => {
                let _ = servers.join();
                return Err(e);
            }
            Err(_) => {
                let _ = servers.join();
                return Err(SimError::ServerThreadDied);
            }
        };

        let stop_physics = Arc::new(AtomicBool::new(false));
        let physics = {
            let all = Device::ALL.iter().map(|d| devices.get(*d)).collect();
            let period = Duration::from_micros(cfg.physics_period_us);
            let stop = stop_physics.clone();
            thread::Builder::new().name("sim-physics".into()).spawn(move || {
                simulator_priority("sim-physics", realtime);
                crate::physics::run(all, period, stop)
            })
        };
        let physics = match physics {
            Ok(handle) => handle,
            Err(source) => {
                stop_servers.cancel();
                let _ = servers.join();
                return Err(SimError::Start { what: "physics thread", source });
            }
        };
        info!(?tcp, "simulator started");
        Ok(SimHost { devices, tcp, stop_physics, stop_servers, physics: Some(physics), servers: Some(servers) })
    }

    /// Actual bound TCP addresses of `dev`, in the order given.
    pub fn tcp_addrs(&self, dev: Device) -> Vec<SocketAddr> {
        self.tcp.iter().filter(|(d, _)| *d == dev).map(|(_, a)| *a).collect()
    }

    pub fn set_fault(&self, dev: Device, fault: Fault) {
        self.devices.get(dev).set_fault(fault);
    }

    pub fn clear_fault(&self, dev: Device, kind: FaultKind) {
        self.devices.get(dev).clear_fault(kind);
    }

    pub fn clear_all_faults(&self, dev: Device) {
        self.devices.get(dev).clear_all_faults();
    }

    /// True insufflator state (no sensor faults).
    pub fn insufflator(&self) -> InsufflatorSnapshot {
        let sim = self.devices.insufflator.lock();
        sim.model().snapshot(sim.table(), sim.faults(), sim.failsafe())
    }

    /// True light-source state (no sensor faults).
    pub fn light(&self) -> LightSnapshot {
        let sim = self.devices.light.lock();
        sim.model().snapshot(sim.table(), sim.faults(), sim.failsafe())
    }

    /// How often `dev` fell back to its heartbeat fail-safe since boot.
    pub fn failsafe_entries(&self, dev: Device) -> u64 {
        self.devices.get(dev).lock().failsafe_entries()
    }

    /// Is `dev` in its heartbeat fail-safe?
    pub fn failsafe(&self, dev: Device) -> bool {
        self.devices.get(dev).lock().failsafe()
    }

    /// Set the cavity pressure now (and publish it); returns when it was set.
    pub fn inject_pressure(&self, mmhg: f64) -> Instant {
        let mut sim = self.devices.insufflator.lock();
        sim.model_mut().inject_pressure(mmhg);
        sim.publish_now();
        Instant::now()
    }

    /// When a register write last took the effective relief valve from closed to open.
    pub fn last_vent_open(&self) -> Option<Instant> {
        self.devices.insufflator.lock().model().last_vent_open
    }

    /// Press the foot pedal once.
    pub fn press_pedal(&self) {
        let mut sim = self.devices.pedal.lock();
        sim.model_mut().press();
        sim.publish_now();
    }

    /// Hold the foot pedal down for `ms` (one press).
    pub fn hold_pedal(&self, ms: u64) {
        let mut sim = self.devices.pedal.lock();
        sim.model_mut().hold(ms as f64 / 1000.0);
        sim.publish_now();
    }

    /// Override the light-cable tip temperature (thermal state), degC.
    pub fn set_tip_temp(&self, c: f64) {
        self.devices.light.lock().model_mut().set_tip_temp(c);
    }

    /// Override the LED temperature (thermal state), degC.
    pub fn set_led_temp(&self, c: f64) {
        self.devices.light.lock().model_mut().set_led_temp(c);
    }

    /// Stop both threads and close every listener and connection.
    pub fn stop(self) {
        drop(self);
    }

    fn shutdown(&mut self) {
        self.stop_physics.store(true, Ordering::Release);
        self.stop_servers.cancel();
        for handle in [self.physics.take(), self.servers.take()].into_iter().flatten() {
            if handle.join().is_err() {
                warn!("a simulator thread panicked");
            }
        }
    }
}

impl Drop for SimHost {
    fn drop(&mut self) {
        self.shutdown();
        debug!("simulator stopped");
    }
}

/// Every unit id on a bus must be a valid RTU address and unique on that bus.
fn check_buses(buses: &[RtuBus]) -> Result<(), SimError> {
    for (bus, b) in buses.iter().enumerate() {
        for (i, &(device, unit)) in b.devices.iter().enumerate() {
            let err = |reason| SimError::RtuUnit { bus, device, unit, reason };
            if !(1..=247).contains(&unit) {
                return Err(err("is not in 1..=247"));
            }
            if b.devices[..i].iter().any(|(_, u)| *u == unit) {
                return Err(err("is used twice"));
            }
        }
    }
    Ok(())
}

type Ready = Result<Vec<(Device, SocketAddr)>, SimError>;

/// Body of the server thread: bind everything, report, serve until stopped.
/// SCHED_FIFO just under the safety island, when asked and permitted.
fn simulator_priority(thread: &str, realtime: bool) {
    if realtime && !endotower_safety::priority::make_realtime(endotower_safety::priority::SIMULATOR_PRIORITY) {
        warn!(thread, error = %io::Error::last_os_error(), "SCHED_FIFO not permitted; simulator thread at normal priority");
    }
}

fn run_servers(devices: Devices, endpoints: SimEndpoints, ready: mpsc::Sender<Ready>, stop: CancellationToken) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(source) => {
            let _ = ready.send(Err(SimError::Start { what: "server runtime", source }));
            return;
        }
    };
    rt.block_on(async move {
        let mut tasks = JoinSet::new();
        match start_servers(&devices, endpoints, &mut tasks).await {
            Ok(bound) => {
                if ready.send(Ok(bound)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        }
        stop.cancelled().await;
        tasks.shutdown().await;
    });
    // Dropping the runtime ends every connection task and closes its socket.
}

async fn start_servers(devices: &Devices, endpoints: SimEndpoints, tasks: &mut JoinSet<()>) -> Result<Vec<(Device, SocketAddr)>, SimError> {
    let mut bound = Vec::new();
    for (device, addr) in endpoints.tcp {
        let bind_err = |source| SimError::Bind { device, addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
        let local = listener.local_addr().map_err(bind_err)?;
        bound.push((device, local));
        tasks.spawn(serve_tcp(listener, devices.get(device)));
    }
    for (bus, b) in endpoints.rtu.into_iter().enumerate() {
        let units = b.devices.iter().map(|(d, u)| (*u, devices.get(*d))).collect();
        let service = Arc::new(RtuBusService::new(units));
        match b.port {
            RtuPort::Path { path, baud } => {
                let stream = serial::open(&path, baud).map_err(|source| SimError::SerialOpen { path: path.clone(), baud, source })?;
                tasks.spawn(serve_rtu_path(stream, path, baud, service));
            }
            RtuPort::Stream(stream) => {
                let stream = serial::adopt(stream).map_err(|source| SimError::SerialStream { bus, source })?;
                tasks.spawn(async move {
                    match rtu::Server::new(stream).serve_forever(service).await {
                        Ok(()) => info!(bus, "RTU stream closed"),
                        Err(e) => warn!(bus, error = %e, "RTU stream failed"),
                    }
                });
            }
        }
    }
    Ok(bound)
}

/// Serve one TCP listener for `dev`, honouring its link gate.
async fn serve_tcp(listener: TcpListener, dev: Arc<DynDevice>) {
    let device = dev.device.name();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(device, error = %e, "TCP accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(token) = dev.link.admit() else {
            debug!(device, %peer, "link dropped: connection refused");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let dev = Arc::clone(&dev);
        tokio::spawn(async move {
            if let Err(e) = crate::tcp_server::serve(LinkStream::new(stream, token), dev).await {
                debug!(device, %peer, error = %e, "connection ended");
            }
        });
    }
}

/// Serve a serial port opened by path, reopening it after errors.
async fn serve_rtu_path(first: SerialStream, path: String, baud: u32, service: Arc<RtuBusService>) {
    let mut stream = Some(first);
    loop {
        let port = match stream.take() {
            Some(port) => port,
            None => match serial::open(&path, baud) {
                Ok(port) => port,
                Err(e) => {
                    warn!(%path, error = %e, "cannot reopen serial port");
                    tokio::time::sleep(SERIAL_RETRY).await;
                    continue;
                }
            },
        };
        if let Err(e) = rtu::Server::new(port).serve_forever(Arc::clone(&service)).await {
            warn!(%path, error = %e, "RTU serial port failed; reopening");
        }
        tokio::time::sleep(SERIAL_RETRY).await;
    }
}
