//! The telemetry actor: one rumqttc client, supervised like every other
//! child. Its work runs in one task that owns the MQTT event loop and all
//! telemetry state, so nothing is shared but the journal:
//!
//! - on every ConnAck: subscribe to `cmd/+`, publish the birth, every
//!   device's retained state, then replay the journal from the last
//!   acknowledged record, in order, with at most `JOURNAL_WINDOW` records in
//!   flight (QoS 1; a PubAck moves the journal's acked position);
//! - samples at `sample_hz`, batches every `batch_ms` into the bounded outbox
//!   (flushed while connected, oldest dropped and counted while not);
//! - retained state per device on change, at most `state_max_hz`;
//! - AI result summaries;
//! - remote commands through [`super::remote`] and the command path.
//!
//! Any connection error drops the event loop (rumqttc would otherwise
//! re-send its own leftovers) and a fresh one is made after the link's
//! backoff; the journal replays whatever was not acknowledged.

use super::config::TelemetryConfig;
use super::journal::{now_ms, Journal, Record, Stream};
use super::link::{Link, MqttLinkState};
use super::outbox::Outbox;
use super::payloads::*;
use super::remote::{Decision, Remote};
use super::topics::Topics;
use crate::commands::{self, Applied, Command, CommandSource, Rejection, SubmitError};
use crate::config::LimitsConfig;
use crate::device_status::DeviceChannels;
use crate::events::{Event, EventBus, Severity};
use crate::setpoints::Setpoints;
use crate::supervisor::{ChildStatus, Liveness, SupervisorMsg};
use crate::video::ai_state::{AiChannels, AiStatus};
use crate::video::enhance::channels::{EnhanceChannels, EnhanceStatus};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rumqttc::{AsyncClient, ConnectionError, Event as MqttEvent, LastWill, MqttOptions, Outgoing, Packet, QoS};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Journal records in flight (sent, not yet acknowledged) at most. Kept well
/// under rumqttc's inflight limit so its packet ids never collide.
pub const JOURNAL_WINDOW: usize = 32;
const CLIENT_INFLIGHT: u16 = 100;
const REQUEST_CAPACITY: usize = 512;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    /// Add a per-connection suffix to the client id (embedded broker: a
    /// reconnect with the same id after a refused connect kills rumqttd).
    pub unique_client_id: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM CA certificate: TLS.
    pub ca: Option<Vec<u8>>,
}

/// Counters shared with the tower, tests and the benchmark.
#[derive(Debug, Default)]
pub struct TelemetryStats {
    pub link: Mutex<Option<MqttLinkState>>,
    pub connects: AtomicU64,
    pub births: AtomicU64,
    pub journal_published: AtomicU64,
    pub telemetry_published: AtomicU64,
    pub telemetry_dropped: AtomicU64,
    pub states_published: AtomicU64,
    pub commands: AtomicU64,
}

