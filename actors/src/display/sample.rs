//! A representative overlay for benchmarks, golden images and snapshots of a
//! tower in normal operation: every device connected, AI online with two
//! detections (one high-risk), exam info set.

use super::overlay::OverlayInputs;
use crate::device_status::{CameraStatus, InsufflatorStatus, LightStatus, PedalStatus};
use crate::link::LinkState;
use crate::video::ai_state::{AiResult, AiStatus};
use crate::video::archive::ExamInfo;
use crate::video::detection::Detection;
use crate::video::selector::Reason;
use std::time::Instant;

fn det(class: usize, name: &str, score: f32, probs: [f32; 3], b: [f32; 4]) -> Detection {
    Detection { class, class_name: name.into(), score, probabilities: probs.to_vec(), x0: b[0], y0: b[1], x1: b[2], y1: b[3] }
}

/// Normal operation on a `width` x `height` picture (boxes scale with it).
pub fn normal_inputs(width: u32, height: u32) -> OverlayInputs {
    let now = Instant::now();
    let (sx, sy) = (width as f32 / 640.0, height as f32 / 360.0);
    let scaled = |b: [f32; 4]| [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy];
    OverlayInputs {
        insufflator: InsufflatorStatus {
            link: LinkState::Connected,
            set_pressure_mmhg: 12.0,
            set_flow_lpm: 20.0,
            pressure_mmhg: Some(11.9),
            flow_lpm: Some(3.2),
            supply_bar: Some(48.0),
            ..InsufflatorStatus::default()
        },
        light: LightStatus {
            link: LinkState::Connected,
            set_intensity_pct: 80.0,
            led_temp_c: Some(45.2),
            tip_temp_c: Some(38.1),
            fan_on: true,
            ..LightStatus::default()
        },
        camera: CameraStatus { link: LinkState::Connected, ..CameraStatus::default() },
        pedal: PedalStatus { link: LinkState::Connected, ..PedalStatus::default() },
        ai: Some(AiStatus::Online),
        result: Some(AiResult {
            frame_seq: 12,
            reason: Reason::Auto,
            captured_at: now,
            finished_at: now,
            detections: vec![
                det(0, "adenoma", 0.91, [0.91, 0.06, 0.03], scaled([300.0, 150.0, 360.0, 200.0])),
                det(2, "ulcer", 0.77, [0.10, 0.13, 0.77], scaled([120.0, 220.0, 170.0, 262.0])),
            ],
            high_risk: true,
            context: Default::default(),
        }),
        class_names: vec!["adenoma".into(), "hyperplastic".into(), "ulcer".into()],
        high_risk_classes: vec!["adenoma".into()],
        high_risk_threshold: 0.5,
        exam: ExamInfo { number: "E-2026-0117".into(), sex: "F".into(), age: 61, ..ExamInfo::default() },
        alarms: vec![],
        enhancement: None,
        safe_state: false,
    }
}
