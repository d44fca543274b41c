//! The embedded MQTT broker (rumqttd), so `endotower run` needs nothing else,
//! and its health check.
//!
//! rumqttd facts this is built around (checked against rumqttd 0.20):
//! - `Broker::start()` blocks: the broker gets its own thread, and it has no
//!   shutdown API, so it lives as long as the process.
//! - Zero segment sizes make its router thread panic: the limits below are
//!   all non-zero and generous.
//! - A connection the router refuses (over `max_connections`, or a client
//!   gone before its ConnAck) leaves a stale will handler; when that client
//!   id connects again, the connection task panics holding a mutex and every
//!   later connect fails on the poisoned lock. The listener stays up, so the
//!   port cannot be rebound in-process. Guards: a high connection limit; the
//!   tower's own client uses a fresh client id per connection; and a health
//!   probe (MQTT connect + ConnAck with a unique id) that raises
//!   `EMBEDDED_BROKER_DOWN` when the broker stops accepting. Recovery then
//!   needs a process restart; production should run mosquitto (see
//!   docs/mqtt.md).

use endotower_actors::events::{EventBus, Severity};
use endotower_actors::supervisor::Liveness;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("embedded broker: bad bind address {0:?}")]
    Addr(String),
    #[error("embedded broker: cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("embedded broker: cannot start its thread: {0}")]
    Thread(std::io::Error),
    #[error("embedded broker on {0} did not start accepting within 5 s")]
    NotAccepting(SocketAddr),
}

/// A running embedded broker.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedBroker {
    pub addr: SocketAddr,
}

fn config(addr: SocketAddr, max_connections: usize) -> rumqttd::Config {
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 5000,
        max_payload_size: 2 << 20,
        max_inflight_count: 200,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings { name: "v4-loopback".into(), listen: addr, tls: None, next_connection_delay_ms: 1, connections };
    rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections,
            max_outgoing_packet_count: 200,
            max_segment_size: 1 << 20,
            max_segment_count: 10,
            ..Default::default()
        },
        v4: Some(HashMap::from([("v4".to_string(), server)])),
        ..Default::default()
    }
}

impl EmbeddedBroker {
    /// Start rumqttd on `bind` (port 0: a free port) on its own thread and
    /// wait until it accepts connections.
    pub fn start(bind: &str, max_connections: usize) -> Result<EmbeddedBroker, BrokerError> {
        let mut addr: SocketAddr = bind.parse().map_err(|_| BrokerError::Addr(bind.to_string()))?;
        // Check the address is free (and pick the port for port 0), so a
        // clash is a clear error here rather than a log line in rumqttd.
        let probe = TcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr: bind.to_string(), source })?;
        addr = probe.local_addr().map_err(|source| BrokerError::Bind { addr: bind.to_string(), source })?;
        drop(probe);
        let cfg = config(addr, max_connections);
        std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                let mut broker = rumqttd::Broker::new(cfg);
                match broker.start() {
                    Ok(()) => tracing::error!(%addr, "embedded MQTT broker stopped"),
                    Err(e) => tracing::error!(%addr, "embedded MQTT broker failed: {e}"),
                }
            })
            .map_err(BrokerError::Thread)?;
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                tracing::info!(%addr, max_connections, "embedded MQTT broker (rumqttd) listening");
                return Ok(EmbeddedBroker { addr });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(BrokerError::NotAccepting(addr))
    }
}

static PROBES: AtomicU64 = AtomicU64::new(0);

/// One health probe: an MQTT connect with a never-reused client id, and its ConnAck.
pub async fn probe(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let id = format!("endotower-probe-{}-{}", std::process::id(), PROBES.fetch_add(1, Ordering::Relaxed));
    let mut o = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(5));
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

/// The supervised health check of the embedded broker.
pub struct BrokerHealth;

pub struct BrokerHealthArgs {
    pub addr: SocketAddr,
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
        match probe(s.a.addr, Duration::from_secs(2)).await {
            Ok(()) => {
                s.failures = 0;
                s.a.events.clear("telemetry", "EMBEDDED_BROKER_DOWN", format!("embedded MQTT broker on {} accepts again", s.a.addr));
            }
            Err(e) => {
                s.failures += 1;
                tracing::warn!(addr = %s.a.addr, failures = s.failures, "embedded MQTT broker probe failed: {e}");
                if s.failures >= 2 {
                    s.a.events.raise(
                        "telemetry",
                        "EMBEDDED_BROKER_DOWN",
                        Severity::Medium,
                        format!(
                            "embedded MQTT broker on {} does not accept connections ({e}); alarms stay journaled; restart the tower \
                             process or use an external broker",
                            s.a.addr
                        ),
                    );
                }
            }
        }
        s.a.liveness.beat();
        Ok(())
    }
}
