//! `bench remote-inference`: 1, 4 and 8 towers (720p60 synthetic, automatic
//! picks, one frame in flight each) against one inference server over the
//! Open Inference Protocol, as a hospital's towers share one AI service.
//!
//! Per tower count: the annotation delay (capture stamp to result) of every
//! tower's results, the server's results per second over all towers, and the
//! pass-through delay (capture to display sink), which the AI path must not
//! change; plus one tower on the local backend for reference.
//!
//! The server is the `kserve` test peer (tests/peers/kserve_detector.py, in
//! the venv `./x setup` makes), started on loopback for the run; set
//! `ENDOTOWER_INFERENCE_SERVER=http://host:port` to measure a server of your
//! own (model `lesion_detector`). All towers share this process and its two
//! cores with the server: the figures are for this machine, not a fleet.

use super::video::with_source;
use super::{BenchReport, Stats};
use crate::tower::Tower;
use crate::tower_config::TowerConfig;
use anyhow::{bail, Context, Result};
use endotower_actors::display::config::RendererChoice;
use endotower_actors::video::ai_state::AiStatus;
use endotower_actors::video::backend::BackendKind;
use endotower_actors::video::remote::RemoteConfig;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The kserve peer, stopped when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_server() -> Result<(Server, String)> {
    let python = ".deps/venv/bin/python";
    if !std::path::Path::new(python).is_file() {
        bail!("{python} not found: run ./x setup (or set ENDOTOWER_INFERENCE_SERVER)");
    }
    let (grpc, http) = (free_port()?, free_port()?);
    let mut child = Command::new(python)
        .args(["tests/peers/kserve_detector.py", "--grpc-port", &grpc.to_string(), "--http-port", &http.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the kserve peer")?;
    let out = child.stdout.take().context("the peer's stdout")?;
    let server = Server(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with("READY") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60)).context("the kserve peer did not come up in 60 s")?;
    Ok((server, format!("http://127.0.0.1:{grpc}")))
}

/// One tower's config: 720p60, automatic picks, this backend.
fn tower_cfg(cfg: &TowerConfig, i: usize, remote: Option<&str>) -> TowerConfig {
    let mut c = with_source(cfg, 1280, 720, 60.0, RendererChoice::None);
    c.tower.id = format!("bench-{i}");
    c.video.analysis.auto_interval_ms = 0;
    // Many towers share two cores here: none gets a real-time class.
    c.safety.realtime_priority = false;
    c.video.realtime_priority = false;
    c.use_free_loopback_ports();
    if let Some(address) = remote {
        c.video.inference.backend = BackendKind::Remote;
        c.video.inference.remote = Some(RemoteConfig {
            address: address.to_string(),
            model_name: "lesion_detector".into(),
            model_version: String::new(),
            retry_initial_ms: 100,
            retry_max_ms: 1000,
            fallback_local: false,
        });
    }
    c
}

struct Run {
    annotation_ms: Vec<f64>,
    pass_through_us: Vec<f64>,
    results: usize,
    skipped: u64,
    elapsed: Duration,
    /// Towers whose AI was online when the measurement began.
    online_at_start: usize,
}

async fn run(cfg: &TowerConfig, towers: usize, remote: Option<&str>, secs: f64) -> Result<Run> {
    let mut started = Vec::new();
    for i in 0..towers {
        started.push(Tower::start(tower_cfg(cfg, i, remote)).await.with_context(|| format!("starting tower {i}"))?);
    }
    // On two shared cores eight towers take a while: wait, then measure
    // whatever came online (the count is reported).
    let online = || started.iter().filter(|t| *t.video().ai.status.borrow() == AiStatus::Online).count();
    let end = Instant::now() + Duration::from_secs(60);
    while online() < towers && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let online_at_start = online();
    let marks: Vec<usize> = started.iter().map(|t| t.video().display.lock().map(|d| d.delays_us.len()).unwrap_or(0)).collect();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for t in &started {
        let mut rx = t.video().ai.result.subscribe();
        rx.borrow_and_update();
        tasks.push(tokio::spawn(async move {
            let mut delays = Vec::new();
            while t0.elapsed() < Duration::from_secs_f64(secs) {
                if tokio::time::timeout(Duration::from_millis(200), rx.changed()).await.is_ok_and(|r| r.is_ok()) {
                    if let Some(r) = rx.borrow_and_update().as_ref() {
                        delays.push(r.annotation_delay().as_secs_f64() * 1e3);
                    }
                }
            }
            delays
        }));
    }
    let mut annotation_ms = Vec::new();
    for task in tasks {
        annotation_ms.extend(task.await?);
    }
    let elapsed = t0.elapsed();
    let (mut pass_through_us, mut skipped) = (Vec::new(), 0);
    for (t, mark) in started.iter().zip(marks) {
        let d = t.video().display.lock().map(|d| d.clone()).unwrap_or_default();
        pass_through_us.extend(d.delays_us[mark.min(d.delays_us.len())..].iter().map(|x| f64::from(*x)));
        skipped += d.skipped;
    }
    for t in started {
        t.shutdown().await;
    }
    Ok(Run { results: annotation_ms.len(), annotation_ms, pass_through_us, skipped, elapsed, online_at_start })
}

pub fn remote_inference(cfg: TowerConfig, quick: bool) -> Result<BenchReport> {
    let secs = if quick { 8.0 } else { 30.0 };
    let (server, address) = match std::env::var("ENDOTOWER_INFERENCE_SERVER") {
        Ok(a) => (None, a),
        Err(_) => {
            let (s, a) = start_server()?;
            (Some(s), a)
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut runs = Vec::new();
    let mut all = Vec::new();
    let mut notes = serde_json::Map::new();
    notes.insert("server".into(), address.clone().into());
    let plan: [(&str, usize, Option<&str>); 4] =
        [("local x1", 1, None), ("remote x1", 1, Some(&address)), ("remote x4", 4, Some(&address)), ("remote x8", 8, Some(&address))];
    for (label, towers, remote) in plan {
        let r = rt.block_on(run(&cfg, towers, remote, secs))?;
        let a = Stats::of(label, &r.annotation_ms);
        let p = Stats::of(label, &r.pass_through_us);
        notes.insert(
            label.to_string(),
            serde_json::json!({
                "towers": towers,
                "ai_online_at_start": r.online_at_start,
                "results_per_s": r.results as f64 / r.elapsed.as_secs_f64(),
                "results_per_s_per_tower": r.results as f64 / r.elapsed.as_secs_f64() / towers as f64,
                "pass_through_us": {"p50": p.p50, "p99": p.p99, "max": p.max, "n": p.n},
                "display_skipped": r.skipped,
            }),
        );
        if remote.is_some() {
            all.extend_from_slice(&r.annotation_ms);
        }
        runs.push(a);
    }
    drop(server);
    let total = Stats::of("remote, all", &all);
    Ok(BenchReport::new("remote-inference", "ms (annotation delay)", &total, runs, notes.into()))
}
