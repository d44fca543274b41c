//! `endotower device-check` (docs/device-interface.md): the simulators pass
//! every rule; a device written from the register table alone (pymodbus,
//! installed by `./x` in .deps/venv) fails the rules it breaks, each named.

mod common;

use endotower_sim::{Device, SimConfig, SimEndpoints, SimHost};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

fn device_check(addr: &str, device: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_endotower")).args(["device-check", addr, "--device", device]).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn every_simulator_passes_the_device_check() {
    let any = "127.0.0.1:0".parse().unwrap();
    let sim =
        SimHost::start(SimConfig::default(), SimEndpoints { tcp: Device::ALL.iter().map(|d| (*d, any)).collect(), rtu: vec![] }).unwrap();
    for d in Device::ALL {
        let (ok, out) = device_check(&sim.tcp_addrs(d)[0].to_string(), d.name());
        assert!(ok, "{}:\n{out}", d.name());
        assert!(!out.contains("FAIL"), "{}:\n{out}", d.name());
        assert!(out.lines().filter(|l| l.starts_with("PASS")).count() >= 9, "{}: too few rules checked:\n{out}", d.name());
    }
    sim.stop();
}

/// The peer process, stopped when the test ends however it ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn a_non_conforming_device_fails_the_device_check_naming_each_broken_rule() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".deps/venv/bin/python");
    assert!(python.is_file(), "{} missing: run ./x setup (it installs pymodbus for this test)", python.display());
    let port = free_port();
    let mut child = Command::new(&python)
        .arg(root.join("tests/peers/bad_insufflator.py"))
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut ready).unwrap();
    let _peer = Peer(child);
    assert_eq!(ready.trim(), "READY");
    // The server starts listening right after it says so.
    let addr = format!("127.0.0.1:{port}");
    assert!(
        (0..100).any(|_| std::net::TcpStream::connect(&addr).is_ok() || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            false
        }),
        "peer never listened"
    );
    let (ok, out) = device_check(&addr, "insufflator");
    assert!(!ok, "a non-conforming device passed:\n{out}");
    for rule in [
        "FAIL response time within safety.timeout_us",
        "FAIL SAMPLE_SEQ advances at least every 20 ms",
        "FAIL a write to an undocumented word gets exception 0x02",
        "FAIL fail-safe after 300 ms without a heartbeat change",
        "FAIL the safety word is accepted with the heartbeat in one FC 16 and read back in SAFETY_ECHO",
    ] {
        assert!(out.contains(rule), "expected {rule:?} in:\n{out}");
    }
    assert!(out.contains("PASS FC 3 read of the sensor block"), "{out}");
}
