//! `endotower bench mqtt`: the telemetry path's throughput and CPU cost, on
//! the embedded broker (rumqttd) on loopback, with one subscriber.
//!
//! - **alarms**: the whole journaled path. Events are published on the event
//!   bus; the journal appends and fsyncs them (group commit), the telemetry
//!   actor publishes them at QoS 1 with at most `JOURNAL_WINDOW` in flight,
//!   and every PubAck moves the journal's acked position. The subscriber
//!   counts distinct ids. Headline: end-to-end latency (event time to
//!   receipt, ms, wall clock).
//! - **telemetry**: real `TelemetryBatch` payloads (10 samples each),
//!   serialised per message and published at QoS 0 as fast as the client
//!   takes them, for a fixed time.
//!
//! CPU is the whole process (getrusage user + sys: tower side, broker and
//! subscriber together) per 1 000 messages received.

use super::{BenchReport, Stats};
use crate::embedded_broker::EmbeddedBroker;
use crate::tower_config::TowerConfig;
use endotower_actors::device_status::DeviceChannels;
use endotower_actors::events::{EventBus, EventKind, Severity};
use endotower_actors::setpoints::Setpoints;
use endotower_actors::supervisor::Liveness;
use endotower_actors::telemetry::actor::{Endpoint, TelemetryActor, TelemetryArgs, TelemetryStats};
use endotower_actors::telemetry::journal::{now_ms, Journal, JournalSink};
use endotower_actors::telemetry::payloads::{Health, Sample, TelemetryBatch, SCHEMA_VERSION};
use endotower_actors::telemetry::topics::Topics;
use rumqttc::{AsyncClient, MqttOptions, Packet, QoS};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum MqttBenchError {
    #[error("{0}")]
    Broker(#[from] crate::embedded_broker::BrokerError),
    #[error("cannot start: {0}")]
    Start(String),
    #[error("only {got} of {want} alarms arrived within {limit:?}")]
    Incomplete { got: usize, want: usize, limit: Duration },
}

fn cpu_s() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return f64::NAN;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A subscriber on `topic`: counts messages, keeps what `keep` extracts.
async fn subscriber(
    addr: std::net::SocketAddr,
    topic: String,
    qos: QoS,
    keep: fn(&[u8]) -> Option<(String, u64)>,
) -> Result<Subscriber, MqttBenchError> {
    static SUBS: AtomicU64 = AtomicU64::new(0);
    let id = format!("bench-sub-{}-{}", std::process::id(), SUBS.fetch_add(1, Ordering::Relaxed));
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(10));
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(o, 64);
    client.subscribe(topic, qos).await.map_err(|e| MqttBenchError::Start(e.to_string()))?;
    let count = Arc::new(AtomicU64::new(0));
    let kept = Arc::new(Mutex::new(Vec::new()));
    let (c, k) = (count.clone(), kept.clone());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let _client = client;
        let mut ready = Some(ready_tx);
        loop {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(rumqttc::Event::Incoming(Packet::Publish(p))) => {
                    c.fetch_add(1, Ordering::Relaxed);
                    if let Some((id, at)) = keep(&p.payload) {
                        k.lock().unwrap_or_else(|p| p.into_inner()).push((id, at, now_ms()));
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(5), ready_rx)
        .await
        .map_err(|_| MqttBenchError::Start("subscriber never subscribed".into()))?
        .ok();
    Ok(Subscriber { count, kept, task })
}

struct Subscriber {
    count: Arc<AtomicU64>,
    kept: Arc<Mutex<Vec<(String, u64, u64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn event_id(p: &[u8]) -> Option<(String, u64)> {
    let v: serde_json::Value = serde_json::from_slice(p).ok()?;
    if v["code"] != "BENCH" {
        return None;
    }
    Some((v["id"].as_str()?.to_string(), v["at_ms"].as_u64()?))
}

struct AlarmRun {
    latency_ms: Vec<f64>,
    per_s: f64,
    cpu_ms_per_1000: f64,
}

async fn alarms(cfg: &TowerConfig, addr: std::net::SocketAddr, n: usize) -> Result<AlarmRun, MqttBenchError> {
    let tower = format!("bench-{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("endotower-bench-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let events = EventBus::new(65_536);
    let mut tcfg = cfg.telemetry.clone();
    tcfg.enabled = true;
    tcfg.journal.dir = dir.clone();
    let journal = Journal::open(tcfg.journal.clone(), dir.clone(), events.clone()).map_err(|e| MqttBenchError::Start(e.to_string()))?;
    events.add_sink(Arc::new(JournalSink(journal.clone())));
    let topics = Topics::new(&tower);
    let sub = subscriber(addr, topics.events(), QoS::AtLeastOnce, event_id).await?;
    let kept = sub.kept.clone();
    let args = TelemetryArgs {
        cfg: tcfg,
        tower_id: tower.clone(),
        endpoint: Endpoint {
            host: addr.ip().to_string(),
            port: addr.port(),
            client_id: "bench-tower".into(),
            username: None,
            password: None,
            ca: None,
            client_identity: None,
        },
        journal: journal.clone(),
        events: events.clone(),
        setpoints: Setpoints::new(12.0, 10.0, 80.0),
        channels: DeviceChannels::default(),
        ai: None,
        enhance: None,
        limits: cfg.limits.clone(),
        commands: format!("{tower}.commands"),
        supervisors: Vec::new(),
        stats: Arc::new(TelemetryStats::default()),
        liveness: Liveness::default(),
    };
    let stats = args.stats.clone();
    let (actor, handle) = ractor::Actor::spawn(None, TelemetryActor, args).await.map_err(|e| MqttBenchError::Start(e.to_string()))?;
    let connected = async {
        while stats.births.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), connected)
        .await
        .map_err(|_| MqttBenchError::Start("telemetry never connected".into()))?;
    let (t0, c0) = (Instant::now(), cpu_s());
    for i in 0..n {
        events.event(EventKind::AlarmRaised, Severity::Medium, "bench", "BENCH", format!("bench alarm {i}"));
        if i % 256 == 255 {
            tokio::task::yield_now().await;
        }
    }
    let limit = Duration::from_secs(120);
    let done = async {
        loop {
            let distinct: HashSet<String> = kept.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|k| k.0.clone()).collect();
            if distinct.len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let complete = tokio::time::timeout(limit, done).await.is_ok();
    let (elapsed, cpu) = (t0.elapsed().as_secs_f64(), cpu_s() - c0);
    actor.stop(None);
    let _ = handle.await;
    events.clear_sinks();
    journal.close();
    let _ = std::fs::remove_dir_all(&dir);
    let kept = kept.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if !complete {
        return Err(MqttBenchError::Incomplete { got: kept.len(), want: n, limit });
    }
    let mut seen = HashSet::new();
    let latency_ms = kept.iter().filter(|k| seen.insert(k.0.clone())).map(|k| k.2.saturating_sub(k.1) as f64).collect();
    Ok(AlarmRun { latency_ms, per_s: n as f64 / elapsed, cpu_ms_per_1000: cpu * 1e3 / n as f64 * 1000.0 })
}

struct TelemetryRun {
    sent: u64,
    received: u64,
    per_s: f64,
    cpu_ms_per_1000: f64,
    bytes: usize,
}

fn batch(seq: u64) -> TelemetryBatch {
    let samples = (0..10)
        .map(|i| Sample {
            at_ms: now_ms() + i,
            pressure_mmhg: Some(12.0 + i as f64 * 0.01),
            set_pressure_mmhg: 12.0,
            flow_lpm: Some(3.2),
            set_flow_lpm: 20.0,
            supply_bar: Some(48.0),
            light_set_pct: 80.0,
            light_output_pct: Some(79.6),
            led_current_ma: Some(1120.0),
            led_temp_c: Some(41.5),
            tip_temp_c: Some(33.0),
            camera_temp_c: Some(38.0),
        })
        .collect();
    let links = ["insufflator", "light", "camera", "pedal"].iter().map(|d| (d.to_string(), "connected".to_string())).collect();
    TelemetryBatch {
        v: SCHEMA_VERSION,
        tower: "bench".into(),
        seq,
        at_ms: now_ms(),
        samples,
        health: Health {
            links,
            ai: "online".into(),
            enhancement: "off".into(),
            enhanced_fraction: 0.0,
            safe_state: false,
            active_alarms: 0,
            children_down: Vec::new(),
            restarts: 0,
            journal_unacked: 0,
            journal_dropped: 0,
            commands_rate_limited: 0,
        },
        dropped_batches: 0,
    }
}

async fn telemetry(addr: std::net::SocketAddr, duration: Duration) -> Result<TelemetryRun, MqttBenchError> {
    let topic = Topics::new("bench").telemetry();
    let sub = subscriber(addr, topic.clone(), QoS::AtMostOnce, |_| None).await?;
    let count = sub.count.clone();
    let o = MqttOptions::new(format!("bench-pub-{}", std::process::id()), addr.ip().to_string(), addr.port());
    let (client, mut el) = AsyncClient::new(o, 256);
    let poller = tokio::spawn(async move { while el.poll().await.is_ok() {} });
    let (t0, c0) = (Instant::now(), cpu_s());
    let mut sent = 0u64;
    let mut bytes = 0;
    // Closed loop: at most WINDOW messages between publisher and subscriber,
    // so the figure is what the path sustains, not what the broker drops.
    const WINDOW: u64 = 64;
    while t0.elapsed() < duration {
        if sent >= count.load(Ordering::Relaxed) + WINDOW {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let payload = serde_json::to_vec(&batch(sent)).unwrap_or_default();
        bytes = payload.len();
        if client.publish(topic.clone(), QoS::AtMostOnce, false, payload).await.is_err() {
            break;
        }
        sent += 1;
    }
    let sending = t0.elapsed().as_secs_f64();
    // Let the tail arrive.
    let mut last = u64::MAX;
    while count.load(Ordering::Relaxed) != last {
        last = count.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cpu = cpu_s() - c0;
    poller.abort();
    drop(sub);
    let received = count.load(Ordering::Relaxed);
    Ok(TelemetryRun {
        sent,
        received,
        per_s: received as f64 / sending,
        cpu_ms_per_1000: cpu * 1e3 / received.max(1) as f64 * 1000.0,
        bytes,
    })
}

/// Run the benchmark.
pub fn mqtt(cfg: TowerConfig, quick: bool) -> Result<BenchReport, MqttBenchError> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| MqttBenchError::Start(e.to_string()))?;
    let dir = std::env::temp_dir().join(format!("endotower-bench-mqtt-broker-{}", std::process::id()));
    let broker = EmbeddedBroker::start(&endotower_actors::telemetry::config::BrokerConfig::embedded("127.0.0.1:0"), "bench", &dir)?;
    let (n, dur) = if quick { (2_000, Duration::from_secs(3)) } else { (10_000, Duration::from_secs(15)) };
    let a = rt.block_on(alarms(&cfg, broker.addr, n))?;
    let t = rt.block_on(telemetry(broker.addr, dur))?;
    let total = Stats::of("alarms", &a.latency_ms);
    let notes = serde_json::json!({
        "broker": "embedded mosquitto (a child process), loopback",
        "alarms": {
            "n": n,
            "per_s": a.per_s.round(),
            "cpu_ms_per_1000": (a.cpu_ms_per_1000 * 10.0).round() / 10.0,
            "path": "event bus -> journal (fsync, group commit) -> QoS 1 -> broker -> subscriber; latency in ms",
        },
        "telemetry": {
            "sent": t.sent,
            "received": t.received,
            "per_s": t.per_s.round(),
            "cpu_ms_per_1000": (t.cpu_ms_per_1000 * 10.0).round() / 10.0,
            "payload_bytes": t.bytes,
            "path": "TelemetryBatch (10 samples) serialised per message, QoS 0 -> broker -> subscriber",
        },
        "cpu": "getrusage(RUSAGE_SELF) user+sys of the whole process (tower side, broker, subscriber)",
    });
    Ok(BenchReport::new("mqtt", "ms (alarm end-to-end latency)", &total, vec![total.clone()], notes))
}
