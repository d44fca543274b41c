//! The Modbus link state machine, timeouts, and RTU over a pseudo-terminal.

mod common;

use common::{test_config, wait_for};
use endotower::tower::Tower;
use endotower_actors::config::{LinkConfig, Transport};
use endotower_actors::link::{LinkError, LinkState, ModbusLink};
use endotower_actors::registers::{self, insufflator as ins};
use endotower_sim::{Device, Fault, RtuBus, RtuPort, SimConfig, SimEndpoints, SimHost};
use std::time::Duration;
use tokio_serial::SerialPort;

fn tcp_sim() -> SimHost {
    let any = "127.0.0.1:0".parse().unwrap();
    SimHost::start(SimConfig::default(), SimEndpoints { tcp: Device::ALL.iter().map(|d| (*d, any)).collect(), rtu: vec![] }).unwrap()
}

fn link_to(addr: std::net::SocketAddr) -> ModbusLink {
    let mut cfg = LinkConfig::tcp(addr.to_string(), 1);
    cfg.timeout_ms = 50;
    cfg.lost_after = 3;
    cfg.backoff_initial_ms = 10;
    cfg.backoff_max_ms = 40;
    ModbusLink::new("test", cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_goes_connected_degraded_lost_and_recovers() {
    let sim = tcp_sim();
    let mut link = link_to(sim.tcp_addrs(Device::Insufflator)[0]);
    assert_eq!(link.state(), LinkState::Connecting);
    link.read(0, 3).await.unwrap();
    assert_eq!(link.state(), LinkState::Connected);
    sim.set_fault(Device::Insufflator, Fault::Hang);
    assert!(matches!(link.read(0, 3).await, Err(LinkError::Timeout(_))));
    assert_eq!(link.state(), LinkState::Degraded);
    for _ in 0..10 {
        let _ = link.read(0, 3).await;
        if link.state() == LinkState::Lost {
            break;
        }
    }
    assert_eq!(link.state(), LinkState::Lost);
    sim.clear_all_faults(Device::Insufflator);
    let mut ok = false;
    for _ in 0..100 {
        if link.read(0, 3).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ok, "never recovered");
    assert_eq!(link.state(), LinkState::Connected);
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exception_replies_degrade_the_link_and_name_the_exception() {
    let sim = tcp_sim();
    let mut link = link_to(sim.tcp_addrs(Device::Insufflator)[0]);
    link.read(0, 3).await.unwrap();
    sim.set_fault(Device::Insufflator, Fault::ExceptionReplies);
    let e = link.read(0, 3).await.unwrap_err();
    assert!(matches!(e, LinkError::Exception(_)), "{e}");
    assert_eq!(link.state(), LinkState::Degraded);
    // Writing a sensor register is refused by the device and reported.
    sim.clear_all_faults(Device::Insufflator);
    assert!(matches!(link.write_verified(ins::PRESSURE, &[1]).await, Err(LinkError::Exception(_))));
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz011_after_a_tcp_timeout_the_link_reconnects_instead_of_reading_one_reply_behind() {
    let sim = tcp_sim();
    let mut link = link_to(sim.tcp_addrs(Device::Insufflator)[0]);
    link.read(0, 1).await.unwrap();
    sim.set_fault(Device::Insufflator, Fault::ReplyDelay(Duration::from_millis(150)));
    assert!(matches!(link.read(ins::FLOW, 1).await, Err(LinkError::Timeout(_))));
    sim.clear_all_faults(Device::Insufflator);
    tokio::time::sleep(Duration::from_millis(200)).await; // the late reply is sent by now
    sim.inject_pressure(17.0);
    // Every later read answers its own request.
    for _ in 0..20 {
        let p = link.read(ins::PRESSURE, 1).await.unwrap();
        let p = registers::decode_signed(p[0], 0.01).unwrap();
        assert!((p - 17.0).abs() < 1.0, "read {p}, not the pressure");
    }
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz011_after_an_rtu_timeout_a_late_reply_is_never_taken_for_the_next_request() {
    let (master, slave) = tokio_serial::SerialStream::pair().unwrap();
    let path = slave.name().unwrap();
    let sim = SimHost::start(
        SimConfig::default(),
        SimEndpoints { tcp: vec![], rtu: vec![RtuBus { port: RtuPort::Stream(master), devices: vec![(Device::Insufflator, 1)] }] },
    )
    .unwrap();
    let mut cfg = LinkConfig::tcp("127.0.0.1:1", 1);
    cfg.transport = Transport::Rtu { path: path.clone(), baud: 115_200 };
    cfg.timeout_ms = 50;
    let mut link = ModbusLink::new("rtu-test", cfg);
    sim.inject_pressure(17.0);
    link.read(ins::PRESSURE, 1).await.unwrap();
    sim.set_fault(Device::Insufflator, Fault::ReplyDelay(Duration::from_millis(120)));
    // FLOW reads 0 (valves closed); its reply arrives late.
    assert!(matches!(link.read(ins::FLOW, 1).await, Err(LinkError::Timeout(_))));
    sim.clear_all_faults(Device::Insufflator);
    tokio::time::sleep(Duration::from_millis(200)).await;
    sim.inject_pressure(17.0);
    let p = link.read(ins::PRESSURE, 1).await.unwrap();
    let p = registers::decode_signed(p[0], 0.01).unwrap();
    assert!((p - 17.0).abs() < 1.0, "took the late FLOW reply ({p}) as the pressure");
    drop(slave);
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_insufflator_actor_runs_over_an_rtu_link_on_a_pseudo_terminal_pair() {
    let (master, slave) = tokio_serial::SerialStream::pair().unwrap();
    let path = slave.name().unwrap();
    let mut cfg = test_config();
    let any = "127.0.0.1:0".parse().unwrap();
    let sim = SimHost::start(
        cfg.sim.model.clone(),
        SimEndpoints {
            tcp: Device::ALL.iter().map(|d| (*d, any)).collect(),
            rtu: vec![RtuBus { port: RtuPort::Stream(master), devices: vec![(Device::Insufflator, 1)] }],
        },
    )
    .unwrap();
    let tcp = |d| Transport::Tcp { addr: sim.tcp_addrs(d)[0].to_string() };
    cfg.sim.embedded = false;
    cfg.devices.insufflator.link.transport = Transport::Rtu { path, baud: 115_200 };
    cfg.devices.light.link.transport = tcp(Device::Light);
    cfg.devices.camera.link.transport = tcp(Device::Camera);
    cfg.devices.pedal.link.transport = tcp(Device::Pedal);
    cfg.safety.insufflator.transport = tcp(Device::Insufflator);
    cfg.safety.light.transport = tcp(Device::Light);
    cfg.safety.camera.transport = tcp(Device::Camera);
    cfg.safety.pedal.transport = tcp(Device::Pedal);
    let tower = Tower::start(cfg).await.unwrap();
    let rx = tower.channels().insufflator.subscribe();
    assert!(
        wait_for(Duration::from_secs(10), || rx.borrow().link == LinkState::Connected && rx.borrow().polls > 20).await,
        "{:?}",
        *rx.borrow()
    );
    assert!(rx.borrow().pressure_mmhg.is_some());
    // Writes over RTU reach the device: it is inflating.
    assert!(
        wait_for(Duration::from_secs(10), || sim.insufflator().shutoff_open && sim.insufflator().flow_lpm > 1.0).await,
        "{:?}",
        sim.insufflator()
    );
    tower.shutdown().await;
    drop(slave);
    sim.stop();
}

/// The island on RTU: insufflator and light on one serial line (units 1 and
/// 2), one connection, one request at a time (issue 14: the island sent two
/// requests at once on one line and its frames collided). The control plane
/// runs on TCP, its own line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz001_the_safety_island_runs_both_interlocks_over_one_shared_rtu_line() {
    use endotower_actors::registers::insufflator::safety_cmd;
    use std::sync::atomic::Ordering;
    let (master, slave) = tokio_serial::SerialStream::pair().unwrap();
    let path = slave.name().unwrap();
    let mut cfg = test_config();
    let any = "127.0.0.1:0".parse().unwrap();
    let sim = SimHost::start(
        cfg.sim.model.clone(),
        SimEndpoints {
            tcp: Device::ALL.iter().map(|d| (*d, any)).collect(),
            rtu: vec![RtuBus { port: RtuPort::Stream(master), devices: vec![(Device::Insufflator, 1), (Device::Light, 2)] }],
        },
    )
    .unwrap();
    let tcp = |d| Transport::Tcp { addr: sim.tcp_addrs(d)[0].to_string() };
    cfg.sim.embedded = false;
    cfg.devices.insufflator.link.transport = tcp(Device::Insufflator);
    cfg.devices.light.link.transport = tcp(Device::Light);
    cfg.devices.camera.link.transport = tcp(Device::Camera);
    cfg.devices.pedal.link.transport = tcp(Device::Pedal);
    cfg.safety.insufflator.transport = Transport::Rtu { path: path.clone(), baud: 4_000_000 };
    cfg.safety.light.transport = Transport::Rtu { path, baud: 4_000_000 };
    cfg.safety.camera.transport = tcp(Device::Camera);
    cfg.safety.pedal.transport = tcp(Device::Pedal);
    let tower = Tower::start(cfg).await.unwrap();
    assert!(wait_for(Duration::from_secs(10), || Device::ALL.iter().all(|d| !sim.failsafe(*d))).await, "heartbeats over RTU never arrived");
    // Two seconds of running. Two frames at once on the wire would garble or
    // cross replies by the hundred; one request at a time, a mismatched reply
    // can only be a late one after a timeout (the simulator is not real-time
    // in tests), and it is refused, never taken (HZ-011).
    let count = |f: fn(&endotower_safety::link::LinkCounters) -> u64| tower.safety().with(|h| f(&h.links()[0])).unwrap();
    let requests = || count(|c| c.requests.load(Ordering::Relaxed));
    let r0 = requests();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(requests() - r0 > 1000, "the island made {} requests in 2 s", requests() - r0);
    let (frames, timeouts) = (count(|c| c.frame_errors.load(Ordering::Relaxed)), count(|c| c.timeouts.load(Ordering::Relaxed)));
    assert!(frames <= timeouts, "{frames} mismatched replies but only {timeouts} timeouts: frames collided on the line");
    sim.inject_pressure(26.0);
    assert!(wait_for(Duration::from_secs(5), || sim.insufflator().safety_cmd & safety_cmd::FORCE_VENT != 0).await, "no vent over RTU");
    assert!(wait_for(Duration::from_secs(2), || tower.events().is_active("safety", "HZ-001")).await);
    tower.shutdown().await;
    drop(slave);
    sim.stop();
}
