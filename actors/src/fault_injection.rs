//! A test hook in the runtime: any supervised actor can be made to panic or
//! hang on its next message, to exercise the supervision tree (the scenario
//! suite, `endotower scenario run`).
//!
//! The tree wraps every leaf actor in [`Injectable`], which delegates the
//! whole actor lifecycle to the real actor and, before each message, takes a
//! pending [`InjectedFault`] from the actor's [`FaultSlot`]. The check is one
//! atomic swap per message; with nothing injected the actor behaves exactly
//! as unwrapped. Nothing in the tower injects faults by itself: only
//! [`FaultInjector::inject`], called by tests and the scenario runner.

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to do on the next message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedFault {
    /// Panic inside the message handler (the supervisor sees a failure).
    Panic,
    /// Stop handling messages for this long (the supervisor sees no
    /// liveness beat and kills the actor once its hang timeout passes).
    Hang(Duration),
}

/// The pending fault of one actor, kept across its restarts: 0 none,
/// `PANIC` a panic, any other value a hang of that many ms.
#[derive(Clone, Debug, Default)]
pub struct FaultSlot(Arc<AtomicU64>);

const PANIC: u64 = u64::MAX;

impl FaultSlot {
    fn take(&self) -> Option<InjectedFault> {
        match self.0.swap(0, Ordering::AcqRel) {
            0 => None,
            PANIC => Some(InjectedFault::Panic),
            ms => Some(InjectedFault::Hang(Duration::from_millis(ms))),
        }
    }
    fn set(&self, fault: InjectedFault) {
        let word = match fault {
            InjectedFault::Panic => PANIC,
            // At least 1 ms (0 means none), short of the panic marker.
            InjectedFault::Hang(d) => u64::try_from(d.as_millis()).unwrap_or(PANIC - 1).clamp(1, PANIC - 1),
        };
        self.0.store(word, Ordering::Release);
    }
}

/// A device link that fails every request until a deadline (a control-plane
/// link drop), kept across the device actor's restarts.
#[derive(Clone, Debug, Default)]
pub struct LinkFault(Arc<AtomicU64>);

fn clock_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64 + 1
}

impl LinkFault {
    /// Fail every request for `d` from now.
    pub fn drop_for(&self, d: Duration) {
        self.0.store(clock_ms() + d.as_millis() as u64, Ordering::Release);
    }
    /// Is the link dropped now?
    pub fn active(&self) -> bool {
        clock_ms() < self.0.load(Ordering::Acquire)
    }
}

/// Every injectable actor of one tower, by child name, and the control
/// links that can be dropped, by device name.
#[derive(Clone, Debug, Default)]
pub struct FaultInjector(Arc<Mutex<BTreeMap<String, FaultSlot>>>, Arc<Mutex<BTreeMap<String, LinkFault>>>);

impl FaultInjector {
    /// The slot of `child` (created on first use).
    pub fn slot(&self, child: &str) -> FaultSlot {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).entry(child.to_string()).or_default().clone()
    }

    /// Arm `fault` for the next message of `child`; false if no such actor
    /// was declared in the tree.
    pub fn inject(&self, child: &str, fault: InjectedFault) -> bool {
        match self.0.lock().unwrap_or_else(|p| p.into_inner()).get(child) {
            Some(slot) => {
                tracing::warn!(child, ?fault, "fault injection: armed");
                slot.set(fault);
                true
            }
            None => false,
        }
    }

    /// The control-link fault of `device` (created on first use).
    pub fn link(&self, device: &str) -> LinkFault {
        self.1.lock().unwrap_or_else(|p| p.into_inner()).entry(device.to_string()).or_default().clone()
    }

    /// Names of the injectable actors.
    pub fn children(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }
}

/// An actor with a fault slot in front of its message handler.
pub struct Injectable<A> {
    pub inner: A,
    pub name: String,
    pub slot: FaultSlot,
}

impl<A: Actor> Actor for Injectable<A> {
    type Msg = A::Msg;
    type State = A::State;
    type Arguments = A::Arguments;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, args: Self::Arguments) -> Result<Self::State, ActorProcessingErr> {
        self.inner.pre_start(myself, args).await
    }

    async fn post_start(&self, myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        self.inner.post_start(myself, state).await
    }

    /// An armed panic also lands here: the injector stops the actor so the
    /// panic does not wait for its next message (a panicking actor skips
    /// its own `post_stop`, as here).
    async fn post_stop(&self, myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if let Some(InjectedFault::Panic) = self.slot.take() {
            panic!("{}: injected panic (fault-injection hook)", self.name);
        }
        self.inner.post_stop(myself, state).await
    }

    async fn handle(&self, myself: ActorRef<Self::Msg>, message: Self::Msg, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        match self.slot.take() {
            Some(InjectedFault::Panic) => panic!("{}: injected panic (fault-injection hook)", self.name),
            Some(InjectedFault::Hang(d)) => {
                tracing::warn!(actor = %self.name, ms = d.as_millis() as u64, "fault injection: hanging");
                tokio::time::sleep(d).await;
            }
            None => {}
        }
        self.inner.handle(myself, message, state).await
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        message: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        self.inner.handle_supervisor_evt(myself, message, state).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter;
    impl Actor for Counter {
        type Msg = ractor::RpcReplyPort<u32>;
        type State = u32;
        type Arguments = ();
        async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<u32, ActorProcessingErr> {
            Ok(0)
        }
        async fn handle(&self, _: ActorRef<Self::Msg>, reply: Self::Msg, n: &mut u32) -> Result<(), ActorProcessingErr> {
            *n += 1;
            let _ = reply.send(*n);
            Ok(())
        }
    }

    #[tokio::test]
    async fn an_injected_panic_fails_the_actor_on_its_next_message_and_only_then() {
        let faults = FaultInjector::default();
        let slot = faults.slot("counter");
        assert!(!faults.inject("nobody", InjectedFault::Panic), "unknown actors are refused");
        let (a, handle) = Actor::spawn(None, Injectable { inner: Counter, name: "counter".into(), slot }, ()).await.unwrap();
        assert_eq!(ractor::call_t!(a, |r| r, 1000).unwrap(), 1);
        assert!(faults.inject("counter", InjectedFault::Panic));
        assert!(ractor::call_t!(a, |r| r, 1000).is_err(), "the armed message fails");
        let _ = handle.await;
        assert_eq!(a.get_status(), ractor::ActorStatus::Stopped);
    }

    #[tokio::test]
    async fn an_injected_hang_delays_the_next_message_by_the_hang() {
        let faults = FaultInjector::default();
        let slot = faults.slot("counter");
        let (a, _) = Actor::spawn(None, Injectable { inner: Counter, name: "counter".into(), slot }, ()).await.unwrap();
        faults.inject("counter", InjectedFault::Hang(Duration::from_millis(300)));
        assert!(ractor::call_t!(a, |r| r, 100).is_err(), "no reply while hung");
        a.stop(None);
    }
}
