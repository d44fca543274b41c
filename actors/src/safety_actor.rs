//! The safety actor: the supervised face of the safety island.
//!
//! The island (crate `endotower-safety`) runs on its own threads, in an
//! [`IslandHost`] kept in a [`SafetySlot`] owned by the tower, not by this
//! actor: a restarted safety actor adopts the running host, so restarting the
//! actor leaves no gap in coverage. The host's own watchdog thread replaces a
//! stalled island (gap-free hand-over); this actor only checks that the
//! watchdog thread runs (and restarts it if not), and reports the island's
//! link transitions in the log, rate limited, off the island's thread.

use crate::config::SafetyConfig;
use crate::events::{EventBus, EventKind, Severity};
use crate::setpoints::Setpoints;
use crate::supervisor::Liveness;
use endotower_safety::link::{LinkState, Reason};
use endotower_safety::trip::{code, Priority};
use endotower_safety::{IslandHost, Trip, TripSink};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The island's alarms onto the event bus (called on the island's alarm
/// thread, never on the island's own).
pub struct EventBusSink(pub EventBus);

impl TripSink for EventBusSink {
    fn deliver(&self, t: &Trip) {
        let severity = match t.priority() {
            Priority::High => Severity::High,
            Priority::Medium => Severity::Medium,
            Priority::Low => Severity::Low,
        };
        if t.code == code::ISLAND_PANIC {
            self.0.event(EventKind::Degradation, severity, "safety", t.code, t.message());
        } else if t.active {
            self.0.raise("safety", t.code, severity, t.message());
        } else {
            self.0.clear("safety", t.code, t.message());
        }
    }
}

impl endotower_safety::Inputs for Setpoints {
    fn p1_mmhg(&self) -> f64 {
        self.pressure_mmhg()
    }
    fn safe_state(&self) -> bool {
        Setpoints::safe_state(self)
    }
}

/// Why an island host could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot start the safety island threads: {0}")]
    Thread(#[from] std::io::Error),
}

/// Start an island host on `cfg`, reading `setpoints`, raising alarms on `events`.
pub fn start_host(cfg: &SafetyConfig, setpoints: &Setpoints, events: &EventBus) -> Result<IslandHost, StartError> {
    let inputs: Arc<dyn endotower_safety::Inputs> = Arc::new(setpoints.clone());
    Ok(IslandHost::start(cfg.island_config()?, inputs, Arc::new(EventBusSink(events.clone())))?)
}

/// As [`start_host`], with test hooks shared by every island of the host.
#[cfg(feature = "fault-injection")]
pub fn start_host_with_hooks(
    cfg: &SafetyConfig,
    setpoints: &Setpoints,
    events: &EventBus,
    hooks: Arc<endotower_safety::hooks::IslandHooks>,
) -> Result<IslandHost, StartError> {
    let inputs: Arc<dyn endotower_safety::Inputs> = Arc::new(setpoints.clone());
    Ok(IslandHost::start_with_hooks(cfg.island_config()?, inputs, Arc::new(EventBusSink(events.clone())), hooks)?)
}

/// Holds the running island host across safety-actor restarts (and the
/// test hooks of its islands).
#[derive(Clone, Default)]
pub struct SafetySlot {
    host: Arc<Mutex<Option<IslandHost>>>,
    #[cfg(feature = "fault-injection")]
    hooks: Arc<endotower_safety::hooks::IslandHooks>,
}

impl SafetySlot {
    /// Run `f` on the host, if one is running.
    pub fn with<R>(&self, f: impl FnOnce(&IslandHost) -> R) -> Option<R> {
        self.host.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(f)
    }

    /// The test hooks of every island this slot runs.
    #[cfg(feature = "fault-injection")]
    pub fn hooks(&self) -> &endotower_safety::hooks::IslandHooks {
        &self.hooks
    }

