//! Scenario files (`conf/scenarios/*.toml`): the tower config to use, a
//! timeline of faults and operator actions, and the invariants to check.
//! Parsing is strict (unknown fields are errors) and every error names the
//! file and the field, e.g. `timeline[3].device` or `invariant[1].limit_mmhg`.
//!
//! ```toml
//! name = "over-pressure"
//! description = "A pressure surge past P2 must be vented by the safety island."
//! hazards = ["HZ-001", "HZ-002"]
//! duration_s = 8.0
//!
//! [tower]
//! config = ["../tower.toml", "base/tower.toml"]   # merged in order, relative to this file
//! set = { "devices.insufflator.set_pressure_mmhg" = 12.0 }
//!
//! [[timeline]]
//! at_s = 2.0
//! action = "inject_pressure"
//! mmhg = 26.0
//!
//! [[invariant]]
//! check = "pressure_below"
//! for_ms = 500
//! ```

use endotower_sim::faults::{Fault, FaultKind};
use endotower_sim::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The leaf actors of the tree that accept injected panics and hangs.
pub const INJECTABLE_ACTORS: &[&str] = &[
    "safety",
    "insufflator",
    "light",
    "camera",
    "pedal",
    "commands",
    "status",
    "capture",
    "display",
    "enhance",
    "selector",
    "inference",
    "archive",
    "telemetry",
    "broker",
];

#[derive(Debug, thiserror::Error)]
pub enum ScenarioFileError {
    #[error("{file}: cannot read: {message}")]
    Read { file: String, message: String },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: {field}: {message}")]
    Field { file: String, field: String, message: String },
}

/// A parsed, checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Where it was read from.
    pub path: PathBuf,
    pub name: String,
    pub description: String,
    pub hazards: Vec<String>,
    pub duration_s: f64,
    pub time_scale: f64,
    pub seed: u64,
    pub tower: TowerSpec,
    pub broker: BrokerKind,
    /// A tmpfs of this size (KiB) holds the journal, so it can fill up.
    pub journal_fs_kib: Option<u32>,
    /// Timeline steps, repeats expanded, sorted by time.
    pub timeline: Vec<Step>,
    pub random_faults: Option<RandomFaults>,
    pub invariants: Vec<Invariant>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    description: String,
    #[serde(default)]
    hazards: Vec<String>,
    duration_s: f64,
    #[serde(default = "one")]
    time_scale: f64,
    #[serde(default = "one_u64")]
    seed: u64,
    tower: TowerSpec,
    #[serde(default)]
    broker: BrokerKind,
    #[serde(default)]
    journal_fs_kib: Option<u32>,
    #[serde(default)]
    timeline: Vec<toml::Table>,
    #[serde(default)]
    random_faults: Option<RandomFaults>,
    #[serde(default, rename = "invariant")]
    invariants: Vec<toml::Table>,
}

fn one() -> f64 {
    1.0
}
fn one_u64() -> u64 {
    1
}

/// The tower config: files merged in order, then dotted-key overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TowerSpec {
    #[serde(deserialize_with = "one_or_many")]
    pub config: Vec<String>,
    #[serde(default)]
    pub set: toml::Table,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// Which MQTT broker the run uses (and observes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokerKind {
    /// Telemetry off.
    #[default]
    None,
    /// The tower's in-process broker (cannot be stopped by the timeline).
    Embedded,
    /// A mosquitto process the runner starts, stops and restarts.
    Mosquitto,
}

/// One timeline entry.
#[derive(Debug, Clone)]
pub struct Step {
    pub at_s: f64,
    pub action: Action,
    /// The step is expected to fail (e.g. a command sent to an actor armed
    /// to panic); its failure is reported but does not fail the run.
    pub may_fail: bool,
}

