//! LED light source: PID constant current and thermal interlocks.

mod common;

use common::{test_config, wait_for};
use endotower::tower::Tower;
use endotower_actors::commands::{Command, CommandSource};
use endotower_sim::{Device, Fault};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pid_settles_the_led_current_on_the_intensity_setpoint_and_follows_a_change() {
    let tower = Tower::start(test_config()).await.unwrap();
    let sim = tower.sim().unwrap();
    // 80 % of 1400 mA nominal.
    let settled = |want: f64| {
        let s = sim.light();
        (s.current_ma - want).abs() <= 0.02 * want
    };
    assert!(wait_for(Duration::from_secs(15), || settled(1120.0)).await, "{:?}", sim.light());
    // Stays there for a second (not just passing through).
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(settled(1120.0), "{:?}", sim.light());
    }
    tower.submit(CommandSource::Hmi, Command::SetIntensity { pct: 40.0 }).await.unwrap().unwrap();
    assert!(wait_for(Duration::from_secs(15), || settled(560.0)).await, "{:?}", sim.light());
    tower.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz004_led_over_temperature_switches_the_led_off() {
    let tower = Tower::start(test_config()).await.unwrap();
    let sim = tower.sim().unwrap();
    assert!(wait_for(Duration::from_secs(10), || sim.light().led_on).await, "{:?}", sim.light());
    sim.set_led_temp(90.0);
    assert!(wait_for(Duration::from_secs(5), || sim.light().safety_cap == 0).await, "{:?}", sim.light());
    assert!(wait_for(Duration::from_secs(5), || !sim.light().led_on).await);
    assert!(wait_for(Duration::from_secs(2), || tower.events().is_active("safety", "HZ-004")).await);
    assert!(
        wait_for(Duration::from_secs(5), || tower.events().is_active("light", "LED_OVER_TEMPERATURE")).await,
        "control plane also saw it"
    );
    tower.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz006_unreadable_led_temperature_caps_the_light() {
    let tower = Tower::start(test_config()).await.unwrap();
    let sim = tower.sim().unwrap();
    assert!(wait_for(Duration::from_secs(10), || sim.light().led_on).await);
    sim.set_fault(Device::Light, Fault::SensorNan(endotower_sim::Channel::LedTemp));
    let cap = tower.config().safety.light_safe_cap_pct;
    assert!(wait_for(Duration::from_secs(5), || sim.light().safety_cap == cap).await, "{:?}", sim.light());
    assert!(sim.light().drive_applied <= cap * 10);
    tower.shutdown().await;
}

/// HZ-010: a light that drops the island's cap is caught by the read-back.
/// The alarm stays raised while only this device disagrees (the insufflator's
/// good read-back in the same period must not clear it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz010_a_light_that_ignores_the_safety_cap_keeps_the_read_back_alarm_raised() {
    use endotower_actors::events::EventKind;
    let tower = Tower::start(test_config()).await.unwrap();
    let sim = tower.sim().unwrap();
    assert!(wait_for(Duration::from_secs(10), || sim.light().led_on && !sim.failsafe(Device::Insufflator)).await);
    let uncapped = sim.light().safety_cap;
    sim.set_fault(Device::Light, Fault::SafetyWriteIgnored);
    sim.set_led_temp(90.0); // the island now writes cap 0, which the device drops
    assert!(wait_for(Duration::from_secs(5), || tower.events().is_active("safety", "HZ-010")).await, "lost cap not noticed");
    assert_eq!(sim.light().safety_cap, uncapped, "the fault should have dropped the cap");
    let mut events = tower.events().subscribe();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut cleared = 0;
    loop {
        match events.try_recv() {
            Ok(e) if e.code == "HZ-010" && e.kind == EventKind::AlarmCleared => cleared += 1,
            Ok(_) => {}
            // A flood of raise/clear pairs overruns the buffer: that counts.
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => cleared += n,
            Err(_) => break,
        }
    }
    assert_eq!(cleared, 0, "HZ-010 was cleared while the light still ignored its cap");
    assert!(tower.events().is_active("safety", "HZ-010"));
    tower.shutdown().await;
}
