//! The safety island: a read -> update -> write loop on its own OS thread, with
//! its own current-thread tokio runtime and its own Modbus connections, on
//! absolute-deadline periods. Nothing on the management plane can delay it:
//! it shares no lock, channel or runtime with the actors (it reads setpoints
//! from atomics and hands alarms to a bounded queue it never blocks on).
//!
//! Each period:
//! 1. read the insufflator and light sensor blocks (concurrently);
//! 2. judge freshness (SAMPLE_SEQ moved, value valid and in span) and run the
//!    interlocks of [`crate::interlocks`];
//! 3. write SAFETY_CMD / SAFETY_CAP with the heartbeat right away, so a trip
//!    reaches the device within the same period; camera and pedal get their
//!    heartbeat every `aux_heartbeat_ms`.
//!
//! The write is read back through the SAFETY_ECHO word of the next read.

use crate::config::SafetyConfig;
use crate::events::{EventBus, Severity};
use crate::interlocks::{InsufflationInterlock, LightInterlock, Trip};
use crate::link::ModbusLink;
use crate::registers::{self, insufflator as ins, light};
use crate::setpoints::Setpoints;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Counters the island publishes without locks.
#[derive(Debug, Default)]
pub struct IslandStats {
    pub cycles: AtomicU64,
    pub overruns: AtomicU64,
    pub max_cycle_us: AtomicU64,
    pub caught_panics: AtomicU64,
    /// Microseconds since island start at the end of the last cycle.
    pub last_cycle_us: AtomicU64,
    pub insufflator_cmd: AtomicU16,
    pub light_cap: AtomicU16,
    pub trips: AtomicU64,
}

/// Test-only switches, so a scenario can prove that a disabled island is noticed.
#[derive(Debug, Default)]
pub struct IslandTestHooks {
    /// Panic inside the next cycle (the island must catch it and go on).
    pub panic_next_cycle: AtomicBool,
    /// Block the island thread for this many ms in the next cycle, as a
    /// deadlock would (the safety actor must replace the island).
    pub stall_next_cycle_ms: AtomicU64,
    /// A deliberately broken island: it keeps its period and heartbeats but
    /// writes no interlock (SAFETY_CMD 0, SAFETY_CAP 100) and raises nothing.
    /// Only for the test that proves the scenario suite catches it.
    pub interlocks_disabled: AtomicBool,
}

/// A running safety island thread.
pub struct SafetyIsland {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    stats: Arc<IslandStats>,
    hooks: Arc<IslandTestHooks>,
    started: Instant,
    period: Duration,
}

struct DeviceFreshness {
    last_seq: Option<u16>,
    last_fresh: Option<Instant>,
    value: Option<(f64, f64)>,
    /// Stuck-sensor check: the value and when it last changed.
    stuck_after: Option<Duration>,
    last_change: Option<Instant>,
}

impl DeviceFreshness {
    fn new(stuck_after: Option<Duration>) -> Self {
        Self { last_seq: None, last_fresh: None, value: None, stuck_after, last_change: None }
    }

    /// Take a reading: `value` is `None` when invalid or implausible.
    fn observe(&mut self, now: Instant, seq: u16, value: Option<(f64, f64)>) {
        let moved = self.last_seq != Some(seq);
        self.last_seq = Some(seq);
        if let (true, Some(v)) = (moved, value) {
            if self.value != Some(v) || self.last_change.is_none() {
                self.last_change = Some(now);
            }
            self.last_fresh = Some(now);
            self.value = Some(v);
        } else if value.is_none() {
            self.value = None;
        }
    }

    /// The reading, unless stale, missing or stuck.
    fn current(&self, now: Instant, stale: Duration) -> Option<(f64, f64)> {
        let stuck = match (self.stuck_after, self.last_change) {
            (Some(limit), Some(t)) => now.duration_since(t) > limit,
            _ => false,
        };
        match self.last_fresh {
            Some(t) if now.duration_since(t) <= stale && !stuck => self.value,
            _ => None,
        }
    }
}

struct Loop {
    cfg: SafetyConfig,
    setpoints: Setpoints,
    stats: Arc<IslandStats>,
    hooks: Arc<IslandTestHooks>,
    trips_tx: SyncSender<Trip>,
    backlog: Vec<Trip>,
    ins_link: ModbusLink,
    light_link: ModbusLink,
    camera_link: ModbusLink,
    pedal_link: ModbusLink,
    ins_fresh: DeviceFreshness,
    light_fresh: DeviceFreshness,
    ins_il: InsufflationInterlock,
    light_il: LightInterlock,
    heartbeat: u16,
    last_ins_cmd: Option<u16>,
    last_light_cap: Option<u16>,
    /// Safety-word read-back mismatch per device ([`ECHO_INSUFFLATOR`],
    /// [`ECHO_LIGHT`]); HZ-010 is active while either is.
    echo_fault: [bool; 2],
    last_aux: Option<Instant>,
}

