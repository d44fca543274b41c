//! PNG plots of a scenario trace (plotters, bitmap backend).
//!
//! [`render`] writes into a directory:
//! - `overview.png` (1400x1800): the five signals stacked on one shared time
//!   axis, marker labels on the top (pressure) panel;
//! - `pressure.png`, `flow.png`, `supply.png`, `led_temp.png`,
//!   `light_output.png` (1200x500 each): one signal per file.
//!
//! Every panel draws the signal over scenario time, its reference lines
//! (P1, P2 and the invariant limit P2 + 2 on pressure, the supply-low
//! threshold, the LED maximum) as labelled dashed lines, the relief-valve-open
//! periods shaded on pressure, and the markers (faults, actions, alarms,
//! restarts, trips) as vertical lines coloured by kind, with a legend to the
//! right. Marker labels sit in a band above the data, staggered on rows so they
//! do not overlap; past [`MAX_LABELLED_MARKERS`] markers only faults and trips
//! are labelled (each distinct label once), and the labels left out are
//! counted in the legend.
//!
//! Text needs a TrueType font, read at run time: DejaVu Sans
//! ([`DEFAULT_FONT_PATH`], Debian package `fonts-dejavu-core`), or the file
//! named by the environment variable [`FONT_PATH_ENV`].

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use plotters::coord::cartesian::Cartesian2d;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::trace::{Limits, Marker, MarkerKind, Sample, Trace};

/// The font read when [`FONT_PATH_ENV`] is not set.
pub const DEFAULT_FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// Environment variable naming another TrueType font file.
pub const FONT_PATH_ENV: &str = "ENDOTOWER_PLOT_FONT";
/// Above this many markers, only faults and trips get a text label.
pub const MAX_LABELLED_MARKERS: usize = 25;

const SIGNAL_SIZE: (u32, u32) = (1200, 500);
const OVERVIEW_SIZE: (u32, u32) = (1400, 2500);
/// Width of the legend column right of every panel, pixels.
const LEGEND_WIDTH: u32 = 230;
/// Family name the font is registered under (plotters' `FontFamily::SansSerif`).
const FONT: &str = "sans-serif";
/// Marker labels are cut to this many characters.
const LABEL_CHARS: usize = 24;
/// Space added above the data for the marker labels, as a fraction of the data span.
const LABEL_HEADROOM: f64 = 0.35;
/// Height of one row of marker labels, pixels.
const LABEL_ROW: i32 = 18;
const LABEL_FONT: u32 = 13;

/// Why the plots could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error(
        "cannot read the plot font {}: {source}; install it with `apt install fonts-dejavu-core` \
         or set {FONT_PATH_ENV} to a TrueType font file",
        path.display()
    )]
    FontMissing { path: PathBuf, source: io::Error },
    #[error(
        "the plot font {} is not a TrueType/OpenType font; set {FONT_PATH_ENV} to a .ttf file \
         (e.g. DejaVuSans.ttf from `apt install fonts-dejavu-core`)",
        path.display()
    )]
    FontInvalid { path: PathBuf },
    #[error("cannot create the plot directory {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot draw the plot {}: {source}", path.display())]
    Draw { path: PathBuf, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("cannot write the PNG {}: {source}", path.display())]
    WritePng { path: PathBuf, source: Box<dyn std::error::Error + Send + Sync> },
}

/// Writes `overview.png` (all five panels stacked, one shared time axis) and
/// one PNG per signal: `pressure.png`, `flow.png`, `supply.png`,
/// `led_temp.png`, `light_output.png`, creating `dir` if needed. Returns the
/// paths written, overview first.
pub fn render(trace: &Trace, dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    render_with_font(trace, dir, &font_path())
}

/// [`render`] with an explicit font file instead of the default or the environment.
fn render_with_font(trace: &Trace, dir: &Path, font: &Path) -> Result<Vec<PathBuf>, PlotError> {
    ensure_font(font)?;
    std::fs::create_dir_all(dir).map_err(|source| PlotError::CreateDir { path: dir.to_path_buf(), source })?;
    let time = time_range(trace);
    let mut written = Vec::with_capacity(1 + SIGNALS.len());
    let plots = std::iter::once(("overview.png", Plot::Overview)).chain(SIGNALS.iter().map(|&s| (s.file_name(), Plot::Signal(s))));
    for (name, plot) in plots {
        let path = dir.join(name);
        write_png(&path, trace, plot, &time)?;
        written.push(path);
    }
    Ok(written)
}

fn font_path() -> PathBuf {
    std::env::var_os(FONT_PATH_ENV).filter(|p| !p.is_empty()).map_or_else(|| PathBuf::from(DEFAULT_FONT_PATH), PathBuf::from)
}

