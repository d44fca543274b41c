//! One MQTT session: the rumqttc client, the event loop polled by a task of
//! its own, and what was handed to the client.
//!
//! The event loop is polled by one task that nothing else cancels: rumqttc's
//! `EventLoop::poll` opens the connection inside it, and a poll dropped
//! mid-connect (as a `select!` with timers does) leaves a half-open socket
//! the broker then closes with the tower's will: a death at start-up. The
//! poller forwards every event over a bounded channel, which also throttles
//! the connection when the telemetry task falls behind.
//!
//! `seq` numbers the messages handed to the client on this connection, one
//! each, in order: a message that could not be handed over takes no number,
//! so a gap at a subscriber is a QoS 0 message lost on the way.

use super::config::TelemetryConfig;
use rumqttc::{AsyncClient, ConnectionError, Event as MqttEvent, EventLoop, LastWill, MqttOptions, QoS};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Requests rumqttc may queue before `try_publish` refuses.
pub const REQUEST_CAPACITY: usize = 512;
/// Publishes in flight at rumqttc (its packet ids).
const CLIENT_INFLIGHT: u16 = 100;
/// Largest packet accepted from the broker: an oversized command must reach
/// the size check (and get its answer) instead of breaking the connection.
pub const MAX_INCOMING_PACKET: usize = 16 << 20;
/// Largest packet the tower sends.
pub const MAX_OUTGOING_PACKET: usize = 1 << 20;
/// Events buffered between the poller and the telemetry task.
const EVENTS: usize = 1024;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM CA certificate: TLS.
    pub ca: Option<Vec<u8>>,
    /// PKCS#12 client identity and its password: TLS client authentication.
    pub client_identity: Option<(Vec<u8>, String)>,
}

/// What a published packet was, in the order rumqttc reports them.
pub enum Sent {
    Journal(u64),
    /// The shutdown death: its PubAck ends a clean stop.
    Death,
    Other,
}

pub struct Session {
    pub client: AsyncClient,
    events: mpsc::Receiver<Result<MqttEvent, String>>,
    poller: tokio::task::JoinHandle<()>,
    pub sent: VecDeque<Sent>,
    pub pkids: HashMap<u16, Sent>,
    /// Last journal position handed to the client.
    pub cursor: u64,
    pub journal_inflight: usize,
    pub connected: bool,
    pub seq: u64,
    pub last_ack: Instant,
}

fn options(ep: &Endpoint, cfg: &TelemetryConfig, will: LastWill) -> MqttOptions {
    let mut o = MqttOptions::new(ep.client_id.clone(), ep.host.clone(), ep.port);
    o.set_keep_alive(Duration::from_secs(cfg.keep_alive_s.max(1)));
    // A clean session: nothing of rumqttc's own survives a reconnect; the
    // journal is what replays.
    o.set_clean_session(true);
    o.set_last_will(will);
    o.set_inflight(CLIENT_INFLIGHT);
    o.set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET);
    if let (Some(u), p) = (&ep.username, &ep.password) {
        o.set_credentials(u.clone(), p.clone().unwrap_or_default());
    }
    if let Some(ca) = &ep.ca {
        o.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::SimpleNative {
            ca: ca.clone(),
            client_auth: ep.client_identity.clone(),
        }));
    }
    o
}

/// Poll `el` until it fails, the receiver is gone, or the task is aborted.
/// Events the session never looks at (a QoS 0 publish written, pings, acks
/// the client sends) are not forwarded: one wake-up less per telemetry
/// message.
async fn poll(mut el: EventLoop, tx: mpsc::Sender<Result<MqttEvent, String>>) {
    use rumqttc::Outgoing;
    loop {
        let ev = el.poll().await.map_err(|e| describe(&e));
        if matches!(ev, Ok(MqttEvent::Outgoing(Outgoing::Publish(0) | Outgoing::PingReq | Outgoing::PubAck(_) | Outgoing::Subscribe(_)))) {
            continue;
        }
        let failed = ev.is_err();
        if tx.send(ev).await.is_err() || failed {
            return;
        }
    }
}

fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => format!("broker refused the connection: {code:?}"),
        other => other.to_string(),
    }
}

impl Session {
    /// Make a client and start its poller; the CONNECT goes out at once.
    pub fn start(ep: &Endpoint, cfg: &TelemetryConfig, will: LastWill) -> Session {
        let (client, mut el) = AsyncClient::new(options(ep, cfg, will), REQUEST_CAPACITY);
        el.network_options.set_connection_timeout(5);
        let (tx, events) = mpsc::channel(EVENTS);
        let poller = tokio::spawn(poll(el, tx));
        Session {
            client,
            events,
            poller,
            sent: VecDeque::new(),
            pkids: HashMap::new(),
            cursor: 0,
            journal_inflight: 0,
            connected: false,
            seq: 0,
            last_ack: Instant::now(),
        }
    }

    /// The next event of the connection (cancel-safe: only a channel read).
    /// `Err` ends the session.
    pub async fn next(&mut self) -> Result<MqttEvent, String> {
        match self.events.recv().await {
            Some(ev) => ev,
            None => Err("the MQTT event loop ended".into()),
        }
    }

    /// Publish with the next `seq` given to `payload`; the number is taken
    /// only if the client accepts the message.
    pub fn publish_seq(&mut self, topic: String, qos: QoS, retain: bool, payload: impl FnOnce(u64) -> Vec<u8>, what: Sent) -> bool {
        let seq = self.seq + 1;
        let ok = self.publish(topic, qos, retain, payload(seq), what);
        if ok {
            self.seq = seq;
        }
        ok
    }

    /// Publish; on success a QoS 1 packet is tracked so its PubAck can be
    /// matched (its packet id arrives with the `Outgoing::Publish` event, in
    /// the order of these calls; QoS 0 packets have none and no event).
    pub fn publish(&mut self, topic: String, qos: QoS, retain: bool, payload: Vec<u8>, what: Sent) -> bool {
        match self.client.try_publish(topic, qos, retain, payload) {
            Ok(()) => {
                if qos != QoS::AtMostOnce {
                    self.sent.push_back(what);
                }
                true
            }
            Err(e) => {
                tracing::debug!("mqtt publish not queued: {e}");
                false
            }
        }
    }

    /// A clean end: the shutdown death (retained, QoS 1), then DISCONNECT, so
    /// the broker keeps the death and discards the will. Waits (bounded by
    /// `limit`) for the death's PubAck and the DISCONNECT on the wire.
    pub async fn close(mut self, topic: String, death: Vec<u8>, limit: Duration) {
        use rumqttc::{Outgoing, Packet};
        if self.connected && self.publish(topic, QoS::AtLeastOnce, true, death, Sent::Death) {
            let acked = tokio::time::timeout(limit, async {
                loop {
                    match self.next().await {
                        Ok(MqttEvent::Outgoing(Outgoing::Publish(pkid))) => {
                            if let Some(what) = self.sent.pop_front() {
                                self.pkids.insert(pkid, what);
                            }
                        }
                        Ok(MqttEvent::Incoming(Packet::PubAck(a))) => {
                            if matches!(self.pkids.remove(&a.pkid), Some(Sent::Death)) {
                                return true;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => return false,
                    }
                }
            })
            .await;
            if !matches!(acked, Ok(true)) {
                tracing::warn!("the shutdown death was not acknowledged within {limit:?}");
            }
        }
        if self.client.try_disconnect().is_ok() {
            let _ = tokio::time::timeout(limit, async {
                while let Ok(ev) = self.next().await {
                    if matches!(ev, MqttEvent::Outgoing(rumqttc::Outgoing::Disconnect)) {
                        break;
                    }
                }
            })
            .await;
        }
        self.poller.abort();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // A session dropped on an error ends its connection with it.
        self.poller.abort();
    }
}
