//! The broker connection as an explicit state machine, like the Modbus links:
//! Connecting -> Connected -> Degraded -> Lost, every transition logged with
//! its reason. rumqttc reconnects only while its event loop is polled and has
//! no backoff of its own, so the telemetry actor drops the event loop on any
//! error and makes a fresh one after this backoff (which also clears
//! whatever rumqttc still held; the journal replays it instead).

use serde::Serialize;
use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MqttLinkState {
    /// Opening a connection (TCP, TLS, CONNECT / CONNACK).
    Connecting,
    /// ConnAck received, publishing.
    Connected,
    /// Connected, but the broker does not keep up (acks overdue, client queue full).
    Degraded,
    /// The connection failed; reconnecting after the backoff.
    Lost,
}

impl fmt::Display for MqttLinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MqttLinkState::Connecting => "connecting",
            MqttLinkState::Connected => "connected",
            MqttLinkState::Degraded => "degraded",
            MqttLinkState::Lost => "lost",
        })
    }
}

/// State, transitions and the reconnect backoff.
pub struct Link {
    state: MqttLinkState,
    broker: String,
    backoff: Duration,
    initial: Duration,
    max: Duration,
    pub connects: u64,
    pub losses: u64,
}

impl Link {
    pub fn new(broker: String, initial: Duration, max: Duration) -> Self {
        Self { state: MqttLinkState::Connecting, broker, backoff: initial, initial, max, connects: 0, losses: 0 }
    }

    pub fn state(&self) -> MqttLinkState {
        self.state
    }

    fn go(&mut self, to: MqttLinkState, reason: &str) {
        if self.state == to {
            return;
        }
        match to {
            MqttLinkState::Lost | MqttLinkState::Degraded => {
                tracing::warn!(broker = %self.broker, from = %self.state, to = %to, "mqtt link: {reason}")
            }
            _ => tracing::info!(broker = %self.broker, from = %self.state, to = %to, "mqtt link: {reason}"),
        }
        self.state = to;
    }

    pub fn connecting(&mut self, reason: &str) {
        self.go(MqttLinkState::Connecting, reason);
    }

    pub fn connected(&mut self) {
        self.connects += 1;
        self.backoff = self.initial;
        self.go(MqttLinkState::Connected, "ConnAck received");
    }

    pub fn degraded(&mut self, reason: &str) {
        if self.state == MqttLinkState::Connected {
            self.go(MqttLinkState::Degraded, reason);
        }
    }

    pub fn recovered(&mut self, reason: &str) {
        if self.state == MqttLinkState::Degraded {
            self.go(MqttLinkState::Connected, reason);
        }
    }

    /// The connection failed: returns how long to wait before the next try
    /// (doubling up to the maximum, reset by a ConnAck).
    pub fn lost(&mut self, reason: &str) -> Duration {
        if self.state != MqttLinkState::Lost {
            self.losses += 1;
        }
        self.go(MqttLinkState::Lost, reason);
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(self.max);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_maximum_and_resets_on_connack() {
        let mut l = Link::new("b".into(), Duration::from_millis(100), Duration::from_millis(350));
        assert_eq!(l.lost("refused"), Duration::from_millis(100));
        l.connecting("retry");
        assert_eq!(l.lost("refused"), Duration::from_millis(200));
        assert_eq!(l.lost("refused"), Duration::from_millis(350));
        l.connected();
        assert_eq!(l.state(), MqttLinkState::Connected);
        l.degraded("acks overdue");
        assert_eq!(l.state(), MqttLinkState::Degraded);
        assert_eq!(l.lost("reset"), Duration::from_millis(100));
        assert_eq!(l.losses, 3);
    }
}
