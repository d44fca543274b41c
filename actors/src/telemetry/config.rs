//! The `[telemetry]` section: broker (embedded or external), rates, buffers,
//! the on-disk journal and remote control. Every field is validated under its
//! path, so a bad value names itself.

use crate::config::{check_int, check_range, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which broker the tower's client talks to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BrokerConfig {
    /// rumqttd in-process, listening on `bind` (loopback by default; port 0
    /// picks a free port). See docs/mqtt.md for its caveats.
    Embedded {
        #[serde(default = "default_bind")]
        bind: String,
        #[serde(default = "default_max_connections")]
        max_connections: usize,
        /// Seconds between health probes (MQTT connect + ConnAck).
        #[serde(default = "default_probe_s")]
        probe_interval_s: u64,
    },
    /// Any MQTT 3.1.1 broker (mosquitto in production and tests).
    External {
        host: String,
        port: u16,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password: Option<String>,
        /// PEM CA certificate: TLS to the broker, verified against this CA.
        #[serde(default)]
        ca_file: Option<PathBuf>,
    },
}

fn default_bind() -> String {
    "127.0.0.1:1883".into()
}
fn default_max_connections() -> usize {
    64
}
fn default_probe_s() -> u64 {
    5
}

/// The on-disk journal of alarms, events and commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// Directory; the tower id is appended, so towers never share a journal.
    pub dir: PathBuf,
    /// Total size cap over all segments; the oldest segment goes first.
    pub max_bytes: u64,
    /// A new segment is started past this size.
    pub segment_bytes: u64,
    /// Records kept in memory awaiting their PubAck (and while the disk is full).
    pub memory_records: usize,
}

/// Remote control (the subscribed command topic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// Off unless enabled here: every command is then rejected (and journaled).
    pub enabled: bool,
    /// MQTT client ids allowed to command (the `<client-id>` of `cmd/<client-id>`).
    pub allowed_clients: Vec<String>,
    /// A setpoint request's token must be confirmed within this (at most 5 s).
    pub confirm_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    pub enabled: bool,
    pub broker: BrokerConfig,
    /// MQTT client id of the tower (embedded broker: a per-connection suffix is added).
    pub client_id: String,
    /// Device and health samples are taken at this rate...
    pub sample_hz: f64,
    /// ...and published in batches this often.
    pub batch_ms: u64,
    /// Retained per-device state: published on change, at most this often.
    pub state_max_hz: f64,
    /// Telemetry batches kept while the broker is away; the oldest drop first.
    pub outbox_capacity: usize,
    pub keep_alive_s: u64,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub journal: JournalConfig,
    pub remote: RemoteConfig,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            broker: BrokerConfig::Embedded {
                bind: default_bind(),
                max_connections: default_max_connections(),
                probe_interval_s: default_probe_s(),
            },
            client_id: "endotower".into(),
            sample_hz: 10.0,
            batch_ms: 1000,
            state_max_hz: 2.0,
            outbox_capacity: 120,
            keep_alive_s: 5,
            backoff_initial_ms: 100,
            backoff_max_ms: 5000,
            journal: JournalConfig { dir: PathBuf::from("journal"), max_bytes: 64 << 20, segment_bytes: 4 << 20, memory_records: 100_000 },
            remote: RemoteConfig { enabled: false, allowed_clients: Vec::new(), confirm_timeout_ms: 5000 },
        }
    }
}

fn client_id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

impl BrokerConfig {
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        match self {
            BrokerConfig::Embedded { bind, max_connections, probe_interval_s } => {
                let addr: std::net::SocketAddr = bind.parse().map_err(|_| {
                    ConfigError::new(format!("{path}.bind"), format!("{bind:?}"), "an IP socket address like \"127.0.0.1:1883\"")
                })?;
                let _ = addr;
                check_int(&format!("{path}.max_connections"), *max_connections as u64, 4, 10_000, "connections")?;
                check_int(&format!("{path}.probe_interval_s"), *probe_interval_s, 1, 3600, "s")
            }
            BrokerConfig::External { host, port, username, password, ca_file } => {
                if host.is_empty() {
                    return Err(ConfigError::new(format!("{path}.host"), "\"\"", "a host name or IP address"));
                }
                check_int(&format!("{path}.port"), u64::from(*port), 1, 65_535, "")?;
                if password.is_some() && username.is_none() {
                    return Err(ConfigError::new(format!("{path}.username"), "none", "a user name when a password is set"));
                }
                if let Some(f) = ca_file {
                    if !f.is_file() {
                        return Err(ConfigError::new(format!("{path}.ca_file"), f.display(), "a readable PEM CA certificate file"));
                    }
                }
                Ok(())
            }
        }
    }
}

