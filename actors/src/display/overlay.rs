//! The overlay model: plain data for everything drawn over the live picture
//! (detection boxes and labels, exam panel, device panel, alarm banner,
//! status indicators), built from a snapshot of the tower's state. No
//! geometry here; [`super::scene`] lays it out, the renderers draw it.

use crate::device_status::{CameraStatus, InsufflatorStatus, LightStatus, PedalStatus};
use crate::events::{Event, Severity};
use crate::link::LinkState;
use crate::video::ai_state::{AiResult, AiStatus};
use crate::video::archive::ExamInfo;

/// Colours, RGBA8 (straight alpha).
pub type Rgba = [u8; 4];

/// Per-class box colours, in class-list order; classes beyond it reuse it.
pub const CLASS_COLOURS: [Rgba; 4] = [[255, 64, 64, 255], [64, 200, 255, 255], [255, 200, 0, 255], [180, 120, 255, 255]];

#[derive(Debug, Clone, PartialEq)]
pub struct BoxLabel {
    pub class_name: String,
    pub score: f32,
    /// Every class's probability at this lesion: (name, probability).
    pub probabilities: Vec<(String, f32)>,
    /// Box in frame pixels.
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
    pub colour: Rgba,
    pub high_risk: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExamPanel {
    pub number: String,
    pub sex: String,
    pub age: u32,
}

/// One device's line on the device panel.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceLine {
    pub device: &'static str,
    pub link: LinkState,
    /// `label value` pairs, already formatted with units; `--` when unknown.
    pub fields: Vec<(&'static str, String)>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DevicePanel {
    pub lines: Vec<DeviceLine>,
}

/// IEC 60601-1-8 alarm priority as shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlarmPriority {
    Low,
    Medium,
    High,
}