const ECHO_INSUFFLATOR: usize = 0;
const ECHO_LIGHT: usize = 1;

fn make_link(name: &str, cfg: &crate::config::LinkConfig, timeout: Duration) -> ModbusLink {
    let mut l = ModbusLink::new(format!("safety/{name}"), cfg.clone());
    l.set_timeout(timeout);
    l
}

fn in_span(v: f64, span: [f64; 2]) -> bool {
    v >= span[0] && v <= span[1]
}

impl Loop {
    fn new(
        cfg: SafetyConfig,
        setpoints: Setpoints,
        stats: Arc<IslandStats>,
        hooks: Arc<IslandTestHooks>,
        trips_tx: SyncSender<Trip>,
    ) -> Self {
        let t = Duration::from_micros(cfg.timeout_us);
        let stuck = (cfg.stuck_ms > 0).then(|| Duration::from_millis(cfg.stuck_ms));
        Self {
            ins_link: make_link("insufflator", &cfg.insufflator, t),
            light_link: make_link("light", &cfg.light, t),
            camera_link: make_link("camera", &cfg.camera, t),
            pedal_link: make_link("pedal", &cfg.pedal, t),
            cfg,
            setpoints,
            stats,
            hooks,
            trips_tx,
            backlog: Vec::new(),
            ins_fresh: DeviceFreshness::new(stuck),
            light_fresh: DeviceFreshness::new(None),
            ins_il: InsufflationInterlock::default(),
            light_il: LightInterlock::default(),
            heartbeat: 0,
            last_ins_cmd: None,
            last_light_cap: None,
            echo_fault: [false; 2],
            last_aux: None,
        }
    }

    /// After a caught panic a request may still be in flight on a connection:
    /// drop every connection so no late reply is taken as fresh.
    fn reset_links(&mut self) {
        let t = Duration::from_micros(self.cfg.timeout_us);
        self.ins_link = make_link("insufflator", &self.cfg.insufflator, t);
        self.light_link = make_link("light", &self.cfg.light, t);
        self.camera_link = make_link("camera", &self.cfg.camera, t);
        self.pedal_link = make_link("pedal", &self.cfg.pedal, t);
    }

    /// HZ-010: the device must read back the safety word written last
    /// period. Raised when a device starts to differ, cleared when neither does.
    /// After a failed write nothing is known, and nothing changes.
    fn check_echo(&mut self, device: usize, echo: u16, written: Option<u16>, trips: &mut Vec<Trip>) {
        let what = ["insufflator", "light"][device];
        let Some(written) = written else { return };
        let bad = written != echo;
        let was_active = self.echo_fault.contains(&true);
        let changed = self.echo_fault[device] != bad;
        self.echo_fault[device] = bad;
        if bad && changed {
            trips.push(Trip {
                hazard: "HZ-010",
                active: true,
                message: format!("{what} safety word read back as {echo}, wrote {written}"),
            });
        } else if was_active && !self.echo_fault.contains(&true) {
            trips.push(Trip { hazard: "HZ-010", active: false, message: format!("{what} safety word read-back ok") });
        }
    }

