//! Alarms and events: one bus every part of the tower publishes to.
//!
//! Alarms are edge-triggered: `raise` publishes only when the alarm is not
//! already active, `clear` only when it is. The active set is kept here so the
//! display and telemetry can show it at any time. Every publication is logged.
//! Subscribers get a broadcast stream, which may lag and lose events under
//! load; a component that must see every event (the telemetry journal)
//! registers an [`EventSink`] instead, called synchronously inside every
//! publication, before the broadcast.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// IEC 60601-1-8 alarm priority, plus plain information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    AlarmRaised,
    AlarmCleared,
    AlarmAcknowledged,
    SupervisorRestart,
    Meltdown,
    Interlock,
    Command,
    Degradation,
    /// A still was archived (pedal press).
    Capture,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Event {
    pub seq: u64,
    /// Wall-clock time, ms since the Unix epoch.
    pub at_ms: u64,
    pub kind: EventKind,
    pub severity: Severity,
    /// Who raised it: `insufflator`, `safety`, `supervisor/devices`, ...
    pub source: String,
    /// Stable code: a hazard id (`HZ-001`) or an alarm name (`SUPPLY_LOW`).
    pub code: String,
    pub message: String,
}

impl Event {
    /// Key of an alarm in the active set.
    pub fn key(&self) -> String {
        format!("{}/{}", self.source, self.code)
    }
}

#[derive(Default)]
struct Active {
    alarms: BTreeMap<String, (Event, bool)>,
}

/// A consumer that must see every event, in publication order per thread.
/// Called synchronously inside [`EventBus`] publications, from whatever
/// thread publishes (device actors, the safety island's alarm forwarder):
/// it must not block (no I/O), only hand the event on.
pub trait EventSink: Send + Sync {
    fn record(&self, event: &Event);
}

