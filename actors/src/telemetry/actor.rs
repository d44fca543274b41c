//! The telemetry actor: one MQTT client, supervised like every other child.
//! Its work runs in one task that owns all telemetry state, so nothing is
//! shared but the journal; the connection's event loop is polled by a task
//! of its own ([`super::session`]), which nothing cancels.
//!
//! - on every ConnAck: the session is counted (`bd_seq`, persisted), the
//!   subscription to `cmd/+` made, the birth and every device's retained
//!   state published, then the journal replayed from the last acknowledged
//!   record ([`super::pump`]);
//! - samples at `sample_hz`, batches every `batch_ms` into the bounded outbox
//!   (flushed while connected, oldest dropped and counted while not), with
//!   the health summary ([`super::health`]);
//! - retained state per device on change, at most `state_max_hz`;
//! - AI result summaries, at most `ai_max_hz`;
//! - remote commands ([`super::inbound`]);
//! - a clean stop publishes the shutdown death and disconnects before the
//!   task ends, so the broker keeps "shutdown", not the will.
//!
//! Any connection error drops the session and a fresh one is made after the
//! link's backoff; the journal replays whatever was not acknowledged.

use super::bd_seq::BdSeq;
use super::config::TelemetryConfig;
use super::inbound::Inbound;
use super::journal::{now_ms, Journal};
use super::link::{Link, MqttLinkState};
use super::outbox::Outbox;
use super::payloads::*;
use super::remote::Remote;
pub use super::session::Endpoint;
use super::session::{Sent, Session};
use super::topics::Topics;
use crate::config::LimitsConfig;
use crate::device_status::DeviceChannels;
use crate::events::{EventBus, Severity};
use crate::setpoints::Setpoints;
use crate::supervisor::Liveness;
use crate::video::ai_state::AiChannels;
use crate::video::enhance::channels::EnhanceChannels;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rumqttc::{Event as MqttEvent, LastWill, Outgoing, Packet, QoS};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Journal records in flight (sent, not yet acknowledged) at most. Kept well
/// under rumqttc's inflight limit so its packet ids never collide.
pub const JOURNAL_WINDOW: usize = 32;
/// How long a clean stop waits for the death's PubAck, and again for the
/// DISCONNECT to go out.
const CLOSE_WAIT: Duration = Duration::from_millis(1500);
/// A journal write (with its fsync) taking longer than this is an alarm.
pub const JOURNAL_STALL: Duration = Duration::from_secs(2);

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
    pub ai_published: AtomicU64,
    pub commands: AtomicU64,
    /// Commands dropped unread for their client's rate.
    pub commands_rate_limited: AtomicU64,
    /// Answers the client could not queue (its queue full).
    pub responses_dropped: AtomicU64,
    /// `bd_seq` of the current (or last) session.
    pub bd_seq: AtomicU64,
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
            if tokio::time::timeout(2 * CLOSE_WAIT + Duration::from_millis(500), &mut t).await.is_err() {
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

/// Everything the telemetry task owns.
pub(super) struct Core {
    pub(super) cfg: TelemetryConfig,
    pub(super) tower: String,
    pub(super) topics: Topics,
    pub(super) journal: Journal,
    pub(super) events: EventBus,
    pub(super) setpoints: Setpoints,
    pub(super) channels: DeviceChannels,
    pub(super) ai: Option<AiChannels>,
    pub(super) enhance: Option<EnhanceChannels>,
    pub(super) commands: String,
    pub(super) supervisors: Vec<String>,
    pub(super) stats: Arc<TelemetryStats>,
    pub(super) remote: Remote,
    pub(super) inbound: Inbound,
    pub(super) outbox: Outbox<(Vec<Sample>, u64)>,
    pub(super) samples: Vec<Sample>,
    pub(super) link: Link,
    pub(super) bd: BdSeq,
    /// Last published state per device: (payload without counters, when).
    pub(super) states: HashMap<String, (serde_json::Value, Instant)>,
    last_ai: Option<u64>,
    last_ai_at: Option<Instant>,
    journal_stalled: bool,
    journal_dropped: u64,
}

pub(super) fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_else(|e| format!("{{\"error\":\"cannot serialise: {e}\"}}").into_bytes())
}

pub(super) fn strip_counters(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("polls");
        o.remove("frame_counter");
    }
    v
}

impl Core {
    pub(super) fn set_link_stat(&self, state: MqttLinkState) {
        *self.stats.link.lock().unwrap_or_else(|p| p.into_inner()) = Some(state);
    }

