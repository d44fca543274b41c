//! Inbound remote commands: admission before anything is parsed (a size
//! cap and a per-client rate limit, token bucket), then the decision of
//! [`super::remote`] and the validated command path. Every admitted command
//! is answered; what is refused unread costs a counter and, at most once a
//! second per client, one answer. The journal keeps a digest of a refused or
//! unparsable payload, never the payload.

use super::actor::{json, Core};
use super::journal::Stream;
use super::payloads::*;
use super::remote::Decision;
use super::session::{Sent, Session};
use crate::commands::{self, Applied, Command, CommandSource, SubmitError};
use rumqttc::QoS;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Largest command payload accepted (checked before parsing).
pub const MAX_COMMAND_BYTES: usize = 4096;
/// Commands a client may send in a burst...
pub const BURST: f64 = 20.0;
/// ...and per second after it.
pub const PER_SECOND: f64 = 10.0;
/// A rate-limited client is told so at most this often.
pub const NOTICE_EVERY: Duration = Duration::from_secs(1);
/// Clients tracked at most (the oldest forgotten first).
const MAX_CLIENTS: usize = 1024;

/// What to do with a received payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Parse and handle it.
    Admit,
    /// Over [`MAX_COMMAND_BYTES`]: answer with a rejection, journal a digest.
    TooLarge { bytes: usize },
    /// Over the client's rate: counted; `notify` carries how many were
    /// dropped since the last notice when one is due now.
    RateLimited { notify: Option<u64> },
}

struct Bucket {
    tokens: f64,
    last: Instant,
    dropped_since_notice: u64,
    last_notice: Option<Instant>,
}

/// Per-client admission state.
#[derive(Default)]
pub struct Inbound {
    clients: HashMap<String, Bucket>,
    /// Commands refused for their rate, since start.
    pub rate_limited: u64,
    /// Commands refused for their size, since start.
    pub too_large: u64,
}

impl Inbound {
    pub fn admit(&mut self, client: &str, bytes: usize, now: Instant) -> Admission {
        if bytes > MAX_COMMAND_BYTES {
            self.too_large += 1;
            return Admission::TooLarge { bytes };
        }
        if !self.clients.contains_key(client) && self.clients.len() >= MAX_CLIENTS {
            if let Some(oldest) = self.clients.iter().min_by_key(|(_, b)| b.last).map(|(k, _)| k.clone()) {
                self.clients.remove(&oldest);
            }
        }
        let b = self.clients.entry(client.to_string()).or_insert(Bucket {
            tokens: BURST,
            last: now,
            dropped_since_notice: 0,
            last_notice: None,
        });
        b.tokens = (b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * PER_SECOND).min(BURST);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Admission::Admit;
        }
        self.rate_limited += 1;
        b.dropped_since_notice += 1;
        let due = b.last_notice.is_none_or(|t| now.saturating_duration_since(t) >= NOTICE_EVERY);
        if due {
            b.last_notice = Some(now);
            Admission::RateLimited { notify: Some(std::mem::take(&mut b.dropped_since_notice)) }
        } else {
            Admission::RateLimited { notify: None }
        }
    }
}

/// A digest of a payload for the journal: its size and SHA-256.
pub fn digest(payload: &[u8]) -> serde_json::Value {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(payload);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    serde_json::json!({ "bytes": payload.len(), "sha256": hex })
}

