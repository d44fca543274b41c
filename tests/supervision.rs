//! Supervision: restart per policy, hang detection, meltdown to the safe
//! state, and a safety actor restart that leaves the island running.

mod common;

use common::{test_config, wait_for};
use endotower::tower::Tower;
use endotower_actors::device_actor::DeviceMsg;
use endotower_actors::registers::insufflator::safety_cmd;
use endotower_actors::safety_actor::SafetyMsg;
use std::sync::atomic::Ordering;
use std::time::Duration;

async fn restarts(tower: &Tower, sup: &str, child: &str) -> u64 {
    tower.supervisor_status(sup).await.unwrap_or_default().into_iter().find(|c| c.name == child).map_or(0, |c| c.restarts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz012_panicking_device_actor_is_restarted_and_polling_resumes() {
    let tower = Tower::start(test_config()).await.unwrap();
    assert!(wait_for(Duration::from_secs(10), || tower.channels().insufflator.borrow().polls > 5).await);
    let before = tower.actor("insufflator").unwrap().get_id();
    assert!(tower.inject("insufflator", DeviceMsg::TestPanic));
    let mut restarted = false;
    for _ in 0..500 {
        if restarts(&tower, "devices", "insufflator").await == 1 && tower.actor("insufflator").is_some_and(|c| c.get_id() != before) {
            restarted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(restarted, "insufflator not restarted");
    // A fresh actor counts polls from zero: watch it count again.
    let rx = tower.channels().insufflator.subscribe();
    assert!(wait_for(Duration::from_secs(5), || rx.borrow().polls > 10).await, "polling did not resume");
    assert_eq!(restarts(&tower, "devices", "light").await, 0, "one_for_one leaves siblings alone");
    tower.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_device_actor_is_killed_and_restarted() {
    let tower = Tower::start(test_config()).await.unwrap();
    assert!(wait_for(Duration::from_secs(10), || tower.channels().light.borrow().polls > 5).await);
    assert!(tower.inject("light", DeviceMsg::TestHang(Duration::from_secs(60))));
    let mut ok = false;
    for _ in 0..500 {
        if restarts(&tower, "devices", "light").await >= 1 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ok, "hung light actor never restarted");
    tower.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz008_meltdown_reaches_the_safe_state() {
    common::init_logs();
    let mut cfg = test_config();
    cfg.supervision.devices.max_restarts = 2;
    cfg.supervision.children.insufflator.backoff_initial_ms = 10;
    let tower = Tower::start(cfg).await.unwrap();
    let sim = tower.sim().unwrap();
    assert!(wait_for(Duration::from_secs(10), || tower.channels().insufflator.borrow().polls > 5).await);
    // Three crashes within the window: the third restart exceeds 2. Each
    // crash is injected into a fresh actor (a dying actor drops its mailbox).
    for k in 1..=3u64 {
        let target = loop {
            if let Some(c) = tower.actor("insufflator") {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        target.send_message(DeviceMsg::TestPanic).unwrap();
        let mut next = false;
        for _ in 0..500 {
            if restarts(&tower, "devices", "insufflator").await >= k || tower.setpoints().safe_state() {
                next = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(next, "crash {k} not handled");
    }
    assert!(wait_for(Duration::from_secs(5), || tower.setpoints().safe_state()).await, "no safe state");
    assert!(tower.events().active_alarms().iter().any(|(e, _)| e.code == "SAFE_STATE"));
    assert!(tower.events().active_alarms().iter().any(|(e, _)| e.code == "MELTDOWN"));
    // The safety island holds the devices in safe outputs.
    let cap = tower.config().safety.light_safe_cap_pct;
    assert!(
        wait_for(Duration::from_secs(5), || sim.insufflator().safety_cmd & safety_cmd::INHIBIT_INFLOW != 0
            && sim.light().safety_cap == cap)
        .await
    );
    // The trip reaches the event bus through the island's alarm thread, a
    // moment after the write reached the device.
    assert!(wait_for(Duration::from_secs(2), || tower.events().is_active("safety", "HZ-008")).await);
    // And keeps enforcing interlocks: an over-pressure is still vented.
    sim.inject_pressure(26.0);
    assert!(wait_for(Duration::from_secs(5), || sim.insufflator().relief_open).await);
    tower.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_actor_restart_leaves_the_island_running_without_a_gap() {
    let tower = Tower::start(test_config()).await.unwrap();
    let sim = tower.sim().unwrap();
    assert!(wait_for(Duration::from_secs(10), || !sim.failsafe(endotower_sim::Device::Insufflator)).await);
    let cycles = || tower.safety().with(|i| i.stats().cycles.load(Ordering::Relaxed)).unwrap_or(0);
    let island = || tower.safety().with(|i| i.island_id());
    let (before, first) = (cycles(), island());
    assert!(first.is_some());
    tower.actor("safety").unwrap().send_message(SafetyMsg::TestPanic).unwrap();
    let mut restarted = false;
    for _ in 0..300 {
        if restarts(&tower, "root", "safety").await == 1 {
            restarted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(restarted);
    // Same island thread, its counter still running (a restart can take less
    // than one safety period, so wait for the next cycle); devices never fell back.
    assert_eq!(island(), first, "the restarted safety actor replaced the island instead of adopting it");
    assert!(wait_for(Duration::from_secs(2), || cycles() > before).await);
    assert!(!sim.failsafe(endotower_sim::Device::Insufflator));
    assert!(!tower.events().is_active("safety", "ISLAND_RESTART"));
    tower.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_inside_the_safety_island_cycle_is_caught_and_the_loop_goes_on() {
    let tower = Tower::start(test_config()).await.unwrap();
    let sim = tower.sim().unwrap();
    assert!(wait_for(Duration::from_secs(10), || !sim.failsafe(endotower_sim::Device::Insufflator)).await);
    tower.safety().hooks().panic_next_cycle.store(true, Ordering::Relaxed);
    assert!(wait_for(Duration::from_secs(5), || tower.safety().with(|i| i.stats().caught_panics.load(Ordering::Relaxed)) == Some(1)).await);
    sim.inject_pressure(25.0);
    assert!(wait_for(Duration::from_secs(5), || sim.insufflator().relief_open).await, "interlock still enforced after the panic");
    tower.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz007_a_stalled_safety_island_is_replaced_without_a_device_failing_safe_and_the_new_one_enforces_the_interlocks() {
    let tower = Tower::start(test_config()).await.unwrap();
    let sim = tower.sim().unwrap();
    assert!(wait_for(Duration::from_secs(10), || !sim.failsafe(endotower_sim::Device::Insufflator)).await);
    let first = tower.safety().with(|i| i.island_id());
    let mut events = tower.events().subscribe();
    tower.safety().hooks().stall_next_cycle_ms.store(2000, Ordering::Relaxed);
    let mut fell_back = false;
    let raised = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            fell_back |= endotower_sim::Device::ALL.iter().any(|d| sim.failsafe(*d));
            match tokio::time::timeout(Duration::from_millis(5), events.recv()).await {
                Ok(Ok(e)) if e.code == "ISLAND_RESTART" && e.kind == endotower_actors::events::EventKind::AlarmRaised => break,
                _ => continue,
            }
        }
    })
    .await;
    assert!(raised.is_ok(), "stall not detected");
    // The replacement island is a new thread, one generation on.
    assert!(wait_for(Duration::from_secs(2), || tower.safety().with(|i| i.generation()) == Some(2)).await);
    assert_ne!(tower.safety().with(|i| i.island_id()), first);
    for _ in 0..100 {
        fell_back |= endotower_sim::Device::ALL.iter().any(|d| sim.failsafe(*d));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(!fell_back, "a device entered its heartbeat fail-safe during the hand-over");
    sim.inject_pressure(25.0);
    assert!(wait_for(Duration::from_secs(5), || sim.insufflator().relief_open).await, "new island does not vent");
    assert!(
        wait_for(Duration::from_secs(5), || !tower.events().is_active("safety", "ISLAND_RESTART")).await,
        "alarm clears once the new island writes"
    );
    tower.shutdown().await;
}