/// Registers the font file `path` with plotters unless it is the one already
/// registered. plotters keeps `&'static` font bytes, so each distinct file is
/// read and leaked once per process (in practice: once).
fn ensure_font(path: &Path) -> Result<(), PlotError> {
    static REGISTERED: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut registered = REGISTERED.lock().unwrap_or_else(PoisonError::into_inner);
    if registered.as_deref() == Some(path) {
        return Ok(());
    }
    let bytes = std::fs::read(path).map_err(|source| PlotError::FontMissing { path: path.to_path_buf(), source })?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FONT, FontStyle::Normal, bytes).map_err(|_| PlotError::FontInvalid { path: path.to_path_buf() })?;
    *registered = Some(path.to_path_buf());
    Ok(())
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn write_png(path: &Path, trace: &Trace, plot: Plot, time: &Range<f64>) -> Result<(), PlotError> {
    let root = BitMapBackend::new(path, plot.size()).into_drawing_area();
    draw_plot(&root, trace, plot, time).map_err(|e| PlotError::Draw { path: path.to_path_buf(), source: Box::new(e) })?;
    root.present().map_err(|e| PlotError::WritePng { path: path.to_path_buf(), source: Box::new(e) })
}

/// One output image.
#[derive(Debug, Clone, Copy)]
enum Plot {
    Overview,
    Signal(Signal),
}

impl Plot {
    fn size(self) -> (u32, u32) {
        match self {
            Plot::Overview => OVERVIEW_SIZE,
            Plot::Signal(_) => SIGNAL_SIZE,
        }
    }
}

fn draw_plot<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, trace: &Trace, plot: Plot, time: &Range<f64>) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    match plot {
        Plot::Signal(signal) => {
            let caption = format!("{} — {}", trace.scenario, signal.title());
            let panel = Panel { trace, signal, time: time.clone(), caption, caption_size: 22, label_markers: true, x_desc: true };
            draw_panel(root, &panel)
        }
        Plot::Overview => {
            let body = root.titled(&format!("{} — overview", trace.scenario), (FONT, 28))?;
            let areas = body.split_evenly((SIGNALS.len(), 1));
            for (i, (area, &signal)) in areas.iter().zip(SIGNALS.iter()).enumerate() {
                let caption = signal.title().to_string();
                let last = i + 1 == SIGNALS.len();
                let panel = Panel { trace, signal, time: time.clone(), caption, caption_size: 18, label_markers: i == 0, x_desc: last };
                draw_panel(area, &panel)?;
            }
            Ok(())
        }
    }
}

/// The five plotted signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Pressure,
    Flow,
    Supply,
    LedTemp,
    LightOutput,
    /// The display's longest wait for a frame per sample window.
    DisplayGap,
    /// The AI online (1) or not (0).
    Ai,
}

const SIGNALS: [Signal; 7] =
    [Signal::Pressure, Signal::Flow, Signal::Supply, Signal::LedTemp, Signal::LightOutput, Signal::DisplayGap, Signal::Ai];

/// A horizontal reference line.
struct RefLine {
    value: f64,
    label: String,
    colour: RGBColor,
}

impl Signal {
    fn file_name(self) -> &'static str {
        match self {
            Signal::Pressure => "pressure.png",
            Signal::Flow => "flow.png",
            Signal::Supply => "supply.png",
            Signal::LedTemp => "led_temp.png",
            Signal::LightOutput => "light_output.png",
            Signal::DisplayGap => "display_gap.png",
            Signal::Ai => "ai_state.png",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Signal::Pressure => "cavity pressure",
            Signal::Flow => "CO2 inflow",
            Signal::Supply => "CO2 supply pressure",
            Signal::LedTemp => "LED temperature",
            Signal::LightOutput => "light output",
            Signal::DisplayGap => "live picture: longest wait for a frame",
            Signal::Ai => "AI state (1 online, 0 offline: raw video)",
        }
    }

    fn y_desc(self) -> &'static str {
        match self {
            Signal::Pressure => "pressure (mmHg)",
            Signal::Flow => "flow (L/min)",
            Signal::Supply => "supply (bar)",
            Signal::LedTemp => "LED temperature (°C)",
            Signal::LightOutput => "light output (%)",
            Signal::DisplayGap => "frame wait (ms)",
            Signal::Ai => "AI online",
        }
    }

    fn colour(self) -> RGBColor {
        match self {
            Signal::Pressure => RGBColor(31, 100, 190),
            Signal::Flow => RGBColor(30, 140, 60),
            Signal::Supply => RGBColor(140, 86, 75),
            Signal::LedTemp => RGBColor(0, 140, 150),
            Signal::LightOutput => RGBColor(170, 140, 0),
            Signal::DisplayGap => RGBColor(60, 60, 60),
            Signal::Ai => RGBColor(120, 40, 160),
        }
    }

    fn value(self, s: &Sample) -> f64 {
        match self {
            Signal::Pressure => s.pressure_mmhg,
            Signal::Flow => s.flow_lpm,
            Signal::Supply => s.supply_bar,
            Signal::LedTemp => s.led_temp_c,
            Signal::LightOutput => s.light_output_pct,
            Signal::DisplayGap => s.display_gap_ms,
            Signal::Ai => s.ai_online,
        }
    }

    fn ref_lines(self, l: &Limits) -> Vec<RefLine> {
        let line = |value: f64, label: String, colour| RefLine { value, label, colour };
        let lines = match self {
            Signal::Pressure => vec![
                line(l.p1_mmhg, format!("P1 {:.1}", l.p1_mmhg), RGBColor(0, 140, 70)),
                line(l.p2_mmhg, format!("P2 {:.1}", l.p2_mmhg), RGBColor(230, 120, 0)),
                line(l.p2_mmhg + 2.0, format!("limit P2+2 {:.1}", l.p2_mmhg + 2.0), RGBColor(200, 0, 0)),
            ],
            Signal::Supply => vec![line(l.supply_low_bar, format!("supply low {:.1}", l.supply_low_bar), RGBColor(230, 120, 0))],
            Signal::LedTemp => vec![line(l.led_max_c, format!("LED max {:.1}", l.led_max_c), RGBColor(200, 0, 0))],
            Signal::DisplayGap => vec![line(2.0 * l.frame_interval_ms, "2 frame intervals".into(), RGBColor(200, 0, 0))],
            Signal::Flow | Signal::LightOutput | Signal::Ai => Vec::new(),
        };
        lines.into_iter().filter(|r| r.value.is_finite()).collect()
    }
}

