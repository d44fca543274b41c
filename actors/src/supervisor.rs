//! A supervisor actor built on ractor's `SupervisionEvent`: per-child restart
//! type and backoff, per-supervisor strategy and intensity, hang detection
//! through liveness beats, and meltdown escalation.
//!
//! Decision rules (also in ARCHITECTURE.md, "Runtime semantics"):
//! - `permanent` children are always restarted, `transient` ones only after an
//!   abnormal exit (panic, error, hang kill), `temporary` ones never.
//! - `one_for_one` restarts the failed child; `one_for_all` stops and restarts
//!   every child; `rest_for_one` the failed child and those declared after it.
//! - A restart waits the child's backoff, which doubles on each restart within
//!   the intensity window and resets after a quiet window.
//! - More than `max_restarts` restarts within `window_ms` is a meltdown: an
//!   alarm is raised, the meltdown hook runs (the tower's is "safe state"),
//!   and the supervisor fails, so its own parent applies its policy.

use crate::events::{EventBus, EventKind, Severity};
use futures::future::BoxFuture;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr, SupervisionEvent};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
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

/// Restart type, backoff and hang timeout of one child.
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
}

fn default_backoff_initial() -> u64 {
    50
}
fn default_backoff_max() -> u64 {
    5000
}

impl SupervisorPolicy {
    pub fn validate(&self, path: &str) -> Result<(), crate::config::ConfigError> {
        crate::config::check_int(&format!("{path}.max_restarts"), u64::from(self.max_restarts), 0, 10_000, "restarts")?;
        crate::config::check_int(&format!("{path}.window_ms"), self.window_ms, 1, 3_600_000, "ms")
    }
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

/// Starts a child linked to the given supervisor and returns its cell.
pub type StartFn = Arc<dyn Fn(ActorCell) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> + Send + Sync>;
/// Called on meltdown with (supervisor name, reason).
pub type MeltdownHook = Arc<dyn Fn(&str, &str) + Send + Sync>;

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
}

/// Per-child view for tests and status.
#[derive(Debug, Clone, Serialize)]
pub struct ChildStatus {
    pub name: String,
    pub running: bool,
    pub restarts: u64,
}

pub enum SupervisorMsg {
    /// Start these children (after backoff).
    Restart {
        indices: Vec<usize>,
        epoch: u64,
    },
    CheckLiveness,
    Status(RpcReplyPort<Vec<ChildStatus>>),
    /// Look up a running child's cell by name.
    Child(String, RpcReplyPort<Option<ActorCell>>),
}

struct Slot {
    spec: ChildSpec,
    cell: Option<ActorCell>,
    restarts: u64,
    backoff: Duration,
    last_restart: Option<Instant>,
    killed_as_hung: bool,
}

pub struct SupervisorState {
    name: String,
    policy: SupervisorPolicy,
    slots: Vec<Slot>,
    recent: VecDeque<Instant>,
    events: EventBus,
    on_meltdown: Option<MeltdownHook>,
    /// Bumped whenever a strategy restarts a group, so stale restarts are dropped.
    epoch: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("supervisor {supervisor} meltdown: {reason}")]
    Meltdown { supervisor: String, reason: String },
    #[error("supervisor {supervisor} could not start child {child}: {source}")]
    Start { supervisor: String, child: String, source: SpawnErr },
}

pub struct Supervisor;

impl Supervisor {
    /// Spawn a supervisor, optionally linked to a parent.
    pub async fn spawn(spec: SupervisorSpec, parent: Option<ActorCell>) -> Result<ActorRef<SupervisorMsg>, SpawnErr> {
        let name = spec.name.clone();
        let (r, _) = match parent {
            Some(p) => Actor::spawn_linked(Some(name), Supervisor, spec, p).await?,
            None => Actor::spawn(Some(name), Supervisor, spec).await?,
        };
        Ok(r)
    }

