//! Golden images of the display compositors (issue 4). The same overlay
//! scenes are rendered by the CPU compositor and by the wgpu compositor on
//! lavapipe (`WGPU_BACKEND=vulkan`), and both are compared with the PNGs in
//! `tests/golden/`. `UPDATE_GOLDEN=1 cargo test --release --test
//! display_golden` rewrites them from the CPU renderer (look at them before
//! committing).
//!
//! Also: the pass-through promise (every pixel outside the overlay's
//! rectangles equals the camera pixel, on both renderers), and proof that the
//! comparison catches a painted change.

use endotower_actors::display::cpu::CpuCompositor;
use endotower_actors::display::golden::{compare, read_png, write_png};
use endotower_actors::display::gpu::GpuCompositor;
use endotower_actors::display::overlay::{Overlay, OverlayInputs};
use endotower_actors::display::scene::{layout, Scene};
use endotower_actors::events::{Event, EventKind, Severity};
use endotower_actors::link::LinkState;
use endotower_actors::video::ai_state::AiStatus;
use endotower_actors::video::frame::{Frame, PixelFormat};
use endotower_sim::video::{SyntheticConfig, SyntheticSource};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

const W: u32 = 640;
const H: u32 = 360;
/// Channel difference that blending rounding may cause between the
/// renderers (measured: at most 2, on glyph edges and translucent panels).
const TOLERANCE: u8 = 2;
/// Fraction of pixels allowed beyond it: none.
const MAX_FRACTION: f64 = 0.0;

fn camera_frame() -> Frame {
    let mut src = SyntheticSource::new(SyntheticConfig { width: W, height: H, fps: 30.0, seed: 7, ..SyntheticConfig::default() }).unwrap();
    let f = (0..12).filter_map(|_| src.next_frame()).last().unwrap();
    let mean = f.rgb.iter().map(|v| u64::from(*v)).sum::<u64>() / f.rgb.len() as u64;
    assert!(mean > 40, "the test frame should show tissue, mean {mean}");
    Frame::new(12, Instant::now(), W, H, PixelFormat::Rgb8, Arc::new(f.rgb.to_vec())).unwrap()
}

fn alarm(seq: u64, severity: Severity, code: &str, message: &str) -> (Event, bool) {
    let e =
        Event { seq, at_ms: 0, kind: EventKind::AlarmRaised, severity, source: "test".into(), code: code.into(), message: message.into() };
    (e, false)
}

/// A tower in normal operation, AI online with two detections.
fn normal() -> OverlayInputs {
    endotower_actors::display::sample::normal_inputs(W, H)
}

/// (golden file name, inputs, time in ms for the flash phase)
fn scenarios() -> Vec<(&'static str, OverlayInputs, u64)> {
    let mut offline = normal();
    offline.ai = Some(AiStatus::Offline { reason: "inference panicked".into() });
    offline.result = None;
    let mut high = normal();
    high.alarms = vec![alarm(5, Severity::High, "HZ-001", "pressure 17.2 mmHg above limit")];
    let mut lost = normal();
    lost.light.link = LinkState::Lost;
    lost.light.led_temp_c = None;
    lost.light.tip_temp_c = None;
    lost.alarms = vec![alarm(6, Severity::Medium, "LINK_LOST", "light source not answering")];
    vec![
        ("normal", normal(), 0),
        ("ai_offline", offline, 0),
        // High priority flashes at 2 Hz: bright in the first 250 ms of 500.
        ("alarm_high_bright", high.clone(), 100),
        ("alarm_high_dim", high, 350),
        ("link_lost", lost, 0),
    ]
}

fn scene_of(inputs: &OverlayInputs, t_ms: u64) -> Scene {
    layout(&Overlay::build(inputs), W, H, t_ms)
}

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.png"))
}

fn cpu_render(frame: &Frame, scene: &Scene) -> Vec<u8> {
    let mut out = Vec::new();
    CpuCompositor::new().compose(frame, scene, &mut out).unwrap();
    out
}

/// The wgpu compositor on lavapipe, shared by the tests of this binary.
/// Under `CI` a missing adapter is a failure, elsewhere the GPU half is
/// skipped with a message.
fn gpu() -> Option<&'static Mutex<GpuCompositor>> {
    static GPU: OnceLock<Option<Mutex<GpuCompositor>>> = OnceLock::new();
    GPU.get_or_init(|| {
        // SAFETY: set before any wgpu call, while no other thread reads it.
        unsafe { std::env::set_var("WGPU_BACKEND", "vulkan") };
        match GpuCompositor::new() {
            Ok(g) => {
                let a = g.adapter();
                assert_eq!(a.backend, "Vulkan", "the golden tests pin the Vulkan backend: {a:?}");
                eprintln!("wgpu adapter: {} ({}, {}), software: {}", a.name, a.backend, a.driver, a.software);
                Some(Mutex::new(g))
            }
            Err(e) => {
                assert!(std::env::var_os("CI").is_none(), "no wgpu adapter in CI: {e}");
                eprintln!("skipping the wgpu half: {e}");
                None
            }
        }
    })
    .as_ref()
}