impl TelemetryStats {
    pub fn link_state(&self) -> Option<MqttLinkState> {
        *self.link.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct TelemetryArgs {
    pub cfg: TelemetryConfig,
    pub tower_id: String,
    pub endpoint: Endpoint,
    pub journal: Journal,
    pub events: EventBus,
    pub setpoints: Setpoints,
    pub channels: DeviceChannels,
    pub ai: Option<AiChannels>,
    /// The enhancement stage (with video).
    pub enhance: Option<EnhanceChannels>,
    pub limits: LimitsConfig,
    /// Registered name of the command path actor.
    pub commands: String,
    /// Registered names of the supervisors whose children count as health.
    pub supervisors: Vec<String>,
    pub stats: Arc<TelemetryStats>,
    pub liveness: Liveness,
}

pub enum TelemetryMsg {
    /// The worker task ended (it only does on a bug or a stop).
    Ended(String),
    /// Every 100 ms: the actor passes the worker's liveness on to its
    /// supervisor, so a hung worker or a hung actor is noticed alike.
    Tick,
}

/// A worker beat older than this stops the actor's own beats.
const WORKER_STALL: Duration = Duration::from_secs(1);

pub struct TelemetryState {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    liveness: Liveness,
    worker: Liveness,
}

pub struct TelemetryActor;

impl Actor for TelemetryActor {
    type Msg = TelemetryMsg;
    type State = TelemetryState;
    type Arguments = TelemetryArgs;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, mut args: TelemetryArgs) -> Result<Self::State, ActorProcessingErr> {
        let (stop, stop_rx) = watch::channel(false);
        let worker = Liveness::default();
        worker.beat();
        let liveness = std::mem::replace(&mut args.liveness, worker.clone());
        liveness.beat();
        myself.send_interval(Duration::from_millis(100), || TelemetryMsg::Tick);
        let task = tokio::spawn(async move {
            let result = tokio::spawn(run(args, stop_rx)).await;
            let why = match result {
                Ok(()) => "telemetry worker stopped".to_string(),
                Err(e) => format!("telemetry worker failed: {e}"),
            };
            let _ = myself.cast(TelemetryMsg::Ended(why));
        });
        Ok(TelemetryState { stop, task: Some(task), liveness, worker })
    }

    async fn post_stop(&self, _m: ActorRef<Self::Msg>, s: &mut Self::State) -> Result<(), ActorProcessingErr> {
        // A clean stop publishes the death certificate before disconnecting.
        let _ = s.stop.send(true);
        if let Some(mut t) = s.task.take() {
            if tokio::time::timeout(Duration::from_secs(2), &mut t).await.is_err() {
                t.abort();
            }
        }
        Ok(())
    }

    async fn handle(&self, _m: ActorRef<Self::Msg>, msg: Self::Msg, s: &mut Self::State) -> Result<(), ActorProcessingErr> {
        match msg {
            TelemetryMsg::Ended(why) => {
                s.task = None;
                if *s.stop.borrow() {
                    Ok(())
                } else {
                    Err(why.into())
                }
            }
            TelemetryMsg::Tick => {
                if s.worker.age() < WORKER_STALL {
                    s.liveness.beat();
                }
                Ok(())
            }
        }
    }
}

/// What a published packet was, in the order rumqttc reports them.
enum Sent {
    Journal(u64),
    Other,
}

/// One MQTT session (one event loop, one connection).
struct Session {
    client: AsyncClient,
    sent: VecDeque<Sent>,
    pkids: HashMap<u16, Option<u64>>,
    /// Last journal position handed to the client.
    cursor: u64,
    journal_inflight: usize,
    connected: bool,
    seq: u64,
    last_ack: Instant,
}

struct Core {
    cfg: TelemetryConfig,
    tower: String,
    topics: Topics,
    journal: Journal,
    events: EventBus,
    setpoints: Setpoints,
    channels: DeviceChannels,
    ai: Option<AiChannels>,
    enhance: Option<EnhanceChannels>,
    commands: String,
    supervisors: Vec<String>,
    stats: Arc<TelemetryStats>,
    remote: Remote,
    outbox: Outbox<(Vec<Sample>, u64)>,
    samples: Vec<Sample>,
    link: Link,
    bd_seq: u64,
    /// Last published state per device: (payload without counters, when).
    states: HashMap<String, (serde_json::Value, Instant)>,
    last_ai: Option<u64>,
}

fn mqtt_options(ep: &Endpoint, cfg: &TelemetryConfig, will: LastWill, attempt: u64) -> MqttOptions {
    let id = if ep.unique_client_id { format!("{}-{}-{attempt}", ep.client_id, std::process::id()) } else { ep.client_id.clone() };
    let mut o = MqttOptions::new(id, ep.host.clone(), ep.port);
    o.set_keep_alive(Duration::from_secs(cfg.keep_alive_s.max(1)));
    // A clean session: nothing of rumqttc's own survives a reconnect; the
    // journal is what replays.
    o.set_clean_session(true);
    o.set_last_will(will);
    o.set_inflight(CLIENT_INFLIGHT);
    o.set_max_packet_size(1 << 20, 1 << 20);
    if let (Some(u), p) = (&ep.username, &ep.password) {
        o.set_credentials(u.clone(), p.clone().unwrap_or_default());
    }
    if let Some(ca) = &ep.ca {
        o.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::SimpleNative { ca: ca.clone(), client_auth: None }));
    }
    o
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_else(|e| format!("{{\"error\":\"cannot serialise: {e}\"}}").into_bytes())
}

