//! The scene gate (torchcontentarea's edge kernel, converted to ONNX) on
//! pictures whose image circle is known: a drawn one, the laparoscope
//! frames of shared/real-frames (when that directory is there), and a
//! black frame.

use endotower_actors::video::content_area::{ContentArea, ContentAreaConfig, Scene};
use endotower_actors::video::frame::{Frame, PixelFormat};
use endotower_actors::video::onnx::load_runtime;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

fn repo(p: &str) -> String {
    format!("{}/{p}", env!("CARGO_MANIFEST_DIR"))
}

fn gate() -> Option<ContentArea> {
    let lib = repo(".deps/onnxruntime/libonnxruntime.so.1.31.1");
    if !Path::new(&lib).is_file() {
        assert!(std::env::var("CI").is_err(), "CI=true but the ONNX Runtime library is missing: run ./x setup");
        eprintln!("SKIPPED: ONNX Runtime library missing (run ./x setup)");
        return None;
    }
    load_runtime(Path::new(&lib)).unwrap();
    let cfg = ContentAreaConfig { model: repo("models/content_area.onnx"), edge_threshold: 0.03, circle_threshold: 0.06, dark_luma: 0.04 };
    Some(ContentArea::open(&cfg, 1).unwrap())
}

fn frame(w: u32, h: u32, px: Vec<u8>) -> Frame {
    Frame::new(1, Instant::now(), w, h, PixelFormat::Rgb8, Arc::new(px)).unwrap()
}

fn assert_circle(s: Scene, want: (f32, f32, f32), tol: f32, what: &str) {
    let Scene::Circle { x, y, r, .. } = s else { panic!("{what}: no circle: {s:?}") };
    assert!(
        (x - want.0).abs() <= tol && (y - want.1).abs() <= tol && (r - want.2).abs() <= tol,
        "{what}: found ({x:.0}, {y:.0}) r {r:.0}, the image circle is ({}, {}) r {} (+- {tol})",
        want.0,
        want.1,
        want.2
    );
}

#[test]
fn the_scene_gate_finds_a_drawn_image_circle_and_no_image_in_a_black_frame() {
    let Some(mut g) = gate() else { return };
    // A lit, textured disc (warm tissue colours with noise and folds) on
    // black, off-centre a little, at an odd size.
    let (w, h, cx, cy, r) = (961u32, 721u32, 470.0f32, 370.0f32, 330.0f32);
    let mut px = vec![0u8; (w * h * 3) as usize];
    let mut seed = 7u32;
    for y in 0..h {
        for x in 0..w {
            let d = (x as f32 - cx).hypot(y as f32 - cy);
            if d < r {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let n = ((seed >> 16) % 40) as f32;
                let fold = 30.0 * ((x as f32 / 23.0).sin() * (y as f32 / 31.0).cos());
                let i = ((y * w + x) * 3) as usize;
                px[i] = (170.0 + fold + n).clamp(0.0, 255.0) as u8;
                px[i + 1] = (90.0 + fold / 2.0 + n / 2.0).clamp(0.0, 255.0) as u8;
                px[i + 2] = (80.0 + n / 2.0).clamp(0.0, 255.0) as u8;
            }
        }
    }
    assert_circle(g.scene(&frame(w, h, px)).unwrap(), (cx, cy, r), 0.02 * w as f32, "drawn disc");
    assert_eq!(g.scene(&frame(640, 480, vec![0u8; 640 * 480 * 3])).unwrap(), Scene::NoImage);
    // Almost black (sensor noise, light off) is no image either.
    let noise: Vec<u8> = (0..640 * 480 * 3).map(|i| (i * 7 % 9) as u8).collect();
    assert_eq!(g.scene(&frame(640, 480, noise)).unwrap(), Scene::NoImage);
}

/// The training-box laparoscope frames of shared/real-frames (MIT; not in
/// this repository). Their image circles were annotated by eye: the circle
/// drawn over the frame follows the image's edge.
#[test]
fn the_scene_gate_finds_the_image_circle_of_real_laparoscope_frames() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/real-frames");
    if !dir.is_dir() {
        eprintln!("SKIPPED: {} is not there", dir.display());
        return;
    }
    let Some(mut g) = gate() else { return };
    for (file, want) in [("training_box_endoseg/demo.jpg", (646.0, 509.0, 492.0)), ("training_box_endotip/demo.jpg", (489.0, 494.0, 492.0))]
    {
        let img = image::open(dir.join(file)).unwrap().to_rgb8();
        let (w, h) = img.dimensions();
        assert_circle(g.scene(&frame(w, h, img.into_raw())).unwrap(), want, 0.02 * w as f32, file);
    }
}