impl TelemetryConfig {
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        self.broker.validate(&format!("{path}.broker"))?;
        if !client_id_ok(&self.client_id) {
            return Err(ConfigError::new(
                format!("{path}.client_id"),
                format!("{:?}", self.client_id),
                "1..=64 letters, digits, '-', '_' or '.'",
            ));
        }
        check_range(&format!("{path}.sample_hz"), self.sample_hz, 0.1, 100.0, "Hz")?;
        check_int(&format!("{path}.batch_ms"), self.batch_ms, 50, 60_000, "ms")?;
        check_range(&format!("{path}.state_max_hz"), self.state_max_hz, 0.01, 50.0, "Hz")?;
        check_int(&format!("{path}.outbox_capacity"), self.outbox_capacity as u64, 1, 1_000_000, "batches")?;
        check_int(&format!("{path}.keep_alive_s"), self.keep_alive_s, 1, 600, "s")?;
        check_int(&format!("{path}.backoff_initial_ms"), self.backoff_initial_ms, 1, 60_000, "ms")?;
        check_int(&format!("{path}.backoff_max_ms"), self.backoff_max_ms, self.backoff_initial_ms, 600_000, "ms (>= backoff_initial_ms)")?;
        let j = &self.journal;
        if j.dir.as_os_str().is_empty() {
            return Err(ConfigError::new(format!("{path}.journal.dir"), "\"\"", "a directory"));
        }
        check_int(&format!("{path}.journal.segment_bytes"), j.segment_bytes, 4096, 1 << 30, "bytes")?;
        check_int(&format!("{path}.journal.max_bytes"), j.max_bytes, 2 * j.segment_bytes, 1 << 40, "bytes (>= 2 segments)")?;
        check_int(&format!("{path}.journal.memory_records"), j.memory_records as u64, 100, 10_000_000, "records")?;
        let r = &self.remote;
        check_int(
            &format!("{path}.remote.confirm_timeout_ms"),
            r.confirm_timeout_ms,
            100,
            5000,
            "ms (two-step confirmation, at most 5 s)",
        )?;
        for (i, c) in r.allowed_clients.iter().enumerate() {
            if !client_id_ok(c) {
                return Err(ConfigError::new(
                    format!("{path}.remote.allowed_clients[{i}]"),
                    format!("{c:?}"),
                    "1..=64 letters, digits, '-', '_' or '.'",
                ));
            }
        }
        if r.enabled && r.allowed_clients.is_empty() {
            return Err(ConfigError::new(
                format!("{path}.remote.allowed_clients"),
                "[]",
                "at least one client id when remote.enabled = true",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_control_is_off_by_default_and_enabling_it_needs_allowed_clients() {
        let mut c = TelemetryConfig::default();
        assert!(!c.remote.enabled);
        c.validate("telemetry").unwrap();
        c.remote.enabled = true;
        let e = c.validate("telemetry").unwrap_err();
        assert_eq!(e.field, "telemetry.remote.allowed_clients");
    }

    #[test]
    fn confirmation_window_is_capped_at_5_s() {
        let mut c = TelemetryConfig::default();
        c.remote.confirm_timeout_ms = 10_000;
        assert_eq!(c.validate("telemetry").unwrap_err().field, "telemetry.remote.confirm_timeout_ms");
    }

    #[test]
    fn bad_broker_fields_name_themselves() {
        let mut c = TelemetryConfig {
            broker: BrokerConfig::External { host: "h".into(), port: 0, username: None, password: None, ca_file: None },
            ..Default::default()
        };
        assert_eq!(c.validate("telemetry").unwrap_err().field, "telemetry.broker.port");
        c.broker = BrokerConfig::External {
            host: "h".into(),
            port: 8883,
            username: None,
            password: None,
            ca_file: Some("/no/such/ca.pem".into()),
        };
        assert_eq!(c.validate("telemetry").unwrap_err().field, "telemetry.broker.ca_file");
        c.broker = BrokerConfig::Embedded { bind: "localhost".into(), max_connections: 64, probe_interval_s: 5 };
        assert_eq!(c.validate("telemetry").unwrap_err().field, "telemetry.broker.bind");
    }
}
