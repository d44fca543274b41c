//! The `[telemetry]` section: broker (embedded or external), rates, buffers,
//! the on-disk journal and remote control. Every field is validated under its
//! path, so a bad value names itself.

use crate::config::{check_int, check_range, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which broker the tower's client talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokerKind {
    /// A mosquitto process the tower starts, watches and restarts.
    Embedded,
    /// Any MQTT 3.1.1 broker run by someone else.
    External,
}

/// `[telemetry.broker]`. One flat table for both kinds, so the environment
/// can switch kinds (`ENDOTOWER__TELEMETRY__BROKER__KIND=external` plus host
/// and port): the fields of the other kind are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    pub kind: BrokerKind,
    /// Embedded: where it listens (loopback by default; port 0 picks a free port).
    #[serde(default = "default_bind")]
    pub bind: String,
    /// Embedded: connections at most.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Embedded: seconds between health probes (MQTT connect + ConnAck);
    /// two failed probes in a row restart the broker process.
    #[serde(default = "default_probe_s")]
    pub probe_interval_s: u64,
    /// Embedded: remote clients' credentials (a `mosquitto_passwd` file). With
    /// it the broker refuses anonymous clients and applies ACLs: a client may
    /// publish only on its own command topic. Needed for remote control.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Embedded: TLS certificate and key of the listener (PEM); needed for
    /// remote control on a non-loopback `bind`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// External: host and port.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    /// External: the tower's credentials.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// External: PEM CA certificate: TLS to the broker, verified against it.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// External: PKCS#12 client identity (TLS client certificate) and its password.
    #[serde(default)]
    pub client_pkcs12: Option<PathBuf>,
    #[serde(default)]
    pub client_pkcs12_password: Option<String>,
}

impl BrokerConfig {
    /// The embedded broker on `bind`, anonymous.
    pub fn embedded(bind: &str) -> BrokerConfig {
        BrokerConfig {
            kind: BrokerKind::Embedded,
            bind: bind.into(),
            max_connections: default_max_connections(),
            probe_interval_s: default_probe_s(),
            password_file: None,
            cert_file: None,
            key_file: None,
            host: None,
            port: None,
            username: None,
            password: None,
            ca_file: None,
            client_pkcs12: None,
            client_pkcs12_password: None,
        }
    }

    /// An external broker at `host:port`, anonymous, plain TCP.
    pub fn external(host: &str, port: u16) -> BrokerConfig {
        BrokerConfig { kind: BrokerKind::External, host: Some(host.into()), port: Some(port), ..BrokerConfig::embedded(&default_bind()) }
    }
}

