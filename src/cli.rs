//! The `endotower` command line.

use crate::bench;
use crate::logging::{self, LogFormat};
use crate::tower::{start_simulators, Tower};
use crate::tower_config::{TowerConfig, DEFAULT_CONFIG};
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use endotower_actors::display::config::OutputKind;
use endotower_actors::display::window::{WindowOptions, WindowOutput};
use endotower_sim::Device;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "endotower", version, about = "Supervision runtime of an integrated endoscopy / laparoscopy tower")]
struct Cli {
    /// Log output format.
    #[arg(long, value_enum, default_value = "human", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum DisplayArg {
    Window,
    Headless,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the tower (with in-process simulators when `sim.embedded = true`).
    Run {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Stop by itself after this many seconds (default: run until Ctrl-C).
        #[arg(long, value_parser = parse_duration_s)]
        duration_s: Option<f64>,
        /// Exam number, overriding `video.exam.number`.
        #[arg(long)]
        exam_number: Option<String>,
        /// Patient sex (F, M, X), overriding `video.exam.sex`.
        #[arg(long)]
        exam_sex: Option<String>,
        /// Patient age in years, overriding `video.exam.age`.
        #[arg(long)]
        exam_age: Option<u32>,
        /// The kind of exam, overriding `video.exam.procedure`: lesion alarms
        /// are raised only where the detector's model card lists it.
        #[arg(long, value_parser = ["colonoscopy", "gastroscopy", "laparoscopy", "unspecified"])]
        exam_procedure: Option<String>,
        /// Where the picture goes (`window`: a monitor window with the HMI
        /// keys; `headless`), overriding `video.display.output`.
        #[arg(long, value_enum)]
        display: Option<DisplayArg>,
    },
    /// Validate a config file and exit.
    CheckConfig {
        #[arg(default_value = DEFAULT_CONFIG)]
        file: PathBuf,
    },
    /// Run only the device simulators, on the device addresses of the config.
    Sim {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Run the tower headless and write one composed frame as a PNG.
    Snapshot {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Seconds after start-up.
        #[arg(long, default_value_t = 3.0)]
        at: f64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Run a benchmark: interlock, handover, video, annotation, restart, display, enhance, mqtt, remote-inference.
    Bench {
        name: String,
        /// A shorter run (under 60 s).
        #[arg(long)]
        quick: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Probe a device over Modbus TCP against docs/device-interface.md and
    /// print what fails (run it with no tower connected to the device).
    DeviceCheck {
        /// host:port of the device.
        addr: std::net::SocketAddr,
        #[arg(long, value_enum)]
        device: crate::device_check::DeviceKind,
        /// Unit id (default: the device's, 1..4).
        #[arg(long)]
        unit: Option<u8>,
        /// The island's request timeout to judge response times against.
        #[arg(long, default_value_t = 1500)]
        timeout_us: u64,
    },
    /// Print the Modbus register maps as Markdown (with --requests: every
    /// request the tower makes of each device).
    Registers {
        #[arg(long)]
        requests: bool,
    },
    /// Run only the embedded MQTT broker (a mosquitto process), until Ctrl-C.
    Broker {
        /// Listen address (default: `telemetry.broker.bind` of the config).
        #[arg(long)]
        bind: Option<String>,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Write the JSON Schemas of every MQTT payload (docs/schema/*.json).
    MqttSchema {
        #[arg(long, default_value = "docs/schema")]
        out: PathBuf,
    },
    /// Evaluate a model: `detector`, on a held-out synthetic set (`--frames N`)
    /// or on labelled frames (`--frames DIR [--labels FILE]`, the format of
    /// shared/real-frames/labels.json).
    Eval {
        name: String,
        /// A number of synthetic frames, or a directory of labelled frames.
        #[arg(long, default_value = "1500")]
        frames: String,
        /// The labels of `--frames DIR` (default: DIR/labels.json).
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Seed of the held-out set (training uses other seeds).
        #[arg(long, default_value_t = 1001)]
        seed: u64,
        /// Evaluate every N-th delivered frame (consecutive frames are alike).
        #[arg(long, default_value_t = 10)]
        stride: usize,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Failure-injection scenarios (conf/scenarios/, docs/fault-matrix.md);
    /// only in builds with the `fault-injection` feature.
    #[cfg(feature = "fault-injection")]
    Scenario {
        #[command(subcommand)]
        cmd: ScenarioCmd,
    },
    /// Write a training/evaluation set from the synthetic endoscopy source:
    /// PPM frames plus `truth.jsonl` (see models/README.md).
    Dataset {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1000)]
        frames: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output size WxH (frames are area-resized to it).
        #[arg(long, default_value = "320x320")]
        size: String,
        /// Keep every N-th delivered frame (consecutive frames are alike).
        #[arg(long, default_value_t = 1)]
        stride: usize,
    },
}

#[cfg(feature = "fault-injection")]
#[derive(Subcommand, Debug)]
enum ScenarioCmd {
    /// Run a scenario: report.json, report.md and PNG plots in --out; the
    /// exit status is non-zero when an invariant fails.
    Run {
        file: PathBuf,
        /// Seed of the simulators and the random faults (default: the file's).
        #[arg(long)]
        seed: Option<u64>,
        /// Output directory (default: scenario-runs/<name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run the slow physics in real time too (ignore the file's time_scale).
        #[arg(long)]
        realtime: bool,
    },
    /// Parse and check scenario files without running them.
    Check { files: Vec<PathBuf> },
    /// A Markdown table of the reports under DIR (one subdirectory per run).
    Summary { dir: PathBuf },
}

#[cfg(feature = "fault-injection")]
fn scenario_cmd(rt: &tokio::runtime::Runtime, cmd: ScenarioCmd) -> Result<()> {
    use crate::scenario::{file::Scenario, journal_fs, runner};
    match cmd {
        ScenarioCmd::Check { files } => {
            for f in &files {
                let s = Scenario::load(f)?;
                println!("{}: ok ({}: {} steps, {} invariants)", f.display(), s.name, s.timeline.len(), s.invariants.len());
            }
            Ok(())
        }
        ScenarioCmd::Summary { dir } => {
            print!("{}", crate::scenario::report::summary_table(&dir).with_context(|| format!("reading reports in {}", dir.display()))?);
            Ok(())
        }
        ScenarioCmd::Run { file, seed, out, realtime } => {
            let s = Scenario::load(&file)?;
            let out = out.unwrap_or_else(|| PathBuf::from("scenario-runs").join(&s.name));
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            if let (Some(kib), None) = (s.journal_fs_kib, journal_fs::current()) {
                // The journal needs its own small filesystem: run in a namespace.
                std::process::exit(journal_fs::reexec_in_namespace(kib, &out)?);
            }
            // Injected panics are expected: one line each, no backtrace (the report has the story).
            std::panic::set_hook(Box::new(|info| eprintln!("panic (recorded by the scenario): {info}")));
            let opts = runner::RunOptions { seed, out: out.clone(), realtime, progress: true, break_safety_island: false };
            eprintln!("scenario {}: {}", s.name, s.description);
            let report = rt.block_on(runner::run_and_report(&s, &opts))?;
            for o in &report.invariants {
                println!("{} {}: {}", if o.pass { "pass" } else { "FAIL" }, o.invariant, o.worst);
            }
            for a in report.timeline.iter().filter(|a| a.error.is_some() && !a.may_fail) {
                println!("FAIL step at {:.2} s ({}): {}", a.at_s, a.label, a.error.as_deref().unwrap_or_default());
            }
            println!("{}: {} (report in {})", s.name, if report.pass { "PASS" } else { "FAIL" }, out.join("report.md").display());
            if !report.pass {
                bail!("scenario {} failed", s.name);
            }
            Ok(())
        }
    }
}

fn parse_size(s: &str) -> Result<(u32, u32)> {
    let (w, h) = s.split_once('x').with_context(|| format!("--size {s:?}: expected WxH, e.g. 320x320"))?;
    let w: u32 = w.parse().with_context(|| format!("--size {s:?}: width {w:?} is not a number"))?;
    let h: u32 = h.parse().with_context(|| format!("--size {s:?}: height {h:?} is not a number"))?;
    if !(16..=4096).contains(&w) || !(16..=4096).contains(&h) {
        bail!("--size {s:?}: each side must be 16..=4096");
    }
    Ok((w, h))
}

/// Longest `--duration-s` accepted: a year.
const MAX_DURATION_S: f64 = 365.0 * 24.0 * 3600.0;

/// A run length in seconds: finite, above 0, at most a year.
fn parse_duration_s(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if v.is_finite() && v > 0.0 && v <= MAX_DURATION_S {
        Ok(v)
    } else {
        Err(format!("{s} is outside 0 < seconds <= {MAX_DURATION_S} (one year)"))
    }
}

/// Load a config. The default one (`conf/tower.toml`) is found from any
/// working directory: when it is not under the current one, the tower works
/// in its own directory (`$ENDOTOWER_HOME`, else the nearest ancestor of the
/// executable holding `conf/tower.toml`), where the relative paths in the
/// config (models, archive, journal) belong, and says so.
fn load(path: &std::path::Path) -> Result<TowerConfig> {
    if path == std::path::Path::new(DEFAULT_CONFIG) && !path.is_file() {
        if let Some(home) = crate::tower_config::tower_home() {
            std::env::set_current_dir(&home).with_context(|| format!("changing to the tower's directory {}", home.display()))?;
            eprintln!("endotower: working in {} (its {DEFAULT_CONFIG} and the relative paths in it)", home.display());
        }
    }
    TowerConfig::load(path).map_err(anyhow::Error::from)
}

/// Until Ctrl-C (SIGINT), SIGTERM or, when given, `duration_s` has passed.
async fn wait_stop(duration_s: Option<f64>) {
    let timer = async {
        match duration_s {
            Some(s) => tokio::time::sleep(Duration::from_secs_f64(s.clamp(0.0, MAX_DURATION_S))).await,
            None => std::future::pending().await,
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot watch for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = timer => {}
        () = term => tracing::info!("SIGTERM: stopping"),
        r = tokio::signal::ctrl_c() => match r {
            Ok(()) => tracing::info!("Ctrl-C: stopping"),
            Err(e) => tracing::error!("cannot wait for Ctrl-C: {e}; stopping"),
        },
    }
}

async fn run(
    config: PathBuf,
    duration_s: Option<f64>,
    exam: (Option<String>, Option<String>, Option<u32>, Option<String>),
    display: Option<DisplayArg>,
) -> Result<()> {
    let mut cfg = load(&config)?;
    match display {
        Some(DisplayArg::Window) => cfg.video.display.output = OutputKind::Window,
        Some(DisplayArg::Headless) => cfg.video.display.output = OutputKind::Headless,
        None => {}
    }
    let e = &mut cfg.video.exam;
    if let Some(n) = exam.0 {
        e.number = n;
    }
    if let Some(s) = exam.1 {
        e.sex = s;
    }
    if let Some(a) = exam.2 {
        e.age = a;
    }
    if let Some(p) = exam.3 {
        e.procedure = serde_json::from_value(serde_json::Value::String(p)).context("--exam-procedure")?;
    }
    cfg.validate().context("the config with the command-line overrides")?;
    if cfg.safety.realtime_priority {
        match crate::memory_policy::lock_all() {
            Ok(()) => tracing::info!("memory locked (mlockall): no page faults in the real-time threads"),
            Err(e) => tracing::warn!("cannot lock memory ({e}): real-time threads may wait on page faults"),
        }
    }
    let window_wanted = cfg.video.enabled && cfg.video.display.output == OutputKind::Window;
    let (w, h) = cfg.video.source.nominal_size().unwrap_or((1280, 720));
    let title = format!("endotower {}", cfg.tower.id);
    let tower = Tower::start(cfg).await.context("starting the tower")?;
    let window = if window_wanted {
        let (slot, hmi) = (tower.video().composed.clone(), tower.hmi_port());
        let opts = WindowOptions { title, width: w, height: h };
        match tokio::task::spawn_blocking(move || WindowOutput::open(opts, slot, Some(hmi))).await {
            Ok(Ok(win)) => Some(win),
            Ok(Err(e)) => {
                tower.shutdown().await;
                bail!("{e}");
            }
            Err(e) => {
                tower.shutdown().await;
                bail!("the window thread failed: {e}");
            }
        }
    } else {
        None
    };
    let window_closed = async {
        match &window {
            Some(win) => {
                let mut closed = win.closed();
                let _ = closed.wait_for(|c| *c).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    let watch_root = async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if !tower.root_running() {
                tracing::error!("control plane stopped (root supervisor meltdown); the safety island keeps the devices in the safe state; Ctrl-C to stop");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = wait_stop(duration_s) => {}
        () = watch_root => {}
        () = window_closed => tracing::info!("window closed: stopping"),
    }
    if let Some(win) = window {
        let presented = win.stats().presented.load(std::sync::atomic::Ordering::Relaxed);
        tracing::info!(presented, "window: closing");
        let _ = tokio::task::spawn_blocking(move || win.close()).await;
    }
    tower.shutdown().await;
    Ok(())
}

async fn sim(config: PathBuf) -> Result<()> {
    let mut cfg = load(&config)?;
    let host = start_simulators(&mut cfg).context("starting the simulators")?;
    for dev in Device::ALL {
        let addrs: Vec<String> = host.tcp_addrs(dev).iter().map(|a| a.to_string()).collect();
        tracing::info!(device = dev.name(), unit = dev.default_unit(), addrs = ?addrs, "simulator listening");
    }
    wait_stop(None).await;
    host.stop();
    Ok(())
}

fn bench_cmd(name: &str, quick: bool, json: bool, config: PathBuf) -> Result<()> {
    let mut cfg = load(&config)?;
    if name != "mqtt" {
        // The other benchmarks measure the tower without telemetry.
        cfg.telemetry.enabled = false;
    }
    let report = match name {
        "interlock" => bench::interlock::run(cfg, quick)?,
        "video" => bench::video::video(cfg, quick)?,
        "annotation" => bench::video::annotation(cfg, quick)?,
        "restart" => bench::video::restart(cfg, quick)?,
        "display" => bench::display::display(cfg, quick)?,
        "enhance" => bench::enhance::enhance(cfg, quick)?,
        "mqtt" => bench::mqtt::mqtt(cfg, quick)?,
        "remote-inference" => bench::remote_inference::remote_inference(cfg, quick)?,
        #[cfg(feature = "fault-injection")]
        "handover" => bench::handover::run(cfg, quick)?,
        #[cfg(not(feature = "fault-injection"))]
        "handover" => bail!("bench handover stalls the island through a test hook: build with --features fault-injection (./x bench does)"),
        other => bail!("unknown benchmark {other:?}; available: interlock, handover, video, annotation, restart, display, enhance, mqtt, remote-inference"),
    };
    report.print(json);
    Ok(())
}

/// `endotower broker`: the embedded broker (mosquitto, as the tower runs
/// it, with its ACLs when a password file is configured) alone.
async fn broker(bind: Option<String>, config: PathBuf) -> Result<()> {
    use endotower_actors::telemetry::config::BrokerConfig;
    // With --bind and no config file here: anonymous, files in ./broker.
    let (b, tower, dir) = match (bind, config.is_file()) {
        (Some(bind), false) => (BrokerConfig::embedded(&bind), "tower".to_string(), PathBuf::from("broker")),
        (bind, _) => {
            let cfg = load(&config)?;
            let mut b = cfg.telemetry.broker.clone();
            if let Some(bind) = bind {
                b.bind = bind;
            }
            let dir = cfg.telemetry.journal.dir.join(&cfg.tower.id).join("broker");
            (b, cfg.tower.id, dir)
        }
    };
    let broker = crate::embedded_broker::EmbeddedBroker::start(&b, &tower, &dir)?;
    println!("mqtt broker (mosquitto) listening on {}", broker.addr);
    wait_stop(None).await;
    broker.stop();
    Ok(())
}

/// `endotower mqtt-schema`: one JSON Schema file per payload.
fn mqtt_schema(out: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, schema) in endotower_actors::telemetry::payloads::schemas() {
        let path = out.join(name);
        let text = serde_json::to_string_pretty(&schema)? + "\n";
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

fn dispatch(cli: Cli) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("building the tokio runtime")?;
    match cli.cmd {
        Cmd::Run { config, duration_s, exam_number, exam_sex, exam_age, exam_procedure, display } => {
            rt.block_on(run(config, duration_s, (exam_number, exam_sex, exam_age, exam_procedure), display))
        }
        Cmd::CheckConfig { file } => {
            load(&file)?;
            println!("{}: ok", file.display());
            Ok(())
        }
        Cmd::Sim { config } => rt.block_on(sim(config)),
        Cmd::Bench { name, quick, json, config } => bench_cmd(&name, quick, json, config),
        Cmd::Snapshot { config, at, out } => {
            // Before `load`, which may change the working directory.
            let out = std::path::absolute(&out).with_context(|| format!("--out {}", out.display()))?;
            let s = rt.block_on(crate::snapshot::take(load(&config)?, at, &out))?;
            println!("{}: frame {} ({}x{}, {} compositor)", out.display(), s.seq, s.width, s.height, s.renderer);
            Ok(())
        }
        Cmd::DeviceCheck { addr, device, unit, timeout_us } => {
            let unit = unit.unwrap_or(device.default_unit());
            let outcomes = rt.block_on(crate::device_check::check(addr, device, unit, Duration::from_micros(timeout_us)))?;
            if crate::device_check::print(device, addr, &outcomes) {
                Ok(())
            } else {
                bail!("{} does not follow docs/device-interface.md", addr)
            }
        }
        Cmd::Registers { requests } => {
            if requests {
                print!("{}", endotower_actors::device_interface::requests_markdown());
            } else {
                print!("{}", endotower_actors::registers::markdown());
            }
            Ok(())
        }
        Cmd::Broker { bind, config } => rt.block_on(broker(bind, config)),
        Cmd::MqttSchema { out } => mqtt_schema(&out),
        Cmd::Eval { name, frames, labels, seed, stride, json, config } => {
            let cfg = load(&config)?;
            let dir = Path::new(&frames);
            match name.as_str() {
                "detector" if dir.is_dir() => {
                    let labels = labels.unwrap_or_else(|| dir.join("labels.json"));
                    let r = crate::eval_frames::detector(&cfg, dir, &labels)?;
                    if json {
                        println!("{}", serde_json::to_string(&r)?);
                    } else {
                        print!("{}", crate::eval_frames::markdown(&r));
                    }
                    Ok(())
                }
                "detector" => {
                    let frames: usize = frames
                        .parse()
                        .map_err(|_| anyhow::anyhow!("--frames {frames:?}: expected a number of synthetic frames or a directory"))?;
                    let r = crate::eval::detector(&cfg, frames, seed, stride)?;
                    if json {
                        println!("{}", serde_json::to_string(&r)?);
                    } else {
                        println!(
                            "detector on {} held-out frames (seed {}): recall {:.3} precision {:.3} (clear/frozen frames)",
                            r.frames, r.seed, r.recall, r.precision
                        );
                        println!("  motion-blurred frames: recall {:.3} precision {:.3}", r.blurred.recall(), r.blurred.precision());
                        for (n, c) in &r.per_class {
                            println!("  {n:<13} truths {:>5} recall {:.3} precision {:.3}", c.truths, c.recall(), c.precision());
                        }
                        println!("  mean inference {:.2} ms", r.mean_inference_ms);
                    }
                    Ok(())
                }
                other => bail!("unknown evaluation {other:?}; available: detector"),
            }
        }
        #[cfg(feature = "fault-injection")]
        Cmd::Scenario { cmd } => scenario_cmd(&rt, cmd),
        Cmd::Dataset { out, frames, seed, size, stride } => {
            let size = parse_size(&size)?;
            let cfg = endotower_sim::video::SyntheticConfig { seed, ..Default::default() };
            let n = crate::dataset::write(&out, cfg, frames, size, stride)?;
            println!("{}: {n} frames", out.display());
            Ok(())
        }
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let memory = crate::memory_policy::apply();
    let cli = Cli::parse();
    // A benchmark prints its report; its per-event logs would drown it.
    // A scenario draws a progress bar; the injected faults' logs go to its report.
    let default_filter = match cli.cmd {
        Cmd::Bench { .. } => "warn,endotower_actors::events=off",
        #[cfg(feature = "fault-injection")]
        Cmd::Scenario { .. } => "off",
        _ => "info",
    };
    logging::init(cli.log_format, default_filter);
    tracing::debug!(?memory, "allocator policy");
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
