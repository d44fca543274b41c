//! A supervisor actor built on ractor's `SupervisionEvent`: per-child restart
//! type and backoff, per-supervisor strategy and intensity, hang detection
//! through liveness beats (supervisors beat too, so their parents watch
//! them), bounded child start-up, down-time alarms, and meltdown handling.
//!
//! Decision rules (also in ARCHITECTURE.md, "Restart semantics"):
//! - `permanent` children are always restarted, `transient` ones only after an
//!   abnormal exit (panic, error, hang kill), `temporary` ones never.
//! - `one_for_one` restarts the failed child; `one_for_all` stops and restarts
//!   every child; `rest_for_one` the failed child and those declared after it.
//! - Restart bookkeeping is per child: a pending restart carries the child's
//!   generation and is dropped only when that child was scheduled again (its
//!   own later failure, or a group restart that covers it). A sibling's
//!   failure never cancels it.
//! - A restart waits the child's backoff, which doubles on each restart within
//!   the intensity window and resets after a quiet window.
//! - A child's start (`pre_start`) is bounded by `start_timeout_ms`; one that
//!   takes longer is killed and counts as a failed start.
//! - More than `max_restarts` restarts within `window_ms` is a meltdown: an
//!   alarm is raised, and per the policy the supervisor fails upwards (after
//!   the safe-state hook, or not), or contains the failing child (retry after
//!   a cool-down), with or without the safe-state hook.
//! - A child down (waiting for its restart) longer than its `down_alarm_ms`
//!   raises `ACTOR_DOWN` under the child's name, cleared when it runs again.

use crate::events::{EventBus, EventKind, Severity};
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr, SupervisionEvent};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    OneForOne,
    OneForAll,
    RestForOne,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartType {
    Permanent,
    Transient,
    Temporary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeltdownAction {
    /// Fail upwards; the parent decides.
    Escalate,
    /// Run the meltdown hook (tower safe state + alarm), then fail upwards.
    SafeState,
    /// Circuit breaker: raise the alarm, keep the supervisor up, and retry
    /// the failing child after a cool-down of one intensity window. For
    /// subtrees that must never take the tower down (the AI branch).
    Contain,
    /// Run the meltdown hook, then contain. The root's choice: it has no
    /// parent, and failing would stop the whole tree, the live picture and
    /// telemetry with it.
    SafeStateAndContain,
}

impl MeltdownAction {
    fn contains(self) -> bool {
        matches!(self, MeltdownAction::Contain | MeltdownAction::SafeStateAndContain)
    }
    fn runs_hook(self) -> bool {
        matches!(self, MeltdownAction::SafeState | MeltdownAction::SafeStateAndContain)
    }
}

/// Strategy and intensity of one supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorPolicy {
    pub strategy: Strategy,
    pub max_restarts: u32,
    pub window_ms: u64,
    pub meltdown: MeltdownAction,
}

/// Restart type, backoff, hang timeout, start bound and down alarm of one child.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChildPolicy {
    pub restart: RestartType,
    #[serde(default = "default_backoff_initial")]
    pub backoff_initial_ms: u64,
    #[serde(default = "default_backoff_max")]
    pub backoff_max_ms: u64,
    /// Kill and restart the child when its liveness beat is older than this.
    #[serde(default)]
    pub hang_timeout_ms: Option<u64>,
    /// Longest a (re)start may take (`pre_start`); a slower one is killed and
    /// counts as a failed start.
    #[serde(default = "default_start_timeout")]
    pub start_timeout_ms: u64,
    /// Raise `ACTOR_DOWN` when the child has been down (failed, waiting for
    /// its restart) longer than this.
    #[serde(default)]
    pub down_alarm_ms: Option<u64>,
}

fn default_backoff_initial() -> u64 {
    50
}
fn default_backoff_max() -> u64 {
    5000
}
fn default_start_timeout() -> u64 {
    10_000
}

/// Share of the intensity window a crash loop may take to reach
/// `max_restarts + 1` failures: the rest is allowance for the starts themselves.
const REACHABLE_SHARE: f64 = 0.8;

impl SupervisorPolicy {
    pub fn validate(&self, path: &str) -> Result<(), crate::config::ConfigError> {
        crate::config::check_int(&format!("{path}.max_restarts"), u64::from(self.max_restarts), 0, 10_000, "restarts")?;
        crate::config::check_int(&format!("{path}.window_ms"), self.window_ms, 1, 3_600_000, "ms")
    }

    /// A child crash-looping under this supervisor must be able to reach the
    /// intensity limit: otherwise its backoff cap keeps it below
    /// `max_restarts` per window forever, and the meltdown (the safe state,
    /// or the circuit breaker) never comes. `child_path` names the child's
    /// policy in the config.
    pub fn check_reachable(&self, path: &str, child_path: &str, child: &ChildPolicy) -> Result<(), crate::config::ConfigError> {
        let needed = crash_loop_span_ms(child, self.max_restarts);
        let allowed = self.window_ms as f64 * REACHABLE_SHARE;
        if needed as f64 > allowed {
            return Err(crate::config::ConfigError::new(
                &format!("{child_path}.backoff_max_ms"),
                child.backoff_max_ms,
                &format!(
                    "a backoff that lets a crash loop reach {path}.max_restarts: {} restarts take {needed} ms of backoff, more than {:.0} % of {path}.window_ms ({} ms), so the meltdown would never come (lower backoff_max_ms or max_restarts, or widen window_ms)",
                    self.max_restarts,
                    REACHABLE_SHARE * 100.0,
                    self.window_ms
                ),
            ));
        }
        Ok(())
    }
}

