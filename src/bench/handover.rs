//! `endotower bench handover` (builds with `fault-injection`): the safety
//! island's hand-over. Each round stalls the running island (test hook: its
//! thread sleeps 400 ms inside a cycle) and, at the same moment, surges the
//! cavity past P2. The watchdog must start a new island that takes over the
//! latched state and vents.
//!
//! Reported per round:
//! - `gap`: from the stalled island's last completed cycle to the new
//!   island's first write of the safety words (the watchdog's measurement);
//! - `start`: from the new island's start to its first write (thread,
//!   runtime and four connections to make);
//! - `vent`: from the new island's start to the relief valve opening at the
//!   simulator (the simulator's clock);
//! - devices that entered their heartbeat fail-safe (must stay 0), sampled
//!   every 0.5 ms on the simulator.

use super::{BenchReport, Stats};
use crate::tower::start_simulators;
use crate::tower_config::TowerConfig;
use endotower_actors::config::{relief_threshold, Transport};
use endotower_actors::events::EventBus;
use endotower_actors::safety_actor::start_host_with_hooks;
use endotower_actors::setpoints::Setpoints;
use endotower_sim::Device;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SET_PRESSURE: f64 = 12.0;
const STALL_MS: u64 = 400;

#[derive(Debug, thiserror::Error)]
pub enum HandoverBenchError {
    #[error("cannot start: {0}")]
    Start(String),
    #[error("the safety island never took the devices out of fail-safe")]
    NeverReady,
    #[error("round {0}: no hand-over within 2 s of the stall")]
    NoHandover(usize),
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    false
}

pub fn run(mut cfg: TowerConfig, quick: bool) -> Result<BenchReport, HandoverBenchError> {
    let rounds = if quick { 40 } else { 200 };
    cfg.sim.embedded = true;
    for link in [&mut cfg.safety.insufflator, &mut cfg.safety.light, &mut cfg.safety.camera, &mut cfg.safety.pedal] {
        link.transport = Transport::Tcp { addr: "127.0.0.1:0".into() };
    }
    cfg.sim.model.insufflator.leak_lpm = 0.0;
    let sim = start_simulators(&mut cfg).map_err(|e| HandoverBenchError::Start(e.to_string()))?;
    let setpoints = Setpoints::new(SET_PRESSURE, 10.0, 50.0);
    let hooks = Arc::new(endotower_safety::hooks::IslandHooks::default());
    let host = start_host_with_hooks(&cfg.safety, &setpoints, &EventBus::default(), hooks.clone())
        .map_err(|e| HandoverBenchError::Start(e.to_string()))?;
    if !wait_until(Duration::from_secs(5), || Device::ALL.iter().all(|d| !sim.failsafe(*d))) {
        return Err(HandoverBenchError::NeverReady);
    }
    let p2 = relief_threshold(SET_PRESSURE);
    let (mut gaps, mut vents, mut starts) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    let (mut failsafe_entries, mut not_vented) = (0u64, 0u64);
    for round in 0..rounds {
        // Calm: under P1, vent released, the current island cycling.
        sim.inject_pressure(SET_PRESSURE - 2.0);
        wait_until(Duration::from_secs(2), || !sim.insufflator().relief_open);
        let before = host.host_stats().handovers.load(Ordering::Acquire);
        std::thread::sleep(Duration::from_millis(20));
        hooks.stall_next_cycle_ms.store(STALL_MS, Ordering::Release);
        let t0 = sim.inject_pressure(p2 + 1.0);
        let mut fell_back = [false; 4];
        let handed_over = wait_until(Duration::from_secs(2), || {
            for (i, d) in Device::ALL.iter().enumerate() {
                fell_back[i] |= sim.failsafe(*d);
            }
            host.host_stats().handovers.load(Ordering::Acquire) > before
        });
        if !handed_over {
            return Err(HandoverBenchError::NoHandover(round));
        }
        let started = host.current_started_at();
        let vented = wait_until(Duration::from_secs(2), || {
            for (i, d) in Device::ALL.iter().enumerate() {
                fell_back[i] |= sim.failsafe(*d);
            }
            sim.last_vent_open().is_some_and(|t| t >= t0)
        });
        match (vented, sim.last_vent_open()) {
            (true, Some(t)) => vents.push(t.saturating_duration_since(started).as_secs_f64() * 1e6),
            _ => not_vented += 1,
        }
        // The gap is known once the new island has written.
        wait_until(Duration::from_secs(1), || host.host_stats().last_handover_gap_us.load(Ordering::Acquire) > 0);
        starts.push(host.host_stats().last_start_to_write_us.load(Ordering::Acquire) as f64);
        gaps.push(host.host_stats().last_handover_gap_us.swap(0, Ordering::AcqRel) as f64);
        // Keep watching through the rest of the old island's stall.
        wait_until(Duration::from_millis(STALL_MS), || {
            for (i, d) in Device::ALL.iter().enumerate() {
                fell_back[i] |= sim.failsafe(*d);
            }
            false
        });
        failsafe_entries += fell_back.iter().filter(|f| **f).count() as u64;
    }
    let stats = host.stats();
    let notes = serde_json::json!({
        "rounds": rounds,
        "devices_entering_failsafe": failsafe_entries,
        "surges_not_vented": not_vented,
        "stall_limit_ms": cfg.safety.stall_ms,
        "safety_period_us": cfg.safety.period_us,
        "fenced_cycles": stats.fenced_exits.load(Ordering::Relaxed),
        "handovers": host.host_stats().handovers.load(Ordering::Relaxed),
        "realtime_priority": cfg.safety.realtime_priority,
    });
    host.shutdown();
    sim.stop();
    let all: Vec<f64> = gaps.clone();
    Ok(BenchReport::new(
        "handover",
        "us",
        &Stats::of("gap", &all),
        vec![Stats::of("gap", &gaps), Stats::of("start", &starts), Stats::of("vent", &vents)],
        notes,
    ))
}
