//! Faults that can be injected into a simulated device at run time: sensor
//! faults, communication faults and physical faults. Scenario files name them
//! as `{ kind = "sensor_offset", channel = "pressure", value = 5.0 }`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use endotower_actors::registers::INVALID;
use serde::{Deserialize, Serialize};

/// A sensor channel whose reading can be faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Insufflator cavity pressure (PRESSURE, the primary sensor).
    Pressure,
    /// The insufflator's second, independent pressure sensor (PRESSURE_2).
    #[serde(rename = "pressure_2")]
    Pressure2,
    /// Insufflator gas flow.
    Flow,
    /// Insufflator supply (cylinder) pressure.
    Supply,
    /// Light LED current.
    LedCurrent,
    /// Light LED temperature.
    LedTemp,
    /// Light cable tip temperature.
    TipTemp,
    /// Light output.
    Output,
}

/// One injectable fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "FaultSpec", from = "FaultSpec")]
pub enum Fault {
    /// The channel's register stops updating (SAMPLE_SEQ keeps counting).
    SensorStuck(Channel),
    /// The channel reads this much (engineering units) above the truth.
    SensorOffset(Channel, f64),
    /// The channel reads `INVALID` (0x8000).
    SensorNan(Channel),
    /// All TCP connections are closed and new ones refused; RTU requests unanswered.
    LinkDrop,
    /// Every reply is sent this much later.
    ReplyDelay(Duration),
    /// Every request is answered with exception ServerDeviceFailure.
    ExceptionReplies,
    /// Requests are never answered (the device's own fail-safe still runs).
    Hang,
    /// The cavity leak becomes this many L/min (insufflator).
    LeakStep(f64),
    /// The gas cylinder is empty (insufflator).
    SupplyEmpty,
    /// The cylinder loses gas at this many L/min besides what the patient
    /// line takes (a leaking regulator): a slow drain (insufflator).
    SupplyDrain(f64),
    /// The heatsink fan does not turn whatever FAN says (light).
    FanFailure,
    /// The light cable is unplugged; only reported in STATUS (light).
    CableUnplugged,
    /// Writes to the safety word (insufflator SAFETY_CMD, light SAFETY_CAP)
    /// are acknowledged but not applied: a lost safety override (HZ-010).
    SafetyWriteIgnored,
}

/// The kind of a [`Fault`], without its parameters; used to clear faults.
/// Clearing a sensor fault kind clears it on every channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    SensorStuck,
    SensorOffset,
    SensorNan,
    LinkDrop,
    ReplyDelay,
    ExceptionReplies,
    Hang,
    LeakStep,
    SupplyEmpty,
    SupplyDrain,
    FanFailure,
    CableUnplugged,
    SafetyWriteIgnored,
}

impl Fault {
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::SensorStuck(_) => FaultKind::SensorStuck,
            Fault::SensorOffset(..) => FaultKind::SensorOffset,
            Fault::SensorNan(_) => FaultKind::SensorNan,
            Fault::LinkDrop => FaultKind::LinkDrop,
            Fault::ReplyDelay(_) => FaultKind::ReplyDelay,
            Fault::ExceptionReplies => FaultKind::ExceptionReplies,
            Fault::Hang => FaultKind::Hang,
            Fault::LeakStep(_) => FaultKind::LeakStep,
            Fault::SupplyEmpty => FaultKind::SupplyEmpty,
            Fault::SupplyDrain(_) => FaultKind::SupplyDrain,
            Fault::FanFailure => FaultKind::FanFailure,
            Fault::CableUnplugged => FaultKind::CableUnplugged,
            Fault::SafetyWriteIgnored => FaultKind::SafetyWriteIgnored,
        }
    }
}

/// The serialized shape of a [`Fault`]: internally tagged by `kind`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum FaultSpec {
    SensorStuck { channel: Channel },
    SensorOffset { channel: Channel, value: f64 },
    SensorNan { channel: Channel },
    LinkDrop,
    ReplyDelay { ms: u64 },
    ExceptionReplies,
    Hang,
    LeakStep { lpm: f64 },
    SupplyEmpty,
    SupplyDrain { lpm: f64 },
    FanFailure,
    CableUnplugged,
    SafetyWriteIgnored,
}

