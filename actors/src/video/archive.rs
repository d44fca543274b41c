//! The still archive (CN108831533A [0109]): a pedal press archives the frame
//! it picked as a PNG plus a JSON sidecar with the exam, the time, the frame
//! number and the detections, in the configured directory.
//!
//! Each file is written to a temporary name, synced and renamed, so a reader
//! never sees a partial file. A failed write (full disk, missing directory)
//! raises an alarm naming the path and the OS error, and the still is kept in
//! a bounded retry queue, so nothing is lost while the condition lasts.
//!
//! With a PACS configured, the still is also queued as a DICOM object in
//! the PACS outbox ([`crate::pacs`]) in the same step: a still counts as
//! archived only once both are on disk. The press time is fixed at the
//! press, so a retried write gives the same names and UIDs.

use super::ai_state::AiResult;
use super::detection::Detection;
use super::frame::FrameRef;
use super::selector::{Pick, Reason};
use crate::events::{EventBus, EventKind, Severity};
use crate::telemetry::journal::now_ms;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};

/// Exam information shown on screen and stored with every still.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExamInfo {
    pub number: String,
    pub sex: String,
    pub age: u32,
    /// The kind of exam: lesion alarms only where the model is valid for it.
    #[serde(default)]
    pub procedure: super::model_card::Procedure,
    /// The patient, when known (the worklist gives it); stored with DICOM stills.
    #[serde(default)]
    pub patient_id: String,
    #[serde(default)]
    pub patient_name: String,
    /// The study the worklist scheduled; empty: one is derived from the
    /// exam number (see `pacs::still`).
    #[serde(default)]
    pub study_uid: String,
}

impl ExamInfo {
    pub fn validate(&self, path: &str) -> Result<(), crate::config::ConfigError> {
        if !matches!(self.sex.as_str(), "" | "F" | "M" | "X") {
            return Err(crate::config::ConfigError::new(format!("{path}.sex"), format!("{:?}", self.sex), "\"F\", \"M\", \"X\" or empty"));
        }
        crate::config::check_int(&format!("{path}.age"), u64::from(self.age), 0, 130, "years")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    pub dir: String,
    /// Write the still without detections if no result came within this.
    pub result_wait_ms: u64,
    /// Stills kept for retry while writes fail.
    pub max_pending: usize,
}

#[derive(Debug, Serialize)]
struct Sidecar<'a> {
    exam: &'a ExamInfo,
    time_unix_ms: u64,
    frame_seq: u64,
    width: u32,
    height: u32,
    image: String,
    detections: &'a [Detection],
    analysed: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("archive {path}: {source}")]
pub struct ArchiveError {
    pub path: String,
    pub source: std::io::Error,
}

fn write_atomic(path: &Path, write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>) -> Result<(), ArchiveError> {
    crate::atomic_file::write_atomic(path, write).map_err(|source| ArchiveError { path: path.display().to_string(), source })
}