/// What a timeline step does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", content = "params", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Inject a simulator fault (see `endotower_sim::faults`).
    SimFault { device: Device, fault: Fault },
    /// Clear a simulator fault kind.
    SimClear { device: Device, kind: FaultKind },
    /// Set the true cavity pressure (a surge), mmHg.
    InjectPressure { mmhg: f64 },
    /// Set the true LED temperature, degC.
    SetLedTemp { celsius: f64 },
    /// Make a leaf actor panic on its next message.
    ActorPanic { actor: String },
    /// Make a leaf actor stop handling messages for `ms`.
    ActorHang { actor: String, ms: u64 },
    /// Panic inside the safety island's next cycle (the island catches it).
    IslandPanic,
    /// Block the safety island thread for `ms` (the safety actor replaces it).
    IslandStall { ms: u64 },
    /// Camera picture faults.
    Camera { fault: CameraFault },
    /// Break or restore the detector model file (takes effect on the next load).
    Model { state: ModelState },
    /// The detector's next output is NaN.
    AiNan,
    /// Stop the mosquitto broker.
    BrokerDown,
    /// Start it again on the same port.
    BrokerUp,
    /// Fill the journal's filesystem.
    DiskFull,
    /// Free it again.
    DiskFree,
    /// Press the foot pedal.
    PedalPress,
    /// Change a setpoint through the command path (source `hmi`).
    Setpoint {
        #[serde(default)]
        pressure_mmhg: Option<f64>,
        #[serde(default)]
        flow_lpm: Option<f64>,
        #[serde(default)]
        intensity_pct: Option<f64>,
    },
    /// Publish a raw remote command payload as MQTT client `client`.
    RemoteCommand { client: String, payload: String },
    /// The safety island's own link to `device` (insufflator or light) fails
    /// every request for `ms`; the control plane's link is untouched.
    IslandLinkDrop { device: Device, ms: u64 },
    /// The control plane's link to `device` fails every request for `ms`;
    /// the island's link is untouched.
    ControlLinkDrop { device: Device, ms: u64 },
    /// Set the true light-cable tip temperature, degC.
    SetTipTemp { celsius: f64 },
    /// Busy threads at normal priority for `ms` (an unrelated load).
    CpuLoad { threads: u32, ms: u64 },
    /// The foot pedal is pressed and held down for `ms` (one press).
    PedalHold { ms: u64 },
}

impl Action {
    /// Faults are marked red on the plots; everything else is an action.
    pub fn is_fault(&self) -> bool {
        !matches!(
            self,
            Action::SimClear { .. }
                | Action::BrokerUp
                | Action::DiskFree
                | Action::PedalPress
                | Action::Setpoint { .. }
                | Action::Camera { fault: CameraFault::None }
                | Action::PedalHold { .. }
                | Action::Model { state: ModelState::Restored }
        )
    }

    /// Short label for plots and reports.
    pub fn label(&self) -> String {
        match self {
            Action::SimFault { device, fault } => format!("{} {}", device.name(), fault_label(fault)),
            Action::SimClear { device, kind } => format!("{} clear {kind:?}", device.name()),
            Action::InjectPressure { mmhg } => format!("surge {mmhg} mmHg"),
            Action::SetLedTemp { celsius } => format!("LED {celsius} C"),
            Action::ActorPanic { actor } => format!("panic {actor}"),
            Action::ActorHang { actor, ms } => format!("hang {actor} {ms} ms"),
            Action::IslandPanic => "island panic".into(),
            Action::IslandStall { ms } => format!("island stall {ms} ms"),
            Action::Camera { fault } => format!("camera {fault:?}").to_lowercase(),
            Action::Model { state } => format!("model {state:?}").to_lowercase(),
            Action::AiNan => "AI NaN".into(),
            Action::BrokerDown => "broker down".into(),
            Action::BrokerUp => "broker up".into(),
            Action::DiskFull => "disk full".into(),
            Action::DiskFree => "disk freed".into(),
            Action::PedalPress => "pedal".into(),
            Action::Setpoint { pressure_mmhg, flow_lpm, intensity_pct } => {
                let parts: Vec<String> = [("P", pressure_mmhg), ("flow", flow_lpm), ("light", intensity_pct)]
                    .iter()
                    .filter_map(|(n, v)| v.map(|v| format!("{n} {v}")))
                    .collect();
                format!("set {}", parts.join(" "))
            }
            Action::RemoteCommand { client, .. } => format!("remote cmd ({client})"),
            Action::IslandLinkDrop { device, ms } => format!("island link {} drop {ms} ms", device.name()),
            Action::ControlLinkDrop { device, ms } => format!("control link {} drop {ms} ms", device.name()),
            Action::SetTipTemp { celsius } => format!("tip {celsius} C"),
            Action::CpuLoad { threads, ms } => format!("CPU load {threads} x {ms} ms"),
            Action::PedalHold { ms } => format!("pedal held {ms} ms"),
        }
    }
}

