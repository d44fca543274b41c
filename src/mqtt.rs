//! Tower-side assembly of telemetry: the journal (registered as the event
//! bus's sink before any actor starts, so it sees every event), the embedded
//! broker when no external one is configured, and the endpoint the telemetry
//! actor connects to. Telemetry never stops the tower from starting: any
//! failure here is an alarm, and the tower runs without it.

use crate::embedded_broker::EmbeddedBroker;
use crate::tower_config::TowerConfig;
use endotower_actors::events::{EventBus, Severity};
use endotower_actors::telemetry::actor::{Endpoint, TelemetryStats};
use endotower_actors::telemetry::config::BrokerConfig;
use endotower_actors::telemetry::journal::{Journal, JournalSink};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the tree needs to run telemetry.
#[derive(Clone)]
pub struct TelemetryContext {
    pub journal: Journal,
    pub endpoint: Endpoint,
    pub stats: Arc<TelemetryStats>,
    /// The embedded broker's address and probe interval, when embedded.
    pub embedded: Option<(SocketAddr, Duration)>,
}

/// Open the journal, start the embedded broker if configured; `None` (with
/// an alarm) when telemetry cannot run.
pub fn setup(cfg: &TowerConfig, events: &EventBus) -> Option<TelemetryContext> {
    let t = &cfg.telemetry;
    if !t.enabled {
        return None;
    }
    let dir = t.journal.dir.join(&cfg.tower.id);
    let journal = match Journal::open(t.journal.clone(), dir, events.clone()) {
        Ok(j) => j,
        Err(e) => {
            events.raise("telemetry", "TELEMETRY_UNAVAILABLE", Severity::Medium, format!("telemetry off: cannot open the journal: {e}"));
            return None;
        }
    };
    events.add_sink(Arc::new(JournalSink(journal.clone())));
    let (endpoint, embedded) = match &t.broker {
        BrokerConfig::Embedded { bind, max_connections, probe_interval_s } => {
            let addr = match EmbeddedBroker::start(bind, *max_connections) {
                Ok(b) => b.addr,
                Err(e) => {
                    // The client keeps trying the configured address.
                    events.raise("telemetry", "EMBEDDED_BROKER_DOWN", Severity::Medium, format!("{e}"));
                    match bind.parse::<SocketAddr>() {
                        Ok(a) => a,
                        Err(_) => return None,
                    }
                }
            };
            let ep = Endpoint {
                host: addr.ip().to_string(),
                port: addr.port(),
                client_id: t.client_id.clone(),
                unique_client_id: true,
                username: None,
                password: None,
                ca: None,
            };
            (ep, Some((addr, Duration::from_secs(*probe_interval_s))))
        }
        BrokerConfig::External { host, port, username, password, ca_file } => {
            let ca = match ca_file {
                None => None,
                Some(f) => match std::fs::read(f) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        events.raise(
                            "telemetry",
                            "TELEMETRY_UNAVAILABLE",
                            Severity::Medium,
                            format!("telemetry off: cannot read telemetry.broker.ca_file {}: {e}", f.display()),
                        );
                        return None;
                    }
                },
            };
            let ep = Endpoint {
                host: host.clone(),
                port: *port,
                client_id: t.client_id.clone(),
                unique_client_id: false,
                username: username.clone(),
                password: password.clone(),
                ca,
            };
            (ep, None)
        }
    };
    Some(TelemetryContext { journal, endpoint, stats: Arc::default(), embedded })
}