/// The tower's event bus. Cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
    active: Arc<Mutex<Active>>,
    seq: Arc<AtomicU64>,
    sinks: Arc<std::sync::RwLock<Vec<Arc<dyn EventSink>>>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        Self { tx, active: Arc::default(), seq: Arc::default(), sinks: Arc::default() }
    }

    /// Register a sink that sees every later event before any subscriber.
    pub fn add_sink(&self, sink: Arc<dyn EventSink>) {
        self.sinks.write().unwrap_or_else(|p| p.into_inner()).push(sink);
    }

    /// Remove every sink (tower shutdown).
    pub fn clear_sinks(&self) {
        self.sinks.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    fn make(&self, kind: EventKind, severity: Severity, source: &str, code: &str, message: String) -> Event {
        Event {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            at_ms: crate::telemetry::journal::now_ms(),
            kind,
            severity,
            source: source.to_string(),
            code: code.to_string(),
            message,
        }
    }

    fn emit(&self, e: Event) -> Event {
        match e.severity {
            Severity::High => {
                tracing::error!(source = %e.source, code = %e.code, kind = ?e.kind, "{}", e.message)
            }
            Severity::Medium | Severity::Low => {
                tracing::warn!(source = %e.source, code = %e.code, kind = ?e.kind, "{}", e.message)
            }
            Severity::Info => {
                tracing::info!(source = %e.source, code = %e.code, kind = ?e.kind, "{}", e.message)
            }
        }
        for sink in self.sinks.read().unwrap_or_else(|p| p.into_inner()).iter() {
            sink.record(&e);
        }
        // No receiver is not an error: the event is still logged and, for
        // alarms, held in the active set.
        let _ = self.tx.send(e.clone());
        e
    }

    /// Publish a one-off event.
    pub fn event(&self, kind: EventKind, severity: Severity, source: &str, code: &str, message: impl Into<String>) -> Event {
        let e = self.make(kind, severity, source, code, message.into());
        self.emit(e)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Active> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (single insert/remove), so a poisoned lock is still usable.
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Raise an alarm; returns the event if it was not already active.
    pub fn raise(&self, source: &str, code: &str, severity: Severity, message: impl Into<String>) -> Option<Event> {
        let e = self.make(EventKind::AlarmRaised, severity, source, code, message.into());
        {
            let mut active = self.lock();
            if active.alarms.contains_key(&e.key()) {
                return None;
            }
            active.alarms.insert(e.key(), (e.clone(), false));
        }
        Some(self.emit(e))
    }

    /// Clear an alarm; returns the event if it was active.
    pub fn clear(&self, source: &str, code: &str, message: impl Into<String>) -> Option<Event> {
        let key = format!("{source}/{code}");
        self.lock().alarms.remove(&key)?;
        let e = self.make(EventKind::AlarmCleared, Severity::Info, source, code, message.into());
        Some(self.emit(e))
    }

    /// Acknowledge an active alarm by key (`source/code`).
    pub fn acknowledge(&self, key: &str) -> Option<Event> {
        let (source, code) = {
            let mut active = self.lock();
            let (e, acked) = active.alarms.get_mut(key)?;
            if *acked {
                return None;
            }
            *acked = true;
            (e.source.clone(), e.code.clone())
        };
        Some(self.event(EventKind::AlarmAcknowledged, Severity::Info, &source, &code, format!("alarm {key} acknowledged")))
    }

    /// Active alarms, highest severity first, with their acknowledged flag.
    pub fn active_alarms(&self) -> Vec<(Event, bool)> {
        let mut v: Vec<_> = self.lock().alarms.values().cloned().collect();
        v.sort_by(|a, b| b.0.severity.cmp(&a.0.severity).then(a.0.seq.cmp(&b.0.seq)));
        v
    }

    pub fn is_active(&self, source: &str, code: &str) -> bool {
        self.lock().alarms.contains_key(&format!("{source}/{code}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_are_edge_triggered() {
        let bus = EventBus::new(16);
        let mut rx = bus.subscribe();
        assert!(bus.raise("insufflator", "SUPPLY_LOW", Severity::Medium, "low").is_some());
        assert!(bus.raise("insufflator", "SUPPLY_LOW", Severity::Medium, "low").is_none());
        assert!(bus.is_active("insufflator", "SUPPLY_LOW"));
        assert!(bus.clear("insufflator", "SUPPLY_LOW", "ok").is_some());
        assert!(bus.clear("insufflator", "SUPPLY_LOW", "ok").is_none());
        assert_eq!(rx.try_recv().unwrap().kind, EventKind::AlarmRaised);
        assert_eq!(rx.try_recv().unwrap().kind, EventKind::AlarmCleared);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_sink_sees_every_event_even_when_the_broadcast_lags() {
        struct Count(Mutex<Vec<u64>>);
        impl EventSink for Count {
            fn record(&self, e: &Event) {
                self.0.lock().unwrap().push(e.seq);
            }
        }
        let bus = EventBus::new(16);
        let mut rx = bus.subscribe();
        let sink = Arc::new(Count(Mutex::new(Vec::new())));
        bus.add_sink(sink.clone());
        for i in 0..100 {
            bus.event(EventKind::Capture, Severity::Info, "archive", "CAPTURED", format!("{i}"));
        }
        assert_eq!(*sink.0.lock().unwrap(), (1..=100).collect::<Vec<u64>>());
        assert!(matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Lagged(_))));
    }

    #[test]
    fn active_alarms_sort_high_first_and_acknowledge_once() {
        let bus = EventBus::new(16);
        bus.raise("light", "A", Severity::Low, "a");
        bus.raise("safety", "HZ-001", Severity::High, "b");
        let active = bus.active_alarms();
        assert_eq!(active[0].0.code, "HZ-001");
        assert!(bus.acknowledge("safety/HZ-001").is_some());
        assert!(bus.acknowledge("safety/HZ-001").is_none());
        assert!(bus.active_alarms()[0].1);
    }
}