fn fault_label(f: &Fault) -> String {
    match f {
        Fault::SensorStuck(c) => format!("{c:?} stuck"),
        Fault::SensorOffset(c, v) => format!("{c:?} offset {v}"),
        Fault::SensorNan(c) => format!("{c:?} NaN"),
        Fault::LinkDrop => "link drop".into(),
        Fault::ReplyDelay(d) => format!("reply delay {} ms", d.as_millis()),
        Fault::ExceptionReplies => "exception replies".into(),
        Fault::Hang => "device hang".into(),
        Fault::LeakStep(l) => format!("leak {l} L/min"),
        Fault::SupplyEmpty => "CO2 empty".into(),
        Fault::SupplyDrain(l) => format!("CO2 drain {l} L/min"),
        Fault::FanFailure => "fan failure".into(),
        Fault::CableUnplugged => "cable unplugged".into(),
        Fault::SafetyWriteIgnored => "safety write ignored".into(),
    }
    .to_lowercase()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraFault {
    /// The camera keeps sending the same picture.
    Freeze,
    /// All-black frames.
    Black,
    /// Frames whose buffer does not match their declared size.
    WrongSize,
    /// Back to normal.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelState {
    /// The model file is gone.
    Missing,
    /// The model file holds garbage.
    Corrupt,
    /// The original model file is back.
    Restored,
}

/// Seeded random faults over the whole run (the soak).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RandomFaults {
    /// Mean time between injected faults, scenario seconds.
    pub mean_interval_s: f64,
    /// How long each fault lasts before it is cleared, scenario seconds.
    pub fault_s: [f64; 2],
    /// What may be injected (each drawn with equal weight).
    pub kinds: Vec<RandomFaultKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RandomFaultKind {
    Surge,
    LeakStep,
    LedOverTemp,
    FanFailure,
    LinkDrop,
    SensorNan,
    ActorPanic,
    ActorHang,
    AiNan,
    PedalPress,
}

/// A promise the run must keep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "check", content = "params", rename_all = "snake_case", deny_unknown_fields)]
pub enum Invariant {
    /// The true cavity pressure is never above `limit_mmhg` (default P2 + 2)
    /// for longer than `for_ms` at a stretch.
    PressureBelow {
        #[serde(default)]
        limit_mmhg: Option<f64>,
        for_ms: u64,
    },
    /// From `after_s` on, the true cavity pressure is never under
    /// `limit_mmhg` (default P1 - 3) for longer than `for_ms` at a stretch:
    /// the pneumoperitoneum holds.
    PressureAbove {
        #[serde(default)]
        limit_mmhg: Option<f64>,
        #[serde(default)]
        after_s: f64,
        for_ms: u64,
    },
    /// Every supervised child runs again within `within_s` (scenario
    /// seconds) of the last fault step, and stays up to the end.
    ActorsBack { within_s: f64 },
    /// The alarm `code` is not active at scenario time `by_s`.
    AlarmClearedBy { code: String, by_s: f64 },
    /// The alarm `code` is raised at most `max` times (no flapping).
    AlarmCount { code: String, max: u64 },
    /// No device fell back to its heartbeat fail-safe during the run (the
    /// simulators count every entry, however short).
    NoDeviceFailsafe,
    /// The true LED temperature is never above `limit_c` (default the
    /// island's LED maximum + 2 C) for longer than `for_ms`.
    LedTempBelow {
        #[serde(default)]
        limit_c: Option<f64>,
        for_ms: u64,
    },
    /// Every time the true pressure reaches P2 (or the LED its maximum) the
    /// interlock acts (relief open / LED off) within `within_ms`.
    InterlocksNotMissed { within_ms: u64 },
    /// The display never goes more than `max_intervals` frame intervals
    /// without a new frame (outside `except` windows, scenario seconds).
    DisplayGap {
        max_intervals: f64,
        #[serde(default)]
        except: Vec<[f64; 2]>,
    },
    /// The display skipped at most `max` frames and reordered none.
    FramesSkipped { max: u64 },
    /// The alarm `code` is raised within `within_ms` of `after_s`.
    AlarmRaised { code: String, after_s: f64, within_ms: u64 },
    /// The alarm `code` is not active at the end of the run.
    AlarmClearedByEnd { code: String },
    /// The alarm `code` is never raised.
    NoAlarm { code: String },
    /// Every alarm raised during the run reached the MQTT broker.
    AlarmsReachMqtt { within_s: f64 },
    /// No panic escaped a supervisor: the root is running, every supervised
    /// child is running at the end, and the tower never entered the safe
    /// state (unless `safe_state_expected`).
    NoEscapedPanic {
        #[serde(default)]
        safe_state_expected: bool,
    },
    /// The actor was restarted at least `min` times and runs at the end.
    Restarted { actor: String, min: u64 },
    /// The AI is online at the end of the run.
    AiOnlineAtEnd,
    /// The AI was offline at some point (the picture degraded to raw video).
    AiWentOffline,
    /// Peak resident memory stays under `max_mib`.
    MemoryBelow { max_mib: f64 },
    /// Resident memory grows by at most `max_growth_mib` from the middle
    /// tenth of the run to the last tenth (medians): no leak once every kind
    /// of fault has been seen.
    MemoryFlat { max_growth_mib: f64 },
    /// The setpoints at the end (unchanged by bad commands, changed by good ones).
    SetpointsAtEnd {
        #[serde(default)]
        pressure_mmhg: Option<f64>,
        #[serde(default)]
        intensity_pct: Option<f64>,
    },
    /// Every remote command got a reply with this status (`rejected`, ...).
    RemoteReplies { status: String, count: usize },
    /// At least `min` stills were archived.
    StillsArchived { min: u64 },
    /// The capture stage rejected at least `min` malformed frames.
    FramesRejected { min: u64 },
}

impl Invariant {
    /// Its name in reports: the check and its key parameter.
    pub fn title(&self) -> String {
        let v = serde_json::to_value(self).unwrap_or_default();
        let check = v["check"].as_str().unwrap_or("?").to_string();
        let params: Vec<String> = v["params"]
            .as_object()
            .map(|o| o.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| format!("{k}={v}")).collect())
            .unwrap_or_default();
        if params.is_empty() {
            check
        } else {
            format!("{check} ({})", params.join(", "))
        }
    }
}

