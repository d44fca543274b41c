//! Remote commands: parsing, the allow-list and the two-step confirmation of
//! setpoint changes (after IEEE 11073 SDC safe remote control). Pure logic;
//! the telemetry link feeds it payloads and sends what it decides through the
//! validated command path (`commands`), which enforces the limits again.
//!
//! A setpoint request is answered with the exact value the tower will apply
//! and a single-use token bound to the requesting client; only a `confirm`
//! with that token, from that client, within `confirm_timeout_ms` (at most
//! 5 s) applies it. Every other outcome is a rejection with a reason.

use super::config::RemoteConfig;
use super::payloads::RemoteCommand;
use crate::commands::{validate, Command};
use crate::config::LimitsConfig;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What to do with one received command.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Reply with a rejection.
    Reject(String),
    /// Reply with the token and what a confirm will apply.
    ConfirmRequired { token: String, apply: Command, expires_in: Duration },
    /// Send through the command path, reply with its outcome.
    Execute(Command),
}

/// The parsed envelope: the request id (if any) and what to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    pub request_id: Option<String>,
    /// The command as received, for the journal.
    pub raw: serde_json::Value,
    /// It parsed as a command (else the journal keeps only its digest).
    pub parsed: bool,
    pub decision: Decision,
}

struct PendingSetpoint {
    client: String,
    command: Command,
    expires: Instant,
}

pub struct Remote {
    cfg: RemoteConfig,
    limits: LimitsConfig,
    pending: HashMap<String, PendingSetpoint>,
    counter: u64,
    salt: u64,
}

/// Parse a command payload: JSON object, optional string `id`, then the
/// command itself with no unknown field.
pub fn parse(payload: &[u8]) -> (Option<String>, serde_json::Value, Result<RemoteCommand, String>) {
    let text = match std::str::from_utf8(payload) {
        Ok(t) => t,
        Err(e) => return (None, serde_json::Value::Null, Err(format!("malformed command: not UTF-8 ({e})"))),
    };
    let mut value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return (None, serde_json::Value::String(text.chars().take(512).collect()), Err(format!("malformed JSON: {e}"))),
    };
    let raw = value.clone();
    let Some(obj) = value.as_object_mut() else {
        return (None, raw, Err("malformed command: expected a JSON object".into()));
    };
    let id = match obj.remove("id") {
        None => None,
        Some(serde_json::Value::String(s)) if s.len() <= 128 => Some(s),
        Some(_) => return (None, raw, Err("field `id`: expected a string of at most 128 characters".into())),
    };
    let parsed = RemoteCommand::from_value(value).map_err(|e| format!("invalid command: {e}"));
    (id, raw, parsed)
}