impl AlarmPriority {
    /// Flashing period and on-time, ms: high about 2 Hz, medium about 0.5 Hz
    /// (both 50 % duty), low steady.
    pub fn flash(self) -> Option<(u64, u64)> {
        match self {
            AlarmPriority::High => Some((500, 250)),
            AlarmPriority::Medium => Some((2000, 1000)),
            AlarmPriority::Low => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            AlarmPriority::High => "HIGH",
            AlarmPriority::Medium => "MEDIUM",
            AlarmPriority::Low => "LOW",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlarmBanner {
    pub priority: AlarmPriority,
    pub code: String,
    pub message: String,
    pub acknowledged: bool,
    /// Other active alarms not shown in the banner.
    pub more: usize,
}

impl AlarmBanner {
    /// Whether the banner is in its bright phase at `t_ms` (a monotonic clock).
    pub fn bright_at(&self, t_ms: u64) -> bool {
        match self.priority.flash() {
            Some((period, on)) => t_ms % period < on,
            None => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatusIndicators {
    /// `None` when the AI is online; the reason otherwise.
    pub ai_offline: Option<String>,
    /// The model is a demonstration (shown as "DEMO MODEL").
    pub ai_demo: bool,
    /// Why lesion alarms are off for this exam, when they are.
    pub lesion_alarms_off: Option<String>,
    /// The scene gate saw no image in the analysed frame.
    pub no_image: bool,
    /// `None` when there is no enhancement stage; else on/off and the
    /// fraction of frames enhanced.
    pub enhancement: Option<(bool, f32)>,
    /// All devices connected, no safe state, no high alarm.
    pub ready: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Overlay {
    pub detections: Vec<BoxLabel>,
    pub exam: ExamPanel,
    pub devices: DevicePanel,
    pub alarm: Option<AlarmBanner>,
    pub status: StatusIndicators,
}

/// A snapshot of the tower's state, from which the overlay is built.
#[derive(Debug, Clone, Default)]
pub struct OverlayInputs {
    pub insufflator: InsufflatorStatus,
    pub light: LightStatus,
    pub camera: CameraStatus,
    pub pedal: PedalStatus,
    pub ai: Option<AiStatus>,
    /// The result to draw (already limited in age by the caller).
    pub result: Option<AiResult>,
    pub class_names: Vec<String>,
    /// Classes marked high-risk when at or above the threshold.
    pub high_risk_classes: Vec<String>,
    pub high_risk_threshold: f32,
    pub exam: ExamInfo,
    /// Active alarms with their acknowledged flag.
    pub alarms: Vec<(Event, bool)>,
    pub enhancement: Option<(bool, f32)>,
    pub safe_state: bool,
}

fn opt(v: Option<f64>, decimals: usize, unit: &str) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$} {unit}"),
        _ => format!("-- {unit}"),
    }
}

fn priority(s: Severity) -> Option<AlarmPriority> {
    match s {
        Severity::High => Some(AlarmPriority::High),
        Severity::Medium => Some(AlarmPriority::Medium),
        Severity::Low => Some(AlarmPriority::Low),
        Severity::Info => None,
    }
}

impl Overlay {
    pub fn build(i: &OverlayInputs) -> Overlay {
        let detections = i
            .result
            .iter()
            .flat_map(|r| r.detections.iter())
            .map(|d| BoxLabel {
                class_name: d.class_name.clone(),
                score: d.score,
                probabilities: d
                    .probabilities
                    .iter()
                    .enumerate()
                    .map(|(k, p)| (i.class_names.get(k).cloned().unwrap_or_else(|| format!("class{k}")), *p))
                    .collect(),
                x0: d.x0,
                y0: d.y0,
                x1: d.x1,
                y1: d.y1,
                colour: CLASS_COLOURS[d.class % CLASS_COLOURS.len()],
                high_risk: i.high_risk_classes.contains(&d.class_name)
                    && d.score >= i.high_risk_threshold
                    && i.result.as_ref().is_some_and(|r| r.context.alarms_off.is_none()),
            })
            .collect();

        let ins = &i.insufflator;
        let light = &i.light;
        let devices = DevicePanel {
            lines: vec![
                DeviceLine {
                    device: "INSUF",
                    link: ins.link,
                    fields: vec![
                        ("set", format!("{:.1} mmHg", ins.set_pressure_mmhg)),
                        ("act", opt(ins.pressure_mmhg, 1, "mmHg")),
                        ("flow", format!("{} / {:.0} L/min", opt(ins.flow_lpm, 1, "").trim_end(), ins.set_flow_lpm)),
                        ("CO2", opt(ins.supply_bar, 0, "bar")),
                    ],
                },
                DeviceLine {
                    device: "LIGHT",
                    link: light.link,
                    fields: vec![
                        ("int", format!("{:.0} %", light.set_intensity_pct)),
                        ("LED", opt(light.led_temp_c, 1, "C")),
                        ("tip", opt(light.tip_temp_c, 1, "C")),
                        ("fan", if light.fan_on { "on".into() } else { "off".into() }),
                    ],
                },
                DeviceLine { device: "CAMERA", link: i.camera.link, fields: vec![] },
                DeviceLine { device: "PEDAL", link: i.pedal.link, fields: vec![] },
            ],
        };

        let mut shown: Vec<(AlarmPriority, &Event, bool)> =
            i.alarms.iter().filter_map(|(e, ack)| priority(e.severity).map(|p| (p, e, *ack))).collect();
        // Highest priority first; among equals, unacknowledged, then newest.
        shown.sort_by(|a, b| b.0.cmp(&a.0).then(a.2.cmp(&b.2)).then(b.1.seq.cmp(&a.1.seq)));
        let alarm = shown.first().map(|(p, e, ack)| AlarmBanner {
            priority: *p,
            code: e.code.clone(),
            message: e.message.clone(),
            acknowledged: *ack,
            more: shown.len() - 1,
        });

        let ai_offline = match &i.ai {
            Some(AiStatus::Online) => None,
            Some(AiStatus::Offline { reason }) => Some(reason.clone()),
            Some(AiStatus::Starting) => Some("starting".into()),
            None => Some("not configured".into()),
        };
        let links_ok = devices.lines.iter().all(|l| l.link == LinkState::Connected);
        let ready = links_ok && !i.safe_state && alarm.as_ref().is_none_or(|a| a.priority != AlarmPriority::High);

        Overlay {
            detections,
            exam: ExamPanel { number: i.exam.number.clone(), sex: i.exam.sex.clone(), age: i.exam.age },
            devices,
            alarm,
            status: StatusIndicators {
                ai_offline,
                ai_demo: i.result.as_ref().is_some_and(|r| r.context.demo),
                lesion_alarms_off: i.result.as_ref().and_then(|r| r.context.alarms_off.clone()),
                no_image: i.result.as_ref().is_some_and(|r| r.context.scene == crate::video::content_area::Scene::NoImage),
                enhancement: i.enhancement,
                ready,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    fn alarm(seq: u64, severity: Severity, code: &str) -> (Event, bool) {
        let e =
            Event { seq, at_ms: 0, kind: EventKind::AlarmRaised, severity, source: "t".into(), code: code.into(), message: code.into() };
        (e, false)
    }

    fn connected() -> OverlayInputs {
        let mut i = OverlayInputs { ai: Some(AiStatus::Online), ..OverlayInputs::default() };
        i.insufflator.link = LinkState::Connected;
        i.light.link = LinkState::Connected;
        i.camera.link = LinkState::Connected;
        i.pedal.link = LinkState::Connected;
        i
    }

    #[test]
    fn high_priority_flashes_at_2_hz_medium_at_half_hz_low_is_steady() {
        let banner = |priority| AlarmBanner { priority, code: "X".into(), message: String::new(), acknowledged: false, more: 0 };
        let phases = |p| (0..4000).step_by(125).map(|t| banner(p).bright_at(t)).collect::<Vec<_>>();
        // 125 ms steps: high is on 2 steps, off 2 steps (500 ms period).
        assert_eq!(&phases(AlarmPriority::High)[..8], &[true, true, false, false, true, true, false, false]);
        let medium = phases(AlarmPriority::Medium);
        assert!(medium[..8].iter().all(|b| *b) && medium[8..16].iter().all(|b| !*b), "1 s on, 1 s off");
        assert!(phases(AlarmPriority::Low).iter().all(|b| *b));
    }

    #[test]
    fn the_banner_shows_the_highest_priority_alarm_and_counts_the_rest() {
        let mut i = connected();
        i.alarms = vec![alarm(1, Severity::Medium, "SUPPLY_LOW"), alarm(2, Severity::High, "HZ-001"), alarm(3, Severity::Info, "NOTE")];
        let o = Overlay::build(&i);
        let a = o.alarm.unwrap();
        assert_eq!((a.priority, a.code.as_str(), a.more), (AlarmPriority::High, "HZ-001", 1), "information is not an alarm");
        assert!(!o.status.ready, "a high alarm clears the ready marker");
    }

    #[test]
    fn ai_offline_and_a_lost_link_show_and_clear_ready() {
        let o = Overlay::build(&connected());
        assert_eq!((o.status.ai_offline.clone(), o.status.ready), (None, true));
        let mut i = connected();
        i.ai = Some(AiStatus::Offline { reason: "hung past deadline".into() });
        i.camera.link = LinkState::Lost;
        let o = Overlay::build(&i);
        assert_eq!(o.status.ai_offline.as_deref(), Some("hung past deadline"));
        assert!(!o.status.ready);
        assert_eq!(o.devices.lines.iter().find(|l| l.device == "CAMERA").map(|l| l.link), Some(LinkState::Lost));
    }

    #[test]
    fn only_configured_classes_above_threshold_are_marked_high_risk() {
        use crate::video::ai_state::AiResult;
        use crate::video::detection::Detection;
        let d = |class: usize, name: &str, score: f32| Detection {
            class,
            class_name: name.into(),
            score,
            probabilities: vec![score, 1.0 - score],
            x0: 0.0,
            y0: 0.0,
            x1: 10.0,
            y1: 10.0,
        };
        let mut i = connected();
        i.class_names = vec!["adenoma".into(), "ulcer".into()];
        i.high_risk_classes = vec!["adenoma".into()];
        i.high_risk_threshold = 0.6;
        let now = std::time::Instant::now();
        i.result = Some(AiResult {
            frame_seq: 1,
            reason: crate::video::selector::Reason::Auto,
            captured_at: now,
            finished_at: now,
            detections: vec![d(0, "adenoma", 0.9), d(0, "adenoma", 0.5), d(1, "ulcer", 0.95)],
            high_risk: true,
            context: Default::default(),
        });
        let o = Overlay::build(&i);
        assert_eq!(o.detections.iter().map(|b| b.high_risk).collect::<Vec<_>>(), [true, false, false]);
        assert_eq!(o.detections[2].probabilities, [("adenoma".to_string(), 0.95), ("ulcer".to_string(), 0.050000012)]);
        assert_ne!(o.detections[0].colour, o.detections[2].colour, "classes have their own colours");
        assert!(!o.status.ai_demo && o.status.lesion_alarms_off.is_none());

        // A demo model in an exam it is not valid for: boxes drawn, none
        // high-risk, and the screen says why.
        if let Some(r) = i.result.as_mut() {
            r.context = crate::video::ai_state::AiContext {
                demo: true,
                alarms_off: Some("model not valid for laparoscopy".into()),
                ..Default::default()
            };
        }
        let o = Overlay::build(&i);
        assert_eq!(o.detections.len(), 3);
        assert!(o.detections.iter().all(|b| !b.high_risk));
        assert!(o.status.ai_demo);
        assert_eq!(o.status.lesion_alarms_off.as_deref(), Some("model not valid for laparoscopy"));
    }
}
