//! The remote inference backend against real servers (issue 17): the
//! `kserve` package's ModelServer and NVIDIA Triton (nvidia-pytriton), both
//! serving the shipped detector over the Open Inference Protocol (gRPC).
//!
//! - The same frames give the same output tensors and detections as the
//!   local backend.
//! - A running tower shows the server's results; the server killed, stalled
//!   or killed while stalled: raw video goes on with no frame skipped, "AI
//!   offline" shows, the inference actor is never restarted for it, and the
//!   results come back after the server does.

mod common;

use common::inference_server::{repo, servers_installed, InferenceServer, ServerKind};
use common::{test_config, wait_for};
use endotower::tower::Tower;
use endotower::video_config::SourceConfig;
use endotower_actors::events::EventKind;
use endotower_actors::video::ai_state::AiStatus;
use endotower_actors::video::backend::{Backend, BackendKind};
use endotower_actors::video::content_area::Scene;
use endotower_actors::video::frame::{Frame, PixelFormat};
use endotower_actors::video::inference::analyse;
use endotower_actors::video::onnx::{load_runtime, Model};
use endotower_actors::video::remote::{FrameTag, RemoteConfig, RemoteModel};
use std::path::Path;
use std::time::{Duration, Instant};

fn remote_cfg(address: String) -> RemoteConfig {
    RemoteConfig {
        address,
        model_name: "lesion_detector".into(),
        model_version: String::new(),
        retry_initial_ms: 100,
        retry_max_ms: 500,
        fallback_local: false,
    }
}

/// Frames of the synthetic endoscopy source, a few apart.
fn frames(n: usize) -> Vec<Frame> {
    let mut src = endotower::video_source::factory(&SourceConfig::Synthetic { width: 640, height: 360, fps: 30.0, seed: 5 })().unwrap();
    let mut out = Vec::new();
    let mut seq = 0;
    while out.len() < n {
        let Some(f) = src.next_frame().unwrap() else { continue };
        seq += 1;
        if seq % 9 == 0 {
            out.push(Frame::new(seq, Instant::now(), f.width, f.height, PixelFormat::Rgb8, f.rgb).unwrap());
        }
    }
    out
}

fn same_results_as_local(kind: ServerKind) {
    let server = InferenceServer::start(kind, &[]);
    let cfg = test_config();
    let inf = &cfg.video.inference;
    load_runtime(Path::new(&repo(".deps/onnxruntime/libonnxruntime.so.1.31.1"))).unwrap();
    let mut local = Model::open(Path::new(&repo(&inf.detector_model)), 1).unwrap();
    let mut remote = RemoteModel::new(remote_cfg(server.address()), Duration::from_secs(10)).unwrap();
    let c = &inf.detector;
    let mut detections = 0;
    for f in frames(8) {
        let tag = FrameTag { tower: "or-1".into(), exam: "E-17".into(), seq: f.seq };
        let input = endotower_actors::video::detection::preprocess(&f, c);
        let here = local.infer(&tag, input.clone(), c).unwrap();
        let there = remote.infer(&tag, input, c).unwrap();
        assert_eq!(here.0, there.0, "{kind:?}: output shape of frame {}", f.seq);
        assert!(here.1 == there.1, "{kind:?}: frame {}: the output tensors differ", f.seq);
        let (a, _) = analyse(&mut local, &tag, Scene::Full, &f, c).unwrap();
        let (b, _) = analyse(&mut remote, &tag, Scene::Full, &f, c).unwrap();
        assert_eq!(a, b, "{kind:?}: detections of frame {}", f.seq);
        detections += a.len();
    }
    assert!(detections > 0, "the frames must show lesions for the comparison to mean something");
    eprintln!("{kind:?}: 8 frames, {detections} detections, identical to the local backend");
}

#[test]
fn the_kserve_server_gives_the_local_backends_results_for_the_same_frames() {
    if !servers_installed() {
        return eprintln!("SKIPPED: run ./x setup for the inference servers");
    }
    same_results_as_local(ServerKind::KServe);
}

