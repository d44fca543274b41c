//! The scenario's view from the hospital side: an MQTT client that records
//! the tower's events and command replies, reconnecting every 50 ms while
//! the broker is away, and publishes remote commands.

use rumqttc::{AsyncClient, MqttOptions, Packet, QoS};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    root: String,
    received: Arc<Mutex<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    /// Connect to `addr` and subscribe to the events and replies of `root`
    /// (`endotower/v1/<tower id>`) on every (re)connect.
    pub fn start(addr: SocketAddr, root: &str) -> Observer {
        let mut o = MqttOptions::new(format!("scenario-observer-{}", std::process::id()), addr.ip().to_string(), addr.port());
        o.set_keep_alive(Duration::from_secs(5));
        // A persistent session: the broker queues what arrives while we reconnect.
        o.set_clean_session(false);
        o.set_max_packet_size(1 << 20, 1 << 20);
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
        Observer { client, root: root.to_string(), received, task }
    }

    /// Publish `payload` on `<root>/cmd/<client>`.
    pub async fn command(&self, client: &str, payload: &str) -> Result<(), rumqttc::ClientError> {
        self.client.publish(format!("{}/cmd/{client}", self.root), QoS::AtLeastOnce, false, payload.as_bytes().to_vec()).await
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
