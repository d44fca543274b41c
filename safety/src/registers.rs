//! The Modbus register maps of every tower device: the one place the device
//! actors, the safety island and the simulators take addresses and scaling
//! from. It lives in the safety island's crate because the island is the
//! part that must not depend on anything else.
//!
//! Every device exposes a single holding-register table (function codes 0x03,
//! 0x06, 0x10 and 0x17). Addresses 0..=15 are read-only sensor and status words
//! (a write gets exception 0x02, illegal data address); 16..=23 are control
//! outputs written by the device actor; 24..=31 belong to the safety island only.
//! That split is what lets the safety island override outputs without fighting
//! the control loop: the device combines both, and safety always wins.
//!
//! Encodings:
//! - signed values are two's-complement `i16` in a `u16` word;
//! - [`INVALID`] (`0x8000`) in a sensor word means "no valid reading" (the
//!   sensor reports NaN or is disconnected);
//! - every sensor block carries a `SAMPLE_SEQ` word that the device increments
//!   on each new sample, so a reader can tell a fresh value from a stale one.

/// Sensor word meaning "no valid reading".
pub const INVALID: u16 = 0x8000;

/// Access of a register from the bus master's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read-only sensor or status word.
    Read,
    /// Control output written by the device actor.
    ReadWrite,
    /// Written by the safety island only.
    Safety,
}

/// One documented register.
#[derive(Clone, Copy, Debug)]
pub struct RegisterSpec {
    pub addr: u16,
    pub name: &'static str,
    pub access: Access,
    pub unit: &'static str,
    /// Engineering value = raw * scale (raw read as i16 where `signed`).
    pub scale: f64,
    pub signed: bool,
    pub description: &'static str,
    /// Raw values a bus master may write (writable registers only); a value
    /// outside gets exception 0x03, illegal data value.
    pub range: Option<(u16, u16)>,
}

impl RegisterSpec {
    /// May a bus master write `value` here?
    pub fn accepts(&self, value: u16) -> bool {
        self.access != Access::Read && self.range.is_none_or(|(lo, hi)| (lo..=hi).contains(&value))
    }
}

/// First address of the control block.
pub const CONTROL_BASE: u16 = 16;
/// First address of the safety block.
pub const SAFETY_BASE: u16 = 24;
/// Size of every device's register table.
pub const TABLE_LEN: u16 = 32;

macro_rules! reg {
    (@spec $addr:expr, $name:literal, $access:ident, $unit:literal, $scale:expr, $signed:expr, $desc:literal, $range:expr) => {
        RegisterSpec {
            addr: $addr,
            name: $name,
            access: Access::$access,
            unit: $unit,
            scale: $scale,
            signed: $signed,
            description: $desc,
            range: $range,
        }
    };
    ($addr:expr, $name:literal, $access:ident, $unit:literal, $scale:expr, $signed:expr, $desc:literal) => {
        reg!(@spec $addr, $name, $access, $unit, $scale, $signed, $desc, None)
    };
    ($addr:expr, $name:literal, $access:ident, $unit:literal, $scale:expr, $signed:expr, $desc:literal, $lo:literal ..= $hi:literal) => {
        reg!(@spec $addr, $name, $access, $unit, $scale, $signed, $desc, Some(($lo, $hi)))
    };
}