/// Time a child that fails at once on every start needs, in backoff alone,
/// to fail `restarts + 1` times: the sum of its first `restarts` backoffs.
pub fn crash_loop_span_ms(child: &ChildPolicy, restarts: u32) -> u64 {
    let (mut b, mut sum) = (child.backoff_initial_ms, 0u64);
    for _ in 0..restarts {
        sum = sum.saturating_add(b);
        b = b.saturating_mul(2).clamp(child.backoff_initial_ms, child.backoff_max_ms);
    }
    sum
}

impl ChildPolicy {
    pub fn validate(&self, path: &str) -> Result<(), crate::config::ConfigError> {
        crate::config::check_int(&format!("{path}.backoff_initial_ms"), self.backoff_initial_ms, 0, 60_000, "ms")?;
        crate::config::check_int(
            &format!("{path}.backoff_max_ms"),
            self.backoff_max_ms,
            self.backoff_initial_ms,
            600_000,
            "ms (>= backoff_initial_ms)",
        )?;
        if let Some(h) = self.hang_timeout_ms {
            crate::config::check_int(&format!("{path}.hang_timeout_ms"), h, 10, 600_000, "ms")?;
        }
        crate::config::check_int(&format!("{path}.start_timeout_ms"), self.start_timeout_ms, 100, 600_000, "ms")?;
        if let Some(d) = self.down_alarm_ms {
            crate::config::check_int(&format!("{path}.down_alarm_ms"), d, 10, 600_000, "ms")?;
        }
        Ok(())
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A liveness beat an actor updates from its message loop; the supervisor
/// kills the child when the beat is older than the child's hang timeout.
#[derive(Clone, Debug, Default)]
pub struct Liveness(Arc<AtomicU64>);

impl Liveness {
    pub fn beat(&self) {
        self.0.store(epoch().elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    pub fn age(&self) -> Duration {
        let now = epoch().elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.0.load(Ordering::Relaxed)))
    }
}

/// Await `fut`, beating `liveness` meanwhile: a supervisor waiting on a
/// bounded operation (a child's start, a sibling's stop) is not hung.
async fn beating<T>(liveness: Option<&Liveness>, fut: impl Future<Output = T>) -> T {
    let Some(l) = liveness else { return fut.await };
    tokio::pin!(fut);
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tick.tick() => l.beat(),
        }
    }
}

/// The start of a child: spawned at once (so it can be killed), `pre_start`
/// still running in the handle.
pub type Started = (ActorCell, JoinHandle<Result<JoinHandle<()>, SpawnErr>>);
/// Starts a child linked to the given supervisor.
pub type StartFn = Arc<dyn Fn(ActorCell) -> Result<Started, SpawnErr> + Send + Sync>;
/// Called on meltdown with (supervisor name, reason).
pub type MeltdownHook = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// Spawn `actor` linked to `supervisor` without waiting for its `pre_start`,
/// the shape a [`StartFn`] returns.
pub fn spawn_child<A: Actor>(name: Option<String>, actor: A, args: A::Arguments, supervisor: ActorCell) -> Result<Started, SpawnErr> {
    let (r, started) = ractor::ActorRuntime::spawn_linked_instant(name, actor, args, supervisor)?;
    Ok((r.get_cell(), started))
}

#[derive(Clone)]
pub struct ChildSpec {
    pub name: String,
    pub policy: ChildPolicy,
    pub start: StartFn,
    pub liveness: Option<Liveness>,
}

pub struct SupervisorSpec {
    pub name: String,
    pub policy: SupervisorPolicy,
    pub children: Vec<ChildSpec>,
    pub events: EventBus,
    pub on_meltdown: Option<MeltdownHook>,
    /// The supervisor's own beat, watched by its parent.
    pub liveness: Option<Liveness>,
}

/// Per-child view for tests and status.
#[derive(Debug, Clone, Serialize)]
pub struct ChildStatus {
    pub name: String,
    pub running: bool,
    pub restarts: u64,
}

pub enum SupervisorMsg {
    /// Start these children, each if its generation is still current.
    Restart {
        jobs: Vec<(usize, u64)>,
    },
    /// Liveness checks, down alarms, own beat.
    Tick,
    Status(RpcReplyPort<Vec<ChildStatus>>),
    /// Look up a running child's cell by name.
    Child(String, RpcReplyPort<Option<ActorCell>>),
}

/// How often a supervisor checks its children and beats.
const TICK: Duration = Duration::from_millis(50);

struct Slot {
    spec: ChildSpec,
    cell: Option<ActorCell>,
    restarts: u64,
    backoff: Duration,
    last_restart: Option<Instant>,
    killed_as_hung: bool,
    /// Bumped each time a restart of this child is scheduled; a pending
    /// restart of an older generation is dropped.
    generation: u64,
    /// When the child went down waiting for a restart.
    down_since: Option<Instant>,
    down_alarmed: bool,
}

impl Slot {
    fn new(spec: ChildSpec) -> Self {
        Slot {
            backoff: Duration::from_millis(spec.policy.backoff_initial_ms),
            spec,
            cell: None,
            restarts: 0,
            last_restart: None,
            killed_as_hung: false,
            generation: 0,
            down_since: None,
            down_alarmed: false,
        }
    }