fn marker_colour(kind: MarkerKind) -> RGBColor {
    match kind {
        MarkerKind::Fault => RGBColor(220, 30, 30),
        MarkerKind::Action => RGBColor(90, 110, 150),
        MarkerKind::Alarm => RGBColor(245, 140, 0),
        MarkerKind::Restart => RGBColor(140, 60, 180),
        MarkerKind::Trip => RGBColor(25, 25, 25),
        MarkerKind::Clear => RGBColor(40, 160, 90),
    }
}

/// Label text colour: the marker colour, darker where it is too light to read.
fn marker_text_colour(kind: MarkerKind) -> RGBColor {
    match kind {
        MarkerKind::Alarm => RGBColor(190, 95, 0),
        other => marker_colour(other),
    }
}

fn marker_name(kind: MarkerKind) -> &'static str {
    match kind {
        MarkerKind::Fault => "fault injected",
        MarkerKind::Action => "action / fault cleared",
        MarkerKind::Alarm => "alarm",
        MarkerKind::Restart => "restart",
        MarkerKind::Trip => "interlock trip",
        MarkerKind::Clear => "alarm cleared",
    }
}

/// Which labels win when there is no room for all (lower first).
fn marker_priority(kind: MarkerKind) -> u8 {
    match kind {
        MarkerKind::Trip => 0,
        MarkerKind::Fault => 1,
        MarkerKind::Alarm => 2,
        MarkerKind::Restart => 3,
        MarkerKind::Action => 4,
        MarkerKind::Clear => 5,
    }
}

const MARKER_KINDS: [MarkerKind; 6] =
    [MarkerKind::Fault, MarkerKind::Action, MarkerKind::Alarm, MarkerKind::Restart, MarkerKind::Trip, MarkerKind::Clear];

/// The time axis shared by all panels: from 0 (or the earliest time, if
/// negative) to the last sample or marker, never empty.
fn time_range(trace: &Trace) -> Range<f64> {
    let times = trace.samples.iter().map(|s| s.t_s).chain(trace.markers.iter().map(|m| m.t_s));
    let (lo, hi) = finite_bounds(times).unwrap_or((0.0, 1.0));
    let lo = lo.min(0.0);
    let hi = if hi - lo > 1e-9 { hi } else { lo + 1.0 };
    lo..hi + (hi - lo) * 0.01
}

/// The y axis of one panel: the finite values and reference lines, padded
/// (constant signals get a band around them), not below 0 unless a value is,
/// plus `headroom` (fraction of the span) above for marker labels.
struct YAxis {
    range: Range<f64>,
    /// Top of the padded data, below the label headroom.
    data_top: f64,
}

fn y_axis(values: impl Iterator<Item = f64>, refs: &[RefLine], headroom: f64) -> YAxis {
    let (lo, hi) = finite_bounds(values.chain(refs.iter().map(|r| r.value))).unwrap_or((0.0, 1.0));
    let span = hi - lo;
    let pad = if span > 1e-9 * hi.abs().max(1.0) { span * 0.08 } else { (hi.abs() * 0.05).max(1.0) };
    let bottom = if lo >= 0.0 { (lo - pad).max(0.0) } else { lo - pad };
    let data_top = hi + pad;
    YAxis { range: bottom..data_top + (data_top - bottom) * headroom, data_top }
}