fn default_ai_max_hz() -> f64 {
    2.0
}
fn default_bind() -> String {
    "127.0.0.1:1883".into()
}
fn default_max_connections() -> usize {
    64
}
fn default_probe_s() -> u64 {
    2
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
    /// MQTT client id of the tower (with the embedded broker's password file,
    /// the tower's own user name `endotower-<tower id>` instead).
    pub client_id: String,
    /// Device and health samples are taken at this rate...
    pub sample_hz: f64,
    /// ...and published in batches this often.
    pub batch_ms: u64,
    /// Retained per-device state: published on change, at most this often.
    pub state_max_hz: f64,
    /// AI result summaries: the latest, at most this often.
    #[serde(default = "default_ai_max_hz")]
    pub ai_max_hz: f64,
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
            broker: BrokerConfig::embedded(&default_bind()),
            client_id: "endotower".into(),
            sample_hz: 10.0,
            batch_ms: 1000,
            state_max_hz: 2.0,
            ai_max_hz: default_ai_max_hz(),
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

fn readable(path: &str, f: &Option<PathBuf>, what: &str) -> Result<(), ConfigError> {
    match f {
        Some(p) if !p.is_file() => Err(ConfigError::new(path, p.display(), format!("a readable {what}"))),
        _ => Ok(()),
    }
}

impl BrokerConfig {
    /// The fields of its kind; `remote` says whether remote control is on,
    /// which needs an authenticating broker.
    pub fn validate(&self, path: &str, remote: bool) -> Result<(), ConfigError> {
        match self.kind {
            BrokerKind::Embedded => {
                let addr: std::net::SocketAddr = self.bind.parse().map_err(|_| {
                    ConfigError::new(format!("{path}.bind"), format!("{:?}", self.bind), "an IP socket address like \"127.0.0.1:1883\"")
                })?;
                check_int(&format!("{path}.max_connections"), self.max_connections as u64, 4, 10_000, "connections")?;
                check_int(&format!("{path}.probe_interval_s"), self.probe_interval_s, 1, 3600, "s")?;
                readable(&format!("{path}.password_file"), &self.password_file, "mosquitto_passwd file")?;
                readable(&format!("{path}.cert_file"), &self.cert_file, "PEM certificate")?;
                readable(&format!("{path}.key_file"), &self.key_file, "PEM private key")?;
                if self.cert_file.is_some() != self.key_file.is_some() {
                    return Err(ConfigError::new(
                        format!("{path}.key_file"),
                        "one of cert_file/key_file",
                        "both cert_file and key_file, or neither",
                    ));
                }
                if remote && self.password_file.is_none() {
                    return Err(ConfigError::new(
                        format!("{path}.password_file"),
                        "none",
                        "a mosquitto_passwd file when telemetry.remote.enabled = true (remote control needs authenticated clients)",
                    ));
                }
                if remote && !addr.ip().is_loopback() && self.cert_file.is_none() {
                    return Err(ConfigError::new(
                        format!("{path}.cert_file"),
                        "none",
                        format!("a TLS certificate when remote control is on and the broker listens beyond loopback ({addr})"),
                    ));
                }
                Ok(())
            }
            BrokerKind::External => {
                match &self.host {
                    Some(h) if !h.is_empty() => {}
                    other => {
                        return Err(ConfigError::new(
                            format!("{path}.host"),
                            format!("{other:?}"),
                            "a host name or IP address (kind = external)",
                        ))
                    }
                }
                let port = self.port.unwrap_or(0);
                check_int(&format!("{path}.port"), u64::from(port), 1, 65_535, "(kind = external)")?;
                if self.password.is_some() && self.username.is_none() {
                    return Err(ConfigError::new(format!("{path}.username"), "none", "a user name when a password is set"));
                }
                readable(&format!("{path}.ca_file"), &self.ca_file, "PEM CA certificate file")?;
                readable(&format!("{path}.client_pkcs12"), &self.client_pkcs12, "PKCS#12 client identity")?;
                if self.client_pkcs12.is_some() && self.ca_file.is_none() {
                    return Err(ConfigError::new(format!("{path}.ca_file"), "none", "a CA certificate: a client certificate needs TLS"));
                }
                if remote && self.ca_file.is_none() {
                    return Err(ConfigError::new(
                        format!("{path}.ca_file"),
                        "none",
                        "TLS to the broker when telemetry.remote.enabled = true (credentials never cross the network in clear)",
                    ));
                }
                if remote && self.username.is_none() && self.client_pkcs12.is_none() {
                    return Err(ConfigError::new(
                        format!("{path}.username"),
                        "none",
                        "credentials (username and password, or client_pkcs12) when telemetry.remote.enabled = true",
                    ));
                }
                Ok(())
            }
        }
    }
}

impl TelemetryConfig {
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
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
        check_range(&format!("{path}.ai_max_hz"), self.ai_max_hz, 0.1, 50.0, "Hz")?;
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
        self.broker.validate(&format!("{path}.broker"), self.remote.enabled)
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
        let mut c = TelemetryConfig { broker: BrokerConfig::external("h", 0), ..Default::default() };
        assert_eq!(c.validate("telemetry").unwrap_err().field, "telemetry.broker.port");
        c.broker = BrokerConfig { ca_file: Some("/no/such/ca.pem".into()), ..BrokerConfig::external("h", 8883) };
        assert_eq!(c.validate("telemetry").unwrap_err().field, "telemetry.broker.ca_file");
        c.broker = BrokerConfig::embedded("localhost");
        assert_eq!(c.validate("telemetry").unwrap_err().field, "telemetry.broker.bind");
    }

    /// Remote control needs a broker that authenticates its clients.
    #[test]
    fn hz017_remote_control_refuses_an_anonymous_or_clear_text_broker() {
        let mut c = TelemetryConfig::default();
        c.remote.enabled = true;
        c.remote.allowed_clients = vec!["hmi-1".into()];
        assert_eq!(c.validate("telemetry").unwrap_err().field, "telemetry.broker.password_file");
        c.broker = BrokerConfig { username: Some("tower".into()), password: Some("x".into()), ..BrokerConfig::external("mqtt.lan", 1883) };
        assert_eq!(c.validate("telemetry").unwrap_err().field, "telemetry.broker.ca_file");
    }

    #[test]
    fn a_merged_table_with_the_other_kind_s_fields_still_parses() {
        // What file + environment give: an embedded `bind` beside an external host.
        let v = serde_json::json!({"kind": "external", "bind": "127.0.0.1:1883", "host": "mqtt.lan", "port": 1883});
        let b: BrokerConfig = serde_json::from_value(v).unwrap();
        assert_eq!(b.kind, BrokerKind::External);
        b.validate("telemetry.broker", false).unwrap();
    }
}