    async fn cycle(&mut self) {
        if self.hooks.panic_next_cycle.swap(false, Ordering::AcqRel) {
            panic!("safety island test hook: injected panic");
        }
        let stall = self.hooks.stall_next_cycle_ms.swap(0, Ordering::AcqRel);
        if stall > 0 {
            std::thread::sleep(Duration::from_millis(stall));
        }
        let (ins_r, light_r) = tokio::join!(self.ins_link.read(0, ins::SENSOR_LEN), self.light_link.read(0, light::SENSOR_LEN));
        let now = Instant::now();
        let mut trips = Vec::new();
        if let Ok(w) = ins_r {
            let p = registers::decode_signed(w[ins::PRESSURE as usize], 0.01).filter(|p| in_span(*p, self.cfg.pressure_span_mmhg));
            self.ins_fresh.observe(now, w[ins::SAMPLE_SEQ as usize], p.map(|p| (p, 0.0)));
            self.check_echo(ECHO_INSUFFLATOR, w[ins::SAFETY_ECHO as usize], self.last_ins_cmd, &mut trips);
        }
        if let Ok(w) = light_r {
            let span = self.cfg.temperature_span_c;
            let led = registers::decode_signed(w[light::LED_TEMP as usize], 0.1).filter(|t| in_span(*t, span));
            let tip = registers::decode_signed(w[light::TIP_TEMP as usize], 0.1).filter(|t| in_span(*t, span));
            self.light_fresh.observe(now, w[light::SAMPLE_SEQ as usize], led.zip(tip));
            self.check_echo(ECHO_LIGHT, w[light::SAFETY_ECHO as usize], self.last_light_cap, &mut trips);
        }
        let stale = Duration::from_millis(self.cfg.stale_ms);
        let safe_state = self.setpoints.safe_state();
        let pressure = self.ins_fresh.current(now, stale).map(|v| v.0);
        let cmd = self.ins_il.update(pressure, self.setpoints.pressure_mmhg(), &self.cfg, safe_state, &mut trips);
        let mut cap = self.light_il.update(self.light_fresh.current(now, stale), &self.cfg, safe_state, &mut trips);
        let mut cmd = cmd;
        if self.hooks.interlocks_disabled.load(Ordering::Relaxed) {
            (cmd, cap) = (0, 100);
            trips.clear();
        }
        self.heartbeat = self.heartbeat.wrapping_add(1);
        let hb = self.heartbeat;
        let (ins_words, light_words) = ([cmd, hb], [cap, hb]);
        let (wi, wl) =
            tokio::join!(self.ins_link.write(ins::SAFETY_CMD, &ins_words), self.light_link.write(light::SAFETY_CAP, &light_words));
        self.last_ins_cmd = wi.is_ok().then_some(cmd);
        self.last_light_cap = wl.is_ok().then_some(cap);
        self.stats.insufflator_cmd.store(cmd, Ordering::Relaxed);
        self.stats.light_cap.store(cap, Ordering::Relaxed);
        if self.last_aux.is_none_or(|t| now.duration_since(t) >= Duration::from_millis(self.cfg.aux_heartbeat_ms)) {
            self.last_aux = Some(now);
            let hb_words = [hb];
            let _ = tokio::join!(
                self.camera_link.write(registers::camera::HEARTBEAT, &hb_words),
                self.pedal_link.write(registers::pedal::HEARTBEAT, &hb_words)
            );
        }
        self.publish(trips);
    }

    fn publish(&mut self, trips: Vec<Trip>) {
        self.stats.trips.fetch_add(trips.iter().filter(|t| t.active).count() as u64, Ordering::Relaxed);
        self.backlog.extend(trips);
        while !self.backlog.is_empty() {
            let t = self.backlog.remove(0);
            match self.trips_tx.try_send(t) {
                Ok(()) => {}
                Err(TrySendError::Full(t)) => {
                    // Keep it for the next period; never block here.
                    self.backlog.insert(0, t);
                    break;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.backlog.clear();
                    break;
                }
            }
        }
    }
}

fn forward_trips(rx: Receiver<Trip>, events: EventBus) {
    for t in rx {
        let sev = match t.hazard {
            "HZ-010" | "HZ-006" => Severity::Medium,
            _ => Severity::High,
        };
        if t.active {
            events.raise("safety", t.hazard, sev, t.message);
        } else {
            events.clear("safety", t.hazard, t.message);
        }
    }
}

/// Install (once) a panic hook that keeps the island's panics short: the
/// default hook may capture and symbolise a backtrace, which can stall the
/// island thread for far longer than a period. Other threads keep the hook
/// they had.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(ISLAND_THREAD) {
                eprintln!("safety island panic (caught, loop continues): {info}");
            } else {
                previous(info);
            }
        }));
    });
}

const ISLAND_THREAD: &str = "safety-island";

impl SafetyIsland {
    /// Start the island thread. Fails only if the OS cannot create a thread.
    pub fn start(cfg: SafetyConfig, setpoints: Setpoints, events: EventBus) -> std::io::Result<SafetyIsland> {
        Self::start_with_hooks(cfg, setpoints, events, Arc::default())
    }

