//! The HMI keys of the window output, after the seed's HMI screen: set
//! pressure, flow and light intensity, acknowledge alarms, press a virtual
//! pedal. A key becomes an [`HmiAction`] (pure, unit-tested); setpoint
//! changes and acknowledgements then go through the validated command path
//! ([`crate::commands`]) as `CommandSource::Hmi`, so the operator limits and
//! the safe-state lock hold, and every change is logged and published there.
//!
//! | key | action |
//! |---|---|
//! | Up / Down | set pressure +1 / -1 mmHg |
//! | Right / Left | flow +1 / -1 L/min |
//! | Page Up / Page Down | light intensity +5 / -5 % |
//! | A | acknowledge every active alarm |
//! | Space | virtual foot pedal (target frame + still) |
//! | E | enhancement stage on / off |

use crate::commands::{self, Command, CommandSource};
use crate::device_status::PedalPress;
use crate::events::{EventBus, EventKind, Severity};
use crate::setpoints::Setpoints;
use tokio::sync::{broadcast, mpsc, watch};

pub const PRESSURE_STEP_MMHG: f64 = 1.0;
pub const FLOW_STEP_LPM: f64 = 1.0;
pub const INTENSITY_STEP_PCT: f64 = 5.0;

/// The keys the HMI understands (the window maps its keyboard onto these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmiKey {
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Acknowledge,
    Pedal,
    Enhance,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HmiAction {
    Submit(Command),
    AcknowledgeAll,
    Pedal,
    ToggleEnhancement,
}

/// What a key asks for, given the setpoints in force.
pub fn action(key: HmiKey, sp: &Setpoints) -> HmiAction {
    let round1 = |v: f64| (v * 10.0).round() / 10.0;
    match key {
        HmiKey::Up => HmiAction::Submit(Command::SetPressure { mmhg: round1(sp.pressure_mmhg() + PRESSURE_STEP_MMHG) }),
        HmiKey::Down => HmiAction::Submit(Command::SetPressure { mmhg: round1(sp.pressure_mmhg() - PRESSURE_STEP_MMHG) }),
        HmiKey::Right => HmiAction::Submit(Command::SetFlow { lpm: round1(sp.flow_lpm() + FLOW_STEP_LPM) }),
        HmiKey::Left => HmiAction::Submit(Command::SetFlow { lpm: round1(sp.flow_lpm() - FLOW_STEP_LPM) }),
        HmiKey::PageUp => HmiAction::Submit(Command::SetIntensity { pct: round1(sp.intensity_pct() + INTENSITY_STEP_PCT) }),
        HmiKey::PageDown => HmiAction::Submit(Command::SetIntensity { pct: round1(sp.intensity_pct() - INTENSITY_STEP_PCT) }),
        HmiKey::Acknowledge => HmiAction::AcknowledgeAll,
        HmiKey::Pedal => HmiAction::Pedal,
        HmiKey::Enhance => HmiAction::ToggleEnhancement,
    }
}

/// Where the HMI's actions go.
pub struct HmiTargets {
    /// Registered name of the command actor (looked up per action, so a
    /// restarted command actor is found).
    pub command_actor: String,
    pub setpoints: Setpoints,
    pub events: EventBus,
    pub pedal: broadcast::Sender<PedalPress>,
    /// The enhancement stage's on/off switch.
    pub enhance: watch::Sender<bool>,
}

/// Keys queued in order beyond this are dropped (and logged): a stuck
/// command path must not let presses pile up and fire later.
const QUEUE: usize = 16;

/// The HMI's entry point. Cheap to clone.
#[derive(Clone)]
pub struct HmiPort {
    keys: mpsc::Sender<HmiKey>,
}

impl HmiPort {
    /// Start the task that carries out key presses, one after the other:
    /// each step is computed from the setpoints in force once the previous
    /// one has been applied, so quick presses are never lost or merged.
    /// Call within a tokio runtime.
    pub fn spawn(t: HmiTargets) -> HmiPort {
        let (keys, mut rx) = mpsc::channel(QUEUE);
        tokio::spawn(async move {
            while let Some(key) = rx.recv().await {
                t.carry_out(key).await;
            }
        });
        HmiPort { keys }
    }

    /// Queue a key press. Never blocks the caller (the window's event loop).
    pub fn key(&self, key: HmiKey) {
        if let Err(e) = self.keys.try_send(key) {
            tracing::warn!(?key, "hmi: key dropped ({e})");
        }
    }
}

