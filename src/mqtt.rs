//! Tower-side assembly of telemetry: the journal (registered as the event
//! bus's sink before any actor starts, so it sees every event), the embedded
//! broker when no external one is configured, and the endpoint the telemetry
//! actor connects to. Telemetry never stops the tower from starting: any
//! failure here is an alarm, and the tower runs without it.

use crate::embedded_broker::EmbeddedBroker;
use crate::tower_config::TowerConfig;
use endotower_actors::events::{EventBus, EventKind, Severity};
use endotower_actors::telemetry::actor::{Endpoint, TelemetryStats};
use endotower_actors::telemetry::config::BrokerKind;
use endotower_actors::telemetry::journal::{Journal, JournalSink};
use std::sync::Arc;
use std::time::Duration;

/// What the tree needs to run telemetry.
#[derive(Clone)]
pub struct TelemetryContext {
    pub journal: Journal,
    pub endpoint: Endpoint,
    pub stats: Arc<TelemetryStats>,
    /// The embedded broker and its probe interval, when embedded.
    pub embedded: Option<(EmbeddedBroker, Duration)>,
}

fn read_file(events: &EventBus, what: &str, f: &std::path::Path) -> Option<Vec<u8>> {
    match std::fs::read(f) {
        Ok(b) => Some(b),
        Err(e) => {
            events.raise(
                "telemetry",
                "TELEMETRY_UNAVAILABLE",
                Severity::Medium,
                format!("telemetry off: cannot read {what} {}: {e}", f.display()),
            );
            None
        }
    }
}

/// Open the journal, start the embedded broker if configured; `None` (with
/// an alarm) when telemetry cannot run.
pub fn setup(cfg: &TowerConfig, events: &EventBus) -> Option<TelemetryContext> {
    let t = &cfg.telemetry;
    if !t.enabled {
        return None;
    }
    let dir = t.journal.dir.join(&cfg.tower.id);
    let journal = match Journal::open(t.journal.clone(), dir.clone(), events.clone()) {
        Ok(j) => j,
        Err(e) => {
            events.raise("telemetry", "TELEMETRY_UNAVAILABLE", Severity::Medium, format!("telemetry off: cannot open the journal: {e}"));
            return None;
        }
    };
    events.add_sink(Arc::new(JournalSink(journal.clone())));
    let skipped = journal.stats().bad_records;
    if skipped > 0 {
        // Journaled like any event, so the hospital hears of it.
        events.event(
            EventKind::Degradation,
            Severity::Low,
            "telemetry",
            "JOURNAL_RECORDS_SKIPPED",
            format!("{skipped} unreadable journal record(s) skipped at start (in {})", dir.display()),
        );
    }
    let b = &t.broker;
    let (endpoint, embedded) = match b.kind {
        BrokerKind::Embedded => {
            let broker = match EmbeddedBroker::start(b, &cfg.tower.id, &dir.join("broker")) {
                Ok(broker) => broker,
                Err(e) => {
                    events.raise("telemetry", "TELEMETRY_UNAVAILABLE", Severity::Medium, format!("telemetry off: {e}"));
                    journal.close();
                    events.clear_sinks();
                    return None;
                }
            };
            let user = broker.tower_user.clone();
            let ep = Endpoint {
                host: broker.addr.ip().to_string(),
                port: broker.addr.port(),
                client_id: user.as_ref().map_or_else(|| t.client_id.clone(), |u| u.username.clone()),
                username: user.as_ref().map(|u| u.username.clone()),
                password: user.map(|u| u.password),
                // The loopback listener: TLS only when the broker has a certificate
                // (then the tower trusts that certificate).
                ca: match &b.cert_file {
                    Some(c) => Some(read_file(events, "telemetry.broker.cert_file", c)?),
                    None => None,
                },
                client_identity: None,
            };
            (ep, Some((broker, Duration::from_secs(b.probe_interval_s))))
        }
        BrokerKind::External => {
            let ca = match &b.ca_file {
                None => None,
                Some(f) => Some(read_file(events, "telemetry.broker.ca_file", f)?),
            };
            let client_identity = match &b.client_pkcs12 {
                None => None,
                Some(f) => {
                    Some((read_file(events, "telemetry.broker.client_pkcs12", f)?, b.client_pkcs12_password.clone().unwrap_or_default()))
                }
            };
            let ep = Endpoint {
                host: b.host.clone().unwrap_or_default(),
                port: b.port.unwrap_or(1883),
                client_id: t.client_id.clone(),
                username: b.username.clone(),
                password: b.password.clone(),
                ca,
                client_identity,
            };
            (ep, None)
        }
    };
    Some(TelemetryContext { journal, endpoint, stats: Arc::default(), embedded })
}
