//! The single validated command path. The HMI, remote commands and the
//! start-up setpoints from config all come through here: each command is
//! checked against the operator limits, logged, published as an event and
//! answered. Only this path writes the setpoints the device actors and the
//! safety island read.

use crate::config::LimitsConfig;
use crate::events::{EventBus, EventKind, Severity};
use crate::setpoints::Setpoints;
use crate::video::archive::ExamInfo;
use crate::video::model_card::Procedure;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A command, whoever sends it (HMI, config, remote). The one definition:
/// remote commands (`telemetry::payloads::RemoteCommand`) are these plus the
/// confirmation step, with the same wire names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Set pressure, mmHg (remote: step 1 of a setpoint change).
    SetPressure { mmhg: f64 },
    /// Set flow, L/min (remote: step 1 of a setpoint change).
    SetFlow { lpm: f64 },
    /// Light intensity, % (remote: step 1 of a setpoint change).
    SetIntensity { pct: f64 },
    /// Acknowledge an active alarm by key (`source/CODE`).
    AckAlarm { key: String },
    /// Exam info for the screen and archive (report terminal).
    #[serde(rename = "exam_info", alias = "set_exam")]
    SetExam {
        number: String,
        sex: String,
        age: u32,
        /// `colonoscopy`, `gastroscopy` or `laparoscopy`: lesion alarms only
        /// where the loaded model is valid for it. Absent: unspecified.
        #[serde(default)]
        procedure: Procedure,
    },
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
    #[error("exam {field}: {reason}")]
    InvalidExam { field: &'static str, reason: String },
    #[error("this command path has no exam channel")]
    NoExamChannel,
    /// The command waited past its deadline (the submitter had given up);
    /// it was not applied.
    #[error("not applied: the command waited {waited_ms} ms, past its deadline (the submitter had stopped waiting)")]
    Expired { waited_ms: u64 },
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
        Command::SetExam { number, sex, age, .. } => validate_exam(number, sex, *age),
    }
}

/// Exam info from outside: a non-empty number of letters, digits and `-_./`
/// (it names archive files), sex F, M or X, age 0..=130.
fn validate_exam(number: &str, sex: &str, age: u32) -> Result<(), Rejection> {
    let bad = |field, reason: &str| Err(Rejection::InvalidExam { field, reason: reason.to_string() });
    if number.trim().is_empty() {
        return bad("number", "must not be empty");
    }
    if number.len() > 32 || !number.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
        return bad("number", "at most 32 letters, digits, '-', '_', '.' or '/'");
    }
    if !matches!(sex, "F" | "M" | "X") {
        return bad("sex", "must be \"F\", \"M\" or \"X\"");
    }
    if age > 130 {
        return bad("age", "must be 0 ..= 130 years");
    }
    Ok(())
}

/// Validate and apply a command to the shared setpoints.
pub fn apply(
    cmd: &Command,
    source: &CommandSource,
    limits: &LimitsConfig,
    setpoints: &Setpoints,
    events: &EventBus,
) -> Result<Applied, Rejection> {
    apply_to(cmd, source, limits, setpoints, events, None)
}

