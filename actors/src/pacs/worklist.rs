//! Exam info from the Modality Worklist (C-FIND, Modality Worklist
//! Information Model FIND, PS3.4 K.6), beside the CLI and the MQTT push.
//!
//! The worklist actor asks at start and then every `poll_s` for the
//! procedure steps scheduled on this station (its AE title) and modality,
//! today. The earliest step becomes the exam info when it is a new one
//! (another accession number); the exam info is not touched while the
//! worklist keeps giving the same step, so an exam set by hand in between
//! stays. A worklist that cannot be reached raises `WORKLIST_UNREACHABLE`
//! (the exam info in force stays).

use super::dimse::{Association, DicomPeer};
use crate::events::{EventBus, EventKind, Severity};
use crate::supervisor::Liveness;
use crate::video::archive::ExamInfo;
use crate::video::model_card::Procedure;
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::watch;

/// Modality Worklist Information Model - FIND.
pub const MODALITY_WORKLIST_FIND: &str = "1.2.840.10008.5.1.4.31";

/// `[worklist]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorklistConfig {
    /// The worklist SCP (the RIS or its broker).
    pub peer: DicomPeer,
    /// The Scheduled Station AE Title to ask for; empty: the calling AE.
    #[serde(default)]
    pub station_ae: String,
    /// The modality to ask for.
    pub modality: String,
    /// Seconds between queries.
    pub poll_s: u64,
}

impl WorklistConfig {
    pub fn validate(&self, path: &str) -> Result<(), crate::config::ConfigError> {
        self.peer.validate(&format!("{path}.peer"))?;
        if !self.station_ae.is_empty() {
            super::dimse::check_ae(&format!("{path}.station_ae"), &self.station_ae)?;
        }
        if self.modality.is_empty() || self.modality.len() > 16 {
            return Err(crate::config::ConfigError::new(
                format!("{path}.modality"),
                format!("{:?}", self.modality),
                "a modality code like \"ES\"",
            ));
        }
        crate::config::check_int(&format!("{path}.poll_s"), self.poll_s, 1, 86_400, "s")
    }

    fn station(&self) -> &str {
        if self.station_ae.is_empty() {
            &self.peer.calling_ae
        } else {
            &self.station_ae
        }
    }
}

fn el(tag: Tag, vr: VR, v: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(v.to_string()))
}

/// The worklist query: the keys to match (station, modality, date) and the
/// keys to return (empty).
pub fn query(cfg: &WorklistConfig, today: &str) -> InMemDicomObject {
    let step = InMemDicomObject::from_element_iter([
        el(tags::SCHEDULED_STATION_AE_TITLE, VR::AE, cfg.station()),
        el(tags::SCHEDULED_PROCEDURE_STEP_START_DATE, VR::DA, today),
        el(tags::SCHEDULED_PROCEDURE_STEP_START_TIME, VR::TM, ""),
        el(tags::MODALITY, VR::CS, &cfg.modality),
        el(tags::SCHEDULED_PROCEDURE_STEP_DESCRIPTION, VR::LO, ""),
        el(tags::SCHEDULED_PROCEDURE_STEP_ID, VR::SH, ""),
    ]);
    InMemDicomObject::from_element_iter([
        el(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"),
        el(tags::ACCESSION_NUMBER, VR::SH, ""),
        el(tags::PATIENT_NAME, VR::PN, ""),
        el(tags::PATIENT_ID, VR::LO, ""),
        el(tags::PATIENT_BIRTH_DATE, VR::DA, ""),
        el(tags::PATIENT_SEX, VR::CS, ""),
        el(tags::STUDY_INSTANCE_UID, VR::UI, ""),
        el(tags::REQUESTED_PROCEDURE_DESCRIPTION, VR::LO, ""),
        el(tags::REQUESTED_PROCEDURE_ID, VR::SH, ""),
        DataElement::new(tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE, VR::SQ, DataSetSequence::from(vec![step])),
    ])
}

fn text(o: &InMemDicomObject, tag: Tag) -> String {
    o.element(tag).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches(['\0', ' ']).trim().to_string()).unwrap_or_default()
}

/// One scheduled step, as the worklist gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorklistEntry {
    pub accession: String,
    pub patient_id: String,
    pub patient_name: String,
    pub sex: String,
    pub birth_date: String,
    pub study_uid: String,
    pub description: String,
    pub start: String,
}

