//! Runs a scenario: builds the tower config, starts the tower on its
//! simulators (and a broker and observer when asked), warms up, plays the
//! timeline while sampling the physics, then collects the end state and
//! judges the invariants.
//!
//! Scenario time runs `time_scale` times faster than the wall clock; only
//! slow physics (heating, cylinder use) is accelerated with it, so pressure,
//! control and safety dynamics stay real. Timing limits in invariants
//! (`for_ms`, `within_ms`) are wall-clock milliseconds.

use super::camera_faults::{faulty_source, CameraFaultSwitch};
use super::file::{Action, BrokerKind, ModelState, Scenario, Step};
use super::journal_fs;
use super::mosquitto::{BrokerError, Mosquitto};
use super::observer::{self, Observer};
use super::record::{rss_mib, ActionRecord, EndState, EventRecorder, RunRecord};
use super::trace::{Limits, Marker, MarkerKind, Sample, Trace};
use crate::tower::{Tower, TowerError};
use crate::tower_config::TowerConfig;
use endotower_actors::commands::{Command, CommandSource};
use endotower_actors::config::relief_threshold;
use endotower_actors::events::{Event, EventKind};
use endotower_actors::fault_injection::InjectedFault;
use endotower_actors::link::LinkState;
use endotower_actors::telemetry::config::BrokerConfig;
use endotower_actors::video::ai_state::AiStatus;
use endotower_actors::video::model_card::ModelCard;
use endotower_sim::Device;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Wall-clock sampling period of the physics.
const SAMPLE_PERIOD: Duration = Duration::from_millis(20);
/// Wall-clock period of the supervised children's status.
const CHILDREN_PERIOD: Duration = Duration::from_millis(100);
/// Longest wait for the tower to come up before t = 0.
const WARMUP_LIMIT: Duration = Duration::from_secs(40);

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
    pub out: PathBuf,
    /// Run slow physics in real time too (time_scale 1).
    pub realtime: bool,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Test only: the safety island keeps running but enforces nothing.
    #[doc(hidden)]
    pub break_safety_island: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("tower config {file}: {message}")]
    Config { file: String, message: String },
    #[error("cannot start the tower: {0}")]
    Tower(#[from] TowerError),
    #[error("broker: {0}")]
    Broker(#[from] BrokerError),
    #[error("cannot prepare {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the tower did not come up within 40 s: {0}")]
    Warmup(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io { path: path.display().to_string(), source }
}

/// Merge `b` into `a`, tables recursively.
fn deep_merge(a: &mut toml::Table, b: toml::Table) {
    for (k, v) in b {
        match (a.get_mut(&k), v) {
            (Some(toml::Value::Table(at)), toml::Value::Table(bt)) => deep_merge(at, bt),
            (_, v) => {
                a.insert(k, v);
            }
        }
    }
}

/// `set` entries: nested tables or quoted dotted keys.
fn apply_set(base: &mut toml::Table, set: &toml::Table) {
    for (k, v) in set {
        let mut path: Vec<&str> = k.split('.').collect();
        let last = path.pop().unwrap_or_default();
        let mut t = &mut *base;
        for p in path {
            let entry = t.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            t = match entry {
                toml::Value::Table(next) => next,
                _ => return, // made a table just above
            };
        }
        match (t.get_mut(last), v) {
            (Some(toml::Value::Table(at)), toml::Value::Table(bt)) => deep_merge(at, bt.clone()),
            _ => {
                t.insert(last.to_string(), v.clone());
            }
        }
    }
}

/// The scenario's tower config, made safe to run anywhere: free loopback
/// ports, a unique id, output under `out`.
pub fn tower_config(s: &Scenario, seed: u64, time_scale: f64, out: &Path) -> Result<TowerConfig, RunError> {
    let mut merged = toml::Table::new();
    for f in s.config_files() {
        let file = f.display().to_string();
        let text = std::fs::read_to_string(&f).map_err(|e| RunError::Config { file: file.clone(), message: e.to_string() })?;
        let t: toml::Table = toml::from_str(&text).map_err(|e| RunError::Config { file, message: e.to_string() })?;
        deep_merge(&mut merged, t);
    }
    apply_set(&mut merged, &s.tower.set);
    let file = format!("{} (merged [tower] config)", s.path.display());
    let remote = merged.get("telemetry").and_then(|t| t.get("remote")).and_then(|r| r.get("enabled")).and_then(toml::Value::as_bool);
    if s.broker == BrokerKind::Embedded && remote == Some(true) {
        // Remote control needs authenticated clients: one user per client
        // the timeline commands from.
        let pf = observer::password_file(out, &s.remote_clients()).map_err(|message| RunError::Config { file: file.clone(), message })?;
        let set = toml::Table::from_iter([("telemetry.broker.password_file".to_string(), toml::Value::String(pf.display().to_string()))]);
        apply_set(&mut merged, &set);
    }
    let text = toml::to_string(&merged).map_err(|e| RunError::Config { file: file.clone(), message: e.to_string() })?;
    let mut cfg = TowerConfig::from_toml(&text).map_err(|e| RunError::Config { file: file.clone(), message: e.to_string() })?;
    cfg.tower.id = format!("scn-{}-{}", s.name, std::process::id());
    cfg.use_free_loopback_ports();
    cfg.sim.embedded = true;
    cfg.sim.model.seed = seed;
    cfg.sim.model.slow_time_scale = time_scale;
    cfg.video.archive.dir = out.join("archive").display().to_string();
    cfg.video.display.output = endotower_actors::display::config::OutputKind::Headless;
    // A private copy of the detector model, so `model` steps can break it.
    let model = out.join("models").join("detector.onnx");
    if cfg.video.enabled {
        std::fs::create_dir_all(out.join("models")).map_err(io_err(&model))?;
        std::fs::copy(&cfg.video.inference.detector_model, &model).map_err(io_err(Path::new(&cfg.video.inference.detector_model)))?;
        // Its model card goes with it (where lesion alarms may sound).
        let card = ModelCard::path_for(Path::new(&cfg.video.inference.detector_model));
        if card.is_file() {
            std::fs::copy(&card, ModelCard::path_for(&model)).map_err(io_err(&card))?;
        }
        cfg.video.inference.detector_model = model.display().to_string();
    }
    let t = &mut cfg.telemetry;
    t.enabled = s.broker != BrokerKind::None;
    t.client_id = format!("tower-{}", cfg.tower.id);
    t.journal.dir = journal_fs::current().unwrap_or_else(|| out.join("journal"));
    if s.broker == BrokerKind::Embedded {
        t.broker = BrokerConfig { password_file: t.broker.password_file.take(), ..BrokerConfig::embedded("127.0.0.1:0") };
    }
    cfg.validate().map_err(|e| RunError::Config { file, message: e.to_string() })?;
    Ok(cfg)
}

/// Busy threads at normal priority until `d` has passed.
fn cpu_load(threads: u32, d: Duration) -> Vec<std::thread::JoinHandle<()>> {
    let until = Instant::now() + d;
    (0..threads)
        .filter_map(|i| {
            std::thread::Builder::new()
                .name(format!("scenario-load-{i}"))
                .spawn(move || {
                    let mut x = 1u64;
                    while Instant::now() < until {
                        for _ in 0..10_000 {
                            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                        }
                    }
                })
                .ok()
        })
        .collect()
}

/// Everything alive during a run.
struct Live {
    /// Threads of `cpu_load` steps.
    load: Vec<std::thread::JoinHandle<()>>,
    tower: Tower,
    camera: CameraFaultSwitch,
    broker: Option<Mosquitto>,
    observer: Option<Observer>,
    model_path: PathBuf,
    model_copy: Vec<u8>,
    fs_dir: Option<PathBuf>,
}

impl Live {
    async fn act(&mut self, action: &Action) -> Result<(), String> {
        let sim = self.tower.sim().ok_or("the tower runs without simulators")?;
        match action {
            Action::SimFault { device, fault } => sim.set_fault(*device, fault.clone()),
            Action::SimClear { device, kind } => sim.clear_fault(*device, *kind),
            Action::InjectPressure { mmhg } => {
                sim.inject_pressure(*mmhg);
            }
            Action::SetLedTemp { celsius } => sim.set_led_temp(*celsius),
            Action::ActorPanic { actor } => self.inject(actor, InjectedFault::Panic)?,
            Action::ActorHang { actor, ms } => self.inject(actor, InjectedFault::Hang(Duration::from_millis(*ms)))?,
            Action::IslandPanic => self.tower.safety().hooks().panic_next_cycle.store(true, Ordering::Release),
            Action::IslandStall { ms } => self.tower.safety().hooks().stall_next_cycle_ms.store(*ms, Ordering::Release),
            Action::Camera { fault } => self.camera.set(*fault),
            Action::Model { state } => {
                let r = match state {
                    ModelState::Missing => std::fs::remove_file(&self.model_path),
                    ModelState::Corrupt => std::fs::write(&self.model_path, b"this is not an ONNX model\n"),
                    ModelState::Restored => std::fs::write(&self.model_path, &self.model_copy),
                };
                r.map_err(|e| format!("{}: {e}", self.model_path.display()))?;
            }
            Action::AiNan => self.tower.video().inference_hooks.nan_next.store(true, Ordering::Release),
            Action::BrokerDown => self.broker.as_mut().ok_or("no mosquitto broker")?.down(),
            Action::BrokerUp => self.broker.as_mut().ok_or("no mosquitto broker")?.up().map_err(|e| e.to_string())?,
            Action::DiskFull => {
                let dir = self.fs_dir.as_ref().ok_or("no journal tmpfs")?;
                journal_fs::fill(dir).map_err(|e| format!("filling {}: {e}", dir.display()))?;
            }
            Action::DiskFree => {
                let dir = self.fs_dir.as_ref().ok_or("no journal tmpfs")?;
                journal_fs::free(dir).map_err(|e| format!("freeing {}: {e}", dir.display()))?;
            }
            Action::PedalPress => sim.press_pedal(),
            Action::Setpoint { pressure_mmhg, flow_lpm, intensity_pct } => {
                let cmds = [
                    pressure_mmhg.map(|mmhg| Command::SetPressure { mmhg }),
                    flow_lpm.map(|lpm| Command::SetFlow { lpm }),
                    intensity_pct.map(|pct| Command::SetIntensity { pct }),
                ];
                for c in cmds.into_iter().flatten() {
                    match self.tower.submit(CommandSource::Hmi, c.clone()).await {
                        Some(Ok(_)) => {}
                        Some(Err(r)) => return Err(format!("{c:?} rejected: {r}")),
                        None => return Err(format!("{c:?}: the command path did not answer")),
                    }
                }
            }
            Action::RemoteCommand { client, payload } => {
                let obs = self.observer.as_ref().ok_or("no MQTT observer")?;
                obs.command(client, payload).await?;
            }
            Action::IslandLinkDrop { device, ms } => {
                let i = match device {
                    Device::Insufflator => 0,
                    Device::Light => 1,
                    other => return Err(format!("the island has no interlock link to {}", other.name())),
                };
                self.tower.safety().hooks().drop_link_ms[i].store(*ms, Ordering::Release);
            }
            Action::ControlLinkDrop { device, ms } => self.tower.drop_control_link(device.name(), Duration::from_millis(*ms)),
            Action::SetTipTemp { celsius } => sim.set_tip_temp(*celsius),
            Action::CpuLoad { threads, ms } => self.load.extend(cpu_load(*threads, Duration::from_millis(*ms))),
            Action::PedalHold { ms } => sim.hold_pedal(*ms),
        }
        Ok(())
    }

    fn inject(&self, actor: &str, fault: InjectedFault) -> Result<(), String> {
        if self.tower.inject_fault(actor, fault) {
            Ok(())
        } else {
            Err(format!("no actor {actor:?} in this tower (running: {})", self.tower.injectable_actors().join(", ")))
        }
    }
}

/// Result of a run: the record and the trace, judged elsewhere.
pub struct RunOutput {
    pub record: RunRecord,
    pub trace: Trace,
    pub seed: u64,
    pub time_scale: f64,
}

/// A progress bar on a terminal; a line per quarter of the run otherwise (CI logs).
struct Progress {
    enabled: bool,
    tty: bool,
    quarter: usize,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        Progress { enabled, tty: std::io::stderr().is_terminal(), quarter: 0 }
    }

    fn show(&mut self, t: f64, total: f64, events: usize, faults: usize) {
        if !self.enabled {
            return;
        }
        let frac = (t / total).clamp(0.0, 1.0);
        let mut e = std::io::stderr();
        if self.tty {
            let width = 30;
            let done = (frac * width as f64) as usize;
            let bar: String = "#".repeat(done) + &".".repeat(width - done);
            let _ = write!(e, "\r[{bar}] {t:7.1}/{total:.0} s  faults {faults:3}  events {events:5}");
            if frac >= 1.0 {
                let _ = writeln!(e);
            }
        } else if (frac * 4.0) as usize > self.quarter {
            self.quarter = (frac * 4.0) as usize;
            let _ = writeln!(e, "  {:3.0} %  {t:.1}/{total:.0} s  faults {faults}  events {events}", frac * 100.0);
        }
        let _ = e.flush();
    }
}

/// Run `s` and record everything. The caller judges and reports.
pub async fn run(s: &Scenario, opts: &RunOptions) -> Result<RunOutput, RunError> {
    let seed = opts.seed.unwrap_or(s.seed);
    let time_scale = if opts.realtime { 1.0 } else { s.time_scale };
    std::fs::create_dir_all(&opts.out).map_err(io_err(&opts.out))?;
    let mut cfg = tower_config(s, seed, time_scale, &opts.out)?;
    let mut broker = None;
    if s.broker == BrokerKind::Mosquitto {
        let m = Mosquitto::start(&opts.out)?;
        cfg.telemetry.broker = BrokerConfig::external("127.0.0.1", m.port());
        // The observer retries every 50 ms: it is back before the tower replays.
        cfg.telemetry.backoff_initial_ms = 1000;
        cfg.telemetry.backoff_max_ms = 1000;
        broker = Some(m);
    }
    let p1 = cfg.devices.insufflator.set_pressure_mmhg;
    let frame_interval_ms = match &cfg.video.source {
        crate::video_config::SourceConfig::Synthetic { fps, .. } => 1000.0 / fps,
        _ => 1000.0 / 30.0,
    };
    let limits = Limits {
        p1_mmhg: p1,
        p2_mmhg: relief_threshold(p1),
        supply_low_bar: cfg.devices.insufflator.supply_low_bar,
        led_max_c: cfg.safety.led_max_c,
        frame_interval_ms,
    };
    let camera = CameraFaultSwitch::default();
    let source = faulty_source(crate::video_source::factory(&cfg.video.source), camera.clone());
    let model_path = PathBuf::from(&cfg.video.inference.detector_model);
    let model_copy = if cfg.video.enabled { std::fs::read(&model_path).map_err(io_err(&model_path))? } else { Vec::new() };
    let wall0 = Instant::now();
    let tower = Tower::start_with_source(cfg.clone(), source).await?;
    if opts.break_safety_island {
        tracing::error!("TEST BUILD: safety island interlocks disabled");
        tower.safety().hooks().interlocks_disabled.store(true, Ordering::Release);
    }
    let embedded = tower.telemetry().and_then(|t| t.embedded.as_ref().map(|(b, _)| b.addr));
    let observer = match (s.broker, &broker, embedded) {
        (BrokerKind::Mosquitto, Some(m), _) => Some(Observer::start(m.addr(), &format!("endotower/v1/{}", cfg.tower.id), false)),
        (BrokerKind::Embedded, _, Some(addr)) => {
            Some(Observer::start(addr, &format!("endotower/v1/{}", cfg.tower.id), cfg.telemetry.broker.password_file.is_some()))
        }
        _ => None,
    };
    let mut live = Live { load: Vec::new(), tower, camera, broker, observer, model_path, model_copy, fs_dir: journal_fs::current() };
    let warm = warm_up(&live, &cfg).await;
    if let Err(why) = warm {
        live.tower.shutdown().await;
        return Err(RunError::Warmup(why));
    }
    let warmup_s = wall0.elapsed().as_secs_f64();
    // t = 0: from here on every event is recorded.
    let start = Instant::now();
    let recorder = Arc::new(EventRecorder::new(start, time_scale));
    live.tower.events().add_sink(recorder.clone());
    if let Ok(mut d) = live.tower.video().display.lock() {
        d.max_interval = Duration::ZERO;
    }

    let failsafe_at_start: Vec<u64> =
        live.tower.sim().map(|sim| Device::ALL.iter().map(|d| sim.failsafe_entries(*d)).collect()).unwrap_or_default();
    let mut timeline: Vec<Step> = s.timeline.clone();
    if let Some(r) = &s.random_faults {
        timeline.extend(super::random_faults::draw(r, seed, s.duration_s, limits.p2_mmhg, limits.led_max_c));
        timeline.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    }
    let mut record = RunRecord { frame_interval_ms, video: cfg.video.enabled, warmup_s, ..Default::default() };
    let mut samples = Vec::new();
    let mut markers = Vec::new();
    let mut next_step = 0;
    let mut next_sample = start;
    let mut last_shown = (0u64, start);
    let mut last_dropout = (live.tower.video().capture.dropouts.load(Ordering::Relaxed), None::<Instant>);
    let mut last_progress = start;
    let mut last_children = start;
    let mut bar = Progress::new(opts.progress);
    let mut seen_events = 0;
    let scenario_now = |at: Instant| at.duration_since(start).as_secs_f64() * time_scale;
    loop {
        let now = Instant::now();
        let t = scenario_now(now);
        while next_step < timeline.len() && timeline[next_step].at_s <= t {
            let step = &timeline[next_step];
            let error = live.act(&step.action).await.err();
            if let Some(e) = &error {
                tracing::error!(at_s = step.at_s, action = step.action.label(), "scenario step failed: {e}");
            }
            let done_s = scenario_now(Instant::now());
            let kind = if step.action.is_fault() { MarkerKind::Fault } else { MarkerKind::Action };
            markers.push(Marker { t_s: done_s, kind, label: step.action.label() });
            record.actions.push(ActionRecord {
                at_s: step.at_s,
                done_s,
                label: step.action.label(),
                fault: step.action.is_fault(),
                error,
                may_fail: step.may_fail,
            });
            next_step += 1;
        }
        if now >= next_sample {
            let sim = live.tower.sim().ok_or_else(|| RunError::Warmup("simulators gone".into()))?;
            let (ins, light) = (sim.insufflator(), sim.light());
            samples.push(Sample {
                t_s: t,
                pressure_mmhg: ins.pressure_mmhg,
                flow_lpm: ins.flow_lpm,
                supply_bar: ins.supply_bar,
                led_temp_c: light.led_temp_c,
                light_output_pct: light.output_pct,
                relief_open: ins.relief_open,
                rss_mib: rss_mib(),
                display_gap_ms: f64::NAN,
                ai_online: f64::NAN,
            });
            record.p1_mmhg.push(live.tower.setpoints().pressure_mmhg());
            if record.video {
                let (shown, max_interval) = match live.tower.video().display.lock() {
                    Ok(mut d) => (d.shown, std::mem::replace(&mut d.max_interval, Duration::ZERO)),
                    Err(_) => (last_shown.0, Duration::ZERO),
                };
                if shown != last_shown.0 {
                    last_shown = (shown, now);
                }
                let ongoing = now.duration_since(last_shown.1);
                let gap = max_interval.max(ongoing);
                let dropouts = live.tower.video().capture.dropouts.load(Ordering::Relaxed);
                if dropouts != last_dropout.0 {
                    last_dropout = (dropouts, Some(now));
                }
                let by_source = last_dropout.1.is_some_and(|d| d + gap + SAMPLE_PERIOD >= now);
                record.display_gaps.push((t, gap.as_secs_f64() * 1000.0, by_source));
                let online = matches!(*live.tower.video().ai.status.borrow(), AiStatus::Online);
                if matches!(*live.tower.video().ai.status.borrow(), AiStatus::Offline { .. }) {
                    record.ai_went_offline = true;
                }
                if let Some(s) = samples.last_mut() {
                    s.display_gap_ms = gap.as_secs_f64() * 1000.0;
                    s.ai_online = if online { 1.0 } else { 0.0 };
                }
            }
            next_sample += SAMPLE_PERIOD;
            if next_sample < now {
                next_sample = now + SAMPLE_PERIOD;
            }
        }
        if now.duration_since(last_children) >= CHILDREN_PERIOD {
            last_children = now;
            record.children_down.push((t, children_down(&live.tower).await));
        }
        if now.duration_since(last_progress) >= Duration::from_millis(200) {
            last_progress = now;
            seen_events = recorder.len();
            bar.show(t, s.duration_s, seen_events, record.actions.iter().filter(|a| a.fault).count());
        }
        if t >= s.duration_s {
            break;
        }
        let next_due = timeline.get(next_step).map(|st| start + Duration::from_secs_f64(st.at_s / time_scale)).unwrap_or(next_sample);
        tokio::time::sleep_until(next_sample.min(next_due).into()).await;
    }
    bar.show(s.duration_s, s.duration_s, seen_events.max(recorder.len()), record.actions.iter().filter(|a| a.fault).count());
    record.wall_s = start.elapsed().as_secs_f64();
    record.sim_s = s.duration_s;
    // Alarms raised at the end get a moment to reach MQTT.
    if live.observer.is_some() {
        if let Some(t) = live.tower.telemetry() {
            let end = Instant::now() + Duration::from_secs(10);
            while t.journal.stats().unacked > 0 && Instant::now() < end {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    record.end = end_state(&live.tower).await;
    if let Some(sim) = live.tower.sim() {
        record.failsafe_entries = Device::ALL
            .iter()
            .zip(&failsafe_at_start)
            .map(|(d, n0)| (d.name().to_string(), sim.failsafe_entries(*d).saturating_sub(*n0)))
            .collect();
    }
    live.tower.events().clear_sinks();
    record.events = recorder.take();
    if let Some(o) = &live.observer {
        let r = o.received();
        record.mqtt_events = Some(r.events.clone());
        record.mqtt_replies = r.replies.clone();
        record.mqtt_connects = r.connects;
    }
    for (t, e) in &record.events {
        if let Some(m) = event_marker(*t, e) {
            markers.push(m);
        }
    }
    markers.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    let Live { tower, broker, observer, load, .. } = live;
    for h in load {
        let _ = h.join();
    }
    drop(observer);
    tower.shutdown().await;
    drop(broker);
    let trace = Trace { scenario: s.name.clone(), limits, samples, markers };
    Ok(RunOutput { record, trace, seed, time_scale })
}

/// Alarms, restarts and interlock trips become plot markers.
fn event_marker(t_s: f64, e: &Event) -> Option<Marker> {
    let (kind, label) = match e.kind {
        EventKind::AlarmRaised if e.source == "safety" && e.code.starts_with("HZ-") => (MarkerKind::Trip, format!("trip {}", e.code)),
        EventKind::AlarmRaised => (MarkerKind::Alarm, e.code.clone()),
        EventKind::AlarmCleared => (MarkerKind::Clear, format!("clear {}", e.code)),
        // "<child> running again (restart N)"
        EventKind::SupervisorRestart if e.code == "STARTED" => {
            (MarkerKind::Restart, format!("up {}", e.message.split_whitespace().next().unwrap_or("?")))
        }
        // "restarting <child> in N ms (...)"
        EventKind::SupervisorRestart => (MarkerKind::Restart, format!("restart {}", e.message.split_whitespace().nth(1).unwrap_or("?"))),
        EventKind::Meltdown => (MarkerKind::Restart, format!("meltdown {}", e.source.rsplit('.').next().unwrap_or("?"))),
        EventKind::Interlock => (MarkerKind::Trip, e.code.clone()),
        _ => return None,
    };
    Some(Marker { t_s, kind, label })
}

/// Links up, island cycling, the cavity near its set pressure, video and AI
/// running, telemetry connected.
async fn warm_up(live: &Live, cfg: &TowerConfig) -> Result<(), String> {
    let end = Instant::now() + WARMUP_LIMIT;
    loop {
        let t = &live.tower;
        let mut waiting = Vec::new();
        let ins = t.channels().insufflator.borrow().clone();
        if ins.link != LinkState::Connected {
            waiting.push(format!("insufflator link {:?}", ins.link));
        }
        if t.channels().light.borrow().link != LinkState::Connected {
            waiting.push("light link".to_string());
        }
        if t.safety().with(|i| i.stats().cycles.load(Ordering::Relaxed)).unwrap_or(0) < 10 {
            waiting.push("safety island".into());
        }
        let p = t.sim().map_or(0.0, |s| s.insufflator().pressure_mmhg);
        if (p - cfg.devices.insufflator.set_pressure_mmhg).abs() > 1.0 {
            waiting.push(format!("cavity pressure {p:.1} mmHg"));
        }
        if cfg.video.enabled {
            if t.video().display.lock().map_or(0, |d| d.shown) < 10 {
                waiting.push("video".into());
            }
            if !matches!(*t.video().ai.status.borrow(), AiStatus::Online) {
                waiting.push("AI".into());
            }
        }
        if let Some(tm) = t.telemetry() {
            if tm.stats.births.load(Ordering::Relaxed) == 0 {
                waiting.push("MQTT".into());
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() > end {
            return Err(format!("still waiting for {}", waiting.join(", ")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Supervised children not running now, as `supervisor/child` (a
/// supervisor that does not answer counts as down itself).
async fn children_down(t: &Tower) -> Vec<String> {
    let mut down = Vec::new();
    for sup in ["root", "devices", "video", "analysis"] {
        match t.supervisor_status(sup).await {
            Some(list) => down.extend(list.into_iter().filter(|c| !c.running).map(|c| format!("{sup}/{}", c.name))),
            None if sup == "root" || t.config().video.enabled || !matches!(sup, "video" | "analysis") => {
                down.push(format!("{sup} (no answer)"))
            }
            None => {}
        }
    }
    down
}

async fn end_state(t: &Tower) -> EndState {
    let mut children = Vec::new();
    for sup in ["root", "devices", "video", "analysis"] {
        if let Some(list) = t.supervisor_status(sup).await {
            children.extend(list.into_iter().map(|c| (sup.to_string(), c)));
        }
    }
    let (shown, skipped, reordered) = t.video().display.lock().map_or((0, 0, 0), |d| (d.shown, d.skipped, d.reordered));
    EndState {
        root_running: t.root_running(),
        children,
        set_pressure_mmhg: t.setpoints().pressure_mmhg(),
        intensity_pct: t.setpoints().intensity_pct(),
        safe_state: t.setpoints().safe_state(),
        ai_online: matches!(*t.video().ai.status.borrow(), AiStatus::Online),
        active_alarms: t.events().active_alarms().into_iter().map(|(e, _)| e.key()).collect(),
        display_shown: shown,
        display_skipped: skipped,
        display_reordered: reordered,
        capture_rejected: t.video().capture.rejected.load(Ordering::Relaxed),
    }
}

/// Why a scenario could not produce a report.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(transparent)]
    File(#[from] super::file::ScenarioFileError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    JournalFs(#[from] journal_fs::JournalFsError),
    #[error("plots: {0}")]
    Plot(#[from] super::plots::PlotError),
    #[error("cannot write the report in {dir}: {source}")]
    Report { dir: String, source: std::io::Error },
}

/// Run, judge, plot and report. Returns the report (its `pass` is the verdict).
pub async fn run_and_report(s: &Scenario, opts: &RunOptions) -> Result<super::report::Report, ScenarioError> {
    let out = run(s, opts).await?;
    let outcomes = super::invariants::judge(&s.invariants, &out.record, &out.trace, out.time_scale);
    let plots = super::plots::render(&out.trace, &opts.out)?;
    let report = super::report::Report::new(s, &out.record, &out.trace, outcomes, out.seed, out.time_scale, &plots);
    report.write(&out.record, &opts.out).map_err(|source| ScenarioError::Report { dir: opts.out.display().to_string(), source })?;
    std::fs::write(opts.out.join("trace.json"), serde_json::to_vec(&out.trace).unwrap_or_default())
        .map_err(|source| ScenarioError::Report { dir: opts.out.display().to_string(), source })?;
    Ok(report)
}