fn strip_counters(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("polls");
        o.remove("frame_counter");
    }
    v
}

impl Session {
    /// Publish; on success the packet is tracked so its PubAck can be matched.
    fn publish(&mut self, topic: String, qos: QoS, retain: bool, payload: Vec<u8>, what: Sent) -> bool {
        match self.client.try_publish(topic, qos, retain, payload) {
            Ok(()) => {
                self.sent.push_back(what);
                true
            }
            Err(e) => {
                tracing::debug!("mqtt publish not queued: {e}");
                false
            }
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

impl Core {
    fn metrics() -> Vec<Metric> {
        let m = |name: &str, datatype: &str, unit: &str, description: &str| Metric {
            name: name.into(),
            datatype: datatype.into(),
            unit: unit.into(),
            description: description.into(),
        };
        vec![
            m("pressure_mmhg", "float", "mmHg", "cavity pressure (insufflator)"),
            m("set_pressure_mmhg", "float", "mmHg", "set pressure P1"),
            m("flow_lpm", "float", "L/min", "CO2 flow"),
            m("set_flow_lpm", "float", "L/min", "set flow"),
            m("supply_bar", "float", "bar", "CO2 supply pressure"),
            m("light_set_pct", "float", "%", "light intensity setpoint"),
            m("light_output_pct", "float", "%", "light output"),
            m("led_current_ma", "float", "mA", "LED current"),
            m("led_temp_c", "float", "degC", "LED temperature"),
            m("tip_temp_c", "float", "degC", "light cable tip temperature"),
            m("camera_temp_c", "float", "degC", "camera sensor temperature"),
            m("health.links.<device>", "string", "", "device link state"),
            m("health.ai", "string", "", "AI state"),
            m("health.enhancement", "string", "", "enhancement stage state"),
            m("health.enhanced_fraction", "float", "", "share of frames shown enhanced while the stage was active"),
            m("health.safe_state", "bool", "", "tower safe state latched"),
            m("health.active_alarms", "int", "", "active alarms"),
            m("health.children_down", "string", "", "supervised children not running"),
            m("health.restarts", "int", "", "supervisor restarts since start"),
            m("health.journal_unacked", "int", "", "journal records awaiting PubAck"),
            m("health.journal_dropped", "int", "", "journal records lost from memory"),
            m("dropped_batches", "int", "", "telemetry batches dropped while offline"),
        ]
    }

    fn sample(&self) -> Sample {
        let i = self.channels.insufflator.borrow().clone();
        let l = self.channels.light.borrow().clone();
        let c = self.channels.camera.borrow().clone();
        Sample {
            at_ms: now_ms(),
            pressure_mmhg: i.pressure_mmhg,
            set_pressure_mmhg: self.setpoints.pressure_mmhg(),
            flow_lpm: i.flow_lpm,
            set_flow_lpm: self.setpoints.flow_lpm(),
            supply_bar: i.supply_bar,
            light_set_pct: self.setpoints.intensity_pct(),
            light_output_pct: l.output_pct,
            led_current_ma: l.current_ma,
            led_temp_c: l.led_temp_c,
            tip_temp_c: l.tip_temp_c,
            camera_temp_c: c.sensor_temp_c,
        }
    }

    fn ai_state(&self) -> String {
        match self.ai.as_ref().map(|a| a.status.borrow().clone()) {
            None => "disabled".into(),
            Some(AiStatus::Starting) => "starting".into(),
            Some(AiStatus::Online) => "online".into(),
            Some(AiStatus::Offline { .. }) => "offline".into(),
        }
    }

    fn enhancement(&self) -> (String, f32) {
        let Some(e) = self.enhance.as_ref() else { return ("disabled".into(), 0.0) };
        let state = match &*e.status.borrow() {
            EnhanceStatus::Off => "off",
            EnhanceStatus::Starting => "starting",
            EnhanceStatus::Active => "active",
            EnhanceStatus::Offline { .. } => "offline",
        };
        (state.into(), e.stats.enhanced_fraction())
    }

    async fn health(&self) -> Health {
        let mut links = BTreeMap::new();
        links.insert("insufflator".into(), self.channels.insufflator.borrow().link.to_string());
        links.insert("light".into(), self.channels.light.borrow().link.to_string());
        links.insert("camera".into(), self.channels.camera.borrow().link.to_string());
        links.insert("pedal".into(), self.channels.pedal.borrow().link.to_string());
        let (mut restarts, mut down) = (0, Vec::new());
        for name in &self.supervisors {
            let Some(cell) = ractor::registry::where_is(name.clone()) else { continue };
            let r: ActorRef<SupervisorMsg> = cell.into();
            let status: Vec<ChildStatus> = ractor::call_t!(r, SupervisorMsg::Status, 200).unwrap_or_default();
            for c in status {
                restarts += c.restarts;
                if !c.running {
                    down.push(c.name);
                }
            }
        }
        let j = self.journal.stats();
        let (enhancement, enhanced_fraction) = self.enhancement();
        Health {
            links,
            ai: self.ai_state(),
            enhancement,
            enhanced_fraction,
            safe_state: self.setpoints.safe_state(),
            active_alarms: self.events.active_alarms().len(),
            children_down: down,
            restarts,
            journal_unacked: j.unacked,
            journal_dropped: j.dropped,
        }
    }

    fn device_states(&self) -> Vec<(&'static str, serde_json::Value)> {
        let v = |x: Result<serde_json::Value, serde_json::Error>| x.unwrap_or(serde_json::Value::Null);
        let mut out = vec![
            ("insufflator", v(serde_json::to_value(&*self.channels.insufflator.borrow()))),
            ("light", v(serde_json::to_value(&*self.channels.light.borrow()))),
            ("camera", v(serde_json::to_value(&*self.channels.camera.borrow()))),
            ("pedal", v(serde_json::to_value(&*self.channels.pedal.borrow()))),
        ];
        if let Some(ai) = &self.ai {
            out.push(("ai", v(serde_json::to_value(&*ai.status.borrow()))));
        }
        let alarms: Vec<serde_json::Value> = self
            .events
            .active_alarms()
            .into_iter()
            .map(|(e, acked)| serde_json::json!({"key": e.key(), "severity": e.severity, "message": e.message, "acknowledged": acked}))
            .collect();
        out.push((
            "tower",
            serde_json::json!({
                "safe_state": self.setpoints.safe_state(),
                "set_pressure_mmhg": self.setpoints.pressure_mmhg(),
                "set_flow_lpm": self.setpoints.flow_lpm(),
                "intensity_pct": self.setpoints.intensity_pct(),
                "remote_control": self.remote.enabled(),
                "active_alarms": alarms,
            }),
        ));
        out
    }

    /// Publish every changed state (all of them with `force`), rate-limited per device.
    fn publish_states(&mut self, s: &mut Session, force: bool) {
        let min_gap = Duration::from_secs_f64(1.0 / self.cfg.state_max_hz);
        let now = Instant::now();
        for (device, state) in self.device_states() {
            let state = strip_counters(state);
            if !force {
                if let Some((last, at)) = self.states.get(device) {
                    if *last == state || now.duration_since(*at) < min_gap {
                        continue;
                    }
                }
            }
            let msg =
                StateMsg { v: SCHEMA_VERSION, tower: self.tower.clone(), seq: s.next_seq(), at_ms: now_ms(), device: device.into(), state };
            if s.publish(self.topics.state(device), QoS::AtLeastOnce, true, json(&msg), Sent::Other) {
                self.states.insert(device.to_string(), (msg.state, now));
                self.stats.states_published.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn birth(&self, s: &mut Session) {
        let t = &self.topics;
        let mut topics = vec![t.birth(), t.death(), t.telemetry(), t.events(), t.commands(), t.ai(), t.cmd_filter(), t.resp("+")];
        for d in ["insufflator", "light", "camera", "pedal", "ai", "tower"] {
            topics.push(t.state(d));
        }
        let j = self.journal.stats();
        let b = Birth {
            v: SCHEMA_VERSION,
            tower: self.tower.clone(),
            bd_seq: self.bd_seq,
            seq: 0,
            at_ms: now_ms(),
            software: env!("CARGO_PKG_VERSION").into(),
            remote_control: self.remote.enabled(),
            sample_hz: self.cfg.sample_hz,
            batch_ms: self.cfg.batch_ms,
            metrics: Self::metrics(),
            topics,
            replay_pending: j.unacked as u64,
        };
        if s.publish(self.topics.birth(), QoS::AtLeastOnce, true, json(&b), Sent::Other) {
            self.stats.births.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn death(&self, reason: &str) -> Vec<u8> {
        json(&Death { v: SCHEMA_VERSION, tower: self.tower.clone(), bd_seq: self.bd_seq, reason: reason.into() })
    }

    fn record_payload(&self, s: &mut Session, r: &Record) -> (String, Vec<u8>) {
        match r.stream {
            Stream::Event => {
                let msg = match serde_json::from_value::<Event>(r.body.clone()) {
                    Ok(e) => json(&EventMsg {
                        v: SCHEMA_VERSION,
                        tower: self.tower.clone(),
                        seq: s.next_seq(),
                        id: r.id.clone(),
                        n: r.n,
                        at_ms: e.at_ms,
                        category: Category::of(&e),
                        kind: e.kind,
                        severity: e.severity,
                        source: e.source,
                        code: e.code,
                        message: e.message,
                    }),
                    // A record from another version: publish it as it is, with its id.
                    Err(_) => json(&serde_json::json!({"v": SCHEMA_VERSION, "tower": self.tower, "id": r.id, "n": r.n, "record": r.body})),
                };
                (self.topics.events(), msg)
            }
            Stream::Command => {
                let msg = match serde_json::from_value::<CommandRecordBody>(r.body.clone()) {
                    Ok(b) => json(&CommandMsg {
                        v: SCHEMA_VERSION,
                        tower: self.tower.clone(),
                        seq: s.next_seq(),
                        id: r.id.clone(),
                        n: r.n,
                        at_ms: r.at_ms,
                        client: b.client,
                        command: b.command,
                        response: b.response,
                    }),
                    Err(_) => json(&serde_json::json!({"v": SCHEMA_VERSION, "tower": self.tower, "id": r.id, "n": r.n, "record": r.body})),
                };
                (self.topics.commands(), msg)
            }
        }
    }

    /// Hand the next journal records to the client, up to the window.
    fn pump_journal(&mut self, s: &mut Session) {
        while s.connected && s.journal_inflight < JOURNAL_WINDOW {
            let batch = self.journal.records_after(s.cursor, JOURNAL_WINDOW - s.journal_inflight);
            if batch.is_empty() {
                return;
            }
            for r in batch {
                let (topic, payload) = self.record_payload(s, &r);
                if !s.publish(topic, QoS::AtLeastOnce, false, payload, Sent::Journal(r.n)) {
                    return; // client queue full: retried on the next ack or tick
                }
                s.cursor = r.n;
                s.journal_inflight += 1;
                self.stats.journal_published.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    async fn make_batch(&mut self) {
        if self.samples.is_empty() {
            return;
        }
        let samples = std::mem::take(&mut self.samples);
        self.outbox.push((samples, now_ms()));
        self.stats.telemetry_dropped.store(self.outbox.dropped(), Ordering::Relaxed);
    }

    async fn flush_outbox(&mut self, s: &mut Session) {
        if !s.connected || self.outbox.is_empty() {
            return;
        }
        let health = self.health().await;
        while let Some((samples, at_ms)) = self.outbox.pop() {
            let b = TelemetryBatch {
                v: SCHEMA_VERSION,
                tower: self.tower.clone(),
                seq: s.seq + 1,
                at_ms,
                samples,
                health: health.clone(),
                dropped_batches: self.outbox.dropped(),
            };
            if s.publish(self.topics.telemetry(), QoS::AtMostOnce, false, json(&b), Sent::Other) {
                s.next_seq();
                self.stats.telemetry_published.fetch_add(1, Ordering::Relaxed);
            } else {
                self.outbox.unpop((b.samples, b.at_ms));
                break;
            }
        }
        self.stats.telemetry_dropped.store(self.outbox.dropped(), Ordering::Relaxed);
    }

    fn publish_ai(&mut self, s: &mut Session) {
        let Some(ai) = &self.ai else { return };
        let Some(r) = ai.result.borrow().clone() else { return };
        if self.last_ai == Some(r.frame_seq) {
            return;
        }
        self.last_ai = Some(r.frame_seq);
        if !s.connected {
            return;
        }
        let msg = AiMsg {
            v: SCHEMA_VERSION,
            tower: self.tower.clone(),
            seq: s.next_seq(),
            at_ms: now_ms(),
            frame_seq: r.frame_seq,
            reason: serde_json::to_value(r.reason).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
            findings: r.detections.iter().map(|d| AiFinding { class_name: d.class_name.clone(), score: d.score }).collect(),
            high_risk: r.high_risk,
        };
        s.publish(self.topics.ai(), QoS::AtMostOnce, false, json(&msg), Sent::Other);
    }

    async fn submit(&self, client: &str, command: Command) -> Result<Applied, String> {
        let source = CommandSource::Remote { client: client.to_string() };
        match commands::submit(&self.commands, source, command).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(rej)) => Err(rejection_text(&rej)),
            Err(SubmitError::NotRunning(_)) => Err("the command path is not running; try again".into()),
            Err(e @ SubmitError::NoAnswer(_)) => Err(e.to_string()),
        }
    }

    async fn on_command(&mut self, s: &mut Session, topic: &str, payload: &[u8]) {
        let Some(client) = self.topics.cmd_client(topic).map(str::to_string) else { return };
        self.stats.commands.fetch_add(1, Ordering::Relaxed);
        let handled = self.remote.handle(&client, payload, Instant::now());
        let base = Response {
            v: SCHEMA_VERSION,
            tower: self.tower.clone(),
            request_id: handled.request_id.clone(),
            status: Status::Rejected,
            reason: None,
            token: None,
            apply: None,
            expires_in_ms: None,
        };
        let response = match handled.decision {
            Decision::Reject(reason) => Response { reason: Some(reason), ..base },
            Decision::ConfirmRequired { token, apply, expires_in } => Response {
                status: Status::ConfirmRequired,
                reason: Some(format!(
                    "send {{\"command\":\"confirm\",\"token\":\"{token}\"}} within {} ms to apply",
                    expires_in.as_millis()
                )),
                apply: serde_json::to_value(&apply).ok(),
                token: Some(token),
                expires_in_ms: Some(expires_in.as_millis() as u64),
                ..base
            },
            Decision::Execute(cmd) => match self.submit(&client, cmd).await {
                Ok(a) => Response { status: Status::Accepted, reason: Some(a.description), ..base },
                Err(reason) => Response { reason: Some(reason), ..base },
            },
        };
        match response.status {
            Status::Rejected => tracing::warn!(client, reason = ?response.reason, "remote command rejected"),
            _ => tracing::info!(client, status = ?response.status, reason = ?response.reason, "remote command"),
        }
        // Journaled (and so published on `commands`, replayed) before the reply goes out.
        let body = CommandRecordBody { client: client.clone(), command: handled.raw, response: response.clone() };
        self.journal.append(Stream::Command, serde_json::to_value(&body).unwrap_or(serde_json::Value::Null));
        if s.connected {
            s.publish(self.topics.resp(&client), QoS::AtLeastOnce, false, json(&response), Sent::Other);
        }
    }

    fn on_connack(&mut self, s: &mut Session) {
        self.link.connected();
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        *self.stats.link.lock().unwrap_or_else(|p| p.into_inner()) = Some(MqttLinkState::Connected);
        s.connected = true;
        s.last_ack = Instant::now();
        // Subscriptions do not survive a clean session: every ConnAck.
        if let Err(e) = s.client.try_subscribe(self.topics.cmd_filter(), QoS::AtLeastOnce) {
            tracing::warn!("cannot subscribe to {}: {e}", self.topics.cmd_filter());
        }
        self.birth(s);
        self.publish_states(s, true);
        s.cursor = self.journal.acked();
        self.pump_journal(s);
        self.events.clear("telemetry", "MQTT_LINK_LOST", "MQTT broker connection back; replaying the journal");
    }

    fn on_puback(&mut self, s: &mut Session, pkid: u16) {
        s.last_ack = Instant::now();
        if let Some(Some(n)) = s.pkids.remove(&pkid) {
            s.journal_inflight = s.journal_inflight.saturating_sub(1);
            self.journal.ack(n);
        }
        if self.link.state() == MqttLinkState::Degraded {
            self.link.recovered("acknowledgements flowing again");
            *self.stats.link.lock().unwrap_or_else(|p| p.into_inner()) = Some(MqttLinkState::Connected);
        }
        self.pump_journal(s);
    }

    fn check_degraded(&mut self, s: &Session) {
        let overdue = Duration::from_secs(self.cfg.keep_alive_s * 2);
        if s.connected && s.journal_inflight > 0 && s.last_ack.elapsed() > overdue {
            self.link.degraded(&format!("no PubAck for {:?} with {} journal records in flight", s.last_ack.elapsed(), s.journal_inflight));
            *self.stats.link.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.link.state());
        }
    }
}

fn rejection_text(r: &Rejection) -> String {
    r.to_string()
}

enum SessionEnd {
    Stop,
    Lost(String),
}

async fn run(a: TelemetryArgs, mut stop: watch::Receiver<bool>) {
    let broker = format!("{}:{}", a.endpoint.host, a.endpoint.port);
    let mut core = Core {
        topics: Topics::new(&a.tower_id),
        tower: a.tower_id.clone(),
        journal: a.journal,
        events: a.events,
        setpoints: a.setpoints,
        channels: a.channels,
        ai: a.ai,
        enhance: a.enhance,
        commands: a.commands,
        supervisors: a.supervisors,
        stats: a.stats,
        remote: Remote::new(a.cfg.remote.clone(), a.limits),
        outbox: Outbox::new(a.cfg.outbox_capacity),
        samples: Vec::new(),
        link: Link::new(broker, Duration::from_millis(a.cfg.backoff_initial_ms), Duration::from_millis(a.cfg.backoff_max_ms)),
        bd_seq: 0,
        states: HashMap::new(),
        last_ai: None,
        cfg: a.cfg,
    };
    let liveness = a.liveness;
    let endpoint = a.endpoint;
    let mut sample_tick = tokio::time::interval(Duration::from_secs_f64(1.0 / core.cfg.sample_hz));
    let mut batch_tick = tokio::time::interval(Duration::from_millis(core.cfg.batch_ms));
    let mut state_tick = tokio::time::interval(Duration::from_secs_f64((1.0 / core.cfg.state_max_hz).min(1.0)));
    for t in [&mut sample_tick, &mut batch_tick, &mut state_tick] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    let mut ai_rx = core.ai.as_ref().map(|a| a.result.subscribe());
    let mut attempt = 0u64;
    loop {
        if *stop.borrow() {
            return;
        }
        attempt += 1;
        core.bd_seq += 1;
        let will = LastWill::new(core.topics.death(), core.death("connection_lost"), QoS::AtLeastOnce, true);
        let (client, mut el) = AsyncClient::new(mqtt_options(&endpoint, &core.cfg, will, attempt), REQUEST_CAPACITY);
        el.network_options.set_connection_timeout(5);
        core.link.connecting(if attempt == 1 { "starting" } else { "reconnecting after backoff" });
        *core.stats.link.lock().unwrap_or_else(|p| p.into_inner()) = Some(MqttLinkState::Connecting);
        let mut s = Session {
            client,
            sent: VecDeque::new(),
            pkids: HashMap::new(),
            cursor: 0,
            journal_inflight: 0,
            connected: false,
            seq: 0,
            last_ack: Instant::now(),
        };
        let end = loop {
            liveness.beat();
            tokio::select! {
                ev = el.poll() => match ev {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => core.on_connack(&mut s),
                    Ok(MqttEvent::Incoming(Packet::PubAck(a))) => core.on_puback(&mut s, a.pkid),
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => core.on_command(&mut s, &p.topic, &p.payload).await,
                    Ok(MqttEvent::Outgoing(Outgoing::Publish(pkid))) => {
                        let what = s.sent.pop_front();
                        if pkid != 0 {
                            s.pkids.insert(pkid, match what { Some(Sent::Journal(n)) => Some(n), _ => None });
                        }
                    }
                    Ok(MqttEvent::Outgoing(Outgoing::AwaitAck(pkid))) => {
                        break SessionEnd::Lost(format!("packet id {pkid} collided (broker acks out of order)"));
                    }
                    Ok(_) => {}
                    Err(e) => break SessionEnd::Lost(describe(&e)),
                },
                _ = core.journal.wait_ready(), if s.connected => core.pump_journal(&mut s),
                _ = sample_tick.tick() => {
                    let sample = core.sample();
                    core.samples.push(sample);
                }
                _ = batch_tick.tick() => {
                    core.make_batch().await;
                    core.flush_outbox(&mut s).await;
                }
                _ = state_tick.tick() => {
                    if s.connected {
                        core.publish_states(&mut s, false);
                        core.pump_journal(&mut s);
                        core.check_degraded(&s);
                    }
                }
                r = async { match ai_rx.as_mut() { Some(rx) => rx.changed().await, None => std::future::pending().await } } => {
                    if r.is_ok() {
                        core.publish_ai(&mut s);
                    } else {
                        ai_rx = None;
                    }
                }
                _ = stop.changed() => break SessionEnd::Stop,
            }
        };
        match end {
            SessionEnd::Stop => {
                if s.connected {
                    let death = core.death("shutdown");
                    let _ = s.client.try_publish(core.topics.death(), QoS::AtLeastOnce, true, death);
                    let _ = s.client.try_disconnect();
                    // Let the death and the disconnect go out (bounded).
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        while let Ok(ev) = el.poll().await {
                            if matches!(ev, MqttEvent::Outgoing(Outgoing::Disconnect)) {
                                break;
                            }
                        }
                    })
                    .await;
                }
                tracing::info!("telemetry stopped");
                return;
            }
            SessionEnd::Lost(reason) => {
                let was_connected = s.connected;
                let wait = core.link.lost(&reason);
                *core.stats.link.lock().unwrap_or_else(|p| p.into_inner()) = Some(MqttLinkState::Lost);
                drop(el);
                if was_connected {
                    core.events.raise(
                        "telemetry",
                        "MQTT_LINK_LOST",
                        Severity::Low,
                        format!("MQTT broker connection lost ({reason}); alarms and events are journaled and will be replayed"),
                    );
                }
                // Back off, still sampling (telemetry goes to the outbox).
                let until = tokio::time::sleep(wait);
                tokio::pin!(until);
                loop {
                    liveness.beat();
                    tokio::select! {
                        _ = &mut until => break,
                        _ = sample_tick.tick() => {
                            let sample = core.sample();
                            core.samples.push(sample);
                        }
                        _ = batch_tick.tick() => core.make_batch().await,
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }
}

fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => format!("broker refused the connection: {code:?}"),
        other => other.to_string(),
    }
}