impl HmiTargets {
    async fn carry_out(&self, key: HmiKey) {
        let act = action(key, &self.setpoints);
        tracing::info!(?key, ?act, "hmi: key");
        match act {
            HmiAction::Pedal => {
                self.events.event(EventKind::Command, Severity::Info, "hmi", "VIRTUAL_PEDAL", "hmi: virtual pedal pressed");
                if self.pedal.send(PedalPress { number: 0 }).is_err() {
                    tracing::warn!("hmi: virtual pedal pressed but nothing listens for presses (video off?)");
                }
            }
            HmiAction::ToggleEnhancement => {
                let on = !*self.enhance.borrow();
                self.enhance.send_replace(on);
                let what = if on { "on" } else { "off" };
                self.events.event(EventKind::Command, Severity::Info, "hmi", "ENHANCEMENT", format!("hmi: enhancement switched {what}"));
            }
            HmiAction::Submit(cmd) => self.submit(cmd).await,
            HmiAction::AcknowledgeAll => {
                let unacked: Vec<String> =
                    self.events.active_alarms().into_iter().filter(|(_, acked)| !acked).map(|(e, _)| e.key()).collect();
                if unacked.is_empty() {
                    tracing::info!("hmi: acknowledge pressed with no unacknowledged alarm");
                }
                for key in unacked {
                    self.submit(Command::AckAlarm { key }).await;
                }
            }
        }
    }

    async fn submit(&self, command: Command) {
        // The command path logs and publishes the outcome itself.
        match commands::submit(&self.command_actor, CommandSource::Hmi, command.clone()).await {
            Ok(Ok(a)) => tracing::info!("hmi: {}", a.description),
            Ok(Err(rej)) => tracing::warn!("hmi: {command:?} rejected: {rej}"),
            Err(e) => tracing::error!("hmi: {command:?} not applied: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrow_and_page_keys_step_the_setpoints_in_force() {
        let sp = Setpoints::new(12.0, 10.0, 80.0);
        assert_eq!(action(HmiKey::Up, &sp), HmiAction::Submit(Command::SetPressure { mmhg: 13.0 }));
        assert_eq!(action(HmiKey::Down, &sp), HmiAction::Submit(Command::SetPressure { mmhg: 11.0 }));
        assert_eq!(action(HmiKey::Right, &sp), HmiAction::Submit(Command::SetFlow { lpm: 11.0 }));
        assert_eq!(action(HmiKey::Left, &sp), HmiAction::Submit(Command::SetFlow { lpm: 9.0 }));
        assert_eq!(action(HmiKey::PageUp, &sp), HmiAction::Submit(Command::SetIntensity { pct: 85.0 }));
        assert_eq!(action(HmiKey::PageDown, &sp), HmiAction::Submit(Command::SetIntensity { pct: 75.0 }));
        assert_eq!(action(HmiKey::Acknowledge, &sp), HmiAction::AcknowledgeAll);
        assert_eq!(action(HmiKey::Pedal, &sp), HmiAction::Pedal);
    }

    #[test]
    fn a_step_past_the_limit_is_asked_for_and_left_to_the_command_path_to_refuse() {
        // The HMI does not clamp: the validated command path is the one place
        // limits are enforced, and its refusal is logged.
        let sp = Setpoints::new(25.0, 10.0, 100.0);
        let HmiAction::Submit(cmd) = action(HmiKey::PageUp, &sp) else { panic!("expected a command") };
        let limits = crate::config::LimitsConfig::default();
        assert!(crate::commands::validate(&cmd, &limits).is_err(), "{cmd:?} should be out of range");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hz022_quick_presses_each_step_once_through_the_command_path_and_stop_at_the_limit() {
        use crate::commands::{CommandActor, CommandArgs};
        let (sp, events) = (Setpoints::new(20.0, 10.0, 80.0), EventBus::new(256));
        let mut log = events.subscribe();
        let args = CommandArgs {
            limits: crate::config::LimitsConfig::default(),
            setpoints: sp.clone(),
            events: events.clone(),
            exam: None,
            liveness: None,
        };
        let (actor, handle) = ractor::Actor::spawn(Some("hmi-test.commands".into()), CommandActor, args).await.unwrap();
        let hmi = HmiPort::spawn(HmiTargets {
            command_actor: "hmi-test.commands".into(),
            setpoints: sp.clone(),
            events: events.clone(),
            pedal: broadcast::channel(4).0,
            enhance: watch::channel(false).0,
        });
        // Seven presses in a burst: 20 -> 25 is five steps, then two refusals.
        for _ in 0..7 {
            hmi.key(HmiKey::Up);
        }
        let (mut accepted, mut rejected) = (Vec::new(), 0);
        while accepted.len() + rejected < 7 {
            let e = tokio::time::timeout(std::time::Duration::from_secs(10), log.recv()).await.unwrap().unwrap();
            match e.code.as_str() {
                "ACCEPTED" => accepted.push(e.message),
                "REJECTED" => rejected += 1,
                _ => {}
            }
        }
        assert_eq!(accepted.len(), 5, "{accepted:?}");
        assert!(accepted[0].starts_with("hmi: set pressure 20.0 -> 21.0"), "{accepted:?}");
        assert!(accepted[4].starts_with("hmi: set pressure 24.0 -> 25.0"), "{accepted:?}");
        assert_eq!(rejected, 2);
        assert_eq!(sp.pressure_mmhg(), 25.0);
        actor.stop(None);
        handle.await.unwrap();
    }
}