    fn birth(&self, s: &mut Session, bd_seq: u64) {
        let t = &self.topics;
        let mut topics = vec![t.birth(), t.death(), t.telemetry(), t.events(), t.commands(), t.ai(), t.cmd_filter(), t.resp("+")];
        for d in ["insufflator", "light", "camera", "pedal", "ai", "tower"] {
            topics.push(t.state(d));
        }
        let j = self.journal.stats();
        let b = Birth {
            v: SCHEMA_VERSION,
            tower: self.tower.clone(),
            bd_seq,
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

    fn death(&self, bd_seq: u64, reason: &str) -> Vec<u8> {
        json(&Death { v: SCHEMA_VERSION, tower: self.tower.clone(), bd_seq, reason: reason.into() })
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
            let mut batch = TelemetryBatch {
                v: SCHEMA_VERSION,
                tower: self.tower.clone(),
                seq: 0,
                at_ms,
                samples,
                health: health.clone(),
                dropped_batches: self.outbox.dropped(),
            };
            let payload = |seq| {
                batch.seq = seq;
                json(&batch)
            };
            if s.publish_seq(self.topics.telemetry(), QoS::AtMostOnce, false, payload, Sent::Other) {
                self.stats.telemetry_published.fetch_add(1, Ordering::Relaxed);
            } else {
                self.outbox.unpop((batch.samples, batch.at_ms));
                break;
            }
        }
        self.stats.telemetry_dropped.store(self.outbox.dropped(), Ordering::Relaxed);
    }

    /// The latest AI result, once, at most `ai_max_hz` (latest wins: a
    /// result held back goes out at the next chance).
    fn publish_ai(&mut self, s: &mut Session) {
        let Some(ai) = &self.ai else { return };
        let Some(r) = ai.result.borrow().clone() else { return };
        if self.last_ai == Some(r.frame_seq) || !s.connected {
            return;
        }
        let gap = Duration::from_secs_f64(1.0 / self.cfg.ai_max_hz);
        if self.last_ai_at.is_some_and(|t| t.elapsed() < gap) {
            return;
        }
        let mut msg = AiMsg {
            v: SCHEMA_VERSION,
            tower: self.tower.clone(),
            seq: 0,
            at_ms: now_ms(),
            frame_seq: r.frame_seq,
            reason: serde_json::to_value(r.reason).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
            findings: r.detections.iter().map(|d| AiFinding { class_name: d.class_name.clone(), score: d.score }).collect(),
            high_risk: r.high_risk,
            demo: r.context.demo,
            alarms_off: r.context.alarms_off.clone(),
            scene: r.context.scene,
        };
        let payload = |seq| {
            msg.seq = seq;
            json(&msg)
        };
        if s.publish_seq(self.topics.ai(), QoS::AtMostOnce, false, payload, Sent::Other) {
            self.last_ai = Some(r.frame_seq);
            self.last_ai_at = Some(Instant::now());
            self.stats.ai_published.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_connack(&mut self, s: &mut Session) {
        self.link.connected();
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        self.set_link_stat(MqttLinkState::Connected);
        s.connected = true;
        s.last_ack = Instant::now();
        // The session exists: its number is spent.
        let bd_seq = self.bd.session_started();
        self.stats.bd_seq.store(bd_seq, Ordering::Relaxed);
        // Subscriptions do not survive a clean session: every ConnAck.
        if let Err(e) = s.client.try_subscribe(self.topics.cmd_filter(), QoS::AtLeastOnce) {
            tracing::warn!("cannot subscribe to {}: {e}", self.topics.cmd_filter());
        }
        self.birth(s, bd_seq);
        self.publish_states(s, true);
        s.cursor = self.journal.acked();
        self.pump_journal(s);
        self.events.clear("telemetry", "MQTT_LINK_LOST", "MQTT broker connection back; replaying the journal");
    }

    fn check_degraded(&mut self, s: &Session) {
        let overdue = Duration::from_secs(self.cfg.keep_alive_s * 2);
        if s.connected && s.journal_inflight > 0 && s.last_ack.elapsed() > overdue {
            self.link.degraded(&format!("no PubAck for {:?} with {} journal records in flight", s.last_ack.elapsed(), s.journal_inflight));
            self.set_link_stat(self.link.state());
        }
    }

    /// `JOURNAL_STALLED` while a write or fsync takes longer than
    /// [`JOURNAL_STALL`]; `JOURNAL_OVERFLOW` when records were dropped.
    fn watch_journal(&mut self) {
        let stalled = self.journal.stalled_for().filter(|d| *d > JOURNAL_STALL);
        match (stalled, self.journal_stalled) {
            (Some(d), false) => {
                self.journal_stalled = true;
                self.events.raise(
                    "telemetry",
                    "JOURNAL_STALLED",
                    Severity::Medium,
                    format!(
                        "a journal write has not finished for {} ms (slow disk or fsync); records wait in memory, bounded",
                        d.as_millis()
                    ),
                );
            }
            (None, true) => {
                self.journal_stalled = false;
                self.events.clear("telemetry", "JOURNAL_STALLED", "journal writes finishing again");
            }
            _ => {}
        }
        let dropped = self.journal.stats().dropped;
        if dropped > self.journal_dropped {
            self.events.raise(
                "telemetry",
                "JOURNAL_OVERFLOW",
                Severity::Medium,
                format!("{} journal records dropped from memory in all (memory_records reached)", dropped),
            );
            self.journal_dropped = dropped;
        }
    }

    fn sample_now(&mut self) {
        let sample = self.sample();
        self.samples.push(sample);
    }
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
        bd: BdSeq::load(a.journal.dir()),
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
        inbound: Inbound::default(),
        outbox: Outbox::new(a.cfg.outbox_capacity),
        samples: Vec::new(),
        link: Link::new(broker, Duration::from_millis(a.cfg.backoff_initial_ms), Duration::from_millis(a.cfg.backoff_max_ms)),
        states: HashMap::new(),
        last_ai: None,
        last_ai_at: None,
        journal_stalled: false,
        journal_dropped: 0,
        cfg: a.cfg,
    };
    let liveness = a.liveness;
    let endpoint = a.endpoint;
    let mut sample_tick = tokio::time::interval(Duration::from_secs_f64(1.0 / core.cfg.sample_hz));
    let mut batch_tick = tokio::time::interval(Duration::from_millis(core.cfg.batch_ms));
    let mut state_tick = tokio::time::interval(Duration::from_secs_f64((1.0 / core.cfg.state_max_hz).min(1.0)));
    let mut ai_tick = tokio::time::interval(Duration::from_secs_f64(1.0 / core.cfg.ai_max_hz));
    for t in [&mut sample_tick, &mut batch_tick, &mut state_tick, &mut ai_tick] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    let mut attempt = 0u64;
    loop {
        if *stop.borrow() {
            return;
        }
        attempt += 1;
        let bd_seq = match core.bd.for_connect() {
            Ok(n) => n,
            Err(e) => {
                // Still connect: a number that may repeat after a restart beats no telemetry.
                tracing::warn!("cannot persist bd_seq in {}: {e}", core.journal.dir().display());
                core.bd.current() + 1
            }
        };
        let will = LastWill::new(core.topics.death(), core.death(bd_seq, "connection_lost"), QoS::AtLeastOnce, true);
        core.link.connecting(if attempt == 1 { "starting" } else { "reconnecting after backoff" });
        core.set_link_stat(MqttLinkState::Connecting);
        let mut s = Session::start(&endpoint, &core.cfg, will);
        let end = loop {
            liveness.beat();
            tokio::select! {
                ev = s.next() => match ev {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => core.on_connack(&mut s),
                    Ok(MqttEvent::Incoming(Packet::PubAck(a))) => core.on_puback(&mut s, a.pkid),
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => core.on_command(&mut s, &p.topic, &p.payload).await,
                    Ok(MqttEvent::Outgoing(Outgoing::Publish(pkid))) => {
                        let what = s.sent.pop_front().unwrap_or(Sent::Other);
                        s.pkids.insert(pkid, what);
                    }
                    Ok(MqttEvent::Outgoing(Outgoing::AwaitAck(pkid))) => {
                        break SessionEnd::Lost(format!("packet id {pkid} collided (broker acks out of order)"));
                    }
                    Ok(_) => {}
                    Err(e) => break SessionEnd::Lost(e),
                },
                _ = core.journal.wait_ready(), if s.connected => core.pump_journal(&mut s),
                _ = sample_tick.tick() => core.sample_now(),
                _ = batch_tick.tick() => {
                    core.make_batch().await;
                    core.flush_outbox(&mut s).await;
                }
                _ = state_tick.tick() => {
                    core.watch_journal();
                    if s.connected {
                        core.publish_states(&mut s, false);
                        core.pump_journal(&mut s);
                        core.check_degraded(&s);
                    }
                }
                _ = ai_tick.tick() => core.publish_ai(&mut s),
                _ = stop.changed() => break SessionEnd::Stop,
            }
        };
        match end {
            SessionEnd::Stop => {
                let death = core.death(core.bd.current(), "shutdown");
                s.close(core.topics.death(), death, CLOSE_WAIT).await;
                tracing::info!("telemetry stopped");
                return;
            }
            SessionEnd::Lost(reason) => {
                let was_connected = s.connected;
                let wait = core.link.lost(&reason);
                core.set_link_stat(MqttLinkState::Lost);
                drop(s);
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
                        _ = sample_tick.tick() => core.sample_now(),
                        _ = batch_tick.tick() => {
                            core.make_batch().await;
                            core.watch_journal();
                        }
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }
}