/// The documented register `addr` of `map`.
pub fn spec(map: &'static [RegisterSpec], addr: u16) -> Option<&'static RegisterSpec> {
    map.iter().find(|r| r.addr == addr)
}

/// CO2 insufflator (default unit id 1).
pub mod insufflator {
    use super::*;
    pub const UNIT: u8 = 1;
    pub const PRESSURE: u16 = 0;
    pub const FLOW: u16 = 1;
    pub const SUPPLY: u16 = 2;
    pub const SAMPLE_SEQ: u16 = 3;
    pub const STATUS: u16 = 4;
    pub const DUTY_APPLIED: u16 = 5;
    pub const SAFETY_ECHO: u16 = 6;
    /// The second, independent pressure sensor (redundant channel).
    pub const PRESSURE_2: u16 = 7;
    /// Number of sensor words read in one block, from address 0.
    pub const SENSOR_LEN: u16 = 8;
    pub const PWM_DUTY: u16 = 16;
    pub const SHUTOFF_VALVE: u16 = 17;
    pub const RELIEF_VALVE: u16 = 18;
    pub const SAFETY_CMD: u16 = 24;
    pub const HEARTBEAT: u16 = 25;

    pub mod status {
        pub const PROPORTIONAL_OPEN: u16 = 1 << 0;
        pub const SHUTOFF_OPEN: u16 = 1 << 1;
        pub const RELIEF_OPEN: u16 = 1 << 2;
        pub const FAILSAFE: u16 = 1 << 3;
        pub const SAFETY_INHIBIT: u16 = 1 << 4;
        pub const SAFETY_VENT: u16 = 1 << 5;
    }
    pub mod safety_cmd {
        /// Close the proportional and shut-off valves whatever the control says.
        pub const INHIBIT_INFLOW: u16 = 1 << 0;
        /// Open the relief valve whatever the control says.
        pub const FORCE_VENT: u16 = 1 << 1;
    }

    pub const MAP: &[RegisterSpec] = &[
        reg!(PRESSURE, "PRESSURE", Read, "mmHg", 0.01, true, "insufflation line / cavity pressure"),
        reg!(FLOW, "FLOW", Read, "L/min", 0.01, false, "CO2 flow into the patient line"),
        reg!(SUPPLY, "SUPPLY", Read, "bar", 0.01, false, "CO2 cylinder (inlet) pressure"),
        reg!(SAMPLE_SEQ, "SAMPLE_SEQ", Read, "count", 1.0, false, "incremented on every new sensor sample"),
        reg!(
            STATUS,
            "STATUS",
            Read,
            "bits",
            1.0,
            false,
            "b0 proportional open, b1 shut-off open, b2 relief open, b3 heartbeat fail-safe, b4 safety inhibit, b5 safety vent"
        ),
        reg!(DUTY_APPLIED, "DUTY_APPLIED", Read, "%", 0.1, false, "PWM duty actually applied after safety gating"),
        reg!(SAFETY_ECHO, "SAFETY_ECHO", Read, "bits", 1.0, false, "read-back of SAFETY_CMD"),
        reg!(
            PRESSURE_2,
            "PRESSURE_2",
            Read,
            "mmHg",
            0.01,
            true,
            "second, independent pressure sensor (same sample as PRESSURE; the island cross-checks the two)"
        ),
        reg!(PWM_DUTY, "PWM_DUTY", ReadWrite, "%", 0.1, false, "proportional valve PWM duty", 0..=1000),
        reg!(SHUTOFF_VALVE, "SHUTOFF_VALVE", ReadWrite, "0/1", 1.0, false, "shut-off solenoid valve, 1 = open", 0..=1),
        reg!(RELIEF_VALVE, "RELIEF_VALVE", ReadWrite, "0/1", 1.0, false, "relief (vent) valve, 1 = open", 0..=1),
        reg!(SAFETY_CMD, "SAFETY_CMD", Safety, "bits", 1.0, false, "b0 inhibit inflow, b1 force vent", 0..=3),
        reg!(HEARTBEAT, "HEARTBEAT", Safety, "count", 1.0, false, "must change at least every 300 ms or the device fails safe"),
    ];
}

/// LED cold light source (default unit id 2).
pub mod light {
    use super::*;
    pub const UNIT: u8 = 2;
    pub const LED_CURRENT: u16 = 0;
    pub const OUTPUT: u16 = 1;
    pub const LED_TEMP: u16 = 2;
    pub const TIP_TEMP: u16 = 3;
    pub const SAMPLE_SEQ: u16 = 4;
    pub const STATUS: u16 = 5;
    pub const SAFETY_ECHO: u16 = 6;
    pub const DRIVE_APPLIED: u16 = 7;
    pub const SENSOR_LEN: u16 = 8;
    pub const DRIVE: u16 = 16;
    pub const FAN: u16 = 17;
    pub const ENABLE: u16 = 18;
    pub const SAFETY_CAP: u16 = 24;
    pub const HEARTBEAT: u16 = 25;

    pub mod status {
        pub const CABLE_PRESENT: u16 = 1 << 0;
        pub const FAN_RUNNING: u16 = 1 << 1;
        pub const LED_ON: u16 = 1 << 2;
        pub const FAILSAFE: u16 = 1 << 3;
        pub const SAFETY_CAPPED: u16 = 1 << 4;
    }

    pub const MAP: &[RegisterSpec] = &[
        reg!(LED_CURRENT, "LED_CURRENT", Read, "mA", 1.0, false, "measured LED current"),
        reg!(OUTPUT, "OUTPUT", Read, "%", 0.1, false, "light output, % of nominal maximum"),
        reg!(LED_TEMP, "LED_TEMP", Read, "degC", 0.1, true, "LED junction / heatsink temperature"),
        reg!(TIP_TEMP, "TIP_TEMP", Read, "degC", 0.1, true, "light cable tip temperature"),
        reg!(SAMPLE_SEQ, "SAMPLE_SEQ", Read, "count", 1.0, false, "incremented on every new sensor sample"),
        reg!(
            STATUS,
            "STATUS",
            Read,
            "bits",
            1.0,
            false,
            "b0 cable present, b1 fan running, b2 LED on, b3 heartbeat fail-safe, b4 safety cap active"
        ),
        reg!(SAFETY_ECHO, "SAFETY_ECHO", Read, "%", 1.0, false, "read-back of SAFETY_CAP"),
        reg!(DRIVE_APPLIED, "DRIVE_APPLIED", Read, "%", 0.1, false, "current-driver command actually applied after the cap"),
        reg!(DRIVE, "DRIVE", ReadWrite, "%", 0.1, false, "constant-current driver command (the PID output)", 0..=1000),
        reg!(FAN, "FAN", ReadWrite, "0/1", 1.0, false, "heatsink fan, 1 = on", 0..=1),
        reg!(ENABLE, "ENABLE", ReadWrite, "0/1", 1.0, false, "1 = lamp on, 0 = standby", 0..=1),
        reg!(SAFETY_CAP, "SAFETY_CAP", Safety, "%", 1.0, false, "maximum drive the device may apply (0 = off)", 0..=100),
        reg!(HEARTBEAT, "HEARTBEAT", Safety, "count", 1.0, false, "must change at least every 300 ms or the device fails safe"),
    ];
}

/// Camera control unit (default unit id 3).
pub mod camera {
    use super::*;
    pub const UNIT: u8 = 3;
    pub const STATUS: u16 = 0;
    pub const SENSOR_TEMP: u16 = 1;
    pub const FRAME_COUNTER: u16 = 2;
    pub const SAMPLE_SEQ: u16 = 3;
    pub const WIDTH: u16 = 4;
    pub const HEIGHT: u16 = 5;
    pub const FPS: u16 = 6;
    pub const SENSOR_LEN: u16 = 7;
    pub const EXPOSURE: u16 = 16;
    pub const GAIN: u16 = 17;
    pub const WHITE_BALANCE: u16 = 18;
    pub const HEARTBEAT: u16 = 25;

    pub mod status {
        pub const STREAMING: u16 = 1 << 0;
        pub const SENSOR_OK: u16 = 1 << 1;
        pub const FAILSAFE: u16 = 1 << 3;
    }

    pub const MAP: &[RegisterSpec] = &[
        reg!(STATUS, "STATUS", Read, "bits", 1.0, false, "b0 streaming, b1 sensor ok, b3 heartbeat fail-safe"),
        reg!(SENSOR_TEMP, "SENSOR_TEMP", Read, "degC", 0.1, true, "image sensor temperature"),
        reg!(FRAME_COUNTER, "FRAME_COUNTER", Read, "count", 1.0, false, "frames produced, wraps"),
        reg!(SAMPLE_SEQ, "SAMPLE_SEQ", Read, "count", 1.0, false, "incremented on every new sample"),
        reg!(WIDTH, "WIDTH", Read, "px", 1.0, false, "video width"),
        reg!(HEIGHT, "HEIGHT", Read, "px", 1.0, false, "video height"),
        reg!(FPS, "FPS", Read, "Hz", 1.0, false, "video frame rate"),
        reg!(EXPOSURE, "EXPOSURE", ReadWrite, "us", 10.0, false, "exposure time (10 us .. 100 ms)", 1..=10000),
        reg!(GAIN, "GAIN", ReadWrite, "dB", 0.1, false, "sensor gain (0 .. 48 dB)", 0..=480),
        reg!(WHITE_BALANCE, "WHITE_BALANCE", ReadWrite, "K", 10.0, false, "white balance colour temperature (2000 .. 10000 K)", 200..=1000),
        reg!(HEARTBEAT, "HEARTBEAT", Safety, "count", 1.0, false, "must change at least every 300 ms"),
    ];
}

/// Foot pedal (default unit id 4).
pub mod pedal {
    use super::*;
    pub const UNIT: u8 = 4;
    pub const PRESS_COUNT: u16 = 0;
    pub const STATE: u16 = 1;
    pub const SAMPLE_SEQ: u16 = 2;
    pub const SENSOR_LEN: u16 = 3;
    pub const HEARTBEAT: u16 = 25;

    pub const MAP: &[RegisterSpec] = &[
        reg!(PRESS_COUNT, "PRESS_COUNT", Read, "count", 1.0, false, "presses since power-on, wraps; a change is a press event"),
        reg!(STATE, "STATE", Read, "bits", 1.0, false, "b0 pressed now, b3 heartbeat fail-safe"),
        reg!(SAMPLE_SEQ, "SAMPLE_SEQ", Read, "count", 1.0, false, "incremented on every new sample"),
        reg!(HEARTBEAT, "HEARTBEAT", Safety, "count", 1.0, false, "must change at least every 300 ms"),
    ];
}

/// Decode a signed scaled word; `None` for [`INVALID`].
pub fn decode_signed(raw: u16, scale: f64) -> Option<f64> {
    (raw != INVALID).then(|| f64::from(raw as i16) * scale)
}

/// Decode an unsigned scaled word; `None` for [`INVALID`].
pub fn decode_unsigned(raw: u16, scale: f64) -> Option<f64> {
    (raw != INVALID).then(|| f64::from(raw) * scale)
}

/// Encode a signed value; NaN and values that do not fit give [`INVALID`].
pub fn encode_signed(value: f64, scale: f64) -> u16 {
    let raw = (value / scale).round();
    if raw.is_finite() && raw > f64::from(i16::MIN) && raw <= f64::from(i16::MAX) {
        (raw as i16) as u16
    } else {
        INVALID
    }
}

/// Encode an unsigned value, clamped at 0; NaN and overflow give [`INVALID`].
pub fn encode_unsigned(value: f64, scale: f64) -> u16 {
    let raw = (value / scale).round().max(0.0);
    if raw.is_finite() && raw < f64::from(INVALID) {
        raw as u16
    } else {
        INVALID
    }
}

/// Render all maps as one Markdown table (used for ARCHITECTURE.md).
pub fn markdown() -> String {
    let mut out = String::new();
    for (device, unit, map) in [
        ("insufflator", insufflator::UNIT, insufflator::MAP),
        ("light", light::UNIT, light::MAP),
        ("camera", camera::UNIT, camera::MAP),
        ("pedal", pedal::UNIT, pedal::MAP),
    ] {
        out.push_str(&format!(
            "\n#### {device} (unit {unit})\n\n| addr | name | access | unit | scale | writable raw values | description |\n|---|---|---|---|---|---|---|\n"
        ));
        for r in map {
            let access = match r.access {
                Access::Read => "R",
                Access::ReadWrite => "RW",
                Access::Safety => "RW (safety)",
            };
            let signed = if r.signed { " (i16)" } else { "" };
            let range = match (r.access, r.range) {
                (Access::Read, _) => "-".to_string(),
                (_, Some((lo, hi))) => format!("{lo}..={hi}"),
                (_, None) => "any".to_string(),
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {}{} | {} | {} |\n",
                r.addr, r.name, access, r.unit, r.scale, signed, range, r.description
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_and_overflow_encode_as_invalid() {
        assert_eq!(encode_signed(f64::NAN, 0.01), INVALID);
        assert_eq!(encode_signed(1e9, 0.01), INVALID);
        assert_eq!(encode_unsigned(f64::INFINITY, 0.01), INVALID);
        assert_eq!(decode_signed(INVALID, 0.01), None);
    }

    #[test]
    fn signed_values_round_trip() {
        let raw = encode_signed(-3.21, 0.01);
        assert!((decode_signed(raw, 0.01).unwrap() + 3.21).abs() < 1e-9);
        let raw = encode_signed(15.0, 0.01);
        assert_eq!(decode_signed(raw, 0.01), Some(15.0));
    }

    #[test]
    fn maps_have_unique_addresses_in_the_right_blocks() {
        for map in [insufflator::MAP, light::MAP, camera::MAP, pedal::MAP] {
            let mut seen = std::collections::HashSet::new();
            for r in map {
                assert!(seen.insert(r.addr), "duplicate address {}", r.addr);
                assert!(r.addr < TABLE_LEN);
                match r.access {
                    Access::Read => assert!(r.addr < CONTROL_BASE, "{}", r.name),
                    Access::ReadWrite => {
                        assert!((CONTROL_BASE..SAFETY_BASE).contains(&r.addr), "{}", r.name)
                    }
                    Access::Safety => assert!(r.addr >= SAFETY_BASE, "{}", r.name),
                }
                assert!(r.access != Access::Read || r.range.is_none(), "{}: a range on a read-only word", r.name);
            }
        }
    }
}