fn finite_bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.filter(|v| v.is_finite()).fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// The signal as polylines, broken where a value (or time) is not finite.
fn segments(samples: &[Sample], signal: Signal) -> Vec<Vec<(f64, f64)>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for s in samples {
        let v = signal.value(s);
        if s.t_s.is_finite() && v.is_finite() {
            current.push((s.t_s, v));
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Relief-valve-open periods: from the first open sample to the next sample
/// after the last open one of each run.
fn relief_spans(samples: &[Sample]) -> Vec<(f64, f64)> {
    let mut spans: Vec<(f64, f64)> = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        if !s.relief_open || !s.t_s.is_finite() {
            continue;
        }
        let end = samples.get(i + 1).map(|n| n.t_s).filter(|t| t.is_finite() && *t >= s.t_s).unwrap_or(s.t_s);
        match spans.last_mut() {
            Some(last) if s.t_s <= last.1 => last.1 = last.1.max(end),
            _ => spans.push((s.t_s, end)),
        }
    }
    spans
}

/// `label` cut to [`LABEL_CHARS`] characters, with an ellipsis when cut.
fn short_label(label: &str) -> String {
    if label.chars().count() <= LABEL_CHARS {
        label.to_string()
    } else {
        let mut s: String = label.chars().take(LABEL_CHARS - 1).collect();
        s.push('…');
        s
    }
}

/// A marker label to place: its line at pixel `x`, `width` pixels of text.
#[derive(Debug, Clone, Copy)]
struct LabelCandidate {
    index: usize,
    x: i32,
    width: i32,
    priority: u8,
}

/// Where a label goes: row from the top, left pixel edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LabelPlacement {
    index: usize,
    row: usize,
    left: i32,
}

/// Places labels right of their line (left of it near the right edge), each
/// on the first of `rows` rows where it overlaps no other, most important
/// first; labels with no room are left out.
fn plan_labels(candidates: &[LabelCandidate], x_bounds: Range<i32>, rows: usize) -> Vec<LabelPlacement> {
    const GAP: i32 = 4;
    let mut order: Vec<&LabelCandidate> = candidates.iter().collect();
    order.sort_by_key(|c| (c.priority, c.x));
    let mut taken: Vec<Vec<Range<i32>>> = vec![Vec::new(); rows];
    let mut placed = Vec::new();
    for c in order {
        let mut left = c.x + 3;
        if left + c.width > x_bounds.end {
            left = c.x - 3 - c.width;
        }
        let left = left.max(x_bounds.start);
        let span = left - GAP..left + c.width + GAP;
        let free = taken.iter().position(|row| row.iter().all(|r| r.end <= span.start || span.end <= r.start));
        if let Some(row) = free {
            taken[row].push(span);
            placed.push(LabelPlacement { index: c.index, row, left });
        }
    }
    placed
}

/// One chart: a signal with its reference lines, markers and legend.
struct Panel<'a> {
    trace: &'a Trace,
    signal: Signal,
    time: Range<f64>,
    caption: String,
    caption_size: u32,
    /// Draw the marker labels (above the data) in this panel.
    label_markers: bool,
    /// Write "time (s)" under the axis.
    x_desc: bool,
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &Panel) -> DrawResult<DB> {
    let trace = p.trace;
    let (width, _) = area.dim_in_pixel();
    let (chart_area, legend_area) = area.split_horizontally(width.saturating_sub(LEGEND_WIDTH));
    let refs = p.signal.ref_lines(&trace.limits);
    let markers: Vec<&Marker> = trace.markers.iter().filter(|m| m.t_s.is_finite()).collect();
    let label_markers = p.label_markers && !markers.is_empty();
    let y = y_axis(trace.samples.iter().map(|s| p.signal.value(s)), &refs, if label_markers { LABEL_HEADROOM } else { 0.0 });
    let (t0, t1) = (p.time.start, p.time.end);

    let mut chart = ChartBuilder::on(&chart_area)
        .caption(&p.caption, (FONT, p.caption_size))
        .margin(8)
        .margin_right(14)
        .x_label_area_size(if p.x_desc { 52 } else { 30 })
        .y_label_area_size(80)
        .build_cartesian_2d(p.time.clone(), y.range.clone())?;
    let mut mesh = chart.configure_mesh();
    mesh.y_desc(p.signal.y_desc())
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(BLACK.mix(0.04))
        .x_labels(14)
        .y_labels(8);
    if p.x_desc {
        mesh.x_desc("time (s)");
    }
    mesh.draw()?;

    let relief = if p.signal == Signal::Pressure { relief_spans(&trace.samples) } else { Vec::new() };
    let relief_fill = RGBColor(255, 150, 40).mix(0.18);
    chart.draw_series(relief.iter().map(|&(a, b)| Rectangle::new([(a, y.range.start), (b, y.range.end)], relief_fill.filled())))?;

    let many = markers.len() > MAX_LABELLED_MARKERS;
    chart.draw_series(markers.iter().map(|m| {
        let colour = marker_colour(m.kind);
        let width = if m.kind == MarkerKind::Trip { 2 } else { 1 };
        let style = if many { colour.mix(0.55).stroke_width(width) } else { colour.stroke_width(width) };
        PathElement::new(vec![(m.t_s, y.range.start), (m.t_s, y.range.end)], style)
    }))?;

    for r in &refs {
        chart.draw_series(DashedLineSeries::new(vec![(t0, r.value), (t1, r.value)], 10, 6, r.colour.stroke_width(2)))?;
    }

    let colour = p.signal.colour();
    let segs = segments(&trace.samples, p.signal);
    if segs.is_empty() {
        let note = if trace.samples.is_empty() { "no samples" } else { "no finite values" };
        let style = (FONT, 22).into_font().color(&BLACK.mix(0.5)).pos(Pos::new(HPos::Center, VPos::Center));
        let middle = ((t0 + t1) / 2.0, (y.range.start + y.data_top) / 2.0);
        chart.plotting_area().draw(&Text::new(note, middle, style))?;
    }
    for seg in segs {
        if let [point] = seg[..] {
            chart.plotting_area().draw(&Circle::new(point, 3, colour.filled()))?;
        } else {
            // Segment by segment: plotters joins a wide polyline with mitres
            // that spike far out of the chart where the signal turns back on
            // itself within a pixel or two (dense, noisy or saw-tooth data).
            let style = colour.stroke_width(2);
            chart.draw_series(seg.windows(2).map(|pair| PathElement::new(pair.to_vec(), style)))?;
        }
    }

    // Labels over the lines: each reference line's at its right end, above it.
    let ref_font = (FONT, 14).into_font();
    for r in &refs {
        let style = ref_font.color(&r.colour);
        let (w, h) = chart.plotting_area().estimate_text_size(&r.label, &style)?;
        draw_boxed_text(chart.plotting_area(), (t1, r.value), (-(w as i32) - 8, -(h as i32) - 5), &r.label, &style)?;
    }
    let labelled = if label_markers { draw_marker_labels(chart.plotting_area(), &markers, &y, t0)? } else { 0 };

    let mut legend = vec![(Swatch::Line(colour, 2), p.signal.title().to_string())];
    legend.extend(refs.iter().map(|r| (Swatch::Dashed(r.colour), r.label.clone())));
    if !relief.is_empty() {
        legend.push((Swatch::Fill(relief_fill), "relief valve open".to_string()));
    }
    if !markers.is_empty() {
        legend.push((Swatch::None, String::new()));
        legend.push((Swatch::None, format!("markers ({}):", markers.len())));
        for kind in MARKER_KINDS.into_iter().filter(|k| markers.iter().any(|m| m.kind == *k)) {
            let width = if kind == MarkerKind::Trip { 2 } else { 1 };
            legend.push((Swatch::Line(marker_colour(kind), width), marker_name(kind).to_string()));
        }
        if label_markers && labelled < markers.len() {
            legend.push((Swatch::Note, format!("{} labels not shown", markers.len() - labelled)));
        }
    }
    draw_legend(&legend_area, &legend, p.caption_size as i32 + 26)
}

