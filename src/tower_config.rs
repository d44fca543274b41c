//! The whole-tower configuration: `conf/tower.toml` (or `--config FILE`) plus
//! `ENDOTOWER__SECTION__KEY` environment overrides, deserialised with the exact
//! path of any bad field, then validated section by section.

use crate::video_config::VideoConfig;
use endotower_actors::camera::CameraConfig;
use endotower_actors::config::{
    check_int, ConfigError, InsufflatorConfig, LightConfig, LimitsConfig, LinkConfig, SafetyConfig, SimpleDeviceConfig, Transport,
};
use endotower_actors::supervisor::{ChildPolicy, MeltdownAction, RestartType, SupervisorPolicy};
use endotower_actors::telemetry::config::TelemetryConfig;
use endotower_sim::SimConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Default config file, relative to the working directory.
pub const DEFAULT_CONFIG: &str = "conf/tower.toml";

/// The tower's own directory, for a start outside it: `$ENDOTOWER_HOME`
/// when it holds [`DEFAULT_CONFIG`], else the nearest ancestor of the
/// executable that does (a checkout's `target/release/endotower` finds the
/// checkout).
pub fn tower_home() -> Option<std::path::PathBuf> {
    if let Some(home) = std::env::var_os("ENDOTOWER_HOME").map(std::path::PathBuf::from) {
        if home.join(DEFAULT_CONFIG).is_file() {
            return Some(home);
        }
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors().skip(1).find(|d| d.join(DEFAULT_CONFIG).is_file()).map(Path::to_path_buf)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TowerSection {
    /// Tower id; also the namespace of its actor names.
    pub id: String,
    /// Interval of the status lines in the log.
    pub status_interval_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesConfig {
    pub insufflator: InsufflatorConfig,
    pub light: LightConfig,
    pub camera: CameraConfig,
    pub pedal: SimpleDeviceConfig,
}

/// Per-child policies, one field per child of the tree (see `tree.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChildPolicies {
    pub safety: ChildPolicy,
    pub devices: ChildPolicy,
    pub commands: ChildPolicy,
    pub status: ChildPolicy,
    pub insufflator: ChildPolicy,
    pub light: ChildPolicy,
    pub camera: ChildPolicy,
    pub pedal: ChildPolicy,
    pub video: ChildPolicy,
    pub capture: ChildPolicy,
    pub display: ChildPolicy,
    pub analysis: ChildPolicy,
    pub selector: ChildPolicy,
    pub inference: ChildPolicy,
    pub archive: ChildPolicy,
    pub enhance: ChildPolicy,
    #[serde(default = "default_telemetry_policy")]
    pub telemetry: ChildPolicy,
    #[serde(default = "default_telemetry_policy")]
    pub broker: ChildPolicy,
    #[serde(default = "default_telemetry_policy")]
    pub pacs: ChildPolicy,
    #[serde(default = "default_telemetry_policy")]
    pub worklist: ChildPolicy,
}

fn default_telemetry_policy() -> ChildPolicy {
    ChildPolicy {
        restart: RestartType::Permanent,
        backoff_initial_ms: 100,
        backoff_max_ms: 1000,
        hang_timeout_ms: None,
        start_timeout_ms: 10_000,
        down_alarm_ms: None,
    }
}

impl ChildPolicies {
    /// The policy of the child named `name` in [`crate::tree::TREE`].
    pub fn get(&self, name: &str) -> Option<&ChildPolicy> {
        Some(match name {
            "safety" => &self.safety,
            "devices" => &self.devices,
            "commands" => &self.commands,
            "status" => &self.status,
            "insufflator" => &self.insufflator,
            "light" => &self.light,
            "camera" => &self.camera,
            "pedal" => &self.pedal,
            "video" => &self.video,
            "capture" => &self.capture,
            "display" => &self.display,
            "analysis" => &self.analysis,
            "selector" => &self.selector,
            "inference" => &self.inference,
            "archive" => &self.archive,
            "enhance" => &self.enhance,
            "telemetry" => &self.telemetry,
            "broker" => &self.broker,
            "pacs" => &self.pacs,
            "worklist" => &self.worklist,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisionConfig {
    pub root: SupervisorPolicy,
    pub devices: SupervisorPolicy,
    pub video: SupervisorPolicy,
    pub analysis: SupervisorPolicy,
    pub children: ChildPolicies,
}

impl SupervisionConfig {
    /// The policy of the supervisor named `name` in [`crate::tree::TREE`].
    pub fn supervisor(&self, name: &str) -> Option<&SupervisorPolicy> {
        Some(match name {
            "root" => &self.root,
            "devices" => &self.devices,
            "video" => &self.video,
            "analysis" => &self.analysis,
            _ => return None,
        })
    }

    /// Every policy on its own, then each supervisor against each of its
    /// children (a crash loop must be able to reach the intensity limit),
    /// and the root's meltdown action.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (sup, children) in crate::tree::TREE {
            let path = format!("supervision.{sup}");
            let policy = self.supervisor(sup).ok_or_else(|| ConfigError::new("supervision", sup, "a supervisor of the tree"))?;
            policy.validate(&path)?;
            for child in *children {
                let child_path = format!("supervision.children.{child}");
                let p = self.children.get(child).ok_or_else(|| ConfigError::new(&child_path, "missing", "a child of the tree"))?;
                p.validate(&child_path)?;
                policy.check_reachable(&path, &child_path, p)?;
            }
        }
        if !matches!(self.root.meltdown, MeltdownAction::Contain | MeltdownAction::SafeStateAndContain) {
            return Err(ConfigError::new(
                "supervision.root.meltdown",
                format!("{:?}", self.root.meltdown),
                "contain or safe_state_and_contain: the root has no parent, and failing would stop the live picture and telemetry",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSection {
    /// Start the device simulators in-process, listening on the devices'
    /// configured TCP addresses (port 0 picks free ports).
    pub embedded: bool,
    #[serde(default)]
    pub model: SimConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TowerConfig {
    pub tower: TowerSection,
    pub limits: LimitsConfig,
    pub supervision: SupervisionConfig,
    pub devices: DevicesConfig,
    pub safety: SafetyConfig,
    pub video: VideoConfig,
    pub sim: SimSection,
    /// Remote telemetry and control over MQTT (off when the section is absent).
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Pedal stills to a PACS as DICOM (off when the section is absent).
    #[serde(default)]
    pub pacs: Option<endotower_actors::pacs::sender::PacsConfig>,
    /// Exam info from a Modality Worklist (off when the section is absent).
    #[serde(default)]
    pub worklist: Option<endotower_actors::pacs::worklist::WorklistConfig>,
}

/// The island reaches a device where the control plane does unless
/// `[safety.<name>]` names a line of its own: `transport` and `unit` missing
/// there are taken from `[devices.<name>.link]`, so a device's address is
/// written (and overridden from the environment) in one place.
fn island_links_default_to_devices(v: &mut serde_json::Value) {
    for dev in endotower_sim::Device::ALL.map(endotower_sim::Device::name) {
        let Some(link) = v.pointer(&format!("/devices/{dev}/link")).cloned() else { continue };
        let Some(island) = v.pointer_mut(&format!("/safety/{dev}")).and_then(serde_json::Value::as_object_mut) else { continue };
        for key in ["transport", "unit"] {
            if let (false, Some(val)) = (island.contains_key(key), link.get(key)) {
                island.insert(key.to_string(), val.clone());
            }
        }
    }
}

/// Config keys whose environment value is a comma-separated list, and
/// whether its elements are numbers. Every other key takes one value (a
/// number, a bool or a string); tables are reached key by key.
pub const ENV_LIST_KEYS: &[(&str, bool)] = &[
    ("telemetry.remote.allowed_clients", false),
    ("video.inference.high_risk_classes", false),
    ("video.inference.detector.classes", false),
    ("video.enhance.sites", false),
    ("safety.pressure_span_mmhg", true),
    ("safety.temperature_span_c", true),
    ("video.inference.detector.mean", true),
    ("video.inference.detector.std", true),
];

/// The environment gives list elements as strings: numbers where the key
/// wants numbers (an element that is not one stays a string, and the field
/// then names itself in the error).
fn numbers_in_env_lists(v: &mut serde_json::Value) {
    for (key, numeric) in ENV_LIST_KEYS {
        if !numeric {
            continue;
        }
        let pointer = format!("/{}", key.replace('.', "/"));
        if let Some(serde_json::Value::Array(items)) = v.pointer_mut(&pointer) {
            for item in items.iter_mut() {
                if let Some(n) = item.as_str().and_then(|s| s.trim().parse::<f64>().ok()).and_then(serde_json::Number::from_f64) {
                    *item = serde_json::Value::Number(n);
                }
            }
        }
    }
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigLoadError {
    #[error("cannot read config {file}: {message}")]
    Read { file: String, message: String },
    #[error("config error: `{path}`: {message}")]
    Field { path: String, message: String },
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

impl TowerConfig {
    /// Every device link, control and safety, on 127.0.0.1 port 0: the
    /// simulators bind free ports and the links follow them (tests and
    /// scenarios, so runs never clash over fixed ports).
    pub fn use_free_loopback_ports(&mut self) {
        let any = || Transport::Tcp { addr: "127.0.0.1:0".into() };
        let d = &mut self.devices;
        for l in [&mut d.insufflator.link, &mut d.light.link, &mut d.camera.link, &mut d.pedal.link] {
            l.transport = any();
        }
        let s = &mut self.safety;
        for l in [&mut s.insufflator, &mut s.light, &mut s.camera, &mut s.pedal] {
            l.transport = any();
        }
    }

    /// Load a file plus `ENDOTOWER__…` environment overrides. Lists are
    /// comma-separated (`ENDOTOWER__TELEMETRY__REMOTE__ALLOWED_CLIENTS=hmi-1,hmi-2`,
    /// `ENDOTOWER__SAFETY__PRESSURE_SPAN_MMHG=-10,80`); see [`ENV_LIST_KEYS`].
    pub fn load(file: &Path) -> Result<Self, ConfigLoadError> {
        let shown = file.display().to_string();
        if !file.is_file() {
            return Err(ConfigLoadError::Read { file: shown, message: "no such file".into() });
        }
        let mut env =
            config::Environment::with_prefix("ENDOTOWER").prefix_separator("__").separator("__").try_parsing(true).list_separator(",");
        for (key, _) in ENV_LIST_KEYS {
            env = env.with_list_parse_key(key);
        }
        let raw = config::Config::builder()
            .add_source(config::File::from(file).format(config::FileFormat::Toml))
            .add_source(env)
            .build()
            .map_err(|e| ConfigLoadError::Read { file: shown.clone(), message: e.to_string() })?;
        // Through serde_json so every error carries the exact field path.
        let mut value: serde_json::Value =
            raw.try_deserialize().map_err(|e| ConfigLoadError::Read { file: shown, message: e.to_string() })?;
        numbers_in_env_lists(&mut value);
        Self::from_value(value)
    }

    /// Parse from a TOML string (tests).
    pub fn from_toml(text: &str) -> Result<Self, ConfigLoadError> {
        let raw = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .map_err(|e| ConfigLoadError::Read { file: "<string>".into(), message: e.to_string() })?;
        let value: serde_json::Value =
            raw.try_deserialize().map_err(|e| ConfigLoadError::Read { file: "<string>".into(), message: e.to_string() })?;
        Self::from_value(value)
    }

    fn from_value(mut value: serde_json::Value) -> Result<Self, ConfigLoadError> {
        island_links_default_to_devices(&mut value);
        let mut cfg: TowerConfig = serde_path_to_error::deserialize(value)
            .map_err(|e| ConfigLoadError::Field { path: e.path().to_string(), message: e.into_inner().to_string() })?;
        cfg.apply_model_card()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The detector's model card may carry its own contract (a
    /// bring-your-own detector): it replaces `[video.inference.detector]`.
    pub fn apply_model_card(&mut self) -> Result<(), ConfigError> {
        if !self.video.enabled {
            return Ok(());
        }
        let inf = &mut self.video.inference;
        let model = inf.detector_model.clone();
        inf.apply_card()
            .map_err(|e| ConfigError::new("video.inference.detector_model", format!("{model:?}"), format!("a readable model card: {e}")))
    }

    /// One master per serial line. The island shares a line among its own
    /// devices (one request at a time), but a line the island uses cannot
    /// also carry a device actor's requests, nor can two device actors share
    /// one: two masters' frames would collide on the wire.
    fn check_serial_lines(&self) -> Result<(), ConfigError> {
        let d = &self.devices;
        let s = &self.safety;
        let control =
            [("insufflator", &d.insufflator.link), ("light", &d.light.link), ("camera", &d.camera.link), ("pedal", &d.pedal.link)];
        let island = [("insufflator", &s.insufflator), ("light", &s.light), ("camera", &s.camera), ("pedal", &s.pedal)];
        let rtu = |l: &LinkConfig| match &l.transport {
            Transport::Rtu { path, .. } => Some(path.clone()),
            Transport::Tcp { .. } => None,
        };
        for (i, (name, link)) in control.iter().enumerate() {
            let Some(path) = rtu(link) else { continue };
            if let Some((other, _)) = island.iter().find(|(_, l)| rtu(l).as_ref() == Some(&path)) {
                return Err(ConfigError::new(
                    format!("devices.{name}.link.transport.path"),
                    format!("{path:?}"),
                    format!("a serial line of its own: safety.{other} uses it, and one line has one master (give the island its own line)"),
                ));
            }
            if let Some((other, _)) = control[..i].iter().find(|(_, l)| rtu(l).as_ref() == Some(&path)) {
                return Err(ConfigError::new(
                    format!("devices.{name}.link.transport.path"),
                    format!("{path:?}"),
                    format!("a serial line of its own: devices.{other}.link uses it, and one line has one master"),
                ));
            }
        }
        Ok(())
    }

    /// Semantic checks, each naming its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tower.id.is_empty() || !self.tower.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(ConfigError::new("tower.id", format!("{:?}", self.tower.id), "a non-empty id of letters, digits, '-' or '_'"));
        }
        check_int("tower.status_interval_ms", self.tower.status_interval_ms, 50, 3_600_000, "ms")?;
        self.limits.validate("limits")?;
        self.supervision.validate()?;
        if let Some(hang) = self.supervision.children.status.hang_timeout_ms {
            // The status actor beats once per status line.
            if hang <= self.tower.status_interval_ms {
                return Err(ConfigError::new(
                    "supervision.children.status.hang_timeout_ms",
                    hang,
                    &format!(
                        "more than tower.status_interval_ms ({} ms): the status actor beats once per line",
                        self.tower.status_interval_ms
                    ),
                ));
            }
        }
        self.devices.insufflator.validate("devices.insufflator", &self.limits)?;
        self.devices.light.validate("devices.light", &self.limits)?;
        self.devices.camera.validate("devices.camera")?;
        self.devices.pedal.validate("devices.pedal")?;
        self.safety.validate("safety")?;
        self.check_serial_lines()?;
        self.video.validate("video")?;
        if self.video.enabled && self.video.realtime_priority && !self.safety.realtime_priority {
            return Err(ConfigError::new(
                "video.realtime_priority",
                "true",
                "false while safety.realtime_priority is false (a real-time video thread would outrank the safety island)",
            ));
        }
        self.telemetry.validate("telemetry")?;
        if let Some(p) = &self.pacs {
            p.validate("pacs")?;
            if !self.video.enabled {
                return Err(ConfigError::new("pacs", "a [pacs] section", "video.enabled = true (stills come from the video path)"));
            }
        }
        if let Some(w) = &self.worklist {
            w.validate("worklist")?;
        }
        self.sim.model.validate().map_err(|e| ConfigError::new("sim.model", e.to_string(), "a valid simulator model"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_text() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/tower.toml")).unwrap()
    }

    #[test]
    fn shipped_config_is_valid() {
        TowerConfig::from_toml(&default_text()).unwrap();
    }

    #[test]
    fn wrong_type_names_the_field_path() {
        let t = default_text().replace("set_pressure_mmhg = 12.0", "set_pressure_mmhg = \"twelve\"");
        let e = TowerConfig::from_toml(&t).unwrap_err().to_string();
        assert!(e.contains("devices.insufflator.set_pressure_mmhg"), "{e}");
    }

    #[test]
    fn unknown_field_is_an_error_naming_it() {
        let t = default_text().replace("set_pressure_mmhg = 12.0", "set_pressure_mmhg = 12.0\nset_presure_mmhg = 12.0");
        let e = TowerConfig::from_toml(&t).unwrap_err().to_string();
        assert!(e.contains("set_presure_mmhg"), "{e}");
    }

    #[test]
    fn real_time_video_threads_need_a_real_time_safety_island() {
        let t = default_text()
            .replace("light_safe_cap_pct = 30\nrealtime_priority = true", "light_safe_cap_pct = 30\nrealtime_priority = false");
        let e = TowerConfig::from_toml(&t).unwrap_err().to_string();
        assert!(e.contains("`video.realtime_priority` = true"), "{e}");
        assert!(e.contains("safety.realtime_priority is false"), "{e}");
        let both_off = t.replacen("realtime_priority = true", "realtime_priority = false", 1);
        let cfg = TowerConfig::from_toml(&both_off).unwrap();
        assert!(!cfg.safety.realtime_priority && !cfg.video.realtime_priority);
    }

    #[test]
    fn telemetry_errors_name_the_field() {
        let t = default_text().replace("sample_hz = 10.0", "sample_hz = 0.0");
        let e = TowerConfig::from_toml(&t).unwrap_err().to_string();
        assert!(e.contains("`telemetry.sample_hz` = 0"), "{e}");
        let t = default_text().replace("[telemetry.remote]\nenabled = false", "[telemetry.remote]\nenabled = true");
        let e = TowerConfig::from_toml(&t).unwrap_err().to_string();
        assert!(e.contains("telemetry.remote.allowed_clients"), "{e}");
        let t = default_text().replace("kind = \"embedded\"", "kind = \"embeded\"");
        let e = TowerConfig::from_toml(&t).unwrap_err().to_string();
        assert!(e.contains("telemetry.broker") && e.contains("embeded"), "{e}");
    }

    #[test]
    fn shipped_config_runs_telemetry_on_the_embedded_broker_with_remote_control_off() {
        let c = TowerConfig::from_toml(&default_text()).unwrap();
        assert!(c.telemetry.enabled);
        assert_eq!(c.telemetry.broker.kind, endotower_actors::telemetry::config::BrokerKind::Embedded);
        assert!(!c.telemetry.remote.enabled);
    }

    #[test]
    fn out_of_limits_setpoint_names_field_value_and_range() {
        let t = default_text().replace("set_pressure_mmhg = 12.0", "set_pressure_mmhg = 40.0");
        let e = TowerConfig::from_toml(&t).unwrap_err().to_string();
        assert!(e.contains("`devices.insufflator.set_pressure_mmhg` = 40"), "{e}");
        assert!(e.contains("3 ..= 25"), "{e}");
    }
}