/// One `[[timeline]]` or `[[invariant]]` entry: its `tag` key names the
/// variant, the other keys are its fields (strict, each error names the
/// entry and the field).
fn tagged<T: serde::de::DeserializeOwned>(mut entry: toml::Table, tag: &str, at: &str) -> Result<T, (String, String)> {
    let name = entry.remove(tag).ok_or_else(|| (format!("{at}.{tag}"), "missing".to_string()))?;
    let extra: Vec<String> = entry.keys().cloned().collect();
    let attempt = |params: Option<toml::Table>| {
        let mut adj = toml::Table::new();
        adj.insert(tag.to_string(), name.clone());
        if let Some(p) = params {
            adj.insert("params".to_string(), toml::Value::Table(p));
        }
        serde_path_to_error::deserialize::<_, T>(toml::Value::Table(adj))
    };
    // A variant whose fields all have defaults still wants its (empty) table;
    // a unit variant wants none.
    let result = match attempt((!entry.is_empty()).then(|| entry.clone())) {
        Err(e) if entry.is_empty() && e.inner().to_string().contains("missing field") => attempt(Some(toml::Table::new())),
        r => r,
    };
    result.map_err(|e| {
        let path = e.path().to_string().replace("params.", "").replace("params", "");
        let field = if path.is_empty() || path == "." { at.to_string() } else { format!("{at}.{path}") };
        let message = e.into_inner().to_string();
        if message.contains("expected unit variant") {
            return (field, format!("{name} takes no fields, got {}", extra.join(", ")));
        }
        // toml appends "in `params.x`" (our wrapping); the field is named already.
        let message = message.split("\nin `").next().unwrap_or(&message).trim().replace("`params`", "fields");
        (field, message)
    })
}

