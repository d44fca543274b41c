//! The single validated command path. The HMI, remote commands and the
//! start-up setpoints from config all come through here: each command is
//! checked against the operator limits, logged, published as an event and
//! answered. Only this path writes the setpoints the device actors and the
//! safety island read.

use crate::config::LimitsConfig;
use crate::events::{EventBus, EventKind, Severity};
use crate::setpoints::Setpoints;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    SetPressure { mmhg: f64 },
    SetFlow { lpm: f64 },
    SetIntensity { pct: f64 },
    AckAlarm { key: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandSource {
    Config,
    Hmi,
    Remote { client: String },
}

impl fmt::Display for CommandSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandSource::Config => f.write_str("config"),
            CommandSource::Hmi => f.write_str("hmi"),
            CommandSource::Remote { client } => write!(f, "remote:{client}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize)]
pub enum Rejection {
    #[error("{field} = {value} is outside {min} ..= {max} {unit}")]
    OutOfRange { field: &'static str, value: f64, min: f64, max: f64, unit: &'static str },
    #[error("the tower is in its safe state; setpoints are locked until restart")]
    SafeState,
    #[error("no active alarm {0}")]
    UnknownAlarm(String),
}

/// What was applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied {
    pub description: String,
}

fn range(field: &'static str, value: f64, min: f64, max: f64, unit: &'static str) -> Result<(), Rejection> {
    if value.is_finite() && value >= min && value <= max {
        Ok(())
    } else {
        Err(Rejection::OutOfRange { field, value, min, max, unit })
    }
}

/// Check a setpoint command against the limits (no side effects).
pub fn validate(cmd: &Command, limits: &LimitsConfig) -> Result<(), Rejection> {
    match cmd {
        Command::SetPressure { mmhg } => range("set_pressure", *mmhg, limits.min_set_pressure_mmhg, limits.max_set_pressure_mmhg, "mmHg"),
        Command::SetFlow { lpm } => range("set_flow", *lpm, 0.1, limits.max_flow_lpm, "L/min"),
        Command::SetIntensity { pct } => range("intensity", *pct, 0.0, limits.max_intensity_pct, "%"),
        Command::AckAlarm { .. } => Ok(()),
    }
}

/// Validate and apply a command to the shared setpoints.
pub fn apply(
    cmd: &Command,
    source: &CommandSource,
    limits: &LimitsConfig,
    setpoints: &Setpoints,
    events: &EventBus,
) -> Result<Applied, Rejection> {
    let result = validate(cmd, limits).and_then(|()| {
        if setpoints.safe_state() && !matches!(cmd, Command::AckAlarm { .. }) {
            return Err(Rejection::SafeState);
        }
        Ok(match cmd {
            Command::SetPressure { mmhg } => {
                let old = setpoints.pressure_mmhg();
                setpoints.set_pressure_mmhg(*mmhg);
                format!("set pressure {old:.1} -> {mmhg:.1} mmHg (P2 = {:.1} mmHg)", crate::config::relief_threshold(*mmhg))
            }
            Command::SetFlow { lpm } => {
                let old = setpoints.flow_lpm();
                setpoints.set_flow_lpm(*lpm);
                format!("set flow {old:.1} -> {lpm:.1} L/min")
            }
            Command::SetIntensity { pct } => {
                let old = setpoints.intensity_pct();
                setpoints.set_intensity_pct(*pct);
                format!("light intensity {old:.0} -> {pct:.0} %")
            }
            Command::AckAlarm { key } => {
                events.acknowledge(key).ok_or_else(|| Rejection::UnknownAlarm(key.clone()))?;
                format!("acknowledged {key}")
            }
        })
    });
    match &result {
        Ok(d) => {
            events.event(EventKind::Command, Severity::Info, "commands", "ACCEPTED", format!("{source}: {d}"));
        }
        Err(r) => {
            events.event(EventKind::Command, Severity::Low, "commands", "REJECTED", format!("{source}: {cmd:?} rejected: {r}"));
        }
    }
    result.map(|description| Applied { description })
}

pub enum CommandMsg {
    Submit { source: CommandSource, command: Command, reply: RpcReplyPort<Result<Applied, Rejection>> },
}

pub struct CommandArgs {
    pub limits: LimitsConfig,
    pub setpoints: Setpoints,
    pub events: EventBus,
}

/// The command path as an actor, so HMI and remote commands are serialised.
pub struct CommandActor;

impl Actor for CommandActor {
    type Msg = CommandMsg;
    type State = CommandArgs;
    type Arguments = CommandArgs;

    async fn pre_start(&self, _myself: ActorRef<Self::Msg>, args: CommandArgs) -> Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(&self, _myself: ActorRef<Self::Msg>, msg: Self::Msg, s: &mut Self::State) -> Result<(), ActorProcessingErr> {
        match msg {
            CommandMsg::Submit { source, command, reply } => {
                let r = apply(&command, &source, &s.limits, &s.setpoints, &s.events);
                let _ = reply.send(r);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setpoints_outside_limits_are_rejected_and_leave_the_setpoint_alone() {
        let sp = Setpoints::new(12.0, 10.0, 80.0);
        let ev = EventBus::new(16);
        let limits = LimitsConfig::default();
        let r = apply(&Command::SetPressure { mmhg: 40.0 }, &CommandSource::Hmi, &limits, &sp, &ev);
        assert!(matches!(r, Err(Rejection::OutOfRange { field: "set_pressure", .. })), "{r:?}");
        assert_eq!(sp.pressure_mmhg(), 12.0);
        let r = apply(&Command::SetPressure { mmhg: f64::NAN }, &CommandSource::Hmi, &limits, &sp, &ev);
        assert!(r.is_err());
        apply(&Command::SetPressure { mmhg: 15.0 }, &CommandSource::Hmi, &limits, &sp, &ev).unwrap();
        assert_eq!(sp.pressure_mmhg(), 15.0);
    }

    #[test]
    fn safe_state_locks_setpoints_but_not_acknowledgement() {
        let sp = Setpoints::new(12.0, 10.0, 80.0);
        let ev = EventBus::new(16);
        ev.raise("safety", "HZ-008", Severity::High, "x");
        sp.enter_safe_state();
        let limits = LimitsConfig::default();
        assert_eq!(apply(&Command::SetFlow { lpm: 5.0 }, &CommandSource::Hmi, &limits, &sp, &ev), Err(Rejection::SafeState));
        assert!(apply(&Command::AckAlarm { key: "safety/HZ-008".into() }, &CommandSource::Hmi, &limits, &sp, &ev).is_ok());
    }

    #[test]
    fn commands_parse_from_json_and_unknown_fields_are_errors() {
        let c: Command = serde_json::from_str(r#"{"command":"set_pressure","mmhg":14}"#).unwrap();
        assert_eq!(c, Command::SetPressure { mmhg: 14.0 });
        assert!(serde_json::from_str::<Command>(r#"{"command":"set_pressure","mmhg":14,"x":1}"#).is_err());
    }
}
