//! The device interface contract as the tower uses it: every request the
//! safety island and the control plane make of each device, generated from
//! the code so `docs/device-interface.md` cannot drift from it (a test
//! checks the document carries this text), and the checks
//! `endotower device-check` runs against a device.

use crate::camera::CameraControl;
use crate::device_actor::DeviceControl;
use crate::insufflator::InsufflatorControl;
use crate::light::LightControl;
use crate::pedal::PedalControl;
use crate::registers::{self, camera, insufflator, light, pedal};

/// One kind of request a device receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestShape {
    pub from: &'static str,
    pub function: &'static str,
    pub first: u16,
    pub count: u16,
    pub when: &'static str,
}

const ISLAND_PERIOD: &str = "every island period (`safety.period_us`, default 2 ms: 500 a second)";
const AUX: &str = "every `safety.aux_heartbeat_ms` (default 50 ms: 20 a second)";
const POLL: &str = "every poll (`devices.<name>.poll_hz`)";
const ON_CHANGE: &str = "when the control law wants other outputs than it read back, then an FC 3 read-back of the same words";

fn control<C: DeviceControl>(reads_from_zero: bool) -> Vec<RequestShape> {
    let mut v = Vec::new();
    if reads_from_zero {
        v.push(RequestShape { from: "control plane", function: "FC 3 read", first: 0, count: C::READ_LEN, when: POLL });
    }
    if C::CONTROL_LEN > 0 {
        v.push(RequestShape {
            from: "control plane",
            function: "FC 16 write",
            first: C::CONTROL_ADDR,
            count: C::CONTROL_LEN,
            when: ON_CHANGE,
        });
    }
    v
}

/// Every request each device receives, by device name and unit id.
pub fn requests() -> Vec<(&'static str, u8, Vec<RequestShape>)> {
    let island_read = |len| RequestShape { from: "safety island", function: "FC 3 read", first: 0, count: len, when: ISLAND_PERIOD };
    let island_write = |addr| RequestShape { from: "safety island", function: "FC 16 write", first: addr, count: 2, when: ISLAND_PERIOD };
    let heartbeat = |addr| RequestShape { from: "safety island", function: "FC 16 write", first: addr, count: 1, when: AUX };
    let mut ins = vec![island_read(insufflator::SENSOR_LEN), island_write(insufflator::SAFETY_CMD)];
    ins.extend(control::<InsufflatorControl>(true));
    let mut lig = vec![island_read(light::SENSOR_LEN), island_write(light::SAFETY_CAP)];
    lig.extend(control::<LightControl>(true));
    let mut cam = vec![heartbeat(camera::HEARTBEAT)];
    cam.extend(control::<CameraControl>(true));
    let mut ped = vec![heartbeat(pedal::HEARTBEAT)];
    ped.extend(control::<PedalControl>(true));
    vec![("insufflator", insufflator::UNIT, ins), ("light", light::UNIT, lig), ("camera", camera::UNIT, cam), ("pedal", pedal::UNIT, ped)]
}

/// The request tables of `docs/device-interface.md`.
pub fn requests_markdown() -> String {
    let mut out = String::new();
    for (device, unit, reqs) in requests() {
        out.push_str(&format!("\n#### {device} (unit {unit}): requests it receives\n\n| from | function | registers | words | when |\n|---|---|---|---|---|\n"));
        for r in reqs {
            let last = r.first + r.count.max(1) - 1;
            out.push_str(&format!("| {} | {} | {}..={} | {} | {} |\n", r.from, r.function, r.first, last, r.count, r.when));
        }
    }
    out
}

/// The register maps (the same text as ARCHITECTURE.md's).
pub fn registers_markdown() -> String {
    registers::markdown()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_stays_inside_the_register_table_and_writes_only_documented_words() {
        for (device, _, reqs) in requests() {
            let map = match device {
                "insufflator" => insufflator::MAP,
                "light" => light::MAP,
                "camera" => camera::MAP,
                _ => pedal::MAP,
            };
            for r in reqs {
                assert!(r.first + r.count <= registers::TABLE_LEN, "{device}: {r:?}");
                if r.function.contains("write") {
                    for a in r.first..r.first + r.count {
                        let spec = registers::spec(map, a).unwrap_or_else(|| panic!("{device}: writes undocumented word {a}"));
                        assert_ne!(spec.access, registers::Access::Read, "{device}: writes read-only {}", spec.name);
                    }
                }
            }
        }
    }
}