    /// A `StartFn` that spawns a nested supervisor from a spec factory.
    pub fn child_start(make: Arc<dyn Fn() -> SupervisorSpec + Send + Sync>) -> StartFn {
        Arc::new(move |parent| {
            let spec = make();
            Box::pin(async move { Supervisor::spawn(spec, Some(parent)).await.map(|r| r.get_cell()) })
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

    async fn start_child(&mut self, myself: &ActorRef<SupervisorMsg>, i: usize) -> Result<(), SpawnErr> {
        let slot = &mut self.slots[i];
        if let Some(l) = &slot.spec.liveness {
            l.beat();
        }
        let cell = (slot.spec.start)(myself.get_cell()).await?;
        slot.cell = Some(cell);
        slot.killed_as_hung = false;
        Ok(())
    }

    fn meltdown(&mut self, child: &str, reason: &str) -> ActorProcessingErr {
        let why =
            format!("more than {} restarts within {} ms (last: child {child}: {reason})", self.policy.max_restarts, self.policy.window_ms);
        tracing::error!(supervisor = %self.name, child, reason, action = "meltdown", "supervisor decision");
        self.events.raise(
            &format!("supervisor/{}", self.name),
            "MELTDOWN",
            Severity::High,
            format!("supervisor {} meltdown: {why}", self.name),
        );
        if self.policy.meltdown == MeltdownAction::SafeState {
            if let Some(hook) = &self.on_meltdown {
                hook(&self.name, &why);
            }
        }
        Box::new(SupervisorError::Meltdown { supervisor: self.name.clone(), reason: why })
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
        self.recent.clear();
        self.slots[i].restarts += 1;
        self.epoch += 1;
        let (epoch, me) = (self.epoch, myself.clone());
        tokio::spawn(async move {
            tokio::time::sleep(cool_down).await;
            let _ = me.cast(SupervisorMsg::Restart { indices: vec![i], epoch });
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
            if self.policy.meltdown == MeltdownAction::Contain {
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
                if cell.stop_and_wait(Some(why), Some(Duration::from_secs(5))).await.is_err() {
                    cell.kill();
                }
            }
        }
        let delay = self.next_backoff(i);
        self.slots[i].restarts += 1;
        self.epoch += 1;
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
        let epoch = self.epoch;
        let me = myself.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = me.cast(SupervisorMsg::Restart { indices: group, epoch });
        });
        Ok(())
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorSpec;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, spec: SupervisorSpec) -> Result<Self::State, ActorProcessingErr> {
        let mut state = SupervisorState {
            name: spec.name,
            policy: spec.policy,
            slots: spec
                .children
                .into_iter()
                .map(|spec| Slot {
                    backoff: Duration::from_millis(spec.policy.backoff_initial_ms),
                    spec,
                    cell: None,
                    restarts: 0,
                    last_restart: None,
                    killed_as_hung: false,
                })
                .collect(),
            recent: VecDeque::new(),
            events: spec.events,
            on_meltdown: spec.on_meltdown,
            epoch: 0,
        };
        // A child that fails to start is handled like one that failed later:
        // restarted per its policy with backoff, counted toward intensity.
        // Only a meltdown fails the supervisor's own start.
        for i in 0..state.slots.len() {
            let child = state.slots[i].spec.name.clone();
            match state.start_child(&myself, i).await {
                Ok(()) => tracing::info!(supervisor = %state.name, child, "child started"),
                Err(source) => {
                    let reason = format!("start failed: {source}");
                    if let Err(e) = state.on_child_exit(&myself, i, true, reason).await {
                        for slot in &mut state.slots {
                            if let Some(c) = slot.cell.take() {
                                c.stop(Some("supervisor start failed".into()));
                            }
                        }
                        return Err(e);
                    }
                }
            }
        }
        if state.slots.iter().any(|s| s.spec.liveness.is_some() && s.spec.policy.hang_timeout_ms.is_some()) {
            myself.send_interval(Duration::from_millis(50), || SupervisorMsg::CheckLiveness);
        }
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
            SupervisorMsg::Restart { indices, epoch } => {
                if epoch != state.epoch {
                    return Ok(()); // superseded by a later group restart
                }
                for i in indices {
                    if state.slots[i].cell.is_some() {
                        continue;
                    }
                    let child = state.slots[i].spec.name.clone();
                    match state.start_child(&myself, i).await {
                        Ok(()) => {
                            tracing::info!(supervisor = %state.name, child, action = "restarted", "supervisor decision");
                            state.events.clear(&format!("supervisor/{}", state.name), "CONTAINED", format!("{child} restarted"));
                        }
                        Err(e) => {
                            let reason = format!("start failed: {e}");
                            // Count it like any other failure of that child.
                            state.on_child_exit(&myself, i, true, reason).await?;
                        }
                    }
                }
            }
            SupervisorMsg::CheckLiveness => {
                for slot in &mut state.slots {
                    let (Some(l), Some(limit), Some(cell)) = (&slot.spec.liveness, slot.spec.policy.hang_timeout_ms, &slot.cell) else {
                        continue;
                    };
                    let age = l.age();
                    if age > Duration::from_millis(limit) && !slot.killed_as_hung {
                        tracing::error!(supervisor = %state.name, child = %slot.spec.name, reason = %format!("no liveness beat for {} ms (limit {limit} ms)", age.as_millis()), action = "kill as hung", "supervisor decision");
                        slot.killed_as_hung = true;
                        cell.kill();
                    }
                }
            }
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

    /// A child that counts its starts and panics or stops on demand.
    struct Probe;
    enum ProbeMsg {
        Crash,
        Quit,
    }
    impl Actor for Probe {
        type Msg = ProbeMsg;
        type State = ();
        type Arguments = Arc<AtomicUsize>;
        async fn pre_start(&self, _m: ActorRef<ProbeMsg>, starts: Arc<AtomicUsize>) -> Result<(), ActorProcessingErr> {
            starts.fetch_add(1, Ordering::SeqCst);
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

    fn probe(name: &str, restart: RestartType, starts: Arc<AtomicUsize>) -> ChildSpec {
        ChildSpec {
            name: name.into(),
            policy: ChildPolicy { restart, backoff_initial_ms: 1, backoff_max_ms: 4, hang_timeout_ms: None },
            liveness: None,
            start: Arc::new(move |sup| {
                let starts = starts.clone();
                Box::pin(async move { Actor::spawn_linked(None, Probe, starts, sup).await.map(|(r, _)| r.get_cell()) })
            }),
        }
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
        let spec = SupervisorSpec {
            name: format!("sup-test-{:?}-{}", strategy, epoch().elapsed().as_nanos()),
            policy: SupervisorPolicy { strategy, max_restarts, window_ms: 10_000, meltdown: MeltdownAction::SafeState },
            children: ["a", "b", "c"].iter().zip(restarts).zip(&starts).map(|((n, r), s)| probe(n, r, s.clone())).collect(),
            events: EventBus::new(64),
            on_meltdown: Some(Arc::new(move |sup: &str, _why: &str| m2.lock().unwrap().push(sup.to_string()))),
        };
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
        let status = ractor::call_t!(f.sup, SupervisorMsg::Status, 1000).unwrap();
        let running: Vec<bool> = status.iter().map(|c| c.running).collect();
        assert_eq!(running, vec![true, false, false]);
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

    #[tokio::test]
    async fn hz015_contain_keeps_the_supervisor_up_and_retries_after_the_window() {
        let starts: Vec<_> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        let spec = SupervisorSpec {
            name: format!("sup-contain-{}", epoch().elapsed().as_nanos()),
            policy: SupervisorPolicy { strategy: Strategy::OneForOne, max_restarts: 1, window_ms: 300, meltdown: MeltdownAction::Contain },
            children: ["a", "b", "c"].iter().zip(&starts).map(|(n, s)| probe(n, P, s.clone())).collect(),
            events: EventBus::new(64),
            on_meltdown: None,
        };
        let f = Fixture { sup: Supervisor::spawn(spec, None).await.unwrap(), starts, melted: Arc::default() };
        f.send("a", ProbeMsg::Crash).await;
        assert_eq!(f.settle_on(&[2, 1, 1]).await, vec![2, 1, 1]);
        f.send("a", ProbeMsg::Crash).await; // over intensity: contained
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(f.counts(), vec![2, 1, 1], "no immediate restart");
        assert_eq!(f.sup.get_status(), ractor::ActorStatus::Running);
        assert_eq!(f.settle_on(&[3, 1, 1]).await, vec![3, 1, 1], "retried after the cool-down");
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
            slots: vec![Slot {
                backoff: Duration::from_millis(1),
                spec,
                cell: None,
                restarts: 0,
                last_restart: None,
                killed_as_hung: false,
            }],
            recent: VecDeque::new(),
            events: EventBus::new(4),
            on_meltdown: None,
            epoch: 0,
        };
        let d: Vec<u128> = (0..5).map(|_| st.next_backoff(0).as_millis()).collect();
        assert_eq!(d, vec![1, 2, 4, 4, 4]);
    }
}
