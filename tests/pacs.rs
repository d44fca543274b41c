//! Stills to the PACS and exam info from the worklist, against Debian dcmtk
//! (issue 17): `storescp` as the PACS, `wlmscpfs` as the worklist.
//!
//! - The PACS down for 60 s while 20 pedal presses come, the tower
//!   restarted in the middle (the second fault): all 20 stills arrive once
//!   when it returns, as VL Endoscopic Images with the patient of their
//!   exam and one study per exam.
//! - A worklist entry fills the tower's exam info.

mod common;

use common::dicom_peers::{dcmdump, dcmtk_installed, worklist_dir, DicomServer};
use common::inference_server::{free_port, repo};
use common::{test_config, wait_for};
use endotower::tower::Tower;
use endotower::tower_config::TowerConfig;
use endotower_actors::pacs::dimse::DicomPeer;
use endotower_actors::pacs::sender::PacsConfig;
use endotower_actors::pacs::worklist::WorklistConfig;
use endotower_actors::video::archive::ExamInfo;
use endotower_actors::video::model_card::Procedure;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("endotower-pacs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pacs_tower_config(dir: &Path, pacs_port: u16, exam: &str) -> TowerConfig {
    let mut cfg = test_config();
    cfg.video.source = endotower::video_config::SourceConfig::Synthetic { width: 640, height: 360, fps: 30.0, seed: 7 };
    cfg.video.inference.runtime_library = repo(".deps/onnxruntime/libonnxruntime.so.1.31.1");
    cfg.video.inference.detector_model = repo("models/lesion_detector.onnx");
    cfg.video.archive.dir = dir.join("archive").display().to_string();
    cfg.video.exam = ExamInfo { number: exam.into(), sex: "F".into(), age: 61, patient_id: format!("P-{exam}"), ..ExamInfo::default() };
    cfg.pacs = Some(PacsConfig {
        peer: DicomPeer {
            address: format!("127.0.0.1:{pacs_port}"),
            called_ae: "PACS".into(),
            calling_ae: "ENDOTOWER".into(),
            timeout_ms: 3000,
        },
        outbox: dir.join("outbox").display().to_string(),
        retry_initial_ms: 200,
        retry_max_ms: 2000,
        batch: 20,
    });
    cfg
}

fn queued(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("outbox"))
        .map(|d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "dcm")).count())
        .unwrap_or(0)
}

