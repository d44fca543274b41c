//! Insufflator control and pressure interlocks against the simulator, over
//! real Modbus TCP on loopback.

mod common;

use common::{test_config, wait_for};
use endotower::tower::Tower;
use endotower_actors::device_actor::DeviceMsg;
use endotower_actors::registers::insufflator::safety_cmd;
use endotower_sim::{Device, Fault};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_pressure_is_held_within_1_mmhg_with_a_2_lpm_leak() {
    common::init_logs();
    let mut cfg = test_config();
    cfg.sim.model.insufflator.leak_lpm = 2.0;
    cfg.sim.model.insufflator.initial_pressure_mmhg = 9.0;
    let tower = Tower::start(cfg).await.unwrap();
    let sim = tower.sim().unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || sim.insufflator().pressure_mmhg >= 11.8).await,
        "never reached the set pressure: {:?}",
        sim.insufflator()
    );
    // Hold for 5 s of simulated surgery: every sample of the true cavity
    // pressure stays within 12 +/- 1 mmHg.
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for _ in 0..500 {
        let p = sim.insufflator().pressure_mmhg;
        lo = lo.min(p);
        hi = hi.max(p);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(lo >= 11.0 && hi <= 13.0, "pressure ranged {lo:.2} ..= {hi:.2} mmHg");
    assert_eq!(sim.insufflator().leak_lpm, 2.0);
    tower.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz001_overpressure_at_p2_opens_the_relief_valve_until_under_p1() {
    let tower = Tower::start(test_config()).await.unwrap();
    let sim = tower.sim().unwrap();
    assert!(wait_for(Duration::from_secs(10), || !sim.failsafe(Device::Insufflator)).await);
    // P1 = 12 so P2 = 22.
    sim.inject_pressure(23.0);
    assert!(wait_for(Duration::from_secs(5), || sim.insufflator().relief_open).await, "relief never opened");
    assert!(wait_for(Duration::from_secs(5), || tower.events().is_active("safety", "HZ-001")).await);
    assert_ne!(sim.insufflator().safety_cmd & safety_cmd::FORCE_VENT, 0, "the safety island forced the vent");
    // Vented down under P1, the relief closes again and the trip clears;
    // the control loop then holds P1 again.
    let released = || !sim.insufflator().relief_open && !tower.events().is_active("safety", "HZ-001");
    assert!(wait_for(Duration::from_secs(30), released).await, "{:?}", sim.insufflator());
    let p = sim.insufflator().pressure_mmhg;
    assert!(p < 13.0, "relief released at {p:.2} mmHg, above the holding band");
    tower.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz001_overpressure_is_vented_by_the_safety_island_with_the_insufflator_actor_dead() {
    let mut cfg = test_config();
    // Temporary: once dead it stays dead.
    cfg.supervision.children.insufflator.restart = endotower_actors::supervisor::RestartType::Temporary;
    let tower = Tower::start(cfg).await.unwrap();
    let sim = tower.sim().unwrap();
    assert!(wait_for(Duration::from_secs(10), || tower.channels().insufflator.borrow().polls > 5).await);
    assert!(tower.inject("insufflator", DeviceMsg::TestPanic));
    assert!(wait_for(Duration::from_secs(5), || tower.actor("insufflator").is_none()).await, "actor still alive");
    sim.inject_pressure(25.0);
    assert!(wait_for(Duration::from_secs(5), || sim.insufflator().relief_open).await, "no vent without the actor");
    assert_ne!(sim.insufflator().safety_cmd & safety_cmd::FORCE_VENT, 0);
    assert!(tower.actor("insufflator").is_none(), "the vent came from the safety island, not a restarted actor");
    tower.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz002_inflow_is_inhibited_above_p1_plus_margin_even_if_control_keeps_the_valve_open() {
    let mut cfg = test_config();
    cfg.supervision.children.insufflator.restart = endotower_actors::supervisor::RestartType::Temporary;
    let tower = Tower::start(cfg).await.unwrap();
    let sim = tower.sim().unwrap();
    assert!(wait_for(Duration::from_secs(10), || tower.channels().insufflator.borrow().polls > 5).await);
    // Control dead while inflating: its last outputs (valve open) stay.
    tower.inject("insufflator", DeviceMsg::TestPanic);
    assert!(wait_for(Duration::from_secs(5), || tower.actor("insufflator").is_none()).await);
    sim.inject_pressure(14.5); // > P1 + 2, < P2
    assert!(wait_for(Duration::from_secs(5), || sim.insufflator().safety_cmd & safety_cmd::INHIBIT_INFLOW != 0).await);
    assert!(
        wait_for(Duration::from_secs(5), || sim.insufflator().duty_applied == 0 && !sim.insufflator().shutoff_open).await,
        "{:?}",
        sim.insufflator()
    );
    assert!(wait_for(Duration::from_secs(2), || tower.events().is_active("safety", "HZ-002")).await);
    tower.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz003_hz024_one_nan_pressure_channel_alarms_and_both_inhibit_inflow() {
    let tower = Tower::start(test_config()).await.unwrap();
    let sim = tower.sim().unwrap();
    assert!(wait_for(Duration::from_secs(10), || !sim.failsafe(Device::Insufflator)).await);
    // One channel gone: redundancy lost (HZ-024), insufflation goes on on the other.
    sim.set_fault(Device::Insufflator, Fault::SensorNan(endotower_sim::Channel::Pressure));
    assert!(wait_for(Duration::from_secs(5), || tower.events().is_active("safety", "HZ-024")).await);
    assert!(!tower.events().is_active("safety", "HZ-003"));
    assert_eq!(sim.insufflator().safety_cmd & safety_cmd::INHIBIT_INFLOW, 0, "one good channel is enough to insufflate");
    // Both gone: insufflating blind (HZ-003).
    sim.set_fault(Device::Insufflator, Fault::SensorNan(endotower_sim::Channel::Pressure2));
    assert!(wait_for(Duration::from_secs(5), || sim.insufflator().safety_cmd & safety_cmd::INHIBIT_INFLOW != 0).await);
    assert!(wait_for(Duration::from_secs(5), || tower.events().is_active("safety", "HZ-003")).await);
    assert!(wait_for(Duration::from_secs(5), || sim.insufflator().flow_lpm < 0.1).await, "{:?}", sim.insufflator());
    tower.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz009_empty_co2_supply_raises_the_supply_low_alarm() {
    let tower = Tower::start(test_config()).await.unwrap();
    let sim = tower.sim().unwrap();
    assert!(wait_for(Duration::from_secs(10), || tower.channels().insufflator.borrow().polls > 5).await);
    assert!(!tower.events().is_active("insufflator", "SUPPLY_LOW"));
    sim.set_fault(Device::Insufflator, Fault::SupplyEmpty);
    assert!(wait_for(Duration::from_secs(5), || tower.events().is_active("insufflator", "SUPPLY_LOW")).await);
    sim.clear_all_faults(Device::Insufflator);
    assert!(
        wait_for(Duration::from_secs(5), || !tower.events().is_active("insufflator", "SUPPLY_LOW")).await,
        "alarm clears when supply returns"
    );
    tower.shutdown().await;
}

/// HZ-010: an insufflator that acknowledges the island's safety word but does
/// not apply it is caught by the read-back, and the alarm clears once the
/// word lands again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz010_a_safety_word_the_insufflator_does_not_apply_raises_the_read_back_alarm() {
    let tower = Tower::start(test_config()).await.unwrap();
    let sim = tower.sim().unwrap();
    assert!(wait_for(Duration::from_secs(10), || !sim.failsafe(Device::Insufflator)).await);
    assert!(!tower.events().is_active("safety", "HZ-010"));
    sim.set_fault(Device::Insufflator, Fault::SafetyWriteIgnored);
    // The island now writes FORCE_VENT | INHIBIT_INFLOW, which the device drops.
    sim.inject_pressure(23.0);
    assert!(wait_for(Duration::from_secs(5), || tower.events().is_active("safety", "HZ-010")).await, "lost override not noticed");
    assert_eq!(sim.insufflator().safety_cmd & safety_cmd::FORCE_VENT, 0, "the fault should have dropped the override");
    sim.clear_fault(Device::Insufflator, endotower_sim::FaultKind::SafetyWriteIgnored);
    assert!(
        wait_for(Duration::from_secs(5), || !tower.events().is_active("safety", "HZ-010")).await,
        "the alarm stays although the word is applied again"
    );
    tower.shutdown().await;
}
