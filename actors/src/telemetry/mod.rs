//! Remote telemetry and control over MQTT (see docs/mqtt.md).
//!
//! - [`config`]: the `[telemetry]` section.
//! - [`topics`]: the versioned topic tree `endotower/v1/<tower-id>/...`.
//! - [`payloads`]: every payload as serde types with a JSON Schema.
//! - [`journal`]: the fsync'd on-disk journal of alarms, events and commands.
//! - [`outbox`]: the bounded telemetry buffer (drops counted).
//! - [`remote`]: remote command parsing, allow-list, two-step confirmation.
//! - [`link`]: the broker connection state machine and its backoff.
//! - [`actor`]: the supervised telemetry actor that ties them together.

pub mod actor;
pub mod config;
pub mod journal;
pub mod link;
pub mod outbox;
pub mod payloads;
pub mod remote;
pub mod topics;
