//! The safety actor: the supervised face of the safety island.
//!
//! The island thread lives in a [`SafetySlot`] owned by the tower, not by this
//! actor. A restarted safety actor adopts the island that is still running,
//! so restarting the actor leaves no gap in coverage. The actor's job is the
//! watchdog: if the island thread dies or stops completing cycles, it starts a
//! fresh island (new thread, new connections) and raises an alarm; until then
//! the devices' own heartbeat fail-safe covers the gap.

use crate::config::SafetyConfig;
use crate::events::{EventBus, Severity};
use crate::safety_island::{IslandTestHooks, SafetyIsland};
use crate::setpoints::Setpoints;
use crate::supervisor::Liveness;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Holds the running island across safety-actor restarts, and the island's
/// test hooks across island replacements.
#[derive(Clone, Default)]
pub struct SafetySlot {
    island: Arc<Mutex<Option<SafetyIsland>>>,
    hooks: Arc<IslandTestHooks>,
}

impl SafetySlot {
    /// Run `f` on the island, if one is running.
    pub fn with<R>(&self, f: impl FnOnce(&SafetyIsland) -> R) -> Option<R> {
        self.island.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(f)
    }

    /// The test hooks of every island this slot runs.
    pub fn hooks(&self) -> &IslandTestHooks {
        &self.hooks
    }

    fn take(&self) -> Option<SafetyIsland> {
        self.island.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn put(&self, island: SafetyIsland) {
        *self.island.lock().unwrap_or_else(|p| p.into_inner()) = Some(island);
    }

    /// Stop the island (tower shutdown only).
    pub fn shutdown(&self) {
        if let Some(i) = self.take() {
            i.stop();
        }
    }
}

/// Time without a completed cycle before the island is declared stalled and
/// replaced. Well under the devices' 300 ms heartbeat fail-safe, so a new
/// island is running before any device falls back; long enough that a loaded
/// machine's scheduling hiccup does not tear down a healthy island.
pub const ISLAND_STALL_LIMIT: Duration = Duration::from_millis(100);

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

pub struct SafetyActor;

fn start_island(a: &SafetyArgs) -> Result<(), ActorProcessingErr> {
    let island = SafetyIsland::start_with_hooks(a.cfg.clone(), a.setpoints.clone(), a.events.clone(), a.slot.hooks.clone())?;
    a.slot.put(island);
    Ok(())
}

impl Actor for SafetyActor {
    type Msg = SafetyMsg;
    type State = SafetyArgs;
    type Arguments = SafetyArgs;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, a: SafetyArgs) -> Result<Self::State, ActorProcessingErr> {
        a.liveness.beat();
        match a.slot.with(|i| i.is_alive(ISLAND_STALL_LIMIT)) {
            Some(true) => tracing::info!("safety actor: adopting the running safety island"),
            Some(false) => {
                tracing::error!("safety actor: island found dead at start; starting a new one");
                if let Some(old) = a.slot.take() {
                    old.stop();
                }
                start_island(&a)?;
            }
            None => start_island(&a)?,
        }
        myself.send_interval(Duration::from_millis(10), || SafetyMsg::Watchdog);
        Ok(a)
    }

    async fn handle(&self, _myself: ActorRef<Self::Msg>, msg: Self::Msg, a: &mut Self::State) -> Result<(), ActorProcessingErr> {
        match msg {
            SafetyMsg::Watchdog => {
                a.liveness.beat();
                // Give a new island time to connect before judging it.
                let alive =
                    a.slot.with(|i| i.is_alive(ISLAND_STALL_LIMIT) || i.stats().cycles.load(std::sync::atomic::Ordering::Relaxed) == 0);
                if alive != Some(true) {
                    a.events.raise("safety", "ISLAND_RESTART", Severity::High, "safety island stopped cycling: starting a new island");
                    if let Some(old) = a.slot.take() {
                        old.stop();
                    }
                    start_island(a)?;
                } else if a.events.is_active("safety", "ISLAND_RESTART") && a.slot.with(|i| i.is_alive(ISLAND_STALL_LIMIT)) == Some(true) {
                    a.events.clear("safety", "ISLAND_RESTART", "safety island cycling again");
                }
            }
            SafetyMsg::TestPanic => panic!("safety actor: test hook panic"),
        }
        Ok(())
    }
}
