//! The embedded MQTT broker: a mosquitto process the tower starts, watches
//! and restarts, so `endotower run` needs no set-up (`./x` installs the
//! Debian package) and a broker that stops accepting heals by itself.
//!
//! - The process runs with a configuration the tower writes into its own
//!   directory (beside the journal): loopback listener, no persistence (the
//!   tower's journal is what replays), a packet size cap.
//! - With `password_file` (needed for remote control) the broker refuses
//!   anonymous clients and applies ACLs the tower writes: the tower may
//!   publish under its own topic tree; every other client may read
//!   `endotower/v1/#` and publish only on `cmd/<its user name>`, so the
//!   client id in a command topic is the authenticated identity. The tower
//!   adds a user of its own with a password made at start.
//! - The child dies with the tower (PR_SET_PDEATHSIG), and on tower stop.
//! - [`BrokerHealth`], a supervised child of the root, probes it (MQTT
//!   connect + ConnAck) every `probe_interval_s`; two failures in a row, or
//!   the process gone, and it kills and restarts the process on the same
//!   port, raising `EMBEDDED_BROKER_DOWN` until a probe succeeds again.

use endotower_actors::events::{EventBus, Severity};
use endotower_actors::supervisor::Liveness;
use endotower_actors::telemetry::config::BrokerConfig;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The broker's packet size cap: above the tower's command cap (4 KiB), so an
/// oversized command reaches the tower and gets its answer.
const MAX_PACKET: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("embedded broker: bad bind address {0:?}")]
    Addr(String),
    #[error("embedded broker: cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("embedded broker: cannot prepare {path}: {source}")]
    Files { path: String, source: std::io::Error },
    #[error("embedded broker: cannot start mosquitto ({source}); install it: apt-get install mosquitto (./x does)")]
    Spawn { source: std::io::Error },
    #[error("embedded broker: mosquitto_passwd failed for the tower's own user: {0}")]
    Passwd(String),
    #[error("embedded broker on {addr} did not start accepting within 5 s{log}")]
    NotAccepting { addr: SocketAddr, log: String },
}

/// The tower's own credentials on the embedded broker (with a password file).
#[derive(Debug, Clone)]
pub struct TowerUser {
    pub username: String,
    pub password: String,
}

struct Inner {
    addr: SocketAddr,
    conf: PathBuf,
    child: Option<Child>,
    starts: u64,
}

/// The running broker process. Cheap to clone; the last drop stops it.
#[derive(Clone)]
pub struct EmbeddedBroker {
    pub addr: SocketAddr,
    pub tower_user: Option<TowerUser>,
    inner: Arc<Mutex<Inner>>,
}

fn files_err(path: &Path) -> impl FnOnce(std::io::Error) -> BrokerError + '_ {
    move |source| BrokerError::Files { path: path.display().to_string(), source }
}

