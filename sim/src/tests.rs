//! End-to-end tests: a running [`SimHost`] driven by real tokio-modbus clients
//! over TCP (127.0.0.1, port 0) and over an RTU pseudo-terminal pair.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use endotower_actors::registers::{insufflator as ins, light, pedal, INVALID};
use tokio_modbus::client::Context;
use tokio_modbus::prelude::*;
use tokio_serial::SerialStream;

use crate::{Channel, Device, Fault, FaultKind, RtuBus, RtuPort, SimConfig, SimEndpoints, SimError, SimHost};

/// How long a test waits for a reply that must not come.
const NO_REPLY: Duration = Duration::from_millis(300);

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn tcp_host(devices: &[Device]) -> SimHost {
    let tcp = devices.iter().map(|d| (*d, any_port())).collect();
    SimHost::start(SimConfig::default(), SimEndpoints { tcp, rtu: vec![] }).unwrap()
}

async fn connect(addr: SocketAddr, unit: u8) -> Context {
    tcp::connect_slave(addr, Slave(unit)).await.unwrap()
}

/// Poll `cond` every 5 ms for up to `within`.
async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}

#[tokio::test]
async fn tcp_client_reads_writes_and_uses_fc23() {
    let host = tcp_host(&[Device::Insufflator, Device::Insufflator, Device::Light]);
    let addrs = host.tcp_addrs(Device::Insufflator);
    assert_eq!(addrs.len(), 2);
    assert!(addrs.iter().all(|a| a.port() != 0));
    let mut ctx = connect(addrs[0], ins::UNIT).await;

    let sensors = ctx.read_holding_registers(0, ins::SENSOR_LEN).await.unwrap().unwrap();
    assert_eq!(sensors.len(), usize::from(ins::SENSOR_LEN));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let inputs = ctx.read_input_registers(ins::SAMPLE_SEQ, 1).await.unwrap().unwrap();
    assert_ne!(inputs[0], sensors[usize::from(ins::SAMPLE_SEQ)], "SAMPLE_SEQ advances in real time");

    ctx.write_single_register(ins::HEARTBEAT, 1).await.unwrap().unwrap();
    assert!(!host.failsafe(Device::Insufflator));
    ctx.write_multiple_registers(ins::PWM_DUTY, &[400, 1]).await.unwrap().unwrap();
    let rw = ctx.read_write_multiple_registers(ins::PWM_DUTY, 3, ins::RELIEF_VALVE, &[1]).await.unwrap().unwrap();
    assert_eq!(rw, vec![400, 1, 1], "FC23 writes before it reads");

    // Access rules over the wire.
    let e = ctx.write_single_register(ins::PRESSURE, 5).await.unwrap();
    assert_eq!(e, Err(ExceptionCode::IllegalDataAddress));
    let e = ctx.write_single_register(ins::PWM_DUTY, 1001).await.unwrap();
    assert_eq!(e, Err(ExceptionCode::IllegalDataValue));
    let e = ctx.read_holding_registers(30, 4).await.unwrap();
    assert_eq!(e, Err(ExceptionCode::IllegalDataAddress));

    // The second listener serves the same device (e.g. for the safety island).
    let mut safety = connect(addrs[1], 255).await;
    safety.write_single_register(ins::SAFETY_CMD, 1).await.unwrap().unwrap();
    let echo = ctx.read_holding_registers(ins::SAFETY_CMD, 1).await.unwrap().unwrap();
    assert_eq!(echo, vec![1]);

    host.stop();
}

#[tokio::test]
async fn tcp_faults_give_exceptions_nan_words_and_silence() {
    let host = tcp_host(&[Device::Insufflator]);
    let addr = host.tcp_addrs(Device::Insufflator)[0];
    let mut ctx = connect(addr, ins::UNIT).await;

    host.set_fault(Device::Insufflator, Fault::SensorNan(Channel::Pressure));
    tokio::time::sleep(Duration::from_millis(20)).await; // next physics step publishes it
    let p = ctx.read_holding_registers(ins::PRESSURE, 1).await.unwrap().unwrap();
    assert_eq!(p, vec![INVALID]);
    host.clear_fault(Device::Insufflator, FaultKind::SensorNan);

    host.set_fault(Device::Insufflator, Fault::ExceptionReplies);
    let e = ctx.read_holding_registers(0, 1).await.unwrap();
    assert_eq!(e, Err(ExceptionCode::ServerDeviceFailure));
    host.clear_fault(Device::Insufflator, FaultKind::ExceptionReplies);
    assert!(ctx.read_holding_registers(0, 1).await.unwrap().is_ok());

    host.set_fault(Device::Insufflator, Fault::ReplyDelay(Duration::from_millis(100)));
    let t = Instant::now();
    ctx.read_holding_registers(0, 1).await.unwrap().unwrap();
    assert!(t.elapsed() >= Duration::from_millis(100));
    host.clear_all_faults(Device::Insufflator);

    // Another unit id gets no answer at all.
    let mut other = connect(addr, 9).await;
    assert!(tokio::time::timeout(NO_REPLY, other.read_holding_registers(0, 1)).await.is_err());

    host.set_fault(Device::Insufflator, Fault::Hang);
    assert!(tokio::time::timeout(NO_REPLY, ctx.read_holding_registers(0, 1)).await.is_err());
    host.clear_fault(Device::Insufflator, FaultKind::Hang);
    let mut fresh = connect(addr, ins::UNIT).await;
    assert!(fresh.read_holding_registers(0, 1).await.unwrap().is_ok());

    host.stop();
}

