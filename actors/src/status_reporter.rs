//! Periodic status lines in the log: set and actual pressure, flow, supply,
//! light, temperatures, link states and active alarms.

use crate::device_status::DeviceChannels;
use crate::events::EventBus;
use crate::supervisor::Liveness;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::time::Duration;

pub struct StatusArgs {
    pub channels: DeviceChannels,
    pub video: Option<crate::video::channels::VideoChannels>,
    pub events: EventBus,
    pub interval: Duration,
    pub liveness: Liveness,
}

pub struct StatusReporter;

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "--".to_string(), |v| format!("{v:.prec$}"))
}

/// One human-readable status line.
pub fn status_line(ch: &DeviceChannels, events: &EventBus) -> String {
    let i = ch.insufflator.borrow().clone();
    let l = ch.light.borrow().clone();
    let c = ch.camera.borrow().clone();
    let p = ch.pedal.borrow().clone();
    let alarms: Vec<String> = events.active_alarms().into_iter().map(|(e, _)| e.key()).collect();
    format!(
        "insufflator[{}] {:?} P {}/{:.1} mmHg flow {}/{:.1} L/min duty {:.1}% supply {} bar | light[{}] set {:.0}% I {}/{:.0} mA output {}% LED {} C tip {} C fan {} | camera[{}] {}x{}@{} | pedal[{}] presses {} | alarms {:?}",
        i.link, i.phase, opt(i.pressure_mmhg, 2), i.set_pressure_mmhg, opt(i.flow_lpm, 2), i.set_flow_lpm, i.duty_pct, opt(i.supply_bar, 1),
        l.link, l.set_intensity_pct, opt(l.current_ma, 0), l.target_current_ma, opt(l.output_pct, 1), opt(l.led_temp_c, 1), opt(l.tip_temp_c, 1), if l.fan_on { "on" } else { "off" },
        c.link, c.width, c.height, c.fps, p.link, p.presses, alarms
    )
}

/// The video part of the status line.
pub fn video_line(v: &crate::video::channels::VideoChannels) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let shown = v.display.lock().map(|d| (d.shown, d.skipped)).unwrap_or((0, 0));
    let ai = match &*v.ai.status.borrow() {
        crate::video::ai_state::AiStatus::Starting => "starting".to_string(),
        crate::video::ai_state::AiStatus::Online => "online".to_string(),
        crate::video::ai_state::AiStatus::Offline { reason } => format!("OFFLINE ({reason})"),
    };
    let last = v.ai.result.borrow().as_ref().map_or("none".to_string(), |r| {
        let d: Vec<String> = r.detections.iter().map(|d| format!("{} {:.2}", d.class_name, d.score)).collect();
        format!("frame {} [{}] {} ms", r.frame_seq, d.join(", "), r.annotation_delay().as_millis())
    });
    let a = &v.analysis;
    let e = &v.enhance;
    let enhance = if *e.switch.borrow() {
        let st = &e.stats;
        format!(
            " | enhance {:?} classified {} deblurred {} shown enhanced/sharp/late/raw {}/{}/{}/{}",
            *e.status.borrow(),
            st.classified.load(Relaxed),
            st.deblurred.load(Relaxed),
            st.shown_enhanced.load(Relaxed),
            st.shown_sharp.load(Relaxed),
            st.shown_late.load(Relaxed),
            st.shown_bypassed.load(Relaxed)
        )
    } else {
        String::new()
    };
    format!(
        "video captured {} shown {} skipped {} | AI {ai} picks pedal/freeze/auto {}/{}/{} last {last}{enhance}",
        v.capture.last_seq.load(Relaxed),
        shown.0,
        shown.1,
        a.picks_pedal.load(Relaxed),
        a.picks_freeze.load(Relaxed),
        a.picks_auto.load(Relaxed)
    )
}

impl Actor for StatusReporter {
    type Msg = ();
    type State = StatusArgs;
    type Arguments = StatusArgs;

    async fn pre_start(&self, myself: ActorRef<()>, a: StatusArgs) -> Result<Self::State, ActorProcessingErr> {
        a.liveness.beat();
        myself.send_interval(a.interval, || ());
        Ok(a)
    }

    async fn handle(&self, _myself: ActorRef<()>, _msg: (), a: &mut Self::State) -> Result<(), ActorProcessingErr> {
        a.liveness.beat();
        let mut line = status_line(&a.channels, &a.events);
        if let Some(v) = &a.video {
            line.push_str(&format!(" | {}", video_line(v)));
        }
        tracing::info!(target: "endotower::status", "{line}");
        Ok(())
    }
}