fn random_password() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for i in 0..4u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i ^ u64::from(std::process::id()));
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// Write mosquitto.conf (and, with a password file, the ACL and the
/// password file with the tower's user) into `dir`.
fn write_config(cfg: &BrokerConfig, addr: SocketAddr, tower: &str, dir: &Path) -> Result<(PathBuf, Option<TowerUser>), BrokerError> {
    std::fs::create_dir_all(dir).map_err(files_err(dir))?;
    let mut conf = format!(
        "# written by endotower at start; edits are overwritten\n\
         per_listener_settings false\n\
         persistence false\n\
         log_dest stderr\n\
         log_type error\n\
         log_type warning\n\
         max_packet_size {MAX_PACKET}\n\
         listener {} {}\n\
         max_connections {}\n",
        addr.port(),
        addr.ip(),
        cfg.max_connections
    );
    // Run as root, mosquitto would switch to its own user, and a credential
    // change clears the parent-death signal that ties it to the tower.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        conf.push_str("user root\n");
    }
    if let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) {
        conf.push_str(&format!("certfile {}\nkeyfile {}\n", cert.display(), key.display()));
    }
    let user = match &cfg.password_file {
        None => {
            conf.push_str("allow_anonymous true\n");
            None
        }
        Some(file) => {
            let passwd = dir.join("passwd");
            std::fs::copy(file, &passwd).map_err(files_err(file))?;
            let user = TowerUser { username: format!("endotower-{tower}"), password: random_password() };
            let out = Command::new("mosquitto_passwd")
                .arg("-b")
                .arg(&passwd)
                .arg(&user.username)
                .arg(&user.password)
                .output()
                .map_err(|e| BrokerError::Passwd(e.to_string()))?;
            if !out.status.success() {
                return Err(BrokerError::Passwd(String::from_utf8_lossy(&out.stderr).into_owned()));
            }
            let acl = dir.join("acl");
            std::fs::write(
                &acl,
                format!(
                    "# the tower: its own topic tree\n\
                     user {}\n\
                     topic readwrite endotower/v1/{tower}/#\n\n\
                     # every client: read the towers, publish only on its own command topic\n\
                     pattern read endotower/v1/#\n\
                     pattern write endotower/v1/+/cmd/%u\n",
                    user.username
                ),
            )
            .map_err(files_err(&acl))?;
            conf.push_str(&format!("allow_anonymous false\npassword_file {}\nacl_file {}\n", passwd.display(), acl.display()));
            Some(user)
        }
    };
    let path = dir.join("mosquitto.conf");
    let mut f = std::fs::File::create(&path).map_err(files_err(&path))?;
    f.write_all(conf.as_bytes()).map_err(files_err(&path))?;
    Ok((path, user))
}

fn spawn(conf: &Path) -> Result<Child, BrokerError> {
    let mut cmd = Command::new("mosquitto");
    cmd.arg("-c").arg(conf).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    // SAFETY: prctl in the child between fork and exec, async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| BrokerError::Spawn { source })?;
    if let Some(err) = child.stderr.take() {
        let pid = child.id();
        let _ = std::thread::Builder::new().name("mosquitto-log".into()).spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                tracing::warn!(pid, "mosquitto: {line}");
            }
        });
    }
    Ok(child)
}

fn wait_accepting(addr: SocketAddr, child: &mut Child) -> Result<(), BrokerError> {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(BrokerError::NotAccepting { addr, log: format!(": mosquitto exited ({status}); its log is above") });
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::NotAccepting { addr, log: String::new() })
}

