//! Video benchmarks, run on a whole tower with the synthetic source:
//! - `video`: pass-through delay the pipeline adds, from the capture stamp to
//!   the display sink taking the frame (no compositing: `bench display` adds
//!   it), at 720p60 and 1080p30, with the AI running and with it crashing
//!   every few results;
//! - `annotation`: capture stamp to result available, and inference rate;
//! - `restart`: inference actor panic to "AI online" again.

use super::{BenchReport, Stats};
use crate::tower::Tower;
use crate::tower_config::TowerConfig;
use crate::video_config::SourceConfig;
use anyhow::{Context, Result};
use endotower_actors::display::config::RendererChoice;
use endotower_actors::video::ai_state::AiStatus;
use endotower_actors::video::inference::InferenceMsg;
use std::time::{Duration, Instant};

/// `cfg` with the synthetic source at this size and rate and this renderer.
pub(super) fn with_source(cfg: &TowerConfig, width: u32, height: u32, fps: f64, renderer: RendererChoice) -> TowerConfig {
    let mut c = cfg.clone();
    c.video.enabled = true;
    c.video.display.renderer = renderer;
    c.video.source = SourceConfig::Synthetic { width, height, fps, seed: 1 };
    // Status lines as rarely as the status actor's hang timeout allows.
    c.tower.status_interval_ms = c.supervision.children.status.hang_timeout_ms.map_or(2_000, |h| h / 2);
    c
}

async fn wait_online(t: &Tower, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if *t.video().ai.status.borrow() == AiStatus::Online {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Run one configuration; returns display delays (us), frames shown and skipped.
pub(super) async fn pass_through(cfg: TowerConfig, secs: f64, crash_every: Option<usize>) -> Result<(Vec<f64>, u64, u64, u64)> {
    let tower = Tower::start(cfg).await.context("starting the tower")?;
    let _ = wait_online(&tower, Duration::from_secs(10)).await;
    let v = tower.video().clone();
    let start_stats = v.display.lock().map(|d| d.delays_us.len()).unwrap_or(0);
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut results = v.ai.result.subscribe();
    let mut crashes = 0u64;
    let mut n = 0usize;
    while Instant::now() < end {
        if tokio::time::timeout(Duration::from_millis(100), results.changed()).await.is_ok_and(|r| r.is_ok()) {
            results.borrow_and_update();
            n += 1;
            if crash_every.is_some_and(|k| n.is_multiple_of(k)) {
                if let Some(a) = tower.actor("inference") {
                    let _ = a.send_message(InferenceMsg::TestPanic);
                    crashes += 1;
                }
            }
        }
    }
    let d = v.display.lock().map(|d| d.clone()).unwrap_or_default();
    tower.shutdown().await;
    Ok((d.delays_us[start_stats.min(d.delays_us.len())..].iter().map(|x| f64::from(*x)).collect(), d.shown, d.skipped, crashes))
}

pub fn video(cfg: TowerConfig, quick: bool) -> Result<BenchReport> {
    let secs = if quick { 6.0 } else { 30.0 };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut runs = Vec::new();
    let mut all = Vec::new();
    let mut notes = serde_json::Map::new();
    for (label, w, h, fps) in [("720p60", 1280, 720, 60.0), ("1080p30", 1920, 1080, 30.0)] {
        for (mode, crash) in [("ai", None), ("ai-crashing", Some(5))] {
            let (d, shown, skipped, crashes) =
                rt.block_on(pass_through(with_source(&cfg, w, h, fps, RendererChoice::None), secs, crash))?;
            let name = format!("{label} {mode}");
            notes.insert(name.clone(), serde_json::json!({"shown": shown, "skipped": skipped, "ai_crashes": crashes}));
            all.extend_from_slice(&d);
            runs.push(Stats::of(&name, &d));
        }
    }
    let total = Stats::of("all", &all);
    notes.insert("target_p99_us".into(), 5750.into());
    Ok(BenchReport::new("video", "us", &total, runs, notes.into()))
}

pub fn annotation(cfg: TowerConfig, quick: bool) -> Result<BenchReport> {
    let secs = if quick { 10.0 } else { 60.0 };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut c = with_source(&cfg, 1280, 720, 60.0, RendererChoice::None);
    c.video.analysis.auto_interval_ms = 0;
    let (delays, elapsed) = rt.block_on(async {
        let tower = Tower::start(c).await.context("starting the tower")?;
        if !wait_online(&tower, Duration::from_secs(10)).await {
            anyhow::bail!("the AI never came online: {:?}", *tower.video().ai.status.borrow());
        }
        let mut rx = tower.video().ai.result.subscribe();
        let t0 = Instant::now();
        let mut delays = Vec::new();
        while t0.elapsed() < Duration::from_secs_f64(secs) {
            if tokio::time::timeout(Duration::from_secs(1), rx.changed()).await.is_ok_and(|r| r.is_ok()) {
                if let Some(r) = rx.borrow_and_update().as_ref() {
                    delays.push(r.annotation_delay().as_secs_f64() * 1e3);
                }
            }
        }
        let elapsed = t0.elapsed();
        tower.shutdown().await;
        Ok((delays, elapsed))
    })?;
    let s = Stats::of("720p60", &delays);
    let fps = delays.len() as f64 / elapsed.as_secs_f64();
    Ok(BenchReport::new("annotation", "ms", &s.clone(), vec![s], serde_json::json!({"inference_fps": fps, "target_p99_ms": 120})))
}

pub fn restart(cfg: TowerConfig, quick: bool) -> Result<BenchReport> {
    let n = if quick { 10 } else { 50 };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut c = with_source(&cfg, 1280, 720, 30.0, RendererChoice::None);
    // Restart timing, not backoff: restart at once, and never contain.
    c.supervision.children.inference.backoff_initial_ms = 0;
    c.supervision.children.inference.backoff_max_ms = 0;
    c.supervision.analysis.max_restarts = 10_000;
    let samples = rt.block_on(async {
        let tower = Tower::start(c).await.context("starting the tower")?;
        if !wait_online(&tower, Duration::from_secs(10)).await {
            anyhow::bail!("the AI never came online: {:?}", *tower.video().ai.status.borrow());
        }
        let mut samples = Vec::new();
        for _ in 0..n {
            let Some(a) = tower.actor("inference") else { continue };
            let t0 = Instant::now();
            let _ = a.send_message(InferenceMsg::TestPanic);
            while *tower.video().ai.status.borrow() == AiStatus::Online && t0.elapsed() < Duration::from_secs(5) {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            if wait_online(&tower, Duration::from_secs(10)).await {
                samples.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tower.shutdown().await;
        Ok(samples)
    })?;
    let s = Stats::of("panic-to-online", &samples);
    Ok(BenchReport::new("restart", "ms", &s.clone(), vec![s], serde_json::json!({"attempts": n})))
}