    /// Schedule this child again: older pending restarts are void.
    fn schedule(&mut self, i: usize) -> (usize, u64) {
        self.generation += 1;
        self.down_since.get_or_insert_with(Instant::now);
        (i, self.generation)
    }
}

pub struct SupervisorState {
    name: String,
    policy: SupervisorPolicy,
    slots: Vec<Slot>,
    recent: VecDeque<Instant>,
    events: EventBus,
    on_meltdown: Option<MeltdownHook>,
    liveness: Option<Liveness>,
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("supervisor {supervisor} meltdown: {reason}")]
    Meltdown { supervisor: String, reason: String },
}

pub struct Supervisor;

impl Supervisor {
    /// Spawn a supervisor, optionally linked to a parent, and wait for its start.
    pub async fn spawn(spec: SupervisorSpec, parent: Option<ActorCell>) -> Result<ActorRef<SupervisorMsg>, SpawnErr> {
        let name = spec.name.clone();
        let (r, _) = match parent {
            Some(p) => Actor::spawn_linked(Some(name), Supervisor, spec, p).await?,
            None => Actor::spawn(Some(name), Supervisor, spec).await?,
        };
        Ok(r)
    }

    /// A `StartFn` that spawns a nested supervisor from a spec factory; the
    /// nested supervisor beats `liveness` for its parent.
    pub fn child_start(make: Arc<dyn Fn() -> SupervisorSpec + Send + Sync>, liveness: Liveness) -> StartFn {
        Arc::new(move |parent| {
            let mut spec = make();
            spec.liveness = Some(liveness.clone());
            let name = spec.name.clone();
            spawn_child(Some(name), Supervisor, spec, parent)
        })
    }
}

impl SupervisorState {
    fn index_of(&self, cell: &ActorCell) -> Option<usize> {
        self.slots.iter().position(|s| s.cell.as_ref().map(|c| c.get_id()) == Some(cell.get_id()))
    }

    /// Record a restart; true if the intensity limit is exceeded.
    fn over_intensity(&mut self) -> bool {
        let now = Instant::now();
        let window = Duration::from_millis(self.policy.window_ms);
        self.recent.push_back(now);
        while self.recent.front().is_some_and(|t| now.duration_since(*t) > window) {
            self.recent.pop_front();
        }
        self.recent.len() > self.policy.max_restarts as usize
    }

    fn next_backoff(&mut self, i: usize) -> Duration {
        let window = Duration::from_millis(self.policy.window_ms);
        let slot = &mut self.slots[i];
        let initial = Duration::from_millis(slot.spec.policy.backoff_initial_ms);
        let max = Duration::from_millis(slot.spec.policy.backoff_max_ms);
        if slot.last_restart.is_none_or(|t| t.elapsed() > window) {
            slot.backoff = initial;
        }
        let d = slot.backoff;
        slot.backoff = (slot.backoff * 2).clamp(initial, max);
        slot.last_restart = Some(Instant::now());
        d
    }