impl WorklistEntry {
    pub fn from_match(o: &InMemDicomObject) -> WorklistEntry {
        let step = o.element(tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE).ok().and_then(|e| e.items()).and_then(|items| items.first().cloned());
        let step_text = |t| step.as_ref().map(|s| text(s, t)).unwrap_or_default();
        WorklistEntry {
            accession: text(o, tags::ACCESSION_NUMBER),
            patient_id: text(o, tags::PATIENT_ID),
            patient_name: text(o, tags::PATIENT_NAME),
            sex: text(o, tags::PATIENT_SEX),
            birth_date: text(o, tags::PATIENT_BIRTH_DATE),
            study_uid: text(o, tags::STUDY_INSTANCE_UID),
            description: format!(
                "{} {}",
                text(o, tags::REQUESTED_PROCEDURE_DESCRIPTION),
                step_text(tags::SCHEDULED_PROCEDURE_STEP_DESCRIPTION)
            ),
            start: format!(
                "{}{}",
                step_text(tags::SCHEDULED_PROCEDURE_STEP_START_DATE),
                step_text(tags::SCHEDULED_PROCEDURE_STEP_START_TIME)
            ),
        }
    }

    /// The exam info for this step on `today` (`YYYYMMDD`): the accession
    /// number as the exam number (letters, digits and '-' kept), the
    /// procedure from the descriptions, the age from the birth date.
    pub fn exam_info(&self, today: &str) -> ExamInfo {
        let lower = self.description.to_lowercase();
        let procedure = if lower.contains("colonoscop") {
            Procedure::Colonoscopy
        } else if lower.contains("gastroscop") || lower.contains("esophagogastroduodenoscop") || lower.contains("egd") {
            Procedure::Gastroscopy
        } else if lower.contains("laparoscop") {
            Procedure::Laparoscopy
        } else {
            Procedure::Unspecified
        };
        let sex = match self.sex.as_str() {
            "F" => "F",
            "M" => "M",
            "O" => "X",
            _ => "",
        };
        ExamInfo {
            number: self.accession.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(32).collect(),
            sex: sex.into(),
            age: age(&self.birth_date, today).unwrap_or(0),
            procedure,
            patient_id: self.patient_id.clone(),
            patient_name: self.patient_name.clone(),
            study_uid: self.study_uid.clone(),
        }
    }
}

/// Whole years between two `YYYYMMDD` dates.
fn age(birth: &str, today: &str) -> Option<u32> {
    let p = |s: &str| -> Option<(u32, u32)> { Some((s.get(0..4)?.parse().ok()?, s.get(4..8)?.parse().ok()?)) };
    let ((by, bmd), (ty, tmd)) = (p(birth)?, p(today)?);
    let years = ty.checked_sub(by)?;
    Some(if tmd < bmd { years.saturating_sub(1) } else { years }.min(130))
}

/// Ask the worklist once; the steps found, earliest first.
pub fn fetch(cfg: &WorklistConfig, today: &str) -> Result<Vec<WorklistEntry>, super::dimse::DimseError> {
    let mut assoc = Association::open(&cfg.peer, MODALITY_WORKLIST_FIND)?;
    let found = assoc.find(MODALITY_WORKLIST_FIND, &query(cfg, today))?;
    assoc.release();
    let mut entries: Vec<WorklistEntry> = found.iter().map(WorklistEntry::from_match).collect();
    entries.sort_by(|a, b| a.start.cmp(&b.start));
    Ok(entries)
}

pub struct WorklistArgs {
    pub cfg: WorklistConfig,
    pub exam: watch::Sender<ExamInfo>,
    pub events: EventBus,
    pub liveness: Liveness,
}

pub enum WorklistMsg {
    Poll,
}

pub struct WorklistState {
    cfg: WorklistConfig,
    exam: watch::Sender<ExamInfo>,
    events: EventBus,
    liveness: Liveness,
    /// The accession number last taken from the worklist.
    applied: Option<String>,
}

pub struct WorklistActor;

fn today() -> String {
    super::still::dicom_date_time(crate::telemetry::journal::now_ms()).0
}

