//! Layout: the overlay model placed on a frame of a given size, as a list of
//! alpha-blended filled rectangles and text runs. Both renderers draw exactly
//! this, so they agree on geometry. Every text run lies inside a filled
//! rectangle (its panel) and is clipped to it, so the union of the
//! rectangles is everything the overlay touches: the pass-through promise is
//! "every pixel outside [`Scene::fills`] equals the camera pixel".
//!
//! The font is monospaced (DejaVu Sans Mono), so a text's width is its
//! character count times the advance, and panels are sized without shaping.

use super::overlay::{AlarmPriority, Overlay, Rgba};
use crate::link::LinkState;

/// Advance of DejaVu Sans Mono, in em.
pub const MONO_ADVANCE_EM: f32 = 0.6021;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
}

impl Rect {
    pub fn contains(&self, x: i32, y: i32) -> bool {
        x >= self.x && y >= self.y && x < self.x + self.w && y < self.y + self.h
    }

    /// Clipped to a `width` x `height` image; `None` if nothing is left.
    pub fn clip(&self, width: u32, height: u32) -> Option<Rect> {
        let (x0, y0) = (self.x.max(0), self.y.max(0));
        let (x1, y1) = ((self.x + self.w).min(width as i32), (self.y + self.h).min(height as i32));
        (x1 > x0 && y1 > y0).then_some(Rect { x: x0, y: y0, w: x1 - x0, h: y1 - y0 })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    pub rect: Rect,
    pub colour: Rgba,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Text {
    /// Top-left of the text's line box.
    pub x: i32,
    pub y: i32,
    pub size_px: f32,
    pub line_px: f32,
    pub colour: Rgba,
    pub text: String,
    /// Glyphs are clipped to this (the panel the text sits on).
    pub clip: Rect,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scene {
    pub width: u32,
    pub height: u32,
    pub fills: Vec<Fill>,
    pub texts: Vec<Text>,
}

impl Scene {
    /// Whether the overlay may touch pixel (x, y).
    pub fn covers(&self, x: i32, y: i32) -> bool {
        self.fills.iter().any(|f| f.rect.contains(x, y))
    }
}

const WHITE: Rgba = [255, 255, 255, 255];
const BLACK: Rgba = [0, 0, 0, 255];
const PANEL: Rgba = [0, 0, 0, 170];
const OK_GREEN: Rgba = [80, 230, 120, 255];
const AMBER: Rgba = [255, 170, 0, 255];
const RED: Rgba = [255, 70, 70, 255];

struct Metrics {
    size: f32,
    line: f32,
    advance: f32,
    pad: i32,
    margin: i32,
    stroke: i32,
}

impl Metrics {
    fn for_height(height: u32) -> Metrics {
        let s = (height as f32 / 720.0).max(0.4);
        let size = (16.0 * s).round().max(9.0);
        Metrics {
            size,
            line: (size * 1.25).round(),
            advance: size * MONO_ADVANCE_EM,
            pad: (5.0 * s).round().max(2.0) as i32,
            margin: (10.0 * s).round().max(3.0) as i32,
            stroke: (3.0 * s).round().max(2.0) as i32,
        }
    }

    fn text_width(&self, text: &str) -> i32 {
        (text.chars().count() as f32 * self.advance).ceil() as i32
    }
}

/// Lines of text on one panel; returns the panel's rectangle.
fn panel(scene: &mut Scene, m: &Metrics, x: i32, y: i32, bg: Rgba, lines: &[(String, Rgba)]) -> Rect {
    let w = lines.iter().map(|(t, _)| m.text_width(t)).max().unwrap_or(0) + 2 * m.pad;
    let h = lines.len() as i32 * m.line as i32 + 2 * m.pad;
    let rect = Rect { x, y, w, h };
    scene.fills.push(Fill { rect, colour: bg });
    for (k, (text, colour)) in lines.iter().enumerate() {
        scene.texts.push(Text {
            x: x + m.pad,
            y: y + m.pad + k as i32 * m.line as i32,
            size_px: m.size,
            line_px: m.line,
            colour: *colour,
            text: text.clone(),
            clip: rect,
        });
    }
    rect
}

fn panel_width(m: &Metrics, lines: &[(String, Rgba)]) -> i32 {
    lines.iter().map(|(t, _)| m.text_width(t)).max().unwrap_or(0) + 2 * m.pad
}

fn link_word(l: LinkState) -> (&'static str, Rgba) {
    match l {
        LinkState::Connected => ("OK", OK_GREEN),
        LinkState::Connecting => ("CONNECTING", AMBER),
        LinkState::Degraded => ("DEGRADED", AMBER),
        LinkState::Lost => ("LINK LOST", RED),
    }
}

/// Lay `overlay` out on a `width` x `height` frame at monotonic time `t_ms`
/// (which sets the alarm banner's flash phase).
pub fn layout(overlay: &Overlay, width: u32, height: u32, t_ms: u64) -> Scene {
    let m = Metrics::for_height(height);
    let mut scene = Scene { width, height, ..Scene::default() };
    let (w, h) = (width as i32, height as i32);

    // Detection boxes: an outline in the class colour, the label above.
    for d in &overlay.detections {
        let (x0, y0) = (d.x0.round() as i32, d.y0.round() as i32);
        let (x1, y1) = (d.x1.round() as i32, d.y1.round() as i32);
        let (bw, bh, t) = ((x1 - x0).max(1), (y1 - y0).max(1), m.stroke);
        for rect in [
            Rect { x: x0 - t, y: y0 - t, w: bw + 2 * t, h: t },
            Rect { x: x0 - t, y: y1, w: bw + 2 * t, h: t },
            Rect { x: x0 - t, y: y0, w: t, h: bh },
            Rect { x: x1, y: y0, w: t, h: bh },
        ] {
            scene.fills.push(Fill { rect, colour: d.colour });
        }
        let others: Vec<String> = d
            .probabilities
            .iter()
            .filter(|(n, _)| *n != d.class_name)
            .map(|(n, p)| format!("{} {:.0}%", n.chars().take(3).collect::<String>(), p * 100.0))
            .collect();
        let mut label = format!("{}{} {:.0}%", if d.high_risk { "! " } else { "" }, d.class_name, d.score * 100.0);
        if !others.is_empty() {
            label = format!("{label}  {}", others.join(" "));
        }
        let lines = [(label, d.colour)];
        let lh = m.line as i32 + 2 * m.pad;
        let ly = if y0 - t - lh >= 0 { y0 - t - lh } else { y1 + t };
        let lx = (x0 - t).clamp(0, (w - panel_width(&m, &lines)).max(0));
        panel(&mut scene, &m, lx, ly, PANEL, &lines);
    }

    // Exam panel, top left.
    let e = &overlay.exam;
    let exam = if e.number.is_empty() {
        "EXAM  --".to_string()
    } else {
        format!("EXAM {}  {}  {} y", e.number, if e.sex.is_empty() { "-" } else { &e.sex }, e.age)
    };
    panel(&mut scene, &m, m.margin, m.margin, PANEL, &[(exam, WHITE)]);

    // Status indicators, top right, stacked.
    let s = &overlay.status;
    let mut status: Vec<(String, Rgba)> = Vec::new();
    status.push(if s.ready { ("READY".into(), OK_GREEN) } else { ("NOT READY".into(), AMBER) });
    match &s.ai_offline {
        None => status.push(("AI online".into(), OK_GREEN)),
        Some(reason) => {
            let r: String = reason.chars().take(28).collect();
            status.push((format!("AI OFFLINE: {r}"), AMBER));
        }
    }
    if s.ai_offline.is_none() && s.no_image {
        status.push(("NO IMAGE - AI paused".into(), AMBER));
    }
    if s.ai_offline.is_none() && s.ai_demo {
        status.push(("DEMO MODEL - not for diagnosis".into(), AMBER));
    }
    if let (None, Some(why), false) = (&s.ai_offline, &s.lesion_alarms_off, s.no_image) {
        let r: String = why.chars().take(32).collect();
        status.push((format!("LESION ALARMS OFF: {r}"), AMBER));
    }
    if let Some((on, frac)) = s.enhancement {
        status.push((if on { format!("ENHANCE ON {:.0}%", frac * 100.0) } else { "ENHANCE OFF".into() }, WHITE));
    }
    let sw = panel_width(&m, &status);
    let ai_bg = if s.ai_offline.is_some() { [90, 50, 0, 200] } else { PANEL };
    panel(&mut scene, &m, w - m.margin - sw, m.margin, ai_bg, &status);

    // Alarm banner, top centre.
    if let Some(a) = &overlay.alarm {
        let bright = a.bright_at(t_ms);
        let (bg, fg) = match (a.priority, bright) {
            (AlarmPriority::High, true) => ([220, 0, 0, 235], WHITE),
            (AlarmPriority::High, false) => ([70, 0, 0, 210], [255, 90, 90, 255]),
            (AlarmPriority::Medium, true) => ([250, 200, 0, 235], BLACK),
            (AlarmPriority::Medium, false) => ([70, 55, 0, 210], [255, 210, 60, 255]),
            (AlarmPriority::Low, _) => ([0, 190, 210, 225], BLACK),
        };
        let msg: String = a.message.chars().take(60).collect();
        let mut text = format!("{} {}  {}", a.priority.label(), a.code, msg);
        if a.acknowledged {
            text.push_str("  [ACK]");
        }
        if a.more > 0 {
            text.push_str(&format!("  +{}", a.more));
        }
        let lines = [(text, fg)];
        let bw = panel_width(&m, &lines);
        panel(&mut scene, &m, ((w - bw) / 2).max(0), m.margin, bg, &lines);
    }

    // Device panel, bottom left.
    let lines: Vec<(String, Rgba)> = overlay
        .devices
        .lines
        .iter()
        .map(|l| {
            let (word, colour) = link_word(l.link);
            let fields: Vec<String> = l.fields.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let text = format!("{:<6} {:<10} {}", l.device, word, fields.join("  "));
            (text.trim_end().to_string(), if l.link == LinkState::Connected { WHITE } else { colour })
        })
        .collect();
    if !lines.is_empty() {
        let ph = lines.len() as i32 * m.line as i32 + 2 * m.pad;
        panel(&mut scene, &m, m.margin, h - m.margin - ph, PANEL, &lines);
    }
    scene
}