impl From<FaultSpec> for Fault {
    fn from(s: FaultSpec) -> Self {
        match s {
            FaultSpec::SensorStuck { channel } => Fault::SensorStuck(channel),
            FaultSpec::SensorOffset { channel, value } => Fault::SensorOffset(channel, value),
            FaultSpec::SensorNan { channel } => Fault::SensorNan(channel),
            FaultSpec::LinkDrop => Fault::LinkDrop,
            FaultSpec::ReplyDelay { ms } => Fault::ReplyDelay(Duration::from_millis(ms)),
            FaultSpec::ExceptionReplies => Fault::ExceptionReplies,
            FaultSpec::Hang => Fault::Hang,
            FaultSpec::LeakStep { lpm } => Fault::LeakStep(lpm),
            FaultSpec::SupplyEmpty => Fault::SupplyEmpty,
            FaultSpec::SupplyDrain { lpm } => Fault::SupplyDrain(lpm),
            FaultSpec::FanFailure => Fault::FanFailure,
            FaultSpec::CableUnplugged => Fault::CableUnplugged,
            FaultSpec::SafetyWriteIgnored => Fault::SafetyWriteIgnored,
        }
    }
}

impl From<Fault> for FaultSpec {
    fn from(f: Fault) -> Self {
        match f {
            Fault::SensorStuck(channel) => FaultSpec::SensorStuck { channel },
            Fault::SensorOffset(channel, value) => FaultSpec::SensorOffset { channel, value },
            Fault::SensorNan(channel) => FaultSpec::SensorNan { channel },
            Fault::LinkDrop => FaultSpec::LinkDrop,
            Fault::ReplyDelay(d) => FaultSpec::ReplyDelay { ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX) },
            Fault::ExceptionReplies => FaultSpec::ExceptionReplies,
            Fault::Hang => FaultSpec::Hang,
            Fault::LeakStep(lpm) => FaultSpec::LeakStep { lpm },
            Fault::SupplyEmpty => FaultSpec::SupplyEmpty,
            Fault::SupplyDrain(lpm) => FaultSpec::SupplyDrain { lpm },
            Fault::FanFailure => FaultSpec::FanFailure,
            Fault::CableUnplugged => FaultSpec::CableUnplugged,
            Fault::SafetyWriteIgnored => FaultSpec::SafetyWriteIgnored,
        }
    }
}

/// The faults currently active on one device.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FaultSet {
    stuck: BTreeSet<Channel>,
    offset: BTreeMap<Channel, f64>,
    nan: BTreeSet<Channel>,
    pub(crate) link_drop: bool,
    pub(crate) reply_delay: Option<Duration>,
    pub(crate) exception_replies: bool,
    pub(crate) hang: bool,
    /// Leak override, L/min (never negative).
    pub(crate) leak_lpm: Option<f64>,
    pub(crate) supply_empty: bool,
    /// Cylinder drain besides the patient line, L/min (never negative).
    pub(crate) supply_drain_lpm: f64,
    pub(crate) fan_failure: bool,
    pub(crate) cable_unplugged: bool,
    pub(crate) safety_write_ignored: bool,
}

impl FaultSet {
    pub(crate) fn set(&mut self, fault: Fault) {
        match fault {
            Fault::SensorStuck(c) => {
                self.stuck.insert(c);
            }
            Fault::SensorOffset(c, v) => {
                self.offset.insert(c, v);
            }
            Fault::SensorNan(c) => {
                self.nan.insert(c);
            }
            Fault::LinkDrop => self.link_drop = true,
            Fault::ReplyDelay(d) => self.reply_delay = Some(d),
            Fault::ExceptionReplies => self.exception_replies = true,
            Fault::Hang => self.hang = true,
            Fault::LeakStep(lpm) => self.leak_lpm = Some(if lpm.is_finite() { lpm.max(0.0) } else { 0.0 }),
            Fault::SupplyEmpty => self.supply_empty = true,
            Fault::SupplyDrain(lpm) => self.supply_drain_lpm = if lpm.is_finite() { lpm.max(0.0) } else { 0.0 },
            Fault::FanFailure => self.fan_failure = true,
            Fault::CableUnplugged => self.cable_unplugged = true,
            Fault::SafetyWriteIgnored => self.safety_write_ignored = true,
        }
    }

