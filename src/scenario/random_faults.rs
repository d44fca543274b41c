//! The soak's random faults: a seeded draw of fault steps (and the steps
//! that clear them) over the whole run, added to the scenario's timeline.

use super::file::{Action, RandomFaultKind, RandomFaults, Step};
use endotower_sim::faults::{Channel, Fault, FaultKind};
use endotower_sim::rng::Rng;
use endotower_sim::Device;

/// Picks one of `xs`.
fn pick<'a, T>(rng: &mut Rng, xs: &'a [T]) -> &'a T {
    &xs[(rng.next_u64() % xs.len() as u64) as usize]
}

/// Actors the soak crashes and hangs: every leaf of the control and video planes.
const SOAK_ACTORS: &[&str] =
    &["insufflator", "light", "camera", "pedal", "commands", "status", "capture", "display", "selector", "inference"];

/// Fault steps from `spec` between `warm_s` and `duration_s`, with `p2` the
/// relief threshold (surges go past it) and `led_max_c` the LED limit.
pub fn draw(spec: &RandomFaults, seed: u64, duration_s: f64, p2: f64, led_max_c: f64) -> Vec<Step> {
    let mut rng = Rng::new(seed, 0x5EED_50A4);
    let mut steps = Vec::new();
    let mut t = 0.0;
    let mut busy_until = 0.0f64;
    loop {
        // One fault at a time: the next starts after the last is cleared
        // (a surge during a pulled cable could not be vented by anyone).
        t = (t - spec.mean_interval_s * rng.unit().ln()).max(busy_until + 1.0);
        // Leave the last stretch quiet so every fault is cleared and judged.
        if t > duration_s * 0.9 {
            break;
        }
        let [lo, hi] = spec.fault_s;
        let end = (t + lo + (hi - lo) * rng.unit()).min(duration_s * 0.95);
        busy_until = end;
        let mut add = |at_s: f64, action: Action| steps.push(Step { at_s, action, may_fail: false });
        match *pick(&mut rng, &spec.kinds) {
            RandomFaultKind::Surge => add(t, Action::InjectPressure { mmhg: p2 + 4.0 }),
            RandomFaultKind::LeakStep => {
                add(t, Action::SimFault { device: Device::Insufflator, fault: Fault::LeakStep(8.0) });
                add(end, Action::SimClear { device: Device::Insufflator, kind: FaultKind::LeakStep });
            }
            RandomFaultKind::LedOverTemp => add(t, Action::SetLedTemp { celsius: led_max_c + 5.0 }),
            RandomFaultKind::FanFailure => {
                add(t, Action::SimFault { device: Device::Light, fault: Fault::FanFailure });
                add(end, Action::SimClear { device: Device::Light, kind: FaultKind::FanFailure });
            }
            RandomFaultKind::LinkDrop => {
                let dev = *pick(&mut rng, &[Device::Insufflator, Device::Light, Device::Camera, Device::Pedal]);
                add(t, Action::SimFault { device: dev, fault: Fault::LinkDrop });
                add(end, Action::SimClear { device: dev, kind: FaultKind::LinkDrop });
            }
            RandomFaultKind::SensorNan => {
                add(t, Action::SimFault { device: Device::Insufflator, fault: Fault::SensorNan(Channel::Pressure) });
                add(end, Action::SimClear { device: Device::Insufflator, kind: FaultKind::SensorNan });
            }
            RandomFaultKind::ActorPanic => add(t, Action::ActorPanic { actor: pick(&mut rng, SOAK_ACTORS).to_string() }),
            RandomFaultKind::ActorHang => add(t, Action::ActorHang { actor: pick(&mut rng, SOAK_ACTORS).to_string(), ms: 1500 }),
            RandomFaultKind::AiNan => add(t, Action::AiNan),
            RandomFaultKind::PedalPress => add(t, Action::PedalPress),
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RandomFaults {
        RandomFaults {
            mean_interval_s: 60.0,
            fault_s: [5.0, 20.0],
            kinds: vec![RandomFaultKind::LeakStep, RandomFaultKind::ActorPanic, RandomFaultKind::Surge],
        }
    }

    #[test]
    fn the_draw_is_repeatable_per_seed_and_differs_between_seeds() {
        let a = draw(&spec(), 7, 3600.0, 22.0, 75.0);
        let b = draw(&spec(), 7, 3600.0, 22.0, 75.0);
        let c = draw(&spec(), 8, 3600.0, 22.0, 75.0);
        let key = |s: &[Step]| s.iter().map(|x| format!("{:.3} {:?}", x.at_s, x.action)).collect::<Vec<_>>();
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&c));
        // About one fault a minute over an hour (0.9 of it drawn).
        let faults = a.iter().filter(|s| s.action.is_fault()).count();
        assert!((30..=90).contains(&faults), "{faults} faults");
        assert!(a.iter().all(|s| s.at_s <= 3600.0 * 0.95));
    }
}