    /// Start child `i` and wait, at most its `start_timeout_ms`, for its
    /// `pre_start`. Beats the child's liveness before and after.
    async fn start_child(&mut self, myself: &ActorRef<SupervisorMsg>, i: usize) -> Result<(), String> {
        let slot = &self.slots[i];
        if let Some(l) = &slot.spec.liveness {
            l.beat();
        }
        let (cell, started) = (slot.spec.start)(myself.get_cell()).map_err(|e| format!("start failed: {e}"))?;
        let bound = Duration::from_millis(slot.spec.policy.start_timeout_ms);
        match beating(self.liveness.as_ref(), tokio::time::timeout(bound, started)).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => return Err(format!("start failed: {e}")),
            Ok(Err(e)) => return Err(format!("start task failed: {e}")),
            Err(_) => {
                cell.kill();
                return Err(format!("start took longer than {} ms: killed", bound.as_millis()));
            }
        }
        let slot = &mut self.slots[i];
        if let Some(l) = &slot.spec.liveness {
            l.beat();
        }
        slot.cell = Some(cell);
        slot.killed_as_hung = false;
        slot.down_since = None;
        if std::mem::take(&mut slot.down_alarmed) || self.events.is_active(&slot.spec.name, "ACTOR_DOWN") {
            self.events.clear(&slot.spec.name, "ACTOR_DOWN", format!("{} running again", slot.spec.name));
        }
        Ok(())
    }

    fn meltdown_reason(&self, child: &str, reason: &str) -> String {
        format!("more than {} restarts within {} ms (last: child {child}: {reason})", self.policy.max_restarts, self.policy.window_ms)
    }

    fn meltdown(&mut self, child: &str, reason: &str) -> ActorProcessingErr {
        let why = self.meltdown_reason(child, reason);
        tracing::error!(supervisor = %self.name, child, reason, action = "meltdown", "supervisor decision");
        self.events.raise(
            &format!("supervisor/{}", self.name),
            "MELTDOWN",
            Severity::High,
            format!("supervisor {} meltdown: {why}", self.name),
        );
        self.run_hook(&why);
        Box::new(SupervisorError::Meltdown { supervisor: self.name.clone(), reason: why })
    }

    fn run_hook(&self, why: &str) {
        if self.policy.meltdown.runs_hook() {
            if let Some(hook) = &self.on_meltdown {
                hook(&self.name, why);
            }
        }
    }

    /// Circuit breaker: no escalation, one retry after a cool-down window.
    fn contain(&mut self, myself: &ActorRef<SupervisorMsg>, i: usize, child: &str, reason: &str) {
        let cool_down = Duration::from_millis(self.policy.window_ms);
        tracing::error!(supervisor = %self.name, child, reason, action = "contain: retry after cool-down", cool_down_ms = self.policy.window_ms, "supervisor decision");
        self.events.raise(
            &format!("supervisor/{}", self.name),
            "CONTAINED",
            Severity::Medium,
            format!("{child} keeps failing ({reason}); retrying in {} ms", cool_down.as_millis()),
        );
        if self.policy.meltdown.runs_hook() {
            let why = self.meltdown_reason(child, reason);
            self.events.raise(
                &format!("supervisor/{}", self.name),
                "MELTDOWN",
                Severity::High,
                format!("supervisor {} meltdown: {why}", self.name),
            );
            self.run_hook(&why);
        }
        self.recent.clear();
        self.slots[i].restarts += 1;
        let job = self.slots[i].schedule(i);
        let me = myself.clone();
        tokio::spawn(async move {
            tokio::time::sleep(cool_down).await;
            let _ = me.cast(SupervisorMsg::Restart { jobs: vec![job] });
        });
    }

    async fn on_child_exit(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        i: usize,
        abnormal: bool,
        reason: String,
    ) -> Result<(), ActorProcessingErr> {
        let child = self.slots[i].spec.name.clone();
        self.slots[i].cell = None;
        let restart = match self.slots[i].spec.policy.restart {
            RestartType::Permanent => true,
            RestartType::Transient => abnormal,
            RestartType::Temporary => false,
        };
        if !restart {
            tracing::info!(supervisor = %self.name, child, reason, action = "not restarted", restart_type = ?self.slots[i].spec.policy.restart, "supervisor decision");
            return Ok(());
        }
        if self.over_intensity() {
            if self.policy.meltdown.contains() {
                self.contain(myself, i, &child, &reason);
                return Ok(());
            }
            return Err(self.meltdown(&child, &reason));
        }
        let group: Vec<usize> = match self.policy.strategy {
            Strategy::OneForOne => vec![i],
            Strategy::OneForAll => (0..self.slots.len()).collect(),
            Strategy::RestForOne => (i..self.slots.len()).collect(),
        };
        // Stop the siblings the strategy restarts; their exit events no longer
        // match a slot and are ignored.
        for &j in &group {
            if let Some(cell) = self.slots[j].cell.take() {
                let why = format!("{:?}: sibling {child} failed", self.policy.strategy);
                tracing::info!(supervisor = %self.name, child = %self.slots[j].spec.name, reason = %why, action = "stop for group restart", "supervisor decision");
                let stopped = beating(self.liveness.as_ref(), cell.stop_and_wait(Some(why), Some(Duration::from_secs(5)))).await;
                if stopped.is_err() {
                    cell.kill();
                }
            }
        }
        let delay = self.next_backoff(i);
        self.slots[i].restarts += 1;
        let jobs: Vec<(usize, u64)> = group.iter().map(|&j| self.slots[j].schedule(j)).collect();
        tracing::warn!(
            supervisor = %self.name, child, reason, action = "restart", strategy = ?self.policy.strategy,
            backoff_ms = delay.as_millis() as u64, restarts = self.slots[i].restarts, "supervisor decision"
        );
        self.events.event(
            EventKind::SupervisorRestart,
            Severity::Low,
            &format!("supervisor/{}", self.name),
            "RESTART",
            format!("restarting {child} in {} ms ({:?}): {reason}", delay.as_millis(), self.policy.strategy),
        );
        let me = myself.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = me.cast(SupervisorMsg::Restart { jobs });
        });
        Ok(())
    }

    /// Kill children whose beat is too old; raise `ACTOR_DOWN` for children
    /// down too long.
    fn tick(&mut self) {
        if let Some(l) = &self.liveness {
            l.beat();
        }
        for slot in &mut self.slots {
            if let (Some(l), Some(limit), Some(cell)) = (&slot.spec.liveness, slot.spec.policy.hang_timeout_ms, &slot.cell) {
                let age = l.age();
                if age > Duration::from_millis(limit) && !slot.killed_as_hung {
                    tracing::error!(supervisor = %self.name, child = %slot.spec.name, reason = %format!("no liveness beat for {} ms (limit {limit} ms)", age.as_millis()), action = "kill as hung", "supervisor decision");
                    slot.killed_as_hung = true;
                    cell.kill();
                }
            }
            if let (Some(limit), Some(since), false) = (slot.spec.policy.down_alarm_ms, slot.down_since, slot.down_alarmed) {
                let down = since.elapsed();
                if down > Duration::from_millis(limit) {
                    slot.down_alarmed = true;
                    self.events.raise(
                        &slot.spec.name,
                        "ACTOR_DOWN",
                        Severity::Medium,
                        format!(
                            "{} has been down for {} ms (restarting, {} restarts so far)",
                            slot.spec.name,
                            down.as_millis(),
                            slot.restarts
                        ),
                    );
                }
            }
        }
    }

    /// Start child `i` as a (re)start: a failure counts like any other.
    async fn restart(&mut self, myself: &ActorRef<SupervisorMsg>, i: usize) -> Result<(), ActorProcessingErr> {
        let child = self.slots[i].spec.name.clone();
        match self.start_child(myself, i).await {
            Ok(()) => {
                tracing::info!(supervisor = %self.name, child, action = "started", "supervisor decision");
                if self.slots[i].restarts > 0 {
                    // When the restart really happened (RESTART is when it was decided).
                    self.events.event(
                        EventKind::SupervisorRestart,
                        Severity::Info,
                        &format!("supervisor/{}", self.name),
                        "STARTED",
                        format!("{child} running again (restart {})", self.slots[i].restarts),
                    );
                }
                self.events.clear(&format!("supervisor/{}", self.name), "CONTAINED", format!("{child} restarted"));
                Ok(())
            }
            Err(reason) => self.on_child_exit(myself, i, true, reason).await,
        }
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorSpec;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, spec: SupervisorSpec) -> Result<Self::State, ActorProcessingErr> {
        if let Some(l) = &spec.liveness {
            l.beat();
        }
        let mut state = SupervisorState {
            name: spec.name,
            policy: spec.policy,
            slots: spec.children.into_iter().map(Slot::new).collect(),
            recent: VecDeque::new(),
            events: spec.events,
            on_meltdown: spec.on_meltdown,
            liveness: spec.liveness,
        };
        // A child that fails to start is handled like one that failed later:
        // restarted per its policy with backoff, counted toward intensity.
        // Only a meltdown fails the supervisor's own start.
        for i in 0..state.slots.len() {
            if let Err(e) = state.restart(&myself, i).await {
                for slot in &mut state.slots {
                    if let Some(c) = slot.cell.take() {
                        c.stop(Some("supervisor start failed".into()));
                    }
                }
                return Err(e);
            }
        }
        myself.send_interval(TICK, || SupervisorMsg::Tick);
        Ok(state)
    }

    async fn post_stop(&self, _myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        for slot in state.slots.iter_mut().rev() {
            if let Some(c) = slot.cell.take() {
                let _ = c.stop_and_wait(Some("supervisor stopping".into()), Some(Duration::from_secs(5))).await;
            }
        }
        Ok(())
    }

    async fn handle(&self, myself: ActorRef<Self::Msg>, msg: Self::Msg, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Restart { jobs } => {
                for (i, generation) in jobs {
                    // Superseded (scheduled again since), or already running.
                    if state.slots[i].generation != generation || state.slots[i].cell.is_some() {
                        continue;
                    }
                    state.restart(&myself, i).await?;
                }
            }
            SupervisorMsg::Tick => state.tick(),
            SupervisorMsg::Status(reply) => {
                let v = state
                    .slots
                    .iter()
                    .map(|s| ChildStatus { name: s.spec.name.clone(), running: s.cell.is_some(), restarts: s.restarts })
                    .collect();
                let _ = reply.send(v);
            }
            SupervisorMsg::Child(name, reply) => {
                let c = state.slots.iter().find(|s| s.spec.name == name).and_then(|s| s.cell.clone());
                let _ = reply.send(c);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, abnormal, reason) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, true, format!("failed: {err}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let hung = state.index_of(&cell).is_some_and(|i| state.slots[i].killed_as_hung);
                let reason = reason.unwrap_or_else(|| if hung { "killed: hung".into() } else { "stopped".into() });
                (cell, hung, reason)
            }
            _ => return Ok(()),
        };
        let Some(i) = state.index_of(&cell) else {
            return Ok(()); // a sibling we stopped ourselves
        };
        state.on_child_exit(&myself, i, abnormal, reason).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    /// A child that counts its starts and panics or stops on demand; its
    /// first `slow_starts` starts take `slow` in `pre_start`.
    struct Probe;
    enum ProbeMsg {
        Crash,
        Quit,
    }
    #[derive(Clone, Default)]
    struct ProbeArgs {
        starts: Arc<AtomicUsize>,
        slow_starts: usize,
        slow: Duration,
    }
    impl Actor for Probe {
        type Msg = ProbeMsg;
        type State = ();
        type Arguments = ProbeArgs;
        async fn pre_start(&self, _m: ActorRef<ProbeMsg>, a: ProbeArgs) -> Result<(), ActorProcessingErr> {
            if a.starts.fetch_add(1, Ordering::SeqCst) < a.slow_starts {
                tokio::time::sleep(a.slow).await;
            }
            Ok(())
        }
        async fn handle(&self, m: ActorRef<ProbeMsg>, msg: ProbeMsg, _s: &mut ()) -> Result<(), ActorProcessingErr> {
            match msg {
                ProbeMsg::Crash => panic!("probe crash"),
                ProbeMsg::Quit => m.stop(None),
            }
            Ok(())
        }
    }

    fn policy(restart: RestartType, backoff_initial_ms: u64, backoff_max_ms: u64) -> ChildPolicy {
        ChildPolicy { restart, backoff_initial_ms, backoff_max_ms, hang_timeout_ms: None, start_timeout_ms: 10_000, down_alarm_ms: None }
    }

    fn probe_with(name: &str, policy: ChildPolicy, args: ProbeArgs) -> ChildSpec {
        ChildSpec { name: name.into(), policy, liveness: None, start: Arc::new(move |sup| spawn_child(None, Probe, args.clone(), sup)) }
    }

    fn probe(name: &str, restart: RestartType, starts: Arc<AtomicUsize>) -> ChildSpec {
        probe_with(name, policy(restart, 1, 4), ProbeArgs { starts, ..Default::default() })
    }

    fn unique(prefix: &str) -> String {
        format!("{prefix}-{}", epoch().elapsed().as_nanos())
    }

    fn spec(name: &str, policy: SupervisorPolicy, children: Vec<ChildSpec>, events: EventBus) -> SupervisorSpec {
        SupervisorSpec { name: unique(name), policy, children, events, on_meltdown: None, liveness: None }
    }

    struct Fixture {
        sup: ActorRef<SupervisorMsg>,
        starts: Vec<Arc<AtomicUsize>>,
        melted: Arc<Mutex<Vec<String>>>,
    }

    async fn fixture(strategy: Strategy, max_restarts: u32, restarts: [RestartType; 3]) -> Fixture {
        let starts: Vec<_> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        let melted = Arc::new(Mutex::new(Vec::new()));
        let m2 = melted.clone();
        let mut spec = spec(
            "sup-test",
            SupervisorPolicy { strategy, max_restarts, window_ms: 10_000, meltdown: MeltdownAction::SafeState },
            ["a", "b", "c"].iter().zip(restarts).zip(&starts).map(|((n, r), s)| probe(n, r, s.clone())).collect(),
            EventBus::new(64),
        );
        spec.on_meltdown = Some(Arc::new(move |sup: &str, _why: &str| m2.lock().unwrap().push(sup.to_string())));
        let sup = Supervisor::spawn(spec, None).await.unwrap();
        Fixture { sup, starts, melted }
    }

    impl Fixture {
        async fn send(&self, child: &str, msg: ProbeMsg) {
            let cell = ractor::call_t!(self.sup, SupervisorMsg::Child, 1000, child.to_string()).unwrap().unwrap();
            cell.send_message(msg).unwrap();
        }
        fn counts(&self) -> Vec<usize> {
            self.starts.iter().map(|s| s.load(Ordering::SeqCst)).collect()
        }
        async fn settle_on(&self, want: &[usize]) -> Vec<usize> {
            for _ in 0..300 {
                if self.counts() == want {
                    // and nothing more happens
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    return self.counts();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            self.counts()
        }
        async fn running(&self) -> Vec<bool> {
            ractor::call_t!(self.sup, SupervisorMsg::Status, 1000).unwrap().iter().map(|c| c.running).collect()
        }
    }

    const P: RestartType = RestartType::Permanent;

    #[tokio::test]
    async fn one_for_one_restarts_only_the_failed_child() {
        let f = fixture(Strategy::OneForOne, 5, [P, P, P]).await;
        f.send("b", ProbeMsg::Crash).await;
        assert_eq!(f.settle_on(&[1, 2, 1]).await, vec![1, 2, 1]);
    }

    #[tokio::test]
    async fn one_for_all_restarts_every_child() {
        let f = fixture(Strategy::OneForAll, 5, [P, P, P]).await;
        f.send("b", ProbeMsg::Crash).await;
        assert_eq!(f.settle_on(&[2, 2, 2]).await, vec![2, 2, 2]);
    }

    #[tokio::test]
    async fn rest_for_one_restarts_the_failed_child_and_those_after_it() {
        let f = fixture(Strategy::RestForOne, 5, [P, P, P]).await;
        f.send("b", ProbeMsg::Crash).await;
        assert_eq!(f.settle_on(&[1, 2, 2]).await, vec![1, 2, 2]);
    }

    #[tokio::test]
    async fn transient_restarts_after_a_crash_but_not_after_a_normal_stop_and_temporary_never() {
        let f = fixture(Strategy::OneForOne, 5, [RestartType::Transient, RestartType::Transient, RestartType::Temporary]).await;
        f.send("a", ProbeMsg::Crash).await;
        f.send("b", ProbeMsg::Quit).await;
        f.send("c", ProbeMsg::Crash).await;
        assert_eq!(f.settle_on(&[2, 1, 1]).await, vec![2, 1, 1]);
        assert_eq!(f.running().await, vec![true, false, false]);
    }

    #[tokio::test]
    async fn exceeding_the_intensity_is_a_meltdown_that_runs_the_hook_and_fails_the_supervisor() {
        let f = fixture(Strategy::OneForOne, 1, [P, P, P]).await;
        f.send("a", ProbeMsg::Crash).await;
        assert_eq!(f.settle_on(&[2, 1, 1]).await, vec![2, 1, 1]);
        f.send("a", ProbeMsg::Crash).await;
        for _ in 0..300 {
            if f.sup.get_status() == ractor::ActorStatus::Stopped {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(f.sup.get_status(), ractor::ActorStatus::Stopped);
        assert_eq!(f.melted.lock().unwrap().len(), 1);
    }

    /// Three probes restarted after a fixed 150 ms backoff, so a second
    /// failure can land while a restart is pending.
    async fn fixture_with_pending_restarts(strategy: Strategy) -> Fixture {
        let starts: Vec<_> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        let children = ["a", "b", "c"]
            .iter()
            .zip(&starts)
            .map(|(n, s)| probe_with(n, policy(P, 150, 150), ProbeArgs { starts: s.clone(), ..Default::default() }))
            .collect();
        let policy = SupervisorPolicy { strategy, max_restarts: 10, window_ms: 10_000, meltdown: MeltdownAction::Escalate };
        let sup = Supervisor::spawn(spec("sup-pending", policy, children, EventBus::new(64)), None).await.unwrap();
        Fixture { sup, starts, melted: Arc::default() }
    }

    /// Issue 14: one supervisor-wide epoch let the light's restart cancel
    /// the insufflator's pending one, and the insufflator stayed down.
    #[tokio::test]
    async fn hz012_a_sibling_failing_during_a_pending_restart_does_not_cancel_it() {
        let f = fixture_with_pending_restarts(Strategy::OneForOne).await;
        f.send("a", ProbeMsg::Crash).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        f.send("b", ProbeMsg::Crash).await;
        assert_eq!(f.settle_on(&[2, 2, 1]).await, vec![2, 2, 1], "both failed children restarted");
        assert_eq!(f.running().await, vec![true, true, true]);
    }

    /// A group restart that covers a child with a pending restart replaces
    /// it: the child starts once, not twice.
    #[tokio::test]
    async fn a_group_restart_supersedes_a_pending_restart_of_a_child_it_covers() {
        let f = fixture_with_pending_restarts(Strategy::RestForOne).await;
        f.send("c", ProbeMsg::Crash).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        f.send("b", ProbeMsg::Crash).await; // restarts b and c
        assert_eq!(f.settle_on(&[1, 2, 2]).await, vec![1, 2, 2]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(f.counts(), vec![1, 2, 2], "c's own pending restart was dropped");
    }

    #[tokio::test]
    async fn a_start_slower_than_start_timeout_is_killed_and_retried() {
        let starts = Arc::new(AtomicUsize::new(0));
        let mut p = policy(P, 10, 10);
        p.start_timeout_ms = 200;
        let slow = ProbeArgs { starts: starts.clone(), slow_starts: 1, slow: Duration::from_secs(3600) };
        let events = EventBus::new(64);
        let policy =
            SupervisorPolicy { strategy: Strategy::OneForOne, max_restarts: 5, window_ms: 10_000, meltdown: MeltdownAction::Escalate };
        let sup = Supervisor::spawn(spec("sup-slow", policy, vec![probe_with("a", p, slow)], events), None).await.unwrap();
        let mut up = false;
        for _ in 0..300 {
            let st = ractor::call_t!(sup, SupervisorMsg::Status, 1000).unwrap();
            if st[0].running {
                assert_eq!(st[0].restarts, 1, "the hung start counted as a failure");
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(up, "child never came up after its start hung");
        assert_eq!(starts.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_child_down_longer_than_down_alarm_ms_raises_actor_down_until_it_runs_again() {
        let starts = Arc::new(AtomicUsize::new(0));
        let mut p = policy(P, 400, 400);
        p.down_alarm_ms = Some(100);
        let events = EventBus::new(64);
        let policy =
            SupervisorPolicy { strategy: Strategy::OneForOne, max_restarts: 5, window_ms: 10_000, meltdown: MeltdownAction::Escalate };
        let children = vec![probe_with("pump", p, ProbeArgs { starts: starts.clone(), ..Default::default() })];
        let sup = Supervisor::spawn(spec("sup-down", policy, children, events.clone()), None).await.unwrap();
        let f = Fixture { sup, starts: vec![starts], melted: Arc::default() };
        f.send("pump", ProbeMsg::Crash).await;
        let t0 = Instant::now();
        while !events.is_active("pump", "ACTOR_DOWN") && t0.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(events.is_active("pump", "ACTOR_DOWN"), "no ACTOR_DOWN while down");
        assert_eq!(f.settle_on(&[2]).await, vec![2]);
        assert!(!events.is_active("pump", "ACTOR_DOWN"), "ACTOR_DOWN cleared once running");
    }

    #[tokio::test]
    async fn hz015_contain_keeps_the_supervisor_up_and_retries_after_the_window() {
        let starts: Vec<_> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        let policy = SupervisorPolicy { strategy: Strategy::OneForOne, max_restarts: 1, window_ms: 300, meltdown: MeltdownAction::Contain };
        let children = ["a", "b", "c"].iter().zip(&starts).map(|(n, s)| probe(n, P, s.clone())).collect();
        let f = Fixture {
            sup: Supervisor::spawn(spec("sup-contain", policy, children, EventBus::new(64)), None).await.unwrap(),
            starts,
            melted: Arc::default(),
        };
        f.send("a", ProbeMsg::Crash).await;
        assert_eq!(f.settle_on(&[2, 1, 1]).await, vec![2, 1, 1]);
        f.send("a", ProbeMsg::Crash).await; // over intensity: contained
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(f.counts(), vec![2, 1, 1], "no immediate restart");
        assert_eq!(f.sup.get_status(), ractor::ActorStatus::Running);
        assert_eq!(f.settle_on(&[3, 1, 1]).await, vec![3, 1, 1], "retried after the cool-down");
    }

    #[tokio::test]
    async fn hz008_safe_state_and_contain_runs_the_hook_and_keeps_the_siblings_running() {
        let starts: Vec<_> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        let melted = Arc::new(Mutex::new(Vec::new()));
        let m2 = melted.clone();
        let policy = SupervisorPolicy {
            strategy: Strategy::OneForOne,
            max_restarts: 1,
            window_ms: 300,
            meltdown: MeltdownAction::SafeStateAndContain,
        };
        let children = ["a", "b", "c"].iter().zip(&starts).map(|(n, s)| probe(n, P, s.clone())).collect();
        let mut spec = spec("sup-root", policy, children, EventBus::new(64));
        spec.on_meltdown = Some(Arc::new(move |sup: &str, _why: &str| m2.lock().unwrap().push(sup.to_string())));
        let f = Fixture { sup: Supervisor::spawn(spec, None).await.unwrap(), starts, melted };
        f.send("a", ProbeMsg::Crash).await;
        assert_eq!(f.settle_on(&[2, 1, 1]).await, vec![2, 1, 1]);
        f.send("a", ProbeMsg::Crash).await;
        assert_eq!(f.settle_on(&[3, 1, 1]).await, vec![3, 1, 1], "retried after the cool-down");
        assert_eq!(f.melted.lock().unwrap().len(), 1, "the safe-state hook ran");
        assert_eq!(f.sup.get_status(), ractor::ActorStatus::Running);
        assert_eq!(f.running().await, vec![true, true, true]);
    }

    /// A supervisor stuck in its handler (here: a meltdown hook that blocks
    /// its thread) stops beating; its parent kills it and starts a new one,
    /// which starts its children again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_nested_supervisor_that_stops_beating_is_killed_and_restarted_by_its_parent() {
        let starts = Arc::new(AtomicUsize::new(0));
        let (leaf_starts, blocked, events) = (starts.clone(), Arc::new(AtomicUsize::new(0)), EventBus::new(64));
        let (ev, inner_name) = (events.clone(), unique("sup-inner"));
        let make: Arc<dyn Fn() -> SupervisorSpec + Send + Sync> = Arc::new(move || {
            let blocked = blocked.clone();
            SupervisorSpec {
                name: inner_name.clone(),
                policy: SupervisorPolicy {
                    strategy: Strategy::OneForOne,
                    max_restarts: 0,
                    window_ms: 1000,
                    meltdown: MeltdownAction::SafeStateAndContain,
                },
                children: vec![probe("leaf", P, leaf_starts.clone())],
                events: ev.clone(),
                on_meltdown: Some(Arc::new(move |_: &str, _: &str| {
                    if blocked.fetch_add(1, Ordering::SeqCst) == 0 {
                        std::thread::sleep(Duration::from_millis(1500));
                    }
                })),
                liveness: None,
            }
        });
        let mut p = policy(P, 10, 10);
        p.hang_timeout_ms = Some(300);
        let live = Liveness::default();
        let child = ChildSpec { name: "inner".into(), policy: p, liveness: Some(live.clone()), start: Supervisor::child_start(make, live) };
        let policy =
            SupervisorPolicy { strategy: Strategy::OneForOne, max_restarts: 5, window_ms: 10_000, meltdown: MeltdownAction::Escalate };
        let outer = Supervisor::spawn(spec("sup-outer", policy, vec![child], events), None).await.unwrap();
        let inner = ractor::call_t!(outer, SupervisorMsg::Child, 1000, "inner".to_string()).unwrap().unwrap();
        let leaf = ractor::call_t!(ActorRef::<SupervisorMsg>::from(inner.clone()), SupervisorMsg::Child, 1000, "leaf".to_string())
            .unwrap()
            .unwrap();
        leaf.send_message(ProbeMsg::Crash).unwrap();
        let mut restarted = false;
        for _ in 0..500 {
            let st = ractor::call_t!(outer, SupervisorMsg::Status, 1000).unwrap();
            if st[0].restarts == 1 && st[0].running && starts.load(Ordering::SeqCst) >= 2 {
                restarted = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(restarted, "the stuck supervisor was not replaced");
        assert_eq!(inner.get_status(), ractor::ActorStatus::Stopped, "the stuck supervisor was killed");
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let spec = probe("x", P, Arc::new(AtomicUsize::new(0)));
        let mut st = SupervisorState {
            name: "s".into(),
            policy: SupervisorPolicy {
                strategy: Strategy::OneForOne,
                max_restarts: 9,
                window_ms: 60_000,
                meltdown: MeltdownAction::Escalate,
            },
            slots: vec![Slot::new(spec)],
            recent: VecDeque::new(),
            events: EventBus::new(4),
            on_meltdown: None,
            liveness: None,
        };
        st.slots[0].backoff = Duration::from_millis(1);
        let d: Vec<u128> = (0..5).map(|_| st.next_backoff(0).as_millis()).collect();
        assert_eq!(d, vec![1, 2, 4, 4, 4]);
    }

    #[test]
    fn an_intensity_a_crash_loop_cannot_reach_with_its_backoff_cap_is_rejected() {
        let sup =
            SupervisorPolicy { strategy: Strategy::OneForOne, max_restarts: 10, window_ms: 10_000, meltdown: MeltdownAction::SafeState };
        // 50, 100, ..., 1600, then 2000 x 4: 11 150 ms for 10 restarts.
        assert_eq!(crash_loop_span_ms(&policy(P, 50, 2000), 10), 11_150);
        let e = sup.check_reachable("supervision.devices", "supervision.children.insufflator", &policy(P, 50, 2000)).unwrap_err();
        assert!(e.to_string().contains("supervision.children.insufflator.backoff_max_ms"), "{e}");
        assert_eq!(crash_loop_span_ms(&policy(P, 50, 1000), 10), 6_550);
        assert!(sup.check_reachable("supervision.devices", "supervision.children.insufflator", &policy(P, 50, 1000)).is_ok());
    }
}
