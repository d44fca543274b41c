//! Every MQTT payload, as serde types with a JSON Schema (`endotower
//! mqtt-schema` writes them to `docs/schema/`). JSON, UTF-8, one object per
//! message. Every message carries `v` (the schema version), the tower id and,
//! Sparkplug-style, `seq`: the message count of the current session, reset by
//! each birth, and `bd_seq` on birth and death, so a subscriber can pair a
//! death with the birth it ends.

use crate::events::{Event, EventKind, Severity};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of every payload in this module (also `v1` in the topics).
pub const SCHEMA_VERSION: u32 = 1;

/// One metric of the telemetry samples, as announced in the birth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Metric {
    pub name: String,
    /// `float`, `bool`, `int` or `string`.
    pub datatype: String,
    pub unit: String,
    pub description: String,
}

/// `birth` (retained, QoS 1): published on every connect, before anything else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Birth {
    pub v: u32,
    pub tower: String,
    /// Birth/death sequence: one more on every connect.
    pub bd_seq: u64,
    pub seq: u64,
    pub at_ms: u64,
    /// Software version of the tower.
    pub software: String,
    /// Whether the tower takes remote commands.
    pub remote_control: bool,
    pub sample_hz: f64,
    pub batch_ms: u64,
    /// Every metric of a telemetry sample.
    pub metrics: Vec<Metric>,
    /// Every topic the tower publishes or subscribes to.
    pub topics: Vec<String>,
    /// Journal records still to be (re)published after this birth.
    pub replay_pending: u64,
}

/// `death` (retained, QoS 1): the last will, and published on a clean stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Death {
    pub v: u32,
    pub tower: String,
    /// The `bd_seq` of the birth this death ends.
    pub bd_seq: u64,
    /// `connection_lost` (the will) or `shutdown`.
    pub reason: String,
}

/// What an event is about, for subscribers that route by topic of interest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Alarm,
    /// A safety-island trip (hazard codes `HZ-...` from `safety`).
    Interlock,
    /// Reduced function: AI offline, contained subtree, broker or journal trouble.
    Degradation,
    /// A supervisor restarted a child (or melted down).
    Restart,
    /// A still archived on pedal press.
    Capture,
    /// A command accepted or rejected by the command path.
    Command,
}

impl Category {
    pub fn of(e: &Event) -> Category {
        let degradation =
            matches!(e.code.as_str(), "AI_OFFLINE" | "CONTAINED" | "EMBEDDED_BROKER_DOWN" | "JOURNAL_DISK_FULL" | "JOURNAL_OVERFLOW");
        match e.kind {
            EventKind::SupervisorRestart | EventKind::Meltdown => Category::Restart,
            EventKind::Command => Category::Command,
            EventKind::Capture => Category::Capture,
            EventKind::Degradation => Category::Degradation,
            EventKind::Interlock => Category::Interlock,
            _ if degradation => Category::Degradation,
            _ if e.source == "safety" && e.code.starts_with("HZ-") => Category::Interlock,
            _ => Category::Alarm,
        }
    }
}

/// `events` (QoS 1, journaled): one alarm or event. Replays after an outage
/// repeat the same `id`; subscribers de-duplicate by it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventMsg {
    pub v: u32,
    pub tower: String,
    pub seq: u64,
    /// Unique, stable across replays: `<boot>-<n>`.
    pub id: String,
    /// Journal position: increasing, so subscribers can restore the order.
    pub n: u64,
    pub at_ms: u64,
    pub category: Category,
    pub kind: EventKind,
    pub severity: Severity,
    pub source: String,
    pub code: String,
    pub message: String,
}

/// `commands` (QoS 1, journaled): a remote command and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CommandMsg {
    pub v: u32,
    pub tower: String,
    pub seq: u64,
    pub id: String,
    pub n: u64,
    pub at_ms: u64,
    pub client: String,
    /// The command as received (raw text when it was not JSON).
    pub command: serde_json::Value,
    pub response: Response,
}

/// What a journaled command record holds (the body of a `Stream::Command` record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CommandRecordBody {
    pub client: String,
    pub command: serde_json::Value,
    pub response: Response,
}

/// Outcome of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Applied (or, for a setpoint confirm, applied now).
    Accepted,
    /// A setpoint request: confirm `token` within `expires_in_ms` to apply `apply`.
    ConfirmRequired,
    Rejected,
    /// Commands from this client were dropped unread: over the rate limit
    /// (`reason` says how many). At most one such answer a second per client.
    RateLimited,
}

