//! What the tower reports about itself: the metrics it publishes, the
//! samples, the health summary that rides with every telemetry batch, and
//! the retained per-device state (on change, rate-limited).

use super::actor::{json, strip_counters, Core};
use super::journal::now_ms;
use super::payloads::*;
use super::session::{Sent, Session};
use crate::supervisor::{ChildStatus, SupervisorMsg};
use crate::video::ai_state::AiStatus;
use crate::video::enhance::channels::EnhanceStatus;
use ractor::ActorRef;
use rumqttc::QoS;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl Core {
    pub(super) fn metrics() -> Vec<Metric> {
        let m = |name: &str, datatype: &str, unit: &str, description: &str| Metric {
            name: name.into(),
            datatype: datatype.into(),
            unit: unit.into(),
            description: description.into(),
        };
        vec![
            m("pressure_mmhg", "float", "mmHg", "cavity pressure (insufflator)"),
            m("set_pressure_mmhg", "float", "mmHg", "set pressure P1"),
            m("flow_lpm", "float", "L/min", "CO2 flow"),
            m("set_flow_lpm", "float", "L/min", "set flow"),
            m("supply_bar", "float", "bar", "CO2 supply pressure"),
            m("light_set_pct", "float", "%", "light intensity setpoint"),
            m("light_output_pct", "float", "%", "light output"),
            m("led_current_ma", "float", "mA", "LED current"),
            m("led_temp_c", "float", "degC", "LED temperature"),
            m("tip_temp_c", "float", "degC", "light cable tip temperature"),
            m("camera_temp_c", "float", "degC", "camera sensor temperature"),
            m("health.links.<device>", "string", "", "device link state"),
            m("health.ai", "string", "", "AI state"),
            m("health.enhancement", "string", "", "enhancement stage state"),
            m("health.enhanced_fraction", "float", "", "share of frames shown enhanced while the stage was active"),
            m("health.safe_state", "bool", "", "tower safe state latched"),
            m("health.active_alarms", "int", "", "active alarms"),
            m("health.children_down", "string", "", "supervised children not running"),
            m("health.restarts", "int", "", "supervisor restarts since start"),
            m("health.journal_unacked", "int", "", "journal records awaiting PubAck"),
            m("health.journal_dropped", "int", "", "journal records lost from memory"),
            m("health.commands_rate_limited", "int", "", "remote commands dropped unread for their client's rate"),
            m("dropped_batches", "int", "", "telemetry batches dropped while offline"),
        ]
    }

    pub(super) fn sample(&self) -> Sample {
        let i = self.channels.insufflator.borrow().clone();
        let l = self.channels.light.borrow().clone();
        let c = self.channels.camera.borrow().clone();
        Sample {
            at_ms: now_ms(),
            pressure_mmhg: i.pressure_mmhg,
            set_pressure_mmhg: self.setpoints.pressure_mmhg(),
            flow_lpm: i.flow_lpm,
            set_flow_lpm: self.setpoints.flow_lpm(),
            supply_bar: i.supply_bar,
            light_set_pct: self.setpoints.intensity_pct(),
            light_output_pct: l.output_pct,
            led_current_ma: l.current_ma,
            led_temp_c: l.led_temp_c,
            tip_temp_c: l.tip_temp_c,
            camera_temp_c: c.sensor_temp_c,
        }
    }

    fn ai_state(&self) -> String {
        match self.ai.as_ref().map(|a| a.status.borrow().clone()) {
            None => "disabled".into(),
            Some(AiStatus::Starting) => "starting".into(),
            Some(AiStatus::Online) => "online".into(),
            Some(AiStatus::Offline { .. }) => "offline".into(),
        }
    }

    fn enhancement(&self) -> (String, f32) {
        let Some(e) = self.enhance.as_ref() else { return ("disabled".into(), 0.0) };
        let state = match &*e.status.borrow() {
            EnhanceStatus::Off => "off",
            EnhanceStatus::Starting => "starting",
            EnhanceStatus::Active => "active",
            EnhanceStatus::Offline { .. } => "offline",
        };
        (state.into(), e.stats.enhanced_fraction())
    }

    pub(super) async fn health(&self) -> Health {
        let mut links = BTreeMap::new();
        links.insert("insufflator".into(), self.channels.insufflator.borrow().link.to_string());
        links.insert("light".into(), self.channels.light.borrow().link.to_string());
        links.insert("camera".into(), self.channels.camera.borrow().link.to_string());
        links.insert("pedal".into(), self.channels.pedal.borrow().link.to_string());
        let (mut restarts, mut down) = (0, Vec::new());
        for name in &self.supervisors {
            let Some(cell) = ractor::registry::where_is(name.clone()) else { continue };
            let r: ActorRef<SupervisorMsg> = cell.into();
            let status: Vec<ChildStatus> = ractor::call_t!(r, SupervisorMsg::Status, 200).unwrap_or_default();
            for c in status {
                restarts += c.restarts;
                if !c.running {
                    down.push(c.name);
                }
            }
        }
        let j = self.journal.stats();
        let (enhancement, enhanced_fraction) = self.enhancement();
        Health {
            links,
            ai: self.ai_state(),
            enhancement,
            enhanced_fraction,
            safe_state: self.setpoints.safe_state(),
            active_alarms: self.events.active_alarms().len(),
            children_down: down,
            restarts,
            journal_unacked: j.unacked,
            journal_dropped: j.dropped,
            commands_rate_limited: self.inbound.rate_limited,
        }
    }

    fn device_states(&self) -> Vec<(&'static str, serde_json::Value)> {
        let v = |x: Result<serde_json::Value, serde_json::Error>| x.unwrap_or(serde_json::Value::Null);
        let mut out = vec![
            ("insufflator", v(serde_json::to_value(&*self.channels.insufflator.borrow()))),
            ("light", v(serde_json::to_value(&*self.channels.light.borrow()))),
            ("camera", v(serde_json::to_value(&*self.channels.camera.borrow()))),
            ("pedal", v(serde_json::to_value(&*self.channels.pedal.borrow()))),
        ];
        if let Some(ai) = &self.ai {
            out.push(("ai", v(serde_json::to_value(&*ai.status.borrow()))));
        }
        let active_alarms = self
            .events
            .active_alarms()
            .into_iter()
            .map(|(e, acknowledged)| ActiveAlarm { key: e.key(), severity: e.severity, message: e.message, acknowledged })
            .collect();
        let tower = TowerState {
            safe_state: self.setpoints.safe_state(),
            set_pressure_mmhg: self.setpoints.pressure_mmhg(),
            set_flow_lpm: self.setpoints.flow_lpm(),
            intensity_pct: self.setpoints.intensity_pct(),
            remote_control: self.remote.enabled(),
            active_alarms,
        };
        out.push(("tower", v(serde_json::to_value(&tower))));
        out
    }

    /// Publish every changed state (all of them with `force`), rate-limited per device.
    pub(super) fn publish_states(&mut self, s: &mut Session, force: bool) {
        let min_gap = Duration::from_secs_f64(1.0 / self.cfg.state_max_hz);
        let now = Instant::now();
        for (device, state) in self.device_states() {
            let state = strip_counters(state);
            if !force {
                if let Some((last, at)) = self.states.get(device) {
                    if *last == state || now.duration_since(*at) < min_gap {
                        continue;
                    }
                }
            }
            let (tower, at_ms) = (self.tower.clone(), now_ms());
            let payload = |seq| json(&StateMsg { v: SCHEMA_VERSION, tower, seq, at_ms, device: device.into(), state: state.clone() });
            if s.publish_seq(self.topics.state(device), QoS::AtLeastOnce, true, payload, Sent::Other) {
                self.states.insert(device.to_string(), (state, now));
                self.stats.states_published.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
