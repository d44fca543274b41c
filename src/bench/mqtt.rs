//! `endotower bench mqtt`: the telemetry path's throughput and CPU cost on
//! the embedded broker (a mosquitto child process) on loopback, with one
//! subscriber in a process of its own (mosquitto_sub).
//!
//! - **alarms**: the whole journaled path. Events are published on the event
//!   bus; the journal writes and fsyncs them (group commit), the telemetry
//!   actor publishes them at QoS 1 with a bounded window in flight, and
//!   every PubAck moves the journal's acked position. The subscriber's lines
//!   are kept with their arrival time and read after the run. Headline:
//!   end-to-end latency (event time to receipt, ms, wall clock).
//! - **telemetry**: real `TelemetryBatch` payloads (10 samples each),
//!   serialised per message and published at QoS 0, closed loop, for a
//!   fixed time.
//!
//! CPU is counted per process and per 1 000 messages received: the tower
//! side (this process: getrusage), the broker and the subscriber
//! (/proc/<pid>/stat of each).

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
use rumqttc::{AsyncClient, MqttOptions, QoS};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum MqttBenchError {
    #[error("{0}")]
    Broker(#[from] crate::embedded_broker::BrokerError),
    #[error("cannot start: {0}")]
    Start(String),
    #[error("cannot start mosquitto_sub ({0}); install it: apt-get install mosquitto-clients (./x does)")]
    Subscriber(std::io::Error),
    #[error("only {got} of {want} alarms arrived within {limit:?}")]
    Incomplete { got: usize, want: usize, limit: Duration },
}

/// CPU seconds (user + sys) of this process.
fn cpu_s() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return f64::NAN;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU seconds (user + sys) of another process, from /proc/<pid>/stat.
fn proc_cpu_s(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return f64::NAN };
    // The fields after the command name, which is in parentheses.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { return f64::NAN };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    match (f.get(11).and_then(|v| v.parse::<f64>().ok()), f.get(12).and_then(|v| v.parse::<f64>().ok())) {
        (Some(u), Some(sy)) => (u + sy) / tick,
        _ => f64::NAN,
    }
}

/// CPU seconds of this process, the broker and the subscriber.
#[derive(Clone, Copy)]
struct Cpu {
    tower: f64,
    broker: f64,
    subscriber: f64,
}

impl Cpu {
    fn now(broker: u32, subscriber: u32) -> Cpu {
        Cpu { tower: cpu_s(), broker: proc_cpu_s(broker), subscriber: proc_cpu_s(subscriber) }
    }

    /// ms of CPU per 1 000 messages since `since`.
    fn per_1000(self, since: Cpu, messages: u64) -> serde_json::Value {
        let k = 1e6 / messages.max(1) as f64;
        let r = |x: f64| (x * k * 10.0).round() / 10.0;
        serde_json::json!({
            "tower": r(self.tower - since.tower),
            "broker": r(self.broker - since.broker),
            "subscriber": r(self.subscriber - since.subscriber),
        })
    }
}

/// mosquitto_sub on `topic`. `keep`: every payload line is kept with its
/// arrival time (ms since the epoch) and `count` counts distinct ids;
/// otherwise `count` counts lines. Nothing is parsed during the run.
struct Subscriber {
    child: Child,
    lines: Arc<Mutex<Vec<(u64, String)>>>,
    count: Arc<AtomicU64>,
}