impl Remote {
    pub fn new(cfg: RemoteConfig, limits: LimitsConfig) -> Self {
        let salt = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
            ^ (u64::from(std::process::id()) << 32);
        Self { cfg, limits, pending: HashMap::new(), counter: 0, salt }
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    fn token(&mut self) -> String {
        // Unguessable enough for a confirmation handshake (not a credential:
        // the broker's ACLs authenticate clients): a mixed counter and salt.
        self.counter += 1;
        let mut x = self.salt ^ self.counter.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        format!("{x:016x}")
    }

    /// Decide what to do with `payload` received on `cmd/<client>`.
    pub fn handle(&mut self, client: &str, payload: &[u8], now: Instant) -> Handled {
        self.pending.retain(|_, p| p.expires > now);
        let (request_id, raw, parsed) = parse(payload);
        let ok = parsed.is_ok();
        let decision = self.decide(client, parsed, now);
        Handled { request_id, raw, parsed: ok, decision }
    }

    fn decide(&mut self, client: &str, parsed: Result<RemoteCommand, String>, now: Instant) -> Decision {
        if !self.cfg.enabled {
            return Decision::Reject("remote control is disabled on this tower (telemetry.remote.enabled = false)".into());
        }
        if !self.cfg.allowed_clients.iter().any(|c| c == client) {
            return Decision::Reject(format!("client `{client}` is not allowed to send commands (telemetry.remote.allowed_clients)"));
        }
        let cmd = match parsed {
            Ok(c) => c,
            Err(reason) => return Decision::Reject(reason),
        };
        let setpoint = match cmd {
            // Setpoints take two steps: a request, then its confirmation.
            RemoteCommand::Tower(c @ (Command::SetPressure { .. } | Command::SetFlow { .. } | Command::SetIntensity { .. })) => c,
            RemoteCommand::Tower(c @ (Command::AckAlarm { .. } | Command::SetExam { .. })) => return Decision::Execute(c),
            RemoteCommand::Confirm { token } => {
                return match self.pending.remove(&token) {
                    None => Decision::Reject("unknown or expired confirmation token".into()),
                    Some(p) if p.client != client => {
                        // A token is only good for the client it was issued to;
                        // a wrong client burns it.
                        Decision::Reject("confirmation token was issued to another client".into())
                    }
                    Some(p) => Decision::Execute(p.command),
                };
            }
        };
        // Out-of-range requests fail at step 1; step 2 goes through the
        // command path, which checks the limits (and the safe state) again.
        if let Err(r) = validate(&setpoint, &self.limits) {
            return Decision::Reject(r.to_string());
        }
        let token = self.token();
        let expires_in = Duration::from_millis(self.cfg.confirm_timeout_ms);
        self.pending
            .insert(token.clone(), PendingSetpoint { client: client.to_string(), command: setpoint.clone(), expires: now + expires_in });
        Decision::ConfirmRequired { token, apply: setpoint, expires_in }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote() -> Remote {
        Remote::new(
            RemoteConfig { enabled: true, allowed_clients: vec!["hmi".into(), "ris".into()], confirm_timeout_ms: 5000 },
            LimitsConfig::default(),
        )
    }

    fn reason(h: &Handled) -> &str {
        match &h.decision {
            Decision::Reject(r) => r,
            d => panic!("not rejected: {d:?}"),
        }
    }

    #[test]
    fn hz017_a_setpoint_is_applied_only_after_confirmation_with_its_token() {
        let mut r = remote();
        let t0 = Instant::now();
        let h = r.handle("hmi", br#"{"id":"a","command":"set_pressure","mmhg":14}"#, t0);
        assert_eq!(h.request_id.as_deref(), Some("a"));
        let Decision::ConfirmRequired { token, apply, .. } = h.decision else { panic!("{h:?}") };
        assert_eq!(apply, Command::SetPressure { mmhg: 14.0 });
        let confirm = format!(r#"{{"command":"confirm","token":"{token}"}}"#);
        assert_eq!(r.handle("hmi", confirm.as_bytes(), t0).decision, Decision::Execute(Command::SetPressure { mmhg: 14.0 }));
        // Single use.
        assert!(reason(&r.handle("hmi", confirm.as_bytes(), t0)).contains("unknown or expired"));
    }

    #[test]
    fn hz017_stale_foreign_and_unknown_tokens_are_rejected() {
        let mut r = remote();
        let t0 = Instant::now();
        let issue = |r: &mut Remote| match r.handle("hmi", br#"{"command":"set_flow","lpm":8}"#, t0).decision {
            Decision::ConfirmRequired { token, .. } => token,
            d => panic!("{d:?}"),
        };
        let late = issue(&mut r);
        let confirm = |t: &str| format!(r#"{{"command":"confirm","token":"{t}"}}"#);
        assert!(reason(&r.handle("hmi", confirm(&late).as_bytes(), t0 + Duration::from_millis(5001))).contains("expired"));
        let other = issue(&mut r);
        assert!(reason(&r.handle("ris", confirm(&other).as_bytes(), t0)).contains("another client"));
        assert!(reason(&r.handle("hmi", confirm("0123456789abcdef").as_bytes(), t0)).contains("unknown"));
    }

    #[test]
    fn hz017_bad_commands_are_rejected_with_a_reason_naming_the_problem() {
        let mut r = remote();
        let t0 = Instant::now();
        assert!(reason(&r.handle("hmi", b"{not json", t0)).starts_with("malformed JSON"));
        assert!(reason(&r.handle("hmi", b"[1,2]", t0)).contains("expected a JSON object"));
        assert!(reason(&r.handle("hmi", br#"{"command":"set_pressure","mmhg":14,"force":true}"#, t0)).contains("unknown field `force`"));
        assert!(reason(&r.handle("hmi", br#"{"command":"set_pressure","mmhg":"high"}"#, t0)).contains("invalid type"));
        assert!(reason(&r.handle("hmi", br#"{"command":"open_valve"}"#, t0)).contains("unknown variant `open_valve`"));
        assert!(reason(&r.handle("hmi", br#"{"command":"set_pressure","mmhg":40}"#, t0)).contains("set_pressure = 40 is outside 3 ..= 25"));
        assert!(reason(&r.handle("mallory", br#"{"command":"ack_alarm","key":"a/b"}"#, t0)).contains("not allowed"));
        assert!(reason(&r.handle("hmi", br#"{"id":7,"command":"ack_alarm","key":"a/b"}"#, t0)).contains("field `id`"));
    }

    #[test]
    fn hz017_remote_control_disabled_rejects_everything() {
        let mut r = Remote::new(
            RemoteConfig { enabled: false, allowed_clients: vec!["hmi".into()], confirm_timeout_ms: 5000 },
            LimitsConfig::default(),
        );
        assert!(reason(&r.handle("hmi", br#"{"command":"ack_alarm","key":"a/b"}"#, Instant::now())).contains("disabled"));
    }

    #[test]
    fn exam_info_and_alarm_ack_go_straight_to_the_command_path() {
        let mut r = remote();
        let h = r.handle("ris", br#"{"command":"exam_info","number":"E-1","sex":"F","age":61}"#, Instant::now());
        assert_eq!(
            h.decision,
            Decision::Execute(Command::SetExam { number: "E-1".into(), sex: "F".into(), age: 61, procedure: Default::default() })
        );
    }
}