    pub(crate) fn clear(&mut self, kind: FaultKind) {
        match kind {
            FaultKind::SensorStuck => self.stuck.clear(),
            FaultKind::SensorOffset => self.offset.clear(),
            FaultKind::SensorNan => self.nan.clear(),
            FaultKind::LinkDrop => self.link_drop = false,
            FaultKind::ReplyDelay => self.reply_delay = None,
            FaultKind::ExceptionReplies => self.exception_replies = false,
            FaultKind::Hang => self.hang = false,
            FaultKind::LeakStep => self.leak_lpm = None,
            FaultKind::SupplyEmpty => self.supply_empty = false,
            FaultKind::SupplyDrain => self.supply_drain_lpm = 0.0,
            FaultKind::FanFailure => self.fan_failure = false,
            FaultKind::CableUnplugged => self.cable_unplugged = false,
            FaultKind::SafetyWriteIgnored => self.safety_write_ignored = false,
        }
    }

    /// The register word for `channel`: `previous` if stuck, [`INVALID`] if
    /// NaN, otherwise the true `value` plus any offset, encoded by `encode`.
    pub(crate) fn sensor_word(&self, channel: Channel, value: f64, previous: u16, encode: impl Fn(f64) -> u16) -> u16 {
        if self.nan.contains(&channel) {
            INVALID
        } else if self.stuck.contains(&channel) {
            previous
        } else {
            encode(value + self.offset.get(&channel).copied().unwrap_or(0.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_deserialize_from_tagged_snake_case() {
        let f: Fault = serde_json::from_str(r#"{"kind":"sensor_offset","channel":"pressure","value":5.0}"#).unwrap();
        assert_eq!(f, Fault::SensorOffset(Channel::Pressure, 5.0));
        let f: Fault = serde_json::from_str(r#"{"kind":"reply_delay","ms":250}"#).unwrap();
        assert_eq!(f, Fault::ReplyDelay(Duration::from_millis(250)));
        let f: Fault = serde_json::from_str(r#"{"kind":"link_drop"}"#).unwrap();
        assert_eq!(f.kind(), FaultKind::LinkDrop);
        assert!(serde_json::from_str::<Fault>(r#"{"kind":"sensor_nan","channel":"nose"}"#).is_err());
        let k: FaultKind = serde_json::from_str(r#""leak_step""#).unwrap();
        assert_eq!(k, FaultKind::LeakStep);
        let back = serde_json::to_string(&Fault::LeakStep(2.5)).unwrap();
        assert_eq!(back, r#"{"kind":"leak_step","lpm":2.5}"#);
    }

    #[test]
    fn sensor_faults_shape_the_register_word() {
        let enc = |v: f64| (v * 10.0) as u16;
        let mut f = FaultSet::default();
        assert_eq!(f.sensor_word(Channel::Flow, 1.0, 99, enc), 10);
        f.set(Fault::SensorOffset(Channel::Flow, 2.0));
        assert_eq!(f.sensor_word(Channel::Flow, 1.0, 99, enc), 30);
        f.set(Fault::SensorStuck(Channel::Flow));
        assert_eq!(f.sensor_word(Channel::Flow, 1.0, 99, enc), 99);
        f.set(Fault::SensorNan(Channel::Flow));
        assert_eq!(f.sensor_word(Channel::Flow, 1.0, 99, enc), INVALID);
        assert_eq!(f.sensor_word(Channel::Pressure, 1.0, 99, enc), 10);
        f.clear(FaultKind::SensorNan);
        f.clear(FaultKind::SensorStuck);
        f.clear(FaultKind::SensorOffset);
        assert_eq!(f, FaultSet::default());
    }
}