/// `resp/<client-id>` (QoS 1): the reply to every command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Response {
    pub v: u32,
    pub tower: String,
    /// The `id` of the command, echoed when it had one.
    pub request_id: Option<String>,
    pub status: Status,
    /// Why it was rejected (or what was applied).
    pub reason: Option<String>,
    /// Two-step setpoints: the token to confirm with.
    pub token: Option<String>,
    /// Two-step setpoints: exactly what a confirm will apply.
    pub apply: Option<serde_json::Value>,
    pub expires_in_ms: Option<u64>,
}

/// One telemetry sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Sample {
    pub at_ms: u64,
    pub pressure_mmhg: Option<f64>,
    pub set_pressure_mmhg: f64,
    pub flow_lpm: Option<f64>,
    pub set_flow_lpm: f64,
    pub supply_bar: Option<f64>,
    pub light_set_pct: f64,
    pub light_output_pct: Option<f64>,
    pub led_current_ma: Option<f64>,
    pub led_temp_c: Option<f64>,
    pub tip_temp_c: Option<f64>,
    pub camera_temp_c: Option<f64>,
}

/// Actor and link health, once per batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    /// Link state per device: `connecting`, `connected`, `degraded`, `lost`.
    pub links: std::collections::BTreeMap<String, String>,
    /// `starting`, `online` or `offline`.
    pub ai: String,
    /// The enhancement stage: `disabled` (no video), `off`, `starting`,
    /// `active` or `offline`.
    pub enhancement: String,
    /// Share of the frames shown while the stage was active that were shown
    /// enhanced (deblurred in time), since start.
    pub enhanced_fraction: f32,
    pub safe_state: bool,
    pub active_alarms: usize,
    /// Children of the supervision tree not running now.
    pub children_down: Vec<String>,
    /// Restarts counted by the supervisors since start.
    pub restarts: u64,
    /// Journal records not yet acknowledged by the broker.
    pub journal_unacked: usize,
    /// Journal records lost from memory (only past `memory_records`).
    pub journal_dropped: u64,
    /// Remote commands dropped unread for their client's rate, since start.
    pub commands_rate_limited: u64,
}

/// `telemetry` (QoS 0): samples taken at `sample_hz`, batched every `batch_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TelemetryBatch {
    pub v: u32,
    pub tower: String,
    pub seq: u64,
    pub at_ms: u64,
    pub samples: Vec<Sample>,
    pub health: Health,
    /// Batches dropped since start (outbox full while the broker was away).
    pub dropped_batches: u64,
}

/// `state/<device>` (retained, QoS 1): published on change, at most `state_max_hz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StateMsg {
    pub v: u32,
    pub tower: String,
    pub seq: u64,
    pub at_ms: u64,
    pub device: String,
    /// The device's status: `docs/schema/state-<device>.json`.
    pub state: serde_json::Value,
}

/// `state/tower`'s `state`: setpoints, safe state and the active alarms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TowerState {
    pub safe_state: bool,
    pub set_pressure_mmhg: f64,
    pub set_flow_lpm: f64,
    pub intensity_pct: f64,
    pub remote_control: bool,
    pub active_alarms: Vec<ActiveAlarm>,
}

/// An alarm that is active now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActiveAlarm {
    /// `<source>/<code>`, what `ack_alarm` takes.
    pub key: String,
    pub severity: Severity,
    pub message: String,
    pub acknowledged: bool,
}

/// One detected lesion, summarised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AiFinding {
    pub class_name: String,
    pub score: f32,
}

/// `ai` (QoS 0): a summary of each AI result; never an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AiMsg {
    pub v: u32,
    pub tower: String,
    pub seq: u64,
    pub at_ms: u64,
    pub frame_seq: u64,
    /// `pedal`, `freeze` or `auto`.
    pub reason: String,
    pub findings: Vec<AiFinding>,
    pub high_risk: bool,
    /// The model is a demonstration (its model card says `status = "demo"`).
    pub demo: bool,
    /// Why lesion alarms are off for this exam (the procedure is not on the
    /// model card, or unknown); absent when they are on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarms_off: Option<String>,
    /// What the analysed frame showed: `full`, `circle` (with `x`, `y`, `r`,
    /// `score` in frame pixels) or `no_image`.
    pub scene: crate::video::content_area::Scene,
}