impl Actor for WorklistActor {
    type Msg = WorklistMsg;
    type State = WorklistState;
    type Arguments = WorklistArgs;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, a: WorklistArgs) -> Result<Self::State, ActorProcessingErr> {
        a.liveness.beat();
        myself.cast(WorklistMsg::Poll)?;
        myself.send_interval(Duration::from_secs(a.cfg.poll_s), || WorklistMsg::Poll);
        Ok(WorklistState { cfg: a.cfg, exam: a.exam, events: a.events, liveness: a.liveness, applied: None })
    }

    async fn handle(&self, _m: ActorRef<Self::Msg>, msg: Self::Msg, s: &mut Self::State) -> Result<(), ActorProcessingErr> {
        s.liveness.beat();
        let WorklistMsg::Poll = msg;
        let (cfg, day) = (s.cfg.clone(), today());
        let fetched = tokio::task::spawn_blocking(move || fetch(&cfg, &day).map(|e| (e, day))).await?;
        s.liveness.beat();
        match fetched {
            Err(e) => {
                s.events.raise("worklist", "WORKLIST_UNREACHABLE", Severity::Low, format!("worklist unreachable: {e}"));
            }
            Ok((entries, day)) => {
                s.events.clear("worklist", "WORKLIST_UNREACHABLE", "worklist answers again");
                let Some(first) = entries.first() else { return Ok(()) };
                if s.applied.as_deref() == Some(first.accession.as_str()) {
                    return Ok(());
                }
                let info = first.exam_info(&day);
                if let Err(e) = info.validate("worklist") {
                    s.events.raise("worklist", "WORKLIST_ENTRY_INVALID", Severity::Low, format!("accession {:?}: {e}", first.accession));
                    return Ok(());
                }
                s.events.event(
                    EventKind::Command,
                    Severity::Info,
                    "worklist",
                    "EXAM_FROM_WORKLIST",
                    format!("exam {} ({}, patient {}) from {}", info.number, info.procedure, info.patient_id, s.cfg.peer.name()),
                );
                s.exam.send_replace(info);
                s.applied = Some(first.accession.clone());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> WorklistEntry {
        WorklistEntry {
            accession: "A-2026-17".into(),
            patient_id: "P-1001".into(),
            patient_name: "DOE^JANE".into(),
            sex: "F".into(),
            birth_date: "19650312".into(),
            study_uid: "1.2.826.0.1.3680043.10.1234.17".into(),
            description: "Colonoscopy Screening colonoscopy".into(),
            start: "20261207090000".into(),
        }
    }

    #[test]
    fn a_worklist_step_becomes_the_exam_info() {
        let e = entry().exam_info("20261207");
        assert_eq!((e.number.as_str(), e.sex.as_str(), e.age), ("A-2026-17", "F", 61));
        assert_eq!(e.procedure, Procedure::Colonoscopy);
        assert_eq!((e.patient_id.as_str(), e.study_uid.as_str()), ("P-1001", "1.2.826.0.1.3680043.10.1234.17"));
        assert_eq!(entry().exam_info("20260311").age, 60, "the day before the birthday");
        let lap = WorklistEntry { description: "Laparoscopic cholecystectomy ".into(), ..entry() };
        assert_eq!(lap.exam_info("20261207").procedure, Procedure::Laparoscopy);
    }

    #[test]
    fn the_query_asks_for_this_station_and_modality_today() {
        let cfg = WorklistConfig {
            peer: DicomPeer { address: "127.0.0.1:104".into(), called_ae: "WL".into(), calling_ae: "OR3".into(), timeout_ms: 1000 },
            station_ae: String::new(),
            modality: "ES".into(),
            poll_s: 30,
        };
        let q = query(&cfg, "20261207");
        let step = q.element(tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE).unwrap().items().unwrap()[0].clone();
        assert_eq!(text(&step, tags::SCHEDULED_STATION_AE_TITLE), "OR3");
        assert_eq!(text(&step, tags::MODALITY), "ES");
        assert_eq!(text(&step, tags::SCHEDULED_PROCEDURE_STEP_START_DATE), "20261207");
        assert!(q.element(tags::ACCESSION_NUMBER).is_ok() && q.element(tags::STUDY_INSTANCE_UID).is_ok(), "return keys asked for");
    }
}