fn encode_png(frame: &FrameRef, out: &mut std::fs::File) -> std::io::Result<()> {
    let mut enc = png::Encoder::new(std::io::BufWriter::new(out), frame.width, frame.height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut w = enc.write_header().map_err(std::io::Error::other)?;
    w.write_image_data(&frame.pixels).map_err(std::io::Error::other)?;
    w.finish().map_err(std::io::Error::other)
}

/// Where pedal stills go as DICOM, besides the archive.
#[derive(Debug, Clone)]
pub struct StillOutbox {
    pub outbox: crate::pacs::outbox::Outbox,
    pub tower_id: String,
}

impl StillOutbox {
    fn put(&self, exam: &ExamInfo, frame: &FrameRef, detections: Option<&[Detection]>, now: u64) -> Result<PathBuf, ArchiveError> {
        use crate::pacs::still::{vl_endoscopic_image, StillContext};
        let dir = self.outbox.dir().display().to_string();
        let ctx = StillContext { exam, tower_id: &self.tower_id, time_unix_ms: now, detections };
        let obj = vl_endoscopic_image(frame, &ctx).map_err(|e| ArchiveError { path: dir, source: std::io::Error::other(e) })?;
        self.outbox
            .put(&crate::pacs::outbox::Outbox::name(now, frame.seq), &obj)
            .map_err(|e| ArchiveError { path: e.path, source: e.source })
    }
}

/// Write one still and its sidecar, pressed at `now` (Unix ms); returns the
/// PNG path.
pub fn write_still(
    dir: &Path,
    exam: &ExamInfo,
    frame: &FrameRef,
    detections: Option<&[Detection]>,
    now: u64,
) -> Result<PathBuf, ArchiveError> {
    std::fs::create_dir_all(dir).map_err(|source| ArchiveError { path: dir.display().to_string(), source })?;
    let exam_tag: String = exam.number.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    let stem = format!("{}{}{now}-frame{}", exam_tag, if exam_tag.is_empty() { "" } else { "-" }, frame.seq);
    let png_path = dir.join(format!("{stem}.png"));
    write_atomic(&png_path, |f| encode_png(frame, f))?;
    let sidecar = Sidecar {
        exam,
        time_unix_ms: now,
        frame_seq: frame.seq,
        width: frame.width,
        height: frame.height,
        image: format!("{stem}.png"),
        detections: detections.unwrap_or(&[]),
        analysed: detections.is_some(),
    };
    let json = serde_json::to_vec_pretty(&sidecar)
        .map_err(|e| ArchiveError { path: png_path.display().to_string(), source: std::io::Error::other(e) })?;
    if let Err(e) = write_atomic(&dir.join(format!("{stem}.json")), |f| f.write_all(&json)) {
        // No still without its sidecar: the retry writes both again.
        let _ = std::fs::remove_file(&png_path);
        return Err(e);
    }
    Ok(png_path)
}

pub struct ArchiveArgs {
    pub cfg: ArchiveConfig,
    pub exam: watch::Receiver<ExamInfo>,
    pub picks: broadcast::Receiver<Pick>,
    pub results: watch::Receiver<Option<AiResult>>,
    pub events: EventBus,
    /// Beaten on every message, the 100 ms flush tick included (hang detection).
    pub liveness: Option<crate::supervisor::Liveness>,
    /// The PACS outbox, when a PACS is configured.
    pub pacs: Option<StillOutbox>,
}

pub enum ArchiveMsg {
    Pedal(FrameRef),
    Result(u64, Vec<Detection>),
    Flush,
}

struct Pending {
    frame: FrameRef,
    since: Instant,
    /// The press time (Unix ms): names the files and the DICOM instance.
    pressed_ms: u64,
    detections: Option<Vec<Detection>>,
}

pub struct ArchiveState {
    cfg: ArchiveConfig,
    exam: watch::Receiver<ExamInfo>,
    events: EventBus,
    pending: VecDeque<Pending>,
    forwarder: tokio::task::JoinHandle<()>,
    liveness: Option<crate::supervisor::Liveness>,
    pacs: Option<StillOutbox>,
}

pub struct ArchiveActor;

impl ArchiveState {
    async fn flush(&mut self) {
        let wait = Duration::from_millis(self.cfg.result_wait_ms);
        while let Some(p) = self.pending.front() {
            if p.detections.is_none() && p.since.elapsed() < wait {
                break; // still waiting for its analysis
            }
            let (dir, exam, frame, dets, now, pacs) = (
                PathBuf::from(&self.cfg.dir),
                self.exam.borrow().clone(),
                p.frame.clone(),
                p.detections.clone(),
                p.pressed_ms,
                self.pacs.clone(),
            );
            let written = tokio::task::spawn_blocking(move || {
                let png = write_still(&dir, &exam, &frame, dets.as_deref(), now)?;
                if let Some(pacs) = pacs {
                    pacs.put(&exam, &frame, dets.as_deref(), now)?;
                }
                Ok::<_, ArchiveError>(png)
            })
            .await;
            match written {
                Ok(Ok(path)) => {
                    self.pending.pop_front();
                    self.events.clear("archive", "ARCHIVE_FAILED", "archive writable again");
                    self.events.event(
                        EventKind::Capture,
                        Severity::Info,
                        "archive",
                        "CAPTURED",
                        format!("still archived: {}", path.display()),
                    );
                }
                Ok(Err(e)) => {
                    self.events.raise(
                        "archive",
                        "ARCHIVE_FAILED",
                        Severity::Medium,
                        format!("cannot archive still: {e}; {} kept for retry", self.pending.len()),
                    );
                    return;
                }
                Err(e) => {
                    self.events.raise("archive", "ARCHIVE_FAILED", Severity::Medium, format!("archive writer failed: {e}"));
                    return;
                }
            }
        }
    }
}

impl Actor for ArchiveActor {
    type Msg = ArchiveMsg;
    type State = ArchiveState;
    type Arguments = ArchiveArgs;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, mut a: ArchiveArgs) -> Result<Self::State, ActorProcessingErr> {
        let me = myself.clone();
        let forwarder = tokio::spawn(async move {
            loop {
                tokio::select! {
                    p = a.picks.recv() => match p {
                        Ok(p) if p.reason == Reason::Pedal => { if me.cast(ArchiveMsg::Pedal(p.frame)).is_err() { return; } }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    r = a.results.changed() => {
                        if r.is_err() { return; }
                        let done = a.results.borrow_and_update().as_ref().map(|r| (r.frame_seq, r.detections.clone()));
                        if let Some((seq, d)) = done { if me.cast(ArchiveMsg::Result(seq, d)).is_err() { return; } }
                    }
                }
            }
        });
        myself.send_interval(Duration::from_millis(100), || ArchiveMsg::Flush);
        if let Some(l) = &a.liveness {
            l.beat();
        }
        Ok(ArchiveState {
            cfg: a.cfg,
            exam: a.exam,
            events: a.events,
            pending: VecDeque::new(),
            forwarder,
            liveness: a.liveness,
            pacs: a.pacs,
        })
    }

    async fn post_stop(&self, _m: ActorRef<Self::Msg>, s: &mut Self::State) -> Result<(), ActorProcessingErr> {
        s.forwarder.abort();
        Ok(())
    }

    async fn handle(&self, _m: ActorRef<Self::Msg>, msg: Self::Msg, s: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if let Some(l) = &s.liveness {
            l.beat();
        }
        match msg {
            ArchiveMsg::Pedal(frame) => {
                if s.pending.len() >= s.cfg.max_pending {
                    let dropped = s.pending.pop_front();
                    s.events.raise(
                        "archive",
                        "ARCHIVE_OVERFLOW",
                        Severity::Medium,
                        format!("archive queue full: still of frame {} dropped", dropped.map_or(0, |p| p.frame.seq)),
                    );
                }
                s.pending.push_back(Pending { frame, since: Instant::now(), pressed_ms: now_ms(), detections: None });
            }
            ArchiveMsg::Result(seq, d) => {
                if let Some(p) = s.pending.iter_mut().find(|p| p.frame.seq == seq) {
                    p.detections = Some(d);
                }
                s.flush().await;
            }
            ArchiveMsg::Flush => s.flush().await,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::frame::{Frame, PixelFormat};
    use std::sync::Arc;

    fn frame() -> FrameRef {
        let px: Vec<u8> = (0..64 * 48 * 3).map(|i| (i % 251) as u8).collect();
        Arc::new(Frame::new(42, Instant::now(), 64, 48, PixelFormat::Rgb8, Arc::new(px)).unwrap())
    }

    #[test]
    fn still_and_sidecar_are_written_with_exam_frame_and_detections() {
        let dir = std::env::temp_dir().join(format!("endotower-archive-{}", std::process::id()));
        let exam = ExamInfo { number: "E-17".into(), sex: "F".into(), age: 61, ..ExamInfo::default() };
        let det =
            Detection { class: 0, class_name: "adenoma".into(), score: 0.9, probabilities: vec![0.9], x0: 1.0, y0: 2.0, x1: 3.0, y1: 4.0 };
        let png = write_still(&dir, &exam, &frame(), Some(&[det]), now_ms()).unwrap();
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
        let reader = decoder.read_info().unwrap();
        assert_eq!((reader.info().width, reader.info().height), (64, 48));
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(png.with_extension("json")).unwrap()).unwrap();
        assert_eq!(json["exam"]["number"], "E-17");
        assert_eq!(json["frame_seq"], 42);
        assert_eq!(json["detections"][0]["class_name"], "adenoma");
        assert!(std::fs::read_dir(&dir).unwrap().all(|e| !e.unwrap().path().to_string_lossy().ends_with(".tmp")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A 640 x 480 frame of noise: its PNG (~900 KB) cannot fit in 64 KiB.
    fn noise_frame(seq: u64) -> FrameRef {
        let mut x = 0x2545_f491_u32;
        let px: Vec<u8> = (0..640 * 480 * 3)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        Arc::new(Frame::new(seq, Instant::now(), 640, 480, PixelFormat::Rgb8, Arc::new(px)).unwrap())
    }

    async fn next_event(
        rx: &mut broadcast::Receiver<crate::events::Event>,
        want: impl Fn(&crate::events::Event) -> bool,
    ) -> crate::events::Event {
        let wait = async {
            loop {
                match rx.recv().await {
                    Ok(e) if want(&e) => return e,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => panic!("event bus closed"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait).await.expect("event never came")
    }

    #[test]
    fn a_full_disk_raises_archive_failed_and_the_still_is_written_when_space_returns() {
        let name = "video::archive::tests::a_full_disk_raises_archive_failed_and_the_still_is_written_when_space_returns";
        crate::tiny_fs::on_tiny_fs(name, 64, |dir| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let events = EventBus::new(64);
                let mut rx = events.subscribe();
                let (_exam_tx, exam) = watch::channel(ExamInfo { number: "E-9".into(), sex: "M".into(), age: 50, ..ExamInfo::default() });
                let (_pick_tx, picks) = broadcast::channel(4);
                let (_res_tx, results) = watch::channel(None);
                let cfg = ArchiveConfig { dir: dir.display().to_string(), result_wait_ms: 0, max_pending: 4 };
                let args = ArchiveArgs { cfg, exam, picks, results, events: events.clone(), liveness: None, pacs: None };
                let (actor, handle) = Actor::spawn(None, ArchiveActor, args).await.unwrap();
                actor.cast(ArchiveMsg::Pedal(noise_frame(7))).unwrap();

                let failed = next_event(&mut rx, |e| e.code == "ARCHIVE_FAILED").await;
                assert_eq!(failed.kind, EventKind::AlarmRaised);
                assert!(failed.message.contains("No space left on device"), "{}", failed.message);
                assert!(failed.message.contains(&dir.display().to_string()), "the alarm names the path: {}", failed.message);
                assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0, "no partial or temporary file is left behind");

                // Space comes back: the kept still is written by the next retry.
                let grown = std::process::Command::new("mount").args(["-o", "remount,size=16m"]).arg(dir).status().unwrap();
                assert!(grown.success());
                let captured = next_event(&mut rx, |e| e.code == "CAPTURED").await;
                assert!(captured.message.contains("E-9-") && captured.message.contains("frame7.png"), "{}", captured.message);
                assert!(!events.is_active("archive", "ARCHIVE_FAILED"), "the alarm clears once the still is written");
                let png = captured.message.trim_start_matches("still archived: ");
                let reader = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap())).read_info().unwrap();
                assert_eq!((reader.info().width, reader.info().height), (640, 480));
                let json: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(Path::new(png).with_extension("json")).unwrap()).unwrap();
                assert_eq!(json["frame_seq"], 7);
                actor.stop(None);
                handle.await.unwrap();
            });
        });
    }

    #[test]
    fn an_unwritable_directory_is_a_clear_error_naming_the_path() {
        let e = write_still(Path::new("/proc/endotower-no-such-dir"), &ExamInfo::default(), &frame(), None, 0).unwrap_err();
        assert!(e.to_string().contains("/proc/endotower-no-such-dir"), "{e}");
    }
}