type PlotArea<DB> = DrawingArea<DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// `text` on a translucent white box, its top left corner `offset` pixels from `at`.
fn draw_boxed_text<DB: DrawingBackend>(
    area: &PlotArea<DB>,
    at: (f64, f64),
    offset: (i32, i32),
    text: &str,
    style: &TextStyle,
) -> DrawResult<DB> {
    let (w, h) = area.estimate_text_size(text, style)?;
    let (dx, dy) = offset;
    let (w, h) = (w as i32, h as i32);
    // ab_glyph draws capitals a few pixels above the nominal top of the text box.
    let background = Rectangle::new([(dx - 3, dy - 4), (dx + w + 3, dy + h + 3)], WHITE.mix(0.85).filled());
    area.draw(&(EmptyElement::at(at) + background + Text::new(text.to_string(), (dx, dy), style.clone())))
}

/// Draws the marker labels in the headroom band above the data, on staggered
/// rows; returns how many were drawn.
fn draw_marker_labels<DB: DrawingBackend>(
    area: &PlotArea<DB>,
    markers: &[&Marker],
    y: &YAxis,
    t0: f64,
) -> Result<usize, DrawingAreaErrorKind<DB::ErrorType>> {
    let (x_pixels, y_pixels) = area.get_pixel_range();
    let band = area.map_coordinate(&(t0, y.data_top)).1 - y_pixels.start;
    let rows = usize::try_from((band - 4) / LABEL_ROW).unwrap_or(0);
    let font = TextStyle::from((FONT, LABEL_FONT).into_font());
    let only_important = markers.len() > MAX_LABELLED_MARKERS;
    let mut texts = Vec::with_capacity(markers.len());
    let mut candidates = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, m) in markers.iter().enumerate() {
        let text = short_label(&m.label);
        // With many markers: faults and trips only, each distinct text once.
        let wanted = !only_important
            || (matches!(m.kind, MarkerKind::Fault | MarkerKind::Trip) && seen.insert((marker_priority(m.kind), text.clone())));
        if !text.is_empty() && wanted {
            let (width, _) = area.estimate_text_size(&text, &font)?;
            let x = area.map_coordinate(&(m.t_s, y.data_top)).0;
            candidates.push(LabelCandidate { index, x, width: width as i32, priority: marker_priority(m.kind) });
        }
        texts.push(text);
    }
    let placed = plan_labels(&candidates, x_pixels, rows);
    for p in &placed {
        let m = markers[p.index];
        let x = area.map_coordinate(&(m.t_s, y.range.end)).0;
        let colour = marker_text_colour(m.kind);
        let style = font.color(&colour);
        draw_boxed_text(area, (m.t_s, y.range.end), (p.left - x, 6 + p.row as i32 * LABEL_ROW), &texts[p.index], &style)?;
    }
    Ok(placed.len())
}

