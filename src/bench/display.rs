//! `endotower bench display`: the display compositors.
//! - compositing time per frame (camera frame upload, overlay, text, and for
//!   wgpu the readback) at 720p and 1080p, on the CPU compositor and on wgpu
//!   (lavapipe here), with a representative overlay (two detections, exam,
//!   device panel, a flashing high alarm);
//! - the whole pass-through delay with the display in the path: a tower at
//!   720p60 whose display composes every frame (capture stamp to composed
//!   picture), AI running.

use super::video::{pass_through, with_source};
use super::{BenchReport, Stats};
use crate::tower_config::TowerConfig;
use anyhow::{Context, Result};
use endotower_actors::display::config::RendererChoice;
use endotower_actors::display::cpu::CpuCompositor;
use endotower_actors::display::gpu::GpuCompositor;
use endotower_actors::display::overlay::Overlay;
use endotower_actors::display::sample::normal_inputs;
use endotower_actors::display::scene::layout;
use endotower_actors::display::DisplayError;
use endotower_actors::events::{Event, EventKind, Severity};
use endotower_actors::video::frame::{Frame, PixelFormat};
use endotower_sim::video::{SyntheticConfig, SyntheticSource};
use std::time::Instant;

fn frames(width: u32, height: u32, n: usize) -> Result<Vec<Frame>> {
    let mut src = SyntheticSource::new(SyntheticConfig { width, height, seed: 3, ..SyntheticConfig::default() })?;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        if let Some(f) = src.next_frame() {
            out.push(Frame::new(out.len() as u64 + 1, Instant::now(), width, height, PixelFormat::Rgb8, f.rgb)?);
        }
    }
    Ok(out)
}

/// Compose `n` frames; returns the per-frame times in ms.
fn time_compose(
    width: u32,
    height: u32,
    n: usize,
    mut compose: impl FnMut(&Frame, &endotower_actors::display::scene::Scene, &mut Vec<u8>) -> Result<(), DisplayError>,
) -> Result<Vec<f64>> {
    let mut inputs = normal_inputs(width, height);
    let alarm = Event {
        seq: 1,
        at_ms: 0,
        kind: EventKind::AlarmRaised,
        severity: Severity::High,
        source: "bench".into(),
        code: "HZ-001".into(),
        message: "pressure above limit".into(),
    };
    inputs.alarms = vec![(alarm, false)];
    let overlay = Overlay::build(&inputs);
    let frames = frames(width, height, 8)?;
    let mut out = Vec::new();
    let mut times = Vec::with_capacity(n);
    for k in 0..n + 3 {
        let t0 = Instant::now();
        let scene = layout(&overlay, width, height, (k as u64) * 16);
        compose(&frames[k % frames.len()], &scene, &mut out)?;
        if k >= 3 {
            times.push(t0.elapsed().as_secs_f64() * 1e3); // the first frames warm caches
        }
    }
    Ok(times)
}

pub fn display(cfg: TowerConfig, quick: bool) -> Result<BenchReport> {
    let (n_cpu, n_gpu, secs) = if quick { (60, 20, 6.0) } else { (600, 200, 30.0) };
    let mut runs = Vec::new();
    let mut notes = serde_json::Map::new();
    let mut cpu = CpuCompositor::new();
    let mut gpu = match GpuCompositor::new() {
        Ok(g) => {
            notes.insert("wgpu_adapter".into(), format!("{} ({}, {})", g.adapter().name, g.adapter().backend, g.adapter().driver).into());
            Some(g)
        }
        Err(e) => {
            notes.insert("wgpu_adapter".into(), format!("unavailable: {e}").into());
            None
        }
    };
    let mut compose_all = Vec::new();
    for (label, w, h) in [("720p", 1280, 720), ("1080p", 1920, 1080)] {
        let t = time_compose(w, h, n_cpu, |f, s, o| cpu.compose(f, s, o)).context("CPU compositor")?;
        compose_all.extend_from_slice(&t);
        runs.push(Stats::of(&format!("cpu {label}"), &t));
        if let Some(g) = gpu.as_mut() {
            let t = time_compose(w, h, n_gpu, |f, s, o| g.compose(f, s, o)).context("wgpu compositor")?;
            compose_all.extend_from_slice(&t);
            runs.push(Stats::of(&format!("wgpu {label}"), &t));
        }
    }
    drop(gpu);

    // The whole path: capture -> display composing every frame (CPU).
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let c = with_source(&cfg, 1280, 720, 60.0, RendererChoice::Cpu);
    let (delays_us, shown, skipped, _) = rt.block_on(pass_through(c, secs, None))?;
    let delays_ms: Vec<f64> = delays_us.iter().map(|d| d / 1e3).collect();
    runs.push(Stats::of("pass-through 720p60 cpu", &delays_ms));
    notes.insert("pass_through".into(), serde_json::json!({"shown": shown, "skipped": skipped, "renderer": "cpu"}));
    let total = Stats::of("compose", &compose_all);
    Ok(BenchReport::new("display", "ms", &total, runs, notes.into()))
}
