//! `endotower snapshot`: run the tower headless and write one composed frame
//! (camera picture plus overlay) as a PNG.

use crate::tower::Tower;
use crate::tower_config::TowerConfig;
use anyhow::{bail, Context, Result};
use endotower_actors::display::config::{OutputKind, RendererChoice};
use endotower_actors::display::golden::write_png;
use std::path::Path;
use std::time::Duration;

/// What was written.
pub struct Snapshot {
    pub seq: u64,
    pub width: u32,
    pub height: u32,
    pub renderer: &'static str,
}

pub async fn take(mut cfg: TowerConfig, at_s: f64, out: &Path) -> Result<Snapshot> {
    if !cfg.video.enabled {
        bail!("video.enabled = false in the config: there is no picture to snapshot");
    }
    if !(0.0..=3600.0).contains(&at_s) {
        bail!("--at {at_s}: expected 0 ..= 3600 seconds");
    }
    cfg.video.display.output = OutputKind::Headless;
    // One picture: no broker, no journal.
    cfg.telemetry.enabled = false;
    if cfg.video.display.renderer == RendererChoice::None {
        cfg.video.display.renderer = RendererChoice::Auto;
    }
    let tower = Tower::start(cfg).await.context("starting the tower")?;
    tokio::time::sleep(Duration::from_secs_f64(at_s)).await;
    let composed = tower.video().composed.clone();
    // The first picture, if none is there yet (waking on publication).
    let mut published = composed.subscribe();
    let _ = tokio::time::timeout(Duration::from_secs(5), published.wait_for(|seq| *seq > 0)).await;
    let frame = composed.latest();
    tower.shutdown().await;
    let Some(f) = frame else { bail!("no frame was composed within {at_s} s + 5 s (is the video source delivering?)") };
    write_png(out, f.width, f.height, &f.rgba)?;
    Ok(Snapshot { seq: f.seq, width: f.width, height: f.height, renderer: f.renderer })
}
