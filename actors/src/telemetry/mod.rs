//! Remote telemetry and control over MQTT (see docs/mqtt.md).
//!
//! - [`config`]: the `[telemetry]` section.
//! - [`topics`]: the versioned topic tree `endotower/v1/<tower-id>/...`.
//! - [`payloads`]: every payload as serde types with a JSON Schema.
//! - [`journal`]: the fsync'd on-disk journal of alarms, events and commands.
//! - [`outbox`]: the bounded telemetry buffer (drops counted).
//! - [`remote`]: remote command parsing, allow-list, two-step confirmation.
//! - [`link`]: the broker connection state machine and its backoff.
//! - [`session`]: one MQTT connection, its event loop polled by its own task.
//! - [`bd_seq`]: the birth/death sequence, one per session, persisted.
//! - [`pump`]: the journal replay and PubAck bookkeeping.
//! - [`health`]: samples, the health summary and the retained device state.
//! - [`inbound`]: remote commands: size cap, rate limit, decision, answer.
//! - [`actor`]: the supervised telemetry actor that ties them together.

pub mod actor;
pub mod bd_seq;
pub mod config;
mod health;
pub mod inbound;
pub mod journal;
pub mod link;
pub mod outbox;
pub mod payloads;
mod pump;
pub mod remote;
pub mod session;
pub mod topics;