fn gpu_render(frame: &Frame, scene: &Scene) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let g = gpu()?;
    g.lock().unwrap_or_else(|p| p.into_inner()).compose(frame, scene, &mut out).unwrap();
    Some(out)
}

fn check_against_golden(name: &str, renderer: &str, image: &[u8]) {
    let (w, h, golden) = read_png(&golden_path(name)).unwrap_or_else(|e| panic!("{e} (run with UPDATE_GOLDEN=1 to create it)"));
    assert_eq!((w, h), (W, H), "{name}: golden size");
    let d = compare(image, &golden, TOLERANCE);
    eprintln!("{name} on {renderer}: {d:?}");
    if !d.within(MAX_FRACTION) {
        let out = std::env::temp_dir().join(format!("endotower-{name}-{renderer}.png"));
        let _ = write_png(&out, W, H, image);
        panic!("{name} on {renderer} differs from its golden image: {d:?}; rendered image written to {}", out.display());
    }
}

#[test]
fn cpu_renderer_matches_the_golden_images() {
    let frame = camera_frame();
    for (name, inputs, t) in scenarios() {
        let image = cpu_render(&frame, &scene_of(&inputs, t));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            write_png(&golden_path(name), W, H, &image).unwrap();
        }
        check_against_golden(name, "cpu", &image);
    }
}

#[test]
fn wgpu_renderer_on_lavapipe_matches_the_golden_images() {
    let frame = camera_frame();
    for (name, inputs, t) in scenarios() {
        let Some(image) = gpu_render(&frame, &scene_of(&inputs, t)) else { return };
        check_against_golden(name, "wgpu", &image);
    }
}

#[test]
fn hz021_every_pixel_outside_the_overlay_equals_the_camera_pixel_on_both_renderers() {
    let frame = camera_frame();
    for (name, inputs, t) in scenarios() {
        let scene = scene_of(&inputs, t);
        let mut images = vec![("cpu", cpu_render(&frame, &scene))];
        if let Some(g) = gpu_render(&frame, &scene) {
            images.push(("wgpu", g));
        }
        for (renderer, image) in images {
            let (mut outside, mut changed_inside) = (0usize, 0usize);
            for y in 0..H as i32 {
                for x in 0..W as i32 {
                    let i = (y as usize * W as usize + x as usize) * 4;
                    let cam = &frame.pixels[i / 4 * 3..i / 4 * 3 + 3];
                    let same = &image[i..i + 3] == cam && image[i + 3] == 255;
                    if scene.covers(x, y) {
                        changed_inside += usize::from(!same);
                    } else {
                        outside += 1;
                        assert!(
                            same,
                            "{name}/{renderer}: pixel ({x},{y}) outside the overlay changed: {:?} -> {:?}",
                            cam,
                            &image[i..i + 4]
                        );
                    }
                }
            }
            assert!(outside > (W * H) as usize / 2, "{name}: most of the picture is outside the overlay");
            assert!(changed_inside > 0, "{name}/{renderer}: the overlay drew nothing");
        }
    }
}

#[test]
fn a_painted_change_in_a_golden_image_fails_the_comparison() {
    let frame = camera_frame();
    let (name, inputs, t) = scenarios().remove(0);
    let image = cpu_render(&frame, &scene_of(&inputs, t));
    let (_, _, mut golden) = read_png(&golden_path(name)).unwrap();
    assert!(compare(&image, &golden, TOLERANCE).within(MAX_FRACTION), "unpainted, the image matches");
    // Paint a 12 x 12 magenta square in the middle of the picture.
    for y in 170..182 {
        for x in 200..212 {
            let i = (y * W as usize + x) * 4;
            golden[i..i + 4].copy_from_slice(&[255, 0, 255, 255]);
        }
    }
    let d = compare(&image, &golden, TOLERANCE);
    assert!(!d.within(MAX_FRACTION), "a 144-pixel change must fail the comparison: {d:?}");
    assert_eq!(d.differing, 144);
}

#[test]
fn the_two_flash_phases_of_a_high_alarm_render_differently() {
    let frame = camera_frame();
    let all = scenarios();
    let bright = all.iter().find(|s| s.0 == "alarm_high_bright").unwrap();
    let dim = all.iter().find(|s| s.0 == "alarm_high_dim").unwrap();
    let a = cpu_render(&frame, &scene_of(&bright.1, bright.2));
    let b = cpu_render(&frame, &scene_of(&dim.1, dim.2));
    assert!(compare(&a, &b, TOLERANCE).differing > 500);
}
