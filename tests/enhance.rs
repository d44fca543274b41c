//! The enhancement stage (issue 7): blurred frames are the ones deblurred,
//! frames leave in order, and a crash or hang of the stage turns into
//! in-order pass-through from which the stage recovers by itself.
//! Assertions are on counted frames, not wall-clock.

mod common;

use common::{test_config, wait_for};
use endotower::tower::Tower;
use endotower_actors::video::enhance::actor::EnhanceMsg;
use endotower_actors::video::enhance::channels::EnhanceStatus;
use endotower_actors::video::enhance::config::EnhanceConfig;
use endotower_actors::video::enhance::models::Enhancer;
use endotower_actors::video::frame::{Frame, PixelFormat};
use endotower_actors::video::onnx::load_runtime;
use endotower_sim::video::{Episode, SyntheticConfig, SyntheticSource};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn repo(p: &str) -> String {
    format!("{}/{p}", env!("CARGO_MANIFEST_DIR"))
}

fn runtime() -> Option<String> {
    let lib = repo(".deps/onnxruntime/libonnxruntime.so.1.31.1");
    if Path::new(&lib).is_file() {
        return Some(lib);
    }
    assert!(std::env::var("CI").is_err(), "CI=true but the ONNX Runtime library is missing: run ./x setup");
    eprintln!("SKIPPED: ONNX Runtime library missing (run ./x setup)");
    None
}

fn enhance_config() -> EnhanceConfig {
    EnhanceConfig {
        enabled: true,
        sharpness_model: repo("models/sharpness.onnx"),
        site_model: repo("models/site_classifier.onnx"),
        deblur_model: repo("models/deblur.onnx"),
        ..EnhanceConfig::default()
    }
}

#[test]
fn blurred_frames_are_the_ones_sent_to_the_deblurring_model() {
    let Some(lib) = runtime() else { return };
    load_runtime(Path::new(&lib)).unwrap();
    let mut e = Enhancer::open(&enhance_config()).unwrap();
    let mut cfg = SyntheticConfig { width: 640, height: 360, fps: 30.0, seed: 5, ..SyntheticConfig::default() };
    // Many long, strong blur episodes; nothing else disturbs the picture.
    cfg.episodes.motion_blur_per_min = 30.0;
    cfg.episodes.blur_px = [24.0, 30.0];
    cfg.episodes.freeze_per_min = 0.0;
    cfg.episodes.black_per_min = 0.0;
    cfg.episodes.dropout_per_min = 0.0;
    let mut src = SyntheticSource::new(cfg).unwrap();
    let (mut clear, mut clear_deblurred, mut blurred, mut blurred_deblurred) = (0, 0, 0, 0);
    let mut seq = 0;
    while clear < 120 || blurred < 40 {
        let Some(f) = src.next_frame() else { continue };
        seq += 1;
        if seq > 6000 {
            break;
        }
        let frame = Arc::new(Frame::new(seq, Instant::now(), 640, 360, PixelFormat::Rgb8, Arc::new(f.rgb.to_vec())).unwrap());
        let take = match f.episode {
            Episode::Clear => clear < 120 && seq % 5 == 0,
            // blur_px is in pixels of this 640-wide frame: >= 12 is >= 24 px at 1280.
            Episode::MotionBlur => blurred < 40 && f.blur_px >= 12.0,
            _ => false,
        };
        if !take {
            continue;
        }
        let v = e.process(&frame).unwrap();
        assert_eq!(v.seq, seq, "the verdict names its frame");
        if let Some(out) = &v.enhanced {
            assert_eq!((out.seq, out.captured_at, out.width, out.height), (frame.seq, frame.captured_at, 640, 360));
            assert_ne!(out.pixels, frame.pixels, "a deblurred frame differs from its input");
        }
        match f.episode {
            Episode::MotionBlur => {
                blurred += 1;
                blurred_deblurred += usize::from(v.enhanced.is_some());
            }
            _ => {
                clear += 1;
                clear_deblurred += usize::from(v.enhanced.is_some());
            }
        }
    }
    assert!(clear >= 120 && blurred >= 40, "not enough frames: {clear} clear, {blurred} blurred");
    // The demo sharpness classifier's held-out accuracy is ~0.86-0.97, so
    // allow its error rate, but no more.
    assert!(blurred_deblurred * 10 >= blurred * 8, "only {blurred_deblurred} of {blurred} blurred frames deblurred");
    assert!(clear_deblurred * 10 <= clear, "{clear_deblurred} of {clear} sharp frames were deblurred");
}