impl Scenario {
    /// Read, parse and check a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioFileError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioFileError::Read { file: file.clone(), message: e.to_string() })?;
        Self::parse(&text, path)
    }

    /// Parse scenario text read from `path` (used for relative paths and errors).
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioFileError> {
        let file = path.display().to_string();
        let value: toml::Value =
            toml::from_str(text).map_err(|e| ScenarioFileError::Syntax { file: file.clone(), message: e.to_string() })?;
        let field_err = |field: String, message: String| ScenarioFileError::Field { file: file.clone(), field, message };
        let raw: RawScenario =
            serde_path_to_error::deserialize(value).map_err(|e| field_err(e.path().to_string(), e.into_inner().to_string()))?;
        let mut timeline = Vec::new();
        for (i, entry) in raw.timeline.iter().enumerate() {
            let mut entry = entry.clone();
            let num = |entry: &mut toml::Table, key: &str| -> Result<Option<f64>, ScenarioFileError> {
                match entry.remove(key) {
                    None => Ok(None),
                    Some(toml::Value::Float(f)) => Ok(Some(f)),
                    Some(toml::Value::Integer(n)) => Ok(Some(n as f64)),
                    Some(other) => Err(field_err(format!("timeline[{i}].{key}"), format!("expected a number, got {other}"))),
                }
            };
            let at_s = num(&mut entry, "at_s")?.ok_or_else(|| field_err(format!("timeline[{i}].at_s"), "missing".into()))?;
            let every_s = num(&mut entry, "every_s")?;
            let count = num(&mut entry, "count")?;
            let may_fail = match entry.remove("may_fail") {
                None => false,
                Some(toml::Value::Boolean(b)) => b,
                Some(other) => return Err(field_err(format!("timeline[{i}].may_fail"), format!("expected true or false, got {other}"))),
            };
            let action: Action = tagged(entry, "action", &format!("timeline[{i}]")).map_err(|(f, m)| field_err(f, m))?;
            check_action(&action).map_err(|(f, m)| field_err(format!("timeline[{i}].{f}"), m))?;
            if !(at_s.is_finite() && at_s >= 0.0 && at_s <= raw.duration_s) {
                return Err(field_err(
                    format!("timeline[{i}].at_s"),
                    format!("{at_s} is outside the run (0 ..= duration_s {})", raw.duration_s),
                ));
            }
            match (every_s, count) {
                (None, None) => timeline.push(Step { at_s, action, may_fail }),
                (Some(every), Some(n)) if every > 0.0 && n >= 1.0 && n.fract() == 0.0 => {
                    let steps = (((raw.duration_s - at_s) / every).floor() + 1.0).min(n);
                    if !(steps.is_finite() && steps as usize + timeline.len() <= MAX_STEPS) {
                        return Err(field_err(
                            format!("timeline[{i}].count"),
                            format!("{n} repeats every {every} s make more than {MAX_STEPS} steps in all"),
                        ));
                    }
                    for k in 0..n as u64 {
                        let t = at_s + every * k as f64;
                        if t <= raw.duration_s {
                            timeline.push(Step { at_s: t, action: action.clone(), may_fail });
                        }
                    }
                }
                _ => {
                    return Err(field_err(
                        format!("timeline[{i}].every_s"),
                        "a repeat needs both every_s > 0 and a whole count >= 1".into(),
                    ))
                }
            }
        }
        timeline.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        let invariants = (raw.invariants.into_iter().enumerate())
            .map(|(i, entry)| tagged(entry, "check", &format!("invariant[{i}]")))
            .collect::<Result<Vec<Invariant>, _>>()
            .map_err(|(f, m)| field_err(f, m))?;
        let s = Scenario {
            path: path.to_path_buf(),
            name: raw.name,
            description: raw.description,
            hazards: raw.hazards,
            duration_s: raw.duration_s,
            time_scale: raw.time_scale,
            seed: raw.seed,
            tower: raw.tower,
            broker: raw.broker,
            journal_fs_kib: raw.journal_fs_kib,
            timeline,
            random_faults: raw.random_faults,
            invariants,
        };
        s.check().map_err(|(f, m)| field_err(f, m))?;
        Ok(s)
    }

    /// The clients the timeline sends remote commands from, each once.
    pub fn remote_clients(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for s in &self.timeline {
            if let Action::RemoteCommand { client, .. } = &s.action {
                if !v.contains(client) {
                    v.push(client.clone());
                }
            }
        }
        v
    }

    /// Config files, resolved against the scenario's directory.
    pub fn config_files(&self) -> Vec<PathBuf> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        self.tower.config.iter().map(|c| dir.join(c)).collect()
    }

    fn check(&self) -> Result<(), (String, String)> {
        let bad = |f: &str, m: String| Err((f.to_string(), m));
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return bad("name", format!("{:?} must be non-empty letters, digits, '-' or '_'", self.name));
        }
        if !(self.duration_s.is_finite() && self.duration_s > 0.0 && self.duration_s <= 24.0 * 3600.0) {
            return bad("duration_s", format!("{} must be within 0 < d <= 86400", self.duration_s));
        }
        if !(self.time_scale.is_finite() && (1.0..=1000.0).contains(&self.time_scale)) {
            return bad("time_scale", format!("{} must be within 1 ..= 1000", self.time_scale));
        }
        for (i, h) in self.hazards.iter().enumerate() {
            if !(h.len() == 6 && h.starts_with("HZ-") && h[3..].chars().all(|c| c.is_ascii_digit())) {
                return bad(&format!("hazards[{i}]"), format!("{h:?} is not a hazard id like HZ-001"));
            }
        }
        if self.tower.config.is_empty() {
            return bad("tower.config", "names no config file".into());
        }
        for (i, f) in self.config_files().iter().enumerate() {
            if !f.is_file() {
                return bad(&format!("tower.config[{i}]"), format!("{} does not exist", f.display()));
            }
        }
        if self.invariants.is_empty() {
            return bad("invariant", "a scenario needs at least one invariant".into());
        }
        let needs_mosquitto = self.timeline.iter().any(|s| matches!(s.action, Action::BrokerDown | Action::BrokerUp));
        if needs_mosquitto && self.broker != BrokerKind::Mosquitto {
            return bad("broker", "broker_down/broker_up need broker = \"mosquitto\"".into());
        }
        let needs_broker = self.timeline.iter().any(|s| matches!(s.action, Action::RemoteCommand { .. }))
            || self.invariants.iter().any(|i| matches!(i, Invariant::AlarmsReachMqtt { .. } | Invariant::RemoteReplies { .. }));
        if needs_broker && self.broker == BrokerKind::None {
            return bad("broker", "remote commands and MQTT checks need a broker (\"embedded\" or \"mosquitto\")".into());
        }
        let needs_fs = self.timeline.iter().any(|s| matches!(s.action, Action::DiskFull | Action::DiskFree));
        if needs_fs && self.journal_fs_kib.is_none() {
            return bad("journal_fs_kib", "disk_full/disk_free need the journal on its own tmpfs (journal_fs_kib)".into());
        }
        if needs_fs && self.broker == BrokerKind::None {
            return bad("broker", "disk_full tests the journal, which runs only with a broker".into());
        }
        if let Some(r) = &self.random_faults {
            if !(r.mean_interval_s.is_finite() && r.mean_interval_s > 0.0) {
                return bad("random_faults.mean_interval_s", format!("{} must be > 0", r.mean_interval_s));
            }
            let [lo, hi] = r.fault_s;
            if !(lo.is_finite() && hi.is_finite() && 0.0 < lo && lo <= hi) {
                return bad("random_faults.fault_s", format!("[{lo}, {hi}] must satisfy 0 < min <= max"));
            }
            if r.kinds.is_empty() {
                return bad("random_faults.kinds", "is empty".into());
            }
        }
        for (i, inv) in self.invariants.iter().enumerate() {
            check_invariant(inv).map_err(|(f, m)| (format!("invariant[{i}].{f}"), m))?;
        }
        Ok(())
    }
}