impl EmbeddedBroker {
    /// Start mosquitto for tower `tower` per `cfg`, its files in `dir`, and
    /// wait until it accepts connections. Port 0 picks a free port.
    pub fn start(cfg: &BrokerConfig, tower: &str, dir: &Path) -> Result<EmbeddedBroker, BrokerError> {
        let mut addr: SocketAddr = cfg.bind.parse().map_err(|_| BrokerError::Addr(cfg.bind.clone()))?;
        // A clash is a clear error here, and port 0 gets a port.
        let probe = TcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr: cfg.bind.clone(), source })?;
        addr = probe.local_addr().map_err(|source| BrokerError::Bind { addr: cfg.bind.clone(), source })?;
        drop(probe);
        let (conf, tower_user) = write_config(cfg, addr, tower, dir)?;
        let mut child = spawn(&conf)?;
        if let Err(e) = wait_accepting(addr, &mut child) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        tracing::info!(%addr, pid = child.id(), auth = tower_user.is_some(), "embedded MQTT broker (mosquitto) listening");
        Ok(EmbeddedBroker { addr, tower_user, inner: Arc::new(Mutex::new(Inner { addr, conf, child: Some(child), starts: 1 })) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The process is gone (exited or killed).
    pub fn exited(&self) -> bool {
        match self.lock().child.as_mut() {
            None => true,
            Some(c) => !matches!(c.try_wait(), Ok(None)),
        }
    }

    /// The broker's process id (tests).
    pub fn pid(&self) -> Option<u32> {
        self.lock().child.as_ref().map(Child::id)
    }

    /// How often the process was started.
    pub fn starts(&self) -> u64 {
        self.lock().starts
    }

    /// Kill the process (whatever state it is in) and start a new one on the
    /// same port with the same configuration.
    pub fn restart(&self) -> Result<(), BrokerError> {
        let mut inner = self.lock();
        if let Some(mut c) = inner.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let mut child = spawn(&inner.conf)?;
        // The port may take a moment to be free again after the kill.
        let mut result = wait_accepting(inner.addr, &mut child);
        if result.is_err() && matches!(child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(300));
            child = spawn(&inner.conf)?;
            result = wait_accepting(inner.addr, &mut child);
        }
        inner.starts += 1;
        inner.child = Some(child);
        result
    }

    /// Stop the process (tower shutdown).
    pub fn stop(&self) {
        if let Some(mut c) = self.lock().child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

static PROBES: AtomicU64 = AtomicU64::new(0);

/// One health probe: an MQTT connect with a never-reused client id (and the
/// tower's credentials when the broker wants them), and its ConnAck.
pub async fn probe(addr: SocketAddr, user: Option<&TowerUser>, timeout: Duration) -> Result<(), String> {
    let id = format!("endotower-probe-{}-{}", std::process::id(), PROBES.fetch_add(1, Ordering::Relaxed));
    let mut o = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(5));
    if let Some(u) = user {
        o.set_credentials(u.username.clone(), u.password.clone());
    }
    let (client, mut el) = rumqttc::AsyncClient::new(o, 4);
    let r = tokio::time::timeout(timeout, async {
        loop {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err(format!("no ConnAck within {timeout:?}")));
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_millis(200), el.poll()).await;
    r
}

/// The supervised health check (and restarter) of the embedded broker.
pub struct BrokerHealth;

pub struct BrokerHealthArgs {
    pub broker: EmbeddedBroker,
    pub interval: Duration,
    pub events: EventBus,
    pub liveness: Liveness,
}

pub struct BrokerHealthState {
    a: BrokerHealthArgs,
    failures: u32,
}

pub enum BrokerHealthMsg {
    Probe,
}

/// A probe waits this long for its ConnAck.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl Actor for BrokerHealth {
    type Msg = BrokerHealthMsg;
    type State = BrokerHealthState;
    type Arguments = BrokerHealthArgs;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, a: BrokerHealthArgs) -> Result<Self::State, ActorProcessingErr> {
        a.liveness.beat();
        myself.send_interval(a.interval, || BrokerHealthMsg::Probe);
        Ok(BrokerHealthState { a, failures: 0 })
    }

    async fn handle(&self, _m: ActorRef<Self::Msg>, _msg: Self::Msg, s: &mut Self::State) -> Result<(), ActorProcessingErr> {
        s.a.liveness.beat();
        let b = &s.a.broker;
        let result = if b.exited() {
            Err("the mosquitto process is gone".to_string())
        } else {
            probe(b.addr, b.tower_user.as_ref(), PROBE_TIMEOUT).await
        };
        match result {
            Ok(()) => {
                s.failures = 0;
                s.a.events.clear("telemetry", "EMBEDDED_BROKER_DOWN", format!("embedded MQTT broker on {} accepts again", b.addr));
            }
            Err(e) => {
                s.failures += 1;
                tracing::warn!(addr = %b.addr, failures = s.failures, "embedded MQTT broker probe failed: {e}");
                if s.failures >= 2 || b.exited() {
                    s.a.events.raise(
                        "telemetry",
                        "EMBEDDED_BROKER_DOWN",
                        Severity::Medium,
                        format!(
                            "embedded MQTT broker on {} does not accept connections ({e}); restarting it; alarms stay journaled",
                            b.addr
                        ),
                    );
                    let broker = b.clone();
                    s.a.liveness.beat();
                    match tokio::task::spawn_blocking(move || broker.restart()).await {
                        Ok(Ok(())) => tracing::warn!(addr = %b.addr, starts = b.starts(), "embedded MQTT broker restarted"),
                        Ok(Err(e)) => tracing::error!(addr = %b.addr, "embedded MQTT broker restart failed: {e}"),
                        Err(e) => tracing::error!(addr = %b.addr, "embedded MQTT broker restart task failed: {e}"),
                    }
                    s.failures = 0;
                }
            }
        }
        s.a.liveness.beat();
        Ok(())
    }
}