impl Subscriber {
    fn start(addr: std::net::SocketAddr, topic: &str, qos: QoS, keep: bool) -> Result<Subscriber, MqttBenchError> {
        let q = if qos == QoS::AtMostOnce { "0" } else { "1" };
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub", "-h", &addr.ip().to_string(), "-p", &addr.port().to_string(), "-q", q, "-d", "-t", topic])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(MqttBenchError::Subscriber)?;
        let out = child.stdout.take().ok_or_else(|| MqttBenchError::Start("mosquitto_sub has no stdout".into()))?;
        let (lines, count) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicU64::new(0)));
        let (l, c) = (lines.clone(), count.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut ids = HashSet::new();
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if !line.starts_with('{') {
                    // -d: the SubAck says it is subscribed.
                    if line.contains("received SUBACK") {
                        let _ = ready_tx.send(());
                    }
                    continue;
                }
                if keep {
                    // Count distinct ids (QoS 1 may deliver twice), cheaply.
                    let id = line.find("\"id\":\"").and_then(|i| line[i + 6..].split('"').next()).map(str::to_string);
                    if id.is_some_and(|id| ids.insert(id)) {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                    l.lock().unwrap_or_else(|p| p.into_inner()).push((now_ms(), line));
                } else {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let mut sub = Subscriber { child, lines, count };
        if ready_rx.recv_timeout(Duration::from_secs(5)).is_err() {
            sub.stop();
            return Err(MqttBenchError::Start("mosquitto_sub never subscribed".into()));
        }
        Ok(sub)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop();
    }
}

fn event_id(p: &str) -> Option<(String, u64)> {
    let v: serde_json::Value = serde_json::from_str(p).ok()?;
    if v["code"] != "BENCH" {
        return None;
    }
    Some((v["id"].as_str()?.to_string(), v["at_ms"].as_u64()?))
}

struct AlarmRun {
    latency_ms: Vec<f64>,
    per_s: f64,
    cpu: serde_json::Value,
}

async fn alarms(cfg: &TowerConfig, broker: &EmbeddedBroker, n: usize) -> Result<AlarmRun, MqttBenchError> {
    let addr = broker.addr;
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
    let sub = Subscriber::start(addr, &topics.events(), QoS::AtLeastOnce, true)?;
    let lines = sub.lines.clone();
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
    let (bpid, spid) = (broker.pid().unwrap_or(0), sub.pid());
    let (t0, c0) = (Instant::now(), Cpu::now(bpid, spid));
    for i in 0..n {
        events.event(EventKind::AlarmRaised, Severity::Medium, "bench", "BENCH", format!("bench alarm {i}"));
        if i % 256 == 255 {
            tokio::task::yield_now().await;
        }
    }
    let limit = Duration::from_secs(120);
    let done = async {
        while (sub.count.load(Ordering::Relaxed) as usize) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let complete = tokio::time::timeout(limit, done).await.is_ok();
    let (elapsed, c1) = (t0.elapsed().as_secs_f64(), Cpu::now(bpid, spid));
    actor.stop(None);
    let _ = handle.await;
    events.clear_sinks();
    journal.close();
    let _ = std::fs::remove_dir_all(&dir);
    drop(sub);
    let lines = std::mem::take(&mut *lines.lock().unwrap_or_else(|p| p.into_inner()));
    let mut seen = HashSet::new();
    let latency_ms: Vec<f64> = lines
        .iter()
        .filter_map(|(at, l)| event_id(l).map(|(id, sent)| (id, sent, *at)))
        .filter(|k| seen.insert(k.0.clone()))
        .map(|k| k.2.saturating_sub(k.1) as f64)
        .collect();
    if !complete || latency_ms.len() < n {
        return Err(MqttBenchError::Incomplete { got: latency_ms.len(), want: n, limit });
    }
    Ok(AlarmRun { latency_ms, per_s: n as f64 / elapsed, cpu: c1.per_1000(c0, n as u64) })
}

struct TelemetryRun {
    sent: u64,
    received: u64,
    per_s: f64,
    cpu: serde_json::Value,
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

async fn telemetry(broker: &EmbeddedBroker, duration: Duration) -> Result<TelemetryRun, MqttBenchError> {
    let addr = broker.addr;
    let topic = Topics::new("bench").telemetry();
    let sub = Subscriber::start(addr, &topic, QoS::AtMostOnce, false)?;
    let count = sub.count.clone();
    let (bpid, spid) = (broker.pid().unwrap_or(0), sub.pid());
    let o = MqttOptions::new(format!("bench-pub-{}", std::process::id()), addr.ip().to_string(), addr.port());
    let (client, mut el) = AsyncClient::new(o, 256);
    let poller = tokio::spawn(async move { while el.poll().await.is_ok() {} });
    let (t0, c0) = (Instant::now(), Cpu::now(bpid, spid));
    let mut sent = 0u64;
    let mut bytes = 0;
    // Closed loop: at most WINDOW messages between publisher and subscriber,
    // so the figure is what the path sustains, not what the broker drops.
    const WINDOW: u64 = 512;
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
    let c1 = Cpu::now(bpid, spid);
    poller.abort();
    drop(sub);
    let received = count.load(Ordering::Relaxed);
    Ok(TelemetryRun { sent, received, per_s: received as f64 / sending, cpu: c1.per_1000(c0, received), bytes })
}

/// Run the benchmark.
pub fn mqtt(cfg: TowerConfig, quick: bool) -> Result<BenchReport, MqttBenchError> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| MqttBenchError::Start(e.to_string()))?;
    let dir = std::env::temp_dir().join(format!("endotower-bench-mqtt-broker-{}", std::process::id()));
    let broker = EmbeddedBroker::start(&endotower_actors::telemetry::config::BrokerConfig::embedded("127.0.0.1:0"), "bench", &dir)?;
    let (n, dur) = if quick { (2_000, Duration::from_secs(3)) } else { (10_000, Duration::from_secs(15)) };
    let a = rt.block_on(alarms(&cfg, &broker, n))?;
    let t = rt.block_on(telemetry(&broker, dur))?;
    broker.stop();
    let _ = std::fs::remove_dir_all(&dir);
    // The share of serialising one batch in the tower's figure.
    let c0 = cpu_s();
    let k = 10_000;
    let bytes: usize = (0..k).map(|i| serde_json::to_vec(&batch(i)).map_or(0, |v| v.len())).sum();
    let serialise_us = (cpu_s() - c0) * 1e6 / k as f64;
    std::hint::black_box(bytes);
    let total = Stats::of("alarms", &a.latency_ms);
    let notes = serde_json::json!({
        "broker": "embedded mosquitto (a child process), loopback",
        "alarms": {
            "n": n,
            "per_s": a.per_s.round(),
            "cpu_ms_per_1000": a.cpu,
            "path": "event bus -> journal (write, fsync in groups) -> QoS 1 -> broker -> subscriber; latency in ms",
        },
        "telemetry": {
            "sent": t.sent,
            "received": t.received,
            "per_s": t.per_s.round(),
            "cpu_ms_per_1000": t.cpu,
            "payload_bytes": t.bytes,
            "serialise_us_per_msg": (serialise_us * 10.0).round() / 10.0,
            "path": "TelemetryBatch (10 samples) serialised per message, QoS 0 -> broker -> subscriber",
        },
        "cpu": "ms of CPU (user+sys) per 1 000 messages received: tower = this process (getrusage), broker and subscriber = their processes (/proc/<pid>/stat)",
    });
    Ok(BenchReport::new("mqtt", "ms (alarm end-to-end latency)", &total, vec![total.clone()], notes))
}
