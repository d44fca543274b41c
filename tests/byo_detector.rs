//! Bring your own detector: YOLO-format ONNX models (built here with
//! onnx.helper, outputs known) loaded through a model card with a
//! `[detector]` table, shown in the running tower exactly where their outputs
//! say; a bad card gets an error naming the file and the field.

mod common;

use common::{test_config, wait_for};
use endotower::tower::Tower;
use endotower_actors::events::EventKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn repo(p: &str) -> String {
    format!("{}/{p}", env!("CARGO_MANIFEST_DIR"))
}

/// Build the test model `kind` (`yolo`, `yolo_nms`) into `dir`, with a card.
fn model(dir: &Path, kind: &str, format: &str) -> PathBuf {
    let onnx = dir.join(format!("{kind}.onnx"));
    let out = Command::new(repo(".deps/venv/bin/python"))
        .arg(repo("tests/peers/make_yolo_onnx.py"))
        .arg(&onnx)
        .arg(kind)
        .output()
        .expect("the test venv (./x setup installs onnx into .deps/venv)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let card = format!(
        r#"name = "tiny {kind} (test)"
status = "validated"
trained_on = "nothing: a constant output, for the test"
procedures = ["colonoscopy"]
high_risk_classes = ["polyp"]
high_risk_threshold = 0.5

[detector]
input_name = "images"
output_name = "output0"
input_size = 320
mean = [0.0, 0.0, 0.0]
std = [1.0, 1.0, 1.0]
classes = ["polyp", "tool"]
score_threshold = 0.25
nms_iou = 0.45
format = "{format}"
resize = "letterbox"
"#
    );
    std::fs::write(onnx.with_extension("card.toml"), card).unwrap();
    onnx
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("endotower-byo-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The boxes the tower shows for `model` on a 640 x 360 picture.
async fn boxes_in_the_tower(model: &Path) -> (Vec<(String, f32, [f32; 4])>, bool, bool) {
    let mut cfg = test_config();
    cfg.video.source = endotower::video_config::SourceConfig::Synthetic { width: 640, height: 360, fps: 30.0, seed: 3 };
    cfg.video.inference.runtime_library = repo(".deps/onnxruntime/libonnxruntime.so.1.31.1");
    cfg.video.inference.detector_model = model.display().to_string();
    // The whole frame goes to the model (the synthetic picture has a round
    // vignette the scene gate would crop to), so the expected boxes follow
    // from the letterbox alone.
    cfg.video.inference.content_area = None;
    let tower = Tower::start(cfg).await.unwrap();
    let mut events = tower.events().subscribe();
    let v = tower.video().clone();
    assert!(wait_for(Duration::from_secs(20), || v.ai.result.borrow().is_some()).await, "no AI result");
    let r = v.ai.result.borrow().clone().unwrap();
    let mut alarm = false;
    while let Ok(e) = events.try_recv() {
        alarm |= e.code == "HIGH_RISK_LESION" && e.kind == EventKind::AlarmRaised;
    }
    tower.shutdown().await;
    let boxes = r.detections.iter().map(|d| (d.class_name.clone(), d.score, [d.x0, d.y0, d.x1, d.y1])).collect();
    (boxes, r.high_risk, alarm || r.high_risk)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yolo_model_through_its_card_gives_the_expected_boxes_in_the_tower() {
    let dir = temp_dir("yolo");
    // Candidates (cx 160, cy 160, 64 x 32) in the 320 letterbox of a 640 x
    // 360 frame (scale 0.5, 70 px bars): (256, 148) - (384, 212).
    let (boxes, high_risk, alarmed) = boxes_in_the_tower(&model(&dir, "yolo", "yolo")).await;
    assert_eq!(boxes, [("polyp".to_string(), 0.9, [256.0, 148.0, 384.0, 212.0])], "NMS keeps one; the weak candidate is dropped");
    assert!(high_risk && alarmed, "polyp is high-risk on this card, in a colonoscopy");

    let (boxes, high_risk, _) = boxes_in_the_tower(&model(&dir, "yolo_nms", "yolo_nms")).await;
    assert_eq!(boxes, [("tool".to_string(), 0.7, [256.0, 148.0, 384.0, 212.0])]);
    assert!(!high_risk, "a tool is not high-risk");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_model_card_is_refused_naming_the_file_and_the_field() {
    let dir = temp_dir("bad");
    let onnx = model(&dir, "yolo", "ssd");
    let check = || {
        let out = Command::new(env!("CARGO_BIN_EXE_endotower"))
            .args(["check-config", "conf/tower.toml"])
            .env("ENDOTOWER__VIDEO__INFERENCE__DETECTOR_MODEL", &onnx)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout))
    };
    let (ok, out) = check();
    assert!(!ok);
    assert!(out.contains("yolo.card.toml") && out.contains("format") && out.contains("ssd"), "{out}");
    // A high-risk class the model does not have.
    let card = std::fs::read_to_string(onnx.with_extension("card.toml")).unwrap().replace("\"ssd\"", "\"yolo\"");
    std::fs::write(onnx.with_extension("card.toml"), card.replace("high_risk_classes = [\"polyp\"]", "high_risk_classes = [\"adenoma\"]"))
        .unwrap();
    let (ok, out) = check();
    assert!(!ok);
    assert!(out.contains("high_risk_classes") && out.contains("adenoma"), "{out}");
    // Fixed: accepted.
    std::fs::write(onnx.with_extension("card.toml"), card).unwrap();
    let (ok, out) = check();
    assert!(ok, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