#[test]
fn triton_gives_the_local_backends_results_for_the_same_frames() {
    if !servers_installed() {
        return eprintln!("SKIPPED: run ./x setup for the inference servers");
    }
    same_results_as_local(ServerKind::Triton);
}

fn online(t: &Tower) -> bool {
    *t.video().ai.status.borrow() == AiStatus::Online
}

fn offline(t: &Tower) -> bool {
    matches!(*t.video().ai.status.borrow(), AiStatus::Offline { .. })
}

fn last_result(t: &Tower) -> Option<u64> {
    t.video().ai.result.borrow().as_ref().map(|r| r.frame_seq)
}

async fn remote_tower(address: String) -> Tower {
    let mut cfg = test_config();
    cfg.video.source = SourceConfig::Synthetic { width: 640, height: 360, fps: 30.0, seed: 5 };
    cfg.video.inference.runtime_library = repo(".deps/onnxruntime/libonnxruntime.so.1.31.1");
    cfg.video.inference.detector_model = repo("models/lesion_detector.onnx");
    cfg.video.inference.backend = BackendKind::Remote;
    cfg.video.inference.remote = Some(remote_cfg(address));
    cfg.video.inference.deadline_ms = 500;
    Tower::start(cfg).await.unwrap()
}

/// A new result after `since` (frame seq), with the AI online.
async fn results_resume(t: &Tower, since: Option<u64>, limit: Duration) -> bool {
    wait_for(limit, || online(t) && last_result(t) > since).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tower_shows_triton_results_on_the_picture() {
    if !servers_installed() {
        return eprintln!("SKIPPED: run ./x setup for the inference servers");
    }
    let server = InferenceServer::start(ServerKind::Triton, &[]);
    let tower = remote_tower(server.address()).await;
    assert!(results_resume(&tower, None, Duration::from_secs(20)).await, "no result from Triton");
    let shown = tower.video().ai.drawable(Instant::now(), Duration::from_secs(5));
    assert!(shown.is_some(), "the result is drawn on the picture");
    tower.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz027_a_killed_or_stalled_inference_server_degrades_to_raw_video_and_the_ai_returns_with_the_server() {
    if !servers_installed() {
        return eprintln!("SKIPPED: run ./x setup for the inference servers");
    }
    let mut server = InferenceServer::start(ServerKind::KServe, &[]);
    let port = server.grpc_port;
    let tower = remote_tower(server.address()).await;
    let mut events = tower.events().subscribe();
    let v = tower.video().clone();
    assert!(results_resume(&tower, None, Duration::from_secs(20)).await, "no result from the kserve server");
    let skipped = || v.display.lock().unwrap().skipped;
    let shown = || v.display.lock().unwrap().shown;

    // 1. Killed mid-run.
    let killed = Instant::now();
    server.kill();
    assert!(wait_for(Duration::from_secs(5), || offline(&tower)).await, "AI offline never showed");
    eprintln!("killed: AI offline after {} ms", killed.elapsed().as_millis());
    let before = last_result(&tower);
    let shown_at_kill = shown();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(offline(&tower) && last_result(&tower) == before, "no result while the server is down");
    assert!(tower.video().ai.drawable(Instant::now(), Duration::from_secs(60)).is_none(), "nothing drawn while offline");
    assert!(shown() > shown_at_kill + 20, "raw video goes on while the AI is offline");

    // 2. Back on the same port: results within 2 s of its READY.
    let server = InferenceServer::start_on(ServerKind::KServe, port, &[]);
    let back = Instant::now();
    assert!(results_resume(&tower, before, Duration::from_secs(2)).await, "results did not return within 2 s of the restart");
    eprintln!("restarted: results again after {} ms", back.elapsed().as_millis());

    // 3. Stalled (SIGSTOP): requests pass their deadline; then, while it is
    //    still stalled, killed and replaced (the second fault).
    let before = last_result(&tower);
    server.pause();
    let stalled = Instant::now();
    assert!(wait_for(Duration::from_secs(5), || offline(&tower)).await, "AI offline never showed for a stalled server");
    eprintln!("stalled: AI offline after {} ms", stalled.elapsed().as_millis());
    drop(server); // SIGCONT + SIGTERM, or SIGKILL after 10 s
    let server = InferenceServer::start_on(ServerKind::KServe, port, &[]);
    let back = Instant::now();
    assert!(results_resume(&tower, before, Duration::from_secs(2)).await, "results did not return within 2 s of the replacement");
    eprintln!("replaced: results again after {} ms", back.elapsed().as_millis());

    assert_eq!(skipped(), 0, "the display skipped frames");
    let mut restarts = 0;
    let mut offline_alarms = 0;
    while let Ok(e) = events.try_recv() {
        restarts += usize::from(e.kind == EventKind::SupervisorRestart && e.message.contains("inference"));
        offline_alarms += usize::from(e.kind == EventKind::AlarmRaised && e.code == "AI_OFFLINE");
    }
    assert_eq!(restarts, 0, "an unavailable server is not a failure of the inference actor");
    assert!(offline_alarms >= 2, "AI_OFFLINE raised for the kill and the stall ({offline_alarms})");
    assert!(!tower.events().is_active("inference", "AI_OFFLINE"), "AI_OFFLINE cleared when the server is back");
    tower.shutdown().await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz027_a_server_answering_garbage_is_ai_offline_and_the_local_fallback_keeps_the_ai_while_the_server_is_down() {
    if !servers_installed() {
        return eprintln!("SKIPPED: run ./x setup for the inference servers");
    }
    // A server whose model gives NaN: AI offline naming it, never a box.
    let garbage = InferenceServer::start(ServerKind::KServe, &["--garbage"]);
    let tower = remote_tower(garbage.address()).await;
    let mut events = tower.events().subscribe();
    assert!(wait_for(Duration::from_secs(20), || offline(&tower)).await, "AI offline never showed");
    let reason = match &*tower.video().ai.status.borrow() {
        AiStatus::Offline { reason } => reason.clone(),
        other => panic!("{other:?}"),
    };
    assert!(reason.contains("bad output") && reason.contains("non-finite"), "{reason}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(last_result(&tower).is_none(), "no result from a garbage server");
    while let Ok(e) = events.try_recv() {
        assert!(!(e.kind == EventKind::SupervisorRestart && e.message.contains("inference")), "restarted: {}", e.message);
    }
    tower.shutdown().await;
    drop(garbage);

    // With the local fallback: the server dies, the AI stays on locally.
    let mut server = InferenceServer::start(ServerKind::KServe, &[]);
    let mut cfg = test_config();
    cfg.video.source = SourceConfig::Synthetic { width: 640, height: 360, fps: 30.0, seed: 5 };
    cfg.video.inference.runtime_library = repo(".deps/onnxruntime/libonnxruntime.so.1.31.1");
    cfg.video.inference.detector_model = repo("models/lesion_detector.onnx");
    cfg.video.inference.backend = BackendKind::Remote;
    cfg.video.inference.remote = Some(RemoteConfig { fallback_local: true, ..remote_cfg(server.address()) });
    let tower = Tower::start(cfg).await.unwrap();
    assert!(results_resume(&tower, None, Duration::from_secs(20)).await, "no result");
    server.kill();
    assert!(
        wait_for(Duration::from_secs(5), || tower.events().is_active("inference", "AI_SERVER_UNAVAILABLE")).await,
        "AI_SERVER_UNAVAILABLE not raised"
    );
    let before = last_result(&tower);
    assert!(results_resume(&tower, before, Duration::from_secs(5)).await, "the local model did not take over");
    assert!(online(&tower), "the AI stays online on the local model");
    tower.shutdown().await;
}
