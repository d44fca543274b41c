//! `endotower eval detector --frames DIR` on a small labelled set written by
//! the test (synthetic frames with adenomas as "polyp", lesion-free frames as
//! "no_polyp", odd sizes and a JPEG among them), in the format of
//! shared/real-frames/labels.json.

use endotower_sim::video::{Episode, LesionClass, SyntheticConfig, SyntheticSource};
use serde_json::{json, Value};
use std::process::Command;

#[test]
fn eval_detector_on_a_labelled_frame_directory_reports_recall_and_alarms_per_source() {
    let lib = concat!(env!("CARGO_MANIFEST_DIR"), "/.deps/onnxruntime/libonnxruntime.so.1.31.1");
    if !std::path::Path::new(lib).is_file() {
        assert!(std::env::var("CI").is_err(), "CI=true but the ONNX Runtime library is missing: run ./x setup");
        return;
    }
    let dir = std::env::temp_dir().join(format!("endotower-eval-frames-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("synth_polyp")).unwrap();
    std::fs::create_dir_all(dir.join("synth_clean")).unwrap();
    // An odd size, like the real frames (1225 x 966 and the like): the
    // source makes even sizes, so one column is cut off.
    let mut src = SyntheticSource::new(SyntheticConfig { width: 1226, height: 966, seed: 5, ..Default::default() }).unwrap();
    let (mut items, mut polyps, mut clean) = (Vec::new(), 0, 0);
    while polyps < 4 || clean < 2 {
        let Some(f) = src.next_frame() else { continue };
        if f.episode != Episode::Clear {
            continue;
        }
        let adenomas: Vec<[f32; 4]> =
            f.truth.iter().filter(|t| t.class == LesionClass::Adenoma).map(|t| [t.x0, t.y0, t.x1.min(1225.0), t.y1]).collect();
        let full = image::RgbImage::from_raw(f.width, f.height, f.rgb.to_vec()).unwrap();
        let img = image::imageops::crop_imm(&full, 0, 0, 1225, f.height).to_image();
        if !adenomas.is_empty() && polyps < 4 {
            let file = format!("synth_polyp/{}.png", f.index);
            img.save(dir.join(&file)).unwrap();
            items.push(json!({"file": file, "kind": "polyp", "boxes": adenomas}));
            polyps += 1;
        } else if f.truth.is_empty() && clean < 2 {
            let file = format!("synth_clean/{}.jpg", f.index);
            img.save(dir.join(&file)).unwrap();
            items.push(json!({"file": file, "kind": "no_polyp", "boxes": []}));
            clean += 1;
        }
    }
    std::fs::write(dir.join("labels.json"), json!({"box_format": "[x0, y0, x1, y1]", "items": items}).to_string()).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_endotower"))
        .args(["eval", "detector", "--json", "--frames"])
        .arg(&dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let polyp = &r["per_source"]["synth_polyp"];
    assert_eq!(polyp["frames"], 4);
    assert!(polyp["polyps"].as_u64().unwrap() >= 4);
    assert!(polyp["found"].as_u64().unwrap() >= 1, "the demo detector finds synthetic adenomas: {polyp}");
    assert_eq!(r["per_source"]["synth_clean"]["negatives"], 2);
    assert_eq!(r["total"]["alarms_on_negatives"]["laparoscopy"], 0, "the demo model never alarms in a laparoscopy");
    assert_eq!(r["total"]["frames"], 6);

    // A label of an unknown kind is refused, naming the frame.
    let labels = dir.join("bad.json");
    std::fs::write(&labels, json!({"items": [{"file": items[0]["file"], "kind": "tumour", "boxes": []}]}).to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_endotower"))
        .args(["eval", "detector", "--frames"])
        .arg(&dir)
        .arg("--labels")
        .arg(&labels)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("tumour") && err.contains(items[0]["file"].as_str().unwrap()), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