/// As [`apply`], with the exam channel for [`Command::SetExam`].
pub fn apply_to(
    cmd: &Command,
    source: &CommandSource,
    limits: &LimitsConfig,
    setpoints: &Setpoints,
    events: &EventBus,
    exam: Option<&watch::Sender<ExamInfo>>,
) -> Result<Applied, Rejection> {
    let result = validate(cmd, limits).and_then(|()| {
        if setpoints.safe_state() && !matches!(cmd, Command::AckAlarm { .. } | Command::SetExam { .. }) {
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
            Command::SetExam { number, sex, age, procedure } => {
                let exam = exam.ok_or(Rejection::NoExamChannel)?;
                exam.send_replace(ExamInfo {
                    number: number.clone(),
                    sex: sex.clone(),
                    age: *age,
                    procedure: *procedure,
                    ..ExamInfo::default()
                });
                format!("exam info {number} ({sex}, {age} y, {procedure})")
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

/// Why a command did not reach the command path (not a rejection by it).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmitError {
    #[error("the command path {0} is not running")]
    NotRunning(String),
    #[error("the command path did not answer: {0}")]
    NoAnswer(String),
}

/// How long [`submit`] waits for an answer.
pub const SUBMIT_TIMEOUT: Duration = Duration::from_millis(1000);
/// A command is applied only this soon after it was submitted, so that its
/// answer reaches a submitter still waiting: a call that timed out is still
/// delivered (ractor), and must then not change anything.
pub const APPLY_DEADLINE: Duration = Duration::from_millis(900);

/// Submit `command` to the command actor registered as `name`, looked up
/// per call so a restarted actor is found; waits up to [`SUBMIT_TIMEOUT`]
/// for its answer. A command the actor reaches after [`APPLY_DEADLINE`] is
/// answered [`Rejection::Expired`] and not applied.
pub async fn submit(name: &str, source: CommandSource, command: Command) -> Result<Result<Applied, Rejection>, SubmitError> {
    let cell = ractor::registry::where_is(name).ok_or_else(|| SubmitError::NotRunning(name.to_string()))?;
    let r: ActorRef<CommandMsg> = cell.into();
    let submitted = Instant::now();
    ractor::call_t!(r, |reply| CommandMsg::Submit { source, command, submitted, reply }, SUBMIT_TIMEOUT.as_millis() as u64)
        .map_err(|e| SubmitError::NoAnswer(e.to_string()))
}

pub enum CommandMsg {
    Submit {
        source: CommandSource,
        command: Command,
        /// When the submitter sent it (see [`APPLY_DEADLINE`]).
        submitted: Instant,
        reply: RpcReplyPort<Result<Applied, Rejection>>,
    },
    /// Liveness tick: an idle command path still proves it is not hung.
    Beat,
}

pub struct CommandArgs {
    pub limits: LimitsConfig,
    pub setpoints: Setpoints,
    pub events: EventBus,
    /// Where exam info goes (the video path's exam channel), if anywhere.
    pub exam: Option<watch::Sender<ExamInfo>>,
    /// Beaten on every message, a tick included (hang detection).
    pub liveness: Option<crate::supervisor::Liveness>,
}

/// The command path as an actor, so HMI and remote commands are serialised.
pub struct CommandActor;

impl Actor for CommandActor {
    type Msg = CommandMsg;
    type State = CommandArgs;
    type Arguments = CommandArgs;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, args: CommandArgs) -> Result<Self::State, ActorProcessingErr> {
        if let Some(l) = &args.liveness {
            l.beat();
            myself.send_interval(Duration::from_millis(100), || CommandMsg::Beat);
        }
        Ok(args)
    }

    async fn handle(&self, _myself: ActorRef<Self::Msg>, msg: Self::Msg, s: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if let Some(l) = &s.liveness {
            l.beat();
        }
        match msg {
            CommandMsg::Submit { source, command, submitted, reply } => {
                let waited = submitted.elapsed();
                let r = if waited > APPLY_DEADLINE {
                    let r = Rejection::Expired { waited_ms: waited.as_millis() as u64 };
                    s.events.event(
                        EventKind::Command,
                        Severity::Low,
                        "commands",
                        "REJECTED",
                        format!("{source}: {command:?} rejected: {r}"),
                    );
                    Err(r)
                } else {
                    apply_to(&command, &source, &s.limits, &s.setpoints, &s.events, s.exam.as_ref())
                };
                let _ = reply.send(r);
            }
            CommandMsg::Beat => {}
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
    fn exam_info_is_validated_then_published_on_the_exam_channel() {
        let sp = Setpoints::new(12.0, 10.0, 80.0);
        let ev = EventBus::new(16);
        let limits = LimitsConfig::default();
        let (tx, rx) = watch::channel(ExamInfo::default());
        let src = CommandSource::Remote { client: "ris".into() };
        let exam = |number: &str, sex: &str, age| Command::SetExam {
            number: number.into(),
            sex: sex.into(),
            age,
            procedure: Procedure::Colonoscopy,
        };
        for (bad, field) in
            [(exam("", "F", 40), "number"), (exam("E 1", "F", 40), "number"), (exam("E1", "Q", 40), "sex"), (exam("E1", "F", 200), "age")]
        {
            let r = apply_to(&bad, &src, &limits, &sp, &ev, Some(&tx));
            assert!(matches!(&r, Err(Rejection::InvalidExam { field: f, .. }) if *f == field), "{bad:?}: {r:?}");
        }
        assert_eq!(*rx.borrow(), ExamInfo::default());
        apply_to(&exam("E-2026-7", "M", 47), &src, &limits, &sp, &ev, Some(&tx)).unwrap();
        assert_eq!(rx.borrow().number, "E-2026-7");
        assert_eq!(apply(&exam("E1", "F", 1), &src, &limits, &sp, &ev), Err(Rejection::NoExamChannel));
    }

    /// Issue 14: a command whose submitter timed out (the actor was busy)
    /// was still applied later.
    #[tokio::test]
    async fn a_command_reaching_the_actor_after_its_deadline_is_not_applied() {
        let sp = Setpoints::new(12.0, 10.0, 80.0);
        let args =
            CommandArgs { limits: LimitsConfig::default(), setpoints: sp.clone(), events: EventBus::new(16), exam: None, liveness: None };
        let (actor, _) = Actor::spawn(None, CommandActor, args).await.unwrap();
        let late = Instant::now() - Duration::from_millis(1500);
        let r = ractor::call_t!(
            actor,
            |reply| CommandMsg::Submit { source: CommandSource::Hmi, command: Command::SetPressure { mmhg: 15.0 }, submitted: late, reply },
            1000
        )
        .unwrap();
        assert!(matches!(r, Err(Rejection::Expired { waited_ms }) if waited_ms >= 1500), "{r:?}");
        assert_eq!(sp.pressure_mmhg(), 12.0, "not applied");
        let now = Instant::now();
        let r = ractor::call_t!(
            actor,
            |reply| CommandMsg::Submit { source: CommandSource::Hmi, command: Command::SetPressure { mmhg: 15.0 }, submitted: now, reply },
            1000
        )
        .unwrap();
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(sp.pressure_mmhg(), 15.0);
        actor.stop(None);
    }

    #[test]
    fn commands_parse_from_json_and_unknown_fields_are_errors() {
        let c: Command = serde_json::from_str(r#"{"command":"set_pressure","mmhg":14}"#).unwrap();
        assert_eq!(c, Command::SetPressure { mmhg: 14.0 });
        assert!(serde_json::from_str::<Command>(r#"{"command":"set_pressure","mmhg":14,"x":1}"#).is_err());
    }
}