    /// As [`SafetyIsland::start`], with test hooks that outlive this island
    /// (kept by the [`crate::safety_actor::SafetySlot`] across replacements).
    pub fn start_with_hooks(
        cfg: SafetyConfig,
        setpoints: Setpoints,
        events: EventBus,
        hooks: Arc<IslandTestHooks>,
    ) -> std::io::Result<SafetyIsland> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(IslandStats::default());
        let (tx, rx) = sync_channel(1024);
        std::thread::Builder::new().name("safety-alarms".into()).spawn(move || forward_trips(rx, events))?;
        let period = cfg.period();
        let started = Instant::now();
        let (stop2, stats2, hooks2) = (stop.clone(), stats.clone(), hooks.clone());
        install_panic_hook();
        let handle = std::thread::Builder::new().name(ISLAND_THREAD.into()).spawn(move || {
            let build = || tokio::runtime::Builder::new_current_thread().enable_all().build();
            let mut rt = match build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("safety island: cannot build its runtime: {e}");
                    return;
                }
            };
            if cfg.realtime_priority {
                crate::thread_priority::make_realtime(ISLAND_THREAD, crate::thread_priority::SAFETY_PRIORITY);
            }
            let mut lp = Loop::new(cfg, setpoints, stats2.clone(), hooks2, tx);
            let mut next = Instant::now();
            tracing::info!(period_us = period.as_micros() as u64, "safety island running");
            while !stop2.load(Ordering::Acquire) {
                let t0 = Instant::now();
                if std::panic::catch_unwind(AssertUnwindSafe(|| rt.block_on(lp.cycle()))).is_err() {
                    stats2.caught_panics.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("safety island: panic in cycle caught; runtime and connections rebuilt, loop continues");
                    // Requests may be in flight and the runtime's state is unknown: start both afresh.
                    lp.reset_links();
                    match build() {
                        Ok(new_rt) => std::mem::replace(&mut rt, new_rt).shutdown_background(),
                        Err(e) => tracing::error!("safety island: cannot rebuild its runtime ({e}); keeping the old one"),
                    }
                }
                let end = Instant::now();
                let took = end.duration_since(t0).as_micros() as u64;
                stats2.max_cycle_us.fetch_max(took, Ordering::Relaxed);
                stats2.cycles.fetch_add(1, Ordering::Relaxed);
                stats2.last_cycle_us.store(end.duration_since(started).as_micros() as u64, Ordering::Release);
                next += period;
                if next <= end {
                    stats2.overruns.fetch_add(1, Ordering::Relaxed);
                    next = end + period; // re-phase rather than burst
                } else {
                    std::thread::sleep(next - end);
                }
            }
            tracing::info!("safety island stopped");
        })?;
        Ok(SafetyIsland { stop, handle: Some(handle), stats, hooks, started, period })
    }

    pub fn stats(&self) -> &IslandStats {
        &self.stats
    }

    pub fn hooks(&self) -> &IslandTestHooks {
        &self.hooks
    }

    /// The island thread's id (`None` once stopped): tells one island from
    /// its replacement.
    pub fn thread_id(&self) -> Option<std::thread::ThreadId> {
        self.handle.as_ref().map(|h| h.thread().id())
    }

    /// Time since the last completed cycle.
    pub fn since_last_cycle(&self) -> Duration {
        let last = Duration::from_micros(self.stats.last_cycle_us.load(Ordering::Acquire));
        self.started.elapsed().saturating_sub(last)
    }

    /// Alive: the thread runs and completed a cycle within `stall_limit`
    /// (never less than two periods).
    pub fn is_alive(&self, stall_limit: Duration) -> bool {
        let running = self.handle.as_ref().is_some_and(|h| !h.is_finished());
        running && self.since_last_cycle() <= stall_limit.max(self.period * 2)
    }

    /// Ask the thread to stop and wait briefly for it; a hung thread is left
    /// detached (it exits at its next cycle boundary).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let deadline = Instant::now() + Duration::from_millis(500);
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for SafetyIsland {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hz003_a_value_frozen_while_the_sequence_moves_counts_as_missing_after_stuck_ms() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let stale = Duration::from_millis(20);
        let mut f = DeviceFreshness::new(Some(Duration::from_millis(500)));
        // A noisy sensor: every sample differs, the reading stays current.
        for (i, n) in (0..100u64).step_by(2).enumerate() {
            f.observe(ms(n * 10), i as u16, Some((12.0 + (i % 3) as f64 * 0.01, 0.0)));
            assert!(f.current(ms(n * 10), stale).is_some());
        }
        // Frozen at 12.00 from t = 1000 ms while SAMPLE_SEQ keeps counting.
        for (i, n) in (1000..1600u64).step_by(2).enumerate() {
            f.observe(ms(n), 1000 + i as u16, Some((12.0, 0.0)));
        }
        assert_eq!(f.current(ms(1400), stale), Some((12.0, 0.0)), "still within stuck_ms");
        assert_eq!(f.current(ms(1598), stale), None, "unchanged for more than 500 ms");
        // The first new value brings the reading back.
        f.observe(ms(1600), 2000, Some((12.02, 0.0)));
        assert_eq!(f.current(ms(1600), stale), Some((12.02, 0.0)));
        // Without the check a frozen value stays current.
        let mut off = DeviceFreshness::new(None);
        for (i, n) in (0..2000u64).step_by(2).enumerate() {
            off.observe(ms(n), i as u16, Some((12.0, 0.0)));
        }
        assert!(off.current(ms(1998), stale).is_some());
    }
}