    /// Start the host unless one runs; restart its watchdog thread if that died.
    fn ensure_running(&self, cfg: &SafetyConfig, setpoints: &Setpoints, events: &EventBus) -> Result<(), ActorProcessingErr> {
        let mut host = self.host.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = host.as_mut() {
            if !h.watchdog_alive() {
                tracing::error!("safety: the island's watchdog thread is gone; starting a new one (the island keeps running)");
                h.restart_watchdog()?;
            }
            return Ok(());
        }
        #[cfg(feature = "fault-injection")]
        let h = start_host_with_hooks(cfg, setpoints, events, self.hooks.clone())?;
        #[cfg(not(feature = "fault-injection"))]
        let h = start_host(cfg, setpoints, events)?;
        let rt = if cfg.realtime_priority { "SCHED_FIFO where permitted" } else { "normal priority" };
        tracing::info!(period_us = cfg.period_us, stall_ms = cfg.stall_ms, "safety island running ({rt})");
        *host = Some(h);
        Ok(())
    }

    /// Stop the host (tower shutdown only).
    pub fn shutdown(&self) {
        if let Some(h) = self.host.lock().unwrap_or_else(|p| p.into_inner()).take() {
            h.shutdown();
        }
    }
}

pub struct SafetyArgs {
    pub cfg: SafetyConfig,
    pub setpoints: Setpoints,
    pub events: EventBus,
    pub slot: SafetySlot,
    pub liveness: Liveness,
}

pub enum SafetyMsg {
    Watchdog,
    TestPanic,
}

/// How often the actor checks the host and its links.
const TICK: Duration = Duration::from_millis(100);
/// Link transitions are reported at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(1);

pub struct SafetyState {
    args: SafetyArgs,
    /// Transitions already reported, per link.
    reported: [u64; 4],
    handovers: u64,
    last_report: Instant,
}

pub struct SafetyActor;

impl SafetyState {
    /// One log line per link that changed state since the last report.
    fn report_links(&mut self) {
        const NAMES: [&str; 4] = ["insufflator", "light", "camera", "pedal"];
        let reported = &mut self.reported;
        let handovers = &mut self.handovers;
        self.args.slot.with(|h| {
            for (i, c) in h.links().iter().enumerate() {
                let n = c.transitions.load(Ordering::Relaxed);
                if n != reported[i] {
                    let state = LinkState::from_u8(c.state.load(Ordering::Relaxed));
                    let reason = Reason::from_u8(c.last_reason.load(Ordering::Relaxed)).text();
                    let (timeouts, errors) = (c.timeouts.load(Ordering::Relaxed), c.errors.load(Ordering::Relaxed));
                    let what = format!("{} transitions since the last report", n - reported[i]);
                    if state == LinkState::Connected {
                        tracing::info!(link = %format!("safety/{}", NAMES[i]), state = state.name(), last_reason = reason, timeouts, errors, "{what}");
                    } else {
                        tracing::warn!(link = %format!("safety/{}", NAMES[i]), state = state.name(), last_reason = reason, timeouts, errors, "{what}");
                    }
                    reported[i] = n;
                }
            }
            let n = h.host_stats().handovers.load(Ordering::Relaxed);
            if n != *handovers {
                let gap = h.host_stats().last_handover_gap_us.load(Ordering::Relaxed);
                tracing::warn!(handovers = n, last_gap_us = gap, generation = h.generation(), "safety island replaced by the watchdog");
                *handovers = n;
            }
        });
    }
}

impl Actor for SafetyActor {
    type Msg = SafetyMsg;
    type State = SafetyState;
    type Arguments = SafetyArgs;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, a: SafetyArgs) -> Result<Self::State, ActorProcessingErr> {
        a.liveness.beat();
        if a.slot.with(|_| ()).is_some() {
            tracing::info!("safety actor: adopting the running safety island");
        }
        a.slot.ensure_running(&a.cfg, &a.setpoints, &a.events)?;
        myself.send_interval(TICK, || SafetyMsg::Watchdog);
        Ok(SafetyState { args: a, reported: [0; 4], handovers: 0, last_report: Instant::now() })
    }

    async fn handle(&self, _myself: ActorRef<Self::Msg>, msg: Self::Msg, s: &mut Self::State) -> Result<(), ActorProcessingErr> {
        match msg {
            SafetyMsg::Watchdog => {
                s.args.liveness.beat();
                let a = &s.args;
                a.slot.ensure_running(&a.cfg, &a.setpoints, &a.events)?;
                if s.last_report.elapsed() >= REPORT_EVERY {
                    s.last_report = Instant::now();
                    s.report_links();
                }
            }
            SafetyMsg::TestPanic => panic!("safety actor: test hook panic"),
        }
        Ok(())
    }
}
