//! HZ-007: when the safety island's heartbeat stops, every simulated device
//! falls back to its own fail-safe within 300 ms, whatever the control says.

mod common;

use common::{test_config, wait_for};
use endotower::tower::start_simulators;
use endotower_actors::config::Transport;
use endotower_actors::events::EventBus;
use endotower_actors::registers::{insufflator as ins, light};
use endotower_actors::safety_actor::start_host;
use endotower_actors::setpoints::Setpoints;
use endotower_sim::Device;
use std::time::Duration;
use tokio_modbus::prelude::*;

async fn client(addr: &Transport, unit: u8) -> tokio_modbus::client::Context {
    let Transport::Tcp { addr } = addr else { panic!("tcp expected") };
    tcp::connect_slave(addr.parse().unwrap(), Slave(unit)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz007_heartbeat_loss_triggers_the_simulator_fail_safe() {
    let mut cfg = test_config();
    let sim = start_simulators(&mut cfg).unwrap();
    // Devices boot in fail-safe until the first heartbeat.
    assert!(sim.failsafe(Device::Insufflator) && sim.failsafe(Device::Light));
    let island = start_host(&cfg.safety, &Setpoints::new(12.0, 10.0, 50.0), &EventBus::default()).unwrap();
    assert!(wait_for(Duration::from_secs(5), || Device::ALL.iter().all(|d| !sim.failsafe(*d))).await, "heartbeat never arrived");

    // A controller (a plain Modbus client here) opens the valve and lights the LED.
    let mut insuff = client(&cfg.devices.insufflator.link.transport, 1).await;
    insuff.write_multiple_registers(ins::PWM_DUTY, &[500, 1, 0]).await.unwrap().unwrap();
    let mut lamp = client(&cfg.devices.light.link.transport, 2).await;
    lamp.write_multiple_registers(light::DRIVE, &[500, 1, 1]).await.unwrap().unwrap();
    assert!(wait_for(Duration::from_secs(5), || sim.insufflator().flow_lpm > 1.0 && sim.light().led_on).await);

    island.shutdown();
    assert!(wait_for(Duration::from_secs(2), || Device::ALL.iter().all(|d| sim.failsafe(*d))).await, "no fail-safe after heartbeat loss");
    let s = sim.insufflator();
    assert_eq!((s.duty_applied, s.shutoff_open), (0, false), "inflow closed in fail-safe: {s:?}");
    assert!(!sim.light().led_on, "light in standby");
    // The controller's command is still there: the device ignored it.
    let duty = insuff.read_holding_registers(ins::PWM_DUTY, 1).await.unwrap().unwrap();
    assert_eq!(duty, vec![500]);
    sim.stop();
}
