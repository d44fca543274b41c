//! The journal pump: every record the journal holds that the broker has not
//! acknowledged goes out in order (QoS 1, at most `JOURNAL_WINDOW` in
//! flight); a PubAck moves the journal's acknowledged position. A record too
//! large to publish is replaced by a notice with its digest (and an alarm),
//! so it can never block the records behind it.

use super::actor::{json, Core, JOURNAL_WINDOW};
use super::inbound::digest;
use super::journal::{Record, Stream};
use super::payloads::*;
use super::session::{Sent, Session, MAX_OUTGOING_PACKET};
use crate::events::{Event, Severity};
use rumqttc::QoS;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Room left in a packet for the topic and MQTT header.
const PAYLOAD_LIMIT: usize = MAX_OUTGOING_PACKET - 1024;

impl Core {
    /// The topic and payload of journal record `r`, numbered `seq`.
    fn record_payload(&self, seq: u64, r: &Record) -> (String, Vec<u8>) {
        match r.stream {
            Stream::Event => {
                let msg = match serde_json::from_value::<Event>(r.body.clone()) {
                    Ok(e) => json(&EventMsg {
                        v: SCHEMA_VERSION,
                        tower: self.tower.clone(),
                        seq,
                        id: r.id.clone(),
                        n: r.n,
                        at_ms: e.at_ms,
                        category: Category::of(&e),
                        kind: e.kind,
                        severity: e.severity,
                        source: e.source,
                        code: e.code,
                        message: e.message,
                    }),
                    // A record from another version: publish it as it is, with its id.
                    Err(_) => json(&serde_json::json!({"v": SCHEMA_VERSION, "tower": self.tower, "id": r.id, "n": r.n, "record": r.body})),
                };
                (self.topics.events(), msg)
            }
            Stream::Command => {
                let msg = match serde_json::from_value::<CommandRecordBody>(r.body.clone()) {
                    Ok(b) => json(&CommandMsg {
                        v: SCHEMA_VERSION,
                        tower: self.tower.clone(),
                        seq,
                        id: r.id.clone(),
                        n: r.n,
                        at_ms: r.at_ms,
                        client: b.client,
                        command: b.command,
                        response: b.response,
                    }),
                    Err(_) => json(&serde_json::json!({"v": SCHEMA_VERSION, "tower": self.tower, "id": r.id, "n": r.n, "record": r.body})),
                };
                (self.topics.commands(), msg)
            }
        }
    }

    /// Hand the next journal records to the client, up to the window.
    pub(super) fn pump_journal(&mut self, s: &mut Session) {
        while s.connected && s.journal_inflight < JOURNAL_WINDOW {
            let batch = self.journal.records_after(s.cursor, JOURNAL_WINDOW - s.journal_inflight);
            if batch.is_empty() {
                return;
            }
            for r in batch {
                let (topic, payload) = self.record_payload(s.seq + 1, &r);
                let payload = self.publishable(&r, payload);
                let n = r.n;
                if !s.publish_seq(topic, QoS::AtLeastOnce, false, |_| payload, Sent::Journal(n)) {
                    return; // client queue full: retried on the next ack or tick
                }
                s.cursor = r.n;
                s.journal_inflight += 1;
                self.stats.journal_published.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// `payload`, or, when it cannot go out in one packet, a notice that
    /// names the record and its digest (and an alarm).
    fn publishable(&self, r: &Record, payload: Vec<u8>) -> Vec<u8> {
        if payload.len() <= PAYLOAD_LIMIT {
            return payload;
        }
        self.events.raise(
            "telemetry",
            "JOURNAL_RECORD_TOO_LARGE",
            Severity::Medium,
            format!("journal record {} ({} bytes) is larger than an MQTT packet: its digest is published instead", r.id, payload.len()),
        );
        json(&serde_json::json!({"v": SCHEMA_VERSION, "tower": self.tower, "id": r.id, "n": r.n, "too_large": digest(&payload)}))
    }

    /// The broker acknowledged packet `pkid`.
    pub(super) fn on_puback(&mut self, s: &mut Session, pkid: u16) {
        s.last_ack = Instant::now();
        if let Some(Sent::Journal(n)) = s.pkids.remove(&pkid) {
            s.journal_inflight = s.journal_inflight.saturating_sub(1);
            self.journal.ack(n);
        }
        if self.link.state() == super::link::MqttLinkState::Degraded {
            self.link.recovered("acknowledgements flowing again");
            self.set_link_stat(self.link.state());
        }
        self.pump_journal(s);
    }
}
