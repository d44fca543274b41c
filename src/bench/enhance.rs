//! `endotower bench enhance`: what the enhancement stage costs the live
//! picture. A whole tower at 720p60 (synthetic source, AI running, no
//! compositing) with the stage off, then on at two latency budgets: the
//! pass-through delay (capture stamp to the display taking the frame), and
//! of the frames the stage judged blurred and deblurred, the share that was
//! shown enhanced, i.e. in time.

use super::video::with_source;
use super::{BenchReport, Stats};
use crate::tower::Tower;
use crate::tower_config::TowerConfig;
use anyhow::{bail, Context, Result};
use endotower_actors::display::config::RendererChoice;
use endotower_actors::video::enhance::channels::EnhanceStatus;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

struct Run {
    delays_ms: Vec<f64>,
    notes: serde_json::Value,
}

async fn run(cfg: TowerConfig, secs: f64) -> Result<Run> {
    let on = cfg.video.enhance.enabled;
    let tower = Tower::start(cfg).await.context("starting the tower")?;
    let v = tower.video().clone();
    let e = v.enhance.clone();
    let end = Instant::now() + Duration::from_secs(15);
    while on && *e.status.borrow() != EnhanceStatus::Active {
        if Instant::now() > end {
            let s = e.status.borrow().clone();
            tower.shutdown().await;
            bail!("the enhancement stage never came up: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = &e.stats;
    let counters =
        || [&s.classified, &s.deblurred, &s.shown_enhanced, &s.shown_sharp, &s.shown_late, &s.shown_bypassed].map(|c| c.load(Relaxed));
    let before = counters();
    let first = v.display.lock().map(|d| d.delays_us.len()).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let after = counters();
    let d = v.display.lock().map(|d| d.clone()).unwrap_or_default();
    tower.shutdown().await;
    let [classified, deblurred, enhanced, sharp, late, bypassed] = [0, 1, 2, 3, 4, 5].map(|i| after[i] - before[i]);
    let in_time = if deblurred == 0 { None } else { Some(enhanced as f64 / deblurred as f64) };
    Ok(Run {
        delays_ms: d.delays_us[first.min(d.delays_us.len())..].iter().map(|x| f64::from(*x) / 1e3).collect(),
        notes: serde_json::json!({
            "shown": d.shown, "skipped": d.skipped, "reordered": d.reordered,
            "classified": classified, "deblurred": deblurred,
            "shown_enhanced": enhanced, "shown_sharp": sharp, "shown_late": late, "shown_raw_stage_down": bypassed,
            "deblurred_shown_in_time": in_time,
        }),
    })
}

pub fn enhance(cfg: TowerConfig, quick: bool) -> Result<BenchReport> {
    let secs = if quick { 8.0 } else { 40.0 };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (mut runs, mut all, mut notes) = (Vec::new(), Vec::new(), serde_json::Map::new());
    for (label, on, budget_ms) in [
        ("720p60 off", false, 16),
        ("720p60 on, budget 16 ms", true, 16),
        ("720p60 on, budget 33 ms", true, 33),
        ("720p60 on, budget 50 ms", true, 50),
    ] {
        let mut c = with_source(&cfg, 1280, 720, 60.0, RendererChoice::None);
        c.video.enhance.enabled = on;
        c.video.enhance.budget_ms = budget_ms;
        let r = rt.block_on(run(c, secs))?;
        all.extend_from_slice(&r.delays_ms);
        runs.push(Stats::of(label, &r.delays_ms));
        notes.insert(label.into(), r.notes);
    }
    let total = Stats::of("all", &all);
    Ok(BenchReport::new("enhance", "ms", &total, runs, notes.into()))
}