fn status(t: &Tower) -> EnhanceStatus {
    t.video().enhance.status.borrow().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz020_a_crashing_or_hanging_enhancement_stage_turns_into_in_order_pass_through_and_recovers() {
    let Some(lib) = runtime() else { return };
    let mut cfg = test_config();
    cfg.video.source = endotower::video_config::SourceConfig::Synthetic { width: 640, height: 360, fps: 30.0, seed: 8 };
    cfg.video.inference.runtime_library = lib;
    cfg.video.enhance = EnhanceConfig { hang_ms: 300, budget_ms: 30, ..enhance_config() };
    cfg.supervision.children.enhance.backoff_initial_ms = 50;
    cfg.supervision.children.enhance.backoff_max_ms = 200;
    let tower = Tower::start(cfg).await.unwrap();
    let v = tower.video().clone();
    let e = v.enhance.clone();
    let active = |t: &Tower| status(t) == EnhanceStatus::Active;
    let offline = |t: &Tower| matches!(status(t), EnhanceStatus::Offline { .. });
    assert!(wait_for(Duration::from_secs(15), || active(&tower)).await, "enhancement never came up: {:?}", status(&tower));
    let classified = |n: u64| {
        let c = e.stats.clone();
        let start = c.classified.load(Ordering::Relaxed);
        move || c.classified.load(Ordering::Relaxed) >= start + n
    };
    let mut recoveries = 0;

    // 1. The actor panics; 2. the worker panics; 3. the worker hangs.
    for round in 0..3 {
        assert!(wait_for(Duration::from_secs(10), classified(10)).await, "round {round}: no verdicts");
        let bypassed = e.stats.shown_bypassed.load(Ordering::Relaxed);
        match round {
            0 => tower.actor("enhance").unwrap().send_message(EnhanceMsg::TestPanic).unwrap(),
            1 => e.hooks.panic_next.store(true, Ordering::Relaxed),
            _ => e.hooks.hang_next_ms.store(3_000, Ordering::Relaxed),
        }
        assert!(wait_for(Duration::from_secs(5), || offline(&tower)).await, "round {round}: failure not seen");
        assert!(wait_for(Duration::from_secs(10), || active(&tower)).await, "round {round}: the stage did not recover");
        assert!(e.stats.shown_bypassed.load(Ordering::Relaxed) > bypassed, "round {round}: no frame passed through raw meanwhile");
        recoveries += 1;
    }

    // 4. Switched off at run time: frames pass at once; on again: it resumes.
    e.switch.send_replace(false);
    assert!(wait_for(Duration::from_secs(5), || status(&tower) == EnhanceStatus::Off).await);
    let bypassed = e.stats.shown_bypassed.load(Ordering::Relaxed);
    let captured = v.capture.last_seq.load(Ordering::Relaxed);
    assert!(wait_for(Duration::from_secs(5), || v.capture.last_seq.load(Ordering::Relaxed) > captured + 20).await);
    assert!(e.stats.shown_bypassed.load(Ordering::Relaxed) >= bypassed + 15, "switched off, frames must pass raw");
    e.switch.send_replace(true);
    assert!(wait_for(Duration::from_secs(10), || active(&tower)).await, "did not resume");
    assert!(wait_for(Duration::from_secs(10), classified(10)).await);

    let captured = v.capture.last_seq.load(Ordering::Relaxed);
    let shown = v.display.lock().unwrap().clone();
    let s = &e.stats;
    let released = s.shown_enhanced.load(Ordering::Relaxed)
        + s.shown_sharp.load(Ordering::Relaxed)
        + s.shown_late.load(Ordering::Relaxed)
        + s.shown_bypassed.load(Ordering::Relaxed);
    assert_eq!(recoveries, 3);
    assert_eq!(shown.reordered, 0, "a frame left out of order");
    assert_eq!(shown.skipped, 0, "the display lost frames");
    assert_eq!(released, shown.shown, "every shown frame went through the sequencer once");
    assert!(shown.shown + 3 >= captured, "shown {} of {captured} frames", shown.shown);
    assert!(captured > 60, "only {captured} frames in the whole run");
    assert!(!tower.setpoints().safe_state(), "a failing enhancement stage must never reach the safe state");
    tower.shutdown().await;
}
