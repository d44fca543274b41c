//! A mosquitto broker process for scenarios: on a free loopback port, stopped
//! and restarted on the same port by the timeline, killed when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot find a free loopback port: {0}")]
    Port(std::io::Error),
    #[error("cannot write {path}: {source}")]
    Conf { path: String, source: std::io::Error },
    #[error("cannot start {MOSQUITTO} (apt install mosquitto): {0}")]
    Spawn(std::io::Error),
    #[error("mosquitto did not listen on {0} within 10 s")]
    NotListening(SocketAddr),
}

pub struct Mosquitto {
    port: u16,
    conf: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// Start on a free port; its config goes in `dir`.
    pub fn start(dir: &Path) -> Result<Mosquitto, BrokerError> {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(BrokerError::Port)?.port();
        let conf = dir.join("mosquitto.conf");
        // Sessions are saved on every change, so the observer's persistent
        // session (and what is queued for it) survives a kill -9: after a
        // restart the broker delivers whatever the tower replays, even
        // before the observer is back. (`user root`: as root, mosquitto would
        // otherwise switch to its own user, which cannot write `dir`.)
        let store = format!("{}/", dir.display());
        let _ = std::fs::remove_file(dir.join("mosquitto.db")); // a previous run's sessions
        let text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nuser root\npersistence true\npersistence_location {store}\nautosave_on_changes true\nautosave_interval 1\nlog_dest none\nmax_queued_messages 100000\n"
        );
        std::fs::write(&conf, text).map_err(|source| BrokerError::Conf { path: conf.display().to_string(), source })?;
        let mut m = Mosquitto { port, conf, child: None };
        m.up()?;
        Ok(m)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// (Re)start on the same port and wait until it listens.
    pub fn up(&mut self) -> Result<(), BrokerError> {
        if self.child.is_some() {
            return Ok(());
        }
        let child = Command::new(MOSQUITTO).arg("-c").arg(&self.conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        self.child = Some(child.map_err(BrokerError::Spawn)?);
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&self.addr(), Duration::from_millis(100)).is_err() {
            if Instant::now() > end {
                return Err(BrokerError::NotListening(self.addr()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Kill it (as a crash would) and wait until the port is closed.
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&self.addr(), Duration::from_millis(100)).is_ok() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.down();
    }
}