/// What a legend entry shows left of its text.
#[derive(Debug, Clone, Copy)]
enum Swatch {
    Line(RGBColor, u32),
    Dashed(RGBColor),
    Fill(RGBAColor),
    /// A heading or blank line.
    None,
    /// Grey text.
    Note,
}

/// The legend column, entries from `top` pixels down.
fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, entries: &[(Swatch, String)], top: i32) -> DrawResult<DB> {
    const ROW: i32 = 20;
    let font = (FONT, 14).into_font();
    for (i, (swatch, text)) in entries.iter().enumerate() {
        let y = top + i as i32 * ROW;
        let mid = y + 6;
        match *swatch {
            Swatch::Line(c, w) => area.draw(&PathElement::new(vec![(8, mid), (36, mid)], c.stroke_width(w.max(2))))?,
            Swatch::Dashed(c) => {
                area.draw(&PathElement::new(vec![(8, mid), (18, mid)], c.stroke_width(2)))?;
                area.draw(&PathElement::new(vec![(24, mid), (36, mid)], c.stroke_width(2)))?;
            }
            Swatch::Fill(c) => area.draw(&Rectangle::new([(8, mid - 7), (36, mid + 7)], c.filled()))?,
            Swatch::None | Swatch::Note => {}
        }
        let (x, colour) = match swatch {
            Swatch::None => (8, BLACK.to_rgba()),
            Swatch::Note => (8, BLACK.mix(0.55)),
            _ => (44, BLACK.to_rgba()),
        };
        area.draw_text(text, &font.color(&colour), (x, y))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { p1_mmhg: 12.0, p2_mmhg: 22.0, supply_low_bar: 5.0, led_max_c: 85.0, frame_interval_ms: 16.7 }
    }

    fn sample(t_s: f64, pressure_mmhg: f64, relief_open: bool) -> Sample {
        Sample {
            t_s,
            pressure_mmhg,
            flow_lpm: if relief_open { 0.0 } else { 6.0 + (t_s * 0.7).sin() },
            supply_bar: 50.0 - t_s * 0.1,
            led_temp_c: 45.0 + t_s * 0.3,
            light_output_pct: if t_s < 40.0 { 100.0 } else { 60.0 },
            relief_open,
            rss_mib: 80.0,
            display_gap_ms: 16.7,
            ai_online: if (20.0..25.0).contains(&t_s) { 0.0 } else { 1.0 },
        }
    }

    fn marker(t_s: f64, kind: MarkerKind, label: &str) -> Marker {
        Marker { t_s, kind, label: label.to_string() }
    }

    /// An over-pressure episode: pressure held at P1, a blocked outflow
    /// drives it to 24 mmHg, the relief valve vents it, the insufflator
    /// restarts.
    fn over_pressure_trace() -> Trace {
        let samples = (0..=600)
            .map(|i| {
                let t = f64::from(i) * 0.1;
                let p = match t {
                    t if t < 10.0 => 12.0,
                    t if t < 20.0 => 12.0 + (t - 10.0) * 1.2,
                    t if t < 26.0 => 24.0 - (t - 20.0) * 2.0,
                    _ => 12.0,
                };
                sample(t, p, (19.0..26.0).contains(&t))
            })
            .collect();
        Trace {
            scenario: "over-pressure".to_string(),
            limits: limits(),
            samples,
            markers: vec![
                marker(10.0, MarkerKind::Fault, "outflow_block insufflator"),
                marker(18.3, MarkerKind::Alarm, "pressure high"),
                marker(19.0, MarkerKind::Trip, "HZ-001 relief open"),
                marker(30.0, MarkerKind::Action, "clear outflow_block"),
                marker(31.0, MarkerKind::Restart, "restart insufflator"),
            ],
        }
    }

    fn font() -> PathBuf {
        PathBuf::from(DEFAULT_FONT_PATH)
    }

    /// A fresh directory under the system temp dir.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("endotower-plots-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// Width and height from a PNG's signature and IHDR chunk.
    fn png_size(bytes: &[u8]) -> (u32, u32) {
        assert!(bytes.len() > 24, "too short for a PNG");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
        assert_eq!(&bytes[12..16], b"IHDR");
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        (be(&bytes[16..20]), be(&bytes[20..24]))
    }

    /// Size of a PNG of `size` white pixels, as the same encoder writes it.
    fn blank_png_len(dir: &Path, size: (u32, u32)) -> u64 {
        let path = dir.join(format!("blank-{}x{}.png", size.0, size.1));
        let root = BitMapBackend::new(&path, size).into_drawing_area();
        root.fill(&WHITE).unwrap();
        root.present().unwrap();
        drop(root);
        std::fs::metadata(&path).unwrap().len()
    }

    /// Draws `plot` into memory, RGB.
    fn draw_in_memory(trace: &Trace, plot: Plot) -> Vec<u8> {
        ensure_font(&font()).unwrap();
        let (w, h) = plot.size();
        let mut buf = vec![0u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            draw_plot(&root, trace, plot, &time_range(trace)).unwrap();
            root.present().unwrap();
        }
        buf
    }

    fn count_pixels(rgb: &[u8], pred: impl Fn(u8, u8, u8) -> bool) -> usize {
        rgb.chunks_exact(3).filter(|p| pred(p[0], p[1], p[2])).count()
    }

    #[test]
    fn renders_every_png_with_its_size() {
        let trace = over_pressure_trace();
        let dir = temp_dir("all");
        let written = render_with_font(&trace, &dir, &font()).unwrap();
        let names: Vec<_> = written.iter().map(|p| p.file_name().unwrap().to_str().unwrap().to_string()).collect();
        assert_eq!(
            names,
            [
                "overview.png",
                "pressure.png",
                "flow.png",
                "supply.png",
                "led_temp.png",
                "light_output.png",
                "display_gap.png",
                "ai_state.png"
            ]
        );
        let blank_signal = blank_png_len(&dir, SIGNAL_SIZE);
        let blank_overview = blank_png_len(&dir, OVERVIEW_SIZE);
        for path in &written {
            let bytes = std::fs::read(path).unwrap();
            let overview = path.ends_with("overview.png");
            let (size, blank) = if overview { (OVERVIEW_SIZE, blank_overview) } else { (SIGNAL_SIZE, blank_signal) };
            assert_eq!(png_size(&bytes), size, "{}", path.display());
            assert!(bytes.len() as u64 > blank * 4, "{}: {} bytes, a blank image is {blank}", path.display(), bytes.len());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pressure_plot_shows_signal_markers_and_relief() {
        let rgb = draw_in_memory(&over_pressure_trace(), Plot::Signal(Signal::Pressure));
        let total = rgb.len() / 3;
        let non_white = count_pixels(&rgb, |r, g, b| r < 250 || g < 250 || b < 250);
        assert!(non_white > total / 50, "{non_white} of {total} pixels drawn");
        // The series (blue), the fault line and limit (red), the relief shading (light orange).
        assert!(count_pixels(&rgb, |r, g, b| r < 60 && (90..=110).contains(&g) && b > 170) > 500, "pressure series");
        assert!(count_pixels(&rgb, |r, g, b| r > 200 && g < 40 && b < 40) > 200, "fault marker");
        assert!(count_pixels(&rgb, |r, g, b| r == 255 && (225..=245).contains(&g) && (200..=220).contains(&b)) > 5000, "relief shading");
    }

    #[test]
    fn empty_trace_renders() {
        let trace = Trace { scenario: "empty".to_string(), limits: limits(), samples: Vec::new(), markers: Vec::new() };
        let dir = temp_dir("empty");
        let written = render_with_font(&trace, &dir, &font()).unwrap();
        assert_eq!(written.len(), 8);
        assert!(written.iter().all(|p| p.is_file()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn single_sample_nan_and_constant_signals_render() {
        let mut nan = sample(2.0, f64::NAN, false);
        nan.flow_lpm = f64::INFINITY;
        let single = Trace { scenario: "single".to_string(), limits: limits(), samples: vec![sample(1.0, 12.0, true)], markers: vec![] };
        let holes = Trace {
            scenario: "nan".to_string(),
            limits: Limits { p1_mmhg: f64::NAN, ..limits() },
            samples: vec![sample(0.0, 12.0, false), sample(1.0, 12.0, false), nan, sample(3.0, 12.0, false), sample(4.0, 12.0, false)],
            markers: vec![marker(f64::NAN, MarkerKind::Fault, "nowhere"), marker(3.5, MarkerKind::Alarm, "")],
        };
        for trace in [single, holes] {
            let dir = temp_dir(&trace.scenario);
            assert_eq!(render_with_font(&trace, &dir, &font()).unwrap().len(), 8);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn missing_font_names_the_path() {
        let missing = Path::new("/nonexistent/endotower/NoSuchFont.ttf");
        let dir = temp_dir("nofont");
        let err = render_with_font(&over_pressure_trace(), &dir, missing).unwrap_err();
        assert!(matches!(err, PlotError::FontMissing { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("/nonexistent/endotower/NoSuchFont.ttf"), "{message}");
        assert!(message.contains("apt install fonts-dejavu-core"), "{message}");
        assert!(!dir.exists(), "nothing written without a font");
    }

    #[test]
    fn unwritable_directory_is_named() {
        let file = temp_dir("notadir");
        std::fs::write(&file, b"x").unwrap();
        let err = render_with_font(&over_pressure_trace(), &file.join("sub"), &font()).unwrap_err();
        assert!(matches!(err, PlotError::CreateDir { .. }), "{err:?}");
        assert!(err.to_string().contains(&*file.to_string_lossy()), "{err}");
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn y_axis_pads_constant_and_skips_nan() {
        let y = y_axis([5.0, 5.0, f64::NAN].into_iter(), &[], 0.0);
        assert!(y.range.start < 5.0 && y.range.end > 5.0, "{:?}", y.range);
        let y = y_axis([0.0, 0.0].into_iter(), &[], 0.0);
        assert_eq!(y.range.start, 0.0, "non-negative signals stay above 0");
        assert!(y.range.end >= 1.0);
        let y = y_axis(std::iter::empty(), &[], 0.5);
        assert!(y.range.end > y.data_top && y.data_top > y.range.start);
        let refs = [RefLine { value: 24.0, label: String::new(), colour: BLACK }];
        assert!(y_axis([12.0].into_iter(), &refs, 0.0).range.end > 24.0, "reference lines are in range");
    }

    #[test]
    fn relief_spans_merge_runs() {
        let s = [sample(0.0, 0.0, false), sample(1.0, 0.0, true), sample(2.0, 0.0, true), sample(3.0, 0.0, false), sample(4.0, 0.0, true)];
        assert_eq!(relief_spans(&s), [(1.0, 3.0), (4.0, 4.0)]);
    }

    #[test]
    fn labels_are_truncated() {
        assert_eq!(short_label("HZ-001"), "HZ-001");
        let long = short_label("leak_step insufflator 10 L/min for 30 s");
        assert_eq!(long.chars().count(), LABEL_CHARS);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn label_plan_staggers_and_drops_what_does_not_fit() {
        let c = |index, x, priority| LabelCandidate { index, x, width: 100, priority };
        // Three close markers stagger on three rows; a fourth has no row left.
        let cands = [c(0, 100, 1), c(1, 110, 0), c(2, 120, 2), c(3, 130, 4), c(4, 600, 4)];
        let placed = plan_labels(&cands, 0..1000, 3);
        let mut rows: Vec<_> = placed.iter().map(|p| (p.index, p.row)).collect();
        rows.sort();
        assert_eq!(rows, [(0, 1), (1, 0), (2, 2), (4, 0)]);
        // Near the right edge the label goes left of its line.
        let placed = plan_labels(&[c(0, 990, 0)], 0..1000, 1);
        assert_eq!(placed[0].left, 990 - 3 - 100);
        assert!(plan_labels(&cands, 0..1000, 0).is_empty());
    }

    /// A soak: 200 markers, only faults and trips get labels, and some fit.
    #[test]
    fn many_markers_render_with_thinned_labels() {
        let mut trace = over_pressure_trace();
        trace.markers = (0..200)
            .map(|i| {
                let kind = MARKER_KINDS[i % MARKER_KINDS.len()];
                marker(i as f64 * 0.3, kind, &format!("{kind:?} number {i}"))
            })
            .collect();
        let rgb = draw_in_memory(&trace, Plot::Signal(Signal::Pressure));
        assert!(count_pixels(&rgb, |r, g, b| r < 250 || g < 250 || b < 250) > rgb.len() / 3 / 50);
        let dir = temp_dir("soak");
        render_with_font(&trace, &dir, &font()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Writes demo plots to /tmp/plots-demo for a look:
    /// `cargo test --release --lib scenario::plots::tests::demo -- --ignored`.
    #[test]
    #[ignore]
    fn demo() {
        let base = Path::new("/tmp/plots-demo");
        let trace = over_pressure_trace();
        render_with_font(&trace, base, &font()).unwrap();
        // One hour, 40 episodes of fault, alarm, trip, restart, clear: 200 markers.
        let mut soak = Trace {
            scenario: "soak".to_string(),
            limits: limits(),
            samples: (0..=3600)
                .map(|i| {
                    let t = f64::from(i);
                    let mut s = sample(t, 12.0 + f64::from(i % 90) / 10.0, i % 90 > 80);
                    s.supply_bar = 50.0 - t * 0.012;
                    s.led_temp_c = 60.0 + (t / 300.0).sin() * 8.0;
                    s
                })
                .collect(),
            markers: Vec::new(),
        };
        for e in 0..40 {
            let t = 10.0 + f64::from(e) * 90.0;
            soak.markers.extend([
                marker(t, MarkerKind::Fault, &format!("leak_step {e} L/min")),
                marker(t + 1.0, MarkerKind::Alarm, "pressure low"),
                marker(t + 1.5, MarkerKind::Trip, "HZ-002"),
                marker(t + 3.0, MarkerKind::Restart, "restart insufflator"),
                marker(t + 40.0, MarkerKind::Action, "clear leak_step"),
            ]);
        }
        render_with_font(&soak, &base.join("soak"), &font()).unwrap();
        let empty = Trace { scenario: "empty".to_string(), limits: limits(), samples: Vec::new(), markers: Vec::new() };
        render_with_font(&empty, &base.join("empty"), &font()).unwrap();
        let single = Trace { scenario: "single".to_string(), limits: limits(), samples: vec![sample(1.0, 12.0, true)], markers: vec![] };
        render_with_font(&single, &base.join("single"), &font()).unwrap();
    }
}