/// Ten pedal presses, each archived (and queued for the PACS) before the next.
async fn press_ten(tower: &Tower, dir: &Path, before: usize) {
    for i in 1..=10 {
        tower.sim().unwrap().press_pedal();
        assert!(wait_for(Duration::from_secs(20), || queued(dir) >= before + i).await, "press {i} was not queued");
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz028_twenty_stills_taken_while_the_pacs_is_down_and_the_tower_restarts_all_arrive_once() {
    if !dcmtk_installed() {
        return eprintln!("SKIPPED: run ./x setup for dcmtk");
    }
    let dir = temp_dir("down");
    let port = free_port();
    let down_since = Instant::now();

    // Exam E-1: ten presses with the PACS down.
    let tower = Tower::start(pacs_tower_config(&dir, port, "E-1")).await.unwrap();
    press_ten(&tower, &dir, 0).await;
    assert!(
        wait_for(Duration::from_secs(10), || tower.events().is_active("pacs", "PACS_UNREACHABLE")).await,
        "PACS_UNREACHABLE not raised"
    );
    // The second fault: the tower restarts while stills wait for the PACS.
    tower.shutdown().await;
    let tower = Tower::start(pacs_tower_config(&dir, port, "E-2")).await.unwrap();
    press_ten(&tower, &dir, 10).await;
    assert_eq!(queued(&dir), 20, "every still waits in the outbox");
    let left = Duration::from_secs(60).saturating_sub(down_since.elapsed());
    tokio::time::sleep(left).await;
    assert!(tower.events().is_active("pacs", "PACS_UNREACHABLE"), "still unreachable after 60 s");

    // The PACS comes back: all 20 arrive, once each.
    let received = dir.join("received");
    let log = dir.join("storescp.log");
    let pacs = DicomServer::storescp(&received, port, &log);
    let count = || std::fs::read_dir(&received).map(|d| d.flatten().count()).unwrap_or(0);
    assert!(wait_for(Duration::from_secs(30), || queued(&dir) == 0).await, "the outbox did not drain ({} left)", queued(&dir));
    assert!(
        wait_for(Duration::from_secs(10), || !tower.events().is_active("pacs", "PACS_UNREACHABLE")).await,
        "PACS_UNREACHABLE not cleared"
    );
    tokio::time::sleep(Duration::from_secs(1)).await; // nothing more comes
    assert_eq!(count(), 20, "20 instances in the PACS");
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(log.matches("storing DICOM file").count(), 20, "each still received once:\n{log}");

    let mut studies: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in std::fs::read_dir(&received).unwrap().flatten() {
        let path = f.path();
        assert_eq!(dcmdump(&path, "SOPClassUID"), "1.2.840.10008.5.1.4.1.1.77.1.1", "{}", path.display());
        assert_eq!(dcmdump(&path, "Modality"), "ES");
        let (exam, patient) = (dcmdump(&path, "AccessionNumber"), dcmdump(&path, "PatientID"));
        assert_eq!(patient, format!("P-{exam}"), "the patient of the still's own exam");
        studies.entry(exam).or_default().insert(dcmdump(&path, "StudyInstanceUID"));
    }
    assert_eq!(studies.keys().map(String::as_str).collect::<Vec<_>>(), ["E-1", "E-2"]);
    assert!(studies.values().all(|uids| uids.len() == 1), "one study instance UID per exam: {studies:?}");
    assert_ne!(studies["E-1"], studies["E-2"]);
    tower.shutdown().await;
    drop(pacs);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The worklist of `wl`, asked by the station `ae`.
fn worklist(wl: &DicomServer, ae: &str) -> WorklistConfig {
    WorklistConfig {
        peer: DicomPeer { address: wl.address(), called_ae: "WORKLIST".into(), calling_ae: ae.into(), timeout_ms: 3000 },
        station_ae: String::new(),
        modality: "ES".into(),
        poll_s: 30,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worklist_entry_fills_the_exam_info() {
    if !dcmtk_installed() {
        return eprintln!("SKIPPED: run ./x setup for dcmtk");
    }
    let dir = temp_dir("worklist");
    let today = endotower_actors::pacs::still::dicom_date_time(endotower_actors::telemetry::journal::now_ms()).0;
    let wl = DicomServer::wlmscpfs(&worklist_dir(&dir, "WORKLIST", &today));
    let mut cfg = test_config();
    cfg.worklist = Some(worklist(&wl, "ENDOTOWER"));
    let tower = Tower::start(cfg).await.unwrap();
    let exam = tower.video().exam.subscribe();
    assert!(
        wait_for(Duration::from_secs(20), || exam.borrow().number == "A-2026-17").await,
        "exam info not from the worklist: {:?}",
        *exam.borrow()
    );
    let e = exam.borrow().clone();
    assert_eq!((e.patient_id.as_str(), e.patient_name.as_str(), e.sex.as_str()), ("P-1001", "DOE^JANE", "F"));
    assert_eq!(e.procedure, Procedure::Colonoscopy);
    assert_eq!(e.study_uid, "1.2.826.0.1.3680043.10.1234.17");
    assert!(e.age >= 61, "born 1965-03-12: {}", e.age);
    tower.shutdown().await;

    // Another station's tower finds nothing and keeps its own exam info.
    let mut cfg = test_config();
    let own = cfg.video.exam.clone();
    cfg.worklist = Some(worklist(&wl, "OTHERTOWER"));
    let tower = Tower::start(cfg).await.unwrap();
    assert!(!wait_for(Duration::from_secs(3), || *tower.video().exam.borrow() != own).await, "another station's entry was taken");
    assert!(!tower.events().is_active("worklist", "WORKLIST_UNREACHABLE"));
    tower.shutdown().await;
    drop(wl);
    let _ = std::fs::remove_dir_all(&dir);
}