/// `cmd/<client-id>`: a remote command: any command of the command path
/// ([`crate::commands::Command`], the same wire names), or the second step of
/// a setpoint change. Unknown fields are rejected.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteCommand {
    /// Step 2 of a setpoint change: apply what the request's reply announced.
    Confirm { token: String },
    /// Any other command; setpoints are step 1 (answered with a token).
    Tower(crate::commands::Command),
}

/// The confirmation step, for its wire form and schema.
#[derive(Deserialize, JsonSchema)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
enum ConfirmStep {
    /// Step 2 of a setpoint change: apply what the request's reply announced.
    Confirm { token: String },
}

impl RemoteCommand {
    /// Parse a command object (without its `id`).
    pub fn from_value(v: serde_json::Value) -> Result<RemoteCommand, String> {
        if v.get("command").and_then(serde_json::Value::as_str) == Some("confirm") {
            let ConfirmStep::Confirm { token } = serde_json::from_value(v).map_err(|e| e.to_string())?;
            return Ok(RemoteCommand::Confirm { token });
        }
        serde_json::from_value(v).map(RemoteCommand::Tower).map_err(|e| {
            let e = e.to_string();
            // The command path's list of variants lacks the remote-only step.
            match e.find("expected one of") {
                Some(_) => format!("{e} (or `confirm`)"),
                None => e,
            }
        })
    }
}

/// The schemas `endotower mqtt-schema` writes, by file name.
pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    fn s<T: JsonSchema>() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(T)).unwrap_or(serde_json::Value::Null)
    }
    vec![
        ("birth.json", s::<Birth>()),
        ("death.json", s::<Death>()),
        ("event.json", s::<EventMsg>()),
        ("command-record.json", s::<CommandMsg>()),
        ("telemetry.json", s::<TelemetryBatch>()),
        ("state.json", s::<StateMsg>()),
        ("state-insufflator.json", s::<crate::device_status::InsufflatorStatus>()),
        ("state-light.json", s::<crate::device_status::LightStatus>()),
        ("state-camera.json", s::<crate::device_status::CameraStatus>()),
        ("state-pedal.json", s::<crate::device_status::PedalStatus>()),
        ("state-ai.json", s::<crate::video::ai_state::AiStatus>()),
        ("state-tower.json", s::<TowerState>()),
        ("ai.json", s::<AiMsg>()),
        ("cmd.json", command_schema()),
        ("resp.json", s::<Response>()),
    ]
}

/// The command schema: the command path's tagged commands, the confirmation
/// step, and the optional request `id`.
fn command_schema() -> serde_json::Value {
    let mut v = serde_json::to_value(schemars::schema_for!(crate::commands::Command)).unwrap_or(serde_json::Value::Null);
    let confirm = serde_json::to_value(schemars::schema_for!(ConfirmStep)).unwrap_or(serde_json::Value::Null);
    let step = confirm.get("oneOf").and_then(|o| o.get(0)).cloned();
    if let (Some(variants), Some(step)) = (v.get_mut("oneOf").and_then(serde_json::Value::as_array_mut), step) {
        variants.push(step);
    }
    if let Some(o) = v.as_object_mut() {
        o.insert("title".into(), serde_json::Value::String("RemoteCommand".into()));
        o.insert(
            "description".into(),
            serde_json::Value::String(
                "A remote command. Any command may also carry \"id\": a string of the client's choice, echoed in the reply as request_id."
                    .into(),
            ),
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, source: &str, code: &str) -> Event {
        Event { seq: 1, at_ms: 0, kind, severity: Severity::High, source: source.into(), code: code.into(), message: String::new() }
    }

    #[test]
    fn events_are_categorised_for_subscribers() {
        assert_eq!(Category::of(&ev(EventKind::AlarmRaised, "safety", "HZ-001")), Category::Interlock);
        assert_eq!(Category::of(&ev(EventKind::AlarmRaised, "inference", "AI_OFFLINE")), Category::Degradation);
        assert_eq!(Category::of(&ev(EventKind::SupervisorRestart, "supervisor/devices", "RESTART")), Category::Restart);
        assert_eq!(Category::of(&ev(EventKind::Capture, "archive", "CAPTURED")), Category::Capture);
        assert_eq!(Category::of(&ev(EventKind::AlarmRaised, "insufflator", "SUPPLY_LOW")), Category::Alarm);
    }

    #[test]
    fn every_schema_is_an_object_schema() {
        for (name, s) in schemas() {
            assert!(s.get("$schema").is_some() || s.get("type").is_some() || s.get("oneOf").is_some(), "{name}: {s}");
        }
    }
}