#[tokio::test]
async fn link_drop_closes_connections_until_cleared() {
    let host = tcp_host(&[Device::Light]);
    let addr = host.tcp_addrs(Device::Light)[0];
    let mut ctx = connect(addr, light::UNIT).await;
    assert!(ctx.read_holding_registers(0, 1).await.unwrap().is_ok());

    host.set_fault(Device::Light, Fault::LinkDrop);
    let read = tokio::time::timeout(NO_REPLY, ctx.read_holding_registers(0, 1)).await;
    assert!(matches!(read, Ok(Err(_))), "open connection is closed: {read:?}");
    let mut again = connect(addr, light::UNIT).await;
    let read = tokio::time::timeout(NO_REPLY, again.read_holding_registers(0, 1)).await;
    assert!(matches!(read, Ok(Err(_))), "new connection is refused: {read:?}");

    host.clear_fault(Device::Light, FaultKind::LinkDrop);
    let mut back = connect(addr, light::UNIT).await;
    assert!(back.read_holding_registers(0, 1).await.unwrap().is_ok());
    host.stop();
}

#[tokio::test]
async fn heartbeat_loss_fails_safe_in_real_time_and_vent_time_is_recorded() {
    let host = tcp_host(&[Device::Insufflator]);
    let mut ctx = connect(host.tcp_addrs(Device::Insufflator)[0], ins::UNIT).await;
    assert!(host.failsafe(Device::Insufflator), "boots in fail-safe");
    ctx.write_single_register(ins::HEARTBEAT, 1).await.unwrap().unwrap();
    assert!(!host.failsafe(Device::Insufflator));

    let before = Instant::now();
    ctx.write_single_register(ins::RELIEF_VALVE, 1).await.unwrap().unwrap();
    let vent = host.last_vent_open().unwrap();
    assert!(vent >= before && vent <= Instant::now());

    let lost = Instant::now();
    assert!(eventually(Duration::from_secs(1), || host.failsafe(Device::Insufflator)).await);
    assert!(lost.elapsed() >= Duration::from_millis(250), "{:?}", lost.elapsed());
    assert!(host.insufflator().relief_open, "fail-safe leaves the relief valve alone");

    let t = host.inject_pressure(12.0);
    assert!(t <= Instant::now() && host.insufflator().pressure_mmhg > 11.0);
    host.press_pedal();
    host.set_led_temp(70.0);
    assert!((host.light().led_temp_c - 70.0).abs() < 1.0);
    host.stop();
}

#[test]
fn binding_an_address_in_use_names_it() {
    let first = tcp_host(&[Device::Camera]);
    let taken = first.tcp_addrs(Device::Camera)[0];
    let err = SimHost::start(SimConfig::default(), SimEndpoints { tcp: vec![(Device::Pedal, taken)], rtu: vec![] }).unwrap_err();
    assert!(matches!(err, SimError::Bind { addr, .. } if addr == taken));
    assert!(err.to_string().contains(&taken.to_string()), "{err}");

    let bad = SimConfig { heartbeat_timeout_ms: 0, ..Default::default() };
    let err = SimHost::start(bad, SimEndpoints::default()).unwrap_err();
    assert!(err.to_string().contains("heartbeat_timeout_ms"), "{err}");
    first.stop();
}

#[tokio::test]
async fn rtu_bus_serves_two_devices_and_ignores_unknown_units() {
    let (master, slave) = SerialStream::pair().unwrap();
    let bus = RtuBus { port: RtuPort::Stream(slave), devices: vec![(Device::Insufflator, 1), (Device::Light, 2)] };
    let host = SimHost::start(SimConfig::default(), SimEndpoints { tcp: vec![], rtu: vec![bus] }).unwrap();
    let mut ctx = rtu::attach_slave(master, Slave(1));

    ctx.write_single_register(ins::PWM_DUTY, 300).await.unwrap().unwrap();
    let duty = ctx.read_holding_registers(ins::PWM_DUTY, 1).await.unwrap().unwrap();
    assert_eq!(duty, vec![300]);

    ctx.set_slave(Slave(2));
    ctx.write_single_register(light::DRIVE, 700).await.unwrap().unwrap();
    let rw = ctx.read_write_multiple_registers(light::DRIVE, 1, light::FAN, &[1]).await.unwrap().unwrap();
    assert_eq!(rw, vec![700]);
    assert_eq!(ctx.write_single_register(light::SAFETY_CAP, 101).await.unwrap(), Err(ExceptionCode::IllegalDataValue));

    ctx.set_slave(Slave(7));
    assert!(tokio::time::timeout(NO_REPLY, ctx.read_holding_registers(0, 1)).await.is_err());

    host.set_fault(Device::Light, Fault::LinkDrop);
    ctx.set_slave(Slave(2));
    assert!(tokio::time::timeout(NO_REPLY, ctx.read_holding_registers(0, 1)).await.is_err());

    ctx.set_slave(Slave(1));
    let duty = ctx.read_holding_registers(ins::PWM_DUTY, 1).await.unwrap().unwrap();
    assert_eq!(duty, vec![300], "the bus still serves the other device");
    host.stop();
}

#[tokio::test]
async fn stop_closes_listeners_and_open_connections() {
    let host = tcp_host(&[Device::Pedal]);
    let addr = host.tcp_addrs(Device::Pedal)[0];
    let mut ctx = connect(addr, pedal::UNIT).await;
    host.press_pedal();
    let count = ctx.read_holding_registers(pedal::PRESS_COUNT, 1).await;
    assert_eq!(count.unwrap(), Ok(vec![1]));

    host.stop();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener closed");
    let read = tokio::time::timeout(NO_REPLY, ctx.read_holding_registers(0, 1)).await;
    assert!(matches!(read, Ok(Err(_))), "connection closed: {read:?}");
}