impl Core {
    async fn submit(&self, client: &str, command: Command) -> Result<Applied, String> {
        let source = CommandSource::Remote { client: client.to_string() };
        match commands::submit(&self.commands, source, command).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(rej)) => Err(rej.to_string()),
            Err(SubmitError::NotRunning(_)) => Err("the command path is not running; try again".into()),
            Err(e @ SubmitError::NoAnswer(_)) => Err(e.to_string()),
        }
    }

    /// A payload on `cmd/<client>`: admitted (size, rate), decided
    /// ([`super::remote`]), executed through the command path, journaled and
    /// answered on `resp/<client>`. Refused payloads are journaled as a
    /// digest; rate-limited ones are counted and answered at most once a
    /// second per client.
    pub(super) async fn on_command(&mut self, s: &mut Session, topic: &str, payload: &[u8]) {
        let Some(client) = self.topics.cmd_client(topic).map(str::to_string) else { return };
        self.stats.commands.fetch_add(1, Ordering::Relaxed);
        let base = Response {
            v: SCHEMA_VERSION,
            tower: self.tower.clone(),
            request_id: None,
            status: Status::Rejected,
            reason: None,
            token: None,
            apply: None,
            expires_in_ms: None,
        };
        let (response, journaled) = match self.inbound.admit(&client, payload.len(), Instant::now()) {
            Admission::TooLarge { bytes } => (
                Response { reason: Some(format!("command of {bytes} bytes refused: at most {MAX_COMMAND_BYTES} bytes")), ..base },
                digest(payload),
            ),
            Admission::RateLimited { notify } => {
                self.stats.commands_rate_limited.store(self.inbound.rate_limited, Ordering::Relaxed);
                let Some(dropped) = notify else { return };
                let reason =
                    format!("{dropped} command(s) dropped unread: more than {BURST} at once or {PER_SECOND} a second from this client");
                (Response { status: Status::RateLimited, reason: Some(reason), ..base }, digest(payload))
            }
            Admission::Admit => self.decide_and_apply(&client, payload, base).await,
        };
        match response.status {
            Status::Rejected | Status::RateLimited => tracing::warn!(client, reason = ?response.reason, "remote command refused"),
            _ => tracing::info!(client, status = ?response.status, reason = ?response.reason, "remote command"),
        }
        // Journaled (and so published on `commands`, replayed) before the reply goes out.
        let body = CommandRecordBody { client: client.clone(), command: journaled, response: response.clone() };
        self.journal.append(Stream::Command, serde_json::to_value(&body).unwrap_or(serde_json::Value::Null));
        if s.connected && !s.publish(self.topics.resp(&client), QoS::AtLeastOnce, false, json(&response), Sent::Other) {
            self.stats.responses_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An admitted command: the response, and what the journal keeps of it
    /// (the parsed command when it was one, else its digest).
    async fn decide_and_apply(&mut self, client: &str, payload: &[u8], base: Response) -> (Response, serde_json::Value) {
        let handled = self.remote.handle(client, payload, Instant::now());
        let base = Response { request_id: handled.request_id.clone(), ..base };
        let journaled = if handled.parsed { handled.raw.clone() } else { digest(payload) };
        let response = match handled.decision {
            Decision::Reject(reason) => Response { reason: Some(reason), ..base },
            Decision::ConfirmRequired { token, apply, expires_in } => Response {
                status: Status::ConfirmRequired,
                reason: Some(format!(
                    "send {{\"command\":\"confirm\",\"token\":\"{token}\"}} within {} ms to apply",
                    expires_in.as_millis()
                )),
                apply: serde_json::to_value(&apply).ok(),
                token: Some(token),
                expires_in_ms: Some(expires_in.as_millis() as u64),
                ..base
            },
            Decision::Execute(cmd) => match self.submit(client, cmd).await {
                Ok(a) => Response { status: Status::Accepted, reason: Some(a.description), ..base },
                Err(reason) => Response { reason: Some(reason), ..base },
            },
        };
        (response, journaled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_admitted_up_to_the_burst_then_at_the_rate_with_one_notice_a_second() {
        let mut a = Inbound::default();
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let (mut admitted, mut notices, mut limited) = (0, 0, 0);
        // 2000 commands in 1 s.
        for i in 0..2000u64 {
            match a.admit("c", 50, ms(i / 2)) {
                Admission::Admit => admitted += 1,
                Admission::RateLimited { notify } => {
                    limited += 1;
                    notices += u64::from(notify.is_some());
                }
                Admission::TooLarge { .. } => unreachable!(),
            }
        }
        assert!((29..=31).contains(&admitted), "{admitted} admitted: burst 20 + 10 in the second");
        assert_eq!(admitted + limited, 2000, "every command admitted or counted");
        assert_eq!(notices, 1, "one notice within the second");
        assert_eq!(a.rate_limited, limited as u64);
        // Another client is not affected.
        assert_eq!(a.admit("d", 50, ms(999)), Admission::Admit);
    }

    #[test]
    fn an_oversized_payload_is_refused_before_parsing_and_digested() {
        let mut a = Inbound::default();
        assert_eq!(a.admit("c", 1_572_864, Instant::now()), Admission::TooLarge { bytes: 1_572_864 });
        let d = digest(b"abc");
        assert_eq!(d["sha256"], "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(d["bytes"], 3);
    }
}
