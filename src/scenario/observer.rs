//! The scenario's view from the hospital side: an MQTT client that records
//! the tower's events and command replies, reconnecting every 50 ms while
//! the broker is away, and publishes remote commands.
//!
//! Remote control needs an authenticating broker, so a scenario with remote
//! commands on the embedded broker gets a password file ([`password_file`])
//! with one user per remote client and one for the observer; each command
//! is then published by its own client, logged in as that user, as a real
//! hospital client would.

use rumqttc::{AsyncClient, ConnectReturnCode, MqttOptions, Packet, QoS};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The observer's own user in a scenario's password file.
pub const OBSERVER_USER: &str = "scenario-observer";

/// A scenario user's password (test credentials, written only to the run's
/// output directory).
fn password(user: &str) -> String {
    format!("scenario-{user}")
}

/// Write a `mosquitto_passwd` file for `users` (and the observer) into `dir`.
pub fn password_file(dir: &Path, users: &[String]) -> Result<PathBuf, String> {
    let file = dir.join("scenario-passwd");
    std::fs::write(&file, "").map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    for u in users.iter().map(String::as_str).chain([OBSERVER_USER]) {
        let out = Command::new("mosquitto_passwd")
            .arg("-b")
            .arg(&file)
            .arg(u)
            .arg(password(u))
            .output()
            .map_err(|e| format!("mosquitto_passwd (apt mosquitto): {e}"))?;
        if !out.status.success() {
            return Err(format!("mosquitto_passwd for {u:?}: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
    }
    Ok(file)
}

/// Connection options for `id`, logged in as `user` when the broker
/// authenticates.
fn options(id: String, addr: SocketAddr, user: Option<&str>) -> MqttOptions {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(5));
    o.set_max_packet_size(1 << 20, 1 << 20);
    if let Some(u) = user {
        o.set_credentials(u, password(u));
    }
    o
}

/// What arrived, in arrival order.
#[derive(Debug, Default)]
pub struct Received {
    /// Bodies on `<root>/events`.
    pub events: Vec<Value>,
    /// Bodies on `<root>/resp/+`.
    pub replies: Vec<Value>,
    pub connects: u64,
}

pub struct Observer {
    client: AsyncClient,
    addr: SocketAddr,
    /// Whether the broker authenticates (commands then come from their own
    /// client, logged in as the command's client name).
    auth: bool,
    root: String,
    received: Arc<Mutex<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    /// Connect to `addr` and subscribe to the events and replies of `root`
    /// (`endotower/v1/<tower id>`) on every (re)connect; with `auth`, log in
    /// as [`OBSERVER_USER`] (see [`password_file`]).
    pub fn start(addr: SocketAddr, root: &str, auth: bool) -> Observer {
        let mut o = options(format!("scenario-observer-{}", std::process::id()), addr, auth.then_some(OBSERVER_USER));
        // A persistent session: the broker queues what arrives while we reconnect.
        o.set_clean_session(false);
        let (client, mut el) = AsyncClient::new(o, 1024);
        let received = Arc::new(Mutex::new(Received::default()));
        let filters = [format!("{root}/events"), format!("{root}/resp/+")];
        let (c, rec, root2) = (client.clone(), received.clone(), root.to_string());
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(rumqttc::Event::Incoming(Packet::ConnAck(_))) => {
                        rec.lock().unwrap_or_else(|p| p.into_inner()).connects += 1;
                        tracing::info!("scenario observer connected to the broker");
                        for f in &filters {
                            let _ = c.try_subscribe(f.clone(), QoS::AtLeastOnce);
                        }
                    }
                    Ok(rumqttc::Event::Incoming(Packet::Publish(p))) => {
                        let body = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                        let mut r = rec.lock().unwrap_or_else(|p| p.into_inner());
                        if p.topic == format!("{root2}/events") {
                            r.events.push(body);
                        } else {
                            r.replies.push(body);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!("scenario observer: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                }
            }
        });
        Observer { client, addr, auth, root: root.to_string(), received, task }
    }

    /// Publish `payload` on `<root>/cmd/<client>`: through the observer's
    /// own connection on an anonymous broker, otherwise from a connection of
    /// its own logged in as `client`, waiting (at most 5 s) for the broker's
    /// acknowledgement.
    pub async fn command(&self, client: &str, payload: &str) -> Result<(), String> {
        let topic = format!("{}/cmd/{client}", self.root);
        if !self.auth {
            return self.client.publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec()).await.map_err(|e| e.to_string());
        }
        let o = options(format!("scenario-{client}-{}", std::process::id()), self.addr, Some(client));
        let (c, mut el) = AsyncClient::new(o, 8);
        c.publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec()).await.map_err(|e| e.to_string())?;
        let acked = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match el.poll().await {
                    Ok(rumqttc::Event::Incoming(Packet::ConnAck(a))) if a.code != ConnectReturnCode::Success => {
                        return Err(format!("the broker refused {client:?}: {:?}", a.code));
                    }
                    Ok(rumqttc::Event::Incoming(Packet::PubAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(format!("{client:?}: {e}")),
                }
            }
        })
        .await
        .unwrap_or_else(|_| Err(format!("{client:?}: no acknowledgement within 5 s")));
        let _ = c.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(500), async { while el.poll().await.is_ok() {} }).await;
        acked
    }

    pub fn received(&self) -> std::sync::MutexGuard<'_, Received> {
        self.received.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