fn check_actor(actor: &str) -> Result<(), (String, String)> {
    if INJECTABLE_ACTORS.contains(&actor) {
        Ok(())
    } else {
        Err(("actor".into(), format!("unknown actor {actor:?}; one of {}", INJECTABLE_ACTORS.join(", "))))
    }
}

fn within(f: &str, v: f64, lo: f64, hi: f64, unit: &str) -> Result<(), (String, String)> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(())
    } else {
        Err((f.to_string(), format!("{v} must be within {lo} ..= {hi} {unit}")))
    }
}

fn whole(f: &str, v: u64, lo: u64, hi: u64) -> Result<(), (String, String)> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err((f.to_string(), format!("{v} must be within {lo} ..= {hi}")))
    }
}

/// Most timeline steps a file may expand to (repeats included).
const MAX_STEPS: usize = 100_000;

fn check_action(a: &Action) -> Result<(), (String, String)> {
    match a {
        Action::ActorPanic { actor } => check_actor(actor),
        Action::ActorHang { actor, ms } => {
            check_actor(actor)?;
            whole("ms", *ms, 1, 600_000)
        }
        Action::InjectPressure { mmhg } => within("mmhg", *mmhg, 0.0, 200.0, "mmHg"),
        Action::SetLedTemp { celsius } | Action::SetTipTemp { celsius } => within("celsius", *celsius, -40.0, 300.0, "degC"),
        Action::SimFault { fault: Fault::LeakStep(lpm), .. } => within("fault.lpm", *lpm, 0.0, 100.0, "L/min"),
        Action::SimFault { fault: Fault::SupplyDrain(lpm), .. } => within("fault.lpm", *lpm, 0.0, 1000.0, "L/min"),
        Action::SimFault { fault: Fault::SensorOffset(_, v), .. } => within("fault.value", *v, -1000.0, 1000.0, "(engineering units)"),
        Action::IslandLinkDrop { device, ms } => {
            if !matches!(device, Device::Insufflator | Device::Light) {
                return Err(("device".into(), format!("{} has no island interlock link; insufflator or light", device.name())));
            }
            whole("ms", *ms, 1, 600_000)
        }
        Action::ControlLinkDrop { ms, .. } | Action::PedalHold { ms } => whole("ms", *ms, 1, 600_000),
        Action::CpuLoad { threads, ms } => {
            whole("threads", u64::from(*threads), 1, 64)?;
            whole("ms", *ms, 1, 3_600_000)
        }
        Action::Setpoint { pressure_mmhg, flow_lpm, intensity_pct } => {
            if pressure_mmhg.is_none() && flow_lpm.is_none() && intensity_pct.is_none() {
                return Err((
                    "pressure_mmhg".into(),
                    "a setpoint step names at least one of pressure_mmhg, flow_lpm, intensity_pct".into(),
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_invariant(inv: &Invariant) -> Result<(), (String, String)> {
    match inv {
        Invariant::PressureBelow { limit_mmhg: Some(l), .. } | Invariant::PressureAbove { limit_mmhg: Some(l), .. } => {
            within("limit_mmhg", *l, -10.0, 200.0, "mmHg")
        }
        Invariant::ActorsBack { within_s } => within("within_s", *within_s, 0.0, 86_400.0, "s"),
        Invariant::AlarmClearedBy { by_s, .. } => within("by_s", *by_s, 0.0, 86_400.0, "s"),
        Invariant::Restarted { actor, .. } => check_actor(actor),
        Invariant::DisplayGap { max_intervals, except } => {
            if !(max_intervals.is_finite() && *max_intervals >= 1.0) {
                return Err(("max_intervals".into(), format!("{max_intervals} must be >= 1")));
            }
            for (i, [a, b]) in except.iter().enumerate() {
                if !(a.is_finite() && b.is_finite() && a <= b) {
                    return Err((format!("except[{i}]"), format!("[{a}, {b}] is not a window")));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, ScenarioFileError> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/scenarios/x.toml");
        Scenario::parse(text, &dir)
    }

    const HEAD: &str = "name = \"t\"\ndescription = \"d\"\nduration_s = 5.0\n[tower]\nconfig = \"../tower.toml\"\n";
    const INV: &str = "[[invariant]]\ncheck = \"pressure_below\"\nfor_ms = 100\n";

    #[test]
    fn a_good_file_parses_with_repeats_expanded_in_time_order() {
        let text = format!(
            "{HEAD}[[timeline]]\nat_s = 3.0\naction = \"pedal_press\"\n[[timeline]]\nat_s = 1.0\nevery_s = 1.0\ncount = 3\naction = \"actor_panic\"\nactor = \"inference\"\n{INV}"
        );
        let s = parse(&text).unwrap();
        let times: Vec<f64> = s.timeline.iter().map(|t| t.at_s).collect();
        assert_eq!(times, vec![1.0, 2.0, 3.0, 3.0]);
        assert_eq!(s.timeline[0].action, Action::ActorPanic { actor: "inference".into() });
    }

    #[test]
    fn errors_name_the_step_and_field() {
        let cases = [
            (format!("{HEAD}[[timeline]]\nat_s = 1.0\naction = \"actor_panic\"\nactor = \"nobody\"\n{INV}"), "timeline[0].actor"),
            (
                format!(
                    "{HEAD}[[timeline]]\nat_s = 1.0\naction = \"sim_fault\"\ndevice = \"toaster\"\nfault = {{ kind = \"hang\" }}\n{INV}"
                ),
                "timeline[0].device",
            ),
            (format!("{HEAD}[[timeline]]\nat_s = 9.0\naction = \"pedal_press\"\n{INV}"), "timeline[0].at_s"),
            (format!("{HEAD}[[timeline]]\nat_s = 1.0\naction = \"pedal_press\"\ncolour = 3\n{INV}"), "timeline[0]"),
            (format!("{HEAD}[[invariant]]\ncheck = \"pressure_below\"\nfor_ms = \"soon\"\n"), "invariant[0].for_ms"),
            (format!("{HEAD}[[invariant]]\ncheck = \"teleport\"\n"), "invariant[0]"),
            (HEAD.to_string(), "invariant"),
            (format!("{HEAD}[[timeline]]\nat_s = 1.0\naction = \"broker_down\"\n{INV}"), "broker"),
            (format!("{}{INV}", HEAD.replace("../tower.toml", "../nope.toml")), "tower.config[0]"),
            (format!("{}{INV}", HEAD.replace("duration_s = 5.0", "duration_s = -1.0")), "duration_s"),
            // Issue 14: these aborted on 4.8 GB, or hung the run on an infinite plot axis.
            (format!("{HEAD}[[timeline]]\nat_s = 0.0\nevery_s = 1e-9\ncount = 1e8\naction = \"pedal_press\"\n{INV}"), "timeline[0].count"),
            (format!("{HEAD}[[timeline]]\nat_s = 1.0\naction = \"inject_pressure\"\nmmhg = 1.7e308\n{INV}"), "timeline[0].mmhg"),
            (format!("{HEAD}[[timeline]]\nat_s = 1.0\naction = \"set_led_temp\"\ncelsius = nan\n{INV}"), "timeline[0].celsius"),
            (
                format!("{HEAD}[[timeline]]\nat_s = 1.0\naction = \"island_link_drop\"\ndevice = \"pedal\"\nms = 100\n{INV}"),
                "timeline[0].device",
            ),
            (format!("{HEAD}[[timeline]]\nat_s = 1.0\naction = \"cpu_load\"\nthreads = 0\nms = 100\n{INV}"), "timeline[0].threads"),
            (format!("{HEAD}[[invariant]]\ncheck = \"pressure_above\"\nlimit_mmhg = inf\nfor_ms = 0\n"), "invariant[0].limit_mmhg"),
        ];
        for (text, field) in cases {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(&format!(": {field}")), "error {e:?} should name {field}");
            assert!(e.contains("x.toml"), "error {e:?} should name the file");
        }
    }

    #[test]
    fn a_syntax_error_names_the_line() {
        let e = parse("name = \"t\"\nduration_s = = 3\n").unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }
}
