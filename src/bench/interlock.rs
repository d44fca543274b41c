//! `endotower bench interlock`: the safety island's reaction time, from the
//! simulator's pressure crossing P2 to the relief valve opening at the
//! simulator, measured on the simulator's clock (both instants are taken in
//! the simulator: at the injection, and when the vent write is applied).
//!
//! Only the simulators and the safety island run, so the figure is the
//! island's own; the control plane's venting is not in the measurement.
//! Each event is injected at a pseudo-random phase of the safety period. The
//! series is run idle, then with every other core saturated by busy threads.

use super::{BenchReport, Stats};
use crate::tower::start_simulators;
use crate::tower_config::TowerConfig;
use endotower_actors::config::{relief_threshold, Transport};
use endotower_actors::events::EventBus;
use endotower_actors::safety_actor::start_host;
use endotower_actors::setpoints::Setpoints;
use endotower_sim::{Device, SimHost};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SET_PRESSURE: f64 = 12.0;
const WAIT_LIMIT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum InterlockBenchError {
    #[error("cannot start: {0}")]
    Start(String),
    #[error("the safety island never took the devices out of fail-safe")]
    NeverReady,
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    false
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Run `n` injected over-pressure events; returns latencies in microseconds
/// and the number of events that were never vented within 1 s.
fn series(sim: &SimHost, n: usize, period: Duration, rng: &mut Rng) -> (Vec<f64>, usize) {
    let p2 = relief_threshold(SET_PRESSURE);
    let mut lat = Vec::with_capacity(n);
    let mut missed = 0;
    for _ in 0..n {
        // Back under P1: the island releases the vent.
        sim.inject_pressure(SET_PRESSURE - 2.0);
        wait_until(WAIT_LIMIT, || !sim.insufflator().relief_open);
        std::thread::sleep(Duration::from_micros(rng.next() % period.as_micros().max(1) as u64));
        let t0 = sim.inject_pressure(p2 + 0.5);
        let vented = wait_until(WAIT_LIMIT, || sim.last_vent_open().is_some_and(|t| t >= t0));
        match (vented, sim.last_vent_open()) {
            (true, Some(t)) => lat.push(t.duration_since(t0).as_secs_f64() * 1e6),
            _ => missed += 1,
        }
    }
    (lat, missed)
}

fn saturate_other_cores(stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    let others = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).saturating_sub(1).max(1);
    (0..others)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect()
}

pub fn run(mut cfg: TowerConfig, quick: bool) -> Result<BenchReport, InterlockBenchError> {
    let n = if quick { 1000 } else { 10_000 };
    cfg.sim.embedded = true;
    for link in [&mut cfg.safety.insufflator, &mut cfg.safety.light, &mut cfg.safety.camera, &mut cfg.safety.pedal] {
        link.transport = Transport::Tcp { addr: "127.0.0.1:0".into() };
    }
    // No leak and no inflow: the pressure stays where it is injected.
    cfg.sim.model.insufflator.leak_lpm = 0.0;
    let sim = start_simulators(&mut cfg).map_err(|e| InterlockBenchError::Start(e.to_string()))?;
    let period = cfg.safety.period();
    let setpoints = Setpoints::new(SET_PRESSURE, 10.0, 50.0);
    let island = start_host(&cfg.safety, &setpoints, &EventBus::default()).map_err(|e| InterlockBenchError::Start(e.to_string()))?;
    if !wait_until(Duration::from_secs(5), || !sim.failsafe(Device::Insufflator)) {
        island.shutdown();
        sim.stop();
        return Err(InterlockBenchError::NeverReady);
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (idle, missed_idle) = series(&sim, n, period, &mut rng);
    let stop = Arc::new(AtomicBool::new(false));
    let hogs = saturate_other_cores(stop.clone());
    let (loaded, missed_loaded) = series(&sim, n, period, &mut rng);
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        let _ = h.join();
    }
    let overruns = island.stats().overruns.load(Ordering::Relaxed);
    let cycles = island.stats().cycles.load(Ordering::Relaxed);
    let max_cycle_us = island.stats().max_cycle_us.load(Ordering::Relaxed);
    island.shutdown();
    sim.stop();
    let all: Vec<f64> = idle.iter().chain(loaded.iter()).copied().collect();
    let total = Stats::of("all", &all);
    Ok(BenchReport::new(
        "interlock",
        "us",
        &total,
        vec![Stats::of("idle", &idle), Stats::of("loaded", &loaded)],
        serde_json::json!({
            "missed_idle": missed_idle,
            "missed_loaded": missed_loaded,
            "safety_period_us": period.as_micros() as u64,
            "target_p99_us": period.as_micros() as u64 + 1000,
            "island_cycles": cycles,
            "island_overruns": overruns,
            "island_max_cycle_us": max_cycle_us,
        }),
    ))
}
